#!/usr/bin/env bash
# Bitstream for one board: HLS IP export (hls/scripts/run_hls.sh), Vivado block design,
# implementation, then the manifest, all into bitstreams/<board>/.
#   fpga/vivado/run_vivado.sh <zedboard|pynq-z1|pynq-z2>
# Needs vitis_hls and vivado on PATH. Nothing is written to bitstreams/ unless every step,
# timing closure included, succeeded.
set -euo pipefail
cd "$(dirname "$0")/../.."
board="${1:-}"
python="${PYTHON:-.venv/bin/python}"
case "$board" in
    zedboard|pynq-z1|pynq-z2) ;;
    *) echo "bitstream: BOARD must be zedboard, pynq-z1 or pynq-z2 (got '${board}')" >&2; exit 2 ;;
esac
missing=()
for tool in vitis_hls vivado; do command -v "$tool" >/dev/null 2>&1 || missing+=("$tool"); done
if [ ${#missing[@]} -gt 0 ]; then
    cat >&2 <<MSG
bitstream: ${missing[*]} not on PATH; no bitstream was built.
  They come with AMD Vivado / Vitis HLS (2023.2 or later; the free ML Standard edition
  covers xc7z020): https://www.xilinx.com/support/download.html
  Then: source <install>/Vivado/<version>/settings64.sh and rerun
  make bitstream BOARD=$board
  Without them, the simulated board (bitstreams/sim) runs the same driver and kernels' C code.
MSG
    exit 2
fi

hls/scripts/run_hls.sh export
ip_repo=build/fpga/ip_repo
rm -rf "$ip_repo" && mkdir -p "$ip_repo"
unzip -q -o build/hls/ip/e2t_engine.zip -d "$ip_repo/e2t_engine"
mkdir -p build/fpga
"$python" -m e2train.device.kernel_iface --tcl > build/fpga/kernels.tcl
out="build/fpga/$board/out"
rm -rf "$out"
vivado -mode batch -nojournal -log "build/fpga/$board/vivado.log" \
    -source fpga/vivado/build.tcl -tclargs "$board" "$ip_repo" "$out"
tools="$(vivado -version | head -1); $(vitis_hls -version 2>/dev/null | head -1)"
"$python" -m e2train.device.manifest --board "$board" --bit "$out/e2train.bit" --hwh "$out/e2train.hwh" \
    --out "bitstreams/$board" --copy --tool "$tools"
cp "$out/timing_summary.rpt" "$out/utilization.rpt" "bitstreams/$board/"
echo "bitstreams/$board: e2train.bit, e2train.hwh, manifest.json, reports"
