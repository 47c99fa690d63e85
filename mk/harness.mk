# Evaluation harness (e2train bench). `make bench-e2train` runs the E2-Train preset grid on
# digits (SMD, SLU, PSG, E2-Train vs fp32, with random and fewer-iterations controls) and
# writes runs.csv, summary.md and plots to runs/bench-e2train/.
.PHONY: bench-e2train bench-methods
bench-e2train: $(STAMP)
	$(BIN)/e2train bench --preset e2train --out runs/bench-e2train

bench-methods: $(STAMP)
	$(BIN)/e2train bench --preset methods --out runs/bench-methods
