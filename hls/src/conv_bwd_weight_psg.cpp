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
// The positions run in chunks of CHUNK: per chunk one call per block of the weight group, each
// starting from cleared accumulators, its results added into the group's partial sums (on
// chip: WGRAD_PART_WEIGHTS weights). A weight group is as many whole row blocks as have their
// partial sums on chip (at most G_ROWS output channels), and as many input channels as the x
// chunk buffer holds at the layer's widest chunk (a row block larger than that is cut into
// channel ranges).
//
// Operands come from the chunk buffers (e2t_passes.h, namespace wgrad), never from DDR beat by
// beat: a step (one group's chunk) is staged in one half while the calls of the step before
// read the other. Each call's stagers (stage_x on the gx bundle, stage_g on gg) write an even
// share of the next step's channels; the first step is staged before the first call (the
// prologue). x comes from DDR once per step as the rows its positions reach (a chunk that
// ends inside an image shares rows with the next: those are read again), g once per group.
// One sweep whatever beta_q: every weight's exact sum on the DSPs and its G_msb on the
// predictor, on the same beats (sign(G) -> sign; with beta_q > 0 the layer's max |G_msb|, and
// G_msb -> the gmsb scratch in DDR (int32) unless the layer is one weight group, whose G_msb stays in
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

static_assert(E2T_MAX_WGRAD_TERMS <= psg::kMaxBeats, "2^24 positions of |x*g| < 2^23 fit the 48-bit P");
static_assert(R * C <= PART, "a block's partial sums fit on chip");
// The engine is cleared every call and a call sums one step's positions (at most CHUNK): its read-out
// (P's low kPOutBits) and acc_lo (G_msb, kLoBits) hold them; so would a whole pass's 2^17.
static_assert((int64_t)E2T_MAX_WGRAD_CALL_TERMS << 23 <= INT64_C(1) << (eng::kPOutBits - 1) &&
              (int64_t)E2T_MAX_WGRAD_CALL_TERMS << 13 <= INT64_C(1) << (eng::kLoBits - 1),
              "a pass's sums of |x*g| < 2^23 and |x_h*g_h| < 2^13 fit the engine's read-out");
static_assert((INT64_C(1) << 23) * E2T_MAX_WGRAD_CALL_TERMS <= (INT64_C(1) << 40), "|G| < 2^40: 41 bits");
static_assert((INT64_C(15) * 512) * E2T_MAX_WGRAD_CALL_TERMS < (INT64_C(1) << 30), "|G_msb| < 2^30: 31 bits");
constexpr int64_t kMasterLimit = (INT64_C(1) << 30) - 1;

struct Counters {
    int64_t predict_terms = 0, exact_terms = 0, exact_beats = 0;
    uint64_t amax = 0;
    bool overflow = false;   // a 48-bit sum out of range (cannot happen within e2t_shape_ok)
};

}  // namespace

namespace {

inline int mod3(int v) { const int m = v % 3; return m < 0 ? m + 3 : m; }

// Where a staged word lies (the layout of e2t_passes.h): row `slot` (>= 0: a row of the image)
// of channel cr, word w -> its bank and its word in the bank.
inline void x_at(const Step &st, int cr, int slot, int w, int &bank, int &word) {
    const int a = ((slot / 3) * st.cq + cr / 2) * st.nw + w;
    bank = (cr & 1) + 2 * (slot % 3) + X_LOGICAL * (a / X_WORDS);
    word = st.half * X_WORDS + a % X_WORDS;
}

}  // namespace

#ifndef __SYNTHESIS__
#define E2T_STAGING(field, v) e2t_wgrad_staging_add(field, v)
#else
#define E2T_STAGING(field, v) ((void)0)
#endif

