/*
 * sgemm.c - single-precision GEMM with packed B (layout in sgemm.h), for
 * the transformer forward pass of embed_minilm.c.
 *
 * Blocking (GotoBLAS-style, without packing A: its rows are read in order,
 * one broadcast per element):
 *
 *   for k0 in K step KC          in practice one step: every K of the model
 *     for m0 in M step MC          (384, 1536, <= 512 in attention) is <= KC
 *       for panel group p        (2 panels for AVX-512, 1 otherwise)
 *         for rows i in block step MR:  register tile MR x NR over kc
 *
 * Why KC covers all of K: a k block that ends before K stores its tile and
 * the next one loads it back, and with activations of a 1024-token chunk
 * (6 MB for the feed-forward layer) that round trip goes to L3 or DRAM. With
 * KC = 256 a layer's four products ran at 97 GFLOP/s (65 while other jobs
 * thrashed L3); with the whole K in one pass at 106, 90% of the 117 GFLOP/s
 * FMA peak measured on the same Zen 4 core. The B panels of a
 * group (K x 32 floats, <= 192 KiB) and the A block (MC x K, <= 288 KiB:
 * K = 1536) then live in L2, fast enough at 2 loads per 16 FMAs. Neither MC
 * nor a larger AVX-512 tile (10, 12, 14 rows) measured better than 48 and 8.
 *
 * A register tile starts from 0 or the old C (plus the bias, on the first
 * k block only) and is stored back after each k block, so every element
 * sees the same sequence of operations whatever M, MR or the row's position
 * in its tile: results are bitwise independent of batching. Partial tiles
 * (rows past M, columns past N) compute on clamped/zero inputs and are
 * masked on store. sgemm_run_gelu applies GELU (nn_simd.h) to the tile in
 * registers before its last store, which saves the feed-forward activations
 * a trip through memory (~3% of the forward pass).
 *
 * The x86 kernels use intrinsics inside functions compiled for their target
 * (__attribute__((target))), so the file builds with the default -march and
 * the choice is made at run time from __builtin_cpu_supports.
 */
#include <stdlib.h>
#include <string.h>

#include "providers/nn_simd.h"
#include "providers/sgemm.h"

#if defined(__x86_64__) || defined(__i386__)
#define SGEMM_X86 1
#include <immintrin.h>
#endif

#define KC 2048u    /* k per block: all of K for every product of the model */
#define MC 48u      /* rows of A per block */

/* ---- dispatch -------------------------------------------------------------- */

sgemm_isa sgemm_isa_detect(void)
{
    sgemm_isa best = SGEMM_PORTABLE;
#ifdef SGEMM_X86
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) {
        best = SGEMM_AVX2;
    }
    if (__builtin_cpu_supports("avx512f")) {
        best = SGEMM_AVX512;
    }
#endif
    const char *env = getenv("STRATA_SGEMM");
    if (env != NULL) {
        sgemm_isa want = best;
        if (strcmp(env, "portable") == 0) {
            want = SGEMM_PORTABLE;
        } else if (strcmp(env, "avx2") == 0) {
            want = SGEMM_AVX2;
        } else if (strcmp(env, "avx512") == 0) {
            want = SGEMM_AVX512;
        }
        if (want < best) {
            best = want;
        }
    }
    return best;
}

const char *sgemm_isa_name(sgemm_isa isa)
{
    switch (isa) {
    case SGEMM_AVX2:
        return "avx2";
    case SGEMM_AVX512:
        return "avx512";
    default:
        return "portable";
    }
}

/* ---- packing --------------------------------------------------------------- */

size_t sgemm_packed_floats(size_t K, size_t N)
{
    return K * ((N + SGEMM_PANEL - 1) / SGEMM_PANEL) * SGEMM_PANEL;
}

