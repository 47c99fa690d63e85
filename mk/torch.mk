# Torch reference: benchmark of PSG and gated-step times (ratios side by side, not a test).
.PHONY: bench-torch
BENCHES += bench-torch

bench-torch: $(STAMP)
	$(BIN)/python benchmarks/bench_torch.py
