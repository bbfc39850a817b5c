/*
 * nn_ops.h - the non-GEMM steps of the transformer forward pass
 * (embed_minilm.c), vectorised with the same run-time ISA choice as sgemm:
 * LayerNorm over rows, exact (erf) GELU, softmax over rows.
 *
 * Every ISA evaluates the same formulas (a Cephes-style expf, Numerical
 * Recipes' erfc), so kernels differ only in rounding (FMA or not), and each
 * element's result depends only on its own row: batching stays bitwise
 * neutral, as in sgemm.h.
 *
 * Thread-safety: pure functions of their arguments.
 */
#ifndef STRATA_PROVIDERS_NN_OPS_H
#define STRATA_PROVIDERS_NN_OPS_H

#include <stddef.h>

#include "providers/sgemm.h"

/* Each of rows rows of n floats (row stride ld), in place:
 * x = (x - mean) / sqrt(var + eps) * g + b. */
void nn_layernorm(sgemm_isa isa, float *x, size_t rows, size_t n, size_t ld, const float *g,
                  const float *b, float eps);

/* x = x * Phi(x) = 0.5 x (1 + erf(x / sqrt 2)) over n floats, in place;
 * |error| < 2e-7 * max(1, |x|) against the exact function. */
void nn_gelu(sgemm_isa isa, float *x, size_t n);

/* Each of rows rows of cols floats (row stride ld), in place:
 * s = softmax(s * scale). */
void nn_softmax(sgemm_isa isa, float *s, size_t rows, size_t cols, size_t ld, float scale);

/* The scalar functions behind the vector ones, for tests: exp(x) within 2
 * ulp for x <= 88, and erfc(x) within 1.2e-7 relative. */
float nn_expf(float x);
float nn_erfcf(float x);

#endif /* STRATA_PROVIDERS_NN_OPS_H */
