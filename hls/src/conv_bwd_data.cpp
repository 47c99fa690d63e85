// conv_bwd_data, the input-gradient pass of e2t_engine (op 1, bwd_data_pass;
// hls/src/e2t_engine.cpp): g_x = requant(conv_transpose(g_y, w)) as int16, every MAC on the
// training engine (train_engine_hls, the RTL blackbox; train_engine.h) through the top's one
// engine call (e2t_engine_call, which runs bwd::feed), 48-bit accumulation in P.
//
// Gather form (host/e2train/core/engine_map.py, BWD): an input position (iy, ix) receives
// g_y[oy, ox] through the taps with iy + pad - ky = oy*stride. With stride 2 the valid taps
// depend on the phase ((iy + pad) mod 2, (ix + pad) mod 2), so positions are grouped by
// phase and a call streams only that phase's taps. Rows = ROWS input channels (their int8
// weights), columns = COLS input positions of one phase over the listed samples, beats =
// (co, the phase's ky, kx), column operand g_y at the output position the tap reaches (0
// outside the output).
//
//   for each tile of ROWS input channels           weights of the tile -> wt (BRAM), once
//     for each phase with taps
//       for each block of COLS listed positions of the phase
//         engine call (it returns the previous block's rows); output stage of the previous
//         block: requantise, write g_x
//     positions of a phase without taps (k = 1, stride 2): g_x = requant(0)
//   flush call: the last block's rows
// Each g_x value is produced once (no read-modify-write of DDR); P holds co*k*k terms of
// |g*w| <= 2^22 exactly (< 2^36).
#include "e2t_fixed.h"
#include "e2t_kernels.h"
#include "e2t_passes.h"
#include "e2t_shape.h"
#include "e2t_tiles.h"
#include "train_engine.h"

// A call sums one position's taps, at most co*k*k <= E2T_MAX_TAPS of |w*g| <= 2^7 * 2^15 < 2^23: the engine's
// read-out (P's low kPOutBits, sign-extended) holds them.
static_assert((int64_t)E2T_MAX_TAPS << 23 <= INT64_C(1) << (eng::kPOutBits - 1), "a call's sum fits P's read-out");

