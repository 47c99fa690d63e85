// e2t_engine: the one HLS top of the training fabric. The forward, input-gradient and PSG
// weight-gradient passes share one training engine (train_engine_hls, the RTL blackbox with
// its 144 DSP48E1) in time; `op` picks the pass (E2T_OP_* in e2t_kernels.h). One IP, one
// engine: the three passes as three tops would be three IPs, and synthesis would build the
// engine three times (3 x 144 DSP48E1 > the xc7z020's 220).
//
// How the engine stays one instance (e2t_passes.h): the engine is called at one place, in
// e2t_engine_call; the passes (hls/src/conv_*.cpp) are inlined here, so every e2t_engine_call
// site is in this function's scope, where the ALLOCATION pragma below makes them one RTL
// instance (UG1399, "pragma HLS allocation": placed in the body of the function whose
// instances it limits; `function` right after the keyword). The pragma on train_engine_hls
// says the same of the blackbox itself. Every site binds the same engine streams and weight
// tile buffer (declared here once) and the same x, g_y and samples ports.
//
// Interfaces. One s_axilite bundle (control): op, the pointers' offsets and the scalars, in
// argument order (host/e2train/device/kernel_iface.py E2T_ENGINE). Four m_axi bundles, each
// one AXI master, shared by the passes by role (no pass drives two bundles' worth of streams
// on one adapter):
//   gx  x                 the activation stream (forward and weight-gradient stagers)
//   gg  g_y               the output-gradient stream (input-gradient and weight-gradient stagers)
//   gw  w, bias, samples, w_master, sign, predicted, gmsb, stats, b_gb, b_coef, b_sums
//                         weight tiles, the sample list, the weight update and PSG scratch,
//                         the block unit's coefficients and sums
//   gy  y, g_x, b_r, b_gy the result stream (forward and input-gradient output stages)
// (the block unit's ops 3..5 spread their tensors over all four: see the pragmas below)
// A pass uses three of them (fwd: gx gw gy; bwd_data: gg gw gy; wgrad: gx gg gw). The block
// design (fpga/vivado/bd.tcl) gives each bundle its own 64-bit HP port, HP0..HP3: four
// AXI4 -> AXI3 1:1 paths, the four HP ports the Zynq-7000 has (three tops, one per pass,
// would need nine m_axi adapters).
#include "e2t_block.h"
#include "e2t_fixed.h"
#include "e2t_kernels.h"
#include "e2t_passes.h"
#include "train_engine.h"

