// train_engine.h -- C model of the training engine's HLS blackbox (fpga/rtl/train_engine_hls.v
// around fpga/rtl/train_engine.v; docs/rtl.md), bit for bit: what C simulation runs where
// Vitis HLS puts the RTL (hls/blackbox/train_engine.json).
//
// A ROWS x COLS grid of cells; per operand beat cell (r, c) accumulates row[r] * col[c]:
//   mode 0 FWD    w (int8, row) times two x codes (column: position 2c in bits 7:0, 2c+1 in
//                 15:8): lo += w*x0, hi += w*x1; P holds the last packed product + 2^15
//   mode 1 BWD    w (int8, row) times g (int16, column): P += w*g; and the predictor as in
//                 WGRAD (a weight gradient's predictor sweep riding on the input gradient)
//   mode 2 WGRAD  g (int16, row) times x (column, bits 7:0): P += g*x; and the predictor on
//                 its own operands (prow, pcol): lo += x_h*g_h on cells r < pred_rows,
//                 c < pred_cols
//   mode 3        no operands (a flush: only the rows of the previous call come out)
// Accumulators wrap at the RTL's widths: P 48, lo 38, hi 31 bits (the callers' shapes keep
// the sums inside them: docs/rtl.md, preconditions). The DSP path runs on cells whose
// cell_en bit is set and only with exact_en.
//
// Call protocol (one C call = one RTL call): if emit, the ROWS result rows of the previous
// call are written to out first (row r: its cells' P, lo, hi, sign-extended); then one Head
// (the cell mask), then, unless mode 3, the beats up to the one with last; at the end the
// accumulators are copied for the next call's emit. A caller's loop is software-pipelined:
// call k returns call k-1's rows; a last mode-3 call with emit returns the final ones.
//
// The MSB split is the contract's (v2, round half away from zero): psg::split_x / psg::split_g
// of psg_lanes.h, the one C++ implementation (fpga/rtl/msb_split.v is the RTL's).
#ifndef E2TRAIN_TRAIN_ENGINE_H
#define E2TRAIN_TRAIN_ENGINE_H

#include <cstdint>

#include "psg_lanes.h"   // psg::stream

#ifndef ENG_ROWS
#define ENG_ROWS 8
#endif
#ifndef ENG_COLS
#define ENG_COLS 21
#endif

namespace eng {

constexpr int kRows = ENG_ROWS;
constexpr int kCols = ENG_COLS;
constexpr int kCells = kRows * kCols;
constexpr int kPBits = 48, kLoBits = 38, kHiBits = 31;
static_assert(kRows >= 1 && kRows <= 255 && kCols >= 1 && kCols <= 255, "grid limits of the RTL (8-bit extents)");

struct Head {
    bool cell_en[kCells];
};
struct Beat {
    int16_t row[kRows];
    int16_t col[kCols];
    int16_t prow[kRows];
    uint8_t pcol[kCols];
    bool last;
};
struct Row {
    int64_t p[kCols];
    int64_t lo[kCols];
    int64_t hi[kCols];
};

// The low `bits` of v as two's complement (the RTL's register width).
constexpr int64_t wrap(int64_t v, int bits) {
    const uint64_t m = (uint64_t(1) << bits) - 1, u = uint64_t(v) & m;
    return (u >> (bits - 1)) ? int64_t(u) - int64_t(uint64_t(1) << bits) : int64_t(u);
}


struct State {
    int64_t p[kCells] = {}, lo[kCells] = {}, hi[kCells] = {};
    int64_t sp[kCells] = {}, slo[kCells] = {}, shi[kCells] = {};   // the shadow (last call's results)
};

inline void call(State& st, psg::stream<Head>& head, psg::stream<Beat>& in, psg::stream<Row>& out, uint8_t mode,
                 bool x_unsigned, bool exact_en, bool pred_en, bool clr_dsp, bool clr_fab, uint8_t pred_rows,
                 uint8_t pred_cols, bool emit) {
    if (emit) {
        for (int r = 0; r < kRows; ++r) {
            Row row;
            for (int c = 0; c < kCols; ++c) {
                row.p[c] = st.sp[r * kCols + c];
                row.lo[c] = st.slo[r * kCols + c];
                row.hi[c] = st.shi[r * kCols + c];
            }
            out.write(row);
        }
    }
    const Head h = head.read();
    const int m = mode & 3;
    if (m == 3) return;
    if (clr_dsp)
        for (int k = 0; k < kCells; ++k) st.p[k] = 0;
    if (clr_fab)
        for (int k = 0; k < kCells; ++k) st.lo[k] = st.hi[k] = 0;
    for (;;) {
        const Beat b = in.read();
        int32_t gh[kRows], xh[kCols];
        for (int r = 0; r < kRows; ++r) gh[r] = psg::split_g(b.prow[r]).h;
        for (int c = 0; c < kCols; ++c)
            xh[c] = psg::split_x(psg::x_value(b.pcol[c], x_unsigned), x_unsigned).h;
        for (int r = 0; r < kRows; ++r) {
            for (int c = 0; c < kCols; ++c) {
                const int k = r * kCols + c;
                if (exact_en && h.cell_en[k]) {
                    if (m == 0) {
                        const int64_t w = int8_t(uint16_t(b.row[r]) & 0xff);
                        const int64_t x0 = psg::x_value(uint8_t(uint16_t(b.col[c]) & 0xff), x_unsigned);
                        const int64_t x1 = psg::x_value(uint8_t(uint16_t(b.col[c]) >> 8), x_unsigned);
                        st.lo[k] = wrap(st.lo[k] + w * x0, kLoBits);
                        st.hi[k] = wrap(st.hi[k] + w * x1, kHiBits);
                        st.p[k] = wrap(w * (x1 * 65536 + x0) + 32768, kPBits);
                    } else if (m == 1) {
                        st.p[k] = wrap(st.p[k] + int64_t(int8_t(uint16_t(b.row[r]) & 0xff)) * b.col[c], kPBits);
                    } else {
                        st.p[k] = wrap(st.p[k] + int64_t(b.row[r]) *
                                                     psg::x_value(uint8_t(uint16_t(b.col[c]) & 0xff), x_unsigned), kPBits);
                    }
                }
                if ((m == 1 || m == 2) && pred_en && r < pred_rows && c < pred_cols)
                    st.lo[k] = wrap(st.lo[k] + int64_t(gh[r]) * xh[c], kLoBits);
            }
        }
        if (b.last) break;
    }
    for (int k = 0; k < kCells; ++k) {
        st.sp[k] = st.p[k];
        st.slo[k] = st.lo[k];
        st.shi[k] = st.hi[k];
    }
}

}  // namespace eng

// The function that Vitis HLS replaces with the RTL (hls/blackbox/train_engine.json, module
// fpga/rtl/train_engine_hls.v); defined in hls/blackbox/train_engine_hls.cpp, its C
// simulation model (one engine instance: its state persists from call to call).
void train_engine_hls(psg::stream<eng::Head>& head, psg::stream<eng::Beat>& in, psg::stream<eng::Row>& out,
                      uint8_t mode, bool x_unsigned, bool exact_en, bool pred_en, bool clr_dsp, bool clr_fab,
                      uint8_t pred_rows, uint8_t pred_cols, bool emit);

#endif  // E2TRAIN_TRAIN_ENGINE_H
