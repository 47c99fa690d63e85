// The block unit of e2t_engine (ops 3..5: bn_act, bn_bwd_reduce, bn_bwd_apply; hls/src/block_ops.cpp):
// its lanes, flags and limits, and the checks it repeats before touching memory (the same
// limits as host/e2train/core/kernel_args.py check_block_*, which the host binding runs first
// with clear messages). Arithmetic: docs/fixed-point.md section 9, host/e2train/core/block_ops.py.
#ifndef E2T_BLOCK_H
#define E2T_BLOCK_H

#include <stdint.h>

#include "e2t_shape.h"

// Elements per cycle of the block unit's one pipelined loop (core/call_price.py BLOCK_LANES).
#define E2T_BLOCK_LANES 4

// b_flags bits (host/e2train/device/kernel_iface.py BF_*).
#define E2T_BF_BN_SUMS 1        // conv_fwd: write int64[co][2] BN sums to stats
#define E2T_BF_RELU 2           // bn_act: clamp to 0..255 (uint8), else -128..127
#define E2T_BF_RESIDUAL 4       // b_r read: bn_act's shortcut, bn_bwd_reduce's gate sums
#define E2T_BF_TWO_SOURCES 8    // bn_bwd_reduce: b_gb read

// Operand limits that keep every sum of products inside the DSP48E1's 48-bit P register
// (core/block_ops.py MULT_LIMIT, CONST_LIMIT, MAX_BLOCK_SHIFT): |code| <= 2^15, |multiplier| < 2^24,
// |constant| < 2^44, shift <= 40.
#define E2T_BLOCK_MULT_LIMIT (INT64_C(1) << 24)
#define E2T_BLOCK_CONST_LIMIT (INT64_C(1) << 44)
#define E2T_BLOCK_MAX_SHIFT 40
// The on-chip sums stay inside 48 bits: a sample's c*h*w elements (gate sums: |g*o| < 2^23,
// so < 2^45) and a channel's n*h*w elements over the batch (sum g_m*y: |g_m*y| < 2^22, so < 2^46).
#define E2T_BLOCK_MAX_SAMPLE_ELEMS (1 << 22)
#define E2T_BLOCK_MAX_CHANNEL_ELEMS (1 << 24)

static inline int e2t_block_shape_ok(int n, int c, int h, int wd) {
    if (n < 1 || c < 1 || h < 1 || wd < 1) return 0;
    if (n > E2T_MAX_BATCH || c > E2T_MAX_DIM || h > E2T_MAX_DIM || wd > E2T_MAX_DIM) return 0;
    if ((int64_t)c * h * wd > E2T_BLOCK_MAX_SAMPLE_ELEMS) return 0;
    if ((int64_t)n * h * wd > E2T_BLOCK_MAX_CHANNEL_ELEMS) return 0;
    return 1;
}

// An option-A shortcut: the output (c, h, wd) reads the source (sc, sh, sw) at (c - lo, y*stride,
// x*stride); the source's channels must lie inside the output's and its subsampled plane cover it.
static inline int e2t_shortcut_ok(int sc, int sh, int sw, int stride, int lo, int c, int h, int wd) {
    if (sc < 1 || sh < 1 || sw < 1 || sc > E2T_MAX_DIM || sh > E2T_MAX_DIM || sw > E2T_MAX_DIM) return 0;
    if (stride != 1 && stride != 2) return 0;
    if (lo < 0 || lo + sc > c) return 0;
    return (sh + stride - 1) / stride >= h && (sw + stride - 1) / stride >= wd;
}

static inline int e2t_block_coeffs_ok(int shift, int64_t m1, int64_t m2) {
    return shift >= 0 && shift <= E2T_BLOCK_MAX_SHIFT && m1 > -E2T_BLOCK_MULT_LIMIT && m1 < E2T_BLOCK_MULT_LIMIT &&
           m2 > -E2T_BLOCK_MULT_LIMIT && m2 < E2T_BLOCK_MULT_LIMIT;
}

#ifndef __SYNTHESIS__
// Loop trips of the last block-unit call on this thread (C simulation only, not synthesised):
// what core/call_price.price_block counts, checked by tests/kernels/test_block_price.py.
struct E2tBlockTrips {
    int64_t list;      // the sample list's check: a bit cleared per batch sample, one per entry
    int64_t setup;     // the setup products' shift-and-add steps (one bit a cycle)
    int64_t coef;      // coefficient words loaded into the BRAM (one a cycle)
    int64_t beats;     // iterations of the streaming loop over a row (E2T_BLOCK_LANES elements each)
    int64_t skips;     // the streaming loop's one iteration per sample not processed
    int64_t tails;     // the streaming loop's extra iteration per sample (its per-sample sums' last write)
    int64_t sums;      // words of the per-channel sums written after the loop (one a cycle)
};
extern thread_local E2tBlockTrips e2t_block_trips_last;
#endif

#endif
