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

// b_flags bits (host/e2train/core/kernel_args.py BF_*).
#define E2T_BF_BN_SUMS 1        // conv_fwd: write int64[co][2] BN sums to stats
#define E2T_BF_RELU 2           // bn_act: clamp to 0..255 (uint8), else -128..127
#define E2T_BF_RESIDUAL 4       // b_r read: bn_act's shortcut, bn_bwd_reduce's gate sums
#define E2T_BF_TWO_SOURCES 8    // bn_bwd_reduce: b_gb read
#define E2T_BF_W_SUMS 16        // conv_fwd: write int64[ci] sums of |w| per input channel to stats, after the BN sums

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

// The datapath's widths. Under Vitis HLS (ap_int.h present) the lanes' operands are what the
// DSP48E1 takes, a 16-bit code times a 25-bit coefficient (e2t_c25; the product 41 bits), and
// the sums 48 bits (e2t_w48, the P register); in the C simulation (g++) int64_t holds the same
// values (every one is inside those widths: the limits above, checked before the loop).
#if defined(__has_include)
#if __has_include(<ap_int.h>)
#include <ap_int.h>
#define E2T_HAVE_AP_INT 1
#endif
#endif
#ifdef E2T_HAVE_AP_INT
typedef ap_int<25> e2t_c25;
typedef ap_int<48> e2t_w48;
static inline e2t_w48 e2t_mul_16x25(int16_t u, e2t_c25 a) { return (e2t_w48)((ap_int<16>)u * a); }
#else
typedef int64_t e2t_c25;
typedef int64_t e2t_w48;
static inline e2t_w48 e2t_mul_16x25(int16_t u, e2t_c25 a) { return (int64_t)u * a; }
#endif

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
    if (c < 1 || h < 1 || wd < 1 || c > E2T_MAX_DIM || h > E2T_MAX_DIM || wd > E2T_MAX_DIM) return 0;
    if (stride != 1 && stride != 2) return 0;
    if (lo < 0 || lo + sc > c) return 0;
    return (sh + stride - 1) / stride >= h && (sw + stride - 1) / stride >= wd;
}

static inline int e2t_block_coeffs_ok(int shift, int64_t m1, int64_t m2) {
    return shift >= 0 && shift <= E2T_BLOCK_MAX_SHIFT && m1 > -E2T_BLOCK_MULT_LIMIT && m1 < E2T_BLOCK_MULT_LIMIT &&
           m2 > -E2T_BLOCK_MULT_LIMIT && m2 < E2T_BLOCK_MULT_LIMIT;
}

#ifdef __cplusplus
namespace e2t {
// The block unit's ops (hls/src/block_ops.cpp), inlined into the top; cA, cB, cK: the top's
// per-channel coefficient BRAM (E2T_MAX_DIM words each), which the three ops share.
int bn_act_pass(int32_t cA[E2T_MAX_DIM], int64_t cB[E2T_MAX_DIM], int64_t cK[E2T_MAX_DIM], const int8_t *b_y,
                uint8_t *b_o, const uint8_t *b_r, const int64_t *b_coef, int64_t *b_sums, const int32_t *samples,
                int n_samples, int n, int h, int wd, int co, int b_flags, int b_shift, int b_m1, int r_c, int r_h,
                int r_w, int r_stride, int r_lo);
int bn_bwd_reduce_pass(int32_t cA[E2T_MAX_DIM], int64_t cB[E2T_MAX_DIM], int64_t cK[E2T_MAX_DIM], const int8_t *b_y,
                       const uint8_t *b_o, const uint8_t *b_r, const int16_t *b_ga, const int16_t *b_gb,
                       int16_t *b_gm, int64_t *b_sums, const int32_t *samples, int n_samples, int n, int h, int wd,
                       int co, int b_flags, int b_shift, int b_m1, int b_m2, int r_c, int r_h, int r_w, int r_stride,
                       int r_lo, int gb_c, int gb_h, int gb_w, int gb_stride, int gb_lo);
int bn_bwd_apply_pass(int32_t cA[E2T_MAX_DIM], int64_t cB[E2T_MAX_DIM], int64_t cK[E2T_MAX_DIM], const int8_t *b_y,
                      const int16_t *b_gm, int16_t *b_gy, const int64_t *b_coef, const int32_t *samples,
                      int n_samples, int n, int h, int wd, int co, int b_shift);

}  // namespace e2t
#endif

#ifndef __SYNTHESIS__
// The loop trips of the last block-unit call (C simulation only, not synthesised; block_ops.cpp):
// out = the sample list's check, coefficient words loaded, streaming beats (E2T_BLOCK_LANES
// elements of a row each), tail beats (a sample's second per-sample word), words of the
// per-channel sums written after the loop, samples skipped (one beat each), the setup's
// shift-and-add steps. What core/call_price.py price_block counts (tests/kernels/test_block_price.py).
extern "C" void e2t_block_trips(int64_t out[7]);
#endif

#endif
