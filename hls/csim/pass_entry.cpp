// The ops' C entry points (hls/include/e2t_kernels.h) for the C simulation
// (host/e2train/core/csim.py, hls/csim/san_driver.cpp): each calls the HLS top, e2t_engine,
// with its op and 0 for the arguments its op does not read, as the PYNQ driver programs
// the IP. Wrappers around the top rather than the top around them, so that C simulation runs
// the op dispatch and the shared buffers that Vitis HLS synthesises. Not synthesised (a
// testbench file in hls/scripts/kernel.tcl).

#include "e2t_kernels.h"

// The block-unit arguments of the conv passes (none) and the conv arguments of the block ops.
#define E2T_NO_BLOCK nullptr, nullptr, nullptr, nullptr, nullptr, nullptr, nullptr, nullptr, nullptr, \
                     0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0

extern "C" int conv_fwd(const uint8_t *x, const int8_t *w, const int32_t *bias, uint8_t *y, int64_t *stats,
                        const int32_t *samples, int n_samples,
                        int n, int ci, int h, int wd, int co, int k, int stride, int pad,
                        int x_unsigned, int has_bias, int relu, int32_t mult_m, int mult_s, int b_flags) {
    return e2t_engine(E2T_OP_FWD, x, w, bias, y, nullptr, nullptr, nullptr, nullptr, nullptr, nullptr, stats,
                      samples, n_samples, n, ci, h, wd, co, k, stride, pad, x_unsigned, has_bias, relu, mult_m,
                      mult_s, 0, 0, 0, nullptr, nullptr, nullptr, nullptr, nullptr, nullptr, nullptr, nullptr,
                      nullptr, b_flags, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0);
}

extern "C" int conv_bwd_data(const int16_t *g_y, const int8_t *w, int16_t *g_x,
                             const int32_t *samples, int n_samples,
                             int n, int ci, int h, int wd, int co, int k, int stride, int pad,
                             int32_t mult_m, int mult_s) {
    return e2t_engine(E2T_OP_BWD_DATA, nullptr, w, nullptr, nullptr, g_y, g_x, nullptr, nullptr, nullptr, nullptr,
                      nullptr, samples, n_samples, n, ci, h, wd, co, k, stride, pad, 0, 0, 0, mult_m, mult_s, 0, 0,
                      0, E2T_NO_BLOCK);
}

extern "C" int conv_bwd_weight_psg(const uint8_t *x, const int16_t *g_y, int32_t *w_master,
                                   int8_t *sign, uint8_t *predicted, int32_t *gmsb, int64_t *stats,
                                   const int32_t *samples, int n_samples,
                                   int n, int ci, int h, int wd, int co, int k, int stride, int pad,
                                   int x_unsigned, int32_t beta_q, int32_t lr_q, int32_t wd_q) {
    return e2t_engine(E2T_OP_BWD_WEIGHT_PSG, x, nullptr, nullptr, nullptr, g_y, nullptr, w_master, sign, predicted,
                      gmsb, stats, samples, n_samples, n, ci, h, wd, co, k, stride, pad, x_unsigned, 0, 0, 0, 0,
                      beta_q, lr_q, wd_q, E2T_NO_BLOCK);
}

extern "C" int bn_act(const int8_t *b_y, uint8_t *b_o, const uint8_t *b_r, const int64_t *b_coef, int64_t *b_sums,
                      const int32_t *samples, int n_samples, int n, int h, int wd, int co, int b_flags, int b_shift,
                      int b_m1, int r_c, int r_h, int r_w, int r_stride, int r_lo) {
    return e2t_engine(E2T_OP_BN_ACT, nullptr, nullptr, nullptr, nullptr, nullptr, nullptr, nullptr, nullptr, nullptr,
                      nullptr, nullptr, samples, n_samples, n, 0, h, wd, co, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
                      b_y, b_o, b_r, nullptr, nullptr, nullptr, nullptr, b_coef, b_sums, b_flags, b_shift, b_m1, 0,
                      r_c, r_h, r_w, r_stride, r_lo, 0, 0, 0, 0, 0);
}

extern "C" int bn_bwd_reduce(const int8_t *b_y, const uint8_t *b_o, const uint8_t *b_r, const int16_t *b_ga,
                             const int16_t *b_gb, int16_t *b_gm, int64_t *b_sums, const int32_t *samples,
                             int n_samples, int n, int h, int wd, int co, int b_flags, int b_shift, int b_m1,
                             int b_m2, int r_c, int r_h, int r_w, int r_stride, int r_lo, int gb_c, int gb_h,
                             int gb_w, int gb_stride, int gb_lo) {
    return e2t_engine(E2T_OP_BN_BWD_REDUCE, nullptr, nullptr, nullptr, nullptr, nullptr, nullptr, nullptr, nullptr,
                      nullptr, nullptr, nullptr, samples, n_samples, n, 0, h, wd, co, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
                      0, b_y, const_cast<uint8_t *>(b_o), b_r, b_ga, b_gb, b_gm, nullptr, nullptr, b_sums, b_flags,
                      b_shift, b_m1, b_m2, r_c, r_h, r_w, r_stride, r_lo, gb_c, gb_h, gb_w, gb_stride, gb_lo);
}

extern "C" int bn_bwd_apply(const int8_t *b_y, const int16_t *b_gm, int16_t *b_gy, const int64_t *b_coef,
                            const int32_t *samples, int n_samples, int n, int h, int wd, int co, int b_shift) {
    return e2t_engine(E2T_OP_BN_BWD_APPLY, nullptr, nullptr, nullptr, nullptr, nullptr, nullptr, nullptr, nullptr,
                      nullptr, nullptr, nullptr, samples, n_samples, n, 0, h, wd, co, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
                      0, b_y, nullptr, nullptr, nullptr, nullptr, const_cast<int16_t *>(b_gm), b_gy, b_coef, nullptr,
                      0, b_shift, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0);
}
