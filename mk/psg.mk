# PSG sign quality on layer cases captured from training (ResNet-8/20 on digits, three seeds,
# under both activation scale policies), contract v1 vs v2 side by side at beta 0.05 and 0.12
# (benchmarks/bench_psg.py). The first run trains and caches the captures under
# build/bench_psg/ (12 short trainings, about 2-4 minutes on 2 shared cores); later runs ~15 s.
# PSG_ARGS adds options: --cases DIR (layer cases captured elsewhere, e.g. ResNet-CIFAR),
# --data cifar10 --data-dir DIR (capture from the user's CIFAR files), --save-cases DIR.
.PHONY: bench-psg
BENCHES += bench-psg

bench-psg: $(STAMP)
	$(BIN)/python benchmarks/bench_psg.py --scale-policies $(PSG_ARGS)
