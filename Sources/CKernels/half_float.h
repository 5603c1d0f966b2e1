// IEEE half → float32, exactly (normals, subnormals, ±0, ±inf, NaN payloads), for the scalar tails of the
// vectorised (F16C) conversions. Private to C: included by kernels.c (fp16 weights) and by the embedding
// store's store_kernels.c (its half-precision search matrix), so both read halves the same way.
#pragma once
#include <stdint.h>
#include <string.h>

static inline float uc_half_to_float(uint16_t h) {
    const uint32_t sign = (uint32_t)(h & 0x8000) << 16;
    const uint32_t exp = (h >> 10) & 0x1f;
    const uint32_t mant = h & 0x3ff;
    uint32_t bits;
    if (exp == 0) {
        if (mant == 0) bits = sign;
        else { // subnormal: value = mant * 2^-24, exact in float32
            float f = (float)mant * 5.9604644775390625e-8f;
            memcpy(&bits, &f, 4);
            bits |= sign;
        }
    } else if (exp == 31) {
        bits = sign | 0x7f800000u | (mant << 13);
    } else {
        bits = sign | ((exp + 112) << 23) | (mant << 13);
    }
    float out;
    memcpy(&out, &bits, 4);
    return out;
}
