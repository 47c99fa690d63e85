// The three passes of the one HLS top, e2t_engine (hls/src/e2t_engine.cpp), and the one
// function through which every pass calls the training engine.
//
// Why one engine call function: Vitis HLS makes one RTL instance per call site of a
// function, and an ALLOCATION pragma only shares the instances called in the scope it is
// placed in. So the engine (train_engine_hls, the RTL blackbox, 144 DSP48E1) is called at ONE
// place, inside e2t_engine_call (a DATAFLOW region: the pass's operand feeder beside the engine);
// every pass function and its helpers are inlined into the top, so all e2t_engine_call sites
// lie in the top's scope, where `#pragma HLS ALLOCATION function instances=e2t_engine_call
// limit=1` makes them one instance: one engine in the IP. The feeders stay the passes' own
// (defined in hls/src/conv_*.cpp); e2t_engine_call picks one by the engine mode.
#ifndef E2T_PASSES_H
#define E2T_PASSES_H

#include <stdint.h>

#include "e2t_block.h"
#include "e2t_fixed.h"
#include "e2t_shape.h"
#include "e2t_tiles.h"
#include "train_engine.h"

namespace e2t {

constexpr int R = eng::kRows, C = eng::kCols;

// The weight tile buffer the forward and input-gradient passes share (the top holds one):
// [channel * k*k + tap][row], a row per output (forward) or input (input-gradient) channel.
// Each group of tiles loads its weights before its first call, a byte a cycle (the banks are
// the rows: a DDR word holds taps of one row, all for one bank), while the engine waits.
constexpr int kWeightRows = E2T_MAX_TAPS;      // ci*k*k (forward) and co*k*k (input gradient) <= it: e2t_shape_ok

struct Geometry {
    int ci, h, wd, co, k, stride, pad, ho, wo, taps;
};

inline Geometry geometry(int ci, int h, int wd, int co, int k, int stride, int pad) {
    return Geometry{ci, h, wd, co, k, stride, pad, e2t_out_dim(h, k, stride, pad), e2t_out_dim(wd, k, stride, pad),
                    ci * k * k};
}

// The forward's and the input gradient's walk over their steps (hls/src/conv_fwd.cpp,
// conv_bwd_data.cpp): groups of output- (forward) or input-channel (input gradient) tiles whose
// weights fit the weight buffer, the input gradient's phases, their blocks, and per block one step
// read by every tile of the group or, when the block's channels take several steps, per tile its
// channel steps. Where the walk is: group g, phase ph (0 in the forward), block blk, tile tl of
// the group and channel step cs.
struct Walk {
    int ntiles, per_group;
    int g, ph, blk, tl, cs;
};
inline int group_tiles(const Walk &wk) {
    const int g0 = wk.g * wk.per_group;
    return wk.ntiles - g0 < wk.per_group ? wk.ntiles - g0 : wk.per_group;
}
// The block's next (tile, channel step) when its channels take `steps` steps; false (tile and
// step back to 0) when the block is done.
inline bool next_in_block(Walk &wk, int steps) {
    if (steps == 1) return false;
    if (++wk.cs < steps) return true;
    wk.cs = 0;
    if (++wk.tl < group_tiles(wk)) return true;
    wk.tl = 0;
    return false;
}
// A stager's trips for one staged row of rlen codes starting at bank i0: per phase (r % S) the
// aligned windows of `lanes` banks its codes fall in, at least the row's 64-bit DDR words
// (`lanes` codes each: a phase that is never read is still read from DDR).
inline int row_trips(int i0, int rlen, int S, int nph, int lanes) {
    int w = 0;
    for (int ph = 0; ph < nph; ph++) {
        const int n = (rlen - ph + S - 1) / S;          // the phase's codes: banks i0 .. i0 + n - 1
        w += (i0 + n - 1) / lanes - i0 / lanes + 1;
    }
    const int words = (rlen + lanes - 1) / lanes;
    return w > words ? w : words;
}
// The slots of a staged buffer's entries (namespaces fwd and bwd below): segments j and j+m of a
// block share banks only across fewer whole rows of `width` positions than the halo; rounded up
// to 1, 2 or 4, so that an entry is its base and the slot side by side.
inline int entry_slots(int halo, int width) {
    const int need = halo ? 2 + (halo - 1) / width : 1;
    return need <= 1 ? 1 : need <= 2 ? 2 : 4;
}
#ifndef __SYNTHESIS__
// C simulation only: a block's runs of positions with one slot (the feeders copy a run of banks at
// once), and each position's segment (the feeders' read checks).
inline int slot_runs(const uint8_t *slot, int n, int i0[], int len[], int d[]) {
    int runs = 0;
    for (int i = 0; i < n; i++) {
        if (i == 0 || slot[i] != slot[i - 1]) {
            i0[runs] = i;
            len[runs] = 0;
            d[runs++] = slot[i];
        }
        len[runs - 1]++;
    }
    return runs;
}
inline void segment_of(const int *seg_i0, const int *seg_len, int nseg, int out[]) {
    for (int j = 0; j < nseg; j++)
        for (int i = seg_i0[j]; i < seg_i0[j] + seg_len[j]; i++) out[i] = j;
}
#endif

namespace fwd {
// The forward's x buffer (docs/rtl.md, "The forward's x buffer"; engine_map's FWD_* constants are
// the same numbers). A *block* is NPOS = 2*COLS consecutive listed output positions (column c
// holds positions 2c and 2c+1); its *segments* are its runs of positions on one output row of
// one sample (j = 0, 1, ... in order; a middle segment is a whole row of wo positions). A
// *step* is one block's x for a range of input channels, staged in one half of the buffer
// (ping-pong: the stager fills the other half for the next step during the calls that read
// this one). In segment j (first position i_j), relative code r of kernel row ky is
// x[iy = oy_j*S - pad + ky][ix = ox_j*S - pad + r] (0 outside the image), r < S*(len_j - 1) + k;
// it is kept in logical byte bank i_j + r/S, at entry ((u*k + ky)*NPH + r%S)*D + j%D of its
// half (u: the channel relative to the step's first; NPH = min(S, k) phases; D slots).
// Position i of segment j reads, at tap (ky, kx), r = S*(i - i_j) + kx: bank i + kx/S, entry
// ((u*k + ky)*NPH + kx%S)*D + j%D. For one beat the 36 positions read 36 different banks (i +
// kx/S is one-to-one in i), so every bank serves one read a cycle; segments j and j+m share a
// bank only if the m-1 whole rows between them are shorter than the halo (k-1)/S, which
// 2 + ((k-1)/S - 1)/wo slots (1 without a halo) keep apart; D is that rounded up to a power of
// two (1, 2 or 4), so that a bank's entry is its base and the slot side by side (no adder per
// bank: a bank's slot is the one of the position reading it, a 3:1 select by kx/S). XF_BANKS =
// NPOS + 2 covers the halo of the last segment (i + kx/S <= 35 + 2). The stager writes a
// segment's codes of one phase a trip per 8-bank window aligned to 8 (bank m of the window
// always takes lane m % 8: one rotation of the DDR bytes, no crossbar to the banks).
constexpr int NPOS = 2 * C;
constexpr int XF_BANKS = NPOS + 2;            // engine_map.FWD_X_BANKS
constexpr int XF_WORDS = 1024;                // entries of a bank's half (engine_map.FWD_X_WORDS): RAMB18 2K x 9
constexpr int STAGE_CODES = 8;                // a stager trip: an aligned window of 8 banks (a 64-bit DDR word)
// Where a block's positions are: per position its y plane offset and its segment's slot;
// per segment its first position, length, sample (index into the list) and output row and
// column. Positions past the list are off.
struct Block {
    int p0, nseg;
    bool on[NPOS];
    int64_t ybase[NPOS];
    uint8_t slot[NPOS];
    int seg_i0[NPOS], seg_len[NPOS], seg_s[NPOS], seg_oy[NPOS], seg_ox[NPOS];
};
// One step as staged: its half, its block, the channels [c0, c0 + nch) and the slots d.
struct Step {
    int half, c0, nch, d;
    Block b;
};
// What one engine call's stager writes: channels [u0, u1) (relative) of step st. Empty: nothing.
struct Job {
    Step st;
    int u0, u1;
};
// What one call streams: the step it reads, with the weight tile's rows (wrow0: the tile's first
// row in the weight buffer) and the tile's first output channel.
struct Span {
    Step st;
    int wrow0, co0;
};
// The slots D of a layer's entries (see above): what its segments need, rounded up to 1, 2 or 4.
inline int slots(const Geometry &q) { return entry_slots((q.k - 1) / q.stride, q.wo); }
inline int phases(const Geometry &q) { return q.stride < q.k ? q.stride : q.k; }
// Input channels one step can hold: a channel takes k * phases * slots entries of each bank.
inline int step_channels(const Geometry &q) {
    const int per = q.k * phases(q) * slots(q), fit = XF_WORDS / per;
    return fit < q.ci ? fit : q.ci;
}
void place(Block &b, const int32_t *samples, const Geometry &q, int npos, int p0, int d);
void stage(const uint8_t *x, const int32_t *samples, const Geometry &q, const Job &jb, uint8_t xf[][XF_BANKS]);
void feed(psg::stream<eng::Beat> &in, const Span &sp, const uint8_t xf[][XF_BANKS], const int8_t wt[][R],
          const Geometry &q);
}  // namespace fwd

namespace bwd {
// The input gradient's g buffer (docs/rtl.md, "The input gradient's g buffer"; engine_map's
// BWD_G_* constants are the same numbers). The pass runs per phase ((iy + pad) % S, (ix + pad) %
// S): input position (iy, ix) = (fy + S*ty, fx + S*tx) of the phase receives g_y at (oy, ox) =
// (ty + cy - a, tx + cx - b) through the phase's tap (ky, kx) = (py + S*a, px + S*b), with
// cy = (fy + pad - py) / S and cx likewise: within a phase the taps step the output by one, as
// a stride-1 forward does. A *block* is COLS consecutive listed positions of the phase; its
// *segments* are its runs on one phase row (ty) of one sample. A *step* is one block's g of a
// range of output channels, staged in one half of the buffer while the feeder reads the other.
// Segment j (first position i_j, first column tx_j) stages, per output channel u and kernel row
// a, the g_y row oy = ty_j + cy - a from ox = tx_j + cx - (nkx - 1) on: relative code r (0
// outside the output) in bank i_j + r, entry (u*nky + a)*D + j%D. Position i reads, at (a, b),
// bank i + (nkx - 1 - b): the COLS positions of a beat read COLS different banks. Segments share
// a bank only across fewer whole phase rows than the halo nkx - 1, which D slots (2, or 4 for
// one-column phases; 1 without a halo, a power of two) keep apart. GB_BANKS = COLS + 2 covers
// the halo (nkx <= 3). The stager writes a trip per aligned window of GB_STAGE banks (one
// 64-bit DDR word of int16 codes).
constexpr int GB_BANKS = C + 2;               // engine_map.BWD_G_BANKS
constexpr int GB_WORDS = 512;                 // entries of a bank's half (engine_map.BWD_G_WORDS): RAMB18 1K x 18
constexpr int GB_STAGE = 4;                   // a stager trip: an aligned window of 4 banks (a 64-bit DDR word)
// One phase: its first input row/column, how many rows/columns it has per sample, and its taps.
struct Phase {
    int fy, fx, ny, nx, nky, nkx, py, px;
    int taps(int co) const { return co * nky * nkx; }
    int per_sample() const { return ny * nx; }
};
// A block: its COLS positions (g_x address, on), the slot of each, and its segments (first
// position, length, sample index into the list, phase row ty and first phase column tx).
struct Block {
    int q0, nseg;
    bool on[C];
    int64_t xbase[C];
    uint8_t slot[C];
    int seg_i0[C], seg_len[C], seg_s[C], seg_ty[C], seg_tx[C];
};
// One step as staged: its half, phase, block, output channels [o0, o0 + nco) and slots d.
struct Step {
    int half, o0, nco, d;
    Phase ph;
    Block b;
};
// What one engine call's stager writes: output channels [u0, u1) (relative) of step st.
struct Job {
    Step st;
    int u0, u1;
};
// What one call streams: the step it reads, the tile's rows in the weight buffer and its channels.
struct Span {
    Step st;
    int wrow0, ci0;
};
// The slots of a phase's entries (see above): what its segments need, rounded up to 1, 2 or 4.
inline int slots(const Phase &f) { return entry_slots(f.nkx - 1, f.nx); }
// Output channels one step can hold: a channel takes nky * slots entries of each bank's half.
inline int step_channels(const Geometry &q, const Phase &f) {
    const int fit = GB_WORDS / (f.nky * slots(f));
    return fit < q.co ? fit : q.co;
}
void place(Block &b, const int32_t *samples, const Geometry &q, const Phase &f, int n_samples, int q0, int d);
void stage(const int16_t *g_y, const int32_t *samples, const Geometry &q, const Job &jb, int16_t gb[][GB_BANKS]);
void feed(psg::stream<eng::Beat> &in, const Span &sp, const int16_t gb[][GB_BANKS], const int8_t wt[][R],
          const Geometry &q);
}  // namespace bwd

namespace wgrad {
// The chunk buffers (docs/rtl.md, "The weight gradient's chunk buffers"; engine_map's WGRAD_*
// constants are the same numbers). A *step* is one weight group's chunk of CHUNK listed
// positions. Its operands are staged on chip before its calls run, in one half of two
// (ping-pong: the stagers fill the other half for the next step while the feeder reads this
// one, inside the same engine calls):
//   x  the input rows the chunk's positions reach, of the group's input channels, in X_BANKS
//      banks of 72-bit words (9 codes; a BRAM36 of 512 x 72 a bank, 256 words a half). A row
//      `slot` (the step's staged rows in order) of channel cr (relative to the group's first)
//      is stored as nw words of 9 codes at a stride of 7 (word w: staged codes 7w .. 7w+8, the
//      staged index being ix + pad, 0 outside the image), so any 3 neighbouring codes lie in one
//      word. Logical bank L = cr%2 + 2*(slot%3), six of them, each the three banks L, L+6,
//      L+12 in turn: logical word A = ((slot/3)*Q + cr/2)*nw + w (Q = ceil(channels/2)) lies in
//      bank L + 6*(A/256) at word A%256. A 3x3 block's 18 columns are 2 channels x 3 kernel
//      rows x 3 kernel columns (its first column is a multiple of 18, so the channel pair is
//      cr = even, odd), and a beat reads one word of each logical bank: one per (channel, kernel
//      row). A 1x1 block's 18 columns are 18 channels of one row: two a cycle (logical banks
//      (0, slot%3) and (1, slot%3)), nine cycles a beat (X_1X1_CYCLES).
//   g  the output gradient of the group's output channels at the chunk's positions: channel
//      or (relative) in bank or % ROWS, word (or/ROWS)*(CHUNK/4) + p/4, 4 codes a 64-bit
//      word; a beat reads one word of each bank.
constexpr int CHUNK = 256;               // positions per call (engine_map.WGRAD_CHUNK)
constexpr int X_BANKS = 18;              // engine_map.WGRAD_X_BANKS
constexpr int X_WORDS = 256;             // words of a bank's half (engine_map.WGRAD_X_WORDS)
constexpr int X_LOGICAL = 6;             // the logical banks (channel parity x row residue)
constexpr int X_1X1_CYCLES = 9;          // a 1x1 beat's 18 channels, two a cycle (engine_map.WGRAD_1X1_CYCLES)
constexpr int G_ROWS = 64;               // output channels a group stages (engine_map.WGRAD_G_ROWS)
constexpr int G_WORDS = (G_ROWS / R) * (CHUNK / 4);
static_assert(C == X_BANKS && X_BANKS == 3 * X_LOGICAL && C == 2 * X_1X1_CYCLES,
              "18 columns: 2 channels x 9 taps (3x3) or 2 channels a cycle (1x1); 3 banks a logical bank");
static_assert(G_ROWS % R == 0 && CHUNK % 4 == 0, "g words: whole row blocks, 4 positions a word");
struct XWord {
    uint8_t c[9];
};
typedef uint64_t word_t;

// One step as staged: the half it lies in, its positions, the group's channels and rows, and
// the x layout's words a row (nw) and channel pairs (cq = ceil(channels/2)).
struct Step {
    int half, p0, p1, c0, nch, o0, nr, nw, cq;
};
// What one engine call's stagers write: units [xu0, xu1) of the step's x (one input channel
// each) and [gu0, gu1) of its g (one output channel each). Empty ranges: nothing.
struct Job {
    Step st;
    int xu0, xu1, gu0, gu1;
};
// A block of weights (output channels [o0, o0+nr), columns [j0, j0+nc)) over the step's
// positions, read from the step's half.
struct Span {
    int o0, nr, j0, nc;
    Step st;
};

// Input rows [lo, hi] that output rows [a, b] of one sample reach, clipped to the image (never
// empty: every output row's window meets the image, e2t_shape_ok).
inline void in_rows(const Geometry &q, int a, int b, int &lo, int &hi) {
    lo = a * q.stride - q.pad;
    hi = b * q.stride - q.pad + q.k - 1;
    if (lo < 0) lo = 0;
    if (hi > q.h - 1) hi = q.h - 1;
}

void feed(psg::stream<eng::Beat> &in, const XWord xs[][2 * X_WORDS], const word_t gs[][2 * G_WORDS],
          const Geometry &q, const Span &s);
void stage_x(const uint8_t *x, const int32_t *samples, const Geometry &q, const Job &jb, XWord xs[][2 * X_WORDS]);
void stage_g(const int16_t *g_y, const int32_t *samples, const Geometry &q, const Job &jb,
             word_t gs[][2 * G_WORDS]);

constexpr int PART = 36 * 512;           // partial sums on chip (engine_map.WGRAD_PART_WEIGHTS)
// A weight's partial sums, one 72-bit BRAM word (AGGREGATE, in the top): the exact sum in 41 bits
// and G_msb in 31, in range because the pass takes at most E2T_MAX_WGRAD_CALL_TERMS positions
// (|x*g| < 2^23 and |x_h*g_h| < 2^13 a term; static_asserts in conv_bwd_weight_psg.cpp). The C
// simulation keeps them in int64, the same values.
#ifdef E2T_HAVE_AP_INT
typedef ap_int<41> part_exact_t;
typedef ap_int<31> part_msb_t;
#else
typedef int64_t part_exact_t;
typedef int64_t part_msb_t;
#endif
struct Part {
    part_exact_t e;
    part_msb_t m;
};
// A weight group: output channels [o0, o1), columns (ci*k*k index) [j0, j1).
struct Group {
    int o0, o1, j0, j1;
    int at(int o, int j) const { return (o - o0) * (j1 - j0) + (j - j0); }
};
// A call's block (the engine returns its rows one call later). first: the call sums its group's
// first chunk of positions, so the output stage writes the block's partial sums instead of adding
// into them (no loop clears them before the group's calls).
struct Placed {
    int o0, j0, nr, nc;
    bool first;     // the group's first chunk of positions: its adds write the partial sums
    bool last;      // its last: the sums are final, their max |G_msb| and range check are taken
};
}  // namespace wgrad


// What one engine call streams: the placement of the pass that runs (the others' are unused),
// and what its stagers write (the next step of the pass that runs).
struct Feed {
    fwd::Span fs;
    fwd::Job fj;
    bwd::Span bs;
    bwd::Job bj;
    wgrad::Span ws;
    wgrad::Job job;
};

// The output stage of one engine call: the process beside its feeder and the engine
// (e2t_engine_call) that takes the rows the engine emits during the call (the previous call's:
// the engine holds a call's sums until the next call) and does with them what their pass does,
// while the call runs. kind: whose rows they are (kOutNone: the call emits none).
enum OutKind : uint8_t { kOutNone = 0, kOutFwd = 1, kOutBwd = 2, kOutWgrad = 3 };
struct OutStage {
    uint8_t kind;
    int32_t mult_m;               // forward and input gradient: the requantiser,
    int mult_s;
    int64_t lo, hi, acc_limit;    // the codes' bounds (the forward's ReLU) and the sums' limit
    fwd::Block fb;                // forward: the (block, tile) the rows are; BN sums or not
    int co0;
    bool bn;
    bwd::Block bb;                // input gradient: the (block, tile)
    int ci0;
    wgrad::Placed pl;             // weight gradient: the block, added into its group's partial sums
    wgrad::Group g;
};
// A pass's output stage, no rows yet, with its requantiser (the forward's and input gradient's).
inline OutStage out_stage(int32_t mult_m, int mult_s, int64_t lo, int64_t hi, int64_t acc_limit) {
    OutStage os = {};
    os.mult_m = mult_m;
    os.mult_s = mult_s;
    os.lo = lo;
    os.hi = hi;
    os.acc_limit = acc_limit;
    return os;
}


// The passes (hls/src/conv_fwd.cpp, conv_bwd_data.cpp, conv_bwd_weight_psg.cpp): the
// arguments of e2t_engine each one reads, the top's weight tile buffer and its chunk buffers
// (only the weight gradient uses them; every pass hands them to the one engine call). Each is inlined
// into the top. Every pass takes both stream pointers (x, g_y) and hands them and samples to
// e2t_engine_call unchanged, so that every call site of the shared engine call binds the same
// top-level ports (a pass's feeder reads only its own).
// Engine streams: the top's (one set, as the engine call is one).
// Every pass also takes the output stages' ports and arrays (y, g_x, the block unit's cA, cB, cK
// and the weight gradient's partial sums) and hands them to e2t_engine_call, for the same reason.
int fwd_pass(int8_t wt[][R], wgrad::XWord xs[][2 * wgrad::X_WORDS], wgrad::word_t gs[][2 * wgrad::G_WORDS],
             uint8_t xf[][fwd::XF_BANKS], int16_t gb[][bwd::GB_BANKS], int32_t cA[], int64_t s1[], int64_t s2[],
             wgrad::Part part[], psg::stream<eng::Head> &head, psg::stream<eng::Beat> &in, psg::stream<eng::Row> &out,
             const uint8_t *x, const int16_t *g_y, const int8_t *w, const int32_t *bias, uint8_t *y, int16_t *g_x,
             int64_t *stats,
             const int32_t *samples, int n_samples, int n, int ci, int h, int wd, int co, int k, int stride, int pad,
             int x_unsigned, int has_bias, int relu, int32_t mult_m, int mult_s, int b_flags);
int bwd_data_pass(int8_t wt[][R], wgrad::XWord xs[][2 * wgrad::X_WORDS], wgrad::word_t gs[][2 * wgrad::G_WORDS],
                  uint8_t xf[][fwd::XF_BANKS], int16_t gb[][bwd::GB_BANKS], int32_t cA[], int64_t cB[],
                  int64_t cK[], wgrad::Part part[],
                  psg::stream<eng::Head> &head, psg::stream<eng::Beat> &in, psg::stream<eng::Row> &out,
                  const uint8_t *x, const int16_t *g_y, const int8_t *w, uint8_t *y, int16_t *g_x, const int32_t *samples,
                  int n_samples, int n, int ci, int h, int wd, int co, int k, int stride, int pad, int32_t mult_m,
                  int mult_s);
int wgrad_pass(int8_t wt[][R], wgrad::XWord xs[][2 * wgrad::X_WORDS], wgrad::word_t gs[][2 * wgrad::G_WORDS],
               uint8_t xf[][fwd::XF_BANKS], int16_t gb[][bwd::GB_BANKS], int32_t cA[], int64_t cB[], int64_t cK[],
               wgrad::Part part[],
               psg::stream<eng::Head> &head, psg::stream<eng::Beat> &in, psg::stream<eng::Row> &out,
               const uint8_t *x, const int16_t *g_y, uint8_t *y, int16_t *g_x, int32_t *w_master, int8_t *sign,
               uint8_t *predicted, int32_t *gmsb, int64_t *stats, const int32_t *samples, int n_samples, int n,
               int ci, int h, int wd, int co, int k, int stride, int pad, int x_unsigned, int32_t beta_q,
               int32_t lr_q, int32_t wd_q);

}  // namespace e2t

