// psg_lanes.h -- the C model of the PSG lane array (fpga/rtl/psg_lanes.v) that
// conv_bwd_weight_psg runs every round on, as an RTL blackbox (psg::lanes_round,
// psg_lanes_hls(); see the section at the end), and the contract's PSG helpers the kernel
// calls: the MSB splits, the confidence test, the sign.
//
// Per weight the PSG arithmetic accumulates
//
//   G_msb  = sum x_h*g_h                                   (the MSB predictor)
//   G      = 1024*G_msb + 16*sum x_h*g_l + 64*sum x_l*g_h + sum x_l*g_l   (= sum x*g exactly)
//
// with the MSB splits of the fixed-point contract v2 (host/e2train/core/fixedpoint.py,
// msb_split_x / msb_split_g; split_x / split_g below), ties away from zero:
//   x = 16*x_h + x_l,  x_h = min(sign(x) * ((|x| + 8) >> 4), top)   top = 15 for uint8 x, 7 for int8 x
//   g = 64*g_h + g_l,  g_h = clamp(sign(g) * ((|g| + 32) >> 6), -512, 511)
// and decides (core/golden.py, psg_decide):
//   predicted <=> |G_msb| * 2^16 >= beta_q * gmsb_absmax  and  G_msb != 0  and  beta_q != 0
//   sign       = predicted ? sign(G_msb) : sign(G)        sign(0) = 0
// Accumulators are 48 bits (the DSP48E1 P register): |x*g| < 2^23, so 2^24 beats fit.
//
// Plain C++17 with <cstdint> types; no vendor headers are required. Under Vitis HLS
// (hls_stream.h available) psg::stream is hls::stream.
#ifndef E2TRAIN_PSG_LANES_H
#define E2TRAIN_PSG_LANES_H

#include <cstddef>
#include <cstdint>

#include "e2t_tiles.h"

#if defined(__has_include)
#if __has_include(<hls_stream.h>)
#include <hls_stream.h>
#define PSG_HAVE_HLS_STREAM 1
#endif
#endif
#ifndef PSG_HAVE_HLS_STREAM
#include <vector>
#include <stdexcept>
#endif

