/*
 * edgezo_main.c -- one full sign-m-SPSA step of a model exported by edgezo (runtime.bundle).
 *
 *   ./step weights.bin STEP s_0 ... s_{m-1} [out.bin]
 *
 * loads the integers (weights.bin: the tensors of edgezo_model.h in order, native
 * byte order), makes the perturbed reads of every query (+eps, then -eps), which an
 * inference runtime would run its forwards on, and then applies the update with
 * s_q = sign(L+ - L-) of query q (-1, 0 or 1), the losses having been computed
 * elsewhere. Prints FNV-1a checksums of the reads and of the new weights, and
 * writes the new weights to out.bin if given. C99, integers only.
 */
#include <stdio.h>
#include <stdlib.h>

#include "edgezo_model.h"

static uint32_t fnv(uint32_t h, const void *data, size_t n)
{
    const unsigned char *b = (const unsigned char *)data;
    size_t i;
    for (i = 0; i < n; i++) {
        h = (h ^ b[i]) * UINT32_C(16777619);
    }
    return h;
}

static size_t bytes_of(size_t t)
{
    return ez_tensors[t].rows * ez_tensors[t].cols * ez_tensors[t].elem;
}

static int weights_io(const char *path, int write)
{
    FILE *f = fopen(path, write ? "wb" : "rb");
    size_t t, done = 0;
    if (f == NULL) {
        return 1;
    }
    for (t = 0; t < EZ_N_TENSORS; t++) {
        done += write ? fwrite(ez_tensors[t].data, 1, bytes_of(t), f)
                      : fread(ez_tensors[t].data, 1, bytes_of(t), f);
        done -= bytes_of(t);
    }
    fclose(f);
    return done != 0;
}

/* term of query q of tensor t: stream position of its element 0 (counter: global index) */
static ez_term term_of(uint64_t step, uint64_t query, size_t t, int32_t net)
{
    ez_term term;
    term.base = EZ_COUNTER ? ez_offsets[t] : (step * EZ_SLOTS + query) * EZ_DIM + ez_offsets[t];
    term.step = step;
    term.query = query;
    term.net = net;
    return term;
}

int main(int argc, char **argv)
{
    ez_work work = {ez_cursors, ez_words, EZ_QUERIES, sizeof(ez_words) / sizeof(ez_words[0])};
    ez_term terms[EZ_QUERIES];
    uint64_t step;
    uint32_t reads = UINT32_C(2166136261), weights = UINT32_C(2166136261);
    size_t q, t, live;
    int sign, status = 0;
    if (argc < 3 + EZ_QUERIES || weights_io(argv[1], 0)) {
        fprintf(stderr, "usage: %s weights.bin STEP s_0 .. s_%d [out.bin]\n", argv[0], EZ_QUERIES - 1);
        return 2;
    }
    step = strtoull(argv[2], NULL, 10);
    for (q = 0; q < EZ_QUERIES; q++) { /* the perturbed reads the forwards would run on */
        for (sign = 1; sign >= -1; sign -= 2) {
            for (t = 0; t < EZ_N_TENSORS; t++) {
                terms[0] = term_of(step, q, t, sign);
                status |= ez_read(&ez_src, &ez_tensors[t], ez_reads[t], &ez_read_consts[t], terms, 1,
                                  &work);
                reads = fnv(reads, ez_reads[t], bytes_of(t));
            }
        }
    }
    for (t = 0; t < EZ_N_TENSORS; t++) { /* the update: n_q = s_q, (m, k) of lr * dz / (m dw) */
        for (q = 0, live = 0; q < EZ_QUERIES; q++) {
            sign = atoi(argv[3 + q]);
            if (sign != 0) {
                terms[live++] = term_of(step, q, t, sign > 0 ? 1 : -1);
            }
        }
        if (live > 0) {
            status |= ez_update(&ez_src, &ez_tensors[t], &ez_update_factors[t], terms, live, &work);
        }
        weights = fnv(weights, ez_tensors[t].data, bytes_of(t));
    }
    printf("status %d\nreads %08lx\nweights %08lx\n", status, (unsigned long)reads,
           (unsigned long)weights);
    if (argc > 3 + EZ_QUERIES && weights_io(argv[3 + EZ_QUERIES], 1)) {
        return 1;
    }
    return status != 0;
}
