// conv_fwd, the forward pass of e2t_engine (op 0, fwd_pass; hls/src/e2t_engine.cpp):
// y = requant(conv(x, w) + bias), int8 out (or uint8 with the ReLU fused), every MAC on the
// training engine (train_engine_hls, the RTL blackbox; train_engine.h), through the top's one
// engine call (e2t_engine_call; this file's feeder, fwd::feed, runs inside it).
//
// Layout (host/e2train/core/engine_map.py, FWD): rows = ROWS output channels (their int8
// weights), columns = COLS pairs of output positions over the listed samples (x codes packed
// two per 16-bit column: two MACs per DSP48E1), beats = the ci*k*k taps (ci, ky, kx). The
// engine's acc_lo / acc_hi are the accumulators of positions 2c and 2c+1.
//
//   for each tile of ROWS output channels        weights of the tile -> wt (BRAM), once
//     for each block of 2*COLS listed positions  (SLU: unlisted samples are neither read nor written)
//       head: the cells of real channels and positions
//       beats: per tap, the ROWS weights and the 2*COLS x codes (0 in the padding)
//       engine call; it returns the previous block's ROWS result rows
//       output stage of the previous block: + bias, requantise, ReLU, write y
//   flush call: the last block's rows
// With b_flags & E2T_BF_BN_SUMS the output stage also sums y and y^2 per output channel (BN's
// batch statistics, core/block_ops.py conv_fwd_stats) and writes int64[co][2] to stats.
// The output stage runs one call behind (the engine's read-out overlaps the next call).
// Accumulators are exact: ci*k*k <= 2^15 taps of |w*x| < 2^15 (e2t_shape.h) inside acc_lo's
// 31 and acc_hi's 31 bits.
#include "e2t_block.h"
#include "e2t_fixed.h"
#include "e2t_kernels.h"
#include "e2t_passes.h"
#include "e2t_shape.h"
#include "e2t_tiles.h"
#include "train_engine.h"

