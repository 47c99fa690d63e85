# Work-skipping methods (GSkip, DeadHorse, Learn&Drop/freezing, WUS): side-by-side benchmark
# on digits, each method with its random controls (benchmarks/bench_methods.py).
# (`bench-methods` is the harness's preset grid, mk/harness.mk.)
BENCHES += bench-skip-methods
.PHONY: bench-skip-methods
bench-skip-methods: $(STAMP)
	$(BIN)/python benchmarks/bench_methods.py $(BENCH_METHODS_ARGS)
