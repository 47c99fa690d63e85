// kernel_axi_top.v -- a TEST FIXTURE: an e2train kernel as the PYNQ driver sees it, for the
// cocotb bench tests/cocotb/tb_kernel_axi.py. Not part of the design (not in `make fit`).
//
//   s_axi_control  AXI4-Lite slave: axil_ctrl.v, the register block Vitis HLS generates
//                  (driven by cocotbext-axi's AxiLiteMaster, on behalf of pynq's MMIO)
//   m_axi_gmem     the kernel's AXI4 master port to DDR (served by cocotbext-axi's AxiRam)
//   shell_gmem_*   the same bus, from the HLS shell's side: the shell (its loops, DMA and
//                  output stage) cannot be simulated without Vitis HLS and is modelled in
//                  Python (tests/cocotb/shell_model.py, cocotbext-axi's AxiMaster); its
//                  bus is wired straight through to m_axi_gmem here
//   ctrl_*         the control block's kernel side (ap_ctrl_hs, ap_return, argument words),
//                  which the shell model drives and reads
//   the rest       train_engine_hls.v, the engine as the kernels' RTL blackbox, its ports
//                  under their own names (the shell model feeds its FIFOs)
`default_nettype none

module kernel_axi_top #(
    parameter integer ROWS = 2,
    parameter integer COLS = 3,
    parameter integer N_ARGS = 53,            // kernel_iface.E2T_ENGINE 2.1: op, 12 pointers, 17 scalars, 9 block
                                              // pointers, 14 block scalars (map 448 bytes)
    parameter integer CTRL_ADDR_WIDTH = 9,
    parameter integer FIRST_ARG = 24
) (
    input  wire                         ap_clk,
    input  wire                         ap_rst_n,
    // ---- s_axi_control
    input  wire [CTRL_ADDR_WIDTH-1:0]   s_axi_control_awaddr,
    input  wire                         s_axi_control_awvalid,
    output wire                         s_axi_control_awready,
    input  wire [31:0]                  s_axi_control_wdata,
    input  wire [3:0]                   s_axi_control_wstrb,
    input  wire                         s_axi_control_wvalid,
    output wire                         s_axi_control_wready,
    output wire [1:0]                   s_axi_control_bresp,
    output wire                         s_axi_control_bvalid,
    input  wire                         s_axi_control_bready,
    input  wire [CTRL_ADDR_WIDTH-1:0]   s_axi_control_araddr,
    input  wire                         s_axi_control_arvalid,
    output wire                         s_axi_control_arready,
    output wire [31:0]                  s_axi_control_rdata,
    output wire [1:0]                   s_axi_control_rresp,
    output wire                         s_axi_control_rvalid,
    input  wire                         s_axi_control_rready,
    /* verilator lint_off SYMRSVDWORD */
    output wire                         interrupt,
    /* verilator lint_on SYMRSVDWORD */
    // ---- control block, kernel side
    output wire                         ctrl_ap_start,
    input  wire                         ctrl_ap_done,
    input  wire                         ctrl_ap_ready,
    input  wire                         ctrl_ap_idle,
    input  wire [31:0]                  ctrl_ap_return,
    output wire [32*N_ARGS-1:0]         ctrl_args,
    // ---- m_axi_gmem (32-bit addresses: config_interface -m_axi_addr64=false; 64-bit data)
    output wire                         m_axi_gmem_awid,
    output wire [31:0]                  m_axi_gmem_awaddr,
    output wire [7:0]                   m_axi_gmem_awlen,
    output wire [2:0]                   m_axi_gmem_awsize,
    output wire [1:0]                   m_axi_gmem_awburst,
    output wire                         m_axi_gmem_awvalid,
    input  wire                         m_axi_gmem_awready,
    output wire [63:0]                  m_axi_gmem_wdata,
    output wire [7:0]                   m_axi_gmem_wstrb,
    output wire                         m_axi_gmem_wlast,
    output wire                         m_axi_gmem_wvalid,
    input  wire                         m_axi_gmem_wready,
    input  wire                         m_axi_gmem_bid,
    input  wire [1:0]                   m_axi_gmem_bresp,
    input  wire                         m_axi_gmem_bvalid,
    output wire                         m_axi_gmem_bready,
    output wire                         m_axi_gmem_arid,
    output wire [31:0]                  m_axi_gmem_araddr,
    output wire [7:0]                   m_axi_gmem_arlen,
    output wire [2:0]                   m_axi_gmem_arsize,
    output wire [1:0]                   m_axi_gmem_arburst,
    output wire                         m_axi_gmem_arvalid,
    input  wire                         m_axi_gmem_arready,
    input  wire                         m_axi_gmem_rid,
    input  wire [63:0]                  m_axi_gmem_rdata,
    input  wire [1:0]                   m_axi_gmem_rresp,
    input  wire                         m_axi_gmem_rlast,
    input  wire                         m_axi_gmem_rvalid,
    output wire                         m_axi_gmem_rready,
    // ---- the shell's side of m_axi_gmem
    input  wire                         shell_gmem_awid,
    input  wire [31:0]                  shell_gmem_awaddr,
    input  wire [7:0]                   shell_gmem_awlen,
    input  wire [2:0]                   shell_gmem_awsize,
    input  wire [1:0]                   shell_gmem_awburst,
    input  wire                         shell_gmem_awvalid,
    output wire                         shell_gmem_awready,
    input  wire [63:0]                  shell_gmem_wdata,
    input  wire [7:0]                   shell_gmem_wstrb,
    input  wire                         shell_gmem_wlast,
    input  wire                         shell_gmem_wvalid,
    output wire                         shell_gmem_wready,
    output wire                         shell_gmem_bid,
    output wire [1:0]                   shell_gmem_bresp,
    output wire                         shell_gmem_bvalid,
    input  wire                         shell_gmem_bready,
    input  wire                         shell_gmem_arid,
    input  wire [31:0]                  shell_gmem_araddr,
    input  wire [7:0]                   shell_gmem_arlen,
    input  wire [2:0]                   shell_gmem_arsize,
    input  wire [1:0]                   shell_gmem_arburst,
    input  wire                         shell_gmem_arvalid,
    output wire                         shell_gmem_arready,
    output wire                         shell_gmem_rid,
    output wire [63:0]                  shell_gmem_rdata,
    output wire [1:0]                   shell_gmem_rresp,
    output wire                         shell_gmem_rlast,
    output wire                         shell_gmem_rvalid,
    input  wire                         shell_gmem_rready,
    // ---- the engine's blackbox ports (train_engine_hls.v)
    input  wire                         ap_start,
    output wire                         ap_done,
    output wire                         ap_idle,
    output wire                         ap_ready,
    input  wire                         ap_continue,
    input  wire [ROWS*COLS-1:0]         head_dout,
    input  wire                         head_empty_n,
    output wire                         head_read,
    input  wire [32*ROWS+24*COLS:0]     in_dout,
    input  wire                         in_empty_n,
    output wire                         in_read,
    output wire [192*COLS-1:0]          out_din,
    input  wire                         out_full_n,
    output wire                         out_write,
    input  wire [7:0]                   mode,
    input  wire                         x_unsigned,
    input  wire                         exact_en,
    input  wire                         pred_en,
    input  wire                         clr_dsp,
    input  wire                         clr_fab,
    input  wire [7:0]                   pred_rows,
    input  wire [7:0]                   pred_cols,
    input  wire                         emit
);
    wire ap_rst = ~ap_rst_n;     // HLS blocks take the inverted AXI reset

    axil_ctrl #(.N_ARGS(N_ARGS), .ADDR_WIDTH(CTRL_ADDR_WIDTH), .FIRST_ARG(FIRST_ARG)) u_ctrl (
        .ACLK(ap_clk), .ARESET(ap_rst),
        .AWADDR(s_axi_control_awaddr), .AWVALID(s_axi_control_awvalid), .AWREADY(s_axi_control_awready),
        .WDATA(s_axi_control_wdata), .WSTRB(s_axi_control_wstrb), .WVALID(s_axi_control_wvalid),
        .WREADY(s_axi_control_wready), .BRESP(s_axi_control_bresp), .BVALID(s_axi_control_bvalid),
        .BREADY(s_axi_control_bready), .ARADDR(s_axi_control_araddr), .ARVALID(s_axi_control_arvalid),
        .ARREADY(s_axi_control_arready), .RDATA(s_axi_control_rdata), .RRESP(s_axi_control_rresp),
        .RVALID(s_axi_control_rvalid), .RREADY(s_axi_control_rready), .interrupt(interrupt),
        .ap_start(ctrl_ap_start), .ap_done(ctrl_ap_done), .ap_ready(ctrl_ap_ready), .ap_idle(ctrl_ap_idle),
        .ap_return(ctrl_ap_return), .args(ctrl_args)
    );

    // the shell's bus, straight through to the kernel's port
    assign m_axi_gmem_awid = shell_gmem_awid;
    assign m_axi_gmem_awaddr = shell_gmem_awaddr;
    assign m_axi_gmem_awlen = shell_gmem_awlen;
    assign m_axi_gmem_awsize = shell_gmem_awsize;
    assign m_axi_gmem_awburst = shell_gmem_awburst;
    assign m_axi_gmem_awvalid = shell_gmem_awvalid;
    assign shell_gmem_awready = m_axi_gmem_awready;
    assign m_axi_gmem_wdata = shell_gmem_wdata;
    assign m_axi_gmem_wstrb = shell_gmem_wstrb;
    assign m_axi_gmem_wlast = shell_gmem_wlast;
    assign m_axi_gmem_wvalid = shell_gmem_wvalid;
    assign shell_gmem_wready = m_axi_gmem_wready;
    assign shell_gmem_bid = m_axi_gmem_bid;
    assign shell_gmem_bresp = m_axi_gmem_bresp;
    assign shell_gmem_bvalid = m_axi_gmem_bvalid;
    assign m_axi_gmem_bready = shell_gmem_bready;
    assign m_axi_gmem_arid = shell_gmem_arid;
    assign m_axi_gmem_araddr = shell_gmem_araddr;
    assign m_axi_gmem_arlen = shell_gmem_arlen;
    assign m_axi_gmem_arsize = shell_gmem_arsize;
    assign m_axi_gmem_arburst = shell_gmem_arburst;
    assign m_axi_gmem_arvalid = shell_gmem_arvalid;
    assign shell_gmem_arready = m_axi_gmem_arready;
    assign shell_gmem_rid = m_axi_gmem_rid;
    assign shell_gmem_rdata = m_axi_gmem_rdata;
    assign shell_gmem_rresp = m_axi_gmem_rresp;
    assign shell_gmem_rlast = m_axi_gmem_rlast;
    assign shell_gmem_rvalid = m_axi_gmem_rvalid;
    assign m_axi_gmem_rready = shell_gmem_rready;

    train_engine_hls #(.ROWS(ROWS), .COLS(COLS)) u_engine (
        .ap_clk(ap_clk), .ap_rst(ap_rst), .ap_start(ap_start), .ap_done(ap_done), .ap_idle(ap_idle),
        .ap_ready(ap_ready), .ap_continue(ap_continue),
        .head_dout(head_dout), .head_empty_n(head_empty_n), .head_read(head_read),
        .in_dout(in_dout), .in_empty_n(in_empty_n), .in_read(in_read),
        .out_din(out_din), .out_full_n(out_full_n), .out_write(out_write),
        .mode(mode), .x_unsigned(x_unsigned), .exact_en(exact_en), .pred_en(pred_en), .clr_dsp(clr_dsp),
        .clr_fab(clr_fab), .pred_rows(pred_rows), .pred_cols(pred_cols), .emit(emit)
    );
endmodule

`default_nettype wire
