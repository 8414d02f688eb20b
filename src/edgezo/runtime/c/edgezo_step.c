/*
 * edgezo_step.c -- see edgezo_step.h. Integer arithmetic only, C99, no allocation.
 */
#include "edgezo_step.h"

/* Elements per block: the stack holds EZ_BLOCK int64 sums and int32 z values. */
#ifndef EZ_BLOCK
#define EZ_BLOCK 64
#endif

/* -- 64-bit two's complement without undefined behaviour ----------------------------- */
static int64_t ez_signed(uint64_t u)
{
    /* uint64 -> int64 by two's complement (the conversion itself is implementation-defined) */
    if (u <= (uint64_t)INT64_MAX) {
        return (int64_t)u;
    }
    return -(int64_t)(~u) - 1;
}

static int64_t ez_asr(int64_t x, int32_t k)
{
    /* arithmetic shift right (floor division by 2**k), portable for negative x */
    return x < 0 ? ~((~x) >> k) : x >> k;
}

int64_t ez_requant(int64_t x, int64_t m, int32_t k)
{
    uint64_t p = (uint64_t)x * (uint64_t)m; /* wraps like a 64-bit multiplier */
    if (k > 0) {
        p += (uint64_t)1 << (k - 1);
    }
    return ez_asr(ez_signed(p), k);
}

static int64_t ez_sat(int64_t x, int32_t qmax)
{
    return x > qmax ? qmax : (x < -(int64_t)qmax ? -(int64_t)qmax : x);
}

/* -- the registers: one clock cycle, the output, and jumps over GF(2) ---------------- */
static int ez_is_array(const ez_source *s)
{
    return s->kind == EZ_ARRAY_LFSR || s->kind == EZ_ARRAY_XORSHIFT;
}

static int ez_is_lfsr(const ez_source *s)
{
    return s->kind == EZ_LFSR || s->kind == EZ_ARRAY_LFSR;
}

static uint32_t ez_cycle(const ez_source *s, uint32_t x)
{
    uint32_t i;
    if (ez_is_lfsr(s)) {
        for (i = 0; i < s->steps; i++) { /* lsb = x & 1; x >>= 1; if (lsb) x ^= taps */
            x = (x >> 1) ^ (s->taps & ((uint32_t)0 - (x & (uint32_t)1)));
        }
        return x;
    }
    x ^= (uint32_t)((x << 13) & UINT32_C(0xFFFFFFFF));
    x ^= x >> 17;
    x ^= (uint32_t)((x << 5) & UINT32_C(0xFFFFFFFF));
    return x;
}

/* A leap-forward LFSR's cycle of `steps` steps, c = min(steps, 8) at a time: c steps map
   x to (x >> c) ^ t8[x & (2**c - 1)] (the high bits only shift; the low bits' feedback is
   linear), with t8 built on the caller's stack per call (EZ_LFSR_TABLE 0: bit by bit). */
#ifndef EZ_LFSR_TABLE
#define EZ_LFSR_TABLE 1
#endif

static int ez_fast_lfsr(const ez_source *s)
{
    return EZ_LFSR_TABLE && (s->kind == EZ_LFSR || s->kind == EZ_ARRAY_LFSR) && s->steps >= 2;
}

static uint32_t ez_chunk(const ez_source *s)
{
    return s->steps < 8 ? s->steps : 8;
}

static void ez_lfsr_table(const ez_source *s, uint32_t *t8)
{
    uint32_t v, i, x, c = ez_chunk(s);
    if (!ez_fast_lfsr(s)) {
        return;
    }
    for (v = 0; v < ((uint32_t)1 << c); v++) {
        for (x = v, i = 0; i < c; i++) {
            x = (x >> 1) ^ (s->taps & ((uint32_t)0 - (x & (uint32_t)1)));
        }
        t8[v] = x;
    }
}

static uint32_t ez_next(const ez_source *s, const uint32_t *t8, uint32_t x)
{
    uint32_t i = 0, c = ez_chunk(s), low = ((uint32_t)1 << c) - 1;
    if (ez_fast_lfsr(s)) {
        for (; i + c <= s->steps; i += c) {
            x = (x >> c) ^ t8[x & low];
        }
        for (; i < s->steps; i++) {
            x = (x >> 1) ^ (s->taps & ((uint32_t)0 - (x & (uint32_t)1)));
        }
        return x;
    }
    return ez_cycle(s, x);
}