void sgemm_pack(size_t K, size_t N, const float *B, size_t ldb, bool trans, float *out)
{
    size_t n_panels = (N + SGEMM_PANEL - 1) / SGEMM_PANEL;
    for (size_t p = 0; p < n_panels; p++) {
        float *dst = out + p * K * SGEMM_PANEL;
        size_t n0 = p * SGEMM_PANEL;
        size_t nw = N - n0 < SGEMM_PANEL ? N - n0 : SGEMM_PANEL;
        if (trans) {
            /* column n of B is row n of the given matrix: walk it along k */
            memset(dst, 0, K * SGEMM_PANEL * sizeof(float));
            for (size_t j = 0; j < nw; j++) {
                const float *src = B + (n0 + j) * ldb;
                for (size_t k = 0; k < K; k++) {
                    dst[k * SGEMM_PANEL + j] = src[k];
                }
            }
        } else {
            for (size_t k = 0; k < K; k++) {
                memcpy(dst + k * SGEMM_PANEL, B + k * ldb + n0, nw * sizeof(float));
                memset(dst + k * SGEMM_PANEL + nw, 0, (SGEMM_PANEL - nw) * sizeof(float));
            }
        }
    }
}

/* Arguments of one register-tile call. */
typedef struct sgemm_tile {
    size_t kc;              /* k steps */
    const float *a;         /* A[i][k0] */
    size_t lda;
    size_t mr;              /* valid rows, 1..MR */
    const float *b0;        /* first panel at k0 */
    const float *b1;        /* second panel at k0 (AVX-512; == b0 if absent) */
    size_t bstride;         /* floats from one k row of a panel to the next */
    float *c;               /* C[i][16p] */
    size_t ldc;
    size_t nc;              /* valid columns, 1..NR */
    const float *bias;      /* bias + 16p, or NULL */
    bool load_c;            /* start from C instead of 0 */
    bool gelu;              /* store GELU(result): the last k block of sgemm_run_gelu */
} sgemm_tile;

/* ---- portable kernel: 4 x 16 ------------------------------------------------ */

#define PMR 4u

static void kern_portable(const sgemm_tile *t)
{
    float acc[PMR][SGEMM_PANEL];
    for (size_t r = 0; r < PMR; r++) {
        for (size_t j = 0; j < SGEMM_PANEL; j++) {
            float v = 0.0f;
            if (r < t->mr && j < t->nc) {
                v = t->load_c ? t->c[r * t->ldc + j] : 0.0f;
                v += t->bias != NULL ? t->bias[j] : 0.0f;
            }
            acc[r][j] = v;
        }
    }
    for (size_t r = 0; r < PMR && r < t->mr; r++) {
        const float *a = t->a + r * t->lda;
        for (size_t k = 0; k < t->kc; k++) {
            float av = a[k];
            const float *b = t->b0 + k * t->bstride;
            for (size_t j = 0; j < SGEMM_PANEL; j++) {
                acc[r][j] += av * b[j];
            }
        }
    }
    for (size_t r = 0; r < t->mr; r++) {
        if (t->gelu) {
            for (size_t j = 0; j < t->nc; j++) {
                acc[r][j] = nn_gelu1(acc[r][j]);
            }
        }
        memcpy(t->c + r * t->ldc, acc[r], t->nc * sizeof(float));
    }
}

#ifdef SGEMM_X86

/* ---- AVX2 + FMA kernel: 6 x 16 ------------------------------------------------ */

#define A2MR 6u

