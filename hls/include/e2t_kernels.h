// The HLS top, e2t_engine (one IP, one training engine and the block unit; hls/src/e2t_engine.cpp),
// and its ops' C entry points. Flat C signatures (pointers + scalars): the top's are what
// Vitis HLS maps (m_axi tensors, s_axilite scalars, in this order: the register map of
// host/e2train/device/kernel_iface.py E2T_ENGINE); the entry points are what the C
// simulation loaded by ctypes calls (host/e2train/core/csim.py), thin wrappers that call the
// top with their op and 0 for the arguments their pass does not read (hls/csim/pass_entry.cpp),
// so C simulation runs the very function that is synthesised.
// Layouts: x NCHW, w OIHW, y / g_y / g_x NCHW, row-major. Each returns a status word (E2T_OK
// or E2T_ERR_* bits from e2t_fixed.h).
#ifndef E2T_KERNELS_H
#define E2T_KERNELS_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

// e2t_engine's op: the pass it runs. Any other value returns E2T_ERR_SHAPE, touching nothing.
enum {
    E2T_OP_FWD = 0,
    E2T_OP_BWD_DATA = 1,
    E2T_OP_BWD_WEIGHT_PSG = 2,
    E2T_OP_BN_ACT = 3,
    E2T_OP_BN_BWD_REDUCE = 4,
    E2T_OP_BN_BWD_APPLY = 5
};

// The top: op picks the pass; each pass reads the arguments of its entry point below (same
// names) and ignores the others (the driver writes 0 there).
int e2t_engine(int op, const uint8_t *x, const int8_t *w, const int32_t *bias, uint8_t *y,
               const int16_t *g_y, int16_t *g_x, int32_t *w_master, int8_t *sign, uint8_t *predicted,
               int32_t *gmsb, int64_t *stats, const int32_t *samples, int n_samples,
               int n, int ci, int h, int wd, int co, int k, int stride, int pad,
               int x_unsigned, int has_bias, int relu, int32_t mult_m, int mult_s,
               int32_t beta_q, int32_t lr_q, int32_t wd_q,
               const int8_t *b_y, uint8_t *b_o, const uint8_t *b_r, const int16_t *b_ga,
               const int16_t *b_gb, int16_t *b_gm, int16_t *b_gy, const int64_t *b_coef, int64_t *b_sums,
               int b_flags, int b_shift, int b_m1, int b_m2, int r_c, int r_h, int r_w, int r_stride,
               int r_lo, int gb_c, int gb_h, int gb_w, int gb_stride, int gb_lo);

// y[s] = requant(conv(x[s], w) + bias) for each listed sample s: int8 codes, or uint8 with
// the ReLU fused (relu != 0). x holds uint8 codes when x_unsigned, else int8 (same bytes).
// Samples not in the list are neither read nor written. b_flags & 1 (BN sums): stats gets
// int64[co][2], per output channel sum y and sum y^2 over the listed samples.
int conv_fwd(const uint8_t *x, const int8_t *w, const int32_t *bias, uint8_t *y, int64_t *stats,
             const int32_t *samples, int n_samples,
             int n, int ci, int h, int wd, int co, int k, int stride, int pad,
             int x_unsigned, int has_bias, int relu, int32_t mult_m, int mult_s, int b_flags);

// g_x[s] = requant(conv_transpose(g_y[s], w)) as int16, 48-bit accumulation.
int conv_bwd_data(const int16_t *g_y, const int8_t *w, int16_t *g_x,
                  const int32_t *samples, int n_samples,
                  int n, int ci, int h, int wd, int co, int k, int stride, int pad,
                  int32_t mult_m, int mult_s);

