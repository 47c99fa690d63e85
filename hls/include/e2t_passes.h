// The three passes of the one HLS top, e2t_engine (hls/src/e2t_engine.cpp), and the one
// function through which every pass calls the training engine.
//
// Why one engine call function: Vitis HLS makes one RTL instance per call site of a
// function, and an ALLOCATION pragma only shares the instances called in the scope it is
// placed in. So the engine (train_engine_hls, the RTL blackbox, 144 DSP48E1) is called at ONE
// place, inside e2t_engine_call (a DATAFLOW region: the pass's operand feeder beside the engine);
// every pass function and its helpers are inlined into the top, so all e2t_engine_call sites
// lie in the top's scope, where `#pragma HLS ALLOCATION function instances=e2t_engine_call
// limit=1` makes them one instance: one engine in the IP. The feeders stay the passes' own
// (defined in hls/src/conv_*.cpp); e2t_engine_call picks one by the engine mode.
#ifndef E2T_PASSES_H
#define E2T_PASSES_H

#include <stdint.h>

#include "e2t_block.h"
#include "e2t_fixed.h"
#include "e2t_shape.h"
#include "e2t_tiles.h"
#include "train_engine.h"

namespace e2t {

constexpr int R = eng::kRows, C = eng::kCols, KK = E2T_MAX_K * E2T_MAX_K;

// The weight tile buffer the forward and input-gradient passes share (the top holds one):
// [channel * k*k + tap][row], a row per output (forward) or input (input-gradient) channel.
constexpr int kWeightRows = E2T_MAX_TAPS;      // ci*k*k (forward) and co*k*k (input gradient) <= it: e2t_shape_ok

struct Geometry {
    int ci, h, wd, co, k, stride, pad, ho, wo, taps;
};

inline Geometry geometry(int ci, int h, int wd, int co, int k, int stride, int pad) {
    return Geometry{ci, h, wd, co, k, stride, pad, e2t_out_dim(h, k, stride, pad), e2t_out_dim(wd, k, stride, pad),
                    ci * k * k};
}

namespace fwd {
constexpr int NPOS = 2 * C;
// Where a block's positions are: per position its sample's x and y planes, its window's top
// left input corner; positions past the list are off.
struct Block {
    int co0, p0;
    bool on[NPOS];
    int64_t xbase[NPOS], ybase[NPOS];
    int iy0[NPOS], ix0[NPOS];
};
void feed(psg::stream<eng::Beat> &in, const Block &b, const uint8_t *x, const int8_t wt[][R], const Geometry &q);
}  // namespace fwd

namespace bwd {
// One phase: its first input row/column, how many rows/columns it has per sample, and its taps.
struct Phase {
    int fy, fx, ny, nx, nky, nkx, py, px;
    int taps(int co) const { return co * nky * nkx; }
    int per_sample() const { return ny * nx; }
};
// A block: its COLS positions (sample planes, input row/column), positions past the phase off.
struct Block {
    int ci0;
    bool on[C];
    int64_t gbase[C], xbase[C];
    int iy[C], ix[C];
};
void feed(psg::stream<eng::Beat> &in, const Block &b, const int16_t *g_y, const int8_t wt[][R], const Geometry &q,
          const Phase &f);
}  // namespace bwd

namespace wgrad {
// A block of weights (output channels [o0, o0+nr), columns [j0, j0+nc)) over positions [p0, p1).
struct Span {
    int o0, nr, j0, nc, p0, p1;
};
void feed(psg::stream<eng::Beat> &in, const uint8_t *x, const int16_t *g_y, const int32_t *samples,
          const Geometry &q, const Span &s);
}  // namespace wgrad

// What one engine call streams: the placement of the pass that runs (the others' are unused).
struct Feed {
    fwd::Block fb;
    bwd::Block bb;
    bwd::Phase ph;
    wgrad::Span ws;
};

// The passes (hls/src/conv_fwd.cpp, conv_bwd_data.cpp, conv_bwd_weight_psg.cpp): the
// arguments of e2t_engine each one reads, and the top's weight tile buffer. Each is inlined
// into the top. Every pass takes both stream pointers (x, g_y) and hands them and samples to
// e2t_engine_call unchanged, so that every call site of the shared engine call binds the same
// top-level ports (a pass's feeder reads only its own).
// Engine streams: the top's (one set, as the engine call is one).
int fwd_pass(int8_t wt[][R],
             psg::stream<eng::Head> &head, psg::stream<eng::Beat> &in, psg::stream<eng::Row> &out,
             const uint8_t *x, const int16_t *g_y, const int8_t *w, const int32_t *bias, uint8_t *y, int64_t *stats,
             const int32_t *samples, int n_samples, int n, int ci, int h, int wd, int co, int k, int stride, int pad,
             int x_unsigned, int has_bias, int relu, int32_t mult_m, int mult_s, int b_flags);
int bwd_data_pass(int8_t wt[][R],
                  psg::stream<eng::Head> &head, psg::stream<eng::Beat> &in, psg::stream<eng::Row> &out,
                  const uint8_t *x, const int16_t *g_y, const int8_t *w, int16_t *g_x, const int32_t *samples,
                  int n_samples, int n, int ci, int h, int wd, int co, int k, int stride, int pad, int32_t mult_m,
                  int mult_s);
int wgrad_pass(int8_t wt[][R],
               psg::stream<eng::Head> &head, psg::stream<eng::Beat> &in, psg::stream<eng::Row> &out,
               const uint8_t *x, const int16_t *g_y, int32_t *w_master, int8_t *sign,
               uint8_t *predicted, int64_t *gmsb, int64_t *stats, const int32_t *samples, int n_samples, int n,
               int ci, int h, int wd, int co, int k, int stride, int pad, int x_unsigned, int32_t beta_q,
               int32_t lr_q, int32_t wd_q);

}  // namespace e2t

// One engine call: the feeder of `mode` streams the beats while the engine consumes them (in
// hardware concurrently, a DATAFLOW region, so the operand FIFO stays shallow; in C
// simulation one after the other through the stream). mode kFlush streams nothing: the
// engine only emits the previous call's rows (clr false: a flush clears nothing). Every
// argument is a caller's value (no statement between the DATAFLOW processes). Defined in
// hls/src/e2t_engine.cpp.
void e2t_engine_call(psg::stream<eng::Head> &head, psg::stream<eng::Beat> &in, psg::stream<eng::Row> &out,
                 uint8_t mode, const e2t::Feed &f, const e2t::Geometry &q, const uint8_t *x, const int16_t *g_y,
                 const int32_t *samples, const int8_t wt[][e2t::R], bool xu, bool exact, bool pred, bool clr,
                 uint8_t pred_rows, uint8_t pred_cols, bool emit);

#endif