static uint32_t ez_width(const ez_source *s)
{
    return ez_is_lfsr(s) ? s->width : 32;
}

static int32_t ez_output(const ez_source *s, uint32_t x)
{
    uint32_t u;
    if (ez_is_lfsr(s)) {
        u = x & (((uint32_t)1 << s->bits) - (uint32_t)1);
    } else {
        u = x >> (32 - s->bits);
    }
    if (s->table != NULL) {
        return s->table[u];
    }
    return (int32_t)(2 * u + 1) - (int32_t)((uint32_t)1 << s->bits);
}

/* x times the matrix whose columns are cols[0..w-1] */
static uint32_t ez_apply(const uint32_t *cols, uint32_t w, uint32_t x)
{
    uint32_t acc = 0, j;
    for (j = 0; j < w; j++) {
        if ((x >> j) & (uint32_t)1) {
            acc ^= cols[j];
        }
    }
    return acc;
}

/* states[r] <- M**e states[r]: square-and-multiply with M built on the stack */
static void ez_jump(const ez_source *s, uint64_t e, uint32_t *states, size_t count)
{
    uint32_t p[32], q[32], w = ez_width(s), j;
    size_t r;
    for (j = 0; j < w; j++) {
        p[j] = ez_cycle(s, (uint32_t)1 << j);
    }
    while (e) {
        if (e & 1) {
            for (r = 0; r < count; r++) {
                states[r] = ez_apply(p, w, states[r]);
            }
        }
        e >>= 1;
        if (e) {
            for (j = 0; j < w; j++) {
                q[j] = ez_apply(p, w, p[j]);
            }
            for (j = 0; j < w; j++) {
                p[j] = q[j];
            }
        }
    }
}

/* -- the counter hash (edgezo.directions.hashing), 64-bit and 32-bit words ------------------- */
static uint64_t ez_splitmix64(uint64_t x)
{
    x += UINT64_C(0x9E3779B97F4A7C15);
    x = (x ^ (x >> 30)) * UINT64_C(0xBF58476D1CE4E5B9);
    x = (x ^ (x >> 27)) * UINT64_C(0x94D049BB133111EB);
    return x ^ (x >> 31);
}

static uint32_t ez_lowbias32(uint32_t x)
{
    x ^= x >> 16;
    x = (uint32_t)((x * UINT32_C(0x7FEB352D)) & UINT32_C(0xFFFFFFFF));
    x ^= x >> 15;
    x = (uint32_t)((x * UINT32_C(0x846CA68B)) & UINT32_C(0xFFFFFFFF));
    return x ^ (x >> 16);
}

/* the keys of (step, query) for indices block * 2**32 + [0, 2**32) */
static void ez_keys(const ez_source *s, ez_cursor *c, uint64_t block)
{
    uint64_t h = ez_splitmix64(((uint64_t)s->seeds[1] << 32) | s->seeds[0]);
    h = ez_splitmix64(h ^ c->step);
    h = ez_splitmix64(h ^ c->query);
    h = ez_splitmix64(h ^ block);
    c->k1 = (uint32_t)(h & UINT32_C(0xFFFFFFFF));
    c->k2 = (uint32_t)(h >> 32);
}

/* -- cursors: seek once, then read sequentially --------------------------------------- */
static int ez_is_counter(const ez_source *s)
{
    return s->kind == EZ_RADEMACHER || s->kind == EZ_STEPS;
}

/* z_q of a step function of v: z_min + #{edges <= v}. With the index, from the count below
   v's bucket on (a bucket holds 0.06 edges on average for 8-bit z, so the scan is short and
   its branch predictable); without, a binary search (edges ascending). */