// stats[] written by conv_bwd_weight_psg.
enum {
    E2T_STAT_N_PREDICTED = 0,   // weights whose sign the MSB predictor decided
    E2T_STAT_GMSB_ABSMAX = 1,   // max |G_msb| (tau = beta * this)
    E2T_STAT_W_ABSMAX = 2,      // max |W| after the update
    E2T_STAT_EXACT_TERMS = 3,   // exact multiply-accumulates issued (every weight: one sweep)
    E2T_STAT_TILES_SKIPPED = 4, // engine blocks not read from DDR a second time (all: one sweep)
    E2T_STAT_PREDICT_TERMS = 5, // predictor multiply-accumulates (every weight, beside the exact ones)
    E2T_STAT_DECIDE_BEATS = 6,  // beats streamed through the engine
    E2T_STAT_GMSB_SPILLED = 7,  // weights whose G_msb went through the DDR scratch (layers of several weight groups)
    E2T_STAT_LEN = 8
};

// PSG weight gradient over the listed samples, fused with the sign update of the int32
// master weights: one sweep computes every weight's exact sum x*g and G_msb = sum x_h*g_h
// beside it, and the layer's max |G_msb| (a layer of several weight groups passes G_msb through
// gmsb, a DDR scratch of co*ci*k*k int32: |G_msb| < 2^30 within the pass's 2^17 positions);
// then sign = sign(G_msb) where the predictor decides, else sign(G), and
// W <- sat(W - lr_q*sign - round(W*wd_q/2**30)). beta_q = 0 decides nothing (exact signs).
// sign: int8 per weight; predicted: 0/1 per weight.
int conv_bwd_weight_psg(const uint8_t *x, const int16_t *g_y, int32_t *w_master,
                        int8_t *sign, uint8_t *predicted, int32_t *gmsb, int64_t *stats,
                        const int32_t *samples, int n_samples,
                        int n, int ci, int h, int wd, int co, int k, int stride, int pad,
                        int x_unsigned, int32_t beta_q, int32_t lr_q, int32_t wd_q);

// The block unit (hls/src/block_ops.cpp; core/block_ops.py). The tensor is (n, co, h, wd), NCHW.
// b_flags: 2 ReLU (uint8 out, else int8), 4 shortcut source b_r read, 8 b_gb read.
// bn_act: b_o = sat(shift_round(b_y*a[c] + b[c] + sc(b_r)*b_m1)) for the listed samples, the
// unlisted ones take the shortcut alone (with b_r; without it they are not read or written);
// b_coef = a[co], b[co]; b_sums = pooled[n][co] (sums of b_o), vmax[n] (max |v| before saturation).
int bn_act(const int8_t *b_y, uint8_t *b_o, const uint8_t *b_r, const int64_t *b_coef, int64_t *b_sums,
           const int32_t *samples, int n_samples, int n, int h, int wd, int co, int b_flags, int b_shift,
           int b_m1, int r_c, int r_h, int r_w, int r_stride, int r_lo);

// bn_bwd_reduce: gc = sat16(shift_round(b_ga*b_m1 + sc_b^T(b_gb)*b_m2)), b_gm = gc where b_o > 0,
// for every sample; b_sums = red[co][3] (sum g_m, sum g_m*y, max |g_m| over the listed samples),
// gate[n][2] (sum gc*o, sum gc*sc(b_r) per sample).
int bn_bwd_reduce(const int8_t *b_y, const uint8_t *b_o, const uint8_t *b_r, const int16_t *b_ga,
                  const int16_t *b_gb, int16_t *b_gm, int64_t *b_sums, const int32_t *samples, int n_samples,
                  int n, int h, int wd, int co, int b_flags, int b_shift, int b_m1, int b_m2, int r_c, int r_h,
                  int r_w, int r_stride, int r_lo, int gb_c, int gb_h, int gb_w, int gb_stride, int gb_lo);

// bn_bwd_apply: b_gy = sat16(shift_round(b_gm*p[c] + b_y*q[c] + t[c])) for the listed samples;
// b_coef = p[co], q[co], t[co].
int bn_bwd_apply(const int8_t *b_y, const int16_t *b_gm, int16_t *b_gy, const int64_t *b_coef,
                 const int32_t *samples, int n_samples, int n, int h, int wd, int co, int b_shift);

#ifdef __cplusplus
}
#endif

#endif
