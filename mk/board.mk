# The board side on the PYNQ-Z2 image's own Python, numpy and pynq (mk/board-constraints.txt says where
# each version comes from). A second venv installs e2train with the board extra only (no torch, no
# scikit-learn, no matplotlib) and runs the board-side import test and the board-side unit tests
# (tests/unit, tests/device) against the working tree. The venv is cached: rebuilt only when
# pyproject.toml, this file or the constraints change (the first build downloads and builds pynq 3.0.1,
# about a minute). The digits set reaches it as the host uploads it to a board (an npz written by the
# main venv), since a PYNQ image has no scikit-learn.
BOARD_VENV := build/board-venv
BOARD_STAMP := $(BOARD_VENV)/.installed
BOARD_DIGITS := $(BOARD_VENV)/digits.npz
# Python 3.10 as on the image (pyenv's or the system's); without one, the closest here with numpy
# moved to the nearest version that has wheels for it (numpy 1.21 has none past Python 3.10).
BOARD_PYTHON ?= $(shell v=$$(pyenv versions --bare 2>/dev/null | grep -E '^3\.10\.[0-9]+$$' | tail -1); \
  if [ -n "$$v" ]; then echo "$$(pyenv root)/versions/$$v/bin/python3.10"; \
  elif command -v python3.10 >/dev/null 2>&1; then command -v python3.10; fi)
BOARD_TESTS := tests/unit tests/device

.PHONY: board-test board-venv
TEST_DEPS += board-test

board-venv: $(BOARD_STAMP)
$(BOARD_STAMP): pyproject.toml mk/board.mk mk/board-constraints.txt
	@rm -rf $(BOARD_VENV)
	@if [ -n "$(BOARD_PYTHON)" ]; then \
	  $(BOARD_PYTHON) -m venv $(BOARD_VENV) && cp mk/board-constraints.txt $(BOARD_VENV)/constraints.txt; \
	else \
	  echo "board-venv: no Python 3.10 here (the PYNQ-Z2 image's); using $(PYTHON) with numpy 1.23.5, the closest numpy with wheels for it" >&2; \
	  $(PYTHON) -m venv $(BOARD_VENV) && sed 's/^numpy==.*/numpy==1.23.5/' mk/board-constraints.txt > $(BOARD_VENV)/constraints.txt; \
	fi
	$(BOARD_VENV)/bin/pip install -q --disable-pip-version-check -c $(BOARD_VENV)/constraints.txt '.[board]'
	# Test tools only (not on the board): pytest and hypothesis.
	$(BOARD_VENV)/bin/pip install -q --disable-pip-version-check -c $(BOARD_VENV)/constraints.txt 'pytest>=8,<9' 'hypothesis>=6'
	$(BOARD_VENV)/bin/python -c "import importlib.util as u, sys, numpy, pynq; \
	  bad = [m for m in ('torch', 'sklearn', 'matplotlib', 'scipy') if u.find_spec(m)]; \
	  assert not bad, f'the board extra pulled in host packages: {bad}'; \
	  print('board venv: Python', sys.version.split()[0], 'numpy', numpy.__version__, 'pynq', pynq.__version__)"
	@touch $@

$(BOARD_DIGITS): $(STAMP) host/e2train/data/datasets.py host/e2train/core/pixels.py host/e2train/app/train_cli.py
	@mkdir -p $(BOARD_VENV)
	$(BIN)/python -c "from e2train.app.train_cli import dataset_npz; open('$@', 'wb').write(dataset_npz('digits', None))"

board-test: $(BOARD_STAMP) $(BOARD_DIGITS) csim
	cd $(CURDIR) && E2TRAIN_DIGITS_NPZ=$(abspath $(BOARD_DIGITS)) PYTHONPATH=$(CURDIR)/host \
	  $(BOARD_VENV)/bin/python -m pytest -q -p no:cacheprovider $(BOARD_TESTS)

# The same tests on a 32-bit ARM user space (armhf, under qemu-user): numpy's default integer is
# int32 there, as on the board; then the agent there and the host here train over TCP. Opt-in (root,
# ~15 minutes the first time, ~9 after); mk/armv7-board-test.sh says how.
.PHONY: board-test-armv7
board-test-armv7: $(STAMP) $(BOARD_DIGITS)
	bash mk/armv7-board-test.sh $(BOARD_DIGITS) $(PYTEST_ARGS)