// The beats of one block over the step's positions: per position the ROWS g codes and the COLS
// x codes (0 in the padding), the same data on the predictor's buses, all from the chunk
// buffers, each bank read at most once a cycle. The block's first column is a multiple of 18
// (group and block boundaries are), so its columns have fixed roles. 3x3: column c is channel
// cf + c/9 at kernel row (c%9)/3 and column c%3; logical bank L = (parity, row residue) holds,
// this beat, the word of channel cf + L%2 at kernel row (L/2 - sl0) mod 3 that covers the
// window (word b0/7, from code b0%7), whose codes b0%7 .. b0%7+2 are the bank's window; a
// column takes its row's window (a 3:1 choice by residue) and its code kx there. 1x1: column c is channel cf + c; cycle t of the beat's nine reads
// channels cf + 2t and cf + 2t + 1 (logical banks (0, sl0%3) and (1, sl0%3)). The gather is
// fpga/rtl/wgrad_gather.v's function (yosys counts it for fpga/fit.py). The position steps
// along (sample, oy, ox); `base` is the slot of the current sample's first staged row `lo`.
void feed(psg::stream<eng::Beat> &in, const XWord xs[][2 * X_WORDS], const word_t gs[][2 * G_WORDS],
          const Geometry &q, const Span &sp) {
    const Step &st = sp.st;
    const int kk = q.k * q.k, hw = q.ho * q.wo;
    const bool k3 = q.k == 3;
    const int cf = sp.j0 / kk - st.c0;                       // the block's first channel (even)
    const int gword0 = st.half * G_WORDS + ((sp.o0 - st.o0) / R) * (CHUNK / 4);
    const int cycles = k3 ? 1 : X_1X1_CYCLES;
    int oy = (st.p0 % hw) / q.wo, ox = st.p0 % q.wo;
    int lo, hi;
    in_rows(q, oy, q.ho - 1, lo, hi);                        // hi: if the chunk runs to the sample's end
    int base = 0;
    eng::Beat beat = {};
    for (int p = st.p0; p < st.p1; p++) {
        const int iy0 = oy * q.stride - q.pad, ix0 = ox * q.stride - q.pad;
        const int sl0 = base + iy0 - lo;                     // the window's first row (one above the image: -1)
        const int r0 = mod3(sl0);                            // its residue: kernel row ky lies in residue (r0 + ky) mod 3
        const int b0 = ix0 + q.pad, w0 = b0 / 7, o7 = b0 % 7;
        for (int t = 0; t < cycles; t++) {
#pragma HLS PIPELINE II=1
            uint8_t win[X_LOGICAL][3];                        // each logical bank's window: codes o7 .. o7+2 of its word
#pragma HLS ARRAY_PARTITION variable=win complete dim=0
#ifndef __SYNTHESIS__
            int lcr[X_LOGICAL], lky[X_LOGICAL];               // whose (channel, kernel row) it is: the C-sim check
#endif
            for (int l = 0; l < X_LOGICAL; l++) {
#pragma HLS UNROLL
                const int d = l / 2 - r0, ky = d < 0 ? d + 3 : d;   // the kernel row in this residue
                const int cr = cf + (k3 ? (l & 1) : 2 * t + (l & 1)), iy = iy0 + ky;
#ifndef __SYNTHESIS__
                lcr[l] = cr;
                lky[l] = ky;
#endif
                const bool ok = cr < st.nch && iy >= 0 && iy < q.h && (k3 || ky == 0);
                int bank = 0, word = 0;
                if (ok) x_at(st, cr, sl0 + ky, w0, bank, word);
                win[l][0] = win[l][1] = win[l][2] = 0;
                for (int u = 0; u < 3; u++) {                 // the logical bank's three banks: one holds the word
#pragma HLS UNROLL
                    const int b = l + X_LOGICAL * u;
                    if (ok && bank == b)
                        for (int i = 0; i < 3; i++) win[l][i] = xs[b][word].c[o7 + i];
                }
            }
            for (int c = 0; c < C; c++) {
#pragma HLS UNROLL
                const int cl = k3 ? c / 9 : c & 1, ky = k3 ? (c % 9) / 3 : 0, kx = k3 ? c % 3 : 0;
                if (!k3 && c / 2 != t) continue;              // 1x1: this cycle's two columns
                const int m = r0 + ky, l = cl + 2 * (m >= 3 ? m - 3 : m), iy = iy0 + ky;
                const uint8_t v = win[l][kx];
                const bool in_x = c < sp.nc && iy >= 0 && iy < q.h;
#ifndef __SYNTHESIS__
                // the logical bank this column reads holds its own channel and kernel row
                if (in_x && (lcr[l] != cf + (k3 ? cl : c) || lky[l] != ky)) E2T_STAGING(7, 1);
#endif
                beat.col[c] = in_x ? v : 0;
                beat.pcol[c] = in_x ? v : 0;
            }
        }
        const int gw = gword0 + (p - st.p0) / 4, gsh = 16 * ((p - st.p0) & 3);
        for (int r = 0; r < R; r++) beat.row[r] = beat.prow[r] = r < sp.nr ? (int16_t)(gs[r][gw] >> gsh) : 0;
        beat.last = p == st.p1 - 1;
        in.write(beat);
        if (++ox == q.wo) {
            ox = 0;
            if (++oy == q.ho) {                               // the next sample: its rows follow this one's
                oy = 0;
                base += hi - lo + 1;
                in_rows(q, 0, q.ho - 1, lo, hi);
            }
        }
    }
}

