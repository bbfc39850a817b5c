/*
 * test_minilm.c - the neural embedder and its parts: sgemm (every kernel the
 * CPU runs, against a double-precision reference), the safetensors reader
 * (valid and hostile images built in memory), the WordPiece tokenizer (a
 * tiny vocabulary, then the real one), and all-MiniLM-L6-v2 end to end.
 *
 * The model tests need models/all-MiniLM-L6-v2 (scripts/fetch_model.sh),
 * found via $STRATA_MODEL_DIR, else models/, ../models/, ../../models/ from
 * the working directory; without it they print "skipped: no model" and pass.
 * Expected token ids were computed once with Hugging Face's tokenizer for
 * this vocab.txt; expected similarities are the ones sentence-transformers
 * documents for this model.
 */
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "providers/embed_minilm.h"
#include "providers/nn_ops.h"
#include "providers/safetensors.h"
#include "providers/sgemm.h"
#include "providers/wordpiece.h"
#include "test.h"

/* ---- helpers ------------------------------------------------------------------ */

static const char *model_dir(void)
{
    static char found[1024];
    static int state = 0;   /* 0 unknown, 1 found, -1 absent */
    if (state != 0) {
        return state > 0 ? found : NULL;
    }
    const char *env = getenv("STRATA_MODEL_DIR");
    const char *cands[] = {env, "models/all-MiniLM-L6-v2", "../models/all-MiniLM-L6-v2",
                           "../../models/all-MiniLM-L6-v2"};
    for (size_t i = 0; i < sizeof(cands) / sizeof(cands[0]); i++) {
        if (cands[i] == NULL) {
            continue;
        }
        char p[1100];
        snprintf(p, sizeof(p), "%s/model.safetensors", cands[i]);
        if (access(p, R_OK) == 0) {
            snprintf(found, sizeof(found), "%s", cands[i]);
            state = 1;
            return found;
        }
    }
    state = -1;
    return NULL;
}

#define NEED_MODEL(dir)                          \
    const char *dir = model_dir();               \
    if (dir == NULL) {                           \
        printf("skipped: no model\n");           \
        return;                                  \
    }

static double dot(const float *a, const float *b, size_t n)
{
    double s = 0.0;
    for (size_t i = 0; i < n; i++) {
        s += (double)a[i] * b[i];
    }
    return s;
}

static uint64_t rng_state = 0x9E3779B97F4A7C15ull;
static float frand(void)
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return (float)((rng_state >> 40) & 0xFFFF) / 32768.0f - 1.0f;
}

/* ---- sgemm ---------------------------------------------------------------------- */

