// axil_ctrl.v -- the AXI4-Lite control block of an e2train kernel: the register semantics of
// what Vitis HLS generates for `#pragma HLS INTERFACE s_axilite port=return` and the
// s_axilite scalars (the <top>_control_s_axi.v of an exported IP), written from the register
// map in host/e2train/device/kernel_iface.py and the headers it cites (the x<kernel>_hw.h
// that export_design writes). A TEST FIXTURE standing for HLS-generated logic: the cocotb
// bench of the PYNQ driver (tests/cocotb/tb_kernel_axi.py) runs the driver against it; it is
// not part of the design's resource budget (`make fit` counts the HLS shell by estimate).
//
//   0x00 CTRL   bit 0 ap_start (R/W, set by a write of 1, cleared by the kernel's ap_ready
//               unless auto_restart), bit 1 ap_done (R, clear on read), bit 2 ap_idle (R),
//               bit 3 ap_ready (R, clear on read), bit 7 auto_restart (R/W), bit 9 interrupt (R)
//   0x04 GIER   bit 0 global interrupt enable
//   0x08 IP_IER bit 0 ap_done, bit 1 ap_ready
//   0x0C IP_ISR the same bits, set by the event when enabled, toggled by a write of 1
//   0x10 ap_return, latched when ap_done (read-only); 0x14 reserved
//   FIRST_ARG + 8*i: argument i's data word (R/W, byte strobes); +4 reserved (reads 0)
// interrupt = GIER & |(IP_ISR). One read and one write in flight at a time, responses OKAY,
// addresses word-aligned (the low two bits are ignored), unmapped words read 0.
`default_nettype none

module axil_ctrl #(
    parameter integer N_ARGS = 1,          // argument words (kernel_iface: one per argument)
    parameter integer ADDR_WIDTH = 6,      // C_S_AXI_CONTROL_ADDR_WIDTH
    parameter integer FIRST_ARG = 24       // offset of the first argument (0x18)
) (
    input  wire                    ACLK,
    input  wire                    ARESET,      // synchronous, active high (as HLS's block)
    input  wire [ADDR_WIDTH-1:0]   AWADDR,
    input  wire                    AWVALID,
    output wire                    AWREADY,
    input  wire [31:0]             WDATA,
    input  wire [3:0]              WSTRB,
    input  wire                    WVALID,
    output wire                    WREADY,
    output wire [1:0]              BRESP,
    output wire                    BVALID,
    input  wire                    BREADY,
    input  wire [ADDR_WIDTH-1:0]   ARADDR,
    input  wire                    ARVALID,
    output wire                    ARREADY,
    output wire [31:0]             RDATA,
    output wire [1:0]              RRESP,
    output wire                    RVALID,
    input  wire                    RREADY,
    /* verilator lint_off SYMRSVDWORD */
    output wire                    interrupt,   // the name Vitis HLS gives the port
    /* verilator lint_on SYMRSVDWORD */
    // the kernel's block-level handshake (ap_ctrl_hs) and its arguments
    output wire                    ap_start,
    input  wire                    ap_done,
    input  wire                    ap_ready,
    input  wire                    ap_idle,
    input  wire [31:0]             ap_return,
    output wire [32*N_ARGS-1:0]    args
);
    localparam [31:0] A_CTRL = 32'h00, A_GIE = 32'h04, A_IER = 32'h08, A_ISR = 32'h0C, A_RET = 32'h10;
    localparam [1:0] WR_IDLE = 2'd0, WR_DATA = 2'd1, WR_RESP = 2'd2;
    localparam RD_IDLE = 1'b0, RD_DATA = 1'b1;

    // ---- write channel: address, then data, then response (one at a time)
    reg [1:0]  wstate;
    reg [31:0] waddr;
    wire aw_hs = AWVALID & AWREADY;
    wire w_hs = WVALID & WREADY;
    wire [31:0] wmask = {{8{WSTRB[3]}}, {8{WSTRB[2]}}, {8{WSTRB[1]}}, {8{WSTRB[0]}}};
    assign AWREADY = (wstate == WR_IDLE);
    assign WREADY = (wstate == WR_DATA);
    assign BVALID = (wstate == WR_RESP);
    assign BRESP = 2'b00;
    always @(posedge ACLK) begin
        if (ARESET) begin
            wstate <= WR_IDLE;
            waddr <= 32'd0;
        end else case (wstate)
            WR_IDLE: if (AWVALID) begin
                wstate <= WR_DATA;
                waddr <= {{(32 - ADDR_WIDTH){1'b0}}, AWADDR[ADDR_WIDTH-1:2], 2'b00};
            end
            WR_DATA: if (WVALID) wstate <= WR_RESP;
            WR_RESP: if (BREADY) wstate <= WR_IDLE;
            default: wstate <= WR_IDLE;
        endcase
    end
    /* verilator lint_off UNUSEDSIGNAL */
    wire unused_aw = aw_hs | (|AWADDR[1:0]) | (|ARADDR[1:0]);   // byte offsets within a word
    /* verilator lint_on UNUSEDSIGNAL */
    wire wr_ctrl = w_hs & (waddr == A_CTRL) & WSTRB[0];
    wire wr_isr = w_hs & (waddr == A_ISR) & WSTRB[0];

    // ---- read channel: the data word is registered at the address handshake
    reg        rstate;
    reg [31:0] rdata;
    wire ar_hs = ARVALID & ARREADY;
    wire [31:0] raddr = {{(32 - ADDR_WIDTH){1'b0}}, ARADDR[ADDR_WIDTH-1:2], 2'b00};
    assign ARREADY = (rstate == RD_IDLE);
    assign RVALID = (rstate == RD_DATA);
    assign RDATA = rdata;
    assign RRESP = 2'b00;
    wire rd_ctrl = ar_hs & (raddr == A_CTRL);

    // ---- the control registers
    reg        int_start, int_done, int_idle, int_ready, int_auto_restart, int_gie;
    reg [1:0]  int_ier, int_isr;
    reg [31:0] int_return;
    assign interrupt = int_gie & (|int_isr);
    assign ap_start = int_start;
    always @(posedge ACLK) begin
        if (ARESET) begin
            int_start <= 1'b0;
            int_done <= 1'b0;
            int_idle <= 1'b0;
            int_ready <= 1'b0;
            int_auto_restart <= 1'b0;
            int_gie <= 1'b0;
            int_ier <= 2'b00;
            int_isr <= 2'b00;
            int_return <= 32'd0;
        end else begin
            if (wr_ctrl & WDATA[0]) int_start <= 1'b1;
            else if (ap_ready) int_start <= int_auto_restart;      // clear on handshake
            if (ap_done) int_done <= 1'b1;
            else if (rd_ctrl) int_done <= 1'b0;                     // clear on read
            if (ap_ready) int_ready <= 1'b1;
            else if (rd_ctrl) int_ready <= 1'b0;                    // clear on read
            int_idle <= ap_idle;
            if (wr_ctrl) int_auto_restart <= WDATA[7];
            if (w_hs & (waddr == A_GIE) & WSTRB[0]) int_gie <= WDATA[0];
            if (w_hs & (waddr == A_IER) & WSTRB[0]) int_ier <= WDATA[1:0];
            if (int_ier[0] & ap_done) int_isr[0] <= 1'b1;
            else if (wr_isr) int_isr[0] <= int_isr[0] ^ WDATA[0];  // toggle on write
            if (int_ier[1] & ap_ready) int_isr[1] <= 1'b1;
            else if (wr_isr) int_isr[1] <= int_isr[1] ^ WDATA[1];
            if (ap_done) int_return <= ap_return;
        end
    end

    // ---- the argument words
    reg [31:0] arg_q [0:N_ARGS-1];
    genvar i;
    generate
        for (i = 0; i < N_ARGS; i = i + 1) begin : arg
            localparam [31:0] AT = FIRST_ARG + 8 * i;
            always @(posedge ACLK) begin
                if (ARESET) arg_q[i] <= 32'd0;
                else if (w_hs & (waddr == AT)) arg_q[i] <= (WDATA & wmask) | (arg_q[i] & ~wmask);
            end
            assign args[32 * i +: 32] = arg_q[i];
        end
    endgenerate

    // ---- read data
    integer j;
    always @(posedge ACLK) begin
        if (ARESET) begin
            rstate <= RD_IDLE;
            rdata <= 32'd0;
        end else if (rstate == RD_IDLE) begin
            if (ARVALID) begin
                rstate <= RD_DATA;
                rdata <= 32'd0;
                if (raddr == A_CTRL)
                    rdata <= {22'd0, interrupt, 1'b0, int_auto_restart, 3'b000, int_ready, int_idle, int_done, int_start};
                else if (raddr == A_GIE) rdata <= {31'd0, int_gie};
                else if (raddr == A_IER) rdata <= {30'd0, int_ier};
                else if (raddr == A_ISR) rdata <= {30'd0, int_isr};
                else if (raddr == A_RET) rdata <= int_return;
                for (j = 0; j < N_ARGS; j = j + 1)
                    if (raddr == FIRST_ARG + 8 * j) rdata <= arg_q[j];
            end
        end else if (RREADY) begin
            rstate <= RD_IDLE;
        end
    end
endmodule

`default_nettype wire
