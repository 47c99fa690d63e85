// The three passes' C entry points (hls/include/e2t_kernels.h) for the C simulation
// (host/e2train/core/csim.py, hls/csim/san_driver.cpp): each calls the HLS top, e2t_engine,
// with its op and 0 for the arguments its pass does not read, as the PYNQ driver programs
// the IP. Wrappers around the top rather than the top around them, so that C simulation runs
// the op dispatch and the shared buffers that Vitis HLS synthesises. Not synthesised (a
// testbench file in hls/scripts/kernel.tcl).
#include "e2t_kernels.h"

extern "C" int conv_fwd(const uint8_t *x, const int8_t *w, const int32_t *bias, uint8_t *y,
                        const int32_t *samples, int n_samples,
                        int n, int ci, int h, int wd, int co, int k, int stride, int pad,
                        int x_unsigned, int has_bias, int relu, int32_t mult_m, int mult_s) {
    return e2t_engine(E2T_OP_FWD, x, w, bias, y, nullptr, nullptr, nullptr, nullptr, nullptr, nullptr, nullptr,
                      samples, n_samples, n, ci, h, wd, co, k, stride, pad, x_unsigned, has_bias, relu, mult_m,
                      mult_s, 0, 0, 0);
}

extern "C" int conv_bwd_data(const int16_t *g_y, const int8_t *w, int16_t *g_x,
                             const int32_t *samples, int n_samples,
                             int n, int ci, int h, int wd, int co, int k, int stride, int pad,
                             int32_t mult_m, int mult_s) {
    return e2t_engine(E2T_OP_BWD_DATA, nullptr, w, nullptr, nullptr, g_y, g_x, nullptr, nullptr, nullptr, nullptr,
                      nullptr, samples, n_samples, n, ci, h, wd, co, k, stride, pad, 0, 0, 0, mult_m, mult_s, 0, 0,
                      0);
}

extern "C" int conv_bwd_weight_psg(const uint8_t *x, const int16_t *g_y, int32_t *w_master,
                                   int8_t *sign, uint8_t *predicted, int64_t *gmsb, int64_t *stats,
                                   const int32_t *samples, int n_samples,
                                   int n, int ci, int h, int wd, int co, int k, int stride, int pad,
                                   int x_unsigned, int32_t beta_q, int32_t lr_q, int32_t wd_q) {
    return e2t_engine(E2T_OP_BWD_WEIGHT_PSG, x, nullptr, nullptr, nullptr, g_y, nullptr, w_master, sign, predicted,
                      gmsb, stats, samples, n_samples, n, ci, h, wd, co, k, stride, pad, x_unsigned, 0, 0, 0, 0,
                      beta_q, lr_q, wd_q);
}