static int32_t ez_step_of(const ez_source *s, uint32_t v)
{
    uint32_t lo = 0, hi = s->n_edges;
    if (s->index != NULL) {
        lo = s->index[v >> EZ_INDEX_SHIFT];
        while (lo < hi && s->edges[lo] <= v) {
            lo++;
        }
        return s->z_min + (int32_t)lo;
    }
    while (lo < hi) {
        uint32_t mid = lo + (hi - lo) / 2;
        if (s->edges[mid] <= v) {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    return s->z_min + (int32_t)lo;
}

/* z_q of n consecutive counter positions low, low+1, ... of one 2**32 block (keys k1, k2):
   the hashes in a loop of their own (it vectorises), then their z_q. */
static void ez_fill_counter(const ez_source *s, uint32_t k1, uint32_t k2, uint32_t low,
                            int32_t *z, size_t n)
{
    uint32_t h[EZ_BLOCK];
    size_t i, done, len;
    const int32_t plus = s->kind == EZ_RADEMACHER ? s->table[0] : 0;
    const int32_t minus = s->kind == EZ_RADEMACHER ? s->table[1] : 0;
    for (done = 0; done < n; done += len) {
        len = n - done < EZ_BLOCK ? n - done : EZ_BLOCK;
        for (i = 0; i < len; i++) {
            h[i] = ez_lowbias32(ez_lowbias32((low + (uint32_t)(done + i)) ^ k1) ^ k2);
        }
        if (s->kind == EZ_RADEMACHER) {
            for (i = 0; i < len; i++) {
                z[done + i] = (h[i] >> 31) ? minus : plus;
            }
        } else {
            for (i = 0; i < len; i++) {
                z[done + i] = ez_step_of(s, h[i] >> 8);
            }
        }
    }
}

static void ez_seek(const ez_source *s, ez_cursor *c, const ez_term *term, uint64_t offset)
{
    uint64_t pos = term->base + offset;
    uint32_t r;
    if (ez_is_counter(s)) {
        c->pos = pos;
        c->step = term->step;
        c->query = term->query;
        ez_keys(s, c, pos >> 32);
    } else if (s->kind == EZ_POOL) {
        c->pos = pos % s->size;
    } else if (ez_is_array(s)) {
        uint64_t cycle = pos / s->n_regs;
        c->j = (uint32_t)(pos % s->n_regs);
        c->cm = (uint32_t)(cycle % s->n_regs);
        for (r = 0; r < s->n_regs; r++) {
            c->regs[r] = s->seeds[r];
        }
        ez_jump(s, cycle + 1, c->regs, s->n_regs);
    } else {
        c->pos = pos;
        c->reg = s->seeds[0];
        ez_jump(s, pos, &c->reg, 1);
    }
}

static void ez_fill(const ez_source *s, const uint32_t *t8, ez_cursor *c, int32_t *z, size_t n)
{
    size_t i;
    uint32_t r;
    if (s->kind == EZ_POOL) { /* contiguous runs of the table, wrapping at its end */
        while (n > 0) {
            size_t run = s->size - c->pos < n ? (size_t)(s->size - c->pos) : n;
            const int8_t *from = s->table + c->pos;
            for (i = 0; i < run; i++) {
                z[i] = from[i];
            }
            z += run;
            n -= run;
            c->pos = c->pos + run == s->size ? 0 : c->pos + run;
        }
    } else if (ez_is_counter(s)) { /* runs within one 2**32 block of keys */
        while (n > 0) {
            uint32_t low = (uint32_t)(c->pos & UINT32_C(0xFFFFFFFF));
            uint64_t left = ((uint64_t)1 << 32) - low;
            size_t run = (uint64_t)n < left ? n : (size_t)left;
            ez_fill_counter(s, c->k1, c->k2, low, z, run);
            z += run;
            n -= run;
            c->pos += run;
            if ((c->pos & UINT32_C(0xFFFFFFFF)) == 0) {
                ez_keys(s, c, c->pos >> 32);
            }
        }
    } else if (ez_is_array(s)) {
        for (i = 0; i < n; i++) {
            r = c->j + c->cm;
            z[i] = ez_output(s, c->regs[r >= s->n_regs ? r - s->n_regs : r]);
            if (++c->j == s->n_regs) { /* next cycle: every register steps, the array rotates */
                c->j = 0;
                c->cm = c->cm + 1 == s->n_regs ? 0 : c->cm + 1;
                for (r = 0; r < s->n_regs; r++) {
                    c->regs[r] = ez_next(s, t8, c->regs[r]);
                }
            }
        }
    } else {
        for (i = 0; i < n; i++) {
            c->reg = ez_next(s, t8, c->reg);
            z[i] = ez_output(s, c->reg);
        }
    }
}

static int ez_check_source(const ez_source *s)
{
    if (s->kind == EZ_POOL) {
        return (s->size > 0 && s->table != NULL) ? EZ_OK : EZ_BAD_SOURCE;
    }
    if (s->kind == EZ_RADEMACHER) {
        return (s->table != NULL && s->seeds != NULL) ? EZ_OK : EZ_BAD_SOURCE;
    }
    if (s->kind == EZ_STEPS) {
        return (s->seeds != NULL && (s->edges != NULL || s->n_edges == 0)) ? EZ_OK : EZ_BAD_SOURCE;
    }
    if (s->kind < EZ_LFSR || s->kind > EZ_ARRAY_XORSHIFT || s->seeds == NULL || s->n_regs < 1) {
        return EZ_BAD_SOURCE;
    }
    if (s->bits < 1 || s->bits > 24 || s->bits > ez_width(s) || ez_width(s) > 32) {
        return EZ_BAD_SOURCE;
    }
    if (ez_is_lfsr(s) && s->width < 3) {
        return EZ_BAD_SOURCE;
    }
    return (!ez_is_array(s) && s->n_regs != 1) ? EZ_BAD_SOURCE : EZ_OK;
}

/* Checks the source and the work area, and seeks one cursor per term. */
static int ez_start(const ez_source *s, const ez_term *terms, size_t n_terms, ez_work *work,
                    uint64_t offset)
{
    size_t t;
    int status = ez_check_source(s);
    if (status != EZ_OK) {
        return status;
    }
    if (n_terms > work->terms || (ez_is_array(s) && n_terms * s->n_regs > work->words_len)) {
        return EZ_NO_WORK;
    }
    for (t = 0; t < n_terms; t++) {
        work->cursors[t].regs = ez_is_array(s) ? work->words + t * s->n_regs : NULL;
        ez_seek(s, &work->cursors[t], &terms[t], offset);
    }
    return EZ_OK;
}

int ez_stream(const ez_source *src, uint64_t pos, int32_t *out, size_t n, ez_work *work)
{
    ez_term one = {0, 0, 0, 1};
    uint32_t t8[256];
    int status;
    one.base = pos;
    status = ez_start(src, &one, 1, work, 0);
    if (status == EZ_OK) {
        ez_lfsr_table(src, t8);
        ez_fill(src, t8, &work->cursors[0], out, n);
    }
    return status;
}

/* -- tensors, a block of up to EZ_BLOCK elements at a time -------------------------------- */
static void ez_load(const ez_tensor *t, size_t idx, size_t len, int64_t *w)
{
    size_t i;
    if (t->elem == 2) {
        const int16_t *d = (const int16_t *)t->data + idx;
        for (i = 0; i < len; i++) {
            w[i] = d[i];
        }
    } else {
        const int8_t *d = (const int8_t *)t->data + idx;
        for (i = 0; i < len; i++) {
            w[i] = d[i];
        }
    }
}

static void ez_store(void *data, uint32_t elem, size_t idx, size_t len, const int64_t *v)
{
    size_t i;
    if (elem == 2) {
        int16_t *d = (int16_t *)data + idx;
        for (i = 0; i < len; i++) {
            d[i] = (int16_t)v[i];
        }
    } else {
        int8_t *d = (int8_t *)data + idx;
        for (i = 0; i < len; i++) {
            d[i] = (int8_t)v[i];
        }
    }
}

/* x[i] <- sat(requant(x[i])): for k >= 1 the floor shift is done on x + 2**63 (unsigned,
   well defined) and the offset 2**(63-k) taken off again; branch-free, so it vectorises */
static void ez_requant_sat(int64_t *x, size_t len, int64_t m, int32_t k, int32_t qmax)
{
    size_t i;
    if (k == 0) {
        for (i = 0; i < len; i++) {
            x[i] = ez_sat(ez_requant(x[i], m, 0), qmax);
        }
        return;
    }
    {
        const uint64_t half = (uint64_t)1 << (k - 1), sign = (uint64_t)1 << 63;
        const int64_t bias = (int64_t)1 << (63 - k);
        for (i = 0; i < len; i++) {
            int64_t v = (int64_t)((((uint64_t)x[i] * (uint64_t)m + half) ^ sign) >> k) - bias;
            v = v > qmax ? qmax : v;
            x[i] = v < -(int64_t)qmax ? -(int64_t)qmax : v;
        }
    }
}

/* masked elements (bit 0) take keep[i] instead of x[i] */
static void ez_masked(const ez_tensor *t, size_t idx, size_t len, int64_t *x, const int64_t *keep)
{
    size_t i;
    if (t->mask == NULL) {
        return;
    }
    for (i = 0; i < len; i++) {
        if (!((t->mask[(idx + i) >> 3] >> ((idx + i) & 7)) & 1)) {
            x[i] = keep[i];
        }
    }
}

static int ez_check_tensor(const ez_tensor *t, size_t factor_rows)
{
    if ((t->elem != 1 && t->elem != 2) || t->rows < 1 || t->data == NULL) {
        return EZ_BAD_TENSOR;
    }
    return (factor_rows == 1 || factor_rows == t->rows) ? EZ_OK : EZ_BAD_TENSOR;
}

/* acc[i] += coef_t * z_t[i] for every term (the next len values of each cursor) */
static void ez_sum_terms(const ez_source *src, const uint32_t *t8, const ez_term *terms,
                         size_t n_terms, int64_t eps, ez_work *work, int64_t *acc, size_t len)
{
    int32_t z[EZ_BLOCK];
    size_t i, k;
    for (k = 0; k < n_terms; k++) {
        int64_t coef = (int64_t)terms[k].net * eps;
        ez_fill(src, t8, &work->cursors[k], z, len);
        for (i = 0; i < len; i++) {
            acc[i] += coef * z[i];
        }
    }
}

/* the block of elements from idx on: up to EZ_BLOCK, within idx's row and below hi */
static size_t ez_block_len(const ez_tensor *t, size_t idx, size_t hi)
{
    size_t row_end = (idx / t->cols + 1) * t->cols, end = idx + EZ_BLOCK;
    end = end < row_end ? end : row_end;
    return (end < hi ? end : hi) - idx;
}

static int ez_check_range(const ez_tensor *t, size_t lo, size_t hi)
{
    return (lo <= hi && hi <= t->rows * t->cols) ? EZ_OK : EZ_BAD_TENSOR;
}

int ez_read_range(const ez_source *src, const ez_tensor *t, void *out, const ez_read_params *rp,
                  const ez_term *terms, size_t n_terms, ez_work *work, size_t lo, size_t hi)
{
    int64_t acc[EZ_BLOCK], w[EZ_BLOCK];
    uint32_t t8[256];
    size_t i, len, idx;
    int status = ez_check_tensor(t, rp->eps_count);
    if (status == EZ_OK) {
        status = ez_check_range(t, lo, hi);
    }
    if (status == EZ_OK && n_terms > 0) {
        status = ez_start(src, terms, n_terms, work, lo);
    }
    if (status != EZ_OK) {
        return status;
    }
    ez_lfsr_table(src, t8);
    for (idx = lo; idx < hi; idx += len) {
        int64_t eps = rp->eps_q[rp->eps_count > 1 ? idx / t->cols : 0];
        len = ez_block_len(t, idx, hi);
        ez_load(t, idx, len, w);
        for (i = 0; i < len; i++) {
            acc[i] = w[i] * (int64_t)rp->one;
        }
        ez_sum_terms(src, t8, terms, n_terms, eps, work, acc, len);
        ez_requant_sat(acc, len, rp->m_dz, rp->k_dz, t->qmax);
        ez_masked(t, idx, len, acc, w);
        ez_store(out, t->elem, idx, len, acc);
    }
    return EZ_OK;
}

int ez_read(const ez_source *src, const ez_tensor *t, void *out, const ez_read_params *rp,
            const ez_term *terms, size_t n_terms, ez_work *work)
{
    return ez_read_range(src, t, out, rp, terms, n_terms, work, 0, t->rows * t->cols);
}

/* w[i] <- sat(w[i] - change[i]) */
static void ez_subtract(int64_t *w, const int64_t *change, size_t len, int32_t qmax)
{
    size_t i;
    for (i = 0; i < len; i++) {
        w[i] = ez_sat(w[i] - change[i], qmax);
    }
}

int ez_update_range(const ez_source *src, ez_tensor *t, const ez_factors *f,
                    const ez_term *terms, size_t n_terms, ez_work *work, size_t lo, size_t hi)
{
    int64_t g[EZ_BLOCK], w[EZ_BLOCK], zero[EZ_BLOCK] = {0};
    uint32_t t8[256];
    size_t i, len, idx, fr;
    int status = ez_check_tensor(t, f->count);
    if (status == EZ_OK) {
        status = ez_check_range(t, lo, hi);
    }
    if (status == EZ_OK) {
        status = ez_start(src, terms, n_terms, work, lo);
    }
    if (status != EZ_OK) {
        return status;
    }
    ez_lfsr_table(src, t8);
    for (idx = lo; idx < hi; idx += len) {
        fr = f->count > 1 ? idx / t->cols : 0;
        len = ez_block_len(t, idx, hi);
        for (i = 0; i < len; i++) {
            g[i] = 0;
        }
        ez_sum_terms(src, t8, terms, n_terms, 1, work, g, len);
        ez_requant_sat(g, len, f->m[fr], f->k[fr], INT32_MAX); /* |change| < 2**31 */
        ez_masked(t, idx, len, g, zero);
        ez_load(t, idx, len, w);
        ez_subtract(w, g, len, t->qmax);
        ez_store(t->data, t->elem, idx, len, w);
    }
    return EZ_OK;
}

int ez_update(const ez_source *src, ez_tensor *t, const ez_factors *f, const ez_term *terms,
              size_t n_terms, ez_work *work)
{
    return ez_update_range(src, t, f, terms, n_terms, work, 0, t->rows * t->cols);
}

int ez_decay(ez_tensor *t, const ez_factors *f)
{
    int64_t g[EZ_BLOCK], w[EZ_BLOCK], zero[EZ_BLOCK] = {0};
    size_t row, c0, len, idx, fr;
    int status = ez_check_tensor(t, f->count);
    if (status != EZ_OK) {
        return status;
    }
    for (row = 0; row < t->rows; row++) {
        fr = f->count > 1 ? row : 0;
        for (c0 = 0; c0 < t->cols; c0 += len) {
            len = t->cols - c0 < EZ_BLOCK ? t->cols - c0 : EZ_BLOCK;
            idx = row * t->cols + c0;
            ez_load(t, idx, len, w);
            ez_load(t, idx, len, g);
            ez_requant_sat(g, len, f->m[fr], f->k[fr], INT32_MAX);
            ez_masked(t, idx, len, g, zero);
            ez_subtract(w, g, len, t->qmax);
            ez_store(t->data, t->elem, idx, len, w);
        }
    }
    return EZ_OK;
}

uint64_t ez_state_bytes(const ez_source *src, size_t terms, size_t rows, uint64_t masked)
{
    uint64_t bytes = sizeof(ez_source) + 8; /* the source and the step counter */
    if (src->kind == EZ_POOL) {
        bytes += src->size;
    } else if (src->kind == EZ_RADEMACHER) {
        bytes += 8 + 2; /* the seed, and z_q of +1 and -1 */
    } else if (src->kind == EZ_STEPS) {
        bytes += 8 + (uint64_t)4 * src->n_edges; /* the seed, and the step edges */
        if (src->index != NULL) {
            bytes += (uint64_t)4 << (24 - EZ_INDEX_SHIFT);
        }
    } else {
        bytes += (uint64_t)4 * src->n_regs;
        if (src->table != NULL) {
            bytes += (uint64_t)1 << src->bits;
        }
    }
    bytes += (uint64_t)terms * (sizeof(ez_cursor) + sizeof(ez_term));
    if (ez_is_array(src)) {
        bytes += (uint64_t)terms * 4 * src->n_regs;
    }
    bytes += (uint64_t)rows * (4 + 8 + 4); /* eps_q, m, k per row */
    bytes += sizeof(ez_read_params) + (masked + 7) / 8;
    return bytes;
}
