// psg_lane.v -- one lane (one weight) of the PSG weight-gradient engine.
//
// Two accumulators over the (x, g) pairs of a tile:
//   acc_msb   = sum x_h*g_h   the MSB predictor: 5x10-bit product built from shifts and adds,
//                             so that it maps to LUTs/carry chains and never takes a DSP
//   acc_exact = sum x*g       the exact gradient: 9x16-bit product on one DSP48E1, A/B, M
//                             and P registers with clock enables, accumulating in the 48-bit
//                             P register. x*g is 1024*x_h*g_h + 16*x_h*g_l + 64*x_l*g_h +
//                             x_l*g_l, i.e. the predictor plus the three correction terms.
// The exact path runs only where corr_en is set: with it clear the DSP's clock enables
// stay low for the whole tile, so its registers do not toggle (no dynamic power, no work).
//
// Pipeline: stage 1 registers x, g (and splits them); stage 2 registers the products;
// stage 3 adds them into the accumulators. A beat accepted at edge t is in the
// accumulators after edge t+3.
`default_nettype none

module psg_lane (
    input  wire               clk,
    input  wire               rst,        // synchronous, active high
    input  wire               clear,      // start of a tile: zero the accumulators
    input  wire               x_unsigned, // x codes are uint8 (else int8)
    input  wire               corr_en,    // run the exact (correction) path this tile
    input  wire               in_valid,   // a beat is accepted this cycle
    input  wire [7:0]         in_x,
    input  wire [15:0]        in_g,
    output reg  signed [47:0] acc_msb,
    output reg  signed [47:0] acc_exact,
    output wire               corr_active // the exact path is clocked this cycle (for tests)
);
    // ---- stage 1: operand registers (the DSP's A/B registers for the exact path)
    reg               v1, v2, c1, c2;
    reg signed [8:0]  x1;
    reg signed [15:0] g1;
    wire signed [8:0] x_in = {x_unsigned ? 1'b0 : in_x[7], in_x};

    always @(posedge clk) begin
        if (rst || clear) begin
            v1 <= 1'b0;
            c1 <= 1'b0;
        end else begin
            v1 <= in_valid;
            c1 <= in_valid & corr_en;
        end
        if (in_valid) begin
            x1 <= x_in;
            g1 <= in_g;
        end
    end

    // ---- MSB splits by rounding (core/fixedpoint.py msb_split_x / msb_split_g)
    // x_h = min((x + 8) >> 4, top), top = 15 (uint8) or 7 (int8): 5-bit signed.
    // The bits a shift drops, and the redundant sign bit of the clamped x_h, are unused.
    /* verilator lint_off UNUSEDSIGNAL */
    wire signed [9:0] x_r8  = {x1[8], x1} + 10'sd8;
    wire signed [5:0] x_sh  = x_r8[9:4];                  // arithmetic >> 4: -8..16
    wire signed [5:0] x_top = x_unsigned ? 6'sd15 : 6'sd7;
    wire signed [5:0] x_hc  = (x_sh > x_top) ? x_top : x_sh;
    wire signed [4:0] xh    = x_hc[4:0];
    // g_h = clamp((g + 32) >> 6, -512, 511): the sum floors to -512..512, only 512 clamps.
    wire signed [16:0] g_r32 = {g1[15], g1} + 17'sd32;
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

    // ---- stage 2: product registers
    reg signed [14:0] m_msb;
    reg signed [24:0] m_exact;          // the DSP's M register
    always @(posedge clk) begin
        if (rst || clear) begin
            v2 <= 1'b0;
            c2 <= 1'b0;
        end else begin
            v2 <= v1;
            c2 <= c1;
        end
        if (v1) m_msb <= p_msb;
        if (c1) m_exact <= x1 * g1;
    end

    // ---- stage 3: accumulators (48 bits; a tile of at most 2^24 beats cannot overflow them)
    always @(posedge clk) begin
        if (rst || clear) begin
            acc_msb <= 48'sd0;
            acc_exact <= 48'sd0;
        end else begin
            if (v2) acc_msb <= acc_msb + {{33{m_msb[14]}}, m_msb};
            if (c2) acc_exact <= acc_exact + {{23{m_exact[24]}}, m_exact};
        end
    end

    assign corr_active = c1 | c2;
endmodule

`default_nettype wire
