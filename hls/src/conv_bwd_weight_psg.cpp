// conv_bwd_weight_psg: the PSG weight gradient fused with the sign update of the int32
// master weights. Every multiply-accumulate goes through the PSG engine
// (hls/include/psg_engine.h; psg_engine_hls() is its C model here and the RTL
// fpga/rtl/psg_engine_hls.v under Vitis HLS, as a blackbox: hls/blackbox/psg_engine.json).
// One engine tile = PSG_LANES weights that share (c, ky, kx) and have consecutive output
// channels o, so one beat carries one x code (broadcast) and PSG_LANES
// g codes: beat b = position (sample, oy, ox) of the conv, in that order.
//
//   pass 1 (predict): every tile streams its beats through the engine in predict mode:
//                     G_msb = sum x_h*g_h per weight -> gmsb (DDR scratch); max |G_msb|.
//                     With beta_q = 0 (predictor off) pass 1 does not run: every lane of
//                     pass 2 needs the exact sum anyway, and the engine's decide mode also
//                     returns G_msb, from which max |G_msb| is still reported.
//   pass 2 (decide):  per tile, corr_en = the lanes the predictor does NOT decide
//                     (|G_msb|*2^16 < beta_q*max or G_msb = 0). corr_en = 0: the tile is not
//                     streamed at all, its signs are sign(G_msb). Otherwise the beats are
//                     streamed again in decide mode and only the corr_en lanes run the
//                     correction products (x_h*g_l, x_l*g_h, x_l*g_l): the exact sum.
//   pass 3 (update):  W <- sat(W - lr_q*sign - ((W*wd_q + 2^29) >> 30), +-(2^30-1)), only
//                     once every sign is known, so an error leaves W untouched.
#include "e2t_fixed.h"
#include "e2t_kernels.h"
#include "e2t_shape.h"
#include "e2t_tiles.h"

#include "psg_engine.h"

// The engine's lane count (PSG_LANES, default 8, the RTL parameter) is the tile the
// performance model assumes (E2T_PSG_LANES, generated from e2train.core.perfmodel).
static_assert(psg::kLanes == E2T_PSG_LANES, "psg_engine.h lanes differ from E2T_PSG_LANES");

namespace {

constexpr int L = E2T_PSG_LANES;
constexpr int64_t kMasterLimit = (INT64_C(1) << 30) - 1;

struct Geometry {
    int n, ci, h, wd, co, k, stride, pad, ho, wo;
};

// The beats of one tile: weights (o0 .. o0+nl-1, c, ky, kx), positions of the listed samples.
// Lanes past nl (the last, partial tile of output channels) get g = 0.
void feed_tile(psg::stream<psg::InBeat> &in, const uint8_t *x, const int16_t *g_y,
               const int32_t *samples, int n_samples, const Geometry &q,
               int o0, int nl, int c, int ky, int kx) {
    for (int si = 0; si < n_samples; si++) {
        const int s = samples[si];
        for (int oy = 0; oy < q.ho; oy++) {
            const int iy = oy * q.stride + ky - q.pad;
            for (int ox = 0; ox < q.wo; ox++) {
#pragma HLS PIPELINE II=1
                const int ix = ox * q.stride + kx - q.pad;
                psg::InBeat b;
                // Code 0 is the value 0 for uint8 and int8 alike: the zero padding.
                const uint8_t xv = (iy >= 0 && iy < q.h && ix >= 0 && ix < q.wd)
                                       ? x[(((int64_t)s * q.ci + c) * q.h + iy) * q.wd + ix] : 0;
                for (int l = 0; l < L; l++) {
                    b.x[l] = xv;
                    b.g[l] = l < nl ? g_y[(((int64_t)s * q.co + o0 + l) * q.ho + oy) * q.wo + ox] : 0;
                }
                b.last = si == n_samples - 1 && oy == q.ho - 1 && ox == q.wo - 1;
                in.write(b);
            }
        }
    }
}

void take_result(psg::stream<psg::OutBeat> &out, psg::OutBeat &r) { r = out.read(); }

// One engine tile: the feed and the engine run concurrently (DATAFLOW) through a short FIFO,
// so a tile's beats never need to be held on chip; the engine writes one result beat.
void run_tile(const uint8_t *x, const int16_t *g_y, const int32_t *samples, int n_samples,
              const Geometry &q, int o0, int nl, int c, int tap, uint8_t mode, bool x_unsigned,
              uint32_t corr_en, uint32_t beta_q, uint64_t amax, psg::OutBeat &r) {
#pragma HLS DATAFLOW
    psg::stream<psg::InBeat> in;
#pragma HLS STREAM variable=in depth=32
    psg::stream<psg::OutBeat> out;
    feed_tile(in, x, g_y, samples, n_samples, q, o0, nl, c, tap / q.k, tap % q.k);
    psg_engine_hls(in, out, mode, x_unsigned, corr_en, beta_q, amax);
    take_result(out, r);
}

int64_t widx(const Geometry &q, int o, int c, int tap) {
    return ((int64_t)o * q.ci + c) * q.k * q.k + tap;
}

int popcount32(uint32_t v) {
    int n = 0;
    for (; v; v &= v - 1) n++;
    return n;
}

}  // namespace

