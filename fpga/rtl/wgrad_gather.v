// wgrad_gather.v -- the weight gradient's x gather: the words the 18 chunk-buffer banks give
// in one cycle to the column codes of the engine's beat, registered. The function of the
// column half of wgrad::feed (hls/src/conv_bwd_weight_psg.cpp; the layout in
// hls/include/e2t_passes.h), written as RTL so that yosys can count what it costs (fpga/fit.py);
// the HLS shell builds it from the C++. tests/cocotb/test_wgrad_gather.py holds it to a model of
// that C++ on random cycles, on Icarus and Verilator.
//
// Bank b = l + 6u holds, when sel[b], the word of logical bank l (channel parity + 2 * row
// residue); a word is 9 codes, code i in bits 8i+7..8i.
// 3x3 (k3 = 1): column c (cl = c/9, ky = (c%9)/3, kx = c%3) takes code o7 + kx of the word of
//   logical bank cl + 2*((r + ky) mod 3), r being the window's first row's residue. So: per
//   logical bank one of three words (an OR: sel is one-hot or empty), per logical bank the
//   window's 3 codes at o7 (a 7:1 per code), per column one of three windows.
// 1x1 (k3 = 0): cycle t of a beat's nine writes columns 2t and 2t+1 with code o7 of logical
//   banks 2r and 2r+1; the other columns keep their codes.
// A column written with its kernel row outside the image (row_ok) or past the block (col_on)
// takes 0.
`default_nettype none

module wgrad_gather (
    input  wire             clk,
    input  wire             k3,
    input  wire [1:0]       r,          // the window's first row's slot mod 3 (0..2)
    input  wire [2:0]       o7,         // the window's first code in its word (0..6)
    input  wire [3:0]       t,          // 1x1: the cycle of the beat (0..8)
    input  wire [17:0]      sel,        // bank b holds its logical bank's word this cycle
    input  wire [2:0]       row_ok,     // kernel row ky is inside the image
    input  wire [17:0]      col_on,     // column c is inside the block
    input  wire [18*72-1:0] words,      // bank b's word
    output reg  [18*8-1:0]  cols        // column c's code in bits 8c+7..8c
);
    wire [71:0] lw [0:5];
    wire [23:0] win [0:5];
    genvar l, c, i;
    generate
        for (l = 0; l < 6; l = l + 1) begin : g_logical
            assign lw[l] = ({72{sel[l]}} & words[72*l +: 72]) | ({72{sel[l + 6]}} & words[72*(l + 6) +: 72])
                         | ({72{sel[l + 12]}} & words[72*(l + 12) +: 72]);
            for (i = 0; i < 3; i = i + 1) begin : g_code
                assign win[l][8*i +: 8] = lw[l][8*(o7 + i) +: 8];
            end
        end
        for (c = 0; c < 18; c = c + 1) begin : g_col
            localparam integer CL = c / 9, KY = (c % 9) / 3, KX = c % 3, P = c % 2;
            localparam integer T = c / 2;    // the 1x1 cycle that writes this column
            // the logical bank of this column's kernel row: (r + ky) mod 3, r and ky in 0..2
            wire [2:0] rk = {1'b0, r} + KY[2:0];
            wire [1:0] m = (rk >= 3'd3) ? rk[1:0] - 2'd3 : rk[1:0];
            wire [7:0] v3 = (m == 2'd0) ? win[CL][8*KX +: 8] : (m == 2'd1) ? win[CL + 2][8*KX +: 8]
                                                                         : win[CL + 4][8*KX +: 8];
            wire [7:0] v1 = (r == 2'd0) ? win[P][7:0] : (r == 2'd1) ? win[P + 2][7:0] : win[P + 4][7:0];
            wire       we = k3 | (t == T[3:0]);
            wire       on = col_on[c] & (k3 ? row_ok[KY] : row_ok[0]);
            always @(posedge clk) if (we) cols[8*c +: 8] <= on ? (k3 ? v3 : v1) : 8'd0;
        end
    endgenerate
endmodule
