// psg_engine_hls.v -- psg_engine with the ports Vitis HLS gives an RTL blackbox whose C
// function is psg_engine_hls() (hls/include/psg_engine.h, hls/blackbox/psg_engine.json):
//   hls::stream<InBeat>  in  -> ap_fifo read side:  in_dout, in_empty_n, in_read
//   hls::stream<OutBeat> out -> ap_fifo write side: out_din, out_full_n, out_write
//   scalars                  -> ap_none wires, stable for the call
// ap_fifo is valid/ready under other names: empty_n = valid, read = valid & ready,
// full_n = ready, write = valid & ready.
//
// Data layout: the C structs packed field after field, element after element, from bit 0
// (the aggregate packing of Vitis HLS; to be confirmed on the first Vitis run, see docs/rtl.md):
//   InBeat  {uint8_t x[L]; int16_t g[L]; bool last;}                      24L+1 bits
//   OutBeat {int64_t g_msb[L]; int8_t sign[L]; uint32_t predicted;
//            uint32_t incomplete; bool overflow;}                         72L+65 bits
`default_nettype none

module psg_engine_hls #(
    parameter integer LANES = 8,
    parameter integer MAX_BEATS_LOG2 = 24
) (
    input  wire                 ap_clk,
    input  wire                 ap_rst,
    input  wire                 ap_start,
    output wire                 ap_done,
    output wire                 ap_idle,
    output wire                 ap_ready,
    input  wire                 ap_continue,
    input  wire [24*LANES:0]    in_dout,
    input  wire                 in_empty_n,
    output wire                 in_read,
    output wire [72*LANES+64:0] out_din,
    input  wire                 out_full_n,
    output wire                 out_write,
    input  wire [7:0]           mode,
    input  wire                 x_unsigned,
    input  wire [31:0]          corr_en,
    input  wire [31:0]          beta_q,
    input  wire [63:0]          gmsb_absmax
);
    wire                  s_ready, m_valid, m_overflow;
    wire [48*LANES-1:0]   m_gmsb;
    wire [2*LANES-1:0]    m_sign;
    wire [LANES-1:0]      m_pred, m_incomplete;

    // Preconditions of the call (C model and golden model alike): beta_q <= 65536 and
    // gmsb_absmax < 2^47, so the upper bits are not used; corr_en bits above LANES are ignored.
    /* verilator lint_off UNUSEDSIGNAL */
    wire [6:0]  unused_mode = mode[7:1];
    wire [14:0] unused_beta = beta_q[31:17];
    wire [15:0] unused_gmax = gmsb_absmax[63:48];
    wire [31:0] unused_corr = corr_en;     // only corr_en[LANES-1:0] reaches the engine
    /* verilator lint_on UNUSEDSIGNAL */

    psg_engine #(.LANES(LANES), .MAX_BEATS_LOG2(MAX_BEATS_LOG2)) u_engine (
        .ap_clk(ap_clk), .ap_rst(ap_rst),
        .ap_start(ap_start), .ap_done(ap_done), .ap_idle(ap_idle), .ap_ready(ap_ready),
        .ap_continue(ap_continue),
        .mode(mode[0]), .x_unsigned(x_unsigned), .corr_en(corr_en[LANES-1:0]),
        .beta_q(beta_q[16:0]), .gmsb_absmax(gmsb_absmax[47:0]),
        .s_valid(in_empty_n), .s_ready(s_ready),
        .s_x(in_dout[8*LANES-1:0]), .s_g(in_dout[24*LANES-1:8*LANES]), .s_last(in_dout[24*LANES]),
        .m_valid(m_valid), .m_ready(out_full_n),
        .m_gmsb(m_gmsb), .m_sign(m_sign), .m_pred(m_pred), .m_incomplete(m_incomplete),
        .m_overflow(m_overflow)
    );
    assign in_read = in_empty_n & s_ready;
    assign out_write = m_valid & out_full_n;

    // OutBeat: G_msb sign-extended to int64, the 2-bit sign to int8, masks to uint32.
    genvar l;
    generate
        for (l = 0; l < LANES; l = l + 1) begin : pack
            assign out_din[64*l +: 64] = {{16{m_gmsb[48*l+47]}}, m_gmsb[48*l +: 48]};
            assign out_din[64*LANES + 8*l +: 8] = {{6{m_sign[2*l+1]}}, m_sign[2*l +: 2]};
        end
    endgenerate
    // (a zero-width replication is not Verilog-2005, hence the two branches)
    wire [31:0] pred32, incomplete32;
    generate
        if (LANES < 32) begin : pad
            assign pred32 = {{(32-LANES){1'b0}}, m_pred};
            assign incomplete32 = {{(32-LANES){1'b0}}, m_incomplete};
        end else begin : full
            assign pred32 = m_pred;
            assign incomplete32 = m_incomplete;
        end
    endgenerate
    assign out_din[72*LANES +: 32] = pred32;
    assign out_din[72*LANES+32 +: 32] = incomplete32;
    assign out_din[72*LANES+64] = m_overflow;
endmodule

`default_nettype wire
