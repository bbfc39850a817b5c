/*
 * nn_ops.c - LayerNorm, GELU and softmax for embed_minilm.c (see nn_ops.h),
 * each as portable C plus AVX2+FMA and AVX-512F versions compiled with
 * __attribute__((target)) and picked by the caller's sgemm_isa. The exp,
 * erfc and GELU formulas are in nn_simd.h, shared with sgemm.c's fused GELU.
 *
 * Why not libm: scalar erff and expf calls were 18% of the forward pass
 * (perf over the 16-, 32- and 128-token benchmark); the vector forms cost
 * ~3% (GELU) and ~1% (softmax).
 *
 *   exp(x):  x = n ln2 + r, |r| <= ln2 / 2 (Cody-Waite split of ln2), a
 *            degree-7 polynomial for e^r (Cephes expf's coefficients), and
 *            2^n built in the exponent bits. x is clamped to [-87.33, 88]
 *            so that 2^n stays a normal float; softmax and erfc only ever
 *            ask for x <= 0 and underflow to ~1e-38 instead of 0, which no
 *            sum or product here can tell from 0. Relative error < 1e-7.
 *   erfc(z): Numerical Recipes' erfcc (Chebyshev fit, 2nd ed. section 6.2):
 *            t = 1 / (1 + z/2), erfc(z) = t exp(-z^2 + P(t)), relative
 *            error 1.2e-7 for z >= 0 (plus the float rounding of -z^2,
 *            ~6e-8 z^2 relative): no cancellation in the tail.
 *   GELU:    x Phi(x) = x - x/2 erfc(x/sqrt2) for x >= 0, x/2 erfc(-x/sqrt2)
 *            for x < 0: both branches keep full relative precision.
 *
 * Vector loops handle row tails with masked loads and stores, so every
 * element goes through the same formula as its neighbours, and horizontal
 * sums run in a fixed order: results depend on the row alone.
 */
#include <math.h>
#include <stdint.h>
#include <string.h>

#include "providers/nn_ops.h"
#include "providers/nn_simd.h"

/* ---- portable ------------------------------------------------------------------ */

float nn_expf(float x)
{
    return nn_expf_inline(x);
}

float nn_erfcf(float z)
{
    return nn_erfcf_inline(z);
}

static void layernorm_portable(float *x, size_t n, const float *g, const float *b, float eps)
{
    double sum = 0.0;
    for (size_t i = 0; i < n; i++) {
        sum += x[i];
    }
    float mean = (float)(sum / (double)n);
    double var = 0.0;
    for (size_t i = 0; i < n; i++) {
        double d = (double)(x[i] - mean);
        var += d * d;
    }
    float inv = (float)(1.0 / sqrt(var / (double)n + (double)eps));
    for (size_t i = 0; i < n; i++) {
        x[i] = (x[i] - mean) * inv * g[i] + b[i];
    }
}

static void softmax_portable(float *row, size_t n, float scale)
{
    float mx = row[0];
    for (size_t j = 1; j < n; j++) {
        mx = row[j] > mx ? row[j] : mx;
    }
    float sum = 0.0f;
    for (size_t j = 0; j < n; j++) {
        row[j] = nn_expf((row[j] - mx) * scale);
        sum += row[j];
    }
    float inv = 1.0f / sum;
    for (size_t j = 0; j < n; j++) {
        row[j] *= inv;
    }
}

#ifdef NN_X86

/* ---- AVX2 + FMA ------------------------------------------------------------------ */

#define T2 NN_T2

