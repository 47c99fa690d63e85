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
//   for each group of tiles of ROWS input channels whose weights fit the weight buffer
//     the group's weights -> wt (BRAM), once
//     positions of a phase without taps (k = 1, stride 2): g_x = requant(0)
//     for each phase with taps
//       for each block of COLS listed positions of the phase
//         its g_y is on chip: staged into the g buffer during the calls before (bwd::stage,
//         in one half while the feeder reads the other; e2t_passes.h, namespace bwd)
//         for each tile of the group (and, when the layer's output channels do not fit one
//         step, each step of them; the g is then staged again per tile)
//           engine call: its stager writes a share of the next step; it returns the rows of
//             the (block, tile) before; output stage of those: requantise, write g_x
//   flush call: the last rows
// Each g_x value is produced once (no read-modify-write of DDR); P holds co*k*k terms of
// |g*w| <= 2^22 exactly (< 2^36).
#ifndef __SYNTHESIS__
#include <cstring>
#endif
#include "e2t_fixed.h"
#include "e2t_kernels.h"
#include "e2t_passes.h"
#include "e2t_shape.h"
#include "e2t_tiles.h"
#include "train_engine.h"

// A (block, tile) sums one position's taps, at most co*k*k <= E2T_MAX_TAPS of |w*g| <= 2^7 * 2^15 < 2^23: the engine's
// read-out (P's low kPOutBits, sign-extended) holds them.
static_assert((int64_t)E2T_MAX_TAPS << 23 <= INT64_C(1) << (eng::kPOutBits - 1), "a call's sum fits P's read-out");

