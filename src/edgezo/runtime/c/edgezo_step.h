/*
 * edgezo_step.h -- the device side of one QZO-FF step (PAPERS.md B) in portable C99.
 *
 * Integer arithmetic only (no floating point anywhere), fixed-width types only,
 * no allocation: every buffer is the caller's. Bit-identical to edgezo's Python
 * fixed-point path (edgezo.formats.fixedpoint); edgezo.runtime.device checks it.
 *
 * Notation, per tensor of `rows` x `cols` integers w_q (rows = output channels
 * with per-channel scales, else 1), b-bit weights saturated to +/-qmax:
 *
 *   read     out = sat(requant_dz(w_q * one + sum_t net_t * eps_q[row] * z_q,t))
 *            (elements whose mask bit is 0 read w_q). The stored w_q is not
 *            touched, so "restore" has nothing to undo: stop reading `out`.
 *   update   w_q <- sat(w_q - requant_row(g)),  g = sum_t n_t * z_q,t
 *   decay    w_q <- sat(w_q - requant_row(w_q))
 *   requant  (x * m + 2**(k-1)) >> k   in 64-bit two's complement (round half up)
 *
 * z_q,t[i] is the stream value at position base_t + i (base_t = (step * queries +
 * query) * d + the tensor's offset in the flat vector), from one source:
 *   EZ_POOL          PeZO's pool: table[(pos) mod size], int8 z_q made by Python
 *   EZ_LFSR          leap-forward Galois LFSR (steps per cycle), low `bits` bits out
 *   EZ_XORSHIFT      xorshift32 (13, 17, 5), high `bits` bits out
 *   EZ_ARRAY_*       PeZO's rotating array of n such registers:
 *                    S[c*n + j] = u_{(j + c) mod n}(c)
 *   EZ_STEPS         a counter source whose z_q is a step function of the hash's
 *                    24 bits v = x >> 8 (Gaussian, Uniform): z_q = z_min + the number
 *                    of `edges` <= v, edges made by Python from the real-valued map
 *   EZ_RADEMACHER    the counter source: bit 31 of edgezo's integer hash of
 *                    (seed, step, query, global index i) picks table[0] (z = +1)
 *                    or table[1] (z = -1); base is then the index of element 0
 * A hardware output u becomes v = 2u + 1 - 2**bits (native odd integers), or
 * table[u] when Python supplied a lookup table (non-native widths).
 * Any position is reached by a jump M**k over GF(2), with M (the one-cycle map,
 * <= 32 words) built on the fly on the stack: nothing but seeds is stored, so any
 * (step, query) -- a past step replayed by an update rule included -- costs
 * O(width**2 log k) to reach.
 *
 * Memory: the device keeps the source (pool table or seeds), one cursor per term
 * and the per-row constants (ez_state_bytes counts them). A call uses about 2.5 KB
 * of stack (EZ_BLOCK = 64 elements of int64 sums, -DEZ_BLOCK=n for another size; the
 * CPU build uses 256, about 7 KB; and a 1 KB table of 8 LFSR steps, which
 * -DEZ_LFSR_TABLE=0 turns off at half the LFSR speed).
 */
#ifndef EDGEZO_STEP_H
#define EDGEZO_STEP_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define EZ_VERSION 1

enum ez_kind {
    EZ_POOL = 0,
    EZ_LFSR = 1,
    EZ_XORSHIFT = 2,
    EZ_ARRAY_LFSR = 3,
    EZ_ARRAY_XORSHIFT = 4,
    EZ_RADEMACHER = 5,
    EZ_STEPS = 6
};

enum ez_status {
    EZ_OK = 0,
    EZ_BAD_SOURCE = 1, /* unknown kind, zero pool, bits/width out of range, no seeds */
    EZ_BAD_TENSOR = 2, /* element size not 1 or 2, zero rows, or rows of factors mismatch */
    EZ_NO_WORK = 3     /* the work area holds fewer terms (or registers) than asked */
};

/* A perturbation source (read-only on the device). */
typedef struct {
    int32_t kind;          /* enum ez_kind */
    uint32_t bits;         /* hardware output bits b (1..24) */
    uint32_t width;        /* LFSR width (3..32); 32 for xorshift */
    uint32_t taps;         /* Galois mask of an LFSR */
    uint32_t steps;        /* LFSR steps per clock cycle */
    uint32_t n_regs;       /* registers: 1, or the array's n */
    const uint32_t *seeds; /* n_regs register seeds; Rademacher: the seed's low, high words */
    const int8_t *table;   /* pool z_q (EZ_POOL), or u -> z_q lookup; NULL: native v */
    uint64_t size;         /* pool size P (EZ_POOL) */
    const uint32_t *edges; /* EZ_STEPS: ascending v where z_q goes up by one */
    uint32_t n_edges;      /* EZ_STEPS: how many */
    int32_t z_min;         /* EZ_STEPS: z_q of v = 0 */
    const uint32_t *index; /* EZ_STEPS, optional (NULL: binary search over the edges):
                              index[b] = #{edges < b * 2**EZ_INDEX_SHIFT}, for the
                              2**(24 - EZ_INDEX_SHIFT) buckets b of v (16 KB) */
} ez_source;