// The x of a job's channels: per channel, per sample of the step, the input rows its positions
// reach (one DDR burst of the row's codes each), a word a cycle into the banks (words overlap
// by 2 codes: 7 new codes a word after the row's first).
void stage_x(const uint8_t *x, const int32_t *samples, const Geometry &q, const Job &jb, XWord xs[][2 * X_WORDS]) {
    const Step &st = jb.st;
    if (jb.xu0 >= jb.xu1) return;
    const int hw = q.ho * q.wo, s0 = st.p0 / hw, s1 = (st.p1 - 1) / hw;
    for (int cr = jb.xu0; cr < jb.xu1; cr++) {
        int slot = 0;
        for (int si = s0; si <= s1; si++) {
            const int a = si == s0 ? (st.p0 % hw) / q.wo : 0, b = si == s1 ? ((st.p1 - 1) % hw) / q.wo : q.ho - 1;
            int lo, hi;
            in_rows(q, a, b, lo, hi);
            const uint8_t *plane = x + ((int64_t)samples[si] * q.ci + st.c0 + cr) * q.h * q.wd;
            E2T_STAGING(0, (int64_t)(hi - lo + 1) * q.wd);
            E2T_STAGING(2, (int64_t)(hi - lo + 1) * st.nw);
            for (int iy = lo; iy <= hi; iy++, slot++) {
                XWord v = {};                                  // the word being assembled
                for (int w = 0; w < st.nw; w++) {
#pragma HLS PIPELINE II=1
                    for (int i = 0; i < 9; i++) {
#pragma HLS UNROLL
                        if (w > 0 && i < 2) {
                            v.c[i] = v.c[i + 7];                 // the overlap: the previous word's last codes
                        } else {
                            const int ix = 7 * w + i - q.pad;
                            v.c[i] = ix >= 0 && ix < q.wd ? plane[(int64_t)iy * q.wd + ix] : 0;
                        }
                    }
                    int bank, word;
                    x_at(st, cr, slot, w, bank, word);
                    xs[bank][word] = v;
                }
            }
        }
    }
}

// The g of a job's output channels over the step's positions (a DDR burst per sample), four
// codes a word, a word a cycle.
void stage_g(const int16_t *g_y, const int32_t *samples, const Geometry &q, const Job &jb,
             word_t gs[][2 * G_WORDS]) {
    const Step &st = jb.st;
    if (jb.gu0 >= jb.gu1) return;
    const int hw = q.ho * q.wo, n = st.p1 - st.p0, words = (n + 3) / 4;
    for (int orr = jb.gu0; orr < jb.gu1; orr++) {
        const int o = st.o0 + orr;
        int si = st.p0 / hw, pos = st.p0 % hw;
        int64_t plane = ((int64_t)samples[si] * q.co + o) * hw;
        E2T_STAGING(1, 2 * (int64_t)n);
        E2T_STAGING(3, words);
        for (int w = 0; w < words; w++) {
#pragma HLS PIPELINE II=1
            word_t v = 0;
            for (int i = 0; i < 4; i++) {
                if (4 * w + i < n) {
                    v |= (word_t)(uint16_t)g_y[plane + pos] << (16 * i);
                    if (++pos == hw && 4 * w + i + 1 < n) {
                        pos = 0;
                        si++;
                        plane = ((int64_t)samples[si] * q.co + o) * hw;
                    }
                }
            }
            gs[orr % R][st.half * G_WORDS + (orr / R) * (CHUNK / 4) + w] = v;
        }
    }
}

