/* Compiled CPU passes of the counter sources: w += sum_p k_p round(eps z_p) in one loop.
 *
 * The same bits as edgezo.directions.counter and edgezo.passes.reference, element by
 * element (see edgezo/passes/compiled.py for what is exact and what is within ulps):
 *
 *   x = lowbias32(lowbias32((i mod 2^32) ^ k1) ^ k2)       keys (k1, k2) per 2^32 block
 *   u = (x >> 8) 2^-23 - (1 - 2^-24)                         exact in float32
 *   z = 1 - 2 (x >> 31) | sqrt(3) u | sqrt(2) erfinv(u)      Rademacher | Uniform | Gaussian
 *   a = round_dtype((z * factor_p) * eps)                    two float32 roundings, then dtype
 *   w = round_dtype(fma(k_p, a, w))                          float32 FMA, as torch's add_
 *
 * Weights are float32, float16 or bfloat16, converted as floats.h does (bit operations,
 * round-to-nearest-even, no compiler half type). k_p arrives rounded
 * as torch's add_ rounds it (to the weight dtype for 16-bit weights).
 * Elements are processed in tiles on the stack: each weight is read and written once for
 * all passes, nothing is allocated, and the inner loops over a tile vectorise.
 * C99, no allocation, no global state: callers may run disjoint ranges in parallel.
 */
#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "floats.h"

enum { EZH_GAUSSIAN = 1, EZH_RADEMACHER = 2, EZH_UNIFORM = 3, EZH_POOL = 4 };
enum { EZH_F32 = EZF_F32, EZH_F16 = EZF_F16, EZH_BF16 = EZF_BF16 };
enum { EZH_OK = 0, EZH_BAD_KIND = 1, EZH_BAD_DTYPE = 2, EZH_BAD_KEYS = 3 };

#define TILE 512

static uint32_t lowbias32(uint32_t x) {
    x ^= x >> 16; x *= 0x7feb352dU; x ^= x >> 15; x *= 0x846ca68bU; x ^= x >> 16;
    return x;
}

/* log(t) for t in [2^-24, 1] (normal, positive): Cephes' logf (S. Moshier), branch-free so
 * that the loop vectorises; within about one ulp of the correctly rounded value. */
static inline float log_unit(float t) {
    uint32_t b = bits_of(t);
    float e = (float)((int32_t)(b >> 23) - 127), m = float_of((b & 0x7fffffu) | 0x3f800000u);
    float x, z, y;
    int big = m > 1.41421356f;                        /* fold m into [sqrt(1/2), sqrt(2)) */
    m = big ? m * 0.5f : m;
    e = big ? e + 1.0f : e;
    x = m - 1.0f;
    z = x * x;
    y = 7.0376836292e-2f;
    y = fmaf(y, x, -1.1514610310e-1f); y = fmaf(y, x, 1.1676998740e-1f);
    y = fmaf(y, x, -1.2420140846e-1f); y = fmaf(y, x, 1.4249322787e-1f);
    y = fmaf(y, x, -1.6668057665e-1f); y = fmaf(y, x, 2.0000714765e-1f);
    y = fmaf(y, x, -2.4999993993e-1f); y = fmaf(y, x, 3.3333331174e-1f);
    y = y * x * z;
    y = fmaf(e, -2.12194440e-4f, y);
    y = fmaf(z, -0.5f, y);
    return fmaf(e, 0.693359375f, x + y);
}

/* M. Giles' single-precision erfinv ("Approximating the erfinv function", 2011), the
 * polynomials of edgezo.passes.triton_hash.erfinv: w = -log(1 - u^2); the central branch
 * (w < 5, |u| < 0.9966) is a polynomial in w - 2.5, the tail one in sqrt(w) - 3. */
static inline float erfinv_w(float u) { return -log_unit(fmaf(-u, u, 1.0f)); }

static inline float erfinv_central(float w) {
    float v = w - 2.5f, p = 2.81022636e-08f;
    p = fmaf(p, v, 3.43273939e-07f); p = fmaf(p, v, -3.5233877e-06f);
    p = fmaf(p, v, -4.39150654e-06f); p = fmaf(p, v, 0.00021858087f);
    p = fmaf(p, v, -0.00125372503f); p = fmaf(p, v, -0.00417768164f);
    p = fmaf(p, v, 0.246640727f); p = fmaf(p, v, 1.50140941f);
    return p;
}

