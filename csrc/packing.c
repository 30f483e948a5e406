/* Packed rows (spec/kmc.md section 5.1) to an index plane. */
#include "kmc_codec.h"

int kmc_unpack_rows(const uint8_t *data, uint32_t width, uint32_t height, int bit_depth, int k,
                    uint8_t *out) {
    if (bit_depth != 1 && bit_depth != 2 && bit_depth != 4 && bit_depth != 8) return KMC_BAD_ARGS;
    const size_t row_bytes = ((size_t)width * (size_t)bit_depth + 7) / 8;
    const uint32_t per_byte = 8u / (uint32_t)bit_depth, mask = (1u << bit_depth) - 1;
    int check = k < (1 << bit_depth);  /* else every value is an index below k */
    uint8_t worst = 0;
    for (uint32_t y = 0; y < height; y++) {
        const uint8_t *row = data + (size_t)y * row_bytes;
        uint8_t *o = out + (size_t)y * width;
        if (bit_depth == 8) {
            for (uint32_t x = 0; x < width; x++) {
                o[x] = row[x];
                if (row[x] > worst) worst = row[x];
            }
            continue;
        }
        for (uint32_t x = 0; x < width; x++) {
            uint32_t shift = 8u - (uint32_t)bit_depth * (x % per_byte + 1);
            uint8_t v = (uint8_t)(row[x / per_byte] >> shift & mask);
            o[x] = v;
            if (v > worst) worst = v;
        }
    }
    return check && worst >= k ? KMC_INDEX_K : KMC_OK;
}
