/*
 * fuzz_safetensors.c - libFuzzer target for the safetensors reader
 * (src/providers/safetensors.c), which loads the neural embedder's weights.
 *
 * Each input is opened as a whole file image. A file that passes validation
 * is walked completely: every tensor is looked up by name, every F32 tensor
 * is read element by element through safetensors_f32 (so ASan catches any
 * tensor handed out past the buffer) and every byte of the other tensors is
 * touched. Inputs are copied into a fresh heap block of exactly their size so
 * an overrun of even one byte is reported. Capped at 1 MiB. Must never crash
 * or leak; run the corpus with tests/fuzz/replay_main.c.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "providers/safetensors.h"

#define FUZZ_MAX_INPUT (1u << 20)

static volatile float sink_f;
static volatile uint8_t sink_b;

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > FUZZ_MAX_INPUT) {
        return 0;
    }
    uint8_t *copy = malloc(size ? size : 1);
    if (copy == NULL) {
        return 0;
    }
    memcpy(copy, data, size);
    safetensors *st = NULL;
    if (safetensors_open_mem(copy, size, &st) == 0) {
        size_t n = safetensors_count(st);
        for (size_t i = 0; i < n; i++) {
            const st_tensor *t = safetensors_at(st, i);
            if (safetensors_find(st, t->name) != t) {
                abort();    /* the name index must agree with the list */
            }
            const float *f = NULL;
            if (safetensors_f32(st, t->name, t->ndim, t->shape, &f) == 0) {
                float s = 0.0f;
                for (uint64_t k = 0; k < t->n_elems; k++) {
                    s += f[k];
                }
                sink_f = s;
            } else {
                uint8_t x = 0;
                for (uint64_t k = 0; k < t->n_bytes; k++) {
                    x ^= t->data[k];
                }
                sink_b = x;
            }
        }
        (void)safetensors_at(st, n);
        (void)safetensors_find(st, "missing");
        safetensors_close(st);
    }
    free(copy);
    return 0;
}
