// e2t_engine: the one HLS top of the training fabric. The forward, input-gradient and PSG
// weight-gradient passes share one training engine (train_engine_hls, the RTL blackbox with
// its 168 DSP48E1) in time; `op` picks the pass (E2T_OP_* in e2t_kernels.h). One IP, one
// engine: the three passes as three tops would be three IPs, and synthesis would build the
// engine three times (3 x 168 DSP48E1 > the xc7z020's 220).
//
// How the engine stays one instance (e2t_passes.h): the engine is called at one place, in
// e2t_engine_call; the passes (hls/src/conv_*.cpp) are inlined here, so every e2t_engine_call
// site is in this function's scope, where the ALLOCATION pragma below makes them one RTL
// instance (UG1399, "pragma HLS allocation": placed in the body of the function whose
// instances it limits; `function` right after the keyword). The pragma on train_engine_hls
// says the same of the blackbox itself. Every site binds the same engine streams and weight
// tile buffer (declared here once) and the same x, g_y and samples ports.
//
// Interfaces. One s_axilite bundle (control): op, the pointers' offsets and the scalars, in
// argument order (host/e2train/device/kernel_iface.py E2T_ENGINE). Four m_axi bundles, each
// one AXI master, shared by the passes by role (no pass drives two bundles' worth of streams
// on one adapter):
//   gx  x                 the activation stream (forward and weight-gradient feeders)
//   gg  g_y               the output-gradient stream (input-gradient and weight-gradient feeders)
//   gw  w, bias, samples, w_master, sign, predicted, gmsb, stats
//                         weight tiles, the sample list, the weight update and PSG scratch
//   gy  y, g_x            the result stream (forward and input-gradient output stages)
// A pass uses three of them (fwd: gx gw gy; bwd_data: gg gw gy; wgrad: gx gg gw). The block
// design (fpga/vivado/bd.tcl) gives each bundle its own 64-bit HP port, HP0..HP3: four
// AXI4 -> AXI3 1:1 paths, the four HP ports the Zynq-7000 has (three tops, one per pass,
// would need nine m_axi adapters).
#include "e2t_fixed.h"
#include "e2t_kernels.h"
#include "e2t_passes.h"
#include "train_engine.h"

namespace e2t {
namespace {

// The feeder of the pass that runs (nothing for a flush).
void feed(psg::stream<eng::Beat> &in, uint8_t mode, const Feed &f, const Geometry &q, const uint8_t *x,
          const int16_t *g_y, const int32_t *samples, const int8_t wt[][R]) {
    switch (mode) {
        case eng::kFwd: fwd::feed(in, f.fb, x, wt, q); break;
        case eng::kBwd: bwd::feed(in, f.bb, g_y, wt, q, f.ph); break;
        case eng::kWgrad: wgrad::feed(in, x, g_y, samples, q, f.ws); break;
        default: break;
    }
}

}  // namespace
}  // namespace e2t

void e2t_engine_call(psg::stream<eng::Head> &head, psg::stream<eng::Beat> &in, psg::stream<eng::Row> &out,
                     uint8_t mode, const e2t::Feed &f, const e2t::Geometry &q, const uint8_t *x, const int16_t *g_y,
                     const int32_t *samples, const int8_t wt[][e2t::R], bool xu, bool exact, bool pred, bool clr,
                     uint8_t pred_rows, uint8_t pred_cols, bool emit) {
#pragma HLS DATAFLOW
    e2t::feed(in, mode, f, q, x, g_y, samples, wt);
    train_engine_hls(head, in, out, mode, xu, exact, pred, clr, clr, pred_rows, pred_cols, emit);
}