namespace e2t {
namespace {

// The feeder of the pass that runs (nothing for a flush).
void feed(psg::stream<eng::Beat> &in, uint8_t mode, const Feed &f, const Geometry &q, const int8_t wt[][R], const wgrad::XWord xs[][2 * wgrad::X_WORDS], const wgrad::word_t gs[][2 * wgrad::G_WORDS],
          const uint8_t xf[][fwd::XF_BANKS], const int16_t gb[][bwd::GB_BANKS]) {
    switch (mode) {
        case eng::kFwd: fwd::feed(in, f.fs, xf, wt, q); break;
        case eng::kBwd: bwd::feed(in, f.bs, gb, wt, q); break;
        case eng::kWgrad: wgrad::feed(in, xs, gs, q, f.ws); break;
        default: break;
    }
}

// One column of an engine row, the output stage's one select (an 18:1 select of the row's 18
// columns, every pass through the same one: fpga/fit.py counts one).
struct Column {
    int64_t p, lo, hi;
};
inline Column column_of(const eng::Row &row, int c) {
#pragma HLS INLINE
    return Column{row.p[c], row.lo[c], row.hi[c]};
}

#ifndef __SYNTHESIS__
// The output stage's trips in the counters of the pass whose rows they are.
void count_out(uint8_t kind, int64_t v) {
    if (kind == kOutFwd) e2t_fwd_staging_add(8, v);
    else if (kind == kOutBwd) e2t_bwd_staging_add(8, v);
    else e2t_wgrad_staging_add(8, v);
}
#endif

// The output stage of the pass whose rows the engine emits during this call (none: no rows): per
// row, a trip for its read, then a column a cycle through the one select: the weight gradient adds
// the column's G and G_msb into the group's partial sums (every row; a cell outside the block adds
// nothing) and, on the group's last chunk of positions, where the sums it writes are final, takes
// max |G_msb| into *amax and sets *ovf for a G out of the accumulator's range, in the add's cycle
// (so no loop of its own reads the sums back for them); the input gradient requantises P into g_x; the forward, a position a cycle (two a
// column: acc_lo is position 2c, acc_hi 2c+1), adds the bias (the layer's, in cA), requantises into
// y and, with BN's sums, adds y and y^2 into the row's channel sums (sum y < 2^31 and sum y^2 <
// 2^38 over at most 2^24 positions). Rows outside the layer are read and dropped.
void output_stage(psg::stream<eng::Row> &out, const OutStage &os, const Geometry &q, uint8_t *y, int16_t *g_x,
                  const int32_t cA[], int64_t cB[], int64_t cK[], wgrad::Part part[], int *ovf, uint64_t *amax) {
    if (os.kind == kOutNone) return;
    uint64_t am = *amax;                  // the running max in a register (II=1), written once
    const bool fw = os.kind == kOutFwd, bw = os.kind == kOutBwd;
    const int per_col = fw ? 2 : 1;
    const int64_t yplane = (int64_t)q.ho * q.wo, xplane = (int64_t)q.h * q.wd;
    for (int r = 0; r < R; r++) {
        const eng::Row row = out.read();
        const int ch = fw ? os.co0 + r : os.ci0 + r;      // the row's channel (forward, input gradient)
#ifndef __SYNTHESIS__
        count_out(os.kind, 1);
#endif
        if ((fw && ch >= q.co) || (bw && ch >= q.ci)) continue;
#ifndef __SYNTHESIS__
        count_out(os.kind, (int64_t)C * per_col);
#endif
        const int64_t bias_r = fw ? cA[ch] : 0;
        int64_t s1 = 0, s2 = 0;             // the row's BN sums (locals: y's stores cannot alias them)
        for (int t = 0; t < C * per_col; t++) {
#pragma HLS PIPELINE II=1
            const int c = fw ? t >> 1 : t;
            const Column col = column_of(row, c);
            if (fw) {
                const int i = t;                                  // position 2c + (t & 1)
                if (!os.fb.on[i]) continue;
                const int64_t v = e2t_requant_unit(((t & 1) ? col.hi : col.lo) + bias_r, os.mult_m, os.mult_s,
                                                   os.lo, os.hi, os.acc_limit, ovf);
                y[os.fb.ybase[i] + ch * yplane] = (uint8_t)(v & 0xff);
                if (os.bn) {
                    const int64_t v2 = v * v;      // |v| <= 255: an 8 x 8-bit square in LUTs
#pragma HLS BIND_OP variable=v2 op=mul impl=fabric
                    s1 += v;
                    s2 += v2;
                }
            } else if (bw) {
                if (os.bb.on[c])
                    g_x[os.bb.xbase[c] + ch * xplane] =
                        (int16_t)e2t_requant_unit(col.p, os.mult_m, os.mult_s, os.lo, os.hi, os.acc_limit, ovf);
            } else if (r < os.pl.nr && c < os.pl.nc) {
                const int i = os.g.at(os.pl.o0 + r, os.pl.j0 + c);
                // the group's first chunk writes its sums: the adders' other operand is zero then
                const wgrad::part_exact_t e = (os.pl.first ? (wgrad::part_exact_t)0 : part[i].e) + col.p;
                const wgrad::part_msb_t m = (os.pl.first ? (wgrad::part_msb_t)0 : part[i].m) + col.lo;
                part[i].e = e;
                part[i].m = m;
                if (os.pl.last) {
                    const uint64_t a = (uint64_t)psg::iabs((int64_t)m);
                    if (a > am) am = a;
                    if ((int64_t)e > psg::kAccMax || (int64_t)e < psg::kAccMin) *ovf = 1;
                }
            }
        }
        if (fw && os.bn) {
            cB[ch] += s1;
            cK[ch] += s2;
        }
    }
    *amax = am;
}

}  // namespace
}  // namespace e2t