namespace e2t {
namespace bwd {

namespace {

Phase phase_of(const Geometry &q, int py, int px) {
    const int s = q.stride;
    Phase f;
    f.py = py;
    f.px = px;
    f.fy = ((py - q.pad) % s + s) % s;
    f.fx = ((px - q.pad) % s + s) % s;
    f.ny = f.fy < q.h ? (q.h - f.fy + s - 1) / s : 0;
    f.nx = f.fx < q.wd ? (q.wd - f.fx + s - 1) / s : 0;
    f.nky = py < q.k ? (q.k - py + s - 1) / s : 0;
    f.nkx = px < q.k ? (q.k - px + s - 1) / s : 0;
    return f;
}

void place(Block &b, const int32_t *samples, const Geometry &q, const Phase &f, int n_samples, int ci0, int q0) {
    b.ci0 = ci0;
    const int ps = f.per_sample();
    for (int c = 0; c < C; c++) {
#pragma HLS PIPELINE II=1
        const int p = q0 + c;
        b.on[c] = p < n_samples * ps;
        const int pp = b.on[c] ? p : 0;
        const int s = samples[pp / ps], t = pp % ps;
        b.iy[c] = f.fy + q.stride * (t / f.nx);
        b.ix[c] = f.fx + q.stride * (t % f.nx);
        b.gbase[c] = (int64_t)s * q.co * q.ho * q.wo;
        b.xbase[c] = (int64_t)s * q.ci * q.h * q.wd + (int64_t)b.iy[c] * q.wd + b.ix[c];
    }
}

}  // namespace

// The operand beats of one block: per tap (o, ky, kx) of the phase, the tile's weights and g_y.
// Where each position reads g_y at each of the phase's (ky, kx) is worked out once per block
// (off, and keep = 0 where the tap falls outside the output: the read is masked to 0); a
// beat then only adds the output channel's plane.
void feed(psg::stream<eng::Beat> &in, const Block &b, const int16_t *g_y, const int8_t wt[][R], const Geometry &q,
          const Phase &f) {
    const int kk = q.k * q.k, per_o = f.nky * f.nkx, taps = f.taps(q.co);
    const int64_t plane = (int64_t)q.ho * q.wo;
    int64_t off[KK][C];
    uint16_t keep[KK][C];
#pragma HLS ARRAY_PARTITION variable=off complete dim=2
#pragma HLS ARRAY_PARTITION variable=keep complete dim=2
    for (int t = 0; t < per_o; t++) {
        const int ky = f.py + q.stride * (t / f.nkx), kx = f.px + q.stride * (t % f.nkx);
        for (int c = 0; c < C; c++) {
            const int ty = b.iy[c] + q.pad - ky, tx = b.ix[c] + q.pad - kx;   // multiples of the stride
            const bool in_out = b.on[c] && ty >= 0 && tx >= 0 && ty / q.stride < q.ho && tx / q.stride < q.wo;
            off[t][c] = in_out ? b.gbase[c] + (int64_t)(ty / q.stride) * q.wo + tx / q.stride : 0;
            keep[t][c] = in_out ? 0xffff : 0;
        }
    }
    eng::Beat beat = {};
    int j = 0;
    for (int o = 0; o < q.co; o++) {
        const int16_t *go = g_y + o * plane;
        for (int t = 0; t < per_o; t++, j++) {
#pragma HLS LOOP_FLATTEN
#pragma HLS PIPELINE II=1
            const int ky = f.py + q.stride * (t / f.nkx), kx = f.px + q.stride * (t % f.nkx);
            for (int r = 0; r < R; r++) beat.row[r] = (int16_t)(uint8_t)wt[o * kk + ky * q.k + kx][r];
            for (int c = 0; c < C; c++) beat.col[c] = (int16_t)((uint16_t)go[off[t][c]] & keep[t][c]);
            beat.last = j == taps - 1;
            in.write(beat);
        }
    }
}

}  // namespace bwd

namespace {
using bwd::Block;
using bwd::Phase;

// The output stage of a block: its ROWS result rows (P, the 48-bit sums), requantised.
void drain(psg::stream<eng::Row> &out, const Block &b, int16_t *g_x, const Geometry &q, int32_t mult_m, int mult_s,
           int64_t acc_limit, int *ovf) {
    const int64_t plane = (int64_t)q.h * q.wd;
    for (int r = 0; r < R; r++) {
        const eng::Row row = out.read();
        if (b.ci0 + r >= q.ci) continue;
        for (int c = 0; c < C; c++) {
#pragma HLS PIPELINE II=1
            if (b.on[c])
                g_x[b.xbase[c] + (b.ci0 + r) * plane] = (int16_t)e2t_requant_unit(row.p[c], mult_m, mult_s, -32768, 32767, acc_limit, ovf);
        }
    }
}


}  // namespace

// The input-gradient pass of e2t_engine (op E2T_OP_BWD_DATA), inlined into the top; wt is
// the top's weight tile buffer.
int bwd_data_pass(int8_t wt[][R], wgrad::XWord xs[][2 * wgrad::X_WORDS], wgrad::word_t gs[][2 * wgrad::G_WORDS],
                  uint8_t xf[][fwd::XF_BANKS], psg::stream<eng::Head> &head, psg::stream<eng::Beat> &in, psg::stream<eng::Row> &out,
                  const uint8_t *x, const int16_t *g_y, const int8_t *w, int16_t *g_x, const int32_t *samples,
                  int n_samples, int n, int ci, int h, int wd, int co, int k, int stride, int pad, int32_t mult_m,
                  int mult_s) {
#pragma HLS INLINE
    if (!e2t_shape_ok(n, ci, h, wd, co, k, stride, pad) || mult_m < 0 || mult_s < 0 || mult_s > 62)
        return E2T_ERR_SHAPE;
    if (!e2t_samples_ok(samples, n_samples, n)) return E2T_ERR_SAMPLE;
    if (n_samples == 0) return E2T_OK;

    const Geometry q = geometry(ci, h, wd, co, k, stride, pad);
    const int kk = k * k;
    int ovf = 0;
    const int64_t acc_limit = e2t_requant_limit(mult_m);

    Feed fd[2] = {};                   // this call's block, and the previous one's
    const int64_t zero = e2t_requant(0, mult_m, mult_s, -32768, 32767, &ovf);

    int cur = 0;
    bool pending = false;
    for (int ci0 = 0; ci0 < ci; ci0 += R) {
        const int tci = ci - ci0 < R ? ci - ci0 : R;
        for (int o = 0; o < co; o++)                     // one burst of tci*kk weights per filter
            for (int j = 0; j < R * kk; j++) {
#pragma HLS PIPELINE II=1
                const int r = j / kk, tap = j % kk;
                wt[o * kk + tap][r] = r < tci ? w[((int64_t)o * ci + ci0 + r) * kk + tap] : 0;
            }
        for (int py = 0; py < stride; py++) {
            for (int px = 0; px < stride; px++) {
                const Phase f = bwd::phase_of(q, py, px);
                const int npos = n_samples * f.per_sample();
                if (f.taps(co) == 0) {   // no tap reaches these positions: g_x = requant(0)
                    Block &b = fd[cur].bb;
                    for (int q0 = 0; q0 < npos; q0 += C) {
                        bwd::place(b, samples, q, f, n_samples, ci0, q0);
                        for (int r = 0; r < tci; r++)
                            for (int c = 0; c < C; c++)
                                if (b.on[c]) g_x[b.xbase[c] + (int64_t)(ci0 + r) * h * wd] = (int16_t)zero;
                    }
                    continue;
                }
                for (int q0 = 0; q0 < npos; q0 += C) {
                    Block &b = fd[cur].bb;
                    bwd::place(b, samples, q, f, n_samples, ci0, q0);
                    fd[cur].ph = f;
                    eng::Head hd;
                    for (int r = 0; r < R; r++)
                        for (int c = 0; c < C; c++) hd.cell_en[r * C + c] = r < tci && b.on[c];
                    head.write(hd);
                    e2t_engine_call(head, in, out, eng::kBwd, fd[cur], q, x, g_y, samples, wt, xs, gs, xf, false, true, false,
                                    true, 0, 0, pending);
                    if (pending) drain(out, fd[cur ^ 1].bb, g_x, q, mult_m, mult_s, acc_limit, &ovf);
                    pending = true;
                    cur ^= 1;
                }
            }
        }
    }
    if (pending) {
        eng::Head none = {};
        head.write(none);
        e2t_engine_call(head, in, out, eng::kFlush, fd[cur], q, x, g_y, samples, wt, xs, gs, xf, false, false, false, false, 0,
                        0, true);
        drain(out, fd[cur ^ 1].bb, g_x, q, mult_m, mult_s, acc_limit, &ovf);
    }
    return ovf ? E2T_ERR_OVERFLOW : E2T_OK;
}

}  // namespace e2t
