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
// Accumulators wrap at the RTL's widths: P 48, lo 31, hi 31 bits; the read-out carries P's low
// 41 bits (kPOutBits, train_engine_hls.v), sign-extended. The DSP path runs on cells
// whose cell_en bit is set and only with exact_en.
//
// Call protocol (one C call = one RTL call): if emit, the ROWS result rows of the previous
// call are written to out first (row r: its cells' P, lo, hi, sign-extended); then one Head
// (the cell mask), then, unless mode 3, the beats up to the one with last; at the end the
// accumulators are copied for the next call's emit. A caller's loop is software-pipelined:
// call k returns call k-1's rows; a last mode-3 call with emit returns the final ones.
//
// How the model computes (call level, not cell by cell): per pair of beats every row operand
// times every column operand into per-call partial sums over the whole grid (branch-free
// loops over padded columns, SSE2 pmaddwd on x86), flushed into 64-bit sums before an
// int32 partial could overflow (|w*x| < 2^15 in FWD: 2^15 beats; |w*g|, |g*x| < 2^23 in BWD
// and WGRAD: 2^7 beats; the predictor's |x_h*g_h| < 2^13 rides on either); at the end of the
// call the cell mask and the predictor rectangle select which cells take their sums, and
// every register wraps at its RTL width. Wrapping once per call equals wrapping every beat
// (two's complement addition is modular), so the model is exact for every input, not only
// for the shapes the kernels send. tests/cocotb/test_engine_cmodel.py compares it with the
// RTL's Python reference (tests/cocotb/engine_model.py, the one the cocotb benches check the
// RTL against) on random calls of every mode.
//
// The MSB split is the contract's (v2, round half away from zero): psg::split_x / split_g of
// msb_split.h, the one C++ implementation (fpga/rtl/msb_split.v is the RTL's).
#ifndef E2TRAIN_TRAIN_ENGINE_H
#define E2TRAIN_TRAIN_ENGINE_H

#include <cstddef>
#include <cstdint>
#ifndef __SYNTHESIS__
#include <stdexcept>
#include <vector>
#if defined(__SSE2__)
#include <emmintrin.h>
#endif
#endif

#include "e2t_stream.h"
#include "msb_split.h"

#ifndef ENG_ROWS
#define ENG_ROWS 8
#endif
#ifndef ENG_COLS
#define ENG_COLS 18
#endif