// The stagers (the next step of the pass that runs: f.job for the weight gradient, f.fj for the
// forward, f.bj for the input gradient; empty ranges for the others) write the half of their
// buffers that the feeder does not read: the buffers are STABLE for this
// region (UG1399, "Stable Arrays": the locations a process reads are not written by another
// process while the region runs, and the ones it writes are not read), so the stagers, the
// feeder, the engine and the output stage (the previous call's rows, emitted by the engine as this
// call's beats stream in) run side by side and a call lasts the longest of the four.
void e2t_engine_call(psg::stream<eng::Head> &head, psg::stream<eng::Beat> &in, psg::stream<eng::Row> &out,
                     uint8_t mode, const e2t::Feed &f, const e2t::Geometry &q, const uint8_t *x, const int16_t *g_y,
                     const int32_t *samples, const int8_t wt[][e2t::R],
                     e2t::wgrad::XWord xs[][2 * e2t::wgrad::X_WORDS], e2t::wgrad::word_t gs[][2 * e2t::wgrad::G_WORDS],
                     uint8_t xf[][e2t::fwd::XF_BANKS], int16_t gb[][e2t::bwd::GB_BANKS], bool xu, bool exact, bool pred,
                     bool clr, uint8_t pred_rows, uint8_t pred_cols, bool emit, const e2t::OutStage &os, uint8_t *y,
                     int16_t *g_x, int32_t cA[], int64_t cB[], int64_t cK[], e2t::wgrad::Part part[], int *ovf,
                     uint64_t *amax) {
#pragma HLS STABLE variable=xs
#pragma HLS STABLE variable=gs
#pragma HLS STABLE variable=xf
#pragma HLS STABLE variable=gb
#pragma HLS DATAFLOW
#ifndef __SYNTHESIS__
    int64_t t0[E2T_STAGING_FIELDS], t1[E2T_STAGING_FIELDS], f0[E2T_STAGING_FIELDS], f1[E2T_STAGING_FIELDS],
        b0[E2T_STAGING_FIELDS], b1[E2T_STAGING_FIELDS];
    e2t_wgrad_staging(t0);
    e2t_fwd_staging(f0);
    e2t_bwd_staging(b0);
#endif
    e2t::wgrad::stage_x(x, samples, q, f.job, xs);
    e2t::wgrad::stage_g(g_y, samples, q, f.job, gs);
    e2t::fwd::stage(x, samples, q, f.fj, xf);
    e2t::bwd::stage(g_y, samples, q, f.bj, gb);
#ifndef __SYNTHESIS__
    e2t_wgrad_staging(t1);
    const int64_t tx = t1[2] - t0[2], tg = t1[3] - t0[3];
    if (tx || tg) {
        e2t_wgrad_staging_add(5, 1);
        e2t_wgrad_staging_add(6, tx > tg ? tx : tg);
    }
    e2t_fwd_staging(f1);
    if (f1[1] > f0[1]) {
        e2t_fwd_staging_add(3, 1);
        e2t_fwd_staging_add(4, f1[1] - f0[1]);
    }
    e2t_bwd_staging(b1);
    if (b1[1] > b0[1]) {
        e2t_bwd_staging_add(3, 1);
        e2t_bwd_staging_add(4, b1[1] - b0[1]);
    }
#endif
    e2t::feed(in, mode, f, q, wt, xs, gs, xf, gb);
    train_engine_hls(head, in, out, mode, xu, exact, pred, clr, clr, pred_rows, pred_cols, emit);
    e2t::output_stage(out, os, q, y, g_x, cA, cB, cK, part, ovf, amax);
}

