# PSG sign quality on layer cases captured from training (ResNet-8/20 on digits), contract v1
# vs v2 side by side at beta 0.05 and 0.12 (benchmarks/bench_psg.py). The first run trains and
# caches the capture under build/bench_psg/ (about 1.5 minutes on 2 cores); later runs about 30 s.
.PHONY: bench-psg
BENCHES += bench-psg

bench-psg: $(STAMP)
	$(BIN)/python benchmarks/bench_psg.py --scale-policies
