/* Compiled hardware-RNG streams (edgezo.directions.hwrng): raw outputs and fused passes.
 *
 * A stream is n registers (n = 1: one LFSR or xorshift; n > 1: PeZO's rotating array), all
 * stepped once per clock cycle by one linear map M over GF(2) on 32-bit words:
 *
 *   x_r(c) = M^(c+1) seed_r                  register r after cycle c = 0, 1, ...
 *   S[c n + j] = u(x_{(j + c + phase) mod n}(c)),   u(x) = (x >> shift) & (2^b - 1)
 *
 * (phase: the cycles Python has already jumped, mod n; 0 unless a position is >= 2^61).
 * Every linear map is applied as four 256-entry byte tables,
 *   M x = T0[x & 255] ^ T1[(x >> 8) & 255] ^ T2[(x >> 16) & 255] ^ T3[x >> 24],
 * made by edgezo.directions.hwrng.GF2Map: those of M^(2^i) (a jump to any cycle is one
 * table application per set bit of the cycle count) and those of M^L. A cursor holds L
 * consecutive cycles of every register (n L independent words: even one register is not one
 * serial chain) and advances them all by M^L at once: by the four tables, or, where Python
 * found it exact, by one look-up (a Galois LFSR's c <= 8 steps) or by xorshift's shifts. The
 * outputs do not depend on L, on where a range starts, or on how a caller cuts a window.
 *
 * The pass is edgezo.passes.reference on HardwareRNG.stream, one float32 rounding per step:
 *   v = 2u + 1 - 2^b                    exact int32 (b <= 24)
 *   z = float32(v) * scale              scale = float32(sqrt(3 / (4^b - 1)))
 *   a = round_dtype(z * eps)            eps as float32, as torch's mul_ by a Python float
 *   w = round_dtype(fma(k_p, a, w))     float32 FMA, as torch's add_ (k_p rounded by Python)
 * for every pass p, each weight read and written once per call (tiles on the stack).
 * C99, no allocation, no global state: callers run disjoint ranges in parallel, each with its
 * own work area.
 */
#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "floats.h"

/* With AVX-512 (x86-64, -march=native), words step 16 at a time: the round map as eight
 * 16-entry nibble tables, each one in-register permutation (vpermd); elsewhere (or with
 * -DEZS_SCALAR, which the tests build too) one word at a time by the rules below. Both give
 * the same words. */
#if defined(__AVX512F__) && !defined(EZS_SCALAR)
#include <immintrin.h>
#define EZS_SIMD 1
#else
#define EZS_SIMD 0
#endif

enum { EZS_OK = 0, EZS_BAD_MACHINE = 1, EZS_BAD_DTYPE = 2, EZS_BAD_POSITION = 3 };

#define TILE 512
#define EZS_POWERS 64 /* tables of M^(2^i) for i < 64: any uint64 cycle count */

/* How a cursor steps its words to the next round (M^L): always right with the byte tables;
 * two faster forms where Python found them exact (edgezo.passes.streams.prepare). */
enum {
    EZS_TABLES = 0,  /* four look-ups in `round` (4 x 256) */
    EZS_CHUNK = 1,   /* a Galois LFSR's c <= 8 steps: (x >> c) ^ round[x & (2^c - 1)] */
    EZS_XORSHIFT = 2 /* M^L = M is xorshift32 (13, 17, 5): shifts, vectorised */
};

/* The generator: registers, lanes, output bits and the byte tables (4 x 256 words each). */
typedef struct {
    uint32_t n;             /* registers (1: a single register) */
    uint32_t lanes;         /* consecutive cycles a cursor holds, L */
    uint32_t bits;          /* output bits b, 1..24 */
    uint32_t shift;         /* u = (x >> shift) & (2^b - 1) */
    uint32_t rule;          /* EZS_TABLES, EZS_CHUNK or EZS_XORSHIFT */
    uint32_t chunk;         /* EZS_CHUNK: c */
    const uint32_t *cycle;  /* tables of M */
    const uint32_t *round;  /* tables of M^L (EZS_CHUNK: its 2^c values on the low bits) */
    const uint32_t *powers; /* tables of M^(2^i), i < EZS_POWERS, one after the other */
    const uint32_t *nibbles; /* M^L of nibble k: nibbles[16 k + v] = M^L (v << 4k), k < 8 */
} ezs_machine;