TEST(sgemm_matches_reference)
{
    static const size_t sizes[][3] = {{1, 1, 1},    {3, 5, 7},     {8, 32, 16},  {9, 33, 300},
                                      {17, 16, 32}, {50, 70, 257}, {7, 384, 40}, {97, 20, 600}};
    sgemm_isa best = sgemm_isa_detect();
    for (int isa = SGEMM_PORTABLE; isa <= (int)best; isa++) {
        for (size_t s = 0; s < sizeof(sizes) / sizeof(sizes[0]); s++) {
            size_t M = sizes[s][0], N = sizes[s][1], K = sizes[s][2];
            size_t ldc = N + 3;
            float *A = malloc(M * K * sizeof(float));
            float *B = malloc(K * N * sizeof(float));
            float *Bt = malloc(K * N * sizeof(float));
            float *bias = malloc(N * sizeof(float));
            float *C = malloc(M * ldc * sizeof(float));
            float *C0 = malloc(M * ldc * sizeof(float));
            float *P = malloc(sgemm_packed_floats(K, N) * sizeof(float));
            float *Pt = malloc(sgemm_packed_floats(K, N) * sizeof(float));
            for (size_t i = 0; i < M * K; i++) {
                A[i] = frand();
            }
            for (size_t k = 0; k < K; k++) {
                for (size_t n = 0; n < N; n++) {
                    B[k * N + n] = frand();
                    Bt[n * K + k] = B[k * N + n];
                }
            }
            for (size_t n = 0; n < N; n++) {
                bias[n] = frand();
            }
            for (size_t i = 0; i < M * ldc; i++) {
                C0[i] = frand();
            }
            sgemm_pack(K, N, B, N, false, P);
            sgemm_pack(K, N, Bt, K, true, Pt);
            ASSERT_TRUE(memcmp(P, Pt, sgemm_packed_floats(K, N) * sizeof(float)) == 0);
            for (int mode = 0; mode < 2; mode++) {
                memcpy(C, C0, M * ldc * sizeof(float));
                sgemm_run((sgemm_isa)isa, M, N, K, A, K, P, C, ldc, mode ? bias : NULL,
                          mode == 1);
                for (size_t i = 0; i < M; i++) {
                    for (size_t n = 0; n < N; n++) {
                        double ref = mode ? (double)C0[i * ldc + n] + bias[n] : 0.0;
                        for (size_t k = 0; k < K; k++) {
                            ref += (double)A[i * K + k] * B[k * N + n];
                        }
                        ASSERT_NEAR(C[i * ldc + n], ref, 1e-4 * (1.0 + sqrt((double)K)));
                    }
                    /* the padding columns of C are never written */
                    for (size_t n = N; n < ldc; n++) {
                        ASSERT_TRUE(C[i * ldc + n] == C0[i * ldc + n]);
                    }
                }
                /* every row alone gives the same bits as in the block */
                for (size_t i = 0; i < M; i += 5) {
                    float row[400];
                    memcpy(row, C0 + i * ldc, N * sizeof(float));
                    sgemm_run((sgemm_isa)isa, 1, N, K, A + i * K, K, P, row, N,
                              mode ? bias : NULL, mode == 1);
                    ASSERT_TRUE(memcmp(row, C + i * ldc, N * sizeof(float)) == 0);
                }
            }
            free(A);
            free(B);
            free(Bt);
            free(bias);
            free(C);
            free(C0);
            free(P);
            free(Pt);
        }
    }
}

/* sgemm_run_rows (B unpacked) and sgemm_run_gelu (GELU fused into the store)
 * give the same bits as sgemm_run on packed B, and sgemm_run + nn_gelu. */
TEST(sgemm_rows_and_gelu_match)
{
    static const size_t sizes[][3] = {{1, 16, 1}, {5, 16, 7}, {9, 32, 33}, {20, 48, 300},
                                      {13, 1536 / 16 * 16, 24}};
    sgemm_isa best = sgemm_isa_detect();
    for (int isa = SGEMM_PORTABLE; isa <= (int)best; isa++) {
        for (size_t s = 0; s < sizeof(sizes) / sizeof(sizes[0]); s++) {
            size_t M = sizes[s][0], N = sizes[s][1], K = sizes[s][2];
            size_t ldb = N + 5;
            float *A = malloc(M * K * sizeof(float));
            float *B = malloc(K * ldb * sizeof(float));
            float *bias = malloc(N * sizeof(float));
            float *C1 = malloc(M * N * sizeof(float));
            float *C2 = malloc(M * N * sizeof(float));
            float *P = malloc(sgemm_packed_floats(K, N) * sizeof(float));
            for (size_t i = 0; i < M * K; i++) {
                A[i] = frand();
            }
            for (size_t i = 0; i < K * ldb; i++) {
                B[i] = frand();
            }
            for (size_t n = 0; n < N; n++) {
                bias[n] = frand();
            }
            sgemm_pack(K, N, B, ldb, false, P);
            sgemm_run((sgemm_isa)isa, M, N, K, A, K, P, C1, N, NULL, false);
            sgemm_run_rows((sgemm_isa)isa, M, N, K, A, K, B, ldb, C2, N);
            ASSERT_TRUE(memcmp(C1, C2, M * N * sizeof(float)) == 0);
            sgemm_run((sgemm_isa)isa, M, N, K, A, K, P, C1, N, bias, false);
            nn_gelu((sgemm_isa)isa, C1, M * N);
            sgemm_run_gelu((sgemm_isa)isa, M, N, K, A, K, P, C2, N, bias);
            ASSERT_TRUE(memcmp(C1, C2, M * N * sizeof(float)) == 0);
            free(A);
            free(B);
            free(bias);
            free(C1);
            free(C2);
            free(P);
        }
    }
}

/* ---- nn_ops ----------------------------------------------------------------------- */

