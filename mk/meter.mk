# Power meters: recorder overhead benchmark (emulated 1 kHz INA226 stream; prints, never fails on speed).
BENCHES += bench-meter
.PHONY: bench-meter
bench-meter: $(STAMP)
	$(BIN)/python benchmarks/bench_meter.py
