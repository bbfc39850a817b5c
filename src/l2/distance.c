/*
 * distance.c - dot-product kernels for the HNSW index, chosen at run time.
 *
 * The project is compiled without -march flags, so the SIMD kernels are
 * ordinary functions carrying __attribute__((target(...))): the compiler
 * emits AVX2/FMA or AVX-512 code for them alone, and hnsw_isa_best() asks the
 * CPU (__builtin_cpu_supports) once which of them may run. The index keeps
 * the chosen function pointer, so a distance costs one indirect call.
 *
 *   kernel            lanes  accumulators  notes
 *   dot_scalar          1        4         any dim; the reference
 *   dot_avx2            8        4         any dim; scalar tail
 *   dot_avx2_384        8        4         dim fixed at 384: fully unrolled
 *   dot_avx512         16        4         any dim; masked-load tail
 *   dot_avx512_384     16        4         dim fixed at 384 = 24 x 16
 *
 * Four independent accumulators hide the FMA latency (4 cycles, 2 per cycle
 * issued): one accumulator would serialise 24 FMAs for a 384-dim vector.
 * Summation order differs between kernels, so results agree to rounding
 * (about 1e-6 relative), not bit for bit.
 *
 * No state but the detection result, written once under pthread_once.
 */
#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "l2/hnsw.h"

#if defined(__x86_64__) || defined(__i386__)
#define HNSW_X86 1
#include <immintrin.h>
#else
#define HNSW_X86 0
#endif

/* ---- scalar ----------------------------------------------------------- */

static float dot_scalar(const float *a, const float *b, size_t dim)
{
    float s0 = 0.0f;
    float s1 = 0.0f;
    float s2 = 0.0f;
    float s3 = 0.0f;
    size_t i = 0;
    for (; i + 4 <= dim; i += 4) {
        s0 += a[i] * b[i];
        s1 += a[i + 1] * b[i + 1];
        s2 += a[i + 2] * b[i + 2];
        s3 += a[i + 3] * b[i + 3];
    }
    for (; i < dim; i++) {
        s0 += a[i] * b[i];
    }
    return (s0 + s1) + (s2 + s3);
}

#if HNSW_X86

/* ---- AVX2 + FMA ------------------------------------------------------- */

#define AVX2_ATTR __attribute__((target("avx2,fma")))

static inline AVX2_ATTR __attribute__((always_inline)) float hsum256(__m256 v)
{
    __m128 lo = _mm256_castps256_ps128(v);
    __m128 hi = _mm256_extractf128_ps(v, 1);
    lo = _mm_add_ps(lo, hi);
    __m128 sh = _mm_movehdup_ps(lo);
    lo = _mm_add_ps(lo, sh);
    sh = _mm_movehl_ps(sh, lo);
    lo = _mm_add_ss(lo, sh);
    return _mm_cvtss_f32(lo);
}

/* The body shared by the generic and the fixed-dimension kernels: with a
 * constant dim the compiler drops the tail loops and unrolls the main one. */
static inline AVX2_ATTR __attribute__((always_inline)) float
dot_avx2_body(const float *a, const float *b, size_t dim)
{
    __m256 s0 = _mm256_setzero_ps();
    __m256 s1 = _mm256_setzero_ps();
    __m256 s2 = _mm256_setzero_ps();
    __m256 s3 = _mm256_setzero_ps();
    size_t i = 0;
    for (; i + 32 <= dim; i += 32) {
        s0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i), s0);
        s1 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i + 8), _mm256_loadu_ps(b + i + 8), s1);
        s2 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i + 16), _mm256_loadu_ps(b + i + 16), s2);
        s3 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i + 24), _mm256_loadu_ps(b + i + 24), s3);
    }
    for (; i + 8 <= dim; i += 8) {
        s0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i), s0);
    }
    float tail = 0.0f;
    for (; i < dim; i++) {
        tail += a[i] * b[i];
    }
    return hsum256(_mm256_add_ps(_mm256_add_ps(s0, s1), _mm256_add_ps(s2, s3))) + tail;
}

static AVX2_ATTR float dot_avx2(const float *a, const float *b, size_t dim)
{
    return dot_avx2_body(a, b, dim);
}

static AVX2_ATTR float dot_avx2_384(const float *a, const float *b, size_t dim)
{
    (void)dim;
    return dot_avx2_body(a, b, 384);
}

/* ---- AVX-512F --------------------------------------------------------- */

#define AVX512_ATTR __attribute__((target("avx512f")))