extern "C" int conv_bwd_weight_psg(const uint8_t *x, const int16_t *g_y, int32_t *w_master,
                                   int8_t *sign, uint8_t *predicted, int64_t *gmsb, int64_t *stats,
                                   const int32_t *samples, int n_samples,
                                   int n, int ci, int h, int wd, int co, int k, int stride, int pad,
                                   int x_unsigned, int32_t beta_q, int32_t lr_q, int32_t wd_q) {
#pragma HLS INTERFACE m_axi port=x offset=slave bundle=gx depth=1024
#pragma HLS INTERFACE m_axi port=g_y offset=slave bundle=gg depth=1024
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
    const int kk = k * k;
    const uint64_t beats = (uint64_t)n_samples * q.ho * q.wo;
    int status = E2T_OK;

    // Pass 1: G_msb of every weight, and its max. No listed sample: every G_msb is 0.
    const bool predictor_on = beta_q != 0;
    int64_t predict_terms = 0, decide_beats = 0;
    uint64_t amax = 0;
    for (int o0 = 0; predictor_on && o0 < co; o0 += L) {
        const int nl = co - o0 < L ? co - o0 : L;
        for (int c = 0; c < ci; c++)
            for (int tap = 0; tap < kk; tap++) {
                psg::OutBeat r{};
                if (beats) {
                    run_tile(x, g_y, samples, n_samples, q, o0, nl, c, tap, psg::kPredict,
                             x_unsigned != 0, 0u, (uint32_t)beta_q, 0u, r);
                    if (r.overflow) status |= E2T_ERR_OVERFLOW;
                    predict_terms += (int64_t)beats * nl;
                }
                for (int l = 0; l < nl; l++) {
                    gmsb[widx(q, o0 + l, c, tap)] = r.g_msb[l];
                    const uint64_t a = (uint64_t)psg::iabs(r.g_msb[l]);
                    if (a > amax) amax = a;
                }
            }
    }

    // Pass 2: decide; the exact sum only for the lanes the predictor left undecided.
    int64_t n_pred = 0, exact_terms = 0, tiles_skipped = 0;
    const uint32_t valid_all = psg::all_lanes();
    for (int o0 = 0; o0 < co; o0 += L) {
        const int nl = co - o0 < L ? co - o0 : L;
        const uint32_t valid = nl == L ? valid_all : ((1u << nl) - 1u);
        for (int c = 0; c < ci; c++)
            for (int tap = 0; tap < kk; tap++) {
                int64_t gm[L];
                for (int l = 0; l < L; l++) gm[l] = (predictor_on && l < nl) ? gmsb[widx(q, o0 + l, c, tap)] : 0;
                const uint32_t corr_en = predictor_on ? psg::correction_mask(gm, (uint32_t)beta_q, amax) & valid : valid;
                int8_t sg[L];
                uint32_t pred;
                if (corr_en == 0 || beats == 0) {
                    // Every lane decided by the predictor (or nothing to sum: G = G_msb = 0).
                    for (int l = 0; l < L; l++) sg[l] = psg::sign_of(gm[l]);
                    pred = psg::confident_mask(gm, (uint32_t)beta_q, amax) & valid;
                    tiles_skipped++;
                } else {
                    psg::OutBeat r;
                    run_tile(x, g_y, samples, n_samples, q, o0, nl, c, tap, psg::kDecide,
                             x_unsigned != 0, corr_en, (uint32_t)beta_q, amax, r);
                    if (r.overflow) status |= E2T_ERR_OVERFLOW;
                    if (r.incomplete & valid) status |= E2T_ERR_OVERFLOW;   // cannot happen: same G_msb
                    for (int l = 0; l < L; l++) sg[l] = r.sign[l];
                    if (!predictor_on)
                        for (int l = 0; l < nl; l++) {
                            gmsb[widx(q, o0 + l, c, tap)] = r.g_msb[l];
                            const uint64_t a = (uint64_t)psg::iabs(r.g_msb[l]);
                            if (a > amax) amax = a;
                        }
                    pred = r.predicted & valid;
                    exact_terms += (int64_t)beats * popcount32(corr_en);
                    decide_beats += (int64_t)beats;
                }
                for (int l = 0; l < nl; l++) {
                    const int64_t i = widx(q, o0 + l, c, tap);
                    sign[i] = sg[l];
                    predicted[i] = (pred >> l) & 1u;
                    n_pred += (pred >> l) & 1u;
                }
            }
    }
    if (status != E2T_OK) return status;

    // Pass 3: the sign update of the master weights.
    int64_t wmax = 0;
    const int64_t nw = (int64_t)co * ci * kk;
    for (int64_t i = 0; i < nw; i++) {
#pragma HLS PIPELINE II=1
        const int64_t w = w_master[i];
        const int64_t decay = psg::asr(w * wd_q + (INT64_C(1) << 29), 30);
        const int64_t v = e2t_clamp(w - (int64_t)lr_q * sign[i] - decay, -kMasterLimit, kMasterLimit);
        w_master[i] = (int32_t)v;
        if (psg::iabs(v) > wmax) wmax = psg::iabs(v);
    }
    stats[E2T_STAT_N_PREDICTED] = n_pred;
    stats[E2T_STAT_GMSB_ABSMAX] = (int64_t)amax;
    stats[E2T_STAT_W_ABSMAX] = wmax;
    stats[E2T_STAT_EXACT_TERMS] = exact_terms;
    stats[E2T_STAT_TILES_SKIPPED] = tiles_skipped;
    stats[E2T_STAT_PREDICT_TERMS] = predict_terms;
    stats[E2T_STAT_DECIDE_BEATS] = decide_beats;
    return E2T_OK;
}