TEST(nn_exp_erfc_accuracy)
{
    /* erfc's error is relative to the rounding of its exponent -z^2 + P(t),
     * which grows with z^2: worst_erfc is scaled by 1 / (1 + z^2) */
    double worst_exp = 0.0, worst_erfc = 0.0;
    for (int i = 0; i <= 200000; i++) {
        float x = -87.0f + 175.0f * (float)i / 200000.0f;
        double ref = exp((double)x);
        double rel = fabs((double)nn_expf(x) - ref) / ref;
        worst_exp = rel > worst_exp ? rel : worst_exp;
        float z = 9.0f * (float)i / 200000.0f;
        ref = erfc((double)z);
        rel = fabs((double)nn_erfcf(z) - ref) / ref / (1.0 + (double)z * z);
        worst_erfc = rel > worst_erfc ? rel : worst_erfc;
    }
    printf("  worst relative error: exp %.2e, erfc %.2e (per 1 + z^2)\n", worst_exp, worst_erfc);
    ASSERT_TRUE(worst_exp < 3e-7);
    ASSERT_TRUE(worst_erfc < 5e-7);     /* 1.2e-7 of the fit plus float rounding */
    /* far below the clamp: tiny, finite, not negative */
    ASSERT_TRUE(nn_expf(-1000.0f) >= 0.0f && nn_expf(-1000.0f) < 1e-37f);
}

TEST(nn_ops_match_reference)
{
    sgemm_isa best = sgemm_isa_detect();
    for (int isa = SGEMM_PORTABLE; isa <= (int)best; isa++) {
        /* GELU: every tail length, then a sweep with the extremes */
        float x[2100];
        size_t n = 0;
        for (; n < 2000; n++) {
            x[n] = -10.0f + 20.0f * (float)n / 2000.0f;
        }
        const float special[] = {0.0f, -0.0f, 1e-8f, -1e-8f, 30.0f, -30.0f, 3.0e5f, -3.0e5f};
        for (size_t i = 0; i < sizeof(special) / sizeof(special[0]); i++) {
            x[n++] = special[i];
        }
        for (size_t len = 1; len <= n; len = len < 40 ? len + 1 : (len < n ? n : n + 1)) {
            float y[2100];
            memcpy(y, x, len * sizeof(float));
            nn_gelu((sgemm_isa)isa, y, len);
            for (size_t i = 0; i < len; i++) {
                double ref = 0.5 * x[i] * erfc(-(double)x[i] / sqrt(2.0));
                double tol = 3e-7 * (fabs((double)x[i]) > 1.0 ? fabs((double)x[i]) : 1.0);
                ASSERT_NEAR(y[i], ref, tol);
            }
        }
        /* softmax over rows of 1..40 columns, with a row stride */
        for (size_t cols = 1; cols <= 40; cols++) {
            float s[3 * 48];
            for (size_t i = 0; i < 3 * 48; i++) {
                s[i] = 8.0f * frand();
            }
            float orig[3 * 48];
            memcpy(orig, s, sizeof(s));
            nn_softmax((sgemm_isa)isa, s, 3, cols, 48, 0.25f);
            for (size_t r = 0; r < 3; r++) {
                double mx = -1e30, sum = 0.0;
                for (size_t j = 0; j < cols; j++) {
                    mx = orig[r * 48 + j] > mx ? orig[r * 48 + j] : mx;
                }
                for (size_t j = 0; j < cols; j++) {
                    sum += exp(0.25 * (orig[r * 48 + j] - mx));
                }
                for (size_t j = 0; j < cols; j++) {
                    ASSERT_NEAR(s[r * 48 + j], exp(0.25 * (orig[r * 48 + j] - mx)) / sum, 1e-6);
                }
                for (size_t j = cols; j < 48; j++) {    /* past the row: untouched */
                    ASSERT_TRUE(s[r * 48 + j] == orig[r * 48 + j]);
                }
            }
        }
        /* LayerNorm over rows of several widths */
        static const size_t widths[] = {1, 7, 16, 33, 384};
        for (size_t w = 0; w < sizeof(widths) / sizeof(widths[0]); w++) {
            size_t len = widths[w], ld = len + 3;
            float v[2 * 387], orig[2 * 387], g[384], b[384];
            for (size_t i = 0; i < 2 * ld; i++) {
                v[i] = orig[i] = 3.0f * frand() + 1.0f;
            }
            for (size_t i = 0; i < len; i++) {
                g[i] = frand();
                b[i] = frand();
            }
            nn_layernorm((sgemm_isa)isa, v, 2, len, ld, g, b, 1e-12f);
            for (size_t r = 0; r < 2; r++) {
                double mean = 0.0, var = 0.0;
                for (size_t i = 0; i < len; i++) {
                    mean += orig[r * ld + i];
                }
                mean /= (double)len;
                for (size_t i = 0; i < len; i++) {
                    var += (orig[r * ld + i] - mean) * (orig[r * ld + i] - mean);
                }
                var /= (double)len;
                for (size_t i = 0; i < len; i++) {
                    double ref = (orig[r * ld + i] - mean) / sqrt(var + 1e-12) * g[i] + b[i];
                    ASSERT_NEAR(v[r * ld + i], ref, 1e-5);
                }
                for (size_t i = len; i < ld; i++) {
                    ASSERT_TRUE(v[r * ld + i] == orig[r * ld + i]);
                }
            }
        }
    }
}

