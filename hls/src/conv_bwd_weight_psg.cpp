// conv_bwd_weight_psg, the weight-gradient pass of e2t_engine (op 2, wgrad_pass;
// hls/src/e2t_engine.cpp): the PSG weight gradient fused with the sign update of the int32
// master weights, every MAC (exact and predictor) on the training engine (train_engine_hls, the
// RTL blackbox; train_engine.h) through the top's one engine call (e2t_engine_call, which runs
// wgrad::feed). Arithmetic per weight (o, c, ky, kx) over the positions
// (sample, oy, ox) of the listed samples, x = x[s][c][oy*stride+ky-pad][ox*stride+kx-pad] (0 in
// the padding), g = g_y[s][o][oy][ox], with the contract's MSB splits (msb_split.h):
//   G_msb = sum x_h*g_h      (the engine's predictor: 4x10-bit products in LUTs, acc_lo)
//   G     = sum x*g          (the engine's DSP48E1s: 8x16-bit products, the 48-bit P)
//   predicted <=> |G_msb|*2^16 >= beta_q*max|G_msb| and G_msb != 0;  sign = predicted ?
//   sign(G_msb) : sign(G).
//
// Layout (host/e2train/core/engine_map.py, WGRAD): a *block* is ROWS output channels (rows,
// their g codes) x COLS (input channel, ky, kx) columns (their x codes); beats are positions.
// The positions run in chunks of WGRAD_CHUNK (the shell's chunk buffers): per chunk one call
// per block of the weight group, each starting from cleared accumulators, its results added
// into the group's partial sums (on chip: WGRAD_PART_WEIGHTS weights). A weight group is as
// many whole row blocks as have their partial sums on chip (a row block larger than that is
// cut into column ranges).
//
// One sweep whatever beta_q: every weight's exact sum on the DSPs and its G_msb on the
// predictor, on the same beats (sign(G) -> sign; with beta_q > 0 the layer's max |G_msb|, and
// G_msb -> the gmsb scratch in DDR unless the layer is one weight group, whose G_msb stays in
// the partial sums on chip). Then one loop, one weight per cycle:
//   decide       (beta_q > 0) a weight whose |G_msb| clears the threshold takes sign(G_msb) and
//                predicted = 1; the rest keep sign(G).
//   update       W <- sat(W - lr_q*sign - ((W*wd_q + 2^29) >> 30), +-(2^30-1)), after the
//                sweep, so an error leaves W untouched.
// A predictor-only sweep followed by an exact sweep over the blocks holding an undecided weight
// would cost twice this one's time unless every 8x18 block were decided, which is known only
// after the predictor sweep and which no measured layer had (docs/kernels.md, "What the model
// says"), so the kernel has this one plan.
// The engine's output is one call behind (it emits the previous call's rows), so the loop
// keeps the previous block's placement and each group ends with a flush call.
#include "e2t_fixed.h"
#include "e2t_kernels.h"
#include "e2t_passes.h"
#include "e2t_shape.h"
#include "e2t_tiles.h"
#include "msb_split.h"
#include "train_engine.h"
#if __has_include(<ap_int.h>)   // Vitis HLS: the partial sums' exact widths (Part below)
#include <ap_int.h>
#endif