namespace eng {

constexpr int kRows = ENG_ROWS;
constexpr int kCols = ENG_COLS;
constexpr int kCells = kRows * kCols;
constexpr int kPBits = 48, kLoBits = 31, kHiBits = 31;
// P's bits in the read-out (the shadow registers and the row select of train_engine_hls.v): a
// call's exact sum is below 2^40 in every pass the kernels run (static_asserts at the passes).
constexpr int kPOutBits = 41;
static_assert(kRows >= 1 && kRows <= 255 && kCols >= 1 && kCols <= 255, "grid limits of the RTL (8-bit extents)");
enum Mode { kFwd = 0, kBwd = 1, kWgrad = 2, kFlush = 3 };

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

#ifndef __SYNTHESIS__
// The C model below is what C simulation runs; Vitis HLS synthesis puts the RTL there (the
// blackbox), so it never synthesises this code.

// The engine's registers: the accumulators and the shadow the next call emits.
struct State {
    int64_t p[kCells] = {}, lo[kCells] = {}, hi[kCells] = {};
    int64_t sp[kCells] = {}, slo[kCells] = {}, shi[kCells] = {};
};

namespace detail {

constexpr int kPad = (kCols + 7) / 8 * 8;   // columns padded to whole vectors (the pad holds 0)

// Per-call sums of one call: int32 partials over at most `flush_every` beats, then int64.
struct CallSums {
    int32_t pa[kRows][kPad], pb[kRows][kPad];   // partials: FWD lo/hi, or exact P / predictor lo
    int64_t a[kRows][kPad], b[kRows][kPad];
    int64_t last_packed[kRows][kPad];           // FWD: the last beat's packed DSP product
    void clear_partials() {
        for (int r = 0; r < kRows; ++r)
            for (int c = 0; c < kPad; ++c) pa[r][c] = pb[r][c] = 0;
    }
    void flush() {
        for (int r = 0; r < kRows; ++r)
            for (int c = 0; c < kPad; ++c) {
                a[r][c] += pa[r][c];
                b[r][c] += pb[r][c];
            }
        clear_partials();
    }
};

// acc[r][c] += u0[r]*v[2c] + u1[r]*v[2c+1]: two beats at once, the column operands of the two
// interleaved. Every operand fits 16 bits and one of each product's two operands fits 9
// (w, x, x_h), so a product is below 2^23 and a pair's sum fits int32 exactly: one SSE2
// pmaddwd per four cells and two beats where the compiler targets x86, the same sums in plain
// C elsewhere.
inline void outer_pair(int32_t acc[kRows][kPad], const int16_t u0[kRows], const int16_t u1[kRows],
                       const int16_t v[2 * kPad]) {
#if defined(__SSE2__)
    __m128i vv[kPad / 4];
    for (int i = 0; i < kPad / 4; ++i) vv[i] = _mm_loadu_si128(reinterpret_cast<const __m128i*>(v + 8 * i));
    for (int r = 0; r < kRows; ++r) {
        const __m128i w = _mm_set1_epi32(int32_t(uint32_t(uint16_t(u0[r])) | (uint32_t(uint16_t(u1[r])) << 16)));
        int32_t* a = acc[r];
        for (int i = 0; i < kPad / 4; ++i) {
            __m128i* p = reinterpret_cast<__m128i*>(a + 4 * i);
            _mm_storeu_si128(p, _mm_add_epi32(_mm_loadu_si128(p), _mm_madd_epi16(vv[i], w)));
        }
    }
#else
    for (int r = 0; r < kRows; ++r)
        for (int c = 0; c < kPad; ++c) acc[r][c] += int32_t(u0[r]) * v[2 * c] + int32_t(u1[r]) * v[2 * c + 1];
#endif
}

// The row and column operands of one beat in the form a mode multiplies them.
template <int M, bool XU>
inline void exact_operands(const Beat& b, int16_t u[kRows], int16_t v0[kPad], int16_t v1[kPad]) {
    for (int r = 0; r < kRows; ++r)
        u[r] = M == kWgrad ? b.row[r] : int16_t(int8_t(uint16_t(b.row[r]) & 0xff));
    for (int c = 0; c < kCols; ++c) {
        if (M == kFwd) {
            v0[c] = int16_t(psg::x_value(uint8_t(uint16_t(b.col[c]) & 0xff), XU));
            v1[c] = int16_t(psg::x_value(uint8_t(uint16_t(b.col[c]) >> 8), XU));
        } else {
            v0[c] = M == kBwd ? b.col[c] : int16_t(psg::x_value(uint8_t(uint16_t(b.col[c]) & 0xff), XU));
        }
    }
}

template <bool XU>
inline void pred_operands(const Beat& b, int16_t gh[kRows], int16_t xh[kPad]) {
    for (int r = 0; r < kRows; ++r) gh[r] = int16_t(psg::split_g(b.prow[r]).h);
    for (int c = 0; c < kCols; ++c) xh[c] = int16_t(psg::split_x(psg::x_value(b.pcol[c], XU), XU).h);
}

inline void interleave(int16_t out[2 * kPad], const int16_t a[kPad], const int16_t b[kPad]) {
    for (int c = 0; c < kPad; ++c) {
        out[2 * c] = a[c];
        out[2 * c + 1] = b[c];
    }
}

// The beats of one call, mode by mode (the loops the compiler specialises), two at a time (an
// odd last beat pairs with zeros).
template <int M, bool XU>
inline void run_beats(CallSums& s, const Beat* beats, std::size_t n, bool exact, bool pred) {
    constexpr std::size_t flush_every = M == kFwd ? (std::size_t(1) << 15) : (std::size_t(1) << 7);
    int16_t u[2][kRows] = {}, v0[2][kPad] = {}, v1[2][kPad] = {}, gh[2][kRows] = {}, xh[2][kPad] = {};
    int16_t vi[2 * kPad];
    std::size_t since = 0;
    for (std::size_t t = 0; t < n; t += 2) {
        const bool two = t + 1 < n;
        if (M == kFwd || exact) {
            exact_operands<M, XU>(beats[t], u[0], v0[0], v1[0]);
            if (two) {
                exact_operands<M, XU>(beats[t + 1], u[1], v0[1], v1[1]);
            } else {
                for (int r = 0; r < kRows; ++r) u[1][r] = 0;
            }
            interleave(vi, v0[0], v0[1]);
            outer_pair(s.pa, u[0], u[1], vi);
            if (M == kFwd) {
                interleave(vi, v1[0], v1[1]);
                outer_pair(s.pb, u[0], u[1], vi);
            }
        }
        if (M != kFwd && pred) {
            pred_operands<XU>(beats[t], gh[0], xh[0]);
            if (two) {
                pred_operands<XU>(beats[t + 1], gh[1], xh[1]);
            } else {
                for (int r = 0; r < kRows; ++r) gh[1][r] = 0;
            }
            interleave(vi, xh[0], xh[1]);
            outer_pair(s.pb, gh[0], gh[1], vi);
        }
        since += 2;
        if (since >= flush_every) {
            s.flush();
            since = 0;
        }
    }
    s.flush();
    if (M == kFwd && n) {   // P = the last beat's packed product + 2^15 (the C port)
        const Beat& b = beats[n - 1];
        for (int r = 0; r < kRows; ++r)
            for (int c = 0; c < kCols; ++c) {
                const int64_t w = int8_t(uint16_t(b.row[r]) & 0xff);
                const int64_t x0 = psg::x_value(uint8_t(uint16_t(b.col[c]) & 0xff), XU);
                const int64_t x1 = psg::x_value(uint8_t(uint16_t(b.col[c]) >> 8), XU);
                s.last_packed[r][c] = w * (x1 * 65536 + x0) + 32768;
            }
    }
}

}  // namespace detail

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
    if (m == kFlush) return;
    if (clr_dsp)
        for (int k = 0; k < kCells; ++k) st.p[k] = 0;
    if (clr_fab)
        for (int k = 0; k < kCells; ++k) st.lo[k] = st.hi[k] = 0;
    const bool pred = pred_en && m != kFwd;
    // The call's beats in place (the stand-in stream), or gathered from hls::stream (Vitis HLS's
    // own C simulation, which has no in-place view).
    std::size_t n = 0;
#ifdef E2T_HAVE_HLS_STREAM
    static thread_local std::vector<Beat> gathered;
    gathered.clear();
    do gathered.push_back(in.read());
    while (!gathered.back().last);
    const Beat* beats = gathered.data();
    n = gathered.size();
#else
    std::size_t avail = 0;
    const Beat* beats = in.pending(avail);
    while (n < avail && !beats[n].last) ++n;
    if (n == avail) throw std::runtime_error("train_engine_hls: the operand stream ended before its last beat");
    ++n;
#endif
    static thread_local detail::CallSums s;
    for (int r = 0; r < kRows; ++r)
        for (int c = 0; c < detail::kPad; ++c) s.a[r][c] = s.b[r][c] = 0;
    s.clear_partials();
    using Run = void (*)(detail::CallSums&, const Beat*, std::size_t, bool, bool);
    static constexpr Run runs[3][2] = {{detail::run_beats<kFwd, false>, detail::run_beats<kFwd, true>},
                                       {detail::run_beats<kBwd, false>, detail::run_beats<kBwd, true>},
                                       {detail::run_beats<kWgrad, false>, detail::run_beats<kWgrad, true>}};
    runs[m][x_unsigned](s, beats, n, exact_en, pred);
#ifndef E2T_HAVE_HLS_STREAM
    in.consume(n);
#endif
    for (int r = 0; r < kRows; ++r) {
        for (int c = 0; c < kCols; ++c) {
            const int k = r * kCols + c;
            if (exact_en && h.cell_en[k]) {
                if (m == kFwd) {
                    st.lo[k] = wrap(st.lo[k] + s.a[r][c], kLoBits);
                    st.hi[k] = wrap(st.hi[k] + s.b[r][c], kHiBits);
                    st.p[k] = wrap(s.last_packed[r][c], kPBits);
                } else {
                    st.p[k] = wrap(st.p[k] + s.a[r][c], kPBits);
                }
            }
            if (pred && r < pred_rows && c < pred_cols) st.lo[k] = wrap(st.lo[k] + s.b[r][c], kLoBits);
        }
    }
    for (int k = 0; k < kCells; ++k) {
        st.sp[k] = wrap(st.p[k], kPOutBits);
        st.slo[k] = st.lo[k];
        st.shi[k] = st.hi[k];
    }
}

#endif  // __SYNTHESIS__

}  // namespace eng

// The function that Vitis HLS replaces with the RTL (hls/blackbox/train_engine.json, module
// fpga/rtl/train_engine_hls.v); defined in hls/blackbox/train_engine_hls.cpp, its C
// simulation model (one engine instance: its state persists from call to call).
void train_engine_hls(psg::stream<eng::Head>& head, psg::stream<eng::Beat>& in, psg::stream<eng::Row>& out,
                      uint8_t mode, bool x_unsigned, bool exact_en, bool pred_en, bool clr_dsp, bool clr_fab,
                      uint8_t pred_rows, uint8_t pred_cols, bool emit);

#endif  // E2TRAIN_TRAIN_ENGINE_H