namespace psg {

constexpr int kAccBits = 48;
constexpr int64_t kAccMax = (int64_t(1) << (kAccBits - 1)) - 1;
constexpr int64_t kAccMin = -(int64_t(1) << (kAccBits - 1));
// |x*g| <= 255*32768 < 2^23, so 2^24 beats keep every 48-bit accumulator in range.
constexpr int kMaxBeatsLog2 = 24;
constexpr uint64_t kMaxBeats = uint64_t(1) << kMaxBeatsLog2;
constexpr int kBetaFracBits = 16;
constexpr uint32_t kBetaQMax = uint32_t(1) << kBetaFracBits;   // beta = 1
constexpr int kXShift = 4, kGShift = 6;
constexpr int32_t kGhMin = -512, kGhMax = 511;

// Arithmetic shift right (floor division by 2^s), well defined for negative v in C++17.
constexpr int64_t asr(int64_t v, int s) { return v >= 0 ? (v >> s) : ~((~v) >> s); }

// The x code as an integer: 0..255 for uint8 activations, -128..127 for int8.
constexpr int32_t x_value(uint8_t code, bool x_unsigned) {
    return x_unsigned ? int32_t(code) : int32_t(int8_t(code));
}

struct Split { int32_t h, l; };

// v / 2^s rounded to nearest, ties away from zero (the contract's tie rule, v2).
constexpr int32_t round_shift_away(int32_t v, int s) {
    return v < 0 ? -int32_t(asr(int64_t(1 << (s - 1)) - v, s)) : int32_t(asr(int64_t(v) + (1 << (s - 1)), s));
}

constexpr Split split_x(int32_t x, bool x_unsigned) {
    const int32_t top = x_unsigned ? 15 : 7;
    int32_t h = round_shift_away(x, kXShift);
    if (h > top) h = top;
    return Split{h, x - h * 16};
}

constexpr Split split_g(int32_t g) {
    int32_t h = round_shift_away(g, kGShift);
    if (h < kGhMin) h = kGhMin;
    if (h > kGhMax) h = kGhMax;
    return Split{h, g - h * 64};
}

constexpr int64_t iabs(int64_t v) { return v < 0 ? -v : v; }
constexpr int8_t sign_of(int64_t v) { return int8_t((v > 0) - (v < 0)); }

// The PSG confidence test, exact in integers. |G_msb| < 2^47 and beta_q <= 2^16 keep both
// sides below 2^63.
constexpr bool confident(int64_t g_msb, uint32_t beta_q, uint64_t gmsb_absmax) {
    return beta_q != 0 && g_msb != 0 &&
           (uint64_t(iabs(g_msb)) << kBetaFracBits) >= uint64_t(beta_q) * gmsb_absmax;
}

// ---- streams of the HLS RTL blackbox ----------------------------------------------------

#ifdef PSG_HAVE_HLS_STREAM
template <class T> using stream = hls::stream<T>;
#else
// A stand-in for hls::stream with the calls the kernels use (read, write, empty, size).
// A vector and a read index: once drained it is emptied but keeps its memory, so a stream
// that is reused round after round (the kernel's) allocates nothing per beat.
template <class T> class stream {
  public:
    void write(const T& v) { q_.push_back(v); }
    T read() {
        if (head_ == q_.size()) throw std::runtime_error("psg::stream::read on an empty stream (the producer wrote too few beats)");
        T v = q_[head_++];
        if (head_ == q_.size()) {
            q_.clear();
            head_ = 0;
        }
        return v;
    }
    bool empty() const { return head_ == q_.size(); }
    std::size_t size() const { return q_.size() - head_; }
  private:
    std::vector<T> q_;
    std::size_t head_ = 0;
};
#endif


// ---- the lane array of conv_bwd_weight_psg (fpga/rtl/psg_lanes.v) -----------------------
//
// One call = one *round* of the kernel: a head beat (each lane's window selects and initial
// sums), window beats up to the one with last, one result beat. Lane l accumulates, per beat,
//   g_msb[l]   += x_h*g_h of (x[x_sel[l]], g[g_sel[l]])   where msb_en
//   g_exact[l] += x*g of the same pair                     where exact_en and l < kArrayExact
// for l < n_active; the other lanes return their initial sums untouched. An out-of-range
// select reads 0 (the RTL's mux does the same); the kernel never sends one.
// Sizes: the kernel's (hls/include/e2t_tiles.h): every predictor lane, the first
// kArrayExact of them with an exact (DSP48E1) path, a window of TILE_CI x 9 x slots and
// TILE_CO g slots. Tests build other sizes with -DPSG_ARRAY_LANES=... etc.
#ifndef PSG_ARRAY_LANES
#define PSG_ARRAY_LANES E2T_PSG_PRED_LANES
#endif
#ifndef PSG_ARRAY_EXACT
#define PSG_ARRAY_EXACT E2T_PSG_EXACT_LANES
#endif
#ifndef PSG_WINDOW_X
#define PSG_WINDOW_X (E2T_TILE_CI * E2T_MAX_K * E2T_MAX_K)
#endif
#ifndef PSG_WINDOW_G
#define PSG_WINDOW_G E2T_TILE_CO
#endif

constexpr int kArrayLanes = PSG_ARRAY_LANES;
constexpr int kArrayExact = PSG_ARRAY_EXACT;
constexpr int kWindowX = PSG_WINDOW_X;
constexpr int kWindowG = PSG_WINDOW_G;
static_assert(kArrayExact >= 1 && kArrayExact <= kArrayLanes && kArrayLanes <= 65535,
              "the lane array needs 1 <= exact lanes <= lanes < 2^16");
static_assert(kWindowX >= 1 && kWindowX <= 256 && kWindowG >= 1 && kWindowG <= 256,
              "window selects are 8-bit");

// RTL h_*: h_xsel, h_gsel, h_msb, h_exact.
struct LanesHead {
    uint8_t x_sel[kArrayLanes];
    uint8_t g_sel[kArrayLanes];
    int64_t g_msb[kArrayLanes];
    int64_t g_exact[kArrayExact];
};

// RTL s_*: s_x (x codes; code 0 in the padding), s_g, s_last.
struct LanesBeat {
    uint8_t x[kWindowX];
    int16_t g[kWindowG];
    bool last;
};

// RTL m_*: m_msb, m_exact (48 bits each, sign-extended here).
struct LanesOut {
    int64_t g_msb[kArrayLanes];
    int64_t g_exact[kArrayExact];
};

// Counts of the work a round did (C simulation only; the RTL's proof is its clock enables).
struct LanesWork {
    uint64_t beats, msb_macs, exact_macs;
};

inline LanesWork lanes_round(stream<LanesHead>& head, stream<LanesBeat>& in, stream<LanesOut>& out,
                             bool x_unsigned, uint16_t n_active, bool msb_en, bool exact_en) {
    const LanesHead h = head.read();
    const int na = n_active < kArrayLanes ? n_active : kArrayLanes;
    const int ne = exact_en ? (na < kArrayExact ? na : kArrayExact) : 0;
    const int nm = msb_en ? na : 0;
    // Out-of-range selects read slot kWindowX / kWindowG, which holds 0.
    int xs[kArrayLanes], gs[kArrayLanes];
    for (int l = 0; l < kArrayLanes; ++l) {
        xs[l] = h.x_sel[l] < kWindowX ? h.x_sel[l] : kWindowX;
        gs[l] = h.g_sel[l] < kWindowG ? h.g_sel[l] : kWindowG;
    }
    int64_t am[kArrayLanes], ae[kArrayExact];
    for (int l = 0; l < kArrayLanes; ++l) am[l] = h.g_msb[l];
    for (int l = 0; l < kArrayExact; ++l) ae[l] = h.g_exact[l];
    LanesWork w{0, 0, 0};
    for (;;) {
        const LanesBeat b = in.read();
        // The splits once per window slot: every lane that selects the slot shares them.
        int32_t wx[kWindowX + 1], wxh[kWindowX + 1], gv[kWindowG + 1], gh[kWindowG + 1];
        for (int i = 0; i < kWindowX; ++i) {
            wx[i] = x_value(b.x[i], x_unsigned);
            wxh[i] = split_x(wx[i], x_unsigned).h;
        }
        for (int j = 0; j < kWindowG; ++j) {
            gv[j] = b.g[j];
            gh[j] = split_g(gv[j]).h;
        }
        wx[kWindowX] = wxh[kWindowX] = gv[kWindowG] = gh[kWindowG] = 0;
        for (int l = 0; l < nm; ++l) am[l] += int64_t(wxh[xs[l]]) * gh[gs[l]];
        for (int l = 0; l < ne; ++l) ae[l] += int64_t(wx[xs[l]]) * gv[gs[l]];
        ++w.beats;
        if (b.last) break;
    }
    w.msb_macs = w.beats * uint64_t(nm);
    w.exact_macs = w.beats * uint64_t(ne);
    LanesOut o;
    for (int l = 0; l < kArrayLanes; ++l) o.g_msb[l] = am[l];
    for (int l = 0; l < kArrayExact; ++l) o.g_exact[l] = ae[l];
    out.write(o);
    return w;
}

}  // namespace psg

// The kernel's lane array, replaced by the RTL (hls/blackbox/psg_lanes.json, module
// fpga/rtl/psg_lanes_hls.v); defined in hls/blackbox/psg_lanes_hls.cpp, its C simulation model.
void psg_lanes_hls(psg::stream<psg::LanesHead>& head, psg::stream<psg::LanesBeat>& in,
                   psg::stream<psg::LanesOut>& out, bool x_unsigned, uint16_t n_active, bool msb_en,
                   bool exact_en);

#endif  // E2TRAIN_PSG_LANES_H
