/*
 * nn_simd.h - exp, erfc and GELU as inline scalar, AVX2+FMA and AVX-512F
 * functions, shared by nn_ops.c (the GELU, softmax passes) and sgemm.c (GELU
 * fused into the store of a matrix product). The formulas, their accuracy
 * and why they are ours rather than libm's are described in nn_ops.c; one
 * definition here keeps the fused and unfused GELU the same function.
 *
 * Internal to src/providers; each includer gets its own static copies.
 */
#ifndef STRATA_PROVIDERS_NN_SIMD_H
#define STRATA_PROVIDERS_NN_SIMD_H

#include <math.h>
#include <stdint.h>
#include <string.h>

#if defined(__x86_64__) || defined(__i386__)
#define NN_X86 1
#include <immintrin.h>
#endif

/* exp */
#define NN_EXP_LO (-87.336544f)    /* ~ -126 ln 2: 2^n stays normal */
#define NN_EXP_HI 88.0f
#define NN_EXP_LOG2E 1.44269504088896341f
#define NN_EXP_C1 0.693359375f     /* ln2 = C1 - C2, C1 exact in few bits */
#define NN_EXP_C2 (-2.12194440e-4f)
#define NN_EXP_P0 1.9875691500e-4f
#define NN_EXP_P1 1.3981999507e-3f
#define NN_EXP_P2 8.3334519073e-3f
#define NN_EXP_P3 4.1665795894e-2f
#define NN_EXP_P4 1.6666665459e-1f
#define NN_EXP_P5 5.0000001201e-1f

/* erfc: P(t), highest degree first */
static const float nn_erfc_p[10] = {0.17087277f,  -0.82215223f, 1.48851587f, -1.13520398f,
                                 0.27886807f,  -0.18628806f, 0.09678418f, 0.37409196f,
                                 1.00002368f,  -1.26551223f};

#define NN_RSQRT2 0.70710678118654752f

/* ---- scalar (the portable kernels) ------------------------------------------------- */

static inline float nn_expf_inline(float x)
{
    x = x < NN_EXP_LO ? NN_EXP_LO : (x > NN_EXP_HI ? NN_EXP_HI : x);
    float fx = rintf(x * NN_EXP_LOG2E);
    float r = x - fx * NN_EXP_C1;
    r = r - fx * NN_EXP_C2;
    float y = ((((NN_EXP_P0 * r + NN_EXP_P1) * r + NN_EXP_P2) * r + NN_EXP_P3) * r + NN_EXP_P4) * r + NN_EXP_P5;
    y = y * (r * r) + r + 1.0f;
    uint32_t bits = (uint32_t)((int32_t)fx + 127) << 23;
    float scale;
    memcpy(&scale, &bits, sizeof(scale));
    return y * scale;
}

static inline float nn_erfcf_inline(float z)
{
    float t = 1.0f / (1.0f + 0.5f * z);
    float p = nn_erfc_p[0];
    for (int i = 1; i < 10; i++) {
        p = p * t + nn_erfc_p[i];
    }
    return t * nn_expf_inline(p - z * z);
}

static inline float nn_gelu1(float x)
{
    float hq = 0.5f * x * nn_erfcf_inline(fabsf(x) * NN_RSQRT2);
    return x >= 0.0f ? x - hq : hq;
}

#ifdef NN_X86

/* ---- AVX2 + FMA ------------------------------------------------------------------ */

#define NN_T2 __attribute__((target("avx2,fma")))

NN_T2 static inline __m256 nn_exp8(__m256 x)
{
    x = _mm256_min_ps(_mm256_max_ps(x, _mm256_set1_ps(NN_EXP_LO)), _mm256_set1_ps(NN_EXP_HI));
    __m256 fx = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(NN_EXP_LOG2E)),
                                _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m256 r = _mm256_fnmadd_ps(fx, _mm256_set1_ps(NN_EXP_C1), x);
    r = _mm256_fnmadd_ps(fx, _mm256_set1_ps(NN_EXP_C2), r);
    __m256 y = _mm256_set1_ps(NN_EXP_P0);
    y = _mm256_fmadd_ps(y, r, _mm256_set1_ps(NN_EXP_P1));
    y = _mm256_fmadd_ps(y, r, _mm256_set1_ps(NN_EXP_P2));
    y = _mm256_fmadd_ps(y, r, _mm256_set1_ps(NN_EXP_P3));
    y = _mm256_fmadd_ps(y, r, _mm256_set1_ps(NN_EXP_P4));
    y = _mm256_fmadd_ps(y, r, _mm256_set1_ps(NN_EXP_P5));
    y = _mm256_fmadd_ps(y, _mm256_mul_ps(r, r), r);
    y = _mm256_add_ps(y, _mm256_set1_ps(1.0f));
    __m256i n = _mm256_add_epi32(_mm256_cvtps_epi32(fx), _mm256_set1_epi32(127));
    return _mm256_mul_ps(y, _mm256_castsi256_ps(_mm256_slli_epi32(n, 23)));
}

