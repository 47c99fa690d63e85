// psg_engine.v -- PSG weight-gradient engine: LANES weights per tile, one (x, g) pair per
// lane per clock, the PSG decision per lane at the end of the tile.
//
// Arithmetic and decision rule: host/e2train/core/golden.py (wgrad_terms, psg_decide) and
// the C model hls/include/psg_engine.h, bit for bit. Protocol and timing: docs/rtl.md.
//
// Control (Vitis HLS block protocol, ap_ctrl_chain; tie ap_continue high for ap_ctrl_hs):
//   ap_start is sampled in the idle state; the call's arguments (mode, x_unsigned, corr_en,
//   beta_q, gmsb_absmax) are registered in that cycle, which is also the cycle ap_ready is
//   high. The engine then takes beats from s_* up to the one with s_last, emits one result
//   beat on m_*, and raises ap_done (held until ap_continue).
// Reset: ap_rst, synchronous, active high (the Vitis HLS default); it abandons a tile in
//   flight and returns to idle with no output.
`default_nettype none

module psg_engine #(
    parameter integer LANES = 8,
    // Longest tile, as a power of two: |x*g| < 2^23, so 2^24 beats fit the 48-bit
    // accumulators. Longer tiles set m_overflow (results invalid). Tests shorten it.
    parameter integer MAX_BEATS_LOG2 = 24
) (
    input  wire                  ap_clk,
    input  wire                  ap_rst,
    input  wire                  ap_start,
    output wire                  ap_done,
    output wire                  ap_idle,
    output wire                  ap_ready,
    input  wire                  ap_continue,
    // call arguments (ap_none wires, sampled at ap_start)
    input  wire                  mode,         // 0: predict pass, 1: decide pass
    input  wire                  x_unsigned,   // x codes are uint8 (else int8)
    input  wire [LANES-1:0]      corr_en,      // decide pass: lanes whose exact path runs
    input  wire [16:0]           beta_q,       // round(beta * 2^16), 0..65536; 0 = predictor off
    input  wire [47:0]           gmsb_absmax,  // max |G_msb| over the layer (from the predict pass)
    // input stream: one (x, g) pair per lane per beat
    input  wire                  s_valid,
    output wire                  s_ready,
    input  wire [8*LANES-1:0]    s_x,          // lane l in [8l+7:8l]
    input  wire [16*LANES-1:0]   s_g,          // lane l in [16l+15:16l]
    input  wire                  s_last,
    // output stream: one beat per tile
    output reg                   m_valid,
    input  wire                  m_ready,
    output reg  [48*LANES-1:0]   m_gmsb,       // G_msb per lane, two's complement
    output reg  [2*LANES-1:0]    m_sign,       // sign per lane: 01 = +1, 11 = -1, 00 = 0
    output reg  [LANES-1:0]      m_pred,       // decided by the predictor
    output reg  [LANES-1:0]      m_incomplete, // not predicted, but its exact path was off
    output reg                   m_overflow    // tile longer than 2^MAX_BEATS_LOG2 beats
);
    localparam [2:0] S_IDLE = 3'd0, S_RUN = 3'd1, S_DRAIN = 3'd2, S_OUT = 3'd3, S_DONE = 3'd4;
    localparam [1:0] DRAIN_LAST = 2'd2;   // lane pipeline depth after the last beat, minus 1

    reg [2:0] state;
    wire start = (state == S_IDLE) & ap_start;

    // ---- call arguments, registered at start
    reg             mode_r, xu_r;
    reg [LANES-1:0] corr_r;
    always @(posedge ap_clk) begin
        if (start) begin
            mode_r <= mode;
            xu_r <= x_unsigned;
            corr_r <= mode ? corr_en : {LANES{1'b0}};
        end
    end

    // ---- threshold T = beta_q * gmsb_absmax, by shift and add (17 steps, overlaps the tile;
    // one product per call, not worth a DSP)
    reg [64:0] thr, mcand;
    reg [16:0] mplier;
    reg        beta_nz;
    wire       thr_ready = (mplier == 17'd0);
    always @(posedge ap_clk) begin
        if (ap_rst) begin
            mplier <= 17'd0;
        end else if (start) begin
            thr <= 65'd0;
            mcand <= {17'd0, gmsb_absmax};
            mplier <= beta_q;
            beta_nz <= (beta_q != 17'd0);
        end else if (!thr_ready) begin
            if (mplier[0]) thr <= thr + mcand;
            mcand <= mcand << 1;
            mplier <= mplier >> 1;
        end
    end

    // ---- input handshake and beat counter
    assign s_ready = (state == S_RUN);
    wire accept = s_valid & s_ready;
    reg [MAX_BEATS_LOG2:0] beats;
    reg                    ovf;
    wire [MAX_BEATS_LOG2:0] beats_max = {1'b1, {MAX_BEATS_LOG2{1'b0}}};
    always @(posedge ap_clk) begin
        if (ap_rst || start) begin
            beats <= 0;
            ovf <= 1'b0;
        end else if (accept) begin
            if (beats == beats_max) ovf <= 1'b1;
            else beats <= beats + 1'b1;
        end
    end

    // ---- lanes
    wire [48*LANES-1:0] acc_msb, acc_exact;
    wire [LANES-1:0]    corr_active, lane_busy;
    genvar l;
    generate
        for (l = 0; l < LANES; l = l + 1) begin : lane
            psg_lane u_lane (
                .clk(ap_clk), .rst(ap_rst), .load(start), .init_msb(48'sd0), .init_exact(48'sd0),
                .x_unsigned(xu_r), .msb_en(1'b1), .corr_en(corr_r[l]), .in_valid(accept),
                .in_x(s_x[8*l +: 8]), .in_g(s_g[16*l +: 16]),
                .acc_msb(acc_msb[48*l +: 48]), .acc_exact(acc_exact[48*l +: 48]),
                .corr_active(corr_active[l]), .busy(lane_busy[l])
            );
        end
    endgenerate

    // ---- control
    reg [1:0] drain;
    always @(posedge ap_clk) begin
        if (ap_rst) begin
            state <= S_IDLE;
            drain <= 2'd0;
        end else begin
            case (state)
                S_IDLE:  if (ap_start) state <= S_RUN;
                S_RUN:   if (accept && s_last) begin
                             state <= S_DRAIN;
                             drain <= DRAIN_LAST;
                         end
                S_DRAIN: if (drain != 2'd0) drain <= drain - 1'b1;
                         else if (thr_ready || !mode_r) state <= S_OUT;
                S_OUT:   if (m_ready) state <= S_DONE;
                S_DONE:  if (ap_continue) state <= S_IDLE;
                default: state <= S_IDLE;
            endcase
        end
    end
    assign ap_idle = (state == S_IDLE);
    assign ap_ready = start;
    assign ap_done = (state == S_DONE);

    // ---- decision per lane (combinational), registered into the output beat on the last
    // drain cycle
    // The predict pass does not use the threshold: it never waits for it.
    wire decide_now = (state == S_DRAIN) && (drain == 2'd0) && (thr_ready || !mode_r);
    wire [LANES-1:0]   pred_w, incomplete_w;
    wire [2*LANES-1:0] sign_w;
    generate
        for (l = 0; l < LANES; l = l + 1) begin : decide
            wire signed [47:0] gm = acc_msb[48*l +: 48];
            wire signed [47:0] ge = acc_exact[48*l +: 48];
            wire [47:0] ga = gm[47] ? (48'd0 - gm) : gm;
            wire [1:0] sgn_msb = gm[47] ? 2'b11 : ((gm != 48'sd0) ? 2'b01 : 2'b00);
            wire [1:0] sgn_exact = ge[47] ? 2'b11 : ((ge != 48'sd0) ? 2'b01 : 2'b00);
            // |G_msb| * 2^16 >= beta_q * max|G_msb|, G_msb != 0, beta_q != 0
            assign pred_w[l] = mode_r & beta_nz & (gm != 48'sd0) & ({1'b0, ga, 16'd0} >= thr);
            assign incomplete_w[l] = mode_r & ~pred_w[l] & ~corr_r[l];
            assign sign_w[2*l +: 2] = (!mode_r || pred_w[l]) ? sgn_msb
                                    : (corr_r[l] ? sgn_exact : 2'b00);
        end
    endgenerate

    always @(posedge ap_clk) begin
        if (ap_rst) begin
            m_valid <= 1'b0;
        end else if (decide_now) begin
            m_valid <= 1'b1;
            m_overflow <= ovf;
            m_gmsb <= acc_msb;
            m_pred <= pred_w;
            m_incomplete <= incomplete_w;
            m_sign <= sign_w;
        end else if (state == S_OUT && m_ready) begin
            m_valid <= 1'b0;
        end
    end

    // corr_active is observed by the testbench (proof that skipped lanes do not compute).
    /* verilator lint_off UNUSEDSIGNAL */
    wire [LANES-1:0] dbg_corr_active = corr_active;
    wire [LANES-1:0] dbg_lane_busy = lane_busy;
    /* verilator lint_on UNUSEDSIGNAL */
endmodule

`default_nettype wire