static inline AVX512_ATTR __attribute__((always_inline)) float
dot_avx512_body(const float *a, const float *b, size_t dim)
{
    __m512 s0 = _mm512_setzero_ps();
    __m512 s1 = _mm512_setzero_ps();
    __m512 s2 = _mm512_setzero_ps();
    __m512 s3 = _mm512_setzero_ps();
    size_t i = 0;
    for (; i + 64 <= dim; i += 64) {
        s0 = _mm512_fmadd_ps(_mm512_loadu_ps(a + i), _mm512_loadu_ps(b + i), s0);
        s1 = _mm512_fmadd_ps(_mm512_loadu_ps(a + i + 16), _mm512_loadu_ps(b + i + 16), s1);
        s2 = _mm512_fmadd_ps(_mm512_loadu_ps(a + i + 32), _mm512_loadu_ps(b + i + 32), s2);
        s3 = _mm512_fmadd_ps(_mm512_loadu_ps(a + i + 48), _mm512_loadu_ps(b + i + 48), s3);
    }
    for (; i + 16 <= dim; i += 16) {
        s0 = _mm512_fmadd_ps(_mm512_loadu_ps(a + i), _mm512_loadu_ps(b + i), s0);
    }
    if (i < dim) {
        __mmask16 m = (__mmask16)((1u << (dim - i)) - 1u);
        s1 = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(m, a + i), _mm512_maskz_loadu_ps(m, b + i), s1);
    }
    return _mm512_reduce_add_ps(_mm512_add_ps(_mm512_add_ps(s0, s1), _mm512_add_ps(s2, s3)));
}

static AVX512_ATTR float dot_avx512(const float *a, const float *b, size_t dim)
{
    return dot_avx512_body(a, b, dim);
}

static AVX512_ATTR float dot_avx512_384(const float *a, const float *b, size_t dim)
{
    (void)dim;
    return dot_avx512_body(a, b, 384);
}

#endif /* HNSW_X86 */

/* ---- detection -------------------------------------------------------- */

static pthread_once_t isa_once = PTHREAD_ONCE_INIT;
static hnsw_isa isa_cpu = HNSW_ISA_SCALAR;   /* what the CPU supports */
static hnsw_isa isa_chosen = HNSW_ISA_SCALAR; /* capped by STRATA_SIMD */

static void isa_detect(void)
{
#if HNSW_X86
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) {
        isa_cpu = HNSW_ISA_AVX2;
    }
    if (__builtin_cpu_supports("avx512f")) {
        isa_cpu = HNSW_ISA_AVX512;
    }
#endif
    isa_chosen = isa_cpu;
    const char *cap = getenv("STRATA_SIMD");
    if (cap != NULL) {
        if (strcmp(cap, "scalar") == 0) {
            isa_chosen = HNSW_ISA_SCALAR;
        } else if (strcmp(cap, "avx2") == 0 && isa_cpu >= HNSW_ISA_AVX2) {
            isa_chosen = HNSW_ISA_AVX2;
        }
    }
}

hnsw_isa hnsw_isa_best(void)
{
    pthread_once(&isa_once, isa_detect);
    return isa_chosen;
}

const char *hnsw_isa_name(hnsw_isa isa)
{
    switch (isa) {
    case HNSW_ISA_AVX2:
        return "avx2";
    case HNSW_ISA_AVX512:
        return "avx512";
    case HNSW_ISA_SCALAR:
    default:
        return "scalar";
    }
}

hnsw_dot_fn hnsw_dot_get(hnsw_isa isa, size_t dim)
{
    pthread_once(&isa_once, isa_detect);
    if (isa > isa_cpu) {
        return NULL;
    }
    switch (isa) {
#if HNSW_X86
    case HNSW_ISA_AVX512:
        return dim == 384 ? dot_avx512_384 : dot_avx512;
    case HNSW_ISA_AVX2:
        return dim == 384 ? dot_avx2_384 : dot_avx2;
#endif
    case HNSW_ISA_SCALAR:
    default:
        return dot_scalar;
    }
}

hnsw_dot_fn hnsw_dot_select(size_t dim)
{
    return hnsw_dot_get(hnsw_isa_best(), dim);
}

bool hnsw_normalize(float *v, size_t dim)
{
    /* Accumulate in double: the norm decides every later score, and this
     * runs once per insert or query, not per distance. */
    double ss = 0.0;
    for (size_t i = 0; i < dim; i++) {
        if (!isfinite(v[i])) {
            return false;
        }
        ss += (double)v[i] * (double)v[i];
    }
    if (!(ss > 0.0) || !isfinite(ss)) {
        return false;
    }
    double inv = 1.0 / sqrt(ss);
    for (size_t i = 0; i < dim; i++) {
        v[i] = (float)((double)v[i] * inv);
    }
    return true;
}
