/* Float32, float16 and bfloat16 weights as torch stores them, shared by the compiled CPU passes
 * (hash_pass.c, stream_pass.c): conversions by bit operations with round-to-nearest-even
 * (torch's .to; float16 subnormals by a float32 addition that does the rounding), so no
 * compiler half type is needed, and a tile of weights loaded to / stored from float32.
 * Header-only (static functions): each pass library includes it once.
 */
#ifndef EDGEZO_FLOATS_H
#define EDGEZO_FLOATS_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

/* The weight dtypes (the C codes of edgezo.passes.compiled.DTYPES). */
enum { EZF_F32 = 0, EZF_F16 = 1, EZF_BF16 = 2 };

/* Type punning through a union (C99 TC3): unlike memcpy, it keeps the loops vectorisable. */
typedef union { float f; uint32_t u; } pun;
static inline uint32_t bits_of(float f) { pun v; v.f = f; return v.u; }
static inline float float_of(uint32_t u) { pun v; v.u = u; return v.f; }

/* float16 bits to float32, exact: subnormals as m * 2^-24 (a normal float32, so no
 * denormal arithmetic), inf and NaN kept. Selects, not branches: the loops vectorise. */
static inline float f16_to_f32(uint16_t h) {
    uint32_t sign = (uint32_t)(h & 0x8000u) << 16, e = (h >> 10) & 0x1fu, m = h & 0x3ffu;
    uint32_t sub = bits_of((float)(int32_t)m * 0x1p-24f);
    uint32_t normal = ((e + 112u) << 23) | (m << 13), special = 0x7f800000u | (m << 13);
    uint32_t r = e == 0x1f ? special : normal;
    r = e == 0 ? sub : r;
    return float_of(sign | r);
}

/* float32 to float16 bits, round to nearest even (overflow to inf, NaN quiet): F. Giesen's
 * float_to_half_fast3_rtne. Half subnormals by one float32 addition of a magic number (its
 * rounding is the one wanted; inputs and result are normal or flushed to the same zero). */
static inline uint16_t f32_to_f16(float f) {
    const uint32_t magic = ((127u - 15u) + (23u - 10u) + 1u) << 23;
    uint32_t x = bits_of(f), sign = (x >> 16) & 0x8000u, ax = x & 0x7fffffffu;
    uint32_t big = ax > 0x7f800000u ? 0x7e00u : 0x7c00u;              /* NaN : inf */
    uint32_t sub = bits_of(float_of(ax) + float_of(magic)) - magic;
    uint32_t normal = (ax + ((uint32_t)(15 - 127) << 23) + 0xfffu + ((ax >> 13) & 1u)) >> 13;
    uint32_t o = ax >= (143u << 23) ? big : ax < (113u << 23) ? sub : normal;
    return (uint16_t)(sign | o);
}

/* float32 to bfloat16 bits, round to nearest even (torch's formula; NaN -> 0x7fc0). */
static inline uint16_t f32_to_bf16(float f) {
    uint32_t x = bits_of(f);
    if ((x & 0x7fffffffu) > 0x7f800000u) return 0x7fc0u;
    x += 0x7fffu + ((x >> 16) & 1u);
    return (uint16_t)(x >> 16);
}

/* float32 rounded to the nearest float16 value (ties to even), kept in float32: the value
 * of f16_to_f32(f32_to_f16(f)) without leaving float32 (so the pass loops vectorise). */
static inline float round_f16(float f) {
    uint32_t x = bits_of(f), sign = x & 0x80000000u, ax = x & 0x7fffffffu;
    float tiny = (float_of(ax) + 0.5f) - 0.5f;          /* below 2^-14: a multiple of 2^-24 */
    uint32_t r = (ax + 0xfffu + ((ax >> 13) & 1u)) & ~0x1fffu;  /* 11 significant bits */
    r = ax < (113u << 23) ? bits_of(tiny) : r;
    r = ax >= 0x477ff000u ? 0x7f800000u : r;           /* from 65520 up: inf */
    r = ax > 0x7f800000u ? 0x7fc00000u : r;            /* NaN: float16's quiet NaN */
    return float_of(sign | r);
}

/* float32 value rounded to the weight dtype and back (the value torch would store). */
static inline float round_to(float f, int dtype) {
    if (dtype == EZF_F16) return round_f16(f);
    if (dtype == EZF_BF16) return float_of((uint32_t)f32_to_bf16(f) << 16);
    return f;
}

/* Weights start .. start+len-1 of w (dtype) as float32 in t (exact). */
static inline void load_tile(const void *w, int dtype, size_t start, size_t len, float *t) {
    size_t j;
    if (dtype == EZF_F32) { memcpy(t, (const float *)w + start, len * sizeof(float)); return; }
    for (j = 0; j < len; j++) {
        uint16_t h = ((const uint16_t *)w)[start + j];
        t[j] = dtype == EZF_F16 ? f16_to_f32(h) : float_of((uint32_t)h << 16);
    }
}

/* t back into weights start .. start+len-1 of w, rounded to the dtype (torch's .to). */
static inline void store_tile(void *w, int dtype, size_t start, size_t len, const float *t) {
    size_t j;
    if (dtype == EZF_F32) { memcpy((float *)w + start, t, len * sizeof(float)); return; }
    for (j = 0; j < len; j++)
        ((uint16_t *)w)[start + j] = dtype == EZF_F16 ? f32_to_f16(t[j]) : f32_to_bf16(t[j]);
}

#endif /* EDGEZO_FLOATS_H */
