// msb_split.h -- the fixed-point contract's PSG arithmetic in C++: the MSB splits of x and g,
// the confidence test, the sign, the accumulator limits. The one C++ implementation: the
// engine's C model (train_engine.h) and the weight-gradient kernel call it;
// fpga/rtl/msb_split.v is the RTL's.
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
#ifndef E2T_MSB_SPLIT_H
#define E2T_MSB_SPLIT_H

#include <cstdint>

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

}  // namespace psg

#endif  // E2T_MSB_SPLIT_H