/* Buckets of the optional EZ_STEPS index: v >> EZ_INDEX_SHIFT (v has 24 bits). */
#define EZ_INDEX_SHIFT 12

/* One term: the stream position of the tensor's element 0 (counter sources: its global
   index, with step and query), and its integer weight. */
typedef struct {
    uint64_t base;
    uint64_t step, query;
    int32_t net;
} ez_term;

/* A generator cursor (one per term); `regs` points into the caller's work words. */
typedef struct {
    uint64_t pos;   /* pool index, or single register: cycles done */
    uint32_t reg;   /* single register: state */
    uint32_t j, cm; /* array: position in the cycle, cycle mod n */
    uint32_t *regs; /* array: the n register states of the current cycle */
    uint64_t step, query; /* counter: the perturbation, and its two keys */
    uint32_t k1, k2;
} ez_cursor;

/* Scratch for up to `terms` terms: `cursors[terms]`, `words[terms * n_regs]`. */
typedef struct {
    ez_cursor *cursors;
    uint32_t *words;
    size_t terms;
    size_t words_len;
} ez_work;

/* A weight tensor: `rows` x `cols` integers of `elem` bytes (1: int8, 2: int16). */
typedef struct {
    void *data;
    uint32_t elem;
    size_t rows, cols;
    int32_t qmax;         /* 2**(bits-1) - 1 */
    const uint8_t *mask;  /* 1 bit per weight, LSB first (bit i%8 of byte i/8); NULL: all */
} ez_tensor;

/* Real factors as (m, k), one or `rows` of them. */
typedef struct {
    const int64_t *m;
    const int32_t *k;
    size_t count; /* 1 (per tensor) or rows (per channel) */
} ez_factors;

/* The perturbed read's constants: one_q, requant_dz and eps_q (1 or rows of them). */
typedef struct {
    int32_t one;
    int64_t m_dz;
    int32_t k_dz;
    const int32_t *eps_q;
    size_t eps_count;
} ez_read_params;

/* out <- perturbed read of t (same element size as t). */
int ez_read(const ez_source *src, const ez_tensor *t, void *out, const ez_read_params *rp,
            const ez_term *terms, size_t n_terms, ez_work *work);

/* t <- sat(t - requant(sum_t n_t z_q,t)), masked elements unchanged. */
int ez_update(const ez_source *src, ez_tensor *t, const ez_factors *f, const ez_term *terms,
              size_t n_terms, ez_work *work);

/* ez_read and ez_update on flat elements lo .. hi-1 only (row-major: element i is in row
   i / cols); disjoint ranges may run at once, each with its own work area. */
int ez_read_range(const ez_source *src, const ez_tensor *t, void *out, const ez_read_params *rp,
                  const ez_term *terms, size_t n_terms, ez_work *work, size_t lo, size_t hi);
int ez_update_range(const ez_source *src, ez_tensor *t, const ez_factors *f,
                    const ez_term *terms, size_t n_terms, ez_work *work, size_t lo, size_t hi);

/* t <- sat(t - requant(t)) on the trained elements (weight decay). */
int ez_decay(ez_tensor *t, const ez_factors *f);

/* z_q[i] of stream positions pos .. pos + n - 1 (Rademacher: of indices pos .., step 0,
   query 0); for checks; int32 out. */
int ez_stream(const ez_source *src, uint64_t pos, int32_t *out, size_t n, ez_work *work);

/* The multiply-and-shift itself: (x * m + 2**(k-1)) >> k, 64-bit two's complement. */
int64_t ez_requant(int64_t x, int64_t m, int32_t k);

/* Bytes the device keeps beyond inference for one source, `terms` cursors,
   `rows` factor rows in all (eps_q, m, k of read and update) and `masked`
   weights with a mask bit: tables + seeds + cursors + constants + step counter. */
uint64_t ez_state_bytes(const ez_source *src, size_t terms, size_t rows, uint64_t masked);

#ifdef __cplusplus
}
#endif

#endif /* EDGEZO_STEP_H */