#ifndef __SYNTHESIS__
// Fields of each pass's staging counters (below): arrays that read them hold this many.
#define E2T_STAGING_FIELDS 10
// One of the C simulation's counter sets (N fields), one per thread as the buffers are.
template <int N> struct Counters {
    int64_t v[N] = {};
    void reset() {
        for (int i = 0; i < N; i++) v[i] = 0;
    }
    void add(int field, int64_t d) { v[field] += d; }
    void read(int64_t out[]) const {
        for (int i = 0; i < N; i++) out[i] = v[i];
    }
};
// The chunk buffers' traffic since the last weight-gradient pass began (C simulation only, for
// the model's test, tests/kernels/test_wgrad_staging.py): [0] x bytes and [1] g bytes read
// from DDR; [2] x and [3] g stager loop trips in all; [4] the prologue's (the first step,
// staged before any call) larger of its x and g trips; [5] engine calls that staged; [6] the
// sum over engine calls of the larger of the call's x and g trips (the stagers' time inside
// the calls); [7] column reads whose bank held another word (0: the layout's argument above);
// [8] the output stage's trips (beside the calls: a row read, a column a cycle); [9] the loops outside the calls,
// a weight a trip: the groups' partial sums read out, the update (and, with no sample, the
// zeroed signs). No loop clears the partial sums: a group's first chunk writes them (Placed).
void e2t_wgrad_staging_reset();
void e2t_wgrad_staging_add(int field, int64_t v);
extern "C" void e2t_wgrad_staging(int64_t out[E2T_STAGING_FIELDS]);
// The forward's x buffer traffic since the last forward pass began (C simulation only, for the
// model's test, tests/kernels/test_fwd_staging.py): [0] x bytes read from DDR (the in-image codes
// of the staged row spans); [1] stager loop trips in all; [2] the prologue's (the first step,
// staged before any call); [3] engine calls that staged; [4] the sum over engine calls of their
// stager trips; [5] position reads that found another segment's or step's code (0: the
// layout's argument, namespace fwd); [6] the weight loader's loop trips (the groups' weights
// into wt, before their first call: the engine waits); [7] the per-channel loops' cycles (their
// trips times their II: the bias into cA and the BN sums cleared, the sums written out); [8] the
// output stage's trips (beside the calls: a row read, a position a cycle); [9] unused.
void e2t_fwd_staging_reset();
void e2t_fwd_staging_add(int field, int64_t v);
extern "C" void e2t_fwd_staging(int64_t out[E2T_STAGING_FIELDS]);
// The input gradient's g buffer traffic since the last input-gradient pass began (C simulation
// only, tests/kernels/test_bwd_staging.py), the same fields as e2t_fwd_staging (bytes of g; no
// per-channel loops) but [9]: the zeros written outside the calls to the positions of phases
// without taps (k = 1, stride 2), a position of a channel a trip.
void e2t_bwd_staging_reset();
void e2t_bwd_staging_add(int field, int64_t v);
extern "C" void e2t_bwd_staging(int64_t out[E2T_STAGING_FIELDS]);
// A pass's first step, staged before its first call: `call` (a stage() call) with its trips (what
// it adds to field 1 of the counters `read` returns) recorded as the prologue (field 2).
#define E2T_COUNTED_PROLOGUE(read, add, call) \
    do {                                       \
        int64_t before_[E2T_STAGING_FIELDS], after_[E2T_STAGING_FIELDS]; \
        read(before_);                         \
        call;                                  \
        read(after_);                          \
        add(2, after_[1] - before_[1]);        \
    } while (0)
