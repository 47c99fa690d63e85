// psg_lane.v -- one lane (one weight) of the PSG weight-gradient datapath of the kernel's lane
// array (psg_lanes.v).
//
// Two accumulators over the (x, g) pairs of a tile or round:
//   acc_msb   = sum x_h*g_h   the MSB predictor: 5x10-bit product built from shifts and adds,
//                             so that it maps to LUTs/carry chains and never takes a DSP
//   acc_exact = sum x*g       the exact gradient: 9x16-bit product on one DSP48E1, A/B, M
//                             and P registers with clock enables, accumulating in the 48-bit
//                             P register. x*g is 1024*x_h*g_h + 16*x_h*g_l + 64*x_l*g_h +
//                             x_l*g_l, i.e. the predictor plus the three correction terms.
// Each path runs only where its enable is set (msb_en, corr_en, held for the tile): with it
// clear its clock enables stay low, so its registers do not toggle (no dynamic power, no
// work). HAS_EXACT = 0 leaves the exact path out altogether (no DSP; acc_exact reads 0).
// load (the start of a tile) sets the accumulators to init_msb / init_exact: the engine
// passes 0, the lane array the partial sums of the weight so far.
//
// Pipeline: stage 1 registers x, g (and splits them); stage 2 registers the products;
// stage 3 adds them into the accumulators. A beat taken at clock edge t (in_valid high in the
// cycle before it) is in the accumulators after edge t+2.
`default_nettype none

module psg_lane #(
    parameter integer HAS_EXACT = 1
) (
    input  wire               clk,
    input  wire               rst,        // synchronous, active high
    input  wire               load,       // start of a tile: accumulators <= init_*
    input  wire signed [47:0] init_msb,
    input  wire signed [47:0] init_exact,
    input  wire               x_unsigned, // x codes are uint8 (else int8)
    input  wire               msb_en,     // run the predictor path this tile
    input  wire               corr_en,    // run the exact (correction) path this tile
    input  wire               in_valid,   // a beat is accepted this cycle
    input  wire [7:0]         in_x,
    input  wire [15:0]        in_g,
    output reg  signed [47:0] acc_msb,
    output wire signed [47:0] acc_exact,
    output wire               corr_active, // the exact path is clocked this cycle (for tests)
    output wire               busy         // any path is clocked this cycle (for tests)
);
    // ---- stage 1: operand registers (the DSP's A/B registers for the exact path)
    reg               v1, v2, c1, c2;
    reg signed [8:0]  x1;
    reg signed [15:0] g1;
    wire signed [8:0] x_in = {x_unsigned ? 1'b0 : in_x[7], in_x};

    always @(posedge clk) begin
        if (rst || load) begin
            v1 <= 1'b0;
            c1 <= 1'b0;
        end else begin
            v1 <= in_valid & msb_en;
            c1 <= in_valid & corr_en & (HAS_EXACT != 0);
        end
        if (in_valid & (msb_en | corr_en)) begin
            x1 <= x_in;
            g1 <= in_g;
        end
    end

    // ---- MSB splits by rounding, ties away from zero (contract v2; core/fixedpoint.py
    // msb_split_x / msb_split_g). sign(v)*((|v| + 2^(k-1)) >> k) equals
    // (v + 2^(k-1) - [v < 0]) >> k: a negative tie then floors away from zero, every other
    // value rounds as before, so the rule costs one carry-in, not an absolute value.
    // x_h = min(round(x / 16), top), top = 15 (uint8) or 7 (int8): 5-bit signed.
    // The bits a shift drops, and the redundant sign bit of the clamped x_h, are unused.
    /* verilator lint_off UNUSEDSIGNAL */
    wire signed [9:0] x_r8  = {x1[8], x1} + (x1[8] ? 10'sd7 : 10'sd8);
    wire signed [5:0] x_sh  = x_r8[9:4];                  // arithmetic >> 4: -8..16
    wire signed [5:0] x_top = x_unsigned ? 6'sd15 : 6'sd7;
    wire signed [5:0] x_hc  = (x_sh > x_top) ? x_top : x_sh;
    wire signed [4:0] xh    = x_hc[4:0];
    // g_h = clamp(round(g / 64), -512, 511): the sum floors to -512..512, only 512 clamps.
    wire signed [16:0] g_r32 = {g1[15], g1} + (g1[15] ? 17'sd31 : 17'sd32);
    wire signed [10:0] g_sh  = g_r32[16:6];
    /* verilator lint_on UNUSEDSIGNAL */
    wire signed [9:0]  gh    = (g_sh > 11'sd511) ? 10'sd511 : g_sh[9:0];

    // ---- predictor product x_h*g_h as shift-and-add (LUTs, not a DSP)
    wire signed [14:0] gh_w = {{5{gh[9]}}, gh};
    wire signed [14:0] pp0 = xh[0] ? gh_w         : 15'sd0;
    wire signed [14:0] pp1 = xh[1] ? (gh_w <<< 1) : 15'sd0;
    wire signed [14:0] pp2 = xh[2] ? (gh_w <<< 2) : 15'sd0;
    wire signed [14:0] pp3 = xh[3] ? (gh_w <<< 3) : 15'sd0;
    wire signed [14:0] pp4 = xh[4] ? (gh_w <<< 4) : 15'sd0;   // sign bit of x_h: weight -16
    wire signed [14:0] p_msb = pp0 + pp1 + pp2 + pp3 - pp4;

    // ---- stage 2: product register of the predictor; stage 3: its accumulator
    // (48 bits; a tile of at most 2^24 beats cannot overflow it)
    reg signed [14:0] m_msb;
    always @(posedge clk) begin
        if (rst || load) begin
            v2 <= 1'b0;
            c2 <= 1'b0;
        end else begin
            v2 <= v1;
            c2 <= c1;
        end
        if (v1) m_msb <= p_msb;
    end
    always @(posedge clk) begin
        if (rst) acc_msb <= 48'sd0;
        else if (load) acc_msb <= init_msb;
        else if (v2) acc_msb <= acc_msb + {{33{m_msb[14]}}, m_msb};
    end

    // ---- the exact path: x1 * g1 into the DSP's M register, P accumulates
    generate
        if (HAS_EXACT != 0) begin : exact
            reg signed [24:0] m_exact;
            reg signed [47:0] acc;
            always @(posedge clk) begin
                if (c1) m_exact <= x1 * g1;
                if (rst) acc <= 48'sd0;
                else if (load) acc <= init_exact;
                else if (c2) acc <= acc + {{23{m_exact[24]}}, m_exact};
            end
            assign acc_exact = acc;
        end else begin : no_exact
            assign acc_exact = 48'sd0;
            // init_exact has no register to load here
            /* verilator lint_off UNUSEDSIGNAL */
            wire [47:0] unused_init = init_exact;
            /* verilator lint_on UNUSEDSIGNAL */
        end
    endgenerate

    assign corr_active = c1 | c2;
    assign busy = v1 | v2 | c1 | c2;
endmodule

`default_nettype wire
