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
//   for each group of tiles of ROWS output channels whose weights fit the weight buffer
//     the group's weights -> wt (BRAM), once
//     for each block of 2*COLS listed positions  (SLU: unlisted samples are neither read nor written)
//       its x is on chip: staged into the x buffer during the calls before (fwd::stage, in one
//       half while the feeder reads the other; e2t_passes.h, namespace fwd)
//       for each tile of the group (and, when the layer's channels do not fit one step, each
//       step of channels; the tile's x is then staged again per tile)
//         head: the cells of real channels and positions
//         beats: per tap, the ROWS weights and the 2*COLS x codes from the x buffer
//         engine call: its stager writes a share of the next step; it returns the rows of
//           the (block, tile) before
//         output stage of that (block, tile): + bias, requantise, ReLU, write y
//   flush call: the last rows
// With b_flags & E2T_BF_BN_SUMS the output stage also sums y and y^2 per output channel (BN's
// batch statistics, core/block_ops.py conv_fwd_stats) into two per-channel arrays (the block
// unit's cB and cK, idle in this pass) and writes int64[co][2] to stats at the end. With
// b_flags & E2T_BF_W_SUMS the weight load also sums |w| per input channel (the input gradient's
// bound, the backward gain: w_sum_add below) and writes int64[ci] to stats after the BN sums.
// The output stage runs one call behind (the engine's read-out overlaps the next call).
// Accumulators are exact: ci*k*k <= 2^15 taps of |w*x| < 2^15 (e2t_shape.h) inside acc_lo's
// 31 and acc_hi's 31 bits.
#ifndef __SYNTHESIS__
#include <cstring>
#endif
#include "e2t_block.h"
#include "e2t_fixed.h"
#include "e2t_kernels.h"
#include "e2t_passes.h"
#include "e2t_shape.h"
#include "e2t_tiles.h"
#include "train_engine.h"

