// The block unit of e2t_engine (ops 3 bn_act, 4 bn_bwd_reduce, 5 bn_bwd_apply): the steps of a
// residual block around its convolutions, bit for bit as host/e2train/core/block_ops.py
// (docs/fixed-point.md section 9). Not the training engine: a streaming unit of
// E2T_BLOCK_LANES lanes beside it, one pipelined loop (II=1) over the block tensor (n, co, h, wd).
//
// One datapath serves the three ops. Per lane, one two-term affine map of 48 bits,
//     acc = u*A + v*B + K            (two DSP48E1: A*B+C, then the cascade's A*B+PCIN)
//     code = sat(shift_round(acc))   (the requantiser the conv passes' output stages use)
//   bn_act         u = y, A = a[c], K = b[c] (listed samples; 0 for the others), v = sc(r), B = r_mult
//   bn_bwd_reduce  u = g_a, A = ma, v = sc_b^T(g_b), B = mb, K = 0; then the ReLU mask (o > 0)
//   bn_bwd_apply   u = g_m, A = p[c], v = y, B = q[c], K = t[c]
// with the per-channel coefficients loaded once per call into a small BRAM (cA, cB, cK: the
// top's, shared by the ops; bn_bwd_reduce keeps its per-channel sums there instead), the
// shortcut read in place (option A: stride subsample, channel offset) and the sums kept on chip:
//   bn_act         pooled[s][c] (written at each plane's last beat), vmax[s] (at the sample's tail)
//   bn_bwd_reduce  red[c][3] (BRAM, written after the loop), gate[s][2] (last beat and tail)
// vmax is max |shift_round(acc)| over the sample: shift_round is monotone, so it is worked out
// once per sample from the running max and min of acc (two 48-bit compares per lane, no shifter).
//
// The loop runs over the batch's samples in order; a processed sample (bn_act: a listed one, or
// every one with a shortcut, the unlisted taking the shortcut alone; bn_bwd_reduce: every one,
// its reductions over the listed ones; bn_bwd_apply: a listed one) takes, per channel plane and
// row, ceil(wd / LANES) beats (the lanes stay in one row: one channel's coefficients, and
// addresses that are a row base plus the lane's column), plus one tail beat where the op has a
// second per-sample word to write (the bundle's write channel takes one word a cycle). A sample
// not processed takes one cycle and is neither read nor written. core/call_price.py price_block
// counts the same trips (tests/kernels/test_block_price.py).
#include "e2t_block.h"
#include "e2t_fixed.h"
#include "e2t_kernels.h"
#include "e2t_shape.h"

#ifndef __SYNTHESIS__
#include <atomic>
// The loop trips of the last block-unit call (C simulation only, for the pricing's test):
// sample-list check, coefficient words, streaming beats, tails, sums words, skips, setup steps.
// Process-wide relaxed atomics, not thread_local: a thread_local here slows the C simulation's
// conv passes by about 9% (the library's TLS accesses); a call on another thread at the same
// time mixes its counts in (the test reads them right after its own call, on one thread).
namespace {
enum { kList, kCoef, kBeats, kTails, kSums, kSkips, kSetup, kTrips };
std::atomic<int64_t> e2t_block_trips_last[kTrips];
}  // namespace
extern "C" void e2t_block_trips(int64_t out[7]) {
    for (int i = 0; i < kTrips; i++) out[i] = e2t_block_trips_last[i].load(std::memory_order_relaxed);
}
#define E2T_TRIP(field, k) (e2t_block_trips_last[field].fetch_add((k), std::memory_order_relaxed))
#define E2T_TRIPS_RESET() \
    for (int i = 0; i < kTrips; i++) e2t_block_trips_last[i].store(0, std::memory_order_relaxed)
#else
#define E2T_TRIP(field, k) ((void)0)
#define E2T_TRIPS_RESET() ((void)0)
#endif