static inline float erfinv_tail(float w) {
    float v = sqrtf(w) - 3.0f, p = -0.000200214257f;
    p = fmaf(p, v, 0.000100950558f); p = fmaf(p, v, 0.00134934322f);
    p = fmaf(p, v, -0.00367342844f); p = fmaf(p, v, 0.00573950773f);
    p = fmaf(p, v, -0.0076224613f); p = fmaf(p, v, 0.00943887047f);
    p = fmaf(p, v, 1.00167406f); p = fmaf(p, v, 2.83297682f);
    return p;
}

static inline float erfinv_giles(float u) {
    float w = erfinv_w(u);
    return (w < 5.0f ? erfinv_central(w) : erfinv_tail(w)) * u;
}

/* u in (-1, 1) of one hash word: its top 24 bits, exact in float32. */
static inline float unit_of(uint32_t x) {
    return (float)(int32_t)(x >> 8) * 1.1920928955078125e-07f - 0.999999940395355224609375f;
}

/* z of one hash word for source `kind` (float32). */
static inline float value_of(uint32_t x, int kind) {
    float u = unit_of(x);
    if (kind == EZH_RADEMACHER) return 1.0f - 2.0f * (float)(x >> 31);
    if (kind == EZH_UNIFORM) return u * 1.7320508075688772f;
    return erfinv_giles(u) * 1.4142135623730951f;
}

/* One pass over a tile whose indices share a 2^32 block: t[j] += k round(eps z(low + j)),
 * one function per (kind, dtype) so that both are constants and the loop vectorises. */
typedef void pass_fn(float *t, size_t len, uint32_t low, uint32_t k1, uint32_t k2, float scale,
                     float eps, float k);
#define EZH_PASS(NAME, KIND, DTYPE)                                                          \
    static void NAME(float *t, size_t len, uint32_t low, uint32_t k1, uint32_t k2,          \
                     float scale, float eps, float k) {                                      \
        size_t j;                                                                            \
        for (j = 0; j < len; j++) {                                                          \
            uint32_t x = lowbias32(lowbias32((low + (uint32_t)j) ^ k1) ^ k2);               \
            float a = round_to(value_of(x, KIND) * scale * eps, DTYPE);                      \
            t[j] = round_to(fmaf(k, a, t[j]), DTYPE);                                        \
        }                                                                                    \
    }

/* Gaussian: the central branch for the whole tile (it vectorises), then the rare tail elements
 * (w >= 5: 0.34% of them) again with their own branch: the values of erfinv_giles, without
 * a square root per element. */
#define EZH_GAUSS(NAME, DTYPE)                                                               \
    static void NAME(float *t, size_t len, uint32_t low, uint32_t k1, uint32_t k2,          \
                     float scale, float eps, float k) {                                      \
        float u[TILE], w[TILE], z[TILE];                                                     \
        size_t j;                                                                            \
        int tails = 0;                                                                       \
        for (j = 0; j < len; j++) {                                                          \
            u[j] = unit_of(lowbias32(lowbias32((low + (uint32_t)j) ^ k1) ^ k2));             \
            w[j] = erfinv_w(u[j]);                                                           \
            z[j] = erfinv_central(w[j]) * u[j];                                              \
            tails |= w[j] >= 5.0f;                                                           \
        }                                                                                    \
        if (tails)                                                                           \
            for (j = 0; j < len; j++)                                                        \
                if (w[j] >= 5.0f) z[j] = erfinv_tail(w[j]) * u[j];                          \
        for (j = 0; j < len; j++) {                                                          \
            float a = round_to(z[j] * 1.4142135623730951f * scale * eps, DTYPE);             \
            t[j] = round_to(fmaf(k, a, t[j]), DTYPE);                                        \
        }                                                                                    \
    }