/* Where one window is read: lanes x n register states, and their outputs when read in part. */
typedef struct {
    uint32_t *x;  /* x[l n + r]: register r after cycle c + l, the round being read */
    uint32_t *u;  /* u[l n + j]: stream position (c + l) n + j, once `have_u` */
    uint64_t pos; /* stream position of slot k of the round */
    uint32_t k;   /* slots of the round already read */
    uint32_t rot; /* (c + phase) mod n */
    int have_u;   /* u holds the round's outputs */
    int ready;    /* 0 until the first seek */
} ezs_cursor;

static inline uint32_t apply4(const uint32_t *t, uint32_t x) {
    return t[x & 255u] ^ t[256 + ((x >> 8) & 255u)] ^ t[512 + ((x >> 16) & 255u)] ^
           t[768 + (x >> 24)];
}

/* One word to the next round; `rule` is a constant where this is inlined. */
static inline uint32_t next(const uint32_t *round, uint32_t chunk, uint32_t y, uint32_t rule) {
    if (rule == EZS_XORSHIFT) {
        y ^= y << 13;
        y ^= y >> 17;
        return y ^ (y << 5);
    }
    if (rule == EZS_CHUNK) return (y >> chunk) ^ round[y & ((1u << chunk) - 1u)];
    return apply4(round, y);
}

/* M^e x: one table application per set bit of e. */
static uint32_t jump(const ezs_machine *m, uint32_t x, uint64_t e) {
    uint32_t i;
    for (i = 0; e; i++, e >>= 1)
        if (e & 1u) x = apply4(m->powers + 1024 * (size_t)i, x);
    return x;
}

/* u of the round into dst, in stream order: lane l's slot j holds register (j + rot + l) mod n. */
static void emit(const ezs_machine *m, const ezs_cursor *c, uint32_t *dst) {
    const uint32_t n = m->n, mask = ((uint32_t)1 << m->bits) - 1u, shift = m->shift;
    uint32_t l, j, first = c->rot;
    if (n == 1) { /* a single register: its lanes in order */
        for (l = 0; l < m->lanes; l++) dst[l] = (c->x[l] >> shift) & mask;
        return;
    }
    for (l = 0; l < m->lanes; l++) {
        const uint32_t *x = c->x + (size_t)l * n;
        uint32_t *u = dst + (size_t)l * n, head = n - first;
        for (j = 0; j < head; j++) u[j] = (x[first + j] >> shift) & mask;
        for (j = head; j < n; j++) u[j] = (x[j - head] >> shift) & mask;
        first = first + 1 == n ? 0 : first + 1; /* the next cycle rotates by one */
    }
}

static void outputs(const ezs_machine *m, ezs_cursor *c) {
    emit(m, c, c->u);
    c->have_u = 1;
}

/* The cursor at relative stream position pos of a window whose registers start at `seeds`. */
static void seek(const ezs_machine *m, ezs_cursor *c, const uint32_t *seeds, uint32_t phase,
                 uint64_t pos) {
    const uint32_t n = m->n;
    uint64_t cycle = pos / n;
    size_t r, i;
    for (r = 0; r < n; r++) c->x[r] = jump(m, seeds[r], cycle + 1);
    for (i = n; i < (size_t)m->lanes * n; i++) c->x[i] = apply4(m->cycle, c->x[i - n]);
    c->rot = (uint32_t)(((uint64_t)(cycle % n) + phase) % n);
    c->have_u = 0;
    c->k = (uint32_t)(pos % n);
    c->pos = pos;
    c->ready = 1;
}

/* GCC would vectorise the table look-ups with gathers, 2-3x slower than scalar loads here. */
#if defined(__GNUC__) && !defined(__clang__)
#define SCALAR __attribute__((optimize("no-tree-vectorize")))
#else
#define SCALAR
#endif

/* Whole rounds from slot 0: every output goes to `out` in stream order while its word steps
 * to the next round (one read and one write of each word); one function per rule. */