/* ---- safetensors ---------------------------------------------------------------- */

/* An image: 8-byte length, header padded to 8, then data. Returns bytes. */
static size_t st_image(uint8_t *buf, const char *header, const void *data, size_t data_len)
{
    size_t h = strlen(header);
    size_t hp = (h + 7) / 8 * 8;
    for (int i = 0; i < 8; i++) {
        buf[i] = (uint8_t)((uint64_t)hp >> (8 * i));
    }
    memcpy(buf + 8, header, h);
    memset(buf + 8 + h, ' ', hp - h);
    memcpy(buf + 8 + hp, data, data_len);
    return 8 + hp + data_len;
}

TEST(safetensors_valid)
{
    _Alignas(8) uint8_t buf[512];
    float data[9] = {1, 2, 3, 4, 5, 6, 0.5f, -0.5f, 0};
    size_t n = st_image(buf,
                        "{\"__metadata__\":{\"format\":\"pt\"},"
                        "\"w\":{\"dtype\":\"F32\",\"shape\":[2,3],\"data_offsets\":[0,24]},"
                        "\"b\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[24,36]}}",
                        data, sizeof(data));
    safetensors *st = NULL;
    ASSERT_OK(safetensors_open_mem(buf, n, &st));
    ASSERT_EQ(safetensors_count(st), 2);
    const float *w = NULL;
    uint64_t shape[2] = {2, 3};
    ASSERT_OK(safetensors_f32(st, "w", 2, shape, &w));
    ASSERT_TRUE(w[5] == 6.0f);
    shape[0] = 3;
    ASSERT_EQ(safetensors_f32(st, "w", 2, shape, &w), STRATA_ECORRUPT);
    ASSERT_TRUE(w == NULL);
    ASSERT_EQ(safetensors_f32(st, "nope", 2, shape, &w), STRATA_ENOTFOUND);
    const st_tensor *b = safetensors_find(st, "b");
    ASSERT_TRUE(b != NULL && b->n_elems == 3 && b->n_bytes == 12);
    safetensors_close(st);
}

