# Pipeline-parallel training (paper 003) on torch.distributed: sequential vs GPipe vs 1F1B vs
# async 1F1B with weight stashing, steps/s and time-to-accuracy side by side (not a test).
.PHONY: bench-pipeline
BENCHES += bench-pipeline

bench-pipeline: $(STAMP)
	$(BIN)/python benchmarks/bench_pipeline.py --out runs/bench-pipeline.json
