// pos_gather.v -- the read side of the forward's and the input gradient's feeders: the banks'
// entries and the positions' codes of one beat. The function of fwd::feed's and bwd::feed's
// column() (hls/src/conv_fwd.cpp, conv_bwd_data.cpp; the layouts in hls/include/e2t_passes.h,
// namespaces fwd and bwd), written as RTL so that yosys can count what it costs (fpga/fit.py);
// the HLS shell builds it from the C++. tests/cocotb/test_pos_gather.py holds it to a model of
// that C++ on random beats, on Icarus and Verilator, at both passes' parameters.
//
// Position i (0 .. NPOS-1) reads bank i + sh at entry base + slot[i] (sh = kx / S in the forward,
// nkx - 1 - b in the input gradient; 0..2). So bank m is read at base | slot[m - sh] (the slot of
// the position that reads it; base is a multiple of the slot count, a power of two: the slot is
// its low bits, no adder), or at base when no position reads it; and the codes are a 3:1 select
// of the banks' words per position, registered. The banks' read data (rdata) is what the entries
// gave (a BRAM's registered output, one cycle later in the shell; here the bench drives it).
`default_nettype none

module pos_gather #(
    parameter integer NPOS = 36,             // positions a beat (the forward's 2*COLS; COLS in the input gradient)
    parameter integer W = 8,                 // code width (x: 8, g: 16)
    parameter integer ABITS = 11             // entry bits of a bank (two halves)
) (
    input  wire                         clk,
    input  wire [1:0]                   sh,          // bank shift of the beat's tap (0..2)
    input  wire [ABITS-1:0]             base,        // the beat's entry base (slot bits zero)
    input  wire [2*NPOS-1:0]            slot,        // position i's slot (0..3) in bits 2i+1..2i
    output wire [(NPOS+2)*ABITS-1:0]    addr,        // bank m's entry
    input  wire [(NPOS+2)*W-1:0]        rdata,       // bank m's word
    output reg  [NPOS*W-1:0]            codes        // position i's code
);
    localparam integer BANKS = NPOS + 2;
    genvar m, i;
    generate
        for (m = 0; m < BANKS; m = m + 1) begin : bank
            // the slots of the positions that may read bank m: m, m - 1, m - 2
            wire [1:0] s0 = (m < NPOS) ? slot[2 * (m < NPOS ? m : 0) +: 2] : 2'd0;
            wire [1:0] s1 = (m >= 1 && m - 1 < NPOS) ? slot[2 * ((m >= 1 && m - 1 < NPOS) ? m - 1 : 0) +: 2] : 2'd0;
            wire [1:0] s2 = (m >= 2 && m - 2 < NPOS) ? slot[2 * ((m >= 2 && m - 2 < NPOS) ? m - 2 : 0) +: 2] : 2'd0;
            wire [1:0] s = (sh == 2'd0) ? s0 : (sh == 2'd1) ? s1 : s2;
            assign addr[ABITS * m +: ABITS] = {base[ABITS-1:2], base[1:0] | s};
        end
        for (i = 0; i < NPOS; i = i + 1) begin : pos
            always @(posedge clk)
                codes[W * i +: W] <= (sh == 2'd0) ? rdata[W * i +: W] :
                                     (sh == 2'd1) ? rdata[W * (i + 1) +: W] : rdata[W * (i + 2) +: W];
        end
    endgenerate
endmodule

`default_nettype wire