EZH_GAUSS(gaussian_f32, EZH_F32)
EZH_GAUSS(gaussian_f16, EZH_F16)
EZH_GAUSS(gaussian_bf16, EZH_BF16)
#undef EZH_GAUSS
EZH_PASS(rademacher_f32, EZH_RADEMACHER, EZH_F32)
EZH_PASS(rademacher_f16, EZH_RADEMACHER, EZH_F16)
EZH_PASS(rademacher_bf16, EZH_RADEMACHER, EZH_BF16)
EZH_PASS(uniform_f32, EZH_UNIFORM, EZH_F32)
EZH_PASS(uniform_f16, EZH_UNIFORM, EZH_F16)
EZH_PASS(uniform_bf16, EZH_UNIFORM, EZH_BF16)
#undef EZH_PASS

static pass_fn *const PASSES[3][3] = {
    {gaussian_f32, gaussian_f16, gaussian_bf16},
    {rademacher_f32, rademacher_f16, rademacher_bf16},
    {uniform_f32, uniform_f16, uniform_bf16},
};

/* PeZO's pool: t[j] += k round(eps pool[(p0 + j) mod size]) over a tile, in runs that do not
 * wrap (eps: float32, the pass's factor already in it, as torch.mul(pool, eps) rounds it). */
typedef void pool_fn(float *t, size_t len, const float *pool, uint64_t size, uint64_t p0,
                     float eps, float k);
#define EZH_POOL_PASS(NAME, DTYPE)                                                           \
    static void NAME(float *t, size_t len, const float *pool, uint64_t size, uint64_t p0,   \
                     float eps, float k) {                                                   \
        while (len > 0) {                                                                    \
            size_t j, run = size - p0 < len ? (size_t)(size - p0) : len;                      \
            const float *z = pool + p0;                                                      \
            for (j = 0; j < run; j++) {                                                      \
                float a = round_to(z[j] * eps, DTYPE);                                       \
                t[j] = round_to(fmaf(k, a, t[j]), DTYPE);                                    \
            }                                                                                \
            t += run;                                                                        \
            len -= run;                                                                      \
            p0 = 0;                                                                          \
        }                                                                                    \
    }
EZH_POOL_PASS(pool_f32, EZH_F32)
EZH_POOL_PASS(pool_f16, EZH_F16)
EZH_POOL_PASS(pool_bf16, EZH_BF16)
#undef EZH_POOL_PASS

static pool_fn *const POOL_PASSES[3] = {pool_f32, pool_f16, pool_bf16};

/* What the passes of a call read. Counter kinds: keys (k1, k2) of pass p and global block b
 * at keys[2 (p nblocks + b - first_block)], factors scales[p], and eps. Pool: the pool's size
 * float32 numbers, pass p reading from starts[p] (z(p)[i] = pool[(starts[p] + i) mod size])
 * with eps scales[p] (eps times the pass's factor, in float32). */
typedef struct {
    int32_t kind;
    float eps;
    const uint32_t *keys;
    uint64_t first_block;
    uint64_t nblocks;
    const float *scales;
    const float *pool;
    uint64_t size;
    const uint64_t *starts;
} ezh_source;

/* Elements start .. end-1 of one tensor (global index of its element 0: offset), every pass
 * whose multiple is not zero, tile by tile (a tile never crosses a 2^32 block). */
static void run(const ezh_source *src, int dtype, void *w, uint64_t offset, uint64_t start,
                uint64_t end, const float *mults, size_t npass) {
    float t[TILE];
    const int kind = src->kind;
    pass_fn *pass = kind == EZH_POOL ? NULL : PASSES[kind - 1][dtype];
    const uint32_t *keys = src->keys;
    const uint64_t first_block = src->first_block;
    const size_t nblocks = (size_t)src->nblocks;
    const float *scales = src->scales, eps = src->eps;
    size_t p;
    while (start < end) {
        uint64_t index = offset + start;
        uint32_t low = (uint32_t)index;
        size_t len = (size_t)(end - start < TILE ? end - start : TILE);
        size_t block = (size_t)((index >> 32) - first_block);
        if ((uint64_t)low + len > ((uint64_t)1 << 32)) len = (size_t)(((uint64_t)1 << 32) - low);
        load_tile(w, dtype, (size_t)start, len, t);
        for (p = 0; p < npass; p++) {
            if (mults[p] == 0.0f) continue;
            if (kind == EZH_POOL) {
                uint64_t p0 = (src->starts[p] % src->size + index % src->size) % src->size;
                POOL_PASSES[dtype](t, len, src->pool, src->size, p0, scales[p], mults[p]);
            } else {
                const uint32_t *k = keys + 2 * (p * nblocks + block);
                pass(t, len, low, k[0], k[1], scales[p], eps, mults[p]);
            }
        }
        store_tile(w, dtype, (size_t)start, len, t);
        start += len;
    }
}