__attribute__((target("avx2,fma"))) static void kern_avx2(const sgemm_tile *t)
{
    float tmp[SGEMM_PANEL];
    __m256 c00, c01, c10, c11, c20, c21, c30, c31, c40, c41, c50, c51;
    __m256 ini[A2MR][2];
    for (size_t r = 0; r < A2MR; r++) {
        memset(tmp, 0, sizeof(tmp));
        if (r < t->mr) {
            if (t->load_c) {
                memcpy(tmp, t->c + r * t->ldc, t->nc * sizeof(float));
            }
            if (t->bias != NULL) {
                for (size_t j = 0; j < t->nc; j++) {
                    tmp[j] += t->bias[j];
                }
            }
        }
        ini[r][0] = _mm256_loadu_ps(tmp);
        ini[r][1] = _mm256_loadu_ps(tmp + 8);
    }
    c00 = ini[0][0]; c01 = ini[0][1]; c10 = ini[1][0]; c11 = ini[1][1];
    c20 = ini[2][0]; c21 = ini[2][1]; c30 = ini[3][0]; c31 = ini[3][1];
    c40 = ini[4][0]; c41 = ini[4][1]; c50 = ini[5][0]; c51 = ini[5][1];
    const float *ar[A2MR];
    for (size_t r = 0; r < A2MR; r++) {
        ar[r] = t->a + (r < t->mr ? r : t->mr - 1) * t->lda;
    }
    const float *a0 = ar[0], *a1 = ar[1], *a2 = ar[2], *a3 = ar[3], *a4 = ar[4], *a5 = ar[5];
    const float *b = t->b0;
    for (size_t k = 0; k < t->kc; k++, b += t->bstride) {
        __m256 b0 = _mm256_loadu_ps(b);
        __m256 b1 = _mm256_loadu_ps(b + 8);
        __m256 av = _mm256_broadcast_ss(a0 + k);
        c00 = _mm256_fmadd_ps(av, b0, c00);
        c01 = _mm256_fmadd_ps(av, b1, c01);
        av = _mm256_broadcast_ss(a1 + k);
        c10 = _mm256_fmadd_ps(av, b0, c10);
        c11 = _mm256_fmadd_ps(av, b1, c11);
        av = _mm256_broadcast_ss(a2 + k);
        c20 = _mm256_fmadd_ps(av, b0, c20);
        c21 = _mm256_fmadd_ps(av, b1, c21);
        av = _mm256_broadcast_ss(a3 + k);
        c30 = _mm256_fmadd_ps(av, b0, c30);
        c31 = _mm256_fmadd_ps(av, b1, c31);
        av = _mm256_broadcast_ss(a4 + k);
        c40 = _mm256_fmadd_ps(av, b0, c40);
        c41 = _mm256_fmadd_ps(av, b1, c41);
        av = _mm256_broadcast_ss(a5 + k);
        c50 = _mm256_fmadd_ps(av, b0, c50);
        c51 = _mm256_fmadd_ps(av, b1, c51);
    }
    __m256 out[A2MR][2] = {{c00, c01}, {c10, c11}, {c20, c21},
                           {c30, c31}, {c40, c41}, {c50, c51}};
    for (size_t r = 0; r < t->mr; r++) {
        float *c = t->c + r * t->ldc;
        if (t->gelu) {
            out[r][0] = nn_gelu8(out[r][0]);
            out[r][1] = nn_gelu8(out[r][1]);
        }
        if (t->nc == SGEMM_PANEL) {
            _mm256_storeu_ps(c, out[r][0]);
            _mm256_storeu_ps(c + 8, out[r][1]);
        } else {
            _mm256_storeu_ps(tmp, out[r][0]);
            _mm256_storeu_ps(tmp + 8, out[r][1]);
            memcpy(c, tmp, t->nc * sizeof(float));
        }
    }
}

/* ---- AVX-512F kernel: 8 x 32 (two panels) --------------------------------------- */

#define A5MR 8u

