// psg_engine.h -- C models of the PSG weight-gradient RTL (fpga/rtl) and the contract's
// PSG helpers (MSB splits, confidence test) that the HLS kernel calls:
//   * psg::lanes_round / psg_lanes_hls(): the lane array psg_lanes.v that conv_bwd_weight_psg
//     runs every round on (an RTL blackbox; see the section at the end);
//   * the tile engine psg_engine.v, described first: a self-contained PSG unit, not called by
//     the kernels (docs/rtl.md).
//
// One *tile* is PSG_LANES weights. For each weight (lane) the engine receives the stream
// of (x, g) pairs that feed it -- one pair per lane per beat -- and accumulates
//
//   G_msb  = sum x_h*g_h                                   (the MSB predictor, always)
//   G      = 1024*G_msb + 16*sum x_h*g_l + 64*sum x_l*g_h + sum x_l*g_l   (= sum x*g exactly)
//
// with the rounding MSB splits of the fixed-point contract v2 (host/e2train/core/fixedpoint.py,
// msb_split_x / msb_split_g), ties away from zero:
//   x = 16*x_h + x_l,  x_h = min(sign(x) * ((|x| + 8) >> 4), top)   top = 15 for uint8 x, 7 for int8 x
//   g = 64*g_h + g_l,  g_h = clamp(sign(g) * ((|g| + 32) >> 6), -512, 511)
// and decides per lane (core/golden.py, psg_decide):
//   predicted <=> |G_msb| * 2^16 >= beta_q * gmsb_absmax  and  G_msb != 0  and  beta_q != 0
//   sign       = predicted ? sign(G_msb) : sign(G)        sign(0) = 0
//
// Call protocol (a layer, i.e. one weight tensor, split into tiles of PSG_LANES weights):
//   1. Predict pass: for every tile, psg::tile_start(t, kPredict, x_unsigned, 0), push every
//      beat, psg::tile_finish(...). Only the 4x10-bit predictor product runs. Keep each
//      tile's G_msb (or recompute it) and the layer's gmsb_absmax = max over tiles of
//      max_lane |G_msb|.
//   2. Decide pass: for every tile, corr_en = psg::confident_mask(G_msb of the tile,
//      beta_q, gmsb_absmax) inverted (psg::correction_mask does it), then tile_start(t,
//      kDecide, x_unsigned, corr_en), push the same beats again, tile_finish(...) with the
//      same beta_q / gmsb_absmax. Lanes whose corr_en bit is 0 compute no correction
//      product at all (counted in TileState::corr_macs). A lane that ends up not predicted
//      but had its corrections disabled is reported in TileResult::incomplete: its sign is
//      then 0 and the caller must treat it as an error (its corr_en came from a different
//      G_msb than the one streamed).
//   The one-call form psg::engine(in, out, ...) does start/push.../finish for one tile over
//   streams; psg_engine_hls() wraps it as the C function that Vitis HLS replaces with the
//   RTL (hls/blackbox/psg_engine.json). The RTL takes one tile per ap_start.
//   Preconditions (as in the golden model): beta_q <= 65536, gmsb_absmax < 2^47.
//
// Accumulators are int64 checked to 48 bits (the DSP48E1 P register). A tile longer than
// 2^kMaxBeatsLog2 beats could overflow 48 bits (|x*g| < 2^23), so it is refused exactly as the
// RTL refuses it: TileResult::overflow is set and the results are invalid. Within that
// length 48 bits cannot overflow; the explicit range check below is a second guard.
//
// Plain C++17 with <cstdint> types; no vendor headers are required. Under Vitis HLS
// (hls_stream.h available) the streams of psg::engine are hls::stream.
#ifndef E2TRAIN_PSG_ENGINE_H
#define E2TRAIN_PSG_ENGINE_H

#include <cstddef>
#include <cstdint>

#include "e2t_tiles.h"

#ifndef PSG_LANES
#define PSG_LANES 8
#endif
static_assert(PSG_LANES >= 1 && PSG_LANES <= 32, "PSG_LANES must be in 1..32 (lane masks are 32-bit)");

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