namespace {

int64_t widx(const Geometry &q, int o, int j) { return (int64_t)o * q.taps + j; }

// The x chunk buffer's need: the rows a chunk of positions [p0, p1) stages (every listed
// sample's rows that its positions reach), and the most of any chunk of the pass.
int chunk_slots(const Geometry &q, int p0, int p1) {
    const int hw = q.ho * q.wo, s0 = p0 / hw, s1 = (p1 - 1) / hw;
    int slots = 0;
    for (int si = s0; si <= s1; si++) {
        const int a = si == s0 ? (p0 % hw) / q.wo : 0, b = si == s1 ? ((p1 - 1) % hw) / q.wo : q.ho - 1;
        int lo, hi;
        in_rows(q, a, b, lo, hi);
        slots += hi - lo + 1;
    }
    return slots;
}

int max_slots(const Geometry &q, int npos) {
    int m = 1;
    for (int p0 = 0; p0 < npos; p0 += CHUNK) {
        const int sl = chunk_slots(q, p0, p0 + CHUNK < npos ? p0 + CHUNK : npos);
        if (sl > m) m = sl;
    }
    return m;
}

// Words a staged x row takes (e2t_passes.h): 9 codes at a stride of 7, so that every window
// of k neighbouring codes of the row and its padding lies in one word.
int row_words(const Geometry &q) { return (q.wd + 2 * q.pad - q.k + 1 + 6) / 7; }

// A weight group: output channels, and columns (whole input channels). Rows: whole row blocks
// whose partial sums fit on chip and whose g fits the g buffer (G_ROWS); columns: every tap,
// unless one row block's partial sums do not fit (column ranges of PART/(R*C) blocks) or the
// widest chunk's x rows of every channel do not fit the x buffer (then the channel pairs that
// do: 3*X_WORDS words a logical bank for ceil(slots/3) rows of each pair, in whole blocks of 18
// columns). cols 0: not even one block's channels fit (the pass refuses the shape). Every
// group's first column is a multiple of 18.
struct Plan {
    int rows, cols;
};

Plan plan(const Geometry &q, int npos) {
    Plan pl;
    pl.rows = R * q.taps <= PART ? (PART / (R * q.taps)) * R : R;
    if (pl.rows > G_ROWS) pl.rows = G_ROWS;
    pl.cols = R * q.taps <= PART ? q.taps : (PART / (R * C)) * C;
    const int pairs = (3 * X_WORDS) / (((max_slots(q, npos) + 2) / 3) * row_words(q));   // channel pairs that fit
    const int64_t cap = ((int64_t)2 * pairs * q.k * q.k / C) * C;                         // whole blocks of 18 columns
    if (pl.cols > cap) pl.cols = (int)cap;
    return pl;
}

// The layer's weights are one group: their partial sums stay on chip after the sweep, at the
// weight's own index (Group::at with o0 = j0 = 0).
bool one_group(const Geometry &q, const Plan &pl) { return q.co <= pl.rows && q.taps <= pl.cols; }

// The step of group (go, gj) at chunk p0, staged in `half`.
Step make_step(const Geometry &q, const Plan &pl, int npos, int go, int gj, int p0, int half) {
    const int kk = q.k * q.k;
    Step st;
    st.half = half;
    st.p0 = p0;
    st.p1 = p0 + CHUNK < npos ? p0 + CHUNK : npos;
    st.o0 = go;
    st.nr = (go + pl.rows < q.co ? go + pl.rows : q.co) - go;
    st.c0 = gj / kk;
    st.nch = ((gj + pl.cols < q.taps ? gj + pl.cols : q.taps) - gj) / kk;
    st.nw = row_words(q);
    st.cq = (st.nch + 1) / 2;
    return st;
}

// The step after (go, gj, p0) in sweep order: the group's next chunk, else the next group's
// first. false: it was the last.
bool next_step(const Geometry &q, const Plan &pl, int npos, int &go, int &gj, int &p0) {
    if (p0 + CHUNK < npos) {
        p0 += CHUNK;
        return true;
    }
    p0 = 0;
    if (gj + pl.cols < q.taps) {
        gj += pl.cols;
        return true;
    }
    gj = 0;
    if (go + pl.rows < q.co) {
        go += pl.rows;
        return true;
    }
    return false;
}

// The prologue: the first step staged before any call, both stagers side by side.
void stage_both(const uint8_t *x, const int16_t *g_y, const int32_t *samples, const Geometry &q, const Job &jb,
                XWord xs[][2 * X_WORDS], word_t gs[][2 * G_WORDS]) {
#pragma HLS DATAFLOW
    stage_x(x, samples, q, jb, xs);
    stage_g(g_y, samples, q, jb, gs);
}

// The sweep over every weight group: per weight sign(G) -> sign, and with spill its G_msb ->
// gmsb (the decision needs the layer's max |G_msb|, known only at the end; a layer of one
// group keeps it in part[].m). Call b of a step's nb calls stages the next step's channels
// [b*nch/nb, (b+1)*nch/nb) of x and [b*nr/nb, (b+1)*nr/nb) of g.
void run_sweep(bool spill, const Plan &pl, const int8_t wt[][R], XWord xs[][2 * X_WORDS], word_t gs[][2 * G_WORDS],
               uint8_t xf[][fwd::XF_BANKS], int16_t gb[][bwd::GB_BANKS], psg::stream<eng::Head> &head, psg::stream<eng::Beat> &in, psg::stream<eng::Row> &out,
               const uint8_t *x, const int16_t *g_y, const int32_t *samples,
               int n_samples, const Geometry &q, bool xu, int8_t *sign, int32_t *gmsb,
               Part part[PART], Counters &cnt, uint8_t *y, int16_t *g_x, int32_t cA[], int64_t cB[], int64_t cK[]) {
#pragma HLS INLINE
    const int npos = n_samples * q.ho * q.wo;
    {
        Job first = {make_step(q, pl, npos, 0, 0, 0, 0), 0, 0, 0, 0};
        first.xu1 = first.st.nch;
        first.gu1 = first.st.nr;
#ifndef __SYNTHESIS__
        int64_t t0[E2T_STAGING_FIELDS], t1[E2T_STAGING_FIELDS];
        e2t_wgrad_staging(t0);
#endif
        stage_both(x, g_y, samples, q, first, xs, gs);
#ifndef __SYNTHESIS__
        e2t_wgrad_staging(t1);
        E2T_STAGING(4, t1[2] - t0[2] > t1[3] - t0[3] ? t1[2] - t0[2] : t1[3] - t0[3]);
#endif
    }
    int half = 0;
    for (int go = 0; go < q.co; go += pl.rows) {
        for (int gj = 0; gj < q.taps; gj += pl.cols) {
            const Group g{go, go + pl.rows < q.co ? go + pl.rows : q.co, gj, gj + pl.cols < q.taps ? gj + pl.cols : q.taps};
            const int nb = ((g.o1 - g.o0 + R - 1) / R) * ((g.j1 - g.j0 + C - 1) / C);
            Placed pls[2];
            Feed fd = {};
            OutStage os = {};
            os.g = g;
            int ovf = 0;                                  // the output stage's range check of the final sums
            int cur = 0;
            bool pending = false;
            for (int p0 = 0; p0 < npos; p0 += CHUNK) {
                const Step st = make_step(q, pl, npos, go, gj, p0, half);
                int ngo = go, ngj = gj, np0 = p0;
                const bool more = next_step(q, pl, npos, ngo, ngj, np0);
                const Step nst = make_step(q, pl, npos, ngo, ngj, np0, half ^ 1);
                int bi = 0;
                for (int o0 = g.o0; o0 < g.o1; o0 += R) {
                    for (int j0 = g.j0; j0 < g.j1; j0 += C, bi++) {
                        Placed &b = pls[cur];
                        b.o0 = o0;
                        b.j0 = j0;
                        b.nr = g.o1 - o0 < R ? g.o1 - o0 : R;
                        b.nc = g.j1 - j0 < C ? g.j1 - j0 : C;
                        b.first = p0 == 0;
                        b.last = p0 + CHUNK >= npos;
                        eng::Head hd;
                        for (int r = 0; r < R; r++)
                            for (int c = 0; c < C; c++) hd.cell_en[r * C + c] = r < b.nr && c < b.nc;
                        head.write(hd);
                        fd.ws = Span{b.o0, b.nr, b.j0, b.nc, st};
                        fd.job = Job{nst, 0, 0, 0, 0};
                        if (more) {
                            fd.job.xu0 = bi * nst.nch / nb;
                            fd.job.xu1 = (bi + 1) * nst.nch / nb;
                            fd.job.gu0 = bi * nst.nr / nb;
                            fd.job.gu1 = (bi + 1) * nst.nr / nb;
                        }
                        os.kind = pending ? kOutWgrad : kOutNone;
                        os.pl = pls[cur ^ 1];
                        e2t_engine_call(head, in, out, eng::kWgrad, fd, q, x, g_y, samples, wt, xs, gs, xf, gb, xu, true, true,
                                        true, (uint8_t)b.nr, (uint8_t)b.nc, pending, os, y, g_x, cA, cB, cK, part,
                                        &ovf, &cnt.amax);
                        pending = true;
                        cur ^= 1;
                        const int64_t beats = st.p1 - st.p0, cells = b.nr * b.nc;
                        cnt.exact_terms += beats * cells;
                        cnt.predict_terms += beats * cells;
                        cnt.exact_beats += beats;
                    }
                }
                half ^= 1;
            }
            if (pending) {
                eng::Head none = {};
                head.write(none);
                fd.job = Job{};                               // a flush stages nothing
                os.kind = kOutWgrad;
                os.pl = pls[cur ^ 1];
                e2t_engine_call(head, in, out, eng::kFlush, fd, q, x, g_y, samples, wt, xs, gs, xf, gb, xu, false, false, false,
                                0, 0, true, os, y, g_x, cA, cB, cK, part, &ovf, &cnt.amax);
            }
            if (ovf) cnt.overflow = true;
            // A layer of more than one group: the group's sums out before the next group's sweep
            // writes over them, sign(G) and, for the decision, G_msb. (The output stage took max
            // |G_msb| and the range check on the group's last chunk.) A layer of one group keeps
            // its sums on chip: the update reads them there.
            if (!one_group(q, pl)) {
                for (int o = g.o0; o < g.o1; o++)
                    for (int j = g.j0; j < g.j1; j++) {
#pragma HLS PIPELINE II=1
                        const int64_t i = widx(q, o, j), ge = part[g.at(o, j)].e, gm = part[g.at(o, j)].m;
                        sign[i] = psg::sign_of(ge);
                        if (spill) gmsb[i] = (int32_t)gm;      // |G_msb| < 2^30 (Part's 31 bits)
                    }
                E2T_STAGING(9, (int64_t)(g.o1 - g.o0) * (g.j1 - g.j0));
            }
        }
    }
}

}  // namespace

}  // namespace wgrad