__attribute__((target("avx512f"))) static void kern_avx512(const sgemm_tile *t)
{
    __mmask16 m0 = t->nc >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << t->nc) - 1u);
    __mmask16 m1 = t->nc >= 32   ? (__mmask16)0xFFFF
                   : t->nc > 16 ? (__mmask16)((1u << (t->nc - 16)) - 1u)
                                 : (__mmask16)0;
    __m512 bias0 = _mm512_setzero_ps();
    __m512 bias1 = _mm512_setzero_ps();
    if (t->bias != NULL) {
        bias0 = _mm512_maskz_loadu_ps(m0, t->bias);
        bias1 = _mm512_maskz_loadu_ps(m1, t->bias + 16);
    }
    __m512 acc[A5MR][2];
    const float *ar[A5MR];
    for (size_t r = 0; r < A5MR; r++) {
        __m512 x0 = _mm512_setzero_ps();
        __m512 x1 = _mm512_setzero_ps();
        if (t->load_c && r < t->mr) {
            x0 = _mm512_maskz_loadu_ps(m0, t->c + r * t->ldc);
            x1 = _mm512_maskz_loadu_ps(m1, t->c + r * t->ldc + 16);
        }
        acc[r][0] = _mm512_add_ps(x0, bias0);
        acc[r][1] = _mm512_add_ps(x1, bias1);
        ar[r] = t->a + (r < t->mr ? r : t->mr - 1) * t->lda;
    }
    __m512 c00 = acc[0][0], c01 = acc[0][1], c10 = acc[1][0], c11 = acc[1][1];
    __m512 c20 = acc[2][0], c21 = acc[2][1], c30 = acc[3][0], c31 = acc[3][1];
    __m512 c40 = acc[4][0], c41 = acc[4][1], c50 = acc[5][0], c51 = acc[5][1];
    __m512 c60 = acc[6][0], c61 = acc[6][1], c70 = acc[7][0], c71 = acc[7][1];
    const float *a0 = ar[0], *a1 = ar[1], *a2 = ar[2], *a3 = ar[3];
    const float *a4 = ar[4], *a5 = ar[5], *a6 = ar[6], *a7 = ar[7];
    const float *pb0 = t->b0;
    const float *pb1 = t->b1;
    for (size_t k = 0; k < t->kc; k++, pb0 += t->bstride, pb1 += t->bstride) {
        __m512 b0 = _mm512_loadu_ps(pb0);
        __m512 b1 = _mm512_loadu_ps(pb1);
        __m512 av = _mm512_set1_ps(a0[k]);
        c00 = _mm512_fmadd_ps(av, b0, c00);
        c01 = _mm512_fmadd_ps(av, b1, c01);
        av = _mm512_set1_ps(a1[k]);
        c10 = _mm512_fmadd_ps(av, b0, c10);
        c11 = _mm512_fmadd_ps(av, b1, c11);
        av = _mm512_set1_ps(a2[k]);
        c20 = _mm512_fmadd_ps(av, b0, c20);
        c21 = _mm512_fmadd_ps(av, b1, c21);
        av = _mm512_set1_ps(a3[k]);
        c30 = _mm512_fmadd_ps(av, b0, c30);
        c31 = _mm512_fmadd_ps(av, b1, c31);
        av = _mm512_set1_ps(a4[k]);
        c40 = _mm512_fmadd_ps(av, b0, c40);
        c41 = _mm512_fmadd_ps(av, b1, c41);
        av = _mm512_set1_ps(a5[k]);
        c50 = _mm512_fmadd_ps(av, b0, c50);
        c51 = _mm512_fmadd_ps(av, b1, c51);
        av = _mm512_set1_ps(a6[k]);
        c60 = _mm512_fmadd_ps(av, b0, c60);
        c61 = _mm512_fmadd_ps(av, b1, c61);
        av = _mm512_set1_ps(a7[k]);
        c70 = _mm512_fmadd_ps(av, b0, c70);
        c71 = _mm512_fmadd_ps(av, b1, c71);
    }
    __m512 out[A5MR][2] = {{c00, c01}, {c10, c11}, {c20, c21}, {c30, c31},
                           {c40, c41}, {c50, c51}, {c60, c61}, {c70, c71}};
    for (size_t r = 0; r < t->mr; r++) {
        if (t->gelu) {
            out[r][0] = nn_gelu16(out[r][0]);
            out[r][1] = nn_gelu16(out[r][1]);
        }
        _mm512_mask_storeu_ps(t->c + r * t->ldc, m0, out[r][0]);
        _mm512_mask_storeu_ps(t->c + r * t->ldc + 16, m1, out[r][1]);
    }
}