#define EZS_ROUNDS(NAME, RULE, ATTR)                                                         \
    ATTR static void NAME(const ezs_machine *m, ezs_cursor *c, uint32_t *restrict out,       \
                          size_t count) {                                                    \
        const uint32_t n = m->n, lanes = m->lanes, chunk = m->chunk, shift = m->shift;       \
        const uint32_t mask = ((uint32_t)1 << m->bits) - 1u, *restrict round = m->round;     \
        const uint32_t turn = lanes % n; /* the rotation of one round */                      \
        uint32_t *restrict x = c->x, rot = c->rot;                                           \
        size_t q, l, j;                                                                      \
        for (q = 0; q < count; q++) {                                                        \
            uint32_t first = rot;                                                            \
            if (n == 1) { /* a single register: its lanes in order */                        \
                for (l = 0; l < lanes; l++) {                                                \
                    uint32_t y = x[l];                                                       \
                    out[l] = (y >> shift) & mask;                                            \
                    x[l] = next(round, chunk, y, RULE);                                      \
                }                                                                            \
                out += lanes;                                                                \
                continue;                                                                    \
            }                                                                                \
            for (l = 0; l < lanes; l++, out += n) {                                          \
                uint32_t *restrict xl = x + l * n, head = n - first;                         \
                for (j = 0; j < head; j++) {                                                 \
                    uint32_t y = xl[first + j];                                              \
                    out[j] = (y >> shift) & mask;                                            \
                    xl[first + j] = next(round, chunk, y, RULE);                             \
                }                                                                            \
                for (j = head; j < n; j++) {                                                 \
                    uint32_t y = xl[j - head];                                               \
                    out[j] = (y >> shift) & mask;                                            \
                    xl[j - head] = next(round, chunk, y, RULE);                              \
                }                                                                            \
                first = first + 1 == n ? 0 : first + 1;                                      \
            }                                                                                \
            rot = rot + turn >= n ? rot + turn - n : rot + turn;                             \
        }                                                                                    \
        c->rot = rot;                                                                        \
    }
EZS_ROUNDS(rounds_tables, EZS_TABLES, SCALAR)
EZS_ROUNDS(rounds_chunk, EZS_CHUNK, SCALAR)
EZS_ROUNDS(rounds_xorshift, EZS_XORSHIFT, )
#undef EZS_ROUNDS

typedef void rounds_fn(const ezs_machine *m, ezs_cursor *c, uint32_t *out, size_t count);
static rounds_fn *const ROUNDS[3] = {rounds_tables, rounds_chunk, rounds_xorshift};

/* Every word of x[0..count) to the next round: 16 at a time where AVX-512 is compiled in. */
static void step_words(const ezs_machine *m, uint32_t *x, size_t count) {
    size_t i = 0;
#if EZS_SIMD
    const uint32_t *t = m->nibbles;
    const __m512i t0 = _mm512_loadu_si512(t), t1 = _mm512_loadu_si512(t + 16);
    const __m512i t2 = _mm512_loadu_si512(t + 32), t3 = _mm512_loadu_si512(t + 48);
    const __m512i t4 = _mm512_loadu_si512(t + 64), t5 = _mm512_loadu_si512(t + 80);
    const __m512i t6 = _mm512_loadu_si512(t + 96), t7 = _mm512_loadu_si512(t + 112);
    for (; i + 16 <= count; i += 16) { /* vpermd reads the index's low 4 bits only */
        __m512i v = _mm512_loadu_si512(x + i), a = _mm512_permutexvar_epi32(v, t0);
        a = _mm512_xor_si512(a, _mm512_permutexvar_epi32(_mm512_srli_epi32(v, 4), t1));
        a = _mm512_xor_si512(a, _mm512_permutexvar_epi32(_mm512_srli_epi32(v, 8), t2));
        a = _mm512_xor_si512(a, _mm512_permutexvar_epi32(_mm512_srli_epi32(v, 12), t3));
        a = _mm512_xor_si512(a, _mm512_permutexvar_epi32(_mm512_srli_epi32(v, 16), t4));
        a = _mm512_xor_si512(a, _mm512_permutexvar_epi32(_mm512_srli_epi32(v, 20), t5));
        a = _mm512_xor_si512(a, _mm512_permutexvar_epi32(_mm512_srli_epi32(v, 24), t6));
        a = _mm512_xor_si512(a, _mm512_permutexvar_epi32(_mm512_srli_epi32(v, 28), t7));
        _mm512_storeu_si512(x + i, a);
    }
#endif
    for (; i < count; i++) x[i] = next(m->round, m->chunk, x[i], m->rule);
}

