// psg_lanes.v -- the lane array of the conv_bwd_weight_psg kernel: one *round* per call.
//
// The kernel (hls/src/conv_bwd_weight_psg.cpp, round_pass) replays a staged chunk of x and g
// once per round. Per beat (one output position) it sends the *window*: the x code of every
// (input channel, tap) slot of the block (XSLOTS = TILE_CI*9) and the g of every output
// channel (GSLOTS = TILE_CO). Each lane l is one weight of the block: it picks x_sel[l] and
// g_sel[l] from the window (a mux in front of the lane) and accumulates, in psg_lane.v:
//   acc_msb   += x_h*g_h    every lane (LUT predictor)           where msb_en
//   acc_exact += x*g        lanes 0..EXACT_LANES-1 (one DSP48E1)  where exact_en
// Lanes l >= n_active are gated off for the round: no clock enable of theirs rises, and
// they output their initial values unchanged. Lanes >= EXACT_LANES have no exact path.
// Arithmetic: host/e2train/core/golden.py (wgrad_terms) and the C model psg::lanes_round in
// hls/include/psg_lanes.h, bit for bit. Protocol and timing: docs/rtl.md.
//
// A call (Vitis HLS block protocol, ap_ctrl_chain; tie ap_continue high for ap_ctrl_hs):
//   ap_start sampled in the idle state registers the arguments (x_unsigned, n_active,
//   msb_en, exact_en; ap_ready that cycle). Then one *head* beat (h_*): the lanes' selects and
//   initial accumulators (the weight's partial sums from the chunks before: a block spans
//   several chunks, so rounds accumulate onto what the kernel passes in). Then window beats
//   on s_* up to the one with s_last, one per clock at full rate; then one result beat on
//   m_* (each lane's 48-bit sums), and ap_done (held until ap_continue).
//   Cycles from the ap_start cycle to the result beat, both counted: beats + 5 at full rate
//   (start 1, head 1, drain 2, out 1); ap_done follows.
// Preconditions (the kernel's): x_sel < XSLOTS and g_sel < GSLOTS (others select 0), and
//   |init| + beats*2^23 < 2^47 (the kernel's blocks have at most 2^24 beats in all).
// Reset: ap_rst, synchronous, active high; it abandons a round in flight, with no output.
`default_nettype none

module psg_lanes #(
    parameter integer LANES = 192,
    parameter integer EXACT_LANES = 48,
    parameter integer XSLOTS = 72,
    parameter integer GSLOTS = 8
) (
    input  wire                      ap_clk,
    input  wire                      ap_rst,
    input  wire                      ap_start,
    output wire                      ap_done,
    output wire                      ap_idle,
    output wire                      ap_ready,
    input  wire                      ap_continue,
    // call arguments (ap_none wires, sampled at ap_start)
    input  wire                      x_unsigned,  // x codes are uint8 (else int8)
    input  wire [15:0]               n_active,    // lanes 0..n_active-1 run this round
    input  wire                      msb_en,      // the predictor path runs
    input  wire                      exact_en,    // the exact path runs (lanes < EXACT_LANES)
    // head: one beat per call
    input  wire                      h_valid,
    output wire                      h_ready,
    input  wire [8*LANES-1:0]        h_xsel,      // lane l in [8l+7:8l]: window x slot
    input  wire [8*LANES-1:0]        h_gsel,      // lane l: window g slot
    input  wire [48*LANES-1:0]       h_msb,       // initial G_msb per lane
    input  wire [48*EXACT_LANES-1:0] h_exact,     // initial G per exact lane
    // window stream: one beat per output position
    input  wire                      s_valid,
    output wire                      s_ready,
    input  wire [8*XSLOTS-1:0]       s_x,         // slot i in [8i+7:8i]
    input  wire [16*GSLOTS-1:0]      s_g,         // slot j in [16j+15:16j]
    input  wire                      s_last,
    // result: one beat per call, straight from the accumulators (idle while it is held)
    output wire                      m_valid,
    input  wire                      m_ready,
    output wire [48*LANES-1:0]       m_msb,
    output wire [48*EXACT_LANES-1:0] m_exact
);
    localparam [2:0] S_IDLE = 3'd0, S_HEAD = 3'd1, S_RUN = 3'd2, S_DRAIN = 3'd3, S_OUT = 3'd4,
                     S_DONE = 3'd5;
    // A beat taken at edge t is in the accumulators after edge t+2 (psg_lane.v): after the last
    // beat, two drain cycles, then the result beat.
    localparam [1:0] DRAIN_LAST = 2'd1;

    reg [2:0] state;
    reg [1:0] drain;
    wire start = (state == S_IDLE) & ap_start;
    wire load = (state == S_HEAD) & h_valid;
    assign h_ready = (state == S_HEAD);
    assign s_ready = (state == S_RUN);
    wire accept = s_valid & s_ready;

    // ---- call arguments: per-lane enables, registered at start
    reg             xu_r;
    reg [LANES-1:0] msb_on, exact_on;
    genvar l;
    generate
        for (l = 0; l < LANES; l = l + 1) begin : enables
            always @(posedge ap_clk) begin
                if (start) begin
                    msb_on[l] <= msb_en && (l < n_active);
                    exact_on[l] <= exact_en && (l < n_active) && (l < EXACT_LANES);
                end
            end
        end
    endgenerate
    always @(posedge ap_clk) if (start) xu_r <= x_unsigned;

    // ---- lanes: select from the window, accumulate
    wire [48*LANES-1:0] acc_exact_all;
    wire [LANES-1:0]    lane_busy, corr_active;
    generate
        for (l = 0; l < LANES; l = l + 1) begin : lane
            reg [7:0] xsel, gsel;
            always @(posedge ap_clk) begin
                if (load) begin
                    xsel <= h_xsel[8*l +: 8];
                    gsel <= h_gsel[8*l +: 8];
                end
            end
            wire [7:0]  xin = ({24'd0, xsel} < XSLOTS) ? s_x[8*xsel +: 8] : 8'd0;
            wire [15:0] gin = ({24'd0, gsel} < GSLOTS) ? s_g[16*gsel +: 16] : 16'd0;
            wire [47:0] init_exact;
            if (l < EXACT_LANES) begin : with_exact
                assign init_exact = h_exact[48*l +: 48];
            end else begin : without_exact
                assign init_exact = 48'd0;
            end
            psg_lane #(.HAS_EXACT(l < EXACT_LANES ? 1 : 0)) u_lane (
                .clk(ap_clk), .rst(ap_rst), .load(load),
                .init_msb(h_msb[48*l +: 48]), .init_exact(init_exact),
                .x_unsigned(xu_r), .msb_en(msb_on[l]), .corr_en(exact_on[l]), .in_valid(accept),
                .in_x(xin), .in_g(gin),
                .acc_msb(m_msb[48*l +: 48]), .acc_exact(acc_exact_all[48*l +: 48]),
                .corr_active(corr_active[l]), .busy(lane_busy[l])
            );
        end
    endgenerate
    assign m_exact = acc_exact_all[48*EXACT_LANES-1:0];

    // ---- control
    always @(posedge ap_clk) begin
        if (ap_rst) begin
            state <= S_IDLE;
            drain <= 2'd0;
        end else begin
            case (state)
                S_IDLE:  if (ap_start) state <= S_HEAD;
                S_HEAD:  if (h_valid) state <= S_RUN;
                S_RUN:   if (accept && s_last) begin
                             state <= S_DRAIN;
                             drain <= DRAIN_LAST;
                         end
                S_DRAIN: if (drain != 2'd0) drain <= drain - 1'b1;
                         else state <= S_OUT;
                S_OUT:   if (m_ready) state <= S_DONE;
                S_DONE:  if (ap_continue) state <= S_IDLE;
                default: state <= S_IDLE;
            endcase
        end
    end
    assign ap_idle = (state == S_IDLE);
    assign ap_ready = start;
    assign ap_done = (state == S_DONE);
    assign m_valid = (state == S_OUT);

    // Observed by the testbench (gated lanes never clock a path); the exact accumulators of
    // lanes without a DSP read 0 and are not outputs.
    /* verilator lint_off UNUSEDSIGNAL */
    wire [LANES-1:0] dbg_lane_busy = lane_busy;
    wire [LANES-1:0] dbg_corr_active = corr_active;
    wire [48*LANES-1:0] dbg_acc_exact = acc_exact_all;
    /* verilator lint_on UNUSEDSIGNAL */
endmodule

`default_nettype wire