#endif /* SGEMM_X86 */

/* ---- driver ------------------------------------------------------------------- */

/* B's layout for the driver: panel p, row k starts at B + p * pstride + k * kstride. */
static void sgemm_drive(sgemm_isa isa, size_t M, size_t N, size_t K, const float *A, size_t lda,
                        const float *B, size_t pstride, size_t kstride, float *C, size_t ldc,
                        const float *bias, bool accumulate, bool gelu)
{
    void (*kern)(const sgemm_tile *) = kern_portable;
    size_t mr = PMR;
    size_t panels_per_call = 1;
#ifdef SGEMM_X86
    if (isa == SGEMM_AVX512) {
        kern = kern_avx512;
        mr = A5MR;
        panels_per_call = 2;
    } else if (isa == SGEMM_AVX2) {
        kern = kern_avx2;
        mr = A2MR;
    }
#else
    (void)isa;
#endif
    if (M == 0 || N == 0) {
        return;
    }
    size_t n_panels = (N + SGEMM_PANEL - 1) / SGEMM_PANEL;
    if (K == 0) {
        /* no products: C = bias (+ C) */
        for (size_t i = 0; i < M; i++) {
            for (size_t j = 0; j < N; j++) {
                float v = accumulate ? C[i * ldc + j] : 0.0f;
                v += bias != NULL ? bias[j] : 0.0f;
                C[i * ldc + j] = gelu ? nn_gelu1(v) : v;
            }
        }
        return;
    }
    for (size_t k0 = 0; k0 < K; k0 += KC) {
        size_t kc = K - k0 < KC ? K - k0 : KC;
        bool first = k0 == 0;
        for (size_t m0 = 0; m0 < M; m0 += MC) {
            size_t mc = M - m0 < MC ? M - m0 : MC;
            for (size_t p = 0; p < n_panels; p += panels_per_call) {
                size_t n0 = p * SGEMM_PANEL;
                size_t width = panels_per_call * SGEMM_PANEL;
                sgemm_tile t;
                t.kc = kc;
                t.lda = lda;
                t.ldc = ldc;
                t.nc = N - n0 < width ? N - n0 : width;
                t.b0 = B + p * pstride + k0 * kstride;
                t.b1 = p + 1 < n_panels ? t.b0 + pstride : t.b0;
                t.bstride = kstride;
                t.bias = first && bias != NULL ? bias + n0 : NULL;
                t.load_c = !first || accumulate;
                t.gelu = gelu && k0 + kc == K;
                for (size_t i = m0; i < m0 + mc; i += mr) {
                    t.a = A + i * lda + k0;
                    t.mr = m0 + mc - i < mr ? m0 + mc - i : mr;
                    t.c = C + i * ldc + n0;
                    kern(&t);
                }
            }
        }
    }
}

void sgemm_run(sgemm_isa isa, size_t M, size_t N, size_t K, const float *A, size_t lda,
               const float *Bp, float *C, size_t ldc, const float *bias, bool accumulate)
{
    sgemm_drive(isa, M, N, K, A, lda, Bp, K * SGEMM_PANEL, SGEMM_PANEL, C, ldc, bias,
                accumulate, false);
}

void sgemm_run_gelu(sgemm_isa isa, size_t M, size_t N, size_t K, const float *A, size_t lda,
                    const float *Bp, float *C, size_t ldc, const float *bias)
{
    sgemm_drive(isa, M, N, K, A, lda, Bp, K * SGEMM_PANEL, SGEMM_PANEL, C, ldc, bias, false,
                true);
}

void sgemm_run_rows(sgemm_isa isa, size_t M, size_t N, size_t K, const float *A, size_t lda,
                    const float *B, size_t ldb, float *C, size_t ldc)
{
    /* a row-major B is already a set of panels: panel p is columns 16p.. of
     * every row, one row (ldb floats) apart */
    sgemm_drive(isa, M, N, K, A, lda, B, SGEMM_PANEL, ldb, C, ldc, NULL, false, false);
}
