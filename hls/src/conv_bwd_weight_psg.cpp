// conv_bwd_weight_psg: the PSG weight gradient fused with the sign update of the int32
// master weights. Arithmetic per weight (o, c, ky, kx), over the beats b = positions
// (sample, oy, ox) of the conv, x = x[s][c][oy*stride+ky-pad][ox*stride+kx-pad] (0 in the
// padding), g = g_y[s][o][oy][ox], with the MSB splits of psg_lanes.h (the contract):
//   G_msb = sum x_h*g_h      (the predictor: 4x10-bit products, LUT multipliers)
//   G     = sum x*g          (exact: one 8x16-bit DSP48E1 MAC per term, 48-bit P register;
//                             equal to the engine's 1024*G_msb + 16*x_h*g_l + 64*x_l*g_h + x_l*g_l)
//   predicted <=> |G_msb|*2^16 >= beta_q*max|G_msb| and G_msb != 0;  sign = predicted ?
//   sign(G_msb) : sign(G).
//
// Dataflow (docs/kernels.md; e2train.core.perfmodel follows it). A *block* is the up to
// TILE_CO x TILE_CI x k*k weights of one output-channel tile and one input-channel tile. A
// block's listed samples are staged in *chunks* (whole samples, or bands of output rows for
// large images) into on-chip buffers, TILE_CI x planes and TILE_CO g planes, one BRAM bank per
// channel. Chunks of consecutive blocks form one job sequence, staged ping-pong: job i+1
// loads while job i computes. A job is replayed from BRAM once per *round*: per beat a
// window gives the x codes of every tap of the TILE_CI channels and the TILE_CO g codes (x
// reused by every output channel, g by every input channel and tap, as in conv_fwd); each
// lane of the round picks its (x, g) from them.
//
//   beta_q = 0: one pass. Every weight is exact: rounds of EXACT_LANES DSP lanes, the
//          predictor lanes shadowing them (so max |G_msb| is still reported).
//   beta_q > 0:
//   pass A  rounds of PRED_LANES LUT lanes -> G_msb of the block; amax so far = max |G_msb|
//           over the blocks done. A weight with |G_msb|*2^16 < beta_q*(amax so far), or
//           G_msb = 0, is certainly not predicted (the final max can only be larger), so when
//           the block is one chunk (still in BRAM) its exact sum runs now, in rounds of
//           EXACT_LANES that hold only those weights: no second read of x and g. The other
//           weights are *pending*: G_msb -> gmsb scratch, predicted[] = kPending.
//   resolve with the final max: a pending weight the predictor decides takes sign(G_msb);
//           the rest are marked kNeedExact, and their blocks flagged.
//   pass B  only the flagged blocks are staged again; rounds of EXACT_LANES hold only their
//           kNeedExact weights. Blocks without one are not read at all (stats[4]).
//   update  W <- sat(W - lr_q*sign - ((W*wd_q + 2^29) >> 30), +-(2^30-1)), only once every
//           sign is known, so an error leaves W untouched.
// Lanes past the end of a round's list are gated off: exact MACs run only for the weights that
// need them (stats[3] counts them). Accumulators live in per-block BRAM words (one per weight)
// between jobs and in lane registers within a round.
// The lanes are one RTL blackbox, psg_lanes_hls (fpga/rtl/psg_lanes.v, hls/blackbox/
// psg_lanes.json): PRED_LANES lanes with a LUT predictor, the first EXACT_LANES of them also
// with a DSP48E1 exact path. Per round the kernel sends it a head (each lane's window selects
// and its block word so far), then the window beats; it returns each lane's sums.
#include "e2t_fixed.h"
#include "e2t_kernels.h"
#include "e2t_shape.h"
#include "e2t_tiles.h"

// The MSB splits, the confidence test and the accumulator limits of the contract, and the
// lane array psg_lanes_hls: an RTL blackbox (fpga/rtl/psg_lanes.v) that does every round's
// multiply-accumulates; its C model in C simulation.
#include "psg_lanes.h"