namespace e2t {
namespace wgrad {

namespace {

constexpr int CHUNK = 256;               // positions per call (engine_map.WGRAD_CHUNK)
constexpr int PART = 36 * 512;           // partial sums on chip (engine_map.WGRAD_PART_WEIGHTS)
constexpr int64_t kMasterLimit = (INT64_C(1) << 30) - 1;
static_assert(E2T_MAX_WGRAD_TERMS <= psg::kMaxBeats, "2^24 positions of |x*g| < 2^23 fit the 48-bit P");
static_assert(R * C <= PART, "a block's partial sums fit on chip");

// A weight's partial sums, one 72-bit BRAM word (the AGGREGATE below): the exact sum in 41 bits
// and G_msb in 31, in range because the pass takes at most E2T_MAX_WGRAD_CALL_TERMS positions
// (|x*g| < 2^23 and |x_h*g_h| < 2^13 a term). The C simulation keeps them in int64, the same
// values.
#if __has_include(<ap_int.h>)
typedef ap_int<41> part_exact_t;
typedef ap_int<31> part_msb_t;
#else
typedef int64_t part_exact_t;
typedef int64_t part_msb_t;
#endif
static_assert((INT64_C(1) << 23) * E2T_MAX_WGRAD_CALL_TERMS <= (INT64_C(1) << 40), "|G| < 2^40: 41 bits");
static_assert((INT64_C(15) * 512) * E2T_MAX_WGRAD_CALL_TERMS < (INT64_C(1) << 30), "|G_msb| < 2^30: 31 bits");
struct Part {
    part_exact_t e;
    part_msb_t m;
};

// A weight group: output channels [o0, o1), columns (ci*k*k index) [j0, j1).
struct Group {
    int o0, o1, j0, j1;
    int at(int o, int j) const { return (o - o0) * (j1 - j0) + (j - j0); }
};

// The call in flight: its block (the engine returns its rows one call later).
struct Placed {
    int o0, j0, nr, nc;
};

struct Counters {
    int64_t predict_terms = 0, exact_terms = 0, exact_beats = 0;
    uint64_t amax = 0;
    bool overflow = false;   // a 48-bit sum out of range (cannot happen within e2t_shape_ok)
};

}  // namespace

// The beats of one block over positions [p0, p1): per position the ROWS g codes and the COLS
// x codes (0 in the padding), the same data on the predictor's buses. The position steps
// along (sample, oy, ox); a column's read is inside the image when its kernel row and column
// are (checked once per position for each ky and kx), and masked to 0 where not.
void feed(psg::stream<eng::Beat> &in, const uint8_t *x, const int16_t *g_y, const int32_t *samples,
          const Geometry &q, const Span &sp) {
    const int o0 = sp.o0, nr = sp.nr, j0 = sp.j0, nc = sp.nc, p0 = sp.p0, p1 = sp.p1;
    const int kk = q.k * q.k, hw = q.ho * q.wo;
    int64_t xcol[C];   // the column's offset inside a sample's x (channel plane + tap)
    int cky[C], ckx[C];
    for (int c = 0; c < C; c++) {
        const int j = c < nc ? j0 + c : j0, ch = j / kk;
        cky[c] = (j % kk) / q.k;
        ckx[c] = j % q.k;
        xcol[c] = (int64_t)ch * q.h * q.wd + (int64_t)cky[c] * q.wd + ckx[c];
    }
    eng::Beat beat = {};
    int si = p0 / hw, oy = (p0 % hw) / q.wo, ox = p0 % q.wo;
    for (int p = p0; p < p1; p++) {
#pragma HLS PIPELINE II=1
        const int s = samples[si];
        const int iy0 = oy * q.stride - q.pad, ix0 = ox * q.stride - q.pad;
        const int64_t gs = (int64_t)s * q.co * hw + (int64_t)oy * q.wo + ox;
        const int64_t xs = (int64_t)s * q.ci * q.h * q.wd + (int64_t)iy0 * q.wd + ix0;   // may be < 0: read only inside
        bool row_in[E2T_MAX_K], col_in[E2T_MAX_K];
        for (int t = 0; t < E2T_MAX_K; t++) {
            row_in[t] = iy0 + t >= 0 && iy0 + t < q.h;
            col_in[t] = ix0 + t >= 0 && ix0 + t < q.wd;
        }
        for (int r = 0; r < R; r++) beat.row[r] = beat.prow[r] = r < nr ? g_y[gs + (int64_t)(o0 + r) * hw] : 0;
        for (int c = 0; c < C; c++) {
            const bool in_x = c < nc && row_in[cky[c]] && col_in[ckx[c]];
            const uint8_t v = x[in_x ? xs + xcol[c] : 0] & (in_x ? 0xff : 0);
            beat.col[c] = v;
            beat.pcol[c] = v;
        }
        beat.last = p == p1 - 1;
        in.write(beat);
        if (++ox == q.wo) {
            ox = 0;
            if (++oy == q.ho) {
                oy = 0;
                si++;
            }
        }
    }
}

namespace {

// The rows of a finished call added into the group's partial sums (the shell's two adders).
void gather(psg::stream<eng::Row> &out, const Placed &pl, const Group &g, Part part[PART]) {
    for (int r = 0; r < R; r++) {
        const eng::Row row = out.read();
        for (int c = 0; c < C; c++) {
#pragma HLS PIPELINE II=1
            if (r < pl.nr && c < pl.nc) {
                const int i = g.at(pl.o0 + r, pl.j0 + c);
                part[i].e += row.p[c];
                part[i].m += row.lo[c];
            }
        }
    }
}

int64_t widx(const Geometry &q, int o, int j) { return (int64_t)o * q.taps + j; }

// Groups: whole row blocks while they fit, else column ranges of one row block.
int rows_per_group(const Geometry &q) { return R * q.taps <= PART ? (PART / (R * q.taps)) * R : R; }
int cols_per_group(const Geometry &q) { return R * q.taps <= PART ? q.taps : (PART / (R * C)) * C; }

// The layer's weights are one group: their partial sums stay on chip after the sweep, at the
// weight's own index (Group::at with o0 = j0 = 0).
bool one_group(const Geometry &q) { return q.co <= rows_per_group(q) && q.taps <= cols_per_group(q); }

// The sweep over every weight group: per weight sign(G) -> sign, and with spill its G_msb ->
// gmsb (the decision needs the layer's max |G_msb|, known only at the end; a layer of one
// group keeps it in part[].m).
void run_sweep(bool spill, const int8_t wt[][R],
               psg::stream<eng::Head> &head, psg::stream<eng::Beat> &in, psg::stream<eng::Row> &out,
               const uint8_t *x, const int16_t *g_y, const int32_t *samples,
               int n_samples, const Geometry &q, bool xu, int8_t *sign, uint8_t *predicted, int64_t *gmsb,
               Part part[PART], Counters &cnt) {
#pragma HLS INLINE
    const int npos = n_samples * q.ho * q.wo;
    const int rows_per_group = wgrad::rows_per_group(q), cols_per_group = wgrad::cols_per_group(q);
    for (int go = 0; go < q.co; go += rows_per_group) {
        for (int gj = 0; gj < q.taps; gj += cols_per_group) {
            const Group g{go, go + rows_per_group < q.co ? go + rows_per_group : q.co, gj,
                          gj + cols_per_group < q.taps ? gj + cols_per_group : q.taps};
            const int nw = (g.o1 - g.o0) * (g.j1 - g.j0);
            for (int i = 0; i < nw; i++) {
#pragma HLS PIPELINE II=1
                part[i].e = part[i].m = 0;
            }
            Placed pl[2];
            Feed fd = {};
            int cur = 0;
            bool pending = false;
            for (int p0 = 0; p0 < npos; p0 += CHUNK) {
                const int p1 = p0 + CHUNK < npos ? p0 + CHUNK : npos;
                for (int o0 = g.o0; o0 < g.o1; o0 += R) {
                    for (int j0 = g.j0; j0 < g.j1; j0 += C) {
                        Placed &b = pl[cur];
                        b.o0 = o0;
                        b.j0 = j0;
                        b.nr = g.o1 - o0 < R ? g.o1 - o0 : R;
                        b.nc = g.j1 - j0 < C ? g.j1 - j0 : C;
                        eng::Head hd;
                        for (int r = 0; r < R; r++)
                            for (int c = 0; c < C; c++) hd.cell_en[r * C + c] = r < b.nr && c < b.nc;
                        head.write(hd);
                        fd.ws = Span{b.o0, b.nr, b.j0, b.nc, p0, p1};
                        e2t_engine_call(head, in, out, eng::kWgrad, fd, q, x, g_y, samples, wt, xu, true, true,
                                        true, (uint8_t)b.nr, (uint8_t)b.nc, pending);
                        if (pending) gather(out, pl[cur ^ 1], g, part);
                        pending = true;
                        cur ^= 1;
                        const int64_t beats = p1 - p0, cells = b.nr * b.nc;
                        cnt.exact_terms += beats * cells;
                        cnt.predict_terms += beats * cells;
                        cnt.exact_beats += beats;
                    }
                }
            }
            if (pending) {
                eng::Head none = {};
                head.write(none);
                e2t_engine_call(head, in, out, eng::kFlush, fd, q, x, g_y, samples, wt, xu, false, false, false, 0, 0,
                                true);
                gather(out, pl[cur ^ 1], g, part);
            }
            // The group's sums out: sign(G), max |G_msb| and, for the decision, G_msb.
            for (int o = g.o0; o < g.o1; o++)
                for (int j = g.j0; j < g.j1; j++) {
#pragma HLS PIPELINE II=1
                    const int64_t i = widx(q, o, j), ge = part[g.at(o, j)].e, gm = part[g.at(o, j)].m;
                    const uint64_t m = (uint64_t)psg::iabs(gm);
                    if (m > cnt.amax) cnt.amax = m;
                    if (ge > psg::kAccMax || ge < psg::kAccMin) cnt.overflow = true;
                    sign[i] = psg::sign_of(ge);
                    predicted[i] = 0;
                    if (spill) gmsb[i] = gm;
                }
        }
    }
}

}  // namespace

}  // namespace wgrad

// The weight-gradient pass of e2t_engine (op E2T_OP_BWD_WEIGHT_PSG), inlined into the top
// (wt: the top's weight tile buffer, which this pass does not use; e2t_engine_call takes it).
int wgrad_pass(int8_t wt[][R],
               psg::stream<eng::Head> &head, psg::stream<eng::Beat> &in, psg::stream<eng::Row> &out,
               const uint8_t *x, const int16_t *g_y, int32_t *w_master, int8_t *sign,
               uint8_t *predicted, int64_t *gmsb, int64_t *stats, const int32_t *samples, int n_samples, int n,
               int ci, int h, int wd, int co, int k, int stride, int pad, int x_unsigned, int32_t beta_q,
               int32_t lr_q, int32_t wd_q) {
#pragma HLS INLINE
    using namespace wgrad;
    if (!e2t_shape_ok(n, ci, h, wd, co, k, stride, pad)) return E2T_ERR_SHAPE;
    const Geometry q = geometry(ci, h, wd, co, k, stride, pad);
    if ((int64_t)n * q.ho * q.wo > E2T_MAX_WGRAD_CALL_TERMS) return E2T_ERR_SHAPE;
    if (beta_q < 0 || (uint32_t)beta_q > psg::kBetaQMax || lr_q < 0 || lr_q >= (1 << 30) ||
        wd_q < 0 || wd_q >= (1 << 30))
        return E2T_ERR_SHAPE;
    if (!e2t_samples_ok(samples, n_samples, n)) return E2T_ERR_SAMPLE;

    const bool xu = x_unsigned != 0;
    const uint32_t bq = (uint32_t)beta_q;
    const int64_t nw = (int64_t)co * q.taps;
    const int64_t n_blocks = (int64_t)((co + R - 1) / R) * ((q.taps + C - 1) / C);
    E2T_KERNEL_STATIC Part part[PART];   // a weight group's partial sums: one 72-bit BRAM word a weight
#pragma HLS AGGREGATE variable=part
#pragma HLS BIND_STORAGE variable=part type=ram_2p impl=bram
    Counters cnt;
    int64_t n_pred = 0;
    if (n_samples == 0) {
        // Nothing to sum: G = G_msb = 0 for every weight, none predicted.
        for (int64_t i = 0; i < nw; i++) { sign[i] = 0; predicted[i] = 0; }
    } else {
        run_sweep(beta_q > 0 && !one_group(q), wt, head, in, out, x, g_y, samples, n_samples, q, xu, sign,
                  predicted, gmsb, part, cnt);
    }
    if (cnt.overflow) return E2T_ERR_OVERFLOW;

    // The decision (beta_q > 0: max |G_msb| is known now) and the sign update of the master
    // weights, one weight per cycle in one loop.
    const bool decide = beta_q > 0 && n_samples > 0, on_chip = one_group(q);
    int64_t wmax = 0;
    for (int64_t i = 0; i < nw; i++) {
#pragma HLS PIPELINE II=1
        int8_t sg = sign[i];
        const int64_t gm = !decide ? 0 : on_chip ? (int64_t)part[i].m : gmsb[i];
        if (decide && psg::confident(gm, bq, cnt.amax)) {
            sg = psg::sign_of(gm);
            sign[i] = sg;
            predicted[i] = 1;
            n_pred++;
        }
        const int64_t w = w_master[i];
        const int64_t decay = psg::asr(w * wd_q + (INT64_C(1) << 29), 30);
        const int64_t v = e2t_clamp(w - (int64_t)lr_q * sg - decay, -kMasterLimit, kMasterLimit);
        w_master[i] = (int32_t)v;
        if (psg::iabs(v) > wmax) wmax = psg::iabs(v);
    }
    stats[E2T_STAT_N_PREDICTED] = n_pred;
    stats[E2T_STAT_GMSB_ABSMAX] = (int64_t)cnt.amax;
    stats[E2T_STAT_W_ABSMAX] = wmax;
    stats[E2T_STAT_EXACT_TERMS] = cnt.exact_terms;
    stats[E2T_STAT_TILES_SKIPPED] = n_blocks;   // one sweep: no block is read a second time
    stats[E2T_STAT_PREDICT_TERMS] = cnt.predict_terms;
    stats[E2T_STAT_DECIDE_BEATS] = cnt.exact_beats;
    stats[E2T_STAT_GMSB_SPILLED] = decide && !on_chip ? nw : 0;
    return E2T_OK;
}

}  // namespace e2t