extern "C" int e2t_engine(int op, const uint8_t *x, const int8_t *w, const int32_t *bias, uint8_t *y,
                          const int16_t *g_y, int16_t *g_x, int32_t *w_master, int8_t *sign, uint8_t *predicted,
                          int32_t *gmsb, int64_t *stats, const int32_t *samples, int n_samples,
                          int n, int ci, int h, int wd, int co, int k, int stride, int pad,
                          int x_unsigned, int has_bias, int relu, int32_t mult_m, int mult_s,
                          int32_t beta_q, int32_t lr_q, int32_t wd_q,
                          const int8_t *b_y, uint8_t *b_o, const uint8_t *b_r, const int16_t *b_ga,
                          const int16_t *b_gb, int16_t *b_gm, int16_t *b_gy, const int64_t *b_coef, int64_t *b_sums,
                          int b_flags, int b_shift, int b_m1, int b_m2, int r_c, int r_h, int r_w, int r_stride,
                          int r_lo, int gb_c, int gb_h, int gb_w, int gb_stride, int gb_lo) {
#pragma HLS INTERFACE m_axi port=x offset=slave bundle=gx max_read_burst_length=256 max_widen_bitwidth=64 depth=1024
#pragma HLS INTERFACE m_axi port=g_y offset=slave bundle=gg max_read_burst_length=256 max_widen_bitwidth=64 depth=1024
#pragma HLS INTERFACE m_axi port=w offset=slave bundle=gw depth=1024
#pragma HLS INTERFACE m_axi port=bias offset=slave bundle=gw depth=64
#pragma HLS INTERFACE m_axi port=samples offset=slave bundle=gw depth=64
#pragma HLS INTERFACE m_axi port=w_master offset=slave bundle=gw depth=1024
#pragma HLS INTERFACE m_axi port=sign offset=slave bundle=gw depth=1024
#pragma HLS INTERFACE m_axi port=predicted offset=slave bundle=gw depth=1024
#pragma HLS INTERFACE m_axi port=gmsb offset=slave bundle=gw depth=1024
#pragma HLS INTERFACE m_axi port=stats offset=slave bundle=gw depth=8
#pragma HLS INTERFACE m_axi port=y offset=slave bundle=gy max_write_burst_length=256 max_widen_bitwidth=64 depth=1024
#pragma HLS INTERFACE m_axi port=g_x offset=slave bundle=gy max_write_burst_length=256 max_widen_bitwidth=64 depth=1024
// The block unit's tensors (ops 3..5), each on the bundle of its role, so that no op streams
// three tensors through one bundle (AXI's read and write channels are separate):
//   bn_act         gx: b_y in, b_o out   gy: b_r in             gw: b_coef, b_sums
//   bn_bwd_reduce  gx: b_y, b_o in       gg: b_ga in, b_gm out  gw: b_gb in, b_sums   gy: b_r in
//   bn_bwd_apply   gx: b_y in            gg: b_gm in            gy: b_gy out          gw: b_coef
#pragma HLS INTERFACE m_axi port=b_y offset=slave bundle=gx max_read_burst_length=256 max_widen_bitwidth=64 depth=1024
#pragma HLS INTERFACE m_axi port=b_o offset=slave bundle=gx max_write_burst_length=256 max_widen_bitwidth=64 depth=1024
#pragma HLS INTERFACE m_axi port=b_ga offset=slave bundle=gg max_read_burst_length=256 max_widen_bitwidth=64 depth=1024
#pragma HLS INTERFACE m_axi port=b_gm offset=slave bundle=gg max_write_burst_length=256 max_widen_bitwidth=64 depth=1024
#pragma HLS INTERFACE m_axi port=b_gb offset=slave bundle=gw max_read_burst_length=256 max_widen_bitwidth=64 depth=1024
#pragma HLS INTERFACE m_axi port=b_coef offset=slave bundle=gw depth=64
#pragma HLS INTERFACE m_axi port=b_sums offset=slave bundle=gw depth=1024
#pragma HLS INTERFACE m_axi port=b_r offset=slave bundle=gy max_read_burst_length=256 max_widen_bitwidth=64 depth=1024
#pragma HLS INTERFACE m_axi port=b_gy offset=slave bundle=gy max_write_burst_length=256 max_widen_bitwidth=64 depth=1024
#pragma HLS INTERFACE s_axilite port=op
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
#pragma HLS INTERFACE s_axilite port=has_bias
#pragma HLS INTERFACE s_axilite port=relu
#pragma HLS INTERFACE s_axilite port=mult_m
#pragma HLS INTERFACE s_axilite port=mult_s
#pragma HLS INTERFACE s_axilite port=beta_q
#pragma HLS INTERFACE s_axilite port=lr_q
#pragma HLS INTERFACE s_axilite port=wd_q
#pragma HLS INTERFACE s_axilite port=b_flags
#pragma HLS INTERFACE s_axilite port=b_shift
#pragma HLS INTERFACE s_axilite port=b_m1
#pragma HLS INTERFACE s_axilite port=b_m2
#pragma HLS INTERFACE s_axilite port=r_c
#pragma HLS INTERFACE s_axilite port=r_h
#pragma HLS INTERFACE s_axilite port=r_w
#pragma HLS INTERFACE s_axilite port=r_stride
#pragma HLS INTERFACE s_axilite port=r_lo
#pragma HLS INTERFACE s_axilite port=gb_c
#pragma HLS INTERFACE s_axilite port=gb_h
#pragma HLS INTERFACE s_axilite port=gb_w
#pragma HLS INTERFACE s_axilite port=gb_stride
#pragma HLS INTERFACE s_axilite port=gb_lo
#pragma HLS INTERFACE s_axilite port=return
#pragma HLS ALLOCATION function instances=e2t_engine_call limit=1
#pragma HLS ALLOCATION function instances=train_engine_hls limit=1
    // The requantisers: E2T_REQUANT_UNITS instances (perfmodel.ENGINE_REQUANT) shared by the conv
    // passes' output stages and the block unit's lanes, which never run at once (UG1399, "pragma
    // HLS allocation": limits the RTL instances of a function in this scope; e2t_requant_unit is
    // INLINE off so that its call sites stay calls).
#pragma HLS ALLOCATION function instances=e2t_requant_unit limit=4
    // The weight tile of the forward and input-gradient passes: one buffer for both.
    E2T_KERNEL_STATIC int8_t wt[e2t::kWeightRows][e2t::R];
#pragma HLS ARRAY_PARTITION variable=wt complete dim=2
    // The weight gradient's chunk buffers (e2t_passes.h, namespace wgrad): a bank a BRAM36 of
    // 512 x 72 (x: 2 halves x 256 words of 9 codes) or two (g: 2 halves x 512 words of 4).
    E2T_KERNEL_STATIC e2t::wgrad::XWord xs[e2t::wgrad::X_BANKS][2 * e2t::wgrad::X_WORDS];
    E2T_KERNEL_STATIC e2t::wgrad::word_t gs[e2t::R][2 * e2t::wgrad::G_WORDS];
#pragma HLS AGGREGATE variable=xs
#pragma HLS ARRAY_PARTITION variable=xs complete dim=1
#pragma HLS ARRAY_PARTITION variable=gs complete dim=1
#pragma HLS BIND_STORAGE variable=xs type=ram_s2p impl=bram
#pragma HLS BIND_STORAGE variable=gs type=ram_s2p impl=bram
    // The forward's x buffer (e2t_passes.h, namespace fwd): 38 byte-wide banks (dimension 2,
    // partitioned) of 2 halves x 1024 entries, a RAMB18 of 2K x 9 each. Entry-major in C, so that
    // a beat's reads lie side by side in the C simulation's cache (bank-major rows 2 KB apart
    // all fell into two cache sets).
    E2T_KERNEL_STATIC uint8_t xf[2 * e2t::fwd::XF_WORDS][e2t::fwd::XF_BANKS];
#pragma HLS ARRAY_PARTITION variable=xf complete dim=2
#pragma HLS BIND_STORAGE variable=xf type=ram_s2p impl=bram
    // The input gradient's g buffer (e2t_passes.h, namespace bwd): 20 int16 banks (dimension 2,
    // partitioned) of 2 halves x 512 entries, a RAMB18 of 1K x 18 each.
    E2T_KERNEL_STATIC int16_t gb[2 * e2t::bwd::GB_WORDS][e2t::bwd::GB_BANKS];
#pragma HLS ARRAY_PARTITION variable=gb complete dim=2
#pragma HLS BIND_STORAGE variable=gb type=ram_s2p impl=bram
    // The engine's streams: one set, as there is one engine (call).
    psg::stream<eng::Head> head;
    psg::stream<eng::Beat> in;
    psg::stream<eng::Row> out;
#pragma HLS STREAM variable=out depth=8   // ROWS result rows wait for the output stage
    // The block unit's per-channel BRAM (a[c] / p[c] or max |g_m|; q[c] or sum g_m*y; b[c] / t[c]
    // or sum g_m): one set for its three ops, loaded once per call. 1024 x (32 + 64 + 64) bits.
    E2T_KERNEL_STATIC int32_t cA[E2T_MAX_DIM];
    E2T_KERNEL_STATIC int64_t cB[E2T_MAX_DIM];
    E2T_KERNEL_STATIC int64_t cK[E2T_MAX_DIM];
#pragma HLS BIND_STORAGE variable=cA type=ram_2p impl=bram
#pragma HLS BIND_STORAGE variable=cB type=ram_2p impl=bram
#pragma HLS BIND_STORAGE variable=cK type=ram_2p impl=bram
    // The weight gradient's partial sums: one 72-bit BRAM word a weight (e2t_passes.h, wgrad::Part).
    E2T_KERNEL_STATIC e2t::wgrad::Part part[e2t::wgrad::PART];
#pragma HLS AGGREGATE variable=part
#pragma HLS BIND_STORAGE variable=part type=ram_2p impl=bram
    switch (op) {
        case E2T_OP_FWD:
            return e2t::fwd_pass(wt, xs, gs, xf, gb, cA, cB, cK, part, head, in, out, x, g_y, w, bias, y, g_x, stats, samples, n_samples, n, ci, h, wd, co,
                                 k, stride, pad, x_unsigned, has_bias, relu, mult_m, mult_s, b_flags);
        case E2T_OP_BWD_DATA:
            return e2t::bwd_data_pass(wt, xs, gs, xf, gb, cA, cB, cK, part, head, in, out, x, g_y, w, y, g_x, samples, n_samples, n, ci, h, wd, co, k,
                                      stride, pad, mult_m, mult_s);
        case E2T_OP_BWD_WEIGHT_PSG:
            return e2t::wgrad_pass(wt, xs, gs, xf, gb, cA, cB, cK, part, head, in, out, x, g_y, y, g_x, w_master, sign, predicted, gmsb, stats, samples,
                                   n_samples, n, ci, h, wd, co, k, stride, pad, x_unsigned, beta_q, lr_q, wd_q);
        case E2T_OP_BN_ACT:
            return e2t::bn_act_pass(cA, cB, cK, b_y, b_o, b_r, b_coef, b_sums, samples, n_samples, n, h, wd, co,
                                    b_flags, b_shift, b_m1, r_c, r_h, r_w, r_stride, r_lo);
        case E2T_OP_BN_BWD_REDUCE:
            return e2t::bn_bwd_reduce_pass(cA, cB, cK, b_y, b_o, b_r, b_ga, b_gb, b_gm, b_sums, samples, n_samples, n,
                                           h, wd, co, b_flags, b_shift, b_m1, b_m2, r_c, r_h, r_w, r_stride, r_lo,
                                           gb_c, gb_h, gb_w, gb_stride, gb_lo);
        case E2T_OP_BN_BWD_APPLY:
            return e2t::bn_bwd_apply_pass(cA, cB, cK, b_y, b_gm, b_gy, b_coef, samples, n_samples, n, h, wd, co,
                                          b_shift);
        default:
            return E2T_ERR_SHAPE;   // no such pass: nothing read, nothing written
    }
}