T2 static inline float hsum8(__m256 v)
{
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

T2 static inline float hmax8(__m256 v)
{
    __m128 s = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_max_ps(s, _mm_movehl_ps(s, s));
    s = _mm_max_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

/* Lane mask of the first k (0..8) lanes. */
T2 static inline __m256i mask8(size_t k)
{
    static const int32_t ones[16] = {-1, -1, -1, -1, -1, -1, -1, -1, 0, 0, 0, 0, 0, 0, 0, 0};
    return _mm256_loadu_si256((const __m256i *)(ones + 8 - k));
}

T2 static void layernorm_avx2(float *x, size_t n, const float *g, const float *b, float eps)
{
    size_t full = n & ~(size_t)7;
    __m256i mt = mask8(n - full);
    __m256 s = _mm256_setzero_ps();
    for (size_t i = 0; i < full; i += 8) {
        s = _mm256_add_ps(s, _mm256_loadu_ps(x + i));
    }
    s = _mm256_add_ps(s, _mm256_maskload_ps(x + full, mt));
    __m256 vm = _mm256_set1_ps(hsum8(s) / (float)n);
    __m256 v = _mm256_setzero_ps();
    for (size_t i = 0; i < full; i += 8) {
        __m256 d = _mm256_sub_ps(_mm256_loadu_ps(x + i), vm);
        v = _mm256_fmadd_ps(d, d, v);
    }
    __m256 dt = _mm256_and_ps(_mm256_sub_ps(_mm256_maskload_ps(x + full, mt), vm),
                              _mm256_castsi256_ps(mt));
    v = _mm256_fmadd_ps(dt, dt, v);
    __m256 inv = _mm256_set1_ps(1.0f / sqrtf(hsum8(v) / (float)n + eps));
    for (size_t i = 0; i < full; i += 8) {
        __m256 d = _mm256_mul_ps(_mm256_sub_ps(_mm256_loadu_ps(x + i), vm), inv);
        _mm256_storeu_ps(x + i, _mm256_fmadd_ps(d, _mm256_loadu_ps(g + i), _mm256_loadu_ps(b + i)));
    }
    if (full < n) {
        __m256 d = _mm256_mul_ps(_mm256_sub_ps(_mm256_maskload_ps(x + full, mt), vm), inv);
        __m256 y = _mm256_fmadd_ps(d, _mm256_maskload_ps(g + full, mt),
                                   _mm256_maskload_ps(b + full, mt));
        _mm256_maskstore_ps(x + full, mt, y);
    }
}

T2 static void gelu_avx2(float *x, size_t n)
{
    size_t full = n & ~(size_t)7;
    for (size_t i = 0; i < full; i += 8) {
        _mm256_storeu_ps(x + i, nn_gelu8(_mm256_loadu_ps(x + i)));
    }
    if (full < n) {
        __m256i mt = mask8(n - full);
        _mm256_maskstore_ps(x + full, mt, nn_gelu8(_mm256_maskload_ps(x + full, mt)));
    }
}

T2 static void softmax_avx2(float *row, size_t n, float scale)
{
    size_t full = n & ~(size_t)7;
    __m256i mt = mask8(n - full);
    __m256 ninf = _mm256_set1_ps(-INFINITY);
    __m256 vmax = ninf;
    for (size_t j = 0; j < full; j += 8) {
        vmax = _mm256_max_ps(vmax, _mm256_loadu_ps(row + j));
    }
    __m256 tail = _mm256_blendv_ps(ninf, _mm256_maskload_ps(row + full, mt),
                                   _mm256_castsi256_ps(mt));
    vmax = _mm256_max_ps(vmax, tail);
    __m256 mx = _mm256_set1_ps(hmax8(vmax));
    __m256 vs = _mm256_set1_ps(scale);
    __m256 sum = _mm256_setzero_ps();
    for (size_t j = 0; j < full; j += 8) {
        __m256 e = nn_exp8(_mm256_mul_ps(_mm256_sub_ps(_mm256_loadu_ps(row + j), mx), vs));
        _mm256_storeu_ps(row + j, e);
        sum = _mm256_add_ps(sum, e);
    }
    if (full < n) {
        __m256 e = nn_exp8(_mm256_mul_ps(_mm256_sub_ps(tail, mx), vs));
        e = _mm256_and_ps(e, _mm256_castsi256_ps(mt));
        _mm256_maskstore_ps(row + full, mt, e);
        sum = _mm256_add_ps(sum, e);
    }
    __m256 inv = _mm256_set1_ps(1.0f / hsum8(sum));
    for (size_t j = 0; j < full; j += 8) {
        _mm256_storeu_ps(row + j, _mm256_mul_ps(_mm256_loadu_ps(row + j), inv));
    }
    if (full < n) {
        _mm256_maskstore_ps(row + full, mt,
                            _mm256_mul_ps(_mm256_maskload_ps(row + full, mt), inv));
    }
}

/* ---- AVX-512F ---------------------------------------------------------------------- */

#define T5 NN_T5

T5 static inline __mmask16 mask16(size_t k)
{
    return k >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << k) - 1u);
}