constexpr int kLanes = PSG_LANES;
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

enum Mode : uint8_t { kPredict = 0, kDecide = 1 };

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

// Lanes of a tile that the predictor decides, and the complement: the lanes that need the
// exact gradient (the corr_en argument of the decide pass).
inline uint32_t confident_mask(const int64_t g_msb[kLanes], uint32_t beta_q, uint64_t gmsb_absmax) {
    uint32_t m = 0;
    for (int l = 0; l < kLanes; ++l)
        if (confident(g_msb[l], beta_q, gmsb_absmax)) m |= uint32_t(1) << l;
    return m;
}
constexpr uint32_t all_lanes() { return kLanes == 32 ? 0xffffffffu : ((uint32_t(1) << kLanes) - 1); }
inline uint32_t correction_mask(const int64_t g_msb[kLanes], uint32_t beta_q, uint64_t gmsb_absmax) {
    return ~confident_mask(g_msb, beta_q, gmsb_absmax) & all_lanes();
}

// Accumulator state of one tile.
struct TileState {
    Mode mode;
    bool x_unsigned;
    uint32_t corr_en;          // lanes whose correction products run (0 in the predict pass)
    uint64_t beats;            // beats pushed
    uint64_t corr_macs;        // lane-beats whose three correction products ran (proof of skipping)
    bool overflow;             // tile too long / a 48-bit range check failed
    int64_t g_msb[kLanes];     // sum x_h*g_h
    int64_t c_hl[kLanes];      // sum x_h*g_l
    int64_t c_lh[kLanes];      // sum x_l*g_h
    int64_t c_ll[kLanes];      // sum x_l*g_l
};

struct TileResult {
    int8_t sign[kLanes];       // -1, 0, +1 (predict pass: sign of G_msb)
    bool predicted[kLanes];    // decided by the predictor (always false in the predict pass)
    int64_t g_msb[kLanes];
    int64_t g_exact[kLanes];   // sum x*g; meaningful only where corrections ran
    uint32_t predicted_mask;
    uint32_t incomplete;       // lanes not predicted whose corrections were disabled
    bool overflow;             // results invalid: tile longer than kMaxBeats
};

inline void acc_add(int64_t& acc, int64_t v, bool& overflow) {
    acc += v;                  // both operands < 2^48 in magnitude: no int64 overflow
    if (acc > kAccMax || acc < kAccMin) overflow = true;
}

inline void tile_start(TileState& t, Mode mode, bool x_unsigned, uint32_t corr_en) {
    t.mode = mode;
    t.x_unsigned = x_unsigned;
    t.corr_en = mode == kDecide ? (corr_en & all_lanes()) : 0u;
    t.beats = 0;
    t.corr_macs = 0;
    t.overflow = false;
    for (int l = 0; l < kLanes; ++l) t.g_msb[l] = t.c_hl[l] = t.c_lh[l] = t.c_ll[l] = 0;
}

// One beat: the pair (x[l], g[l]) of every lane l.
inline void tile_push(TileState& t, const uint8_t x[kLanes], const int16_t g[kLanes]) {
    if (++t.beats > kMaxBeats) t.overflow = true;
    for (int l = 0; l < kLanes; ++l) {
        const Split xs = split_x(x_value(x[l], t.x_unsigned), t.x_unsigned);
        const Split gs = split_g(g[l]);
        acc_add(t.g_msb[l], int64_t(xs.h) * gs.h, t.overflow);
        if (!((t.corr_en >> l) & 1u)) continue;      // confident lane: no correction MACs
        acc_add(t.c_hl[l], int64_t(xs.h) * gs.l, t.overflow);
        acc_add(t.c_lh[l], int64_t(xs.l) * gs.h, t.overflow);
        acc_add(t.c_ll[l], int64_t(xs.l) * gs.l, t.overflow);
        ++t.corr_macs;
    }
}