namespace e2t {
namespace fwd {

// A block's positions p0 .. p0+NPOS-1 (of npos listed ones) and their segments, d slots.
void place(Block &b, const int32_t *samples, const Geometry &q, int npos, int p0, int d) {
    b.p0 = p0;
    b.nseg = 0;
    const int hw = q.ho * q.wo;
    int si = p0 / hw, oy = (p0 % hw) / q.wo, ox = p0 % q.wo;   // stepped along the block's positions
    for (int i = 0; i < NPOS; i++) {
#pragma HLS PIPELINE II=1
        b.on[i] = p0 + i < npos;
        if (b.on[i] && (i == 0 || ox == 0)) {                // a new segment: a new row or sample
            b.seg_i0[b.nseg] = i;
            b.seg_len[b.nseg] = 0;
            b.seg_s[b.nseg] = si;
            b.seg_oy[b.nseg] = oy;
            b.seg_ox[b.nseg] = ox;
            b.nseg++;
        }
        if (b.on[i]) b.seg_len[b.nseg - 1]++;
        b.slot[i] = b.on[i] ? (uint8_t)((b.nseg - 1) % d) : 0;
        b.ybase[i] = b.on[i] ? (int64_t)samples[si] * q.co * hw + (int64_t)oy * q.wo + ox : 0;
        if (++ox == q.wo) {
            ox = 0;
            if (++oy == q.ho) {
                oy = 0;
                si++;
            }
        }
    }
}

#ifndef __SYNTHESIS__
namespace {
// C simulation only: which (step, segment) wrote each entry, so that the feeder can check that
// every read finds its own segment's code (the layout's argument, e2t_passes.h).
thread_local int64_t owner[2 * XF_WORDS][XF_BANKS];
thread_local int64_t step_id[2];
thread_local int64_t next_id;
int64_t tag(int64_t id, int seg) { return id * NPOS + seg; }
}  // namespace
#define E2T_FWD_STAGING(field, v) e2t_fwd_staging_add(field, v)
#else
#define E2T_FWD_STAGING(field, v)
#endif

// A job's channels of its step: per channel, segment and kernel row, the segment's input row
// span (one DDR burst of its in-image codes; zeros outside the image), written per phase (r % S)
// in trips of an aligned window of STAGE_CODES banks: the phase's code r goes to bank
// m = i_j + r / S, lane m % 8 of window m / 8, so one rotation of the DDR bytes feeds every
// window and each bank takes one write a cycle (row_trips counts them).
void stage(const uint8_t *x, const int32_t *samples, const Geometry &q, const Job &jb, uint8_t xf[][XF_BANKS]) {
    const Step &st = jb.st;
    const Block &b = st.b;
    if (jb.u0 >= jb.u1) return;
    const int S = q.stride, k = q.k, nph = phases(q);
#ifndef __SYNTHESIS__
    if (jb.u0 == 0) step_id[st.half] = ++next_id;
#endif
    for (int u = jb.u0; u < jb.u1; u++) {
        const int ch = st.c0 + u;
        for (int j = 0; j < b.nseg; j++) {
            const uint8_t *plane = x + ((int64_t)samples[b.seg_s[j]] * q.ci + ch) * q.h * q.wd;
            const int i0 = b.seg_i0[j], rlen = S * (b.seg_len[j] - 1) + k, ix0 = b.seg_ox[j] * S - q.pad;
            for (int ky = 0; ky < k; ky++) {
                const int iy = b.seg_oy[j] * S - q.pad + ky;
                const bool row_in = iy >= 0 && iy < q.h;
                const int e = st.half * XF_WORDS + (u * k + ky) * nph * st.d + j % st.d;
#ifndef __SYNTHESIS__
                if (row_in) {
                    const int a = ix0 < 0 ? 0 : ix0, z = ix0 + rlen - 1 < q.wd - 1 ? ix0 + rlen - 1 : q.wd - 1;
                    E2T_FWD_STAGING(0, z - a + 1);
                }
                E2T_FWD_STAGING(1, row_trips(i0, rlen, S, nph, STAGE_CODES));
                if (!e2t_staging_checks) {
                    // The same writes as the windows below, a phase's codes in a run (the C
                    // simulation's speed).
                    const int a = row_in ? (ix0 < 0 ? -ix0 : 0) : rlen;                 // r of the in-image codes:
                    const int z = row_in ? (ix0 + rlen > q.wd ? q.wd - ix0 : rlen) : rlen;  // [a, z)
                    const uint8_t *src = row_in ? plane + (int64_t)iy * q.wd : nullptr;
                    for (int ph = 0; ph < nph; ph++) {
                        // the phase's codes t = 0 .. n-1 (r = ph + S*t): zeros, the image's, zeros
                        uint8_t *dst = &xf[e + ph * st.d][i0];
                        const int n = (rlen - ph + S - 1) / S;
                        const int t0 = a <= ph ? 0 : (a - ph + S - 1) / S;
                        const int t1 = z <= ph ? 0 : (z - ph + S - 1) / S;
                        std::memset(dst, 0, t0);
                        if (S == 1) {
                            if (t1 > t0) std::memcpy(dst + t0, src + ix0 + ph + t0, t1 - t0);
                        } else {
                            for (int t = t0; t < t1; t++) dst[t] = src[ix0 + ph + S * t];
                        }
                        std::memset(dst + (t1 > t0 ? t1 : t0), 0, n - (t1 > t0 ? t1 : t0));
                    }
                    continue;
                }
#endif
                for (int ph = 0; ph < nph; ph++) {
                    const int n = (rlen - ph + S - 1) / S;
                    for (int w = i0 / STAGE_CODES; w <= (i0 + n - 1) / STAGE_CODES; w++) {
#pragma HLS PIPELINE II=1
                        for (int v = 0; v < STAGE_CODES; v++) {
#pragma HLS UNROLL
                            const int m = STAGE_CODES * w + v, r = S * (m - i0) + ph, ix = ix0 + r;
                            if (m < i0 || m >= i0 + n) continue;
                            xf[e + ph * st.d][m] = row_in && ix >= 0 && ix < q.wd ? plane[(int64_t)iy * q.wd + ix] : 0;
#ifndef __SYNTHESIS__
                            owner[e + ph * st.d][m] = tag(step_id[st.half], j);
#endif
                        }
                    }
                }
            }
        }
    }
}

// Column col's two codes at a beat: position i = 2*col (low byte) and 2*col + 1 (high byte),
// each from bank i + sh at entry e0 + slot[i].
inline int16_t column(const uint8_t xf[][XF_BANKS], const Block &b, int e0, int sh, int col) {
#pragma HLS INLINE
    const uint16_t v0 = xf[e0 + b.slot[2 * col]][2 * col + sh];
    const uint16_t v1 = xf[e0 + b.slot[2 * col + 1]][2 * col + 1 + sh];
    return (int16_t)(v0 | v1 << 8);
}

// The operand beats of one call: per tap (channel, ky, kx) of the step the tile's weights and
// the block's 2*COLS x codes, position i's from bank i + kx/S (see e2t_passes.h).
void feed(psg::stream<eng::Beat> &in, const Span &sp, const uint8_t xf[][XF_BANKS], const int8_t wt[][R],
          const Geometry &q) {
    const Step &st = sp.st;
    const Block &b = st.b;
    const int k = q.k, kk = k * k, S = q.stride, nph = phases(q), taps = st.nch * kk;
    // per kernel column: its bank shift kx / S and its phase's entry offset (kx % S) * d
    int shift[E2T_MAX_K], phase_off[E2T_MAX_K];
    for (int kx = 0; kx < k; kx++) {
        shift[kx] = kx / S;
        phase_off[kx] = kx % S * st.d;
    }
#ifndef __SYNTHESIS__
    static_assert(sizeof(eng::Beat::col) == NPOS, "two codes a column");
    static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__, "the copies below write the columns' bytes in order");
    int seg_of[NPOS] = {}, run_i0[NPOS], run_len[NPOS], run_d[NPOS];
    segment_of(b.seg_i0, b.seg_len, b.nseg, seg_of);
    const int runs = slot_runs(b.slot, NPOS, run_i0, run_len, run_d);  // the segments, then the off positions (slot 0)
#endif
    eng::Beat beat = {};
    int j = 0;
    const int8_t(*wrow)[R] = wt + sp.wrow0 + st.c0 * kk;
    int e_row = st.half * XF_WORDS;                 // the entries of (u, ky): ((u*k + ky)*nph)*d
    for (int u = 0; u < st.nch; u++) {
        for (int ky = 0; ky < k; ky++, e_row += nph * st.d) {
            for (int kx = 0; kx < k; kx++, j++) {
#pragma HLS LOOP_FLATTEN
#pragma HLS PIPELINE II=1
                const int sh = shift[kx], e0 = e_row + phase_off[kx];
                for (int r = 0; r < R; r++) beat.row[r] = (int16_t)(uint8_t)wrow[j][r];
#ifdef __SYNTHESIS__
                for (int col = 0; col < C; col++) beat.col[col] = column(xf, b, e0, sh, col);
#else
                // The same reads written as the bytes of the little-endian columns, a segment's
                // run of banks at a time (off positions read slot 0, as column() does): the C
                // simulation's speed. With the checks on, column() runs too and must agree, and
                // every read must find what the stager wrote for its segment and step.
                uint8_t *cb = reinterpret_cast<uint8_t *>(beat.col);
                for (int g = 0; g < runs; g++) std::memcpy(cb + run_i0[g], &xf[e0 + run_d[g]][run_i0[g] + sh], run_len[g]);
                if (e2t_staging_checks) {
                    for (int col = 0; col < C; col++)
                        if (column(xf, b, e0, sh, col) != beat.col[col]) E2T_FWD_STAGING(5, 1);
                    for (int i = 0; i < NPOS; i++)
                        if (b.on[i] && owner[e0 + b.slot[i]][i + sh] != tag(step_id[st.half], seg_of[i]))
                            E2T_FWD_STAGING(5, 1);
                }
#endif
                beat.last = j == taps - 1;
                in.write(beat);
            }
        }
    }
}

}  // namespace fwd

