# Torch reference: benchmark of PSG and gated-step times (ratios side by side, not a test).
.PHONY: bench-torch
BENCHES += bench-torch

bench-torch: $(STAMP)
	$(BIN)/python benchmarks/bench_torch.py

# The same ratios on a CUDA GPU (ResNet-20/56, batch 128/512) and the CPU/GPU bit-exactness
# check of the exact PSG layer; not in BENCHES: without CUDA it only says so and fails.
.PHONY: bench-torch-cuda
bench-torch-cuda: $(STAMP)
	$(BIN)/python benchmarks/bench_torch.py --device cuda

# Torch reference acceptance on digits (about 6 minutes on 2 cores): fp32 40 epochs vs
# E2-Train 60 base epochs, ResNet-8 x 5 seeds and ResNet-14 x 3 seeds; every seed within
# 1.5 points at <= 25% of the modelled energy. Writes runs/accept-torch.json.
.PHONY: accept-torch
accept-torch: $(STAMP)
	$(BIN)/python benchmarks/accept_torch.py --out runs/accept-torch.json

# The block operations in torch (bit-exact, int64) against a float32 BN+residual+ReLU step,
# ratios side by side on ResNet-20's three layer shapes (not a test); `... --device cuda` on a GPU.
.PHONY: bench-block-ops
BENCHES += bench-block-ops
bench-block-ops: $(STAMP)
	$(BIN)/python benchmarks/bench_block_ops.py