TEST(safetensors_rejects_hostile)
{
    static const char *headers[] = {
        "{\"w\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,16]}}",       /* past end */
        "{\"w\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[0,8]}}",        /* size */
        "{\"w\":{\"dtype\":\"F32\",\"shape\":[-1],\"data_offsets\":[0,4]}}",       /* negative */
        "{\"w\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,0]}}",        /* reversed */
        "{\"w\":{\"dtype\":\"F32\",\"shape\":[4294967296,4294967296,16],"
        "\"data_offsets\":[0,0]}}",                                                  /* overflow */
        "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
        "\"b\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}",         /* overlap */
        "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
        "\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}",         /* duplicate */
        "{\"w\":{\"dtype\":\"F32\",\"shape\":[1,1,1,1,1,1,1,1,1],\"data_offsets\":[0,4]}}",
        "{\"w\":{\"dtype\":\"F32\",\"shape\":[1.5],\"data_offsets\":[0,4]}}",
        "{\"w\":{\"dtype\":7,\"shape\":[1],\"data_offsets\":[0,4]}}",
        "{\"w\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0]}}",
        "{\"w\":[]}",
        "[1,2]",
        "{\"w\":",
    };
    _Alignas(8) uint8_t buf[512];
    uint8_t zeros[12] = {0};
    for (size_t i = 0; i < sizeof(headers) / sizeof(headers[0]); i++) {
        size_t n = st_image(buf, headers[i], zeros, sizeof(zeros));
        safetensors *st = (safetensors *)1;
        int rc = safetensors_open_mem(buf, n, &st);
        if (rc != STRATA_ECORRUPT) {
            fprintf(stderr, "  header %zu: rc %d\n", i, rc);
        }
        ASSERT_EQ(rc, STRATA_ECORRUPT);
        ASSERT_TRUE(st == NULL);
        ASSERT_TRUE(strstr(strata_errmsg(), "safetensors") != NULL);
    }
    /* a header length past the file, and every truncation of a valid file */
    size_t n = st_image(buf, "{\"w\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[0,12]}}",
                        zeros, sizeof(zeros));
    for (size_t cut = 0; cut < n; cut++) {
        safetensors *st = NULL;
        ASSERT_EQ(safetensors_open_mem(buf, cut, &st), STRATA_ECORRUPT);
    }
    memset(buf, 0xFF, 8);
    safetensors *st = NULL;
    ASSERT_EQ(safetensors_open_mem(buf, n, &st), STRATA_ECORRUPT);
}

TEST(safetensors_open_file)
{
    safetensors *st = (safetensors *)1;
    ASSERT_TRUE(safetensors_open("/nonexistent/model.safetensors", &st) < 0);
    ASSERT_TRUE(st == NULL);
    NEED_MODEL(dir);
    char p[1200];
    snprintf(p, sizeof(p), "%s/model.safetensors", dir);
    ASSERT_OK(safetensors_open(p, &st));
    ASSERT_TRUE(safetensors_count(st) >= 100);
    const st_tensor *t = safetensors_find(st, "embeddings.position_ids");
    ASSERT_TRUE(t != NULL && t->dtype == ST_DTYPE_I64);
    const float *w = NULL;
    uint64_t shape[2] = {30522, 384};
    ASSERT_OK(safetensors_f32(st, "embeddings.word_embeddings.weight", 2, shape, &w));
    safetensors_close(st);
}

/* ---- wordpiece ------------------------------------------------------------------- */

static const char tiny_vocab[] = "[PAD]\n[UNK]\n[CLS]\n[SEP]\nun\n##aff\n##able\nhello\n"
                                 "world\n,\n!\n.\ncafe\n日\n本\nwant\n##ed\nwa\n##nt\n";

static void encode_str(const wordpiece *wp, const char *s, uint32_t max_len, char *out,
                       size_t cap)
{
    int32_t ids[512];
    size_t n = 0;
    out[0] = '\0';
    if (wordpiece_encode(wp, s, strlen(s), max_len, ids, &n) != STRATA_OK) {
        snprintf(out, cap, "error");
        return;
    }
    size_t off = 0;
    for (size_t i = 0; i < n && off < cap; i++) {
        off += (size_t)snprintf(out + off, cap - off, "%s%s", i ? " " : "",
                                wordpiece_token(wp, ids[i]));
    }
}