T5 static void layernorm_avx512(float *x, size_t n, const float *g, const float *b, float eps)
{
    __m512 s = _mm512_setzero_ps();
    for (size_t i = 0; i < n; i += 16) {
        s = _mm512_add_ps(s, _mm512_maskz_loadu_ps(mask16(n - i), x + i));
    }
    __m512 vm = _mm512_set1_ps(_mm512_reduce_add_ps(s) / (float)n);
    __m512 v = _mm512_setzero_ps();
    for (size_t i = 0; i < n; i += 16) {
        __mmask16 m = mask16(n - i);
        __m512 d = _mm512_maskz_sub_ps(m, _mm512_maskz_loadu_ps(m, x + i), vm);
        v = _mm512_fmadd_ps(d, d, v);
    }
    __m512 inv = _mm512_set1_ps(1.0f / sqrtf(_mm512_reduce_add_ps(v) / (float)n + eps));
    for (size_t i = 0; i < n; i += 16) {
        __mmask16 m = mask16(n - i);
        __m512 d = _mm512_mul_ps(_mm512_sub_ps(_mm512_maskz_loadu_ps(m, x + i), vm), inv);
        __m512 y = _mm512_fmadd_ps(d, _mm512_maskz_loadu_ps(m, g + i),
                                   _mm512_maskz_loadu_ps(m, b + i));
        _mm512_mask_storeu_ps(x + i, m, y);
    }
}

T5 static void gelu_avx512(float *x, size_t n)
{
    for (size_t i = 0; i < n; i += 16) {
        __mmask16 m = mask16(n - i);
        _mm512_mask_storeu_ps(x + i, m, nn_gelu16(_mm512_maskz_loadu_ps(m, x + i)));
    }
}

T5 static void softmax_avx512(float *row, size_t n, float scale)
{
    __m512 ninf = _mm512_set1_ps(-INFINITY);
    __m512 vmax = ninf;
    for (size_t j = 0; j < n; j += 16) {
        __mmask16 m = mask16(n - j);
        vmax = _mm512_max_ps(vmax, _mm512_mask_loadu_ps(ninf, m, row + j));
    }
    __m512 mx = _mm512_set1_ps(_mm512_reduce_max_ps(vmax));
    __m512 vs = _mm512_set1_ps(scale);
    __m512 sum = _mm512_setzero_ps();
    for (size_t j = 0; j < n; j += 16) {
        __mmask16 m = mask16(n - j);
        __m512 e = nn_exp16(_mm512_mul_ps(_mm512_sub_ps(_mm512_maskz_loadu_ps(m, row + j), mx), vs));
        _mm512_mask_storeu_ps(row + j, m, e);
        sum = _mm512_mask_add_ps(sum, m, sum, e);
    }
    __m512 inv = _mm512_set1_ps(1.0f / _mm512_reduce_add_ps(sum));
    for (size_t j = 0; j < n; j += 16) {
        __mmask16 m = mask16(n - j);
        _mm512_mask_storeu_ps(row + j, m, _mm512_mul_ps(_mm512_maskz_loadu_ps(m, row + j), inv));
    }
}

#endif /* NN_X86 */

/* ---- dispatch ------------------------------------------------------------------------ */

void nn_layernorm(sgemm_isa isa, float *x, size_t rows, size_t n, size_t ld, const float *g,
                  const float *b, float eps)
{
    void (*f)(float *, size_t, const float *, const float *, float) = layernorm_portable;
#ifdef NN_X86
    f = isa == SGEMM_AVX512 ? layernorm_avx512 : isa == SGEMM_AVX2 ? layernorm_avx2 : f;
#else
    (void)isa;
#endif
    for (size_t r = 0; r < rows; r++) {
        f(x + r * ld, n, g, b, eps);
    }
}

void nn_gelu(sgemm_isa isa, float *x, size_t n)
{
#ifdef NN_X86
    if (isa == SGEMM_AVX512) {
        gelu_avx512(x, n);
        return;
    }
    if (isa == SGEMM_AVX2) {
        gelu_avx2(x, n);
        return;
    }
#else
    (void)isa;
#endif
    for (size_t i = 0; i < n; i++) {
        x[i] = nn_gelu1(x[i]);
    }
}

void nn_softmax(sgemm_isa isa, float *s, size_t rows, size_t cols, size_t ld, float scale)
{
    void (*f)(float *, size_t, float) = softmax_portable;
#ifdef NN_X86
    f = isa == SGEMM_AVX512 ? softmax_avx512 : isa == SGEMM_AVX2 ? softmax_avx2 : f;
#else
    (void)isa;
#endif
    for (size_t r = 0; r < rows; r++) {
        f(s + r * ld, cols, scale);
    }
}