namespace {
using fwd::Block;
using fwd::NPOS;

// What the forward's walk (e2t_passes.h, Walk) steps over: its positions, blocks, the channels a
// step holds, the channel steps of a block and the slots.
struct Plan {
    int npos, nblocks, chans, nsteps_ch, d;
};

// The walk's next step: the block's next (tile, channel step), else the next block or group.
bool advance(Walk &wk, const Plan &p) {
    if (next_in_block(wk, p.nsteps_ch)) return true;
    if (++wk.blk < p.nblocks) return true;
    wk.blk = 0;
    return ++wk.g * wk.per_group < wk.ntiles;
}

// The walk's step, to be staged in half `half`.
fwd::Step make_step(const Walk &wk, const Plan &p, const Geometry &q, const int32_t *samples, int half) {
    fwd::Step st;
    st.half = half;
    st.c0 = wk.cs * p.chans;
    st.nch = q.ci - st.c0 < p.chans ? q.ci - st.c0 : p.chans;
    st.d = p.d;
    fwd::place(st.b, samples, q, p.npos, wk.blk * NPOS, p.d);
    return st;
}

}  // namespace

// The backward gain's sums (b_flags & E2T_BF_W_SUMS): sum |w| per input channel over the output
// channels and taps, added up as the weight load streams the layer's weights, one a cycle, in
// wgrad's partial sums (idle in the forward; the weight gradient's first block writes over
// them). A channel's k*k taps are consecutive: they sum in a register and go into part[c] once,
// written by output channel 0 (no clear loop) and added by the others; the same channel's next
// write comes ci*k*k trips later (k*k >= 9 for the 3x3 layers, past the adder's latency, so
// the loop keeps II=1: the DEPENDENCE pragma).
struct WSum {
    int64_t run;    // the channel's taps so far
    int tap, c;     // where the next weight falls (tap within channel c)
};