NN_T2 static inline __m256 nn_gelu8(__m256 x)
{
    __m256 z = _mm256_mul_ps(_mm256_andnot_ps(_mm256_set1_ps(-0.0f), x), _mm256_set1_ps(NN_RSQRT2));
    __m256 one = _mm256_set1_ps(1.0f);
    __m256 t = _mm256_div_ps(one, _mm256_fmadd_ps(_mm256_set1_ps(0.5f), z, one));
    __m256 p = _mm256_set1_ps(nn_erfc_p[0]);
    for (int i = 1; i < 10; i++) {
        p = _mm256_fmadd_ps(p, t, _mm256_set1_ps(nn_erfc_p[i]));
    }
    __m256 q = _mm256_mul_ps(t, nn_exp8(_mm256_fnmadd_ps(z, z, p)));
    __m256 hq = _mm256_mul_ps(_mm256_mul_ps(_mm256_set1_ps(0.5f), x), q);
    __m256 neg = _mm256_cmp_ps(x, _mm256_setzero_ps(), _CMP_LT_OQ);
    return _mm256_blendv_ps(_mm256_sub_ps(x, hq), hq, neg);
}

/* ---- AVX-512F ---------------------------------------------------------------------- */

#define NN_T5 __attribute__((target("avx512f")))

NN_T5 static inline __m512 nn_exp16(__m512 x)
{
    x = _mm512_min_ps(_mm512_max_ps(x, _mm512_set1_ps(NN_EXP_LO)), _mm512_set1_ps(NN_EXP_HI));
    __m512 fx = _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(NN_EXP_LOG2E)),
                                     _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m512 r = _mm512_fnmadd_ps(fx, _mm512_set1_ps(NN_EXP_C1), x);
    r = _mm512_fnmadd_ps(fx, _mm512_set1_ps(NN_EXP_C2), r);
    __m512 y = _mm512_set1_ps(NN_EXP_P0);
    y = _mm512_fmadd_ps(y, r, _mm512_set1_ps(NN_EXP_P1));
    y = _mm512_fmadd_ps(y, r, _mm512_set1_ps(NN_EXP_P2));
    y = _mm512_fmadd_ps(y, r, _mm512_set1_ps(NN_EXP_P3));
    y = _mm512_fmadd_ps(y, r, _mm512_set1_ps(NN_EXP_P4));
    y = _mm512_fmadd_ps(y, r, _mm512_set1_ps(NN_EXP_P5));
    y = _mm512_fmadd_ps(y, _mm512_mul_ps(r, r), r);
    y = _mm512_add_ps(y, _mm512_set1_ps(1.0f));
    __m512i n = _mm512_add_epi32(_mm512_cvtps_epi32(fx), _mm512_set1_epi32(127));
    return _mm512_mul_ps(y, _mm512_castsi512_ps(_mm512_slli_epi32(n, 23)));
}

NN_T5 static inline __m512 nn_gelu16(__m512 x)
{
    __m512 z = _mm512_mul_ps(_mm512_abs_ps(x), _mm512_set1_ps(NN_RSQRT2));
    __m512 one = _mm512_set1_ps(1.0f);
    __m512 t = _mm512_div_ps(one, _mm512_fmadd_ps(_mm512_set1_ps(0.5f), z, one));
    __m512 p = _mm512_set1_ps(nn_erfc_p[0]);
    for (int i = 1; i < 10; i++) {
        p = _mm512_fmadd_ps(p, t, _mm512_set1_ps(nn_erfc_p[i]));
    }
    __m512 q = _mm512_mul_ps(t, nn_exp16(_mm512_fnmadd_ps(z, z, p)));
    __m512 hq = _mm512_mul_ps(_mm512_mul_ps(_mm512_set1_ps(0.5f), x), q);
    __mmask16 neg = _mm512_cmp_ps_mask(x, _mm512_setzero_ps(), _CMP_LT_OQ);
    return _mm512_mask_blend_ps(neg, _mm512_sub_ps(x, hq), hq);
}

#endif /* NN_X86 */

#endif /* STRATA_PROVIDERS_NN_SIMD_H */