namespace {

constexpr int TCO = E2T_TILE_CO, TCI = E2T_TILE_CI, KMAX = E2T_MAX_K;
constexpr int BLOCK = TCO * TCI * KMAX * KMAX;          // weights of a full 3x3 block
constexpr int PL = E2T_PSG_PRED_LANES;                  // predictor lanes (LUT)
constexpr int EL = E2T_PSG_EXACT_LANES;                 // exact lanes (DSP48E1)
constexpr int CHUNK = E2T_PSG_CHUNK;                    // positions per channel bank
constexpr int64_t kMasterLimit = (INT64_C(1) << 30) - 1;
static_assert(EL <= PL, "the predictor lanes shadow the exact lanes when beta_q = 0");
static_assert(psg::kArrayLanes == PL && psg::kArrayExact == EL && psg::kWindowX == TCI * KMAX * KMAX &&
                  psg::kWindowG == TCO, "the lane array is built for this kernel's tiles");

struct Geometry {
    int n, ci, h, wd, co, k, stride, pad, ho, wo;
};

// How the listed samples are cut into chunks that fit the buffers: spc samples of rpb output
// rows each (rpb = ho: whole samples; then spc >= 1), x rows needed <= xrows per sample.
// perfmodel._psg_plan computes the same plan.
struct Plan {
    int spc, rpb;
};

int xrows_for(const Geometry &q, int rows) {
    const int r = (rows - 1) * q.stride + q.k;
    return r < q.h ? r : q.h;
}

Plan make_plan(const Geometry &q) {
    const int xfull = xrows_for(q, q.ho) * q.wd, gfull = q.ho * q.wo;
    if (xfull <= CHUNK && gfull <= CHUNK) {
        const int a = CHUNK / xfull, b = CHUNK / gfull;
        return Plan{a < b ? a : b, q.ho};
    }
    int r = 1;   // k*MAX_DIM <= CHUNK and MAX_DIM <= CHUNK: one output row always fits
    while (r < q.ho && (r + 1) * q.wo <= CHUNK && xrows_for(q, r + 1) * q.wd <= CHUNK) r++;
    return Plan{1, r};
}

// One chunk: samples[si0 .. si0+ns-1], output rows oy0 .. oy0+nrow-1, input rows iy0 .. iy0+nx-1.
struct Chunk {
    int si0, ns, oy0, nrow, iy0, nx;
};

Chunk make_chunk(const Geometry &q, int si0, int ns, int oy0, int nrow) {
    int lo = oy0 * q.stride - q.pad, hi = (oy0 + nrow - 1) * q.stride - q.pad + q.k;
    if (lo < 0) lo = 0;
    if (hi > q.h) hi = q.h;
    return Chunk{si0, ns, oy0, nrow, lo, hi > lo ? hi - lo : 0};
}

// Stage one chunk of a block: tci x planes (bundle gx) and tco g planes (bundle gg), one burst
// per (sample, channel); the two bundles load in parallel.
void stage(uint8_t xb[TCI][CHUNK], int16_t gb[TCO][CHUNK], const uint8_t *x, const int16_t *g_y,
           const int32_t *samples, const Geometry &q, const Chunk &ch, int c0, int tci, int o0, int tco) {
    for (int sc = 0; sc < ch.ns; sc++) {
        const int s = samples[ch.si0 + sc];
        for (int c = 0; c < tci; c++) {
            const uint8_t *src = x + (((int64_t)s * q.ci + c0 + c) * q.h + ch.iy0) * q.wd;
            for (int i = 0; i < ch.nx * q.wd; i++) {
#pragma HLS PIPELINE II=1
                xb[c][sc * ch.nx * q.wd + i] = src[i];
            }
        }
        for (int o = 0; o < tco; o++) {
            const int16_t *src = g_y + (((int64_t)s * q.co + o0 + o) * q.ho + ch.oy0) * q.wo;
            for (int i = 0; i < ch.nrow * q.wo; i++) {
#pragma HLS PIPELINE II=1
                gb[o][sc * ch.nrow * q.wo + i] = src[i];
            }
        }
    }
}

// The (c, tap, o) of block weight j: j = (o*tci + c)*kk + tap.
struct Lane {
    int c, tap, o;
};

Lane lane_of(int j, int tci, int kk) {
    return Lane{(j / kk) % tci, j % kk, j / (kk * tci)};
}

// The lane array's streams: a round's head, window beats and result (psg_lanes.h). One set
// per pass, reused by every round.
struct LaneStreams {
    psg::stream<psg::LanesHead> head;
    psg::stream<psg::LanesBeat> beats;
    psg::stream<psg::LanesOut> out;
};

// The window of every beat of a chunk: x of every (channel, tap) slot of the block at the
// position (code 0 in the padding: the value 0 for uint8 and int8 alike), the g of every
// output channel. Slots of channels/taps the block does not have carry 0 (no lane selects them).
void feed_window(const uint8_t xb[TCI][CHUNK], const int16_t gb[TCO][CHUNK], const Geometry &q, const Chunk &ch,
                 int tci, int tco, psg::stream<psg::LanesBeat> &beats) {
    const int kk = q.k * q.k;
    for (int sc = 0; sc < ch.ns; sc++)
        for (int r = 0; r < ch.nrow; r++)
            for (int ox = 0; ox < q.wo; ox++) {
#pragma HLS LOOP_FLATTEN
#pragma HLS PIPELINE II=1
                const int oy = ch.oy0 + r;
                psg::LanesBeat b;
                for (int i = 0; i < psg::kWindowX; i++) b.x[i] = 0;
                for (int t = 0; t < kk; t++) {
                    const int iy = oy * q.stride + t / q.k - q.pad, ix = ox * q.stride + t % q.k - q.pad;
                    const bool in = iy >= 0 && iy < q.h && ix >= 0 && ix < q.wd;
                    const int at = (sc * ch.nx + iy - ch.iy0) * q.wd + ix;
                    for (int c = 0; c < tci; c++) b.x[c * KMAX * KMAX + t] = in ? xb[c][at] : 0;
                }
                const int gat = (sc * ch.nrow + r) * q.wo + ox;
                for (int o = 0; o < TCO; o++) b.g[o] = o < tco ? gb[o][gat] : 0;
                b.last = sc == ch.ns - 1 && r == ch.nrow - 1 && ox == q.wo - 1;
                beats.write(b);
            }
}

// feed_window produces a round's window beats while the lane array consumes them (in hardware
// concurrently: a DATAFLOW region; in C simulation one after the other through the stream).
void stream_round(const uint8_t xb[TCI][CHUNK], const int16_t gb[TCO][CHUNK], const Geometry &q,
                  const Chunk &ch, int tci, int tco, bool x_unsigned, int n_lanes, bool pred, bool exact,
                  LaneStreams &st) {
#pragma HLS DATAFLOW
    feed_window(xb, gb, q, ch, tci, tco, st.beats);
    psg_lanes_hls(st.head, st.beats, st.out, x_unsigned, (uint16_t)n_lanes, pred, exact);
}

// One round over a staged chunk on the lane array (the RTL blackbox psg_lanes_hls). n_lanes
// lanes; lane l is block weight idx[l]. pred: run the predictor product (G_msb) of each lane;
// exact: its exact product (G) -- on the first EL lanes, the ones with a DSP48E1. The lanes'
// accumulators start from the block's words gm/ge (the chunks before) and are stored back
// after the round (in hardware lane-indexed LUTRAM, one word per round, so this takes a
// cycle; indexed by weight here).
void round_pass(const uint8_t xb[TCI][CHUNK], const int16_t gb[TCO][CHUNK], const Geometry &q,
                const Chunk &ch, int tci, int tco, bool x_unsigned, const int *idx, int n_lanes,
                bool pred, bool exact, int64_t gm[BLOCK], int64_t ge[BLOCK], LaneStreams &st) {
    const int kk = q.k * q.k;
    psg::LanesHead h;
    for (int l = 0; l < PL; l++) {
        const bool on = l < n_lanes;
        const Lane a = on ? lane_of(idx[l], tci, kk) : Lane{0, 0, 0};
        h.x_sel[l] = (uint8_t)(a.c * KMAX * KMAX + a.tap);
        h.g_sel[l] = (uint8_t)a.o;
        h.g_msb[l] = on ? gm[idx[l]] : 0;
        if (l < EL) h.g_exact[l] = on ? ge[idx[l]] : 0;
    }
    st.head.write(h);
    stream_round(xb, gb, q, ch, tci, tco, x_unsigned, n_lanes, pred, exact, st);
    const psg::LanesOut o = st.out.read();
    for (int l = 0; l < n_lanes; l++) {
        gm[idx[l]] = o.g_msb[l];
        if (exact) ge[idx[l]] = o.g_exact[l];
    }
}

int64_t widx(const Geometry &q, int o, int c, int tap) {
    return ((int64_t)o * q.ci + c) * q.k * q.k + tap;
}

// predicted[] also holds the per-weight state between the passes (final values 0 and 1).
constexpr uint8_t kPending = 2, kNeedExact = 3;

struct Block {
    int o0, tco, c0, tci, nb;
};

Block block_at(const Geometry &q, int bi) {
    const int ncb = (q.ci + TCI - 1) / TCI;
    const int o0 = (bi / ncb) * TCO, c0 = (bi % ncb) * TCI;
    const int tco = q.co - o0 < TCO ? q.co - o0 : TCO, tci = q.ci - c0 < TCI ? q.ci - c0 : TCI;
    return Block{o0, tco, c0, tci, tco * tci * q.k * q.k};
}

// A job: chunk (si0, oy0) of block bi.
struct Job {
    int bi, si0, oy0;
};

Chunk chunk_of(const Geometry &q, const Plan &p, int n_samples, const Job &j) {
    const int ns = n_samples - j.si0 < p.spc ? n_samples - j.si0 : p.spc;
    const int nrow = q.ho - j.oy0 < p.rpb ? q.ho - j.oy0 : p.rpb;
    return make_chunk(q, j.si0, ns, j.oy0, nrow);
}

bool wanted(const uint8_t *flags, int bi) { return flags == nullptr || flags[bi]; }

// The next job after j: the next chunk of the block, else the first chunk of the next block
// in the pass (flags: the blocks of pass B; nullptr: every block). False at the end.
bool next_job(const Geometry &q, const Plan &p, int n_samples, int n_blocks, const uint8_t *flags, Job &j) {
    j.oy0 += p.rpb;
    if (j.oy0 >= q.ho) { j.oy0 = 0; j.si0 += p.spc; }
    if (j.si0 < n_samples) return true;
    j.si0 = j.oy0 = 0;
    for (j.bi++; j.bi < n_blocks; j.bi++)
        if (wanted(flags, j.bi)) return true;
    return false;
}

// What a pass does with the chunks of each block.
enum PassKind { kExactOnly = 0, kPredictFirst = 1, kNeeded = 2 };

struct Counters {
    int64_t predict_terms = 0, exact_terms = 0, exact_beats = 0, n_pred = 0;
    uint64_t amax = 0;
    bool overflow = false;   // a 48-bit accumulator out of range (cannot happen within e2t_shape_ok)
};

// One pass over its jobs. kExactOnly (beta_q = 0): every weight exact, predictor shadowing.
// kPredictFirst (pass A). kNeeded (pass B): the kNeedExact weights of the flagged blocks.
void run_pass(PassKind kind, const uint8_t *x, const int16_t *g_y, const int32_t *samples, int n_samples,
              const Geometry &q, const Plan &p, bool xu, uint32_t beta_q, const uint8_t *flags,
              int8_t *sign, uint8_t *predicted, int64_t *gmsb, Counters &cnt) {
    uint8_t xb[2][TCI][CHUNK];    // ping-pong chunk buffers: one BRAM bank per channel
    int16_t gb[2][TCO][CHUNK];
#pragma HLS ARRAY_PARTITION variable=xb complete dim=2
#pragma HLS ARRAY_PARTITION variable=gb complete dim=2
    int64_t gm[BLOCK], ge[BLOCK];
    int all[BLOCK], ex[BLOCK];    // pass A: every weight; the weights whose exact sum runs
    const int n_blocks = ((q.co + TCO - 1) / TCO) * ((q.ci + TCI - 1) / TCI);
    const int kk = q.k * q.k;
    const bool one_chunk = p.spc >= n_samples && p.rpb >= q.ho;
    int nex = 0;
    LaneStreams st;
    Job cur{-1, n_samples, 0};    // "past the end" of block -1: next_job moves to the first block
    if (n_samples <= 0 || !next_job(q, p, n_samples, n_blocks, flags, cur)) return;
    Block b = block_at(q, cur.bi);
    stage(xb[0], gb[0], x, g_y, samples, q, chunk_of(q, p, n_samples, cur), b.c0, b.tci, b.o0, b.tco);
    for (int k = 0;; k ^= 1) {
        b = block_at(q, cur.bi);
        const Chunk ch = chunk_of(q, p, n_samples, cur);
        const bool first = cur.si0 == 0 && cur.oy0 == 0;
        Job nxt = cur;
        const bool more = next_job(q, p, n_samples, n_blocks, flags, nxt);
        const bool last = !more || nxt.bi != cur.bi;
        if (more) {   // in hardware concurrent with this job's rounds (the other buffer)
            const Block bn = block_at(q, nxt.bi);
            stage(xb[k ^ 1], gb[k ^ 1], x, g_y, samples, q, chunk_of(q, p, n_samples, nxt),
                  bn.c0, bn.tci, bn.o0, bn.tco);
        }
        if (first) {
            nex = 0;
            for (int j = 0; j < b.nb; j++) {
                gm[j] = ge[j] = 0;
                all[j] = j;
                if (kind == kExactOnly) {
                    ex[nex++] = j;
                } else if (kind == kNeeded) {
                    const Lane a = lane_of(j, b.tci, kk);
                    if (predicted[widx(q, b.o0 + a.o, b.c0 + a.c, a.tap)] == kNeedExact) ex[nex++] = j;
                }
            }
        }
        const int64_t beats = (int64_t)ch.ns * ch.nrow * q.wo;
        auto rounds = [&](const int *list, int n, int per, bool pred, bool exact, int64_t &terms, int64_t *abeats) {
            for (int r = 0; r * per < n; r++) {
                const int nl = n - r * per < per ? n - r * per : per;
                round_pass(xb[k], gb[k], q, ch, b.tci, b.tco, xu, list + r * per, nl, pred, exact, gm, ge, st);
                terms += beats * nl;
                if (abeats) *abeats += beats;
            }
        };
        if (kind == kPredictFirst) {
            rounds(all, b.nb, PL, true, false, cnt.predict_terms, nullptr);
            if (last) {
                for (int j = 0; j < b.nb; j++) {
                    const uint64_t m = (uint64_t)psg::iabs(gm[j]);
                    if (m > cnt.amax) cnt.amax = m;
                }
                // Certainly not predicted (max so far <= the final max): exact now, while the
                // block is still in BRAM. Blocks of several chunks leave it all to pass B.
                nex = 0;
                for (int j = 0; one_chunk && j < b.nb; j++)
                    if (!psg::confident(gm[j], beta_q, cnt.amax)) ex[nex++] = j;
                rounds(ex, nex, EL, false, true, cnt.exact_terms, &cnt.exact_beats);
            }
        } else {
            rounds(ex, nex, EL, kind == kExactOnly, true, cnt.exact_terms, &cnt.exact_beats);
        }
        if (last) {
            int e = 0;   // ex[] is in increasing j order
            for (int j = 0; j < b.nb; j++) {
                const Lane a = lane_of(j, b.tci, kk);
                const int64_t i = widx(q, b.o0 + a.o, b.c0 + a.c, a.tap);
                const bool done = e < nex && ex[e] == j;
                e += done;
                if (kind == kExactOnly) {   // max |G_msb| only: the gmsb scratch is not needed
                    const uint64_t m = (uint64_t)psg::iabs(gm[j]);
                    if (m > cnt.amax) cnt.amax = m;
                }
                if (done) {
                    if (ge[j] > psg::kAccMax || ge[j] < psg::kAccMin) cnt.overflow = true;
                    sign[i] = psg::sign_of(ge[j]);
                    predicted[i] = 0;
                } else if (kind == kPredictFirst) {
                    gmsb[i] = gm[j];
                    predicted[i] = kPending;
                }
            }
        }
        if (!more) break;
        cur = nxt;
    }
}

}  // namespace

