// Shape checks every kernel repeats before touching memory: the limits of
// host/e2train/core/shapes.py (which the host binding checks first, with clear messages).
// A kernel given a shape outside them returns E2T_ERR_SHAPE and writes nothing.
#ifndef E2T_SHAPE_H
#define E2T_SHAPE_H

#include <stdint.h>
#include "e2t_tiles.h"

#define E2T_MAX_BATCH 4096
#define E2T_MAX_FWD_TERMS (1 << 15)
#define E2T_MAX_WGRAD_TERMS (1 << 24)
// The weight-gradient pass's own limit: n*ho*wo positions keep each weight's partial sums in
// one 72-bit BRAM word, the exact sum in 41 bits and G_msb in 31 (core/shapes.py
// MAX_WGRAD_CALL_TERMS, which says why).
#define E2T_MAX_WGRAD_CALL_TERMS (1 << 17)
// rows of the on-chip weight tile (ci*k*k forward, co*k*k input gradient): core/shapes.py MAX_TAPS
#define E2T_MAX_TAPS 4608

static inline int e2t_out_dim(int in, int k, int stride, int pad) {
    return (in + 2 * pad - k) / stride + 1;
}

static inline int e2t_shape_ok(int n, int ci, int h, int wd, int co, int k, int stride, int pad) {
    if (n < 1 || ci < 1 || h < 1 || wd < 1 || co < 1) return 0;
    if (n > E2T_MAX_BATCH || ci > E2T_MAX_DIM || co > E2T_MAX_DIM || h > E2T_MAX_DIM || wd > E2T_MAX_DIM) return 0;
    if (k != 1 && k != 3) return 0;
    if (stride != 1 && stride != 2) return 0;
    if (pad < 0 || pad > k / 2) return 0;
    int ho = e2t_out_dim(h, k, stride, pad), wo = e2t_out_dim(wd, k, stride, pad);
    if (h + 2 * pad < k || wd + 2 * pad < k || ho < 1 || wo < 1) return 0;
    if (ci * k * k > E2T_MAX_TAPS || co * k * k > E2T_MAX_TAPS) return 0;
    if (ci * k * k > E2T_MAX_FWD_TERMS) return 0;
    if ((int64_t)n * ho * wo > E2T_MAX_WGRAD_TERMS) return 0;
    return 1;
}

// The sample list: at most n entries, each in [0, n), none repeated (the contract of
// host/e2train/core/shapes.py check_samples: a repeated sample would be counted twice in the
// weight gradient). A seen-bit per sample of the batch (E2T_MAX_BATCH bits) finds repeats.
static inline int e2t_samples_ok(const int32_t *samples, int n_samples, int n) {
    if (n_samples < 0 || n_samples > n) return 0;
    bool seen[E2T_MAX_BATCH];
    for (int i = 0; i < n; i++) {
#pragma HLS PIPELINE II=1
        seen[i] = false;
    }
    for (int i = 0; i < n_samples; i++) {
#pragma HLS PIPELINE
        const int32_t s = samples[i];
        if (s < 0 || s >= n || seen[s]) return 0;
        seen[s] = true;
    }
    return 1;
}

#endif