/* Whether every tensor's dtype is known and its blocks have keys (a pool: is there). */
static int check_tensors(const ezh_source *src, size_t ntensors, const int32_t *dtypes,
                         const uint64_t *offsets, const uint64_t *counts) {
    size_t i;
    const uint64_t first_block = src->first_block, nblocks = src->nblocks;
    if (src->kind < EZH_GAUSSIAN || src->kind > EZH_POOL) return EZH_BAD_KIND;
    if (src->kind == EZH_POOL && (src->pool == NULL || src->size == 0)) return EZH_BAD_KEYS;
    for (i = 0; i < ntensors; i++) {
        if (dtypes[i] < EZH_F32 || dtypes[i] > EZH_BF16) return EZH_BAD_DTYPE;
        if (counts[i] == 0 || src->kind == EZH_POOL) continue;
        if ((offsets[i] >> 32) < first_block ||
            ((offsets[i] + counts[i] - 1) >> 32) - first_block >= nblocks)
            return EZH_BAD_KEYS;
    }
    return EZH_OK;
}

/* Apply `npass` passes to elements lo .. hi-1 of the concatenation of `ntensors` tensors: tensor
 * i has counts[i] weights of dtype dtypes[i] at address ptrs[i], global indices offsets[i] ..
 * offsets[i]+counts[i]-1, and multiple mults[i npass + p] for pass p (0: the pass leaves it
 * alone); src: what the passes read (ezh_source). Threads may run disjoint [lo, hi) ranges at
 * once: every element is computed alone from its global index. done (may be NULL): set to 1
 * once every weight of the range is written, so a caller interrupted around this call knows
 * whether to take it back. */
int ezh_apply(const ezh_source *src, size_t ntensors, const uint64_t *ptrs,
              const int32_t *dtypes, const uint64_t *offsets, const uint64_t *counts,
              const float *mults, size_t npass, uint64_t lo, uint64_t hi, uint8_t *done) {
    size_t i;
    uint64_t base = 0;
    int status = check_tensors(src, ntensors, dtypes, offsets, counts);
    if (status != EZH_OK) return status;
    for (i = 0; i < ntensors && base < hi; base += counts[i], i++) {
        uint64_t start = lo > base ? lo - base : 0, end = hi - base;
        if (end > counts[i]) end = counts[i];
        if (start < end)
            run(src, dtypes[i], (void *)(uintptr_t)ptrs[i], offsets[i], start, end,
                mults + i * npass, npass);
    }
    if (done) *done = 1;
    return EZH_OK;
}

/* float32 values to float16 (dtype 1) or bfloat16 (dtype 2) bits in `out`, those bits back
 * to float32 in `back`, and the values rounded in float32 (round_to) in `rounded`: the
 * conversions above, exposed for exhaustive tests. */
int ezh_convert(int dtype, const float *x, uint16_t *out, float *back, float *rounded, size_t n) {
    size_t i;
    if (dtype != EZH_F16 && dtype != EZH_BF16) return EZH_BAD_DTYPE;
    for (i = 0; i < n; i++) {
        out[i] = dtype == EZH_F16 ? f32_to_f16(x[i]) : f32_to_bf16(x[i]);
        back[i] = dtype == EZH_F16 ? f16_to_f32(out[i]) : float_of((uint32_t)out[i] << 16);
        rounded[i] = round_to(x[i], dtype);
    }
    return EZH_OK;
}

/* z of hash words x[0..n) for source `kind` (float32): the map above, for exhaustive tests. */
int ezh_values(int kind, const uint32_t *x, float *z, size_t n) {
    size_t i;
    if (kind < EZH_GAUSSIAN || kind > EZH_UNIFORM) return EZH_BAD_KIND;
    for (i = 0; i < n; i++) z[i] = value_of(x[i], kind);
    return EZH_OK;
}
