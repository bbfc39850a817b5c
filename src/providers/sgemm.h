/*
 * sgemm.h - single-precision matrix products for the neural embedder:
 * C = A . B (+ bias) (+ C), optionally through GELU, with B pre-packed into
 * 16-column panels (or, for a B used once, read in place: sgemm_run_rows).
 *
 *   packed B, N rounded up to 16 (zero columns), K rows per panel:
 *     panel p = columns [16p, 16p + 16):  Bp[p * K * 16 + k * 16 + j] = B[k][16p + j]
 *
 * Kernels: AVX-512F (8 x 32 register tile), AVX2+FMA (6 x 16) and portable
 * C, chosen at run time from the CPU (or forced, for tests and benchmarks).
 * Every kernel accumulates each C element over k = 0..K-1 in order, one
 * fused multiply-add (or multiply + add for the portable one) per step, so a
 * row's result does not depend on which other rows share its tile: batching
 * sentences together gives the same bits as embedding them one at a time.
 *
 * Thread-safety: pure functions of their arguments.
 */
#ifndef STRATA_PROVIDERS_SGEMM_H
#define STRATA_PROVIDERS_SGEMM_H

#include <stdbool.h>
#include <stddef.h>

typedef enum sgemm_isa {
    SGEMM_PORTABLE = 0,     /* plain C */
    SGEMM_AVX2,             /* x86-64 AVX2 + FMA */
    SGEMM_AVX512,           /* x86-64 AVX-512F */
} sgemm_isa;

#define SGEMM_PANEL 16u     /* columns per packed panel */

/* The best kernel this CPU runs. Env STRATA_SGEMM=portable|avx2|avx512
 * lowers the choice (never raises it past what the CPU supports). */
sgemm_isa sgemm_isa_detect(void);
const char *sgemm_isa_name(sgemm_isa isa);

/* Floats needed to pack a K x N matrix. */
size_t sgemm_packed_floats(size_t K, size_t N);

/* Pack the K x N matrix B into out (sgemm_packed_floats(K, N) floats).
 * trans = false: B[k][n] = B[k * ldb + n]; trans = true: B is given
 * transposed, B[k][n] = B[n * ldb + k] (a PyTorch Linear weight [out][in]
 * packs with trans = true, K = in, N = out). */
void sgemm_pack(size_t K, size_t N, const float *B, size_t ldb, bool trans, float *out);

/* C[M x N] (row stride ldc) = A[M x K] (row stride lda) . Bp (+ bias[N] if
 * bias != NULL) (+ the old C if accumulate). Bp packed by sgemm_pack for the
 * same K and N. */
void sgemm_run(sgemm_isa isa, size_t M, size_t N, size_t K, const float *A, size_t lda,
               const float *Bp, float *C, size_t ldc, const float *bias, bool accumulate);

/* C = GELU(A . Bp + bias) (bias may be NULL), GELU being nn_gelu's (erf
 * form), applied to each tile in registers before its store: the product
 * is never written and read back unactivated. */
void sgemm_run_gelu(sgemm_isa isa, size_t M, size_t N, size_t K, const float *A, size_t lda,
                    const float *Bp, float *C, size_t ldc, const float *bias);

/* C[M x N] = A[M x K] . B[K x N] with B unpacked, row-major, row stride
 * ldb, and N a multiple of SGEMM_PANEL (every row's 16-column groups are
 * read whole): for a B used once, where packing would cost as much as the
 * product (attention's P . V over one head's 32 columns of V). Same
 * per-element order of operations as sgemm_run. */
void sgemm_run_rows(sgemm_isa isa, size_t M, size_t N, size_t K, const float *A, size_t lda,
                    const float *B, size_t ldb, float *C, size_t ldc);

#endif /* STRATA_PROVIDERS_SGEMM_H */