/* Whole rounds with AVX-512: the outputs of a round in stream order, then every word steps. */
static void rounds_simd(const ezs_machine *m, ezs_cursor *c, uint32_t *out, size_t count) {
    const size_t words = (size_t)m->lanes * m->n;
    const uint32_t turn = m->lanes % m->n;
    size_t q;
    for (q = 0; q < count; q++, out += words) {
        emit(m, c, out);
        step_words(m, c->x, words);
        c->rot = c->rot + turn >= m->n ? c->rot + turn - m->n : c->rot + turn;
    }
}

/* The next round, after a round read in part: every word steps, the rotation by L. */
static void step_all(const ezs_machine *m, ezs_cursor *c) {
    step_words(m, c->x, (size_t)m->lanes * m->n);
    c->rot = (uint32_t)(((uint64_t)c->rot + m->lanes) % m->n);
    c->have_u = 0;
    c->k = 0;
}

/* The next len outputs u into out: whole rounds straight from the words, parts through u. */
static void take(const ezs_machine *m, ezs_cursor *c, uint32_t *out, size_t len) {
    const size_t words = (size_t)m->lanes * m->n;
    while (len > 0) {
        size_t part;
        if (c->k == 0 && len >= words) {
            part = len / words;
            if (EZS_SIMD && (size_t)m->lanes * m->n >= 16)
                rounds_simd(m, c, out, part);
            else
                ROUNDS[m->rule](m, c, out, part);
            part *= words;
        } else {
            if (!c->have_u) outputs(m, c);
            part = words - c->k < len ? words - c->k : len;
            memcpy(out, c->u + c->k, part * sizeof(uint32_t));
            c->k += (uint32_t)part;
            if (c->k == words) step_all(m, c);
        }
        c->pos += part;
        out += part;
        len -= part;
    }
}

static int check_machine(const ezs_machine *m) {
    if (m->n < 1 || m->lanes < 1 || m->bits < 1 || m->bits > 24 || m->shift > 32 - m->bits)
        return EZS_BAD_MACHINE;
    if (m->rule > EZS_XORSHIFT || (m->rule == EZS_CHUNK && (m->chunk < 1 || m->chunk > 8)))
        return EZS_BAD_MACHINE;
    if ((uint64_t)m->n * m->lanes > UINT32_MAX) return EZS_BAD_MACHINE;
    return (m->cycle && m->round && m->powers && m->nibbles) ? EZS_OK : EZS_BAD_MACHINE;
}

/* The cursor of work area `work` (2 L n words: states, then outputs). */
static ezs_cursor cursor_at(const ezs_machine *m, uint32_t *work) {
    ezs_cursor c;
    memset(&c, 0, sizeof c);
    c.x = work;
    c.u = work + (size_t)m->lanes * m->n;
    return c;
}

/* Raw outputs u of relative stream positions pos .. pos+count-1 (pos + count <= 2^63) of a
 * window whose registers start at seeds[0..n) with rotation phase `phase`; work: 2 L n words. */
int ezs_raw(const ezs_machine *m, const uint32_t *seeds, uint32_t phase, uint64_t pos,
            uint32_t *out, size_t count, uint32_t *work) {
    ezs_cursor c;
    int status = check_machine(m);
    if (status != EZS_OK) return status;
    if (pos > ((uint64_t)1 << 63) - count || phase >= m->n) return EZS_BAD_POSITION;
    c = cursor_at(m, work);
    seek(m, &c, seeds, phase, pos);
    take(m, &c, out, count);
    return EZS_OK;
}

/* One pass over a tile: t[j] = round(fma(k, round(float32(v_j) scale eps), t[j])), one function
 * per dtype so that it is a constant and the loop vectorises. */
typedef void pass_fn(float *t, const uint32_t *u, size_t len, int32_t low, float scale, float eps,
                     float k);
#define EZS_PASS(NAME, DTYPE)                                                                \
    static void NAME(float *t, const uint32_t *u, size_t len, int32_t low, float scale,      \
                     float eps, float k) {                                                   \
        size_t j;                                                                            \
        for (j = 0; j < len; j++) {                                                          \
            float z = (float)((int32_t)(u[j] << 1) + low) * scale;                           \
            float a = round_to(z * eps, DTYPE);                                              \
            t[j] = round_to(fmaf(k, a, t[j]), DTYPE);                                        \
        }                                                                                    \
    }
EZS_PASS(pass_f32, EZF_F32)
EZS_PASS(pass_f16, EZF_F16)
EZS_PASS(pass_bf16, EZF_BF16)
#undef EZS_PASS