static inline void w_sum_add(wgrad::Part part[], WSum &ws, int8_t v, int o, int kk, int ci) {
#pragma HLS INLINE
    ws.run += v < 0 ? -(int64_t)v : (int64_t)v;
    if (++ws.tap == kk) {
        part[ws.c].e = (o == 0 ? (wgrad::part_exact_t)0 : part[ws.c].e) + (wgrad::part_exact_t)ws.run;
        ws.run = 0;
        ws.tap = 0;
        ws.c = ws.c + 1 == ci ? 0 : ws.c + 1;    // the next output channel starts at channel 0
    }
}

// The forward pass of e2t_engine (op E2T_OP_FWD), inlined into the top; wt is the top's weight
// buffer, xf its forward x buffer, s1/s2 the block unit's per-channel arrays (BN's sums here).
int fwd_pass(int8_t wt[][R], wgrad::XWord xs[][2 * wgrad::X_WORDS], wgrad::word_t gs[][2 * wgrad::G_WORDS],
             uint8_t xf[][fwd::XF_BANKS], int16_t gb[][bwd::GB_BANKS], int32_t cA[], int64_t s1[], int64_t s2[],
             wgrad::Part part[], psg::stream<eng::Head> &head, psg::stream<eng::Beat> &in, psg::stream<eng::Row> &out,
             const uint8_t *x, const int16_t *g_y, const int8_t *w, const int32_t *bias, uint8_t *y, int16_t *g_x,
             int64_t *stats,
             const int32_t *samples, int n_samples, int n, int ci, int h, int wd, int co, int k, int stride, int pad,
             int x_unsigned, int has_bias, int relu, int32_t mult_m, int mult_s, int b_flags) {
#pragma HLS INLINE
    if (!e2t_shape_ok(n, ci, h, wd, co, k, stride, pad) || mult_m < 0 || mult_s < 0 || mult_s > 62)
        return E2T_ERR_SHAPE;
    if (!e2t_samples_ok(samples, n_samples, n)) return E2T_ERR_SAMPLE;

    const Geometry q = geometry(ci, h, wd, co, k, stride, pad);
    const bool bn = (b_flags & E2T_BF_BN_SUMS) != 0;
    const bool wsums = (b_flags & E2T_BF_W_SUMS) != 0;
#ifndef __SYNTHESIS__
    e2t_fwd_staging_reset();
#endif
    // The layer's bias (or zeros) into the block unit's cA, idle in the forward, where the output
    // stage reads it beside the calls; BN's sums cleared in the same loop.
    for (int o = 0; o < co; o++) {
#pragma HLS PIPELINE II=1
        cA[o] = has_bias ? bias[o] : 0;
        if (bn) s1[o] = s2[o] = 0;
    }
    E2T_FWD_STAGING(7, co);
    const int kk = k * k, taps = ci * kk;
    Plan p;
    p.npos = n_samples * q.ho * q.wo;
    p.nblocks = (p.npos + NPOS - 1) / NPOS;
    p.chans = fwd::step_channels(q);
    p.nsteps_ch = (ci + p.chans - 1) / p.chans;
    p.d = fwd::slots(q);
    Walk wk = {};
    wk.ntiles = (co + R - 1) / R;
    wk.per_group = kWeightRows / taps < wk.ntiles ? kWeightRows / taps : wk.ntiles;
    bool more = p.nblocks > 0;
    const int64_t lo = relu ? 0 : -128, hi = relu ? 255 : 127;
    int ovf = 0;
    uint64_t no_amax = 0;                 // the weight gradient's max |G_msb|: not this pass's
    const int64_t acc_limit = e2t_requant_limit(mult_m);
    const bool xu = x_unsigned != 0;

    Feed fd = {};
    OutStage os = out_stage(mult_m, mult_s, lo, hi, acc_limit);   // the (block, tile) whose rows the engine holds
    os.bn = bn;
    bool pending = false;
    if (more) {
        fwd::Job first = {make_step(wk, p, q, samples, 0), 0, 0};
        first.u1 = first.st.nch;
        E2T_COUNTED_PROLOGUE(e2t_fwd_staging, e2t_fwd_staging_add, fwd::stage(x, samples, q, first, xf));
        fd.fs.st = first.st;
    }
    int group = -1;
    WSum ws = {};
    while (more) {
        const int g0 = wk.g * wk.per_group, gtiles = group_tiles(wk);
        if (wk.g != group) {                    // a new group of tiles: its weights, once (the engine waits)
            group = wk.g;
            for (int tl = 0; tl < gtiles; tl++)
                for (int r = 0; r < R; r++)
                    for (int j = 0; j < taps; j++) {
#pragma HLS PIPELINE II=1
#pragma HLS DEPENDENCE variable=part inter false
                        const int o = (g0 + tl) * R + r;
                        const int8_t v = o < co ? w[(int64_t)o * taps + j] : 0;
                        wt[tl * taps + j][r] = v;
                        if (wsums && o < co) w_sum_add(part, ws, v, o, kk, ci);
                    }
            E2T_FWD_STAGING(6, (int64_t)gtiles * R * taps);
        }
        const fwd::Step cur = fd.fs.st;
        const bool first_chs = wk.cs == 0;      // the first channel step of a (block, tile): clear, emit
        const int t_lo = p.nsteps_ch == 1 ? g0 : g0 + wk.tl, ncalls = p.nsteps_ch == 1 ? gtiles : 1;
        Walk nxt = wk;
        more = advance(nxt, p);
        fwd::Job job = {};
        if (more) job.st = make_step(nxt, p, q, samples, cur.half ^ 1);
        for (int tq = 0; tq < ncalls; tq++) {
            const int tile = t_lo + tq, co0 = tile * R;
            const int tco = co - co0 < R ? co - co0 : R;
            eng::Head hd;
            for (int r = 0; r < R; r++)
                for (int c = 0; c < C; c++) hd.cell_en[r * C + c] = r < tco && cur.b.on[2 * c];
            head.write(hd);
            fd.fs.wrow0 = (tile - g0) * taps;
            fd.fs.co0 = co0;
            fd.fj = job;
            fd.fj.u0 = more ? tq * job.st.nch / ncalls : 0;
            fd.fj.u1 = more ? (tq + 1) * job.st.nch / ncalls : 0;
            os.kind = pending && first_chs ? kOutFwd : kOutNone;
            e2t_engine_call(head, in, out, eng::kFwd, fd, q, x, g_y, samples, wt, xs, gs, xf, gb, xu, true, false,
                            first_chs, 0, 0, pending && first_chs, os, y, g_x, cA, s1, s2, part, &ovf, &no_amax);
            if (first_chs) {
                os.fb = cur.b;
                os.co0 = co0;
            }
            pending = true;
        }
        wk = nxt;
        if (more) fd.fs.st = job.st;
    }
    if (pending) {
        eng::Head none = {};
        head.write(none);
        fd.fj = fwd::Job{};
        os.kind = kOutFwd;
        e2t_engine_call(head, in, out, eng::kFlush, fd, q, x, g_y, samples, wt, xs, gs, xf, gb, xu, false, false, false, 0,
                        0, true, os, y, g_x, cA, s1, s2, part, &ovf, &no_amax);
    }
    if (bn) {
        for (int o = 0; o < co; o++) {
#pragma HLS PIPELINE II=2
            stats[2 * (int64_t)o] = s1[o];
            stats[2 * (int64_t)o + 1] = s2[o];
        }
        E2T_FWD_STAGING(7, 2 * co);
    }
    if (wsums) {
        if (group < 0) {                        // no sample listed, no weight loaded: the sums alone
            for (int o = 0; o < co; o++)
                for (int j = 0; j < taps; j++) {
#pragma HLS PIPELINE II=1
#pragma HLS DEPENDENCE variable=part inter false
                    w_sum_add(part, ws, w[(int64_t)o * taps + j], o, kk, ci);
                }
            E2T_FWD_STAGING(7, (int64_t)co * taps);
        }
        const int64_t at = bn ? 2 * (int64_t)co : 0;   // after the BN sums
        for (int c = 0; c < ci; c++) {
#pragma HLS PIPELINE II=1
            stats[at + c] = (int64_t)part[c].e;
        }
        E2T_FWD_STAGING(7, ci);
    }
    return ovf ? E2T_ERR_OVERFLOW : E2T_OK;
}

}  // namespace e2t

#ifndef __SYNTHESIS__
namespace {
thread_local Counters<E2T_STAGING_FIELDS> fwd_counts;
}
void e2t_fwd_staging_reset() { fwd_counts.reset(); }
void e2t_fwd_staging_add(int field, int64_t v) { fwd_counts.add(field, v); }
extern "C" void e2t_fwd_staging(int64_t out[E2T_STAGING_FIELDS]) { fwd_counts.read(out); }
thread_local bool e2t_staging_checks = false;
extern "C" void e2t_staging_check(int on) { e2t_staging_checks = on != 0; }
#endif
