// msb_split.v -- the MSB part of a fixed-point code, rounded half away from zero and clamped
// (fixed-point contract v2, docs/fixed-point.md):
//   h = clamp(sign(v) * ((|v| + 2^(SHIFT-1)) >> SHIFT), lo, hi)
// used for the activation (x: SHIFT 4, x_h in -8..7 for int8, 0..15 for uint8) and for the
// gradient (g: SHIFT 6, g_h in -512..511). Rounding the magnitude makes the split symmetric
// about zero: a code on a tie rounds away from zero on both sides, so the predictor
// G_msb = sum x_h*g_h carries no bias towards +infinity (the v1 rule (v + half) >> SHIFT did).
// The low part (v - 2^SHIFT*h) is not needed here: the engine's exact path multiplies whole
// codes. Pure combinational logic; one instance per operand bus, not per multiplier.
`default_nettype none

module msb_split #(
    parameter integer W = 16,     // input width, two's complement (uint8 goes in as 9 bits)
    parameter integer SHIFT = 6,
    parameter integer HW = 10     // output width, two's complement
) (
    input  wire signed [W-1:0]  v,
    input  wire signed [HW-1:0] lo,   // clamp bounds
    input  wire signed [HW-1:0] hi,
    output wire signed [HW-1:0] h
);
    // |v| fits W bits unsigned (|-2^(W-1)| = 2^(W-1)); the rounded magnitude W+1-SHIFT bits.
    wire [W-1:0] mag = v[W-1] ? (~v + 1'b1) : v;
    /* verilator lint_off UNUSEDSIGNAL */
    wire [W:0]   sum = {1'b0, mag} + ({{W{1'b0}}, 1'b1} << (SHIFT - 1));   // bits below SHIFT dropped
    /* verilator lint_on UNUSEDSIGNAL */
    wire signed [W+1-SHIFT:0] r = {1'b0, sum[W:SHIFT]};
    wire signed [W+1-SHIFT:0] s = v[W-1] ? -r : r;
    wire signed [W+1-SHIFT:0] lo_w = {{(W+2-SHIFT-HW){lo[HW-1]}}, lo};
    wire signed [W+1-SHIFT:0] hi_w = {{(W+2-SHIFT-HW){hi[HW-1]}}, hi};
    wire signed [W+1-SHIFT:0] c = (s > hi_w) ? hi_w : ((s < lo_w) ? lo_w : s);
    /* verilator lint_off UNUSEDSIGNAL */
    wire signed [W+1-SHIFT:0] c_full = c;   // its top bits repeat the sign after the clamp
    /* verilator lint_on UNUSEDSIGNAL */
    assign h = c_full[HW-1:0];
endmodule

`default_nettype wire
