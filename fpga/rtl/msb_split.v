// msb_split.v -- the MSB part of a fixed-point code, rounded half away from zero and clamped
// (fixed-point contract v2, docs/fixed-point.md):
//   h = clamp(sign(v) * ((|v| + 2^(SHIFT-1)) >> SHIFT), lo, hi)
// used for the activation (x: SHIFT 4, x_h in -8..7 for int8, 0..15 for uint8) and for the
// gradient (g: SHIFT 6, g_h in -512..511). Rounding the magnitude makes the split symmetric
// about zero: a code on a tie rounds away from zero on both sides, so the predictor
// G_msb = sum x_h*g_h carries no bias towards +infinity (the v1 rule (v + half) >> SHIFT did).
// The low part (v - 2^SHIFT*h) is not needed here: the engine's exact path multiplies whole
// codes. Pure combinational logic; one instance per operand bus, not per multiplier.
//
// One adder, not |v|, round, negate: with half = 2^(SHIFT-1), for v >= 0 the rule is
// (v + half) >> SHIFT, and for v < 0 it is -((-v + half) >> SHIFT) = ceil((v - half) / 2^SHIFT)
// = (v + half - 1) >>> SHIFT (ceil(n / m) = floor((n + m - 1) / m)). Both are
// (v + half - 1 + [v >= 0]) >>> SHIFT: one add whose carry-in is the inverted sign bit, written
// as {v, ~sign} + {half - 1, 1} so that it maps to one carry chain. The clamp's two compares
// then run side by side. (Magnitude, round, negate and clamp in series were up to four carry
// chains, the longest path of the engine on the ECP5 timing proxy; docs/rtl.md.)
// test_msb_split.py checks every int16 g and every uint8 and int8 x code against the rule.
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
    localparam [W:0] HALF_M1 = ({{W{1'b0}}, 1'b1} << (SHIFT - 1)) - 1'b1;
    // v + half - 1 + [v >= 0], W+1 bits (no overflow: |v| <= 2^(W-1), half - 1 + 1 < 2^(W-1))
    /* verilator lint_off UNUSEDSIGNAL */
    wire [W+1:0] sum2 = {v[W-1], v, ~v[W-1]} + {HALF_M1, 1'b1};
    /* verilator lint_on UNUSEDSIGNAL */
    wire signed [W-SHIFT:0] s = sum2[W+1:SHIFT+1];      // the sum >>> SHIFT (bits below dropped)
    wire signed [W-SHIFT:0] lo_w = {{(W+1-SHIFT-HW){lo[HW-1]}}, lo};
    wire signed [W-SHIFT:0] hi_w = {{(W+1-SHIFT-HW){hi[HW-1]}}, hi};
    wire signed [W-SHIFT:0] c = (s > hi_w) ? hi_w : ((s < lo_w) ? lo_w : s);
    /* verilator lint_off UNUSEDSIGNAL */
    wire signed [W-SHIFT:0] c_full = c;   // its top bits repeat the sign after the clamp
    /* verilator lint_on UNUSEDSIGNAL */
    assign h = c_full[HW-1:0];
endmodule

`default_nettype wire
