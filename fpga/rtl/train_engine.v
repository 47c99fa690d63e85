// train_engine.v -- the one compute array of the training step: forward, input-gradient and
// weight-gradient passes take turns on the same ROWS x COLS grid of DSP48E1 cells.
//
// Every pass is an outer-product accumulation over a streamed reduction index t: per beat
// the caller sends one operand per row (s_row, 16 bits each) and one per column (s_col, 16
// bits each); cell (r, c) accumulates row_t[r] * col_t[c]. The rows and columns mean:
//
//   mode      row operand (DSP B, 18 b)   column operand (DSP A, 25 b)          t runs over
//   0 FWD     w[co] int8                  x of 2 output positions, packed       (ci, ky, kx)
//   1 BWD     w[ci] int8                  g_y of 1 position, int16              (co, ky, kx)
//   2 WGRAD   g_y[co] int16               x[ci at tap], int8/uint8              positions
//
// so each cell's sums are one output tile: y[co][pos 2c, 2c+1] (FWD), g_x[ci][pos] (BWD),
// dW[co][ci, tap] (WGRAD). The operands are formatted once per row / column bus (sign or zero
// extension, the FWD pair packing, the MSB splits), so a cell has no operand select at all:
// the layout of weights, channels and positions onto rows and columns is fixed by the caller.
//
// Two int8 MACs per DSP48E1 in FWD (docs/rtl.md, "Packing"): A = x1*2^16 + x0 (x1, x0 the
// codes of positions 2c+1 and 2c, int8 or uint8), B = w, and the DSP adds the constant 2^15
// on its C port: P = w*x1*2^16 + (w*x0 + 2^15). |w*x0| <= 128*255 = 32640 < 2^15, so the
// low field w*x0 + 2^15 lies in [128, 65408]: it never borrows from or carries into bit 16,
// hence w*x1 = P[47:16] and w*x0 = P[15:0] - 2^15 = sext({~P[15], P[14:0]}), exactly, for
// every code. A fits the 25-bit multiplier port: 255*2^16 + 255 < 2^24 and
// -128*2^16 - 128 >= -2^24. The packing does not survive an accumulation (two low fields
// already reach 2^16), so in FWD the P register holds one product and two fabric
// accumulators (acc_lo, acc_hi) sum the fields. BWD and WGRAD multiply an int16 by an 8-bit
// code: two such products need 2 x 24 bits, more than the 43-bit product of the 25x18
// multiplier, so they run one MAC per DSP and accumulate in P (48 bits).
//
// The PSG predictor (pred_en, in WGRAD or BWD): per cell x_h*g_h (4 x 10 bits, in LUTs: two
// radix-4 digit selects of row-shared multiples of g_h and one add) accumulates into
// acc_lo = G_msb. Its operands come on their own buses (s_prow, s_pcol), so the predictor's
// sweep over a layer's weight gradient can ride on the same layer's input-gradient calls
// (BWD on the DSPs, the predictor beside it: acc_lo is free in BWD), and the exact sweep
// afterwards clocks only the undecided weights' DSPs (cell_en from the layer's G_msb). In
// WGRAD, with the same data on both buses, the predictor shadows the exact pass (beta = 0,
// G_msb for the statistics). docs/rtl.md, the weight-gradient dataflow.
//
// A call (Vitis HLS block protocol, ap_ctrl_chain; tie ap_continue high for ap_ctrl_hs):
//   ap_start in the idle state registers the arguments (ap_ready that cycle) and clears
//   the accumulators named by clr_dsp / clr_fab (else they carry on from the call before).
//   Then the stream s_* up to the beat with s_last, one beat per clock at full rate; then
//   one result beat m_* straight from the accumulators (held until m_ready), then ap_done
//   (held until ap_continue). N beats at full rate: the result beat is in cycle N + 4
//   (the ap_start cycle is 0), ap_done in N + 5, and the next ap_start can be taken in
//   N + 6: a call costs N + 6 cycles (engine_map.CALL_OVERHEAD).
// Gating: cell k's DSP registers load only when exact_en & cell_en[k]; its predictor
//   registers only when pred_en (WGRAD or BWD) and it lies in pred_rows x pred_cols; its fabric
//   accumulators only in FWD with exact_en & cell_en[k]. A cell that is off does not toggle
//   and keeps its sums.
// Preconditions (the caller's): beats per accumulation <= 2^24 in BWD/WGRAD (|x*g| < 2^23,
//   48-bit P); <= 2^17 for the predictor (|x_h*g_h| <= 15*512 < 2^13: sums below 2^30 fit
//   LO_W = 31; the weight gradient's pass has at most shapes.MAX_WGRAD_CALL_TERMS = 2^17
//   positions, and its kernel clears the engine every call); <= 2^15 in FWD (|w*x| < 2^15:
//   sums below 2^30 fit LO_W = HI_W = 31; shapes.MAX_FWD_TERMS = 2^15). acc_lo serves FWD and
//   the predictor, so it is as wide as the wider of the two bounds needs, and no wider: every
//   bit of it is an adder bit in each of the ROWS x COLS cells and a read-out bit per column.
// Reset: ap_rst, synchronous, active high: abandons a call in flight, with no output.
`default_nettype none

module train_engine #(
    parameter integer ROWS = 8,
    parameter integer COLS = 18,
    parameter integer LO_W = 31,      // acc_lo: FWD sum of position 2c / G_msb
    parameter integer HI_W = 31       // acc_hi: FWD sum of position 2c+1
) (
    input  wire                       ap_clk,
    input  wire                       ap_rst,
    input  wire                       ap_start,
    output wire                       ap_done,
    output wire                       ap_idle,
    output wire                       ap_ready,
    input  wire                       ap_continue,
    // call arguments (ap_none wires, sampled at ap_start)
    input  wire [1:0]                 mode,        // 0 FWD, 1 BWD, 2 WGRAD
    input  wire                       x_unsigned,  // x codes are uint8 (else int8)
    input  wire                       exact_en,    // the DSP path runs
    input  wire                       pred_en,     // the predictor runs (WGRAD or BWD)
    input  wire                       clr_dsp,     // P <= 0 at start
    input  wire                       clr_fab,     // acc_lo, acc_hi <= 0 at start
    input  wire [ROWS*COLS-1:0]       cell_en,     // cell r*COLS + c: its DSP path runs
    input  wire [7:0]                 pred_rows,   // the predictor runs on cells r < pred_rows,
    input  wire [7:0]                 pred_cols,   //   c < pred_cols (its block's extent)
    // operand stream
    input  wire                       s_valid,
    output wire                       s_ready,
    input  wire [16*ROWS-1:0]         s_row,       // row r in [16r+15:16r] (int8: low byte)
    input  wire [16*COLS-1:0]         s_col,       // column c in [16c+15:16c] (see above)
    input  wire [16*ROWS-1:0]         s_prow,      // predictor operands (WGRAD, BWD): g per row,
    input  wire [8*COLS-1:0]          s_pcol,      //   x per column, of the predictor's block
    input  wire                       s_last,
    // result beat, straight from the accumulators
    output wire                       m_valid,
    input  wire                       m_ready,
    output wire [48*ROWS*COLS-1:0]    m_p,         // P per cell: BWD / WGRAD sums
    output wire [LO_W*ROWS*COLS-1:0]  m_lo,        // acc_lo per cell: FWD pos 2c / G_msb
    output wire [HI_W*ROWS*COLS-1:0]  m_hi         // acc_hi per cell: FWD pos 2c+1
);
    localparam integer CELLS = ROWS * COLS;
    localparam [1:0] FWD = 2'd0, BWD = 2'd1, WGRAD = 2'd2;
    localparam [2:0] S_IDLE = 3'd0, S_RUN = 3'd1, S_DRAIN = 3'd2, S_OUT = 3'd3, S_DONE = 3'd4;

    reg [2:0] state;
    reg [1:0] drain;
    wire start = (state == S_IDLE) & ap_start;
    assign s_ready = (state == S_RUN);
    wire accept = s_valid & s_ready;

    // ---- call arguments
    reg [1:0]       mode_r;
    reg             xu_r, clr_p_now, clr_f_now;
    reg [CELLS-1:0] dsp_on;
    reg [ROWS-1:0]  prow_on;
    reg [COLS-1:0]  pcol_on;
    integer i;
    always @(posedge ap_clk) begin
        if (start) begin
            mode_r <= mode;
            xu_r <= x_unsigned;
            dsp_on <= (exact_en && mode != 2'd3) ? cell_en : {CELLS{1'b0}};
            for (i = 0; i < ROWS; i = i + 1)
                prow_on[i] <= pred_en && (mode == WGRAD || mode == BWD) && (i < pred_rows);
            for (i = 0; i < COLS; i = i + 1)
                pcol_on[i] <= (i < pred_cols);
        end
        // the clears act on the accumulators at the edge after the start cycle (pipeline empty)
        clr_p_now <= start & clr_dsp;
        clr_f_now <= start & clr_fab;
    end
    wire fwd = (mode_r == FWD);

    // ---- pipeline valid bits (shared; each cell ANDs its own enables)
    reg v1, v2, v3;
    always @(posedge ap_clk) begin
        if (ap_rst) begin
            v1 <= 1'b0; v2 <= 1'b0; v3 <= 1'b0;
        end else begin
            v1 <= accept; v2 <= v1; v3 <= v2;
        end
    end

    // ---- stage 1: row and column buses, formatted and split once per bus
    // The DSP operands are complete after stage 1. The predictor's operands take two stages:
    // the MSB splits are registered (stage 1), and the row's multiples of g_h are computed
    // from the registered split (stage 2). Split and multiples in one cycle were the engine's
    // longest register-to-register path (docs/rtl.md, "Timing proxy"). The predictor's
    // product (stage 3) and accumulation (stage 4) then line up with FWD's fabric
    // accumulators (stage 4), so the call's latency is unchanged.
    reg signed [17:0] row_b [0:ROWS-1];   // DSP B operand
    reg signed [9:0]  row_gh [0:ROWS-1];  // g_h, the registered split (stage 1)
    // the predictor's multiples of g_h, once per row (radix-4 digits of x_h, see the cells)
    reg signed [11:0] row_l1 [0:ROWS-1];  // g_h        low digit 1; high digit 1
    reg signed [11:0] row_l2 [0:ROWS-1];  // 2 g_h      low digit 2
    reg signed [11:0] row_l3 [0:ROWS-1];  // 3 g_h      low digit 3
    reg signed [11:0] row_h2 [0:ROWS-1];  // high digit 2: 2 g_h (uint8 x) or -2 g_h (int8 x)
    reg signed [11:0] row_h3 [0:ROWS-1];  // high digit 3: 3 g_h (uint8 x) or -g_h (int8 x)
    reg signed [24:0] col_a [0:COLS-1];   // DSP A operand
    reg [3:0]         col_xh1 [0:COLS-1]; // x_h (predictor): 4 bits, see below (stage 1)
    reg [3:0]         col_xh [0:COLS-1];  //   the same, a stage later, beside the row multiples
    wire signed [4:0] xh_top = xu_r ? 5'sd15 : 5'sd7;
    wire signed [4:0] xh_bot = xu_r ? 5'sd0 : -5'sd8;
    // the predictor's bus registers load only when some predictor cell runs this call
    wire pred_any = |prow_on;
    genvar r, c;
    generate
        for (r = 0; r < ROWS; r = r + 1) begin : rowbus
            wire [15:0] v = s_row[16*r +: 16];
            wire signed [9:0] gh;
            msb_split #(.W(16), .SHIFT(6), .HW(10)) u_split_g (
                .v(s_prow[16*r +: 16]), .lo(-10'sd512), .hi(10'sd511), .h(gh));
            wire signed [11:0] gh_w = {{2{row_gh[r][9]}}, row_gh[r]};
            always @(posedge ap_clk) begin
                if (accept)
                    row_b[r] <= (mode_r == WGRAD) ? {{2{v[15]}}, v} : {{10{v[7]}}, v[7:0]};
                if (accept & prow_on[r])
                    row_gh[r] <= gh;
                if (v1 & prow_on[r]) begin
                    row_l1[r] <= gh_w;
                    row_l2[r] <= gh_w <<< 1;
                    row_l3[r] <= gh_w + (gh_w <<< 1);
                    row_h2[r] <= xu_r ? (gh_w <<< 1) : -(gh_w <<< 1);
                    row_h3[r] <= xu_r ? gh_w + (gh_w <<< 1) : -gh_w;
                end
            end
        end
        for (c = 0; c < COLS; c = c + 1) begin : colbus
            wire [15:0] v = s_col[16*c +: 16];
            wire signed [8:0] x0 = {xu_r ? 1'b0 : v[7], v[7:0]};     // position 2c / the x code
            wire signed [8:0] x1 = {xu_r ? 1'b0 : v[15], v[15:8]};   // position 2c+1
            wire signed [24:0] pair = {x1, 16'd0} + {{16{x0[8]}}, x0};   // x1*2^16 + x0
            // x_h is 0..15 for uint8 and -8..7 for int8: 4 bits, whose top bit weighs +8 or
            // -8 by x_unsigned (the cells' 4x10-bit product). Bit 4 only repeats the sign.
            /* verilator lint_off UNUSEDSIGNAL */
            wire signed [4:0] xh;
            /* verilator lint_on UNUSEDSIGNAL */
            wire [7:0] px = s_pcol[8*c +: 8];
            msb_split #(.W(9), .SHIFT(4), .HW(5)) u_split_x (
                .v({xu_r ? 1'b0 : px[7], px}), .lo(xh_bot), .hi(xh_top), .h(xh));
            always @(posedge ap_clk) begin
                if (accept)
                    col_a[c] <= fwd ? pair : (mode_r == BWD) ? {{9{v[15]}}, v} : {{16{x0[8]}}, x0};
                if (accept & pred_any & pcol_on[c])
                    col_xh1[c] <= xh[3:0];
                if (v1 & pred_any & pcol_on[c])
                    col_xh[c] <= col_xh1[c];
            end
        end
    endgenerate

    // ---- cells
    wire [CELLS-1:0] pred_on;
    generate
        for (r = 0; r < ROWS; r = r + 1) begin : row
            for (c = 0; c < COLS; c = c + 1) begin : col
                localparam integer K = r * COLS + c;
                wire en_d = dsp_on[K];
                wire en_p = prow_on[r] & pcol_on[c];
                assign pred_on[K] = en_p;
                // DSP48E1: A/B registers are the buses above (shared by the row / column);
                // M register, then P (accumulating in BWD/WGRAD, one product in FWD).
                reg signed [42:0] m;
                reg signed [47:0] p;
                always @(posedge ap_clk) begin
                    if (v1 & en_d) m <= col_a[c] * row_b[r];
                    if (clr_p_now) p <= 48'sd0;
                    else if (v2 & en_d) p <= (fwd ? 48'sd32768 : p) + {{5{m[42]}}, m};
                end
                // predictor: x_h*g_h (4 x 10 bits) in LUTs, never a DSP. x_h = 4*hi + lo in
                // radix-4 digits: lo = x_h[1:0] in 0..3; hi = x_h[3:2] in 0..3 (uint8 x) or
                // -2..1 (int8 x, the top bit weighs -8). Each digit selects a multiple of g_h
                // that its row computed once (a 4:1 select, one LUT6 per bit), so a cell adds
                // two terms instead of four.
                wire [3:0] xh = col_xh[c];
                wire signed [11:0] d_lo = (xh[1:0] == 2'd0) ? 12'sd0 : (xh[1:0] == 2'd1) ? row_l1[r] :
                                          (xh[1:0] == 2'd2) ? row_l2[r] : row_l3[r];
                wire signed [11:0] d_hi = (xh[3:2] == 2'd0) ? 12'sd0 : (xh[3:2] == 2'd1) ? row_l1[r] :
                                          (xh[3:2] == 2'd2) ? row_h2[r] : row_h3[r];
                wire signed [13:0] pp = {{2{d_lo[11]}}, d_lo} + {d_hi, 2'b00};
                reg signed [13:0] pm;
                always @(posedge ap_clk) if (v2 & en_p) pm <= pp;
                // fabric accumulators: FWD's two packed fields or G_msb, both in stage 4; one
                // adder each, its addend selected (the two never run in the same call)
                reg signed [LO_W-1:0] acc_lo;
                reg signed [HI_W-1:0] acc_hi;
                wire signed [15:0] lo_add = fwd ? {~p[15], p[14:0]} : {{2{pm[13]}}, pm};
                wire signed [HI_W-1:0] hi_f = {{(HI_W-16){p[31]}}, p[31:16]};
                always @(posedge ap_clk) begin
                    if (clr_f_now) acc_lo <= {LO_W{1'b0}};
                    else if (v3 & ((en_d & fwd) | en_p))
                        acc_lo <= acc_lo + {{(LO_W-16){lo_add[15]}}, lo_add};
                    if (clr_f_now) acc_hi <= {HI_W{1'b0}};
                    else if (v3 & en_d & fwd)
                        acc_hi <= acc_hi + hi_f;
                end
                assign m_p[48*K +: 48] = p;
                assign m_lo[LO_W*K +: LO_W] = acc_lo;
                assign m_hi[HI_W*K +: HI_W] = acc_hi;
            end
        end
    endgenerate

    // ---- control
    always @(posedge ap_clk) begin
        if (ap_rst) begin
            state <= S_IDLE;
            drain <= 2'd0;
        end else begin
            case (state)
                S_IDLE:  if (ap_start) state <= S_RUN;
                S_RUN:   if (accept && s_last) begin
                             state <= S_DRAIN;
                             drain <= 2'd2;
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

    // Observed by the testbench: which cells clock their DSP / predictor registers this cycle.
    /* verilator lint_off UNUSEDSIGNAL */
    wire [CELLS-1:0] dbg_dsp_active = ({CELLS{v1 | v2 | (v3 & fwd)}} & dsp_on);
    wire [CELLS-1:0] dbg_pred_active = ({CELLS{v2 | v3}} & pred_on);
    /* verilator lint_on UNUSEDSIGNAL */
endmodule

`default_nettype wire
