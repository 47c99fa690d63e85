// psg_lanes_hls.v -- psg_lanes with the ports Vitis HLS gives an RTL blackbox whose C function
// is psg_lanes_hls() (hls/include/psg_lanes.h, hls/blackbox/psg_lanes.json):
//   hls::stream<LanesHead> head -> ap_fifo read side:  head_dout, head_empty_n, head_read
//   hls::stream<LanesBeat> in   -> ap_fifo read side:  in_dout, in_empty_n, in_read
//   hls::stream<LanesOut>  out  -> ap_fifo write side: out_din, out_full_n, out_write
//   scalars                     -> ap_none wires, stable for the call
// ap_fifo is valid/ready under other names: empty_n = valid, read = valid & ready,
// full_n = ready, write = valid & ready.
//
// Data layout: the C structs packed field after field, element after element, from bit 0
// (the aggregate packing of Vitis HLS; to be confirmed on the first Vitis run, see docs/rtl.md):
//   LanesHead {uint8_t x_sel[L]; uint8_t g_sel[L]; int64_t g_msb[L]; int64_t g_exact[E];}
//                                                                     80L+64E bits
//   LanesBeat {uint8_t x[XS]; int16_t g[GS]; bool last;}              8XS+16GS+1 bits
//   LanesOut  {int64_t g_msb[L]; int64_t g_exact[E];}                 64L+64E bits
// The accumulators are 48 bits: the upper 16 bits of an initial value are not used (the
// kernel's sums fit 48 bits), results are sign-extended to 64.
`default_nettype none

module psg_lanes_hls #(
    parameter integer LANES = 192,
    parameter integer EXACT_LANES = 48,
    parameter integer XSLOTS = 72,
    parameter integer GSLOTS = 8
) (
    input  wire                             ap_clk,
    input  wire                             ap_rst,
    input  wire                             ap_start,
    output wire                             ap_done,
    output wire                             ap_idle,
    output wire                             ap_ready,
    input  wire                             ap_continue,
    input  wire [80*LANES+64*EXACT_LANES-1:0] head_dout,
    input  wire                             head_empty_n,
    output wire                             head_read,
    input  wire [8*XSLOTS+16*GSLOTS:0]      in_dout,
    input  wire                             in_empty_n,
    output wire                             in_read,
    output wire [64*LANES+64*EXACT_LANES-1:0] out_din,
    input  wire                             out_full_n,
    output wire                             out_write,
    input  wire                             x_unsigned,
    input  wire [15:0]                      n_active,
    input  wire                             msb_en,
    input  wire                             exact_en
);
    localparam integer HB = 16 * LANES;          // head: first bit of g_msb[]
    localparam integer HE = 80 * LANES;          // head: first bit of g_exact[]
    wire                          h_ready, s_ready, m_valid;
    wire [48*LANES-1:0]           h_msb, m_msb;
    wire [48*EXACT_LANES-1:0]     h_exact, m_exact;

    genvar l;
    generate
        for (l = 0; l < LANES; l = l + 1) begin : head_msb
            assign h_msb[48*l +: 48] = head_dout[HB + 64*l +: 48];
            assign out_din[64*l +: 64] = {{16{m_msb[48*l+47]}}, m_msb[48*l +: 48]};
            /* verilator lint_off UNUSEDSIGNAL */
            wire [15:0] unused_top = head_dout[HB + 64*l + 48 +: 16];
            /* verilator lint_on UNUSEDSIGNAL */
        end
        for (l = 0; l < EXACT_LANES; l = l + 1) begin : head_exact
            assign h_exact[48*l +: 48] = head_dout[HE + 64*l +: 48];
            assign out_din[64*LANES + 64*l +: 64] = {{16{m_exact[48*l+47]}}, m_exact[48*l +: 48]};
            /* verilator lint_off UNUSEDSIGNAL */
            wire [15:0] unused_top = head_dout[HE + 64*l + 48 +: 16];
            /* verilator lint_on UNUSEDSIGNAL */
        end
    endgenerate

    psg_lanes #(.LANES(LANES), .EXACT_LANES(EXACT_LANES), .XSLOTS(XSLOTS), .GSLOTS(GSLOTS)) u_lanes (
        .ap_clk(ap_clk), .ap_rst(ap_rst),
        .ap_start(ap_start), .ap_done(ap_done), .ap_idle(ap_idle), .ap_ready(ap_ready),
        .ap_continue(ap_continue),
        .x_unsigned(x_unsigned), .n_active(n_active), .msb_en(msb_en), .exact_en(exact_en),
        .h_valid(head_empty_n), .h_ready(h_ready),
        .h_xsel(head_dout[8*LANES-1:0]), .h_gsel(head_dout[16*LANES-1:8*LANES]),
        .h_msb(h_msb), .h_exact(h_exact),
        .s_valid(in_empty_n), .s_ready(s_ready),
        .s_x(in_dout[8*XSLOTS-1:0]), .s_g(in_dout[8*XSLOTS +: 16*GSLOTS]), .s_last(in_dout[8*XSLOTS+16*GSLOTS]),
        .m_valid(m_valid), .m_ready(out_full_n),
        .m_msb(m_msb), .m_exact(m_exact)
    );
    assign head_read = head_empty_n & h_ready;
    assign in_read = in_empty_n & s_ready;
    assign out_write = m_valid & out_full_n;
endmodule

`default_nettype wire