TEST(wordpiece_basic)
{
    wordpiece *wp = NULL;
    ASSERT_OK(wordpiece_create(tiny_vocab, sizeof(tiny_vocab) - 1, &wp));
    ASSERT_EQ(wordpiece_cls_id(wp), 2);
    ASSERT_EQ(wordpiece_id(wp, "##able"), 6);
    char got[512];
    encode_str(wp, "unaffable", 64, got, sizeof(got));
    ASSERT_STREQ(got, "[CLS] un ##aff ##able [SEP]");
    encode_str(wp, "  HELLO,\tWorld!!\n", 64, got, sizeof(got));
    ASSERT_STREQ(got, "[CLS] hello , world ! ! [SEP]");
    encode_str(wp, "Caf\xC3\xA9 CAF\xC3\x89 cafe\xCC\x81", 64, got, sizeof(got));
    ASSERT_STREQ(got, "[CLS] cafe cafe cafe [SEP]");
    encode_str(wp, "\xE6\x97\xA5\xE6\x9C\xAC", 64, got, sizeof(got));   /* CJK split */
    ASSERT_STREQ(got, "[CLS] 日 本 [SEP]");
    encode_str(wp, "wanted unwanted xyz", 64, got, sizeof(got));   /* longest match first */
    ASSERT_STREQ(got, "[CLS] want ##ed [UNK] [UNK] [SEP]");
    encode_str(wp, "hel\x01lo w\xE2\x80\x8Borld \xFF\xFE", 64, got, sizeof(got));
    ASSERT_STREQ(got, "[CLS] hello world [SEP]");   /* control, ZWSP, bad UTF-8 dropped */
    encode_str(wp, "", 64, got, sizeof(got));
    ASSERT_STREQ(got, "[CLS] [SEP]");
    encode_str(wp, "hello world hello world", 4, got, sizeof(got));  /* truncation */
    ASSERT_STREQ(got, "[CLS] hello world [SEP]");
    char longw[300];
    memset(longw, 'a', 101);
    strcpy(longw + 101, " hello");
    encode_str(wp, longw, 64, got, sizeof(got));
    ASSERT_STREQ(got, "[CLS] [UNK] hello [SEP]");
    int32_t ids[8];
    size_t n = 0;
    ASSERT_EQ(wordpiece_encode(wp, "x", 1, 2, ids, &n), STRATA_EINVAL);
    ASSERT_EQ(wordpiece_encode(wp, "x", 1, 513, ids, &n), STRATA_EINVAL);
    wordpiece_free(wp);
    ASSERT_EQ(wordpiece_create("a\nb\n", 4, &wp), STRATA_ECORRUPT);   /* no specials */
    ASSERT_TRUE(wp == NULL);
}

TEST(wordpiece_real_vocab)
{
    NEED_MODEL(dir);
    char p[1200];
    snprintf(p, sizeof(p), "%s/vocab.txt", dir);
    wordpiece *wp = NULL;
    ASSERT_OK(wordpiece_load(p, &wp));
    ASSERT_EQ(wordpiece_vocab_size(wp), 30522);
    static const struct {
        const char *text;
        int32_t ids[24];
    } cases[] = {
        {"hello world", {101, 7592, 2088, 102}},
        {"The weather is lovely today.", {101, 1996, 4633, 2003, 8403, 2651, 1012, 102}},
        {"It's so sunny outside!", {101, 2009, 1005, 1055, 2061, 11559, 2648, 999, 102}},
        {"Unbelievably, the Caf\xC3\xA9 served cr\xC3\xA8me br\xC3\xBBl\xC3\xA9" "e at 3:45pm.",
         {101, 4895, 8671, 2666, 3567, 6321, 1010, 1996, 7668, 2366, 13675, 21382, 7987, 9307,
          2063, 2012, 1017, 1024, 3429, 9737, 1012, 102}},
        {"\xE6\x9D\xB1\xE4\xBA\xAC\xE3\x82\xBF\xE3\x83\xAF\xE3\x83\xBC "
         "\xED\x95\x9C\xEA\xB5\xAD\xEC\x96\xB4",      /* 東京タワー 한국어 */
         {101, 1879, 1755, 1709, 30262, 30265, 1469, 30006, 30021, 29991, 30014, 30020, 29999,
          30008, 102}},
        {"na\xC3\xAFve r\xC3\xA9sum\xC3\xA9 \xC5\x81\xC3\x93\x44\xC5\xB9 \xC4\xB0stanbul",
         {101, 15743, 13746, 17814, 9960, 102}},
    };
    for (size_t c = 0; c < sizeof(cases) / sizeof(cases[0]); c++) {
        int32_t ids[256];
        size_t n = 0;
        ASSERT_OK(wordpiece_encode(wp, cases[c].text, strlen(cases[c].text), 256, ids, &n));
        size_t want = 0;
        while (want < 24 && cases[c].ids[want] != 0) {
            want++;
        }
        ASSERT_EQ(n, want);
        for (size_t i = 0; i < n; i++) {
            ASSERT_EQ(ids[i], cases[c].ids[i]);
        }
    }
    wordpiece_free(wp);
}