inline void tile_finish(const TileState& t, uint32_t beta_q, uint64_t gmsb_absmax, TileResult& r) {
    r.predicted_mask = 0;
    r.incomplete = 0;
    r.overflow = t.overflow;
    for (int l = 0; l < kLanes; ++l) {
        const int64_t exact = 1024 * t.g_msb[l] + 16 * t.c_hl[l] + 64 * t.c_lh[l] + t.c_ll[l];
        if (exact > kAccMax || exact < kAccMin) r.overflow = true;
        r.g_msb[l] = t.g_msb[l];
        r.g_exact[l] = exact;
        const bool on = (t.corr_en >> l) & 1u;
        if (t.mode == kPredict) {
            r.predicted[l] = false;
            r.sign[l] = sign_of(t.g_msb[l]);
            continue;
        }
        const bool pred = confident(t.g_msb[l], beta_q, gmsb_absmax);
        r.predicted[l] = pred;
        if (pred) {
            r.predicted_mask |= uint32_t(1) << l;
            r.sign[l] = sign_of(t.g_msb[l]);
        } else if (on) {
            r.sign[l] = sign_of(exact);
        } else {
            r.incomplete |= uint32_t(1) << l;
            r.sign[l] = 0;
        }
    }
}

// ---- stream form: the C function of the HLS RTL blackbox ------------------------------

// One input beat. RTL: s_x = {x[L-1],...,x[0]}, s_g = {g[L-1],...,g[0]}, s_last = last.
struct InBeat {
    uint8_t x[kLanes];
    int16_t g[kLanes];
    bool last;
};

// One output beat per tile. RTL: m_gmsb (48 bits per lane, sign-extended here), m_sign (2
// bits per lane, two's complement), m_pred, m_incomplete (one bit per lane), m_overflow.
struct OutBeat {
    int64_t g_msb[kLanes];
    int8_t sign[kLanes];
    uint32_t predicted;
    uint32_t incomplete;
    bool overflow;
};

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

inline OutBeat to_out_beat(const TileResult& r) {
    OutBeat o;
    for (int l = 0; l < kLanes; ++l) {
        o.g_msb[l] = r.g_msb[l];
        o.sign[l] = r.sign[l];
    }
    o.predicted = r.predicted_mask;
    o.incomplete = r.incomplete;
    o.overflow = r.overflow;
    return o;
}

// One tile: reads beats up to and including the one with last set, writes one OutBeat.
// mode: 0 predict, 1 decide. Arguments are stable for the whole call (ap_none wires).
inline void engine(stream<InBeat>& in, stream<OutBeat>& out, uint8_t mode, bool x_unsigned,
                   uint32_t corr_en, uint32_t beta_q, uint64_t gmsb_absmax) {
    TileState t;
    tile_start(t, mode == kDecide ? kDecide : kPredict, x_unsigned, corr_en);
    for (;;) {
        const InBeat b = in.read();
        tile_push(t, b.x, b.g);
        if (b.last) break;
    }
    TileResult r;
    tile_finish(t, beta_q, gmsb_absmax, r);
    out.write(to_out_beat(r));
}


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

// The function that Vitis HLS replaces with the RTL (hls/blackbox/psg_engine.json; its RTL
// module fpga/rtl/psg_engine_hls.v has the same name). Defined in
// hls/blackbox/psg_engine_hls.cpp, which is also its C simulation model.
void psg_engine_hls(psg::stream<psg::InBeat>& in, psg::stream<psg::OutBeat>& out, uint8_t mode,
                    bool x_unsigned, uint32_t corr_en, uint32_t beta_q, uint64_t gmsb_absmax);

// The kernel's lane array, replaced by the RTL (hls/blackbox/psg_lanes.json, module
// fpga/rtl/psg_lanes_hls.v); defined in hls/blackbox/psg_lanes_hls.cpp, its C simulation model.
void psg_lanes_hls(psg::stream<psg::LanesHead>& head, psg::stream<psg::LanesBeat>& in,
                   psg::stream<psg::LanesOut>& out, bool x_unsigned, uint16_t n_active, bool msb_en,
                   bool exact_en);

#endif  // E2TRAIN_PSG_ENGINE_H