namespace e2t {
namespace blk {

constexpr int L = E2T_BLOCK_LANES;
constexpr int64_t kFar = (INT64_C(1) << 47) - 1;   // |acc| < 2^46: the running max/min's start
// Beats between two read-modify-writes of one channel's red sums in the BRAM, at least: its read
// (1-2 cycles), the 48-bit add and the write-back, so that the DEPENDENCE pragma below holds.
constexpr int kRmwDistance = 4;

enum Op { kAct, kReduce, kApply };

// The call's scalars, as the ops read them.
struct Call {
    Op op;
    int n, c, h, wd;
    int shift;
    int64_t m1, m2, lo, hi;
    bool residual, two, relu;
    int r_c, r_h, r_w, r_st, r_lo;          // shortcut source (bn_act, the gate sums)
    int g_c, g_h, g_w, g_st, g_lo;          // b_gb's geometry (bn_bwd_reduce)
};

// The sample list as a bit per batch sample, checked as e2t_samples_ok checks it (in range, no
// repeats, at most n entries). Returns 0 when the list is invalid.
int sample_bits(const int32_t *samples, int n_samples, int n, bool listed[E2T_MAX_BATCH]) {
    if (n_samples < 0 || n_samples > n) return 0;
    for (int i = 0; i < n; i++) {
#pragma HLS PIPELINE II=1
        E2T_TRIP(kList, 1);
        listed[i] = false;
    }
    for (int i = 0; i < n_samples; i++) {
#pragma HLS PIPELINE
        E2T_TRIP(kList, 1);
        const int32_t s = samples[i];
        if (s < 0 || s >= n || listed[s]) return 0;
        listed[s] = true;
    }
    return 1;
}

inline int64_t shift_round(int64_t v, int s) {
    return s == 0 ? v : (v + (INT64_C(1) << (s - 1))) >> s;
}

// a * b for the call's setup (tensor and plane sizes, the loop's trip count): shift and add over
// b's kSetupBits bits (every b here is a dimension, a beat count or a batch: below 2^13), one bit
// a cycle, so that the setup takes no DSP48E1 (the unit's 20 are its lanes') and one adder.
constexpr int kSetupBits = 13;
int64_t mul_seq(int64_t a, int64_t b) {
#pragma HLS INLINE off
    int64_t acc = 0;
    for (int i = 0; i < kSetupBits; i++) {
        E2T_TRIP(kSetup, 1);
        if (b & 1) acc += a;
        a <<= 1;
        b >>= 1;
    }
    return acc;
}

// Loads the per-channel coefficients (words [0, co) -> cA, [co, 2co) -> cB or cK, ...) into the
// BRAM, one word a cycle, checking each against the 48-bit limits. bn_bwd_reduce zeroes its sums
// there instead. Returns 0 when a coefficient is out of range (nothing has been written to DDR).
int load_coef(const Call &k, const int64_t *coef, int32_t cA[E2T_MAX_DIM], int64_t cB[E2T_MAX_DIM],
              int64_t cK[E2T_MAX_DIM]) {
    const int words = k.op == kAct ? 2 * k.c : k.op == kApply ? 3 * k.c : k.c;
    int ok = 1;
    int part = 0, ch = 0;                         // word j is coefficient `part` of channel ch
    for (int j = 0; j < words; j++) {
#pragma HLS PIPELINE II=1
        E2T_TRIP(kCoef, 1);
        if (k.op == kReduce) {                    // red[c] = 0: sum g_m (cK), sum g_m*y (cB), max |g_m| (cA)
            cA[j] = 0;
            cB[j] = 0;
            cK[j] = 0;
            continue;
        }
        const int64_t v = coef[j];
        const bool is_const = (k.op == kAct && part == 1) || (k.op == kApply && part == 2);
        const int64_t limit = is_const ? E2T_BLOCK_CONST_LIMIT : E2T_BLOCK_MULT_LIMIT;
        if (v <= -limit || v >= limit) ok = 0;
        if (part == 0) cA[ch] = (int32_t)v;       // a or p (|.| < 2^24: 25 bits, e2t_c25 in the lanes)
        else if (is_const) cK[ch] = v;            // b or t (|.| < 2^44)
        else cB[ch] = v;                          // q
        if (++ch == k.c) {
            ch = 0;
            part++;
        }
    }
    return ok;
}

// The streaming loop and the sums' write-out. Every address is a running base plus the lane's
// column (no multiply in the loop): the block tensors' row base steps by wd, a shortcut
// source's by r_w << (stride - 1), b_gb's by gb_w every gb_stride rows; the products below are
// worked out once per call.
void run(const Call &k, const bool listed[E2T_MAX_BATCH], int n_samples, const int8_t *y, uint8_t *o_out,
         const uint8_t *o_in, const uint8_t *r, const int16_t *ga, const int16_t *gb, int16_t *gm_out,
         const int16_t *gm_in, int16_t *gy, int64_t *sums, int32_t cA[E2T_MAX_DIM], int64_t cB[E2T_MAX_DIM],
         int64_t cK[E2T_MAX_DIM]) {
    const bool all = k.op == kReduce || (k.op == kAct && k.residual);
    const int n_proc = all ? k.n : n_samples;
    const bool tail = k.op != kApply;              // a second per-sample word: vmax, gate[s][1]
    const int bpr = (k.wd + L - 1) / L;            // beats per row: lanes stay in one row
    const int64_t planes_rows = mul_seq(k.c, k.h), sample_elems = mul_seq(planes_rows, k.wd);
    // strides 1 or 2 (checked): shifts; 0 where the source is not read (its registers are 0)
    const int rsh = k.residual ? k.r_st - 1 : 0, gsh = k.two ? k.g_st - 1 : 0, gmask = (1 << gsh) - 1;
    const int64_t r_plane = mul_seq(k.r_h, k.r_w), r_sample = mul_seq(r_plane, k.r_c);
    const int64_t r_lo_off = mul_seq(r_plane, k.r_lo), r_row = (int64_t)k.r_w << rsh;
    const int64_t g_plane = mul_seq(k.g_h, k.g_w), g_sample = mul_seq(g_plane, k.g_c);
    const int64_t g_lo_off = mul_seq(g_plane, k.g_lo);
    const int64_t vmax_base = mul_seq(k.n, k.c), gate_base = 3 * (int64_t)k.c;

    int s = 0, ch = 0, py = 0, bx = 0;
    int tails_left = 0;
    int64_t row = 0;                               // y, o, g_a, g_m, g_y: (s, ch, py, 0)
    int64_t r_samp = 0, r_ch = -r_lo_off, r_off = 0;            // shortcut source: sample, channel, row
    int64_t g_samp = 0, g_ch = g_lo_off, g_off = 0;             // b_gb: sample, channel, row
    // per-plane and per-sample sums (registers)
    e2t_w48 pooled = 0, amax = -kFar, amin = kFar;
    e2t_w48 s_g = 0, s_gy = 0, gate0 = 0, gate1 = 0;
    int32_t m_g = 0;
    // Tail beats per processed sample: one (its second per-sample word), and for bn_bwd_reduce
    // as many more as keep a channel's next plane end kRmwDistance beats after its last (the
    // red read-modify-write's latency; only tensors of fewer than kRmwDistance beats a sample,
    // single-channel planes of one row, need them).
    const int64_t beats_per_sample = mul_seq(planes_rows, bpr);
    const int n_tail = !tail ? 0 : k.op == kReduce && beats_per_sample < kRmwDistance
                                       ? (int)(kRmwDistance - beats_per_sample) : 1;
    const int64_t trips = mul_seq(beats_per_sample + n_tail, n_proc) + (k.n - n_proc);
    int64_t pidx = 0;                              // pooled[s][ch]: the planes in order
    for (int64_t t = 0; t < trips; t++) {
#pragma HLS PIPELINE II=1
        // cA/cB/cK: bn_bwd_reduce's read-modify-write of a channel's sums at its plane's last beat;
        // the same channel's next plane ends at least kRmwDistance beats later (c*h*bpr beats
        // and the tails), after its write-back
#pragma HLS DEPENDENCE variable=cA type=inter dependent=false
#pragma HLS DEPENDENCE variable=cB type=inter dependent=false
#pragma HLS DEPENDENCE variable=cK type=inter dependent=false
        const bool lst = listed[s];
        if (!(all || lst)) {                       // a sample not processed: one cycle, nothing touched
            E2T_TRIP(kSkips, 1);
            row += sample_elems;
            pidx += k.c;
            s++;
            continue;
        }
        if (tails_left > 0) {
            E2T_TRIP(kTails, 1);
            if (tails_left-- < n_tail) {           // the extra tails of a small tensor: idle
                if (tails_left == 0) s++;
                continue;
            }
            if (k.op == kAct) {
                const int64_t vmax_hi = shift_round((int64_t)amax, k.shift);
                const int64_t vmax_lo = shift_round((int64_t)amin, k.shift);
                sums[vmax_base + s] = vmax_hi > -vmax_lo ? vmax_hi : -vmax_lo;
                amax = -kFar;
                amin = kFar;
            } else {
                sums[gate_base + 2 * (int64_t)s + 1] = (int64_t)gate1;
                gate0 = gate1 = 0;
            }
            if (tails_left == 0) s++;
            continue;
        }
        E2T_TRIP(kBeats, 1);
        // this beat's channel coefficients, common to the lanes
        e2t_c25 A = 0, B = 0;
        e2t_w48 K = 0;
        if (k.op == kAct) {
            A = lst ? cA[ch] : 0;
            B = (e2t_c25)(k.residual ? k.m1 : 0);
            K = lst ? cK[ch] : 0;
        } else if (k.op == kReduce) {
            A = (e2t_c25)k.m1;
            B = (e2t_c25)(k.two ? k.m2 : 0);
        } else {
            A = cA[ch];
            B = (e2t_c25)cB[ch];
            K = cK[ch];
        }
        const bool r_on = k.residual && ch >= k.r_lo && ch < k.r_lo + k.r_c;
        const bool g_row = k.two && (py & gmask) == 0 && (py >> gsh) < k.g_h;
        e2t_w48 beat_pool = 0, beat_g = 0, beat_gy = 0, beat_g0 = 0, beat_g1 = 0;
        int32_t beat_m = 0;
        for (int l = 0; l < L; l++) {
#pragma HLS UNROLL
            const int px = bx * L + l;
            if (px >= k.wd) continue;
            const int64_t idx = row + px;
            const int16_t rv = r_on ? (int16_t)r[r_samp + r_ch + r_off + ((int64_t)px << rsh)] : 0;
            int16_t u = 0, v = 0;                  // the codes: int8, uint8 or int16, all in 16 bits
            if (k.op == kAct) {
                u = lst ? (int16_t)y[idx] : 0;
                v = rv;
            } else if (k.op == kReduce) {
                u = ga[idx];
                const bool g_on = g_row && (px & gmask) == 0 && (px >> gsh) < k.g_w;
                v = g_on ? gb[g_samp + g_ch + g_off + (px >> gsh)] : 0;
            } else {
                u = gm_in[idx];
                v = y[idx];
            }
            const e2t_w48 p1 = e2t_mul_16x25(u, A);
#pragma HLS BIND_OP variable=p1 op=mul impl=dsp
            const e2t_w48 p2 = e2t_mul_16x25(v, B);
#pragma HLS BIND_OP variable=p2 op=mul impl=dsp
            const e2t_w48 acc = p1 + K + p2;
            int ovf = 0;
            const int16_t q = (int16_t)e2t_requant_unit((int64_t)acc, 1, k.shift, k.lo, k.hi, INT64_MAX, &ovf);
            if (k.op == kAct) {
                o_out[idx] = (uint8_t)(q & 0xff);
                beat_pool += q;
                if (acc > amax) amax = acc;
                if (acc < amin) amin = acc;
            } else if (k.op == kReduce) {
                const uint8_t oo = o_in[idx];
                const int16_t g_m = oo > 0 ? q : 0;
                gm_out[idx] = g_m;
                if (lst) {
                    const int32_t gmy = (int32_t)g_m * y[idx];     // 16 x 8 bits
#pragma HLS BIND_OP variable=gmy op=mul impl=dsp
                    const int32_t mag = g_m < 0 ? -(int32_t)g_m : g_m;
                    beat_g += g_m;
                    beat_gy += gmy;
                    if (mag > beat_m) beat_m = mag;
                }
                const int32_t go = (int32_t)q * oo;               // 16 x 8 bits
#pragma HLS BIND_OP variable=go op=mul impl=dsp
                const int32_t gr = (int32_t)q * rv;               // 16 x 8 bits (the shortcut's code)
#pragma HLS BIND_OP variable=gr op=mul impl=dsp
                beat_g0 += go;
                beat_g1 += gr;
            } else {
                gy[idx] = (int16_t)q;
            }
        }
        pooled += beat_pool;
        s_g += beat_g;
        s_gy += beat_gy;
        if (beat_m > m_g) m_g = beat_m;
        gate0 += beat_g0;
        gate1 += beat_g1;
        // next beat: the row's, the plane's and the sample's ends
        if (++bx < bpr) continue;
        bx = 0;
        row += k.wd;
        r_off += r_row;
        if ((++py & gmask) == 0) g_off += k.g_w;
        if (py < k.h) continue;
        // the plane's last beat
        if (k.op == kAct) {
            sums[pidx] = (int64_t)pooled;
        } else if (k.op == kReduce && lst) {
            // red[ch] += this plane's sums (one read-modify-write per plane)
            cK[ch] += (int64_t)s_g;
            cB[ch] += (int64_t)s_gy;
            if (m_g > cA[ch]) cA[ch] = (int32_t)m_g;
        }
        pooled = s_g = s_gy = m_g = 0;
        pidx++;
        py = 0;
        r_off = g_off = 0;
        r_ch += r_plane;
        g_ch += g_plane;
        if (++ch < k.c) continue;
        // the sample's last beat
        ch = 0;
        r_samp += r_sample;
        r_ch = -r_lo_off;
        g_samp += g_sample;
        g_ch = g_lo_off;
        if (k.op == kReduce) sums[gate_base + 2 * (int64_t)s] = (int64_t)gate0;
        if (n_tail > 0) tails_left = n_tail;
        else s++;
    }
    if (k.op == kReduce) {
        // red[co][3], once, after the loop
        int c = 0, part = 0;
        for (int j = 0; j < 3 * k.c; j++) {
#pragma HLS PIPELINE II=1
            E2T_TRIP(kSums, 1);
            sums[j] = part == 0 ? cK[c] : part == 1 ? cB[c] : (int64_t)cA[c];
            if (++part == 3) {
                part = 0;
                c++;
            }
        }
    }
}

// What every op checks before it reads a tensor or writes anything: the shape, the scalars, the
// shortcut geometries, the sample list (E2T_ERR_SAMPLE) and, loaded into the BRAM, the
// coefficients.
int start(const Call &k, const int32_t *samples, int n_samples, bool listed[E2T_MAX_BATCH], const int64_t *coef,
          int32_t cA[E2T_MAX_DIM], int64_t cB[E2T_MAX_DIM], int64_t cK[E2T_MAX_DIM]) {
    if (!e2t_block_shape_ok(k.n, k.c, k.h, k.wd) || !e2t_block_coeffs_ok(k.shift, k.m1, k.m2)) return E2T_ERR_SHAPE;
    if (k.residual && !e2t_shortcut_ok(k.r_c, k.r_h, k.r_w, k.r_st, k.r_lo, k.c, k.h, k.wd)) return E2T_ERR_SHAPE;
    if (k.two && !e2t_shortcut_ok(k.c, k.h, k.wd, k.g_st, k.g_lo, k.g_c, k.g_h, k.g_w)) return E2T_ERR_SHAPE;
    E2T_TRIPS_RESET();
    if (!sample_bits(samples, n_samples, k.n, listed)) return E2T_ERR_SAMPLE;
    if (!load_coef(k, coef, cA, cB, cK)) return E2T_ERR_SHAPE;
    return E2T_OK;
}

Call call(Op op, int n, int h, int wd, int co, int b_flags, int b_shift, int b_m1, int b_m2) {
    Call k = {};
    k.op = op;
    k.n = n;
    k.c = co;
    k.h = h;
    k.wd = wd;
    k.shift = b_shift;
    k.m1 = b_m1;
    k.m2 = b_m2;
    k.relu = op == kAct && (b_flags & E2T_BF_RELU);
    k.residual = op != kApply && (b_flags & E2T_BF_RESIDUAL);
    k.two = op == kReduce && (b_flags & E2T_BF_TWO_SOURCES);
    k.lo = op == kAct ? (k.relu ? 0 : -128) : -32768;
    k.hi = op == kAct ? (k.relu ? 255 : 127) : 32767;
    return k;
}

}  // namespace blk

int bn_act_pass(int32_t cA[E2T_MAX_DIM], int64_t cB[E2T_MAX_DIM], int64_t cK[E2T_MAX_DIM], const int8_t *b_y,
                uint8_t *b_o, const uint8_t *b_r, const int64_t *b_coef, int64_t *b_sums, const int32_t *samples,
                int n_samples, int n, int h, int wd, int co, int b_flags, int b_shift, int b_m1, int r_c, int r_h,
                int r_w, int r_stride, int r_lo) {
#pragma HLS INLINE
    blk::Call k = blk::call(blk::kAct, n, h, wd, co, b_flags, b_shift, b_m1, 0);
    k.r_c = r_c, k.r_h = r_h, k.r_w = r_w, k.r_st = r_stride, k.r_lo = r_lo;
    bool listed[E2T_MAX_BATCH];
    const int st = blk::start(k, samples, n_samples, listed, b_coef, cA, cB, cK);
    if (st != E2T_OK) return st;
    blk::run(k, listed, n_samples, b_y, b_o, nullptr, b_r, nullptr, nullptr, nullptr, nullptr, nullptr,
             b_sums, cA, cB, cK);
    return E2T_OK;
}

int bn_bwd_reduce_pass(int32_t cA[E2T_MAX_DIM], int64_t cB[E2T_MAX_DIM], int64_t cK[E2T_MAX_DIM], const int8_t *b_y,
                       const uint8_t *b_o, const uint8_t *b_r, const int16_t *b_ga, const int16_t *b_gb,
                       int16_t *b_gm, int64_t *b_sums, const int32_t *samples, int n_samples, int n, int h, int wd,
                       int co, int b_flags, int b_shift, int b_m1, int b_m2, int r_c, int r_h, int r_w, int r_stride,
                       int r_lo, int gb_c, int gb_h, int gb_w, int gb_stride, int gb_lo) {
#pragma HLS INLINE
    blk::Call k = blk::call(blk::kReduce, n, h, wd, co, b_flags, b_shift, b_m1, b_m2);
    k.r_c = r_c, k.r_h = r_h, k.r_w = r_w, k.r_st = r_stride, k.r_lo = r_lo;
    k.g_c = gb_c, k.g_h = gb_h, k.g_w = gb_w, k.g_st = gb_stride, k.g_lo = gb_lo;
    bool listed[E2T_MAX_BATCH];
    const int st = blk::start(k, samples, n_samples, listed, nullptr, cA, cB, cK);
    if (st != E2T_OK) return st;
    blk::run(k, listed, n_samples, b_y, nullptr, b_o, b_r, b_ga, b_gb, b_gm, nullptr, nullptr, b_sums, cA,
             cB, cK);
    return E2T_OK;
}

int bn_bwd_apply_pass(int32_t cA[E2T_MAX_DIM], int64_t cB[E2T_MAX_DIM], int64_t cK[E2T_MAX_DIM], const int8_t *b_y,
                      const int16_t *b_gm, int16_t *b_gy, const int64_t *b_coef, const int32_t *samples,
                      int n_samples, int n, int h, int wd, int co, int b_shift) {
#pragma HLS INLINE
    blk::Call k = blk::call(blk::kApply, n, h, wd, co, 0, b_shift, 0, 0);
    bool listed[E2T_MAX_BATCH];
    const int st = blk::start(k, samples, n_samples, listed, b_coef, cA, cB, cK);
    if (st != E2T_OK) return st;
    blk::run(k, listed, n_samples, b_y, nullptr, nullptr, nullptr, nullptr, nullptr, nullptr, b_gm, b_gy,
             nullptr, cA, cB, cK);
    return E2T_OK;
}

}  // namespace e2t