static pass_fn *const PASSES[3] = {pass_f32, pass_f16, pass_bf16};

/* The passes' arguments shared by every tensor of a call. */
typedef struct {
    size_t npass;
    const uint32_t *seeds;  /* [npass][n]: registers at the start of each pass's window */
    const uint64_t *starts; /* [npass]: relative stream position of global index 0 */
    const uint32_t *phases; /* [npass] */
    float scale, eps;
} ezs_passes;

/* Elements start .. end-1 of one tensor (global index of element 0: offset), every pass whose
 * multiple is not zero, tile by tile; a cursor seeks only where its window is not continued. */
static void run(const ezs_machine *m, const ezs_passes *ps, ezs_cursor *cursors, int dtype,
                void *w, uint64_t offset, uint64_t start, uint64_t end, const float *mults) {
    float t[TILE];
    uint32_t u[TILE];
    const int32_t low = 1 - (int32_t)((uint32_t)1 << m->bits);
    size_t p;
    while (start < end) {
        size_t len = (size_t)(end - start < TILE ? end - start : TILE);
        load_tile(w, dtype, (size_t)start, len, t);
        for (p = 0; p < ps->npass; p++) {
            ezs_cursor *c = cursors + p;
            uint64_t want = ps->starts[p] + offset + start;
            if (mults[p] == 0.0f) continue;
            if (!c->ready || c->pos != want)
                seek(m, c, ps->seeds + p * (size_t)m->n, ps->phases[p], want);
            take(m, c, u, len);
            PASSES[dtype](t, u, len, low, ps->scale, ps->eps, mults[p]);
        }
        store_tile(w, dtype, (size_t)start, len, t);
        start += len;
    }
}

/* Apply `npass` passes to elements lo .. hi-1 of the concatenation of `ntensors` tensors: tensor
 * i has counts[i] weights of dtype dtypes[i] at address ptrs[i], global indices offsets[i] ..
 * offsets[i]+counts[i]-1, and multiple mults[i npass + p] for pass p (0: the pass leaves it
 * alone). Pass p reads stream positions starts[p] + global index, its registers starting at
 * seeds[p n ..] with rotation phases[p]; every position must stay below 2^63. work: npass
 * cursors of 2 L n words each, this call's own. done (may be NULL): set to 1 once every weight
 * of the range is written, so a caller interrupted around this call knows whether to take it
 * back. Threads may run disjoint [lo, hi) ranges at once. */
int ezs_apply(const ezs_machine *m, size_t ntensors, const uint64_t *ptrs, const int32_t *dtypes,
              const uint64_t *offsets, const uint64_t *counts, const float *mults, size_t npass,
              const uint32_t *seeds, const uint64_t *starts, const uint32_t *phases, float scale,
              float eps, uint64_t lo, uint64_t hi, uint32_t *work, uint8_t *done) {
    ezs_cursor cursors[64];
    ezs_passes ps;
    uint64_t base = 0;
    size_t i, p;
    int status = check_machine(m);
    if (status != EZS_OK) return status;
    if (npass > 64) return EZS_BAD_POSITION;
    for (i = 0; i < ntensors; i++) {
        if (dtypes[i] < EZF_F32 || dtypes[i] > EZF_BF16) return EZS_BAD_DTYPE;
        if (offsets[i] >= ((uint64_t)1 << 61) || counts[i] >= ((uint64_t)1 << 61))
            return EZS_BAD_POSITION;
    }
    for (p = 0; p < npass; p++) {
        if (phases[p] >= m->n || starts[p] >= ((uint64_t)1 << 62)) return EZS_BAD_POSITION;
        cursors[p] = cursor_at(m, work + 2 * p * (size_t)m->lanes * m->n);
    }
    ps.npass = npass;
    ps.seeds = seeds;
    ps.starts = starts;
    ps.phases = phases;
    ps.scale = scale;
    ps.eps = eps;
    for (i = 0; i < ntensors && base < hi; base += counts[i], i++) {
        uint64_t start = lo > base ? lo - base : 0, end = hi - base;
        if (end > counts[i]) end = counts[i];
        if (start < end)
            run(m, &ps, cursors, dtypes[i], (void *)(uintptr_t)ptrs[i], offsets[i], start, end,
                mults + i * npass);
    }
    if (done) *done = 1;
    return EZS_OK;
}
