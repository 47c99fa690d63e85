#!/usr/bin/env bash
# Vitis HLS for the fabric's one IP, e2t_engine: C simulation, C synthesis and IP export.
#   hls/scripts/run_hls.sh [csim|csynth|export|all]
# Results land in build/hls/e2t_engine/ (reports: sol1/syn/report/) and build/hls/ip/e2t_engine.zip.
# Needs vitis_hls on PATH; nothing here is claimed until the tool has produced it.
set -euo pipefail
cd "$(dirname "$0")/../.."
steps="${1:-all}"

if ! command -v vitis_hls >/dev/null 2>&1; then
    cat >&2 <<'MSG'
hls-synth: `vitis_hls` is not on PATH.
  It comes with AMD Vitis HLS (Vitis 2023.2 or later; free with the Vivado ML Standard
  edition, which covers xc7z020): https://www.xilinx.com/support/download.html
  After installing, run `source <install>/Vitis_HLS/<version>/settings64.sh` (or
  `<install>/Vitis/<version>/settings64.sh`) and rerun `make hls-synth`.
  Without it, `make csim` builds and `make test` checks the same C++ with g++.
MSG
    exit 2
fi

case "$steps" in
    csim|csynth|export|all) ;;
    *) echo "unknown step '$steps' (expected csim, csynth, export or all)" >&2; exit 2 ;;
esac

python="${PYTHON:-.venv/bin/python}"
mkdir -p build/hls
cases=""
if [ "$steps" = csim ] || [ "$steps" = all ]; then
    rm -rf build/hls/cases
    cases=$("$python" hls/csim/cases.py "$PWD/build/hls/cases")
fi
echo "== vitis_hls e2t_engine ($steps)"
# shellcheck disable=SC2086
vitis_hls -f hls/scripts/kernel.tcl -tclargs "$steps" $cases
echo "reports: build/hls/e2t_engine/sol1/syn/report/*_csynth.rpt; IP: build/hls/ip/e2t_engine.zip"