/* ---- the embedder ----------------------------------------------------------------- */

static embedder *shared_e = NULL;

static void shared_free(void)
{
    embedder_free(shared_e);
    shared_e = NULL;
}

/* One model for the tests that only read it; freed at exit. */
static embedder *shared_model(void)
{
    if (shared_e == NULL && model_dir() != NULL) {
        if (embedder_minilm_create(model_dir(), 0, &shared_e) != STRATA_OK) {
            fprintf(stderr, "  create: %s\n", strata_errmsg());
            shared_e = NULL;
        } else {
            atexit(shared_free);
        }
    }
    return shared_e;
}

TEST(minilm_create_errors)
{
    embedder *e = (embedder *)1;
    ASSERT_EQ(embedder_minilm_create("/nonexistent", 0, &e), STRATA_ENOTFOUND);
    ASSERT_TRUE(e == NULL);
    ASSERT_EQ(embedder_minilm_create("/nonexistent", 2, &e), STRATA_EINVAL);
    ASSERT_EQ(embedder_minilm_create("/nonexistent", 513, &e), STRATA_EINVAL);
    embedder_free(NULL);
}

TEST(minilm_documented_similarities)
{
    NEED_MODEL(dir);
    embedder *e = shared_model();
    ASSERT_TRUE(e != NULL);
    ASSERT_EQ(e->dim, 384);
    ASSERT_STREQ(e->model, "all-MiniLM-L6-v2");
    const char *texts[] = {"The weather is lovely today.", "It's so sunny outside!",
                           "He drove to the stadium."};
    float v[3 * 384];
    ASSERT_OK(embedder_embed(e, texts, NULL, 3, v));
    for (int i = 0; i < 3; i++) {
        ASSERT_NEAR(dot(v + i * 384, v + i * 384, 384), 1.0, 1e-5);
    }
    double s12 = dot(v, v + 384, 384);
    double s13 = dot(v, v + 768, 384);
    double s23 = dot(v + 384, v + 768, 384);
    printf("  similarities (kernel %s): %.4f %.4f %.4f\n", embedder_minilm_kernel(e), s12, s13,
           s23);
    ASSERT_NEAR(s12, 0.6660, 0.002);
    ASSERT_NEAR(s13, 0.1046, 0.002);
    ASSERT_NEAR(s23, 0.1411, 0.002);
}

TEST(minilm_batch_equals_single)
{
    NEED_MODEL(dir);
    embedder *e = shared_model();
    ASSERT_TRUE(e != NULL);
    char longtext[4000];
    size_t off = 0;
    for (int i = 0; i < 60 && off < sizeof(longtext) - 64; i++) {
        off += (size_t)snprintf(longtext + off, sizeof(longtext) - off,
                                "sentence number %d goes on and on; ", i);
    }
    const char *texts[] = {"a", "The quick brown fox jumps over the lazy dog.", "", longtext,
                           "Memory systems for AI agents store facts, events and preferences.",
                           "ok"};
    size_t n = sizeof(texts) / sizeof(texts[0]);
    float *batch = malloc(n * 384 * sizeof(float));
    float one[384];
    ASSERT_OK(embedder_embed(e, texts, NULL, n, batch));
    for (size_t i = 0; i < n; i++) {
        ASSERT_OK(embedder_embed(e, texts + i, NULL, 1, one));
        for (size_t j = 0; j < 384; j++) {
            ASSERT_NEAR(batch[i * 384 + j], one[j], 1e-6);
        }
    }
    /* determinism: the same call twice gives the same bits */
    float *again = malloc(n * 384 * sizeof(float));
    ASSERT_OK(embedder_embed(e, texts, NULL, n, again));
    ASSERT_TRUE(memcmp(batch, again, n * 384 * sizeof(float)) == 0);
    /* explicit lengths: a prefix embeds like the shorter string */
    size_t lens[1] = {3};
    const char *pre[] = {"ok then"};
    const char *okt[] = {"ok "};
    ASSERT_OK(embedder_embed(e, pre, lens, 1, one));
    ASSERT_OK(embedder_embed(e, okt, NULL, 1, again));
    ASSERT_TRUE(memcmp(one, again, sizeof(one)) == 0);
    free(batch);
    free(again);
}