namespace e2t {
namespace bwd {

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

// A block's positions q0 .. q0+COLS-1 of the phase (of n_samples * per_sample listed ones), their
// g_x addresses, and their segments, d slots.
void place(Block &b, const int32_t *samples, const Geometry &q, const Phase &f, int n_samples, int q0, int d) {
    b.q0 = q0;
    b.nseg = 0;
    const int ps = f.per_sample(), npos = n_samples * ps;
    int si = q0 / ps, ty = (q0 % ps) / f.nx, tx = q0 % f.nx;
    for (int c = 0; c < C; c++) {
#pragma HLS PIPELINE II=1
        b.on[c] = q0 + c < npos;
        if (b.on[c] && (c == 0 || tx == 0)) {               // a new segment: a new phase row or sample
            b.seg_i0[b.nseg] = c;
            b.seg_len[b.nseg] = 0;
            b.seg_s[b.nseg] = si;
            b.seg_ty[b.nseg] = ty;
            b.seg_tx[b.nseg] = tx;
            b.nseg++;
        }
        if (b.on[c]) b.seg_len[b.nseg - 1]++;
        b.slot[c] = b.on[c] ? (uint8_t)((b.nseg - 1) % d) : 0;
        b.xbase[c] = b.on[c] ? (int64_t)samples[si] * q.ci * q.h * q.wd + (int64_t)(f.fy + q.stride * ty) * q.wd +
                                   f.fx + q.stride * tx
                             : 0;
        if (++tx == f.nx) {
            tx = 0;
            if (++ty == f.ny) {
                ty = 0;
                si++;
            }
        }
    }
}

namespace {
#ifndef __SYNTHESIS__
// C simulation only: which (step, segment) wrote each entry (the layout's check, as the forward's).
thread_local int64_t owner[2 * GB_WORDS][GB_BANKS];
thread_local int64_t step_id[2];
thread_local int64_t next_id;
int64_t tag(int64_t id, int seg) { return id * C + seg; }
#define E2T_BWD_STAGING(field, v) e2t_bwd_staging_add(field, v)
#else
#define E2T_BWD_STAGING(field, v)
#endif

// The output offsets of a phase: oy = ty + cy - a, ox = tx + cx - b.
inline int off_y(const Geometry &q, const Phase &f) { return (f.fy + q.pad - f.py) / q.stride; }
inline int off_x(const Geometry &q, const Phase &f) { return (f.fx + q.pad - f.px) / q.stride; }

// Column c's code at a beat: bank c + sh, entry e0 + slot[c].
inline int16_t column(const int16_t gb[][GB_BANKS], const Block &b, int e0, int sh, int c) {
#pragma HLS INLINE
    return gb[e0 + b.slot[c]][c + sh];
}
}  // namespace

// A job's output channels of its step: per channel, segment and kernel row, the segment's g_y
// row span (one DDR burst of its in-output codes; zeros outside the output), a trip per aligned
// window of GB_STAGE banks (bank m takes lane m % 4: one rotation of the DDR words).
void stage(const int16_t *g_y, const int32_t *samples, const Geometry &q, const Job &jb, int16_t gb[][GB_BANKS]) {
    const Step &st = jb.st;
    const Block &b = st.b;
    const Phase &f = st.ph;
    if (jb.u0 >= jb.u1) return;
    const int cy = off_y(q, f), cx = off_x(q, f), hw = q.ho * q.wo;
#ifndef __SYNTHESIS__
    if (jb.u0 == 0) step_id[st.half] = ++next_id;
#endif
    for (int u = jb.u0; u < jb.u1; u++) {
        const int o = st.o0 + u;
        for (int j = 0; j < b.nseg; j++) {
            const int16_t *plane = g_y + ((int64_t)samples[b.seg_s[j]] * q.co + o) * hw;
            const int i0 = b.seg_i0[j], rlen = b.seg_len[j] + f.nkx - 1, ox0 = b.seg_tx[j] + cx - (f.nkx - 1);
            for (int a = 0; a < f.nky; a++) {
                const int oy = b.seg_ty[j] + cy - a;
                const bool row_in = oy >= 0 && oy < q.ho;
                const int e = st.half * GB_WORDS + (u * f.nky + a) * st.d + j % st.d;
#ifndef __SYNTHESIS__
                if (row_in) {
                    const int lo = ox0 < 0 ? 0 : ox0, hi = ox0 + rlen - 1 < q.wo - 1 ? ox0 + rlen - 1 : q.wo - 1;
                    if (hi >= lo) E2T_BWD_STAGING(0, 2 * (hi - lo + 1));
                }
                E2T_BWD_STAGING(1, row_trips(i0, rlen, 1, 1, GB_STAGE));
                if (!e2t_staging_checks) {
                    // The same writes as the windows below, in a run (the C simulation's speed).
                    int16_t *dst = &gb[e][i0];
                    for (int r = 0; r < rlen; r++) {
                        const int ox = ox0 + r;
                        dst[r] = row_in && ox >= 0 && ox < q.wo ? plane[(int64_t)oy * q.wo + ox] : 0;
                    }
                    continue;
                }
#endif
                for (int w = i0 / GB_STAGE; w <= (i0 + rlen - 1) / GB_STAGE; w++) {
#pragma HLS PIPELINE II=1
                    for (int v = 0; v < GB_STAGE; v++) {
#pragma HLS UNROLL
                        const int m = GB_STAGE * w + v, ox = ox0 + m - i0;
                        if (m < i0 || m >= i0 + rlen) continue;
                        gb[e][m] = row_in && ox >= 0 && ox < q.wo ? plane[(int64_t)oy * q.wo + ox] : 0;
#ifndef __SYNTHESIS__
                        owner[e][m] = tag(step_id[st.half], j);
#endif
                    }
                }
            }
        }
    }
}

// The operand beats of one call: per tap (o, a, b) of the step's channels and the phase's taps,
// the tile's weights and the block's COLS g codes, position c's from bank c + nkx - 1 - b.
void feed(psg::stream<eng::Beat> &in, const Span &sp, const int16_t gb[][GB_BANKS], const int8_t wt[][R],
          const Geometry &q) {
    const Step &st = sp.st;
    const Block &b = st.b;
    const Phase &f = st.ph;
    const int kk = q.k * q.k, taps = st.nco * f.nky * f.nkx;
#ifndef __SYNTHESIS__
    int seg_of[C] = {}, run_c0[C], run_len[C], run_d[C];
    segment_of(b.seg_i0, b.seg_len, b.nseg, seg_of);
    const int runs = slot_runs(b.slot, C, run_c0, run_len, run_d);  // the segments, then the off positions (slot 0)
#endif
    eng::Beat beat = {};
    int j = 0;
    for (int u = 0; u < st.nco; u++) {
        const int o = st.o0 + u;
        for (int a = 0; a < f.nky; a++) {
            const int e0 = st.half * GB_WORDS + (u * f.nky + a) * st.d;
            const int ky = f.py + q.stride * a;
            for (int bx = 0; bx < f.nkx; bx++, j++) {
#pragma HLS LOOP_FLATTEN
#pragma HLS PIPELINE II=1
                const int kx = f.px + q.stride * bx, sh = f.nkx - 1 - bx;
                for (int r = 0; r < R; r++) beat.row[r] = (int16_t)(uint8_t)wt[sp.wrow0 + o * kk + ky * q.k + kx][r];
#ifdef __SYNTHESIS__
                for (int c = 0; c < C; c++) beat.col[c] = column(gb, b, e0, sh, c);
#else
                // The same reads, a segment's run of banks at a time (the C simulation's speed);
                // with the checks on, column() runs too and must agree, and every read must find
                // what the stager wrote for its segment and step.
                for (int g = 0; g < runs; g++)
                    std::memcpy(beat.col + run_c0[g], &gb[e0 + run_d[g]][run_c0[g] + sh], sizeof(int16_t) * run_len[g]);
                if (e2t_staging_checks)
                    for (int c = 0; c < C; c++) {
                        if (column(gb, b, e0, sh, c) != beat.col[c]) E2T_BWD_STAGING(5, 1);
                        if (b.on[c] && owner[e0 + b.slot[c]][c + sh] != tag(step_id[st.half], seg_of[c]))
                            E2T_BWD_STAGING(5, 1);
                    }
#endif
                beat.last = j == taps - 1;
                in.write(beat);
            }
        }
    }
}

}  // namespace bwd

namespace {
using bwd::Block;
using bwd::Phase;

int channel_steps(const Geometry &q, const Phase &f) {
    const int c = bwd::step_channels(q, f);
    return (q.co + c - 1) / c;
}
int phase_blocks(int n_samples, const Phase &f) { return (n_samples * f.per_sample() + C - 1) / C; }

// The walk's (e2t_passes.h, Walk) first step at or after its position: skips phases without taps or
// positions.
bool settle(Walk &wk, const Geometry &q, int n_samples) {
    const int S = q.stride, nph = S * S;
    for (;;) {
        if (wk.g * wk.per_group >= wk.ntiles) return false;
        if (wk.ph >= nph) {
            wk.g++;
            wk.ph = wk.blk = wk.tl = wk.cs = 0;
            continue;
        }
        const Phase f = bwd::phase_of(q, wk.ph / S, wk.ph % S);
        if (f.taps(q.co) == 0 || wk.blk >= phase_blocks(n_samples, f)) {
            wk.ph++;
            wk.blk = wk.tl = wk.cs = 0;
            continue;
        }
        return true;
    }
}

// The walk's next step: the block's next (tile, channel step), else the next block, phase or group.
bool advance(Walk &wk, const Geometry &q, int n_samples) {
    if (next_in_block(wk, channel_steps(q, bwd::phase_of(q, wk.ph / q.stride, wk.ph % q.stride)))) return true;
    wk.blk++;
    return settle(wk, q, n_samples);
}

bwd::Step make_step(const Walk &wk, const Geometry &q, const int32_t *samples, int n_samples, int half) {
    bwd::Step st;
    st.half = half;
    st.ph = bwd::phase_of(q, wk.ph / q.stride, wk.ph % q.stride);
    st.d = bwd::slots(st.ph);
    const int per = bwd::step_channels(q, st.ph);
    st.o0 = wk.cs * per;
    st.nco = q.co - st.o0 < per ? q.co - st.o0 : per;
    bwd::place(st.b, samples, q, st.ph, n_samples, wk.blk * C, st.d);
    return st;
}

}  // namespace

// The input-gradient pass of e2t_engine (op E2T_OP_BWD_DATA), inlined into the top; wt is
// the top's weight buffer, gb its g buffer.
int bwd_data_pass(int8_t wt[][R], wgrad::XWord xs[][2 * wgrad::X_WORDS], wgrad::word_t gs[][2 * wgrad::G_WORDS],
                  uint8_t xf[][fwd::XF_BANKS], int16_t gb[][bwd::GB_BANKS], int32_t cA[], int64_t cB[],
                  int64_t cK[], wgrad::Part part[], psg::stream<eng::Head> &head,
                  psg::stream<eng::Beat> &in, psg::stream<eng::Row> &out, const uint8_t *x, const int16_t *g_y,
                  const int8_t *w, uint8_t *y, int16_t *g_x, const int32_t *samples, int n_samples, int n, int ci, int h, int wd,
                  int co, int k, int stride, int pad, int32_t mult_m, int mult_s) {
#pragma HLS INLINE
    if (!e2t_shape_ok(n, ci, h, wd, co, k, stride, pad) || mult_m < 0 || mult_s < 0 || mult_s > 62)
        return E2T_ERR_SHAPE;
    if (!e2t_samples_ok(samples, n_samples, n)) return E2T_ERR_SAMPLE;
#ifndef __SYNTHESIS__
    e2t_bwd_staging_reset();
#endif
    if (n_samples == 0) return E2T_OK;

    const Geometry q = geometry(ci, h, wd, co, k, stride, pad);
    const int kk = k * k, rows = co * kk;         // a tile's weight rows
    int ovf = 0;
    uint64_t no_amax = 0;                 // the weight gradient's max |G_msb|: not this pass's
    const int64_t acc_limit = e2t_requant_limit(mult_m);
    const int64_t zero = e2t_requant(0, mult_m, mult_s, -32768, 32767, &ovf);

    Walk wk = {};
    wk.ntiles = (ci + R - 1) / R;
    wk.per_group = kWeightRows / rows < wk.ntiles ? kWeightRows / rows : wk.ntiles;
    bool more = settle(wk, q, n_samples);

    Feed fd = {};
    OutStage os = out_stage(mult_m, mult_s, -32768, 32767, acc_limit);   // the (block, tile) whose rows the engine holds
    bool pending = false;
    int group = -1;
    if (more) {
        bwd::Job first = {make_step(wk, q, samples, n_samples, 0), 0, 0};
        first.u1 = first.st.nco;
        E2T_COUNTED_PROLOGUE(e2t_bwd_staging, e2t_bwd_staging_add, bwd::stage(g_y, samples, q, first, gb));
        fd.bs.st = first.st;
    }
    // groups with no phase that has taps or positions still get their g_x zeros below
    for (int g = 0; g * wk.per_group < wk.ntiles; g++) {
        const int g0 = g * wk.per_group, tiles = wk.ntiles - g0 < wk.per_group ? wk.ntiles - g0 : wk.per_group;
        // positions of a phase without taps (k = 1, stride 2): g_x = requant(0)
        for (int ph = 0; ph < stride * stride; ph++) {
            const Phase f = bwd::phase_of(q, ph / stride, ph % stride);
            if (f.taps(co) != 0) continue;
            Block b;
            for (int q0 = 0; q0 < n_samples * f.per_sample(); q0 += C) {
                bwd::place(b, samples, q, f, n_samples, q0, 1);
                const int rows_in = ci - g0 * R < tiles * R ? ci - g0 * R : tiles * R;
                for (int r = 0; r < rows_in; r++)
                    for (int c = 0; c < C; c++) {
#pragma HLS PIPELINE II=1
                        if (b.on[c]) g_x[b.xbase[c] + (int64_t)(g0 * R + r) * h * wd] = (int16_t)zero;
                    }
                E2T_BWD_STAGING(9, (int64_t)rows_in * C);
            }
        }
    }
    while (more) {
        if (wk.g != group) {                    // a new group of tiles: its weights, once
            group = wk.g;
            const int g0 = group * wk.per_group;
            for (int tl = 0; tl < group_tiles(wk); tl++)
                for (int o = 0; o < co; o++)    // one burst of R*kk weights per filter
                    for (int j = 0; j < R * kk; j++) {
#pragma HLS PIPELINE II=1
                        const int r = j / kk, tap = j % kk, c = (g0 + tl) * R + r;
                        wt[tl * rows + o * kk + tap][r] = c < ci ? w[((int64_t)o * ci + c) * kk + tap] : 0;
                    }
            E2T_BWD_STAGING(6, (int64_t)group_tiles(wk) * co * R * kk);
        }
        const bwd::Step cur = fd.bs.st;
        const Phase f = cur.ph;
        const int steps = channel_steps(q, f), g0 = wk.g * wk.per_group;
        const int t_lo = steps == 1 ? g0 : g0 + wk.tl, t_hi = steps == 1 ? g0 + group_tiles(wk) : t_lo + 1;
        const bool first_cs = wk.cs == 0;       // the first channel step of a (block, tile): clear, emit
        Walk nxt = wk;
        more = advance(nxt, q, n_samples);
        bwd::Job job = {};
        if (more) job.st = make_step(nxt, q, samples, n_samples, cur.half ^ 1);
        const int ncalls = t_hi - t_lo;
        for (int tq = 0; tq < ncalls; tq++) {
            const int tile = t_lo + tq, ci0 = tile * R, tci = ci - ci0 < R ? ci - ci0 : R;
            eng::Head hd;
            for (int r = 0; r < R; r++)
                for (int c = 0; c < C; c++) hd.cell_en[r * C + c] = r < tci && cur.b.on[c];
            head.write(hd);
            fd.bs.wrow0 = (tile - g0) * rows;
            fd.bs.ci0 = ci0;
            fd.bj = job;
            fd.bj.u0 = more ? tq * job.st.nco / ncalls : 0;
            fd.bj.u1 = more ? (tq + 1) * job.st.nco / ncalls : 0;
            os.kind = pending && first_cs ? kOutBwd : kOutNone;
            e2t_engine_call(head, in, out, eng::kBwd, fd, q, x, g_y, samples, wt, xs, gs, xf, gb, false, true, false,
                            first_cs, 0, 0, pending && first_cs, os, y, g_x, cA, cB, cK, part, &ovf, &no_amax);
            if (first_cs) {
                os.bb = cur.b;
                os.ci0 = ci0;
            }
            pending = true;
        }
        wk = nxt;
        if (more) fd.bs.st = job.st;
    }
    if (pending) {
        eng::Head none = {};
        head.write(none);
        fd.bj = bwd::Job{};
        os.kind = kOutBwd;
        e2t_engine_call(head, in, out, eng::kFlush, fd, q, x, g_y, samples, wt, xs, gs, xf, gb, false, false, false,
                        false, 0, 0, true, os, y, g_x, cA, cB, cK, part, &ovf, &no_amax);
    }
    return ovf ? E2T_ERR_OVERFLOW : E2T_OK;
}

}  // namespace e2t

#ifndef __SYNTHESIS__
namespace {
thread_local Counters<E2T_STAGING_FIELDS> bwd_counts;
}
void e2t_bwd_staging_reset() { bwd_counts.reset(); }
void e2t_bwd_staging_add(int field, int64_t v) { bwd_counts.add(field, v); }
extern "C" void e2t_bwd_staging(int64_t out[E2T_STAGING_FIELDS]) { bwd_counts.read(out); }
#endif