extern "C" int conv_bwd_weight_psg(const uint8_t *x, const int16_t *g_y, int32_t *w_master,
                                   int8_t *sign, uint8_t *predicted, int64_t *gmsb, int64_t *stats,
                                   const int32_t *samples, int n_samples,
                                   int n, int ci, int h, int wd, int co, int k, int stride, int pad,
                                   int x_unsigned, int32_t beta_q, int32_t lr_q, int32_t wd_q) {
#pragma HLS INTERFACE m_axi port=x offset=slave bundle=gx max_read_burst_length=256 max_widen_bitwidth=64 depth=1024
#pragma HLS INTERFACE m_axi port=g_y offset=slave bundle=gg max_read_burst_length=256 max_widen_bitwidth=64 depth=1024
#pragma HLS INTERFACE m_axi port=w_master offset=slave bundle=gw depth=1024
#pragma HLS INTERFACE m_axi port=sign offset=slave bundle=gw depth=1024
#pragma HLS INTERFACE m_axi port=predicted offset=slave bundle=gw depth=1024
#pragma HLS INTERFACE m_axi port=gmsb offset=slave bundle=gw depth=1024
#pragma HLS INTERFACE m_axi port=stats offset=slave bundle=gw depth=8
#pragma HLS INTERFACE m_axi port=samples offset=slave bundle=gw depth=64
#pragma HLS INTERFACE s_axilite port=n_samples
#pragma HLS INTERFACE s_axilite port=n
#pragma HLS INTERFACE s_axilite port=ci
#pragma HLS INTERFACE s_axilite port=h
#pragma HLS INTERFACE s_axilite port=wd
#pragma HLS INTERFACE s_axilite port=co
#pragma HLS INTERFACE s_axilite port=k
#pragma HLS INTERFACE s_axilite port=stride
#pragma HLS INTERFACE s_axilite port=pad
#pragma HLS INTERFACE s_axilite port=x_unsigned
#pragma HLS INTERFACE s_axilite port=beta_q
#pragma HLS INTERFACE s_axilite port=lr_q
#pragma HLS INTERFACE s_axilite port=wd_q
#pragma HLS INTERFACE s_axilite port=return
    if (!e2t_shape_ok(n, ci, h, wd, co, k, stride, pad)) return E2T_ERR_SHAPE;
    if (beta_q < 0 || (uint32_t)beta_q > psg::kBetaQMax || lr_q < 0 || lr_q >= (1 << 30) ||
        wd_q < 0 || wd_q >= (1 << 30))
        return E2T_ERR_SHAPE;
    if (!e2t_samples_ok(samples, n_samples, n)) return E2T_ERR_SAMPLE;

    const Geometry q{n, ci, h, wd, co, k, stride, pad,
                     e2t_out_dim(h, k, stride, pad), e2t_out_dim(wd, k, stride, pad)};
    const Plan plan = make_plan(q);
    const int kk = k * k;
    const bool xu = x_unsigned != 0;
    const uint32_t bq = (uint32_t)beta_q;
    const int n_blocks = ((co + TCO - 1) / TCO) * ((ci + TCI - 1) / TCI);
    const int64_t nw = (int64_t)co * ci * kk;
    // e2t_shape_ok bounds n*ho*wo by 2^24 = psg::kMaxBeats, so |G| < 2^23 * 2^24 fits the
    // 48-bit accumulators.
    Counters cnt;
    int64_t blocks_skipped = n_blocks;   // blocks whose x and g are not read a second time
    if (n_samples == 0) {
        // Nothing to sum: G = G_msb = 0 for every weight, none predicted.
        for (int64_t i = 0; i < nw; i++) { sign[i] = 0; predicted[i] = 0; }
    } else if (beta_q == 0) {
        run_pass(kExactOnly, x, g_y, samples, n_samples, q, plan, xu, bq, nullptr, sign, predicted, gmsb, cnt);
    } else {
        run_pass(kPredictFirst, x, g_y, samples, n_samples, q, plan, xu, bq, nullptr, sign, predicted, gmsb, cnt);
        // Resolve the pending weights with the final max; flag the blocks that need pass B.
        uint8_t flags[((E2T_MAX_DIM + TCO - 1) / TCO) * ((E2T_MAX_DIM + TCI - 1) / TCI)];
        for (int bi = 0; bi < n_blocks; bi++) {
            const Block b = block_at(q, bi);
            flags[bi] = 0;
            for (int j = 0; j < b.nb; j++) {
#pragma HLS PIPELINE II=1
                const Lane a = lane_of(j, b.tci, kk);
                const int64_t i = widx(q, b.o0 + a.o, b.c0 + a.c, a.tap);
                if (predicted[i] != kPending) continue;
                if (psg::confident(gmsb[i], bq, cnt.amax)) {
                    sign[i] = psg::sign_of(gmsb[i]);
                    predicted[i] = 1;
                    cnt.n_pred++;
                } else {
                    predicted[i] = kNeedExact;
                    flags[bi] = 1;
                }
            }
            blocks_skipped -= flags[bi];
        }
        run_pass(kNeeded, x, g_y, samples, n_samples, q, plan, xu, bq, flags, sign, predicted, gmsb, cnt);
    }
    if (cnt.overflow) return E2T_ERR_OVERFLOW;

    // The sign update of the master weights.
    int64_t wmax = 0;
    for (int64_t i = 0; i < nw; i++) {
#pragma HLS PIPELINE II=1
        const int64_t w = w_master[i];
        const int64_t decay = psg::asr(w * wd_q + (INT64_C(1) << 29), 30);
        const int64_t v = e2t_clamp(w - (int64_t)lr_q * sign[i] - decay, -kMasterLimit, kMasterLimit);
        w_master[i] = (int32_t)v;
        if (psg::iabs(v) > wmax) wmax = psg::iabs(v);
    }
    stats[E2T_STAT_N_PREDICTED] = cnt.n_pred;
    stats[E2T_STAT_GMSB_ABSMAX] = (int64_t)cnt.amax;
    stats[E2T_STAT_W_ABSMAX] = wmax;
    stats[E2T_STAT_EXACT_TERMS] = cnt.exact_terms;
    stats[E2T_STAT_TILES_SKIPPED] = blocks_skipped;
    stats[E2T_STAT_PREDICT_TERMS] = cnt.predict_terms;
    stats[E2T_STAT_DECIDE_BEATS] = cnt.exact_beats;
    return E2T_OK;
}