TEST(minilm_many_texts_span_chunks)
{
    NEED_MODEL(dir);
    embedder *e = shared_model();
    ASSERT_TRUE(e != NULL);
    enum { N = 150 };   /* ~15 tokens each: more than one 1024-token chunk */
    static char buf[N][96];
    const char *texts[N];
    for (int i = 0; i < N; i++) {
        snprintf(buf[i], sizeof(buf[i]), "document %d talks about topic %d and item %d", i,
                 i % 7, i * 31 % 101);
        texts[i] = buf[i];
    }
    float *all = malloc(N * 384 * sizeof(float));
    float one[384];
    ASSERT_OK(embedder_embed(e, texts, NULL, N, all));
    for (int i = 0; i < N; i += 37) {
        ASSERT_OK(embedder_embed(e, texts + i, NULL, 1, one));
        ASSERT_TRUE(memcmp(one, all + i * 384, sizeof(one)) == 0);
    }
    free(all);
}

typedef struct thread_arg {
    embedder *e;
    int rc;
    float out[2 * 384];
} thread_arg;

static void *embed_thread(void *p)
{
    thread_arg *a = p;
    const char *texts[] = {"concurrent calls share one model", "and get the same answer"};
    for (int i = 0; i < 3 && a->rc == 0; i++) {
        a->rc = embedder_embed(a->e, texts, NULL, 2, a->out);
    }
    return NULL;
}

TEST(minilm_threads)
{
    NEED_MODEL(dir);
    embedder *e = shared_model();
    ASSERT_TRUE(e != NULL);
    thread_arg args[3];
    pthread_t th[3];
    for (int i = 0; i < 3; i++) {
        memset(&args[i], 0, sizeof(args[i]));
        args[i].e = e;
        ASSERT_EQ(pthread_create(&th[i], NULL, embed_thread, &args[i]), 0);
    }
    for (int i = 0; i < 3; i++) {
        pthread_join(th[i], NULL);
        ASSERT_OK(args[i].rc);
    }
    ASSERT_TRUE(memcmp(args[0].out, args[1].out, sizeof(args[0].out)) == 0);
    ASSERT_TRUE(memcmp(args[0].out, args[2].out, sizeof(args[0].out)) == 0);
}

TEST(minilm_kernels_agree)
{
    NEED_MODEL(dir);
    /* the portable kernel gives (nearly) the same vectors as the fast one */
    const char *texts[] = {"The weather is lovely today.", "He drove to the stadium."};
    float fast[2 * 384];
    float slow[2 * 384];
    embedder *e = shared_model();
    ASSERT_TRUE(e != NULL);
    ASSERT_OK(embedder_embed(e, texts, NULL, 2, fast));
    setenv("STRATA_SGEMM", "portable", 1);
    embedder *p = NULL;
    int rc = embedder_minilm_create(dir, 0, &p);
    unsetenv("STRATA_SGEMM");
    ASSERT_OK(rc);
    ASSERT_STREQ(embedder_minilm_kernel(p), "portable");
    ASSERT_OK(embedder_embed(p, texts, NULL, 2, slow));
    for (size_t j = 0; j < 2 * 384; j++) {
        ASSERT_NEAR(fast[j], slow[j], 2e-5);
    }
    embedder_free(p);
}

TEST_MAIN(TEST_ENTRY(sgemm_matches_reference), TEST_ENTRY(sgemm_rows_and_gelu_match),
          TEST_ENTRY(nn_exp_erfc_accuracy), TEST_ENTRY(nn_ops_match_reference),
          TEST_ENTRY(safetensors_valid),
          TEST_ENTRY(safetensors_rejects_hostile), TEST_ENTRY(safetensors_open_file),
          TEST_ENTRY(wordpiece_basic), TEST_ENTRY(wordpiece_real_vocab),
          TEST_ENTRY(minilm_create_errors), TEST_ENTRY(minilm_documented_similarities),
          TEST_ENTRY(minilm_batch_equals_single), TEST_ENTRY(minilm_many_texts_span_chunks),
          TEST_ENTRY(minilm_threads), TEST_ENTRY(minilm_kernels_agree))