namespace e2t {
namespace fwd {

static_assert(E2T_MAX_FWD_TERMS <= (1 << 15) && eng::kHiBits >= 31 && eng::kLoBits >= 31,
              "acc_lo and acc_hi hold 2^15 taps of |w*x| < 2^15");

namespace {
void place(Block &b, const int32_t *samples, const Geometry &q, int npos, int co0, int p0) {
    b.co0 = co0;
    b.p0 = p0;
    const int hw = q.ho * q.wo;
    int si = p0 / hw, oy = (p0 % hw) / q.wo, ox = p0 % q.wo;   // stepped along the block's positions
    for (int i = 0; i < NPOS; i++) {
#pragma HLS PIPELINE II=1
        b.on[i] = p0 + i < npos;
        const int s = samples[b.on[i] ? si : 0];
        b.xbase[i] = (int64_t)s * q.ci * q.h * q.wd;
        b.ybase[i] = (int64_t)s * q.co * hw + (int64_t)oy * q.wo + ox;
        b.iy0[i] = oy * q.stride - q.pad;
        b.ix0[i] = ox * q.stride - q.pad;
        if (++ox == q.wo) {
            ox = 0;
            if (++oy == q.ho) {
                oy = 0;
                si++;
            }
        }
    }
}

}  // namespace

// The operand beats of one block: per tap (c, ky, kx) the tile's weights and the x codes.
// Where each position reads x at each (ky, kx) is worked out once per block (off, and keep =
// 0 in the padding, where the read is masked to 0); a beat then only adds the channel's plane.
void feed(psg::stream<eng::Beat> &in, const Block &b, const uint8_t *x, const int8_t wt[][R], const Geometry &q) {
    const int kk = q.k * q.k, taps = q.ci * kk;
    const int64_t plane = (int64_t)q.h * q.wd;
    int64_t off[KK][NPOS];
    uint8_t keep[KK][NPOS];
#pragma HLS ARRAY_PARTITION variable=off complete dim=2
#pragma HLS ARRAY_PARTITION variable=keep complete dim=2
    for (int t = 0; t < kk; t++)
        for (int i = 0; i < NPOS; i++) {
            const int iy = b.iy0[i] + t / q.k, ix = b.ix0[i] + t % q.k;
            const bool in_x = b.on[i] && iy >= 0 && iy < q.h && ix >= 0 && ix < q.wd;
            off[t][i] = in_x ? b.xbase[i] + (int64_t)iy * q.wd + ix : 0;
            keep[t][i] = in_x ? 0xff : 0;
        }
    eng::Beat beat = {};
    int j = 0;
    for (int c = 0; c < q.ci; c++) {
        const uint8_t *xc = x + c * plane;
        for (int t = 0; t < kk; t++, j++) {
#pragma HLS LOOP_FLATTEN
#pragma HLS PIPELINE II=1
            for (int r = 0; r < R; r++) beat.row[r] = (int16_t)(uint8_t)wt[j][r];
            for (int col = 0; col < C; col++) {
                const uint16_t v0 = xc[off[t][2 * col]] & keep[t][2 * col];
                const uint16_t v1 = xc[off[t][2 * col + 1]] & keep[t][2 * col + 1];
                beat.col[col] = (int16_t)(v0 | v1 << 8);
            }
            beat.last = j == taps - 1;
            in.write(beat);
        }
    }
}

}  // namespace fwd

namespace {
using fwd::Block;
using fwd::NPOS;

// BN's batch sums of y (b_flags & E2T_BF_BN_SUMS; core/block_ops.py conv_fwd_stats): per output
// channel of the tile being drained, sum y and sum y^2 over its listed positions, in registers
// (ROWS x 2: sum y < 2^31 and sum y^2 < 2^38 over at most 2^24 positions); a tile's channels are
// complete when the output stage moves to the next tile, and are written then, once.
struct BnSums {
    bool on;
    int co0;
    int64_t s1[R], s2[R];
};

void bn_sums_flush(BnSums &st, int64_t *stats, const Geometry &q) {
    if (!st.on || st.co0 < 0) return;
    for (int r = 0; r < R; r++) {
#pragma HLS PIPELINE II=2
        if (st.co0 + r < q.co) {
            stats[2 * (int64_t)(st.co0 + r)] = st.s1[r];
            stats[2 * (int64_t)(st.co0 + r) + 1] = st.s2[r];
        }
        st.s1[r] = st.s2[r] = 0;
    }
}

// The output stage of a block: its ROWS result rows from the engine, + bias, requantised.
void drain(psg::stream<eng::Row> &out, const Block &b, const int32_t bias_t[R], uint8_t *y, const Geometry &q,
           int32_t mult_m, int mult_s, int64_t lo, int64_t hi, int64_t acc_limit, int *ovf, BnSums &st,
           int64_t *stats) {
    const int64_t plane = (int64_t)q.ho * q.wo;
    if (st.on && st.co0 != b.co0) {     // the previous tile's channels are complete
        bn_sums_flush(st, stats, q);
        st.co0 = b.co0;
    }
    const bool on = st.on;
    for (int r = 0; r < R; r++) {
        const eng::Row row = out.read();
        const int o = b.co0 + r;
        if (o >= q.co) continue;
        int64_t s1 = 0, s2 = 0;             // this row's sums (locals: y's stores cannot alias them)
        for (int i = 0; i < NPOS; i++) {
#pragma HLS PIPELINE II=1
            if (!b.on[i]) continue;
            const int64_t acc = ((i & 1) ? row.hi[i / 2] : row.lo[i / 2]) + bias_t[r];
            const int64_t v = e2t_requant_unit(acc, mult_m, mult_s, lo, hi, acc_limit, ovf);
            y[b.ybase[i] + o * plane] = (uint8_t)(v & 0xff);
            if (on) {
                const int64_t v2 = v * v;      // |v| <= 255: an 8 x 8-bit square in LUTs
#pragma HLS BIND_OP variable=v2 op=mul impl=fabric
                s1 += v;
                s2 += v2;
            }
        }
        st.s1[r] += s1;
        st.s2[r] += s2;
    }
}

}  // namespace

// The forward pass of e2t_engine (op E2T_OP_FWD), inlined into the top; wt is the top's
// weight tile buffer.
int fwd_pass(int8_t wt[][R], wgrad::XWord xs[][2 * wgrad::X_WORDS], wgrad::word_t gs[][2 * wgrad::G_WORDS],
             psg::stream<eng::Head> &head, psg::stream<eng::Beat> &in, psg::stream<eng::Row> &out,
             const uint8_t *x, const int16_t *g_y, const int8_t *w, const int32_t *bias, uint8_t *y, int64_t *stats,
             const int32_t *samples, int n_samples, int n, int ci, int h, int wd, int co, int k, int stride, int pad,
             int x_unsigned, int has_bias, int relu, int32_t mult_m, int mult_s, int b_flags) {
#pragma HLS INLINE
    if (!e2t_shape_ok(n, ci, h, wd, co, k, stride, pad) || mult_m < 0 || mult_s < 0 || mult_s > 62)
        return E2T_ERR_SHAPE;
    if (!e2t_samples_ok(samples, n_samples, n)) return E2T_ERR_SAMPLE;

    const Geometry q = geometry(ci, h, wd, co, k, stride, pad);
    BnSums st = {};
    st.on = (b_flags & E2T_BF_BN_SUMS) != 0;
    st.co0 = -1;
    if (n_samples == 0) {               // no position: the sums are 0
        for (int co0 = 0; co0 < co; co0 += R) {
            st.co0 = co0;
            bn_sums_flush(st, stats, q);
        }
        return E2T_OK;
    }

    const int kk = k * k, npos = n_samples * q.ho * q.wo;
    const int64_t lo = relu ? 0 : -128, hi = relu ? 255 : 127;
    int ovf = 0;
    const int64_t acc_limit = e2t_requant_limit(mult_m);
    const bool xu = x_unsigned != 0;

    int32_t bias_t[2][R];                       // the tile's bias (ping-pong: the output stage is a call behind)
    Feed fd[2] = {};                            // this call's block, and the previous one's

    int cur = 0;
    bool pending = false;
    for (int co0 = 0; co0 < co; co0 += R) {
        const int tco = co - co0 < R ? co - co0 : R;
        // Weight tile, once per tile: every listed position reuses it. Rows past the last
        // filter hold zeros and their cells are off.
        for (int r = 0; r < R; r++)
            for (int j = 0; j < ci * kk; j++) {
#pragma HLS PIPELINE II=1
                wt[j][r] = r < tco ? w[(int64_t)(co0 + r) * ci * kk + j] : 0;
            }
        for (int p0 = 0; p0 < npos; p0 += NPOS) {
            Block &b = fd[cur].fb;
            fwd::place(b, samples, q, npos, co0, p0);
            for (int r = 0; r < R; r++) bias_t[cur][r] = (has_bias && r < tco) ? bias[co0 + r] : 0;
            eng::Head hd;
            for (int r = 0; r < R; r++)
                for (int c = 0; c < C; c++) hd.cell_en[r * C + c] = r < tco && b.on[2 * c];
            head.write(hd);
            e2t_engine_call(head, in, out, eng::kFwd, fd[cur], q, x, g_y, samples, wt, xs, gs, xu, true, false, true, 0, 0,
                            pending);
            if (pending)
                drain(out, fd[cur ^ 1].fb, bias_t[cur ^ 1], y, q, mult_m, mult_s, lo, hi, acc_limit, &ovf, st, stats);
            pending = true;
            cur ^= 1;
        }
    }
    eng::Head none = {};
    head.write(none);
    e2t_engine_call(head, in, out, eng::kFlush, fd[cur], q, x, g_y, samples, wt, xs, gs, xu, false, false, false, 0, 0, true);
    drain(out, fd[cur ^ 1].fb, bias_t[cur ^ 1], y, q, mult_m, mult_s, lo, hi, acc_limit, &ovf, st, stats);
    bn_sums_flush(st, stats, q);
    return ovf ? E2T_ERR_OVERFLOW : E2T_OK;
}

}  // namespace e2t
