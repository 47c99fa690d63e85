# Bitstream for a real board (needs Vitis HLS + Vivado; a clear error and exit 2 without).
#   make bitstream BOARD=zedboard|pynq-z1|pynq-z2
.PHONY: bitstream sim-manifest
BOARD ?=
bitstream: $(STAMP)
	PYTHON=$(BIN)/python fpga/vivado/run_vivado.sh "$(BOARD)"

# The simulated board's manifest (checked in; a test checks it is current).
sim-manifest: $(STAMP)
	$(BIN)/python -m e2train.device.manifest --board sim --out bitstreams/sim

BENCHES += bench-driver
.PHONY: bench-driver
bench-driver: csim
	$(BIN)/python benchmarks/bench_driver.py
