/*
 * crc32c.c - CRC-32C (Castagnoli), the checksum of every log record and
 * snapshot. Uses the SSE4.2 crc32 instruction when the CPU has it (chosen once
 * at run time, since we build without -march), else slicing-by-8 tables.
 */
#include <pthread.h>
#include <string.h>

#include "core/core.h"

static uint32_t g_table[8][256];
static pthread_once_t g_once = PTHREAD_ONCE_INIT;
static int g_have_sse42;

static void crc32c_init(void)
{
    for (uint32_t i = 0; i < 256; i++) {
        uint32_t c = i;
        for (int k = 0; k < 8; k++) {
            c = (c & 1) ? (c >> 1) ^ 0x82F63B78u : c >> 1;
        }
        g_table[0][i] = c;
    }
    for (uint32_t i = 0; i < 256; i++) {
        for (int t = 1; t < 8; t++) {
            g_table[t][i] = (g_table[t - 1][i] >> 8) ^ g_table[0][g_table[t - 1][i] & 0xFF];
        }
    }
#if defined(__x86_64__)
    __builtin_cpu_init();
    g_have_sse42 = __builtin_cpu_supports("sse4.2");
#endif
}

static uint32_t crc32c_sw(uint32_t crc, const uint8_t *p, size_t len)
{
    while (len >= 8) {
        uint64_t w;
        memcpy(&w, p, 8);
        w ^= crc;
        crc = g_table[7][w & 0xFF] ^ g_table[6][(w >> 8) & 0xFF] ^
              g_table[5][(w >> 16) & 0xFF] ^ g_table[4][(w >> 24) & 0xFF] ^
              g_table[3][(w >> 32) & 0xFF] ^ g_table[2][(w >> 40) & 0xFF] ^
              g_table[1][(w >> 48) & 0xFF] ^ g_table[0][w >> 56];
        p += 8;
        len -= 8;
    }
    while (len-- > 0) {
        crc = (crc >> 8) ^ g_table[0][(crc ^ *p++) & 0xFF];
    }
    return crc;
}

#if defined(__x86_64__)
__attribute__((target("sse4.2"))) static uint32_t crc32c_hw(uint32_t crc, const uint8_t *p,
                                                             size_t len)
{
    uint64_t c = crc;
    while (len >= 8) {
        uint64_t w;
        memcpy(&w, p, 8);
        c = __builtin_ia32_crc32di(c, w);
        p += 8;
        len -= 8;
    }
    uint32_t c32 = (uint32_t)c;
    while (len-- > 0) {
        c32 = __builtin_ia32_crc32qi(c32, *p++);
    }
    return c32;
}
#endif

uint32_t crc32c(uint32_t crc, const void *data, size_t len)
{
    pthread_once(&g_once, crc32c_init);
    crc = ~crc;
#if defined(__x86_64__)
    if (g_have_sse42) {
        return ~crc32c_hw(crc, data, len);
    }
#endif
    return ~crc32c_sw(crc, data, len);
}