extern "C" int e2t_engine(int op, const uint8_t *x, const int8_t *w, const int32_t *bias, uint8_t *y,
                          const int16_t *g_y, int16_t *g_x, int32_t *w_master, int8_t *sign, uint8_t *predicted,
                          int64_t *gmsb, int64_t *stats, const int32_t *samples, int n_samples,
                          int n, int ci, int h, int wd, int co, int k, int stride, int pad,
                          int x_unsigned, int has_bias, int relu, int32_t mult_m, int mult_s,
                          int32_t beta_q, int32_t lr_q, int32_t wd_q) {
#pragma HLS INTERFACE m_axi port=x offset=slave bundle=gx max_read_burst_length=256 max_widen_bitwidth=64 depth=1024
#pragma HLS INTERFACE m_axi port=g_y offset=slave bundle=gg max_read_burst_length=256 max_widen_bitwidth=64 depth=1024
#pragma HLS INTERFACE m_axi port=w offset=slave bundle=gw depth=1024
#pragma HLS INTERFACE m_axi port=bias offset=slave bundle=gw depth=64
#pragma HLS INTERFACE m_axi port=samples offset=slave bundle=gw depth=64
#pragma HLS INTERFACE m_axi port=w_master offset=slave bundle=gw depth=1024
#pragma HLS INTERFACE m_axi port=sign offset=slave bundle=gw depth=1024
#pragma HLS INTERFACE m_axi port=predicted offset=slave bundle=gw depth=1024
#pragma HLS INTERFACE m_axi port=gmsb offset=slave bundle=gw depth=1024
#pragma HLS INTERFACE m_axi port=stats offset=slave bundle=gw depth=8
#pragma HLS INTERFACE m_axi port=y offset=slave bundle=gy max_write_burst_length=256 max_widen_bitwidth=64 depth=1024
#pragma HLS INTERFACE m_axi port=g_x offset=slave bundle=gy max_write_burst_length=256 max_widen_bitwidth=64 depth=1024
#pragma HLS INTERFACE s_axilite port=op
#pragma HLS INTERFACE s_axilite port=n_samples
#pragma HLS INTERFACE s_axilite port=n
#pragma HLS INTERFACE s_axilite port=ci
#pragma HLS INTERFACE s_axilite port=h
#pragma HLS INTERFACE s_axilite port=wd
#pragma HLS INTERFACE s_axilite port=co
#pragma HLS INTERFACE s_axilite port=k
#pragma HLS INTERFACE s_axilite port=stride
#pragma HLS INTERFACE s_axilite port=pad
#pragma HLS INTERFACE s_axilite port=x_unsigned
#pragma HLS INTERFACE s_axilite port=has_bias
#pragma HLS INTERFACE s_axilite port=relu
#pragma HLS INTERFACE s_axilite port=mult_m
#pragma HLS INTERFACE s_axilite port=mult_s
#pragma HLS INTERFACE s_axilite port=beta_q
#pragma HLS INTERFACE s_axilite port=lr_q
#pragma HLS INTERFACE s_axilite port=wd_q
#pragma HLS INTERFACE s_axilite port=return
#pragma HLS ALLOCATION function instances=e2t_engine_call limit=1
#pragma HLS ALLOCATION function instances=train_engine_hls limit=1
    // The weight tile of the forward and input-gradient passes: one buffer for both.
    E2T_KERNEL_STATIC int8_t wt[e2t::kWeightRows][e2t::R];
#pragma HLS ARRAY_PARTITION variable=wt complete dim=2
    // The engine's streams: one set, as there is one engine (call).
    psg::stream<eng::Head> head;
    psg::stream<eng::Beat> in;
    psg::stream<eng::Row> out;
#pragma HLS STREAM variable=out depth=8   // ROWS result rows wait for the output stage
    switch (op) {
        case E2T_OP_FWD:
            return e2t::fwd_pass(wt, head, in, out, x, g_y, w, bias, y, samples, n_samples, n, ci, h, wd, co, k,
                                 stride, pad, x_unsigned, has_bias, relu, mult_m, mult_s);
        case E2T_OP_BWD_DATA:
            return e2t::bwd_data_pass(wt, head, in, out, x, g_y, w, g_x, samples, n_samples, n, ci, h, wd, co, k,
                                      stride, pad, mult_m, mult_s);
        case E2T_OP_BWD_WEIGHT_PSG:
            return e2t::wgrad_pass(wt, head, in, out, x, g_y, w_master, sign, predicted, gmsb, stats, samples,
                                   n_samples, n, ci, h, wd, co, k, stride, pad, x_unsigned, beta_q, lr_q, wd_q);
        default:
            return E2T_ERR_SHAPE;   // no such pass: nothing read, nothing written
    }
}