// Whether the forward's and the input gradient's feeders check every read against their stagers'
// record of what they wrote ([5] above) and run the trip loops Vitis HLS builds; off unless a test
// turns it on (it triples the C simulation's time). Per thread, as the buffers are.
extern "C" void e2t_staging_check(int on);
extern thread_local bool e2t_staging_checks;
#else
#define E2T_COUNTED_PROLOGUE(read, add, call) call
#endif

// One engine call: the feeder of `mode` streams the beats while the engine consumes them and the
// output stage `os` takes the rows the engine emits (in hardware concurrently, a DATAFLOW region,
// so the FIFOs stay shallow; in C simulation one after the other through the streams). mode kFlush streams nothing: the
// engine only emits the previous call's rows (clr false: a flush clears nothing). Every
// argument is a caller's value (no statement between the DATAFLOW processes). Defined in
// hls/src/e2t_engine.cpp.
void e2t_engine_call(psg::stream<eng::Head> &head, psg::stream<eng::Beat> &in, psg::stream<eng::Row> &out,
                 uint8_t mode, const e2t::Feed &f, const e2t::Geometry &q, const uint8_t *x, const int16_t *g_y,
                 const int32_t *samples, const int8_t wt[][e2t::R], e2t::wgrad::XWord xs[][2 * e2t::wgrad::X_WORDS],
                 e2t::wgrad::word_t gs[][2 * e2t::wgrad::G_WORDS], uint8_t xf[][e2t::fwd::XF_BANKS], int16_t gb[][e2t::bwd::GB_BANKS], bool xu, bool exact, bool pred, bool clr,
                 uint8_t pred_rows, uint8_t pred_cols, bool emit, const e2t::OutStage &os, uint8_t *y, int16_t *g_x,
                 int32_t cA[], int64_t cB[], int64_t cK[], e2t::wgrad::Part part[], int *ovf, uint64_t *amax);

#endif