// The weight-gradient pass of e2t_engine (op E2T_OP_BWD_WEIGHT_PSG), inlined into the top
// (wt: the top's weight tile buffer, which this pass does not use; e2t_engine_call takes it).
int wgrad_pass(int8_t wt[][R], wgrad::XWord xs[][2 * wgrad::X_WORDS], wgrad::word_t gs[][2 * wgrad::G_WORDS],
               uint8_t xf[][fwd::XF_BANKS], int16_t gb[][bwd::GB_BANKS], int32_t cA[], int64_t cB[], int64_t cK[],
               wgrad::Part part[], psg::stream<eng::Head> &head, psg::stream<eng::Beat> &in, psg::stream<eng::Row> &out,
               const uint8_t *x, const int16_t *g_y, uint8_t *y, int16_t *g_x, int32_t *w_master, int8_t *sign,
               uint8_t *predicted, int32_t *gmsb, int64_t *stats, const int32_t *samples, int n_samples, int n,
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
    // the x chunk buffer holds 18 channels' rows of the batch's widest chunk (core/shapes.py
    // check_wgrad_stage; the listed samples' chunks are never wider)
    if (plan(q, n * q.ho * q.wo).cols == 0) return E2T_ERR_SHAPE;
    if (!e2t_samples_ok(samples, n_samples, n)) return E2T_ERR_SAMPLE;
#ifndef __SYNTHESIS__
    e2t_wgrad_staging_reset();
#endif

    const bool xu = x_unsigned != 0;
    const uint32_t bq = (uint32_t)beta_q;
    const Plan pl = plan(q, n_samples * q.ho * q.wo);
    const int64_t nw = (int64_t)co * q.taps;
    const int64_t n_blocks = (int64_t)((co + R - 1) / R) * ((q.taps + C - 1) / C);
    Counters cnt;
    int64_t n_pred = 0;
    // With no sample listed, nothing is summed: G = G_msb = 0 for every weight (the update's
    // sign 0), none predicted.
    if (n_samples > 0)
        run_sweep(beta_q > 0 && !one_group(q, pl), pl, wt, xs, gs, xf, gb, head, in, out, x, g_y, samples, n_samples, q, xu,
                  sign, gmsb, part, cnt, y, g_x, cA, cB, cK);
    if (cnt.overflow) return E2T_ERR_OVERFLOW;

    // The decision (beta_q > 0: max |G_msb| is known now) and the sign update of the master
    // weights, one weight per cycle in one loop: sign(G) from the partial sums on chip (a layer
    // of one group) or as the read-out wrote it, sign and predicted flag written for every weight.
    const bool decide = beta_q > 0 && n_samples > 0, on_chip = n_samples > 0 && one_group(q, pl);
    int64_t wmax = 0;
    for (int64_t i = 0; i < nw; i++) {
#pragma HLS PIPELINE II=1
        int8_t sg = n_samples == 0 ? 0 : on_chip ? psg::sign_of((int64_t)part[i].e) : sign[i];
        uint8_t pr = 0;
        const int64_t gm = !decide ? 0 : on_chip ? (int64_t)part[i].m : gmsb[i];
        if (decide && psg::confident(gm, bq, cnt.amax)) {
            sg = psg::sign_of(gm);
            pr = 1;
            n_pred++;
        }
        sign[i] = sg;
        predicted[i] = pr;
        const int64_t w = w_master[i];
        const int64_t decay = psg::asr(w * wd_q + (INT64_C(1) << 29), 30);
        const int64_t v = e2t_clamp(w - (int64_t)lr_q * sg - decay, -kMasterLimit, kMasterLimit);
        w_master[i] = (int32_t)v;
        if (psg::iabs(v) > wmax) wmax = psg::iabs(v);
    }
    E2T_STAGING(9, nw);
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

#ifndef __SYNTHESIS__
namespace {
thread_local Counters<E2T_STAGING_FIELDS> wgrad_counts;
}
void e2t_wgrad_staging_reset() { wgrad_counts.reset(); }
void e2t_wgrad_staging_add(int field, int64_t v) { wgrad_counts.add(field, v); }
extern "C" void e2t_wgrad_staging(int64_t out[E2T_STAGING_FIELDS]) { wgrad_counts.read(out); }
#endif
