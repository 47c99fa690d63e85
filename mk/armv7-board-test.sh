#!/usr/bin/env bash
# The board-side tests on a 32-bit ARM (armv7l) user space, under qemu-user: `make board-test-armv7`.
#
# Why: the Zynq-7000's Cortex-A9 runs a 32-bit armhf Linux. There numpy's default integer (np.int_,
# np.intp) is int32, so an integer sum or an array built from Python ints without a dtype wraps at
# 2^31 where an x86-64 run never does; the kernels' C++ is built by the armhf g++. `make board-test`
# (x86-64, the image's Python and numpy versions) cannot show either; this can.
#
# What it builds, once (cached in build/armv7-root, rebuilt when its recipe below changes): a Debian
# bookworm armhf root (debootstrap) with Python 3.11, numpy 1.24, pytest, hypothesis, g++, and
# pynq 3.0.1 / pynqutils / pynqmetadata from their sdists (downloaded by the host's pip; installed
# in the root without network). The PYNQ-Z2 v3.0.1 image has Python 3.10 and numpy 1.21.5 (Ubuntu
# 22.04 armhf, whose archive is not reachable here): the versions differ by a minor release, the
# 32-bit integer and pointer widths and the ARM build of the C++ are the image's.
#
# Each run: copies the working tree into the root, builds the C simulation with the root's g++,
# mounts /proc and a private /dev/pts (the link tests use pseudo-terminals), checks that numpy
# there really is 32-bit, and runs tests/unit and tests/device. Needs root (debootstrap, chroot,
# mount) and binfmt_misc for the qemu-arm interpreter; installs debootstrap and qemu-user-static
# with apt-get when they are missing. Slow: about 6 minutes to build the root the first time, then 7
# for the tests under emulation, so it is not part of `make test`. Then, unless ARMV7_REHEARSAL=0, a
# short training run with the agent in the root and the host outside it (below; about a minute).
set -euo pipefail

ROOT=${ARMV7_ROOT:-build/armv7-root}
DIGITS=${1:?usage: mk/armv7-board-test.sh DIGITS_NPZ [pytest args...]}
shift
HOST_PIP=${HOST_PIP:-.venv/bin/pip}
TESTS=${ARMV7_TESTS:-tests/unit tests/device}   # the board-side suites, as `make board-test`
PACKAGES=python3-numpy,python3-dev,python3-pytest,python3-hypothesis,python3-serial,python3-cffi,python3-setuptools,python3-wheel,python3-pip,python3-pydantic,python3-jsonschema,python3-magic,python3-tqdm,python3-ipython,python3-pexpect,g++,make
PYNQ_SDISTS=(pynq==3.0.1 pynqutils==0.1.3 pynqmetadata==0.2.0 nest-asyncio==1.6.0)

die() { echo "board-test-armv7: $*" >&2; exit 2; }

[ "$(id -u)" = 0 ] || die "needs root (debootstrap, chroot and mount); run it as root or with sudo"

if ! command -v debootstrap >/dev/null || [ ! -e /usr/libexec/qemu-binfmt/arm-binfmt-P ]; then
  command -v apt-get >/dev/null || die "needs debootstrap and qemu-user-static (Debian/Ubuntu packages); install them"
  echo "board-test-armv7: installing debootstrap and qemu-user-static" >&2
  apt-get update -q >/dev/null && apt-get install -y -q debootstrap qemu-user-static >/dev/null \
    || die "apt-get could not install debootstrap and qemu-user-static"
fi

# qemu-arm as the interpreter of 32-bit ARM ELF files (the 'P' wrapper keeps argv[0]).
BINFMT=/proc/sys/fs/binfmt_misc
if [ ! -e "$BINFMT/register" ]; then
  mount -t binfmt_misc binfmt_misc "$BINFMT" 2>/dev/null \
    || die "cannot mount binfmt_misc at $BINFMT (a container without it cannot run ARM binaries); run on a host or a privileged container"
fi
if [ ! -e "$BINFMT/qemu-arm" ]; then
  conf=/usr/lib/binfmt.d/qemu-arm.conf
  [ -r "$conf" ] || die "qemu-user-static has no $conf; reinstall qemu-user-static"
  cat "$conf" > "$BINFMT/register" || die "cannot register qemu-arm with binfmt_misc"
fi

# The root, built once per recipe: the packages, the sdists and ROOT_RECIPE (bump it when the
# steps that build the root change).
ROOT_RECIPE=1
stamp="$ROOT/.e2train-$(echo "$ROOT_RECIPE $PACKAGES ${PYNQ_SDISTS[*]}" | sha256sum | cut -c1-16)"
if [ ! -e "$stamp" ]; then
  case "$ROOT" in build/*) ;; *) die "ARMV7_ROOT must lie under build/ (it is deleted and rebuilt)";; esac
  [ -z "$(awk -v r="$(realpath -m "$ROOT")" 'index($2, r) == 1' /proc/mounts)" ] || die "something is still mounted under $ROOT; umount it first"
  rm -rf "$ROOT"
  mkdir -p "$(dirname "$ROOT")"
  echo "board-test-armv7: debootstrap of a bookworm armhf root into $ROOT (a few minutes)" >&2
  # debootstrap's own resolver knows no virtual packages (python3-pycparser needs one), so it lays
  # down Python alone and apt inside the root installs the rest.
  debootstrap --arch=armhf --variant=minbase --include=python3 bookworm "$ROOT" > "$ROOT.log" 2>&1 \
    || die "debootstrap failed; its log is $ROOT.log"
  cp /etc/resolv.conf "$ROOT/etc/resolv.conf"
  chroot "$ROOT" apt-get install -y -q --no-install-recommends ${PACKAGES//,/ } >> "$ROOT.log" 2>&1 \
    || die "apt-get in the armhf root failed; its log is $ROOT.log"
  mkdir -p "$ROOT/opt/sdists"
  "$HOST_PIP" download -q --no-deps --no-binary :all: -d "$ROOT/opt/sdists" "${PYNQ_SDISTS[@]:0:3}" \
    || die "pip could not download the pynq sdists"
  "$HOST_PIP" download -q --no-deps -d "$ROOT/opt/sdists" "${PYNQ_SDISTS[3]}" || die "pip could not download nest-asyncio"
  chroot "$ROOT" sh -c 'cd /opt/sdists && pip install -q --break-system-packages --no-deps --no-index --no-build-isolation ./*' \
    || die "pynq did not install in the armhf root"
  # a private pseudo-terminal instance: /dev/ptmx must be its multiplexer
  rm -f "$ROOT/dev/ptmx" && ln -s pts/ptmx "$ROOT/dev/ptmx"
  touch "$stamp"
fi

# The working tree (tracked and untracked files git does not ignore), fresh each run.
rm -rf "$ROOT/src" && mkdir -p "$ROOT/src"
git ls-files -z -co --exclude-standard | tar --null -T - -cf - | tar -xf - -C "$ROOT/src"
cp "$DIGITS" "$ROOT/src/digits.npz"

AGENT_PID=
cleanup() {
  if [ -n "$AGENT_PID" ]; then kill "$AGENT_PID" 2>/dev/null || true; sleep 1; fi
  umount "$ROOT/dev/pts" 2>/dev/null || true
  umount "$ROOT/proc" 2>/dev/null || true
}
trap cleanup EXIT
mount -t proc proc "$ROOT/proc"
mkdir -p "$ROOT/dev/pts"
mount -t devpts -o newinstance,ptmxmode=0666 devpts "$ROOT/dev/pts"

chroot "$ROOT" /usr/bin/env TESTS="$TESTS" /bin/sh -s -- "$@" <<'EOF'
set -e
cd /src
python3 - <<'PY'
import platform, sys, numpy as np
bits = np.dtype(np.intp).itemsize * 8
print(f"armv7 root: {platform.machine()}, Python {sys.version.split()[0]}, numpy {np.__version__}, "
      f"int_ {np.dtype(np.int_).name}, intp {bits}-bit")
if platform.machine() != "armv7l" or bits != 32 or np.dtype(np.int_).itemsize != 4:
    sys.exit("board-test-armv7: this root is not a 32-bit ARM user space; delete build/armv7-root and rerun")
PY
# -Wno-psabi: g++ notes that an ABI detail of std::vector changed in GCC 7.1 (armhf only; nothing crosses that ABI)
make -s build/csim/libe2t_kernels.so CSIM_CXXFLAGS="-O3 -Wno-psabi"
E2TRAIN_DIGITS_NPZ=/src/digits.npz PYTHONPATH=/src/host exec python3 -m pytest -q -p no:cacheprovider $TESTS "$@"
EOF

[ "${ARMV7_REHEARSAL:-1}" = 1 ] || exit 0
# The link across architectures: the board agent in the armhf root (the simulated board, with its
# simulated Watts Up? on a pty of the root's devpts) serves TCP on loopback; the host's own venv
# (x86-64) flashes it, trains one short run with the meter recorded, and fetches the report.
echo "board-test-armv7: rehearsal: the agent on armv7l, the host on $(uname -m), TCP on loopback" >&2
token=$(od -An -N12 -tx1 /dev/urandom | tr -d ' \n')
announce="$ROOT/tmp/rehearsal-announce"
rm -rf "$ROOT/tmp/rehearsal" "$announce"
chroot "$ROOT" /usr/bin/env PYTHONPATH=/src/host E2TRAIN_CSIM_LIB=/src/build/csim/libe2t_kernels.so \
  python3 -m e2train board --tcp 127.0.0.1:0 --sim --meter wattsup --data-dir /tmp/rehearsal --token "$token" \
  > "$announce" 2> "$ROOT/tmp/rehearsal-agent.log" &
AGENT_PID=$!
for _ in $(seq 120); do grep -q '"link"' "$announce" 2>/dev/null && break; sleep 0.5; done
grep -q '"link"' "$announce" || die "the agent in the root announced no link; its log is $ROOT/tmp/rehearsal-agent.log"
# the meter's pty as the host sees it: the root's /dev/pts/N under the root
read -r url meter < <(.venv/bin/python -c '
import json, os, sys
a = json.loads(open(sys.argv[1]).readline())
proto, rest = a["meter"].split(":", 1)
path, _, query = rest.partition("?")
print(a["link"], f"{proto}:{sys.argv[2]}{os.readlink(sys.argv[2] + path)}?{query}")' "$announce" "$ROOT")
out=build/armv7-rehearsal
rm -rf "$out"
export E2TRAIN_TOKEN=$token PYTHONPATH=host
.venv/bin/python -m e2train flash --board "$url" --bitstream-dir bitstreams/sim > /dev/null
.venv/bin/python -m e2train train --board "$url" --meter "$meter" --preset e2train --set model=resnet8 \
  --set width=4 --set epochs=1 --out "$out" > "$out.log" 2>&1 || { tail -5 "$out.log" >&2; die "the rehearsal's run failed; its log is $out.log"; }
.venv/bin/python -c '
import json, sys
rep = json.load(open(sys.argv[1] + "/report.json"))
m, res = rep["meter"], rep["results"]
assert res["state"] == "finished" and res["board"]["simulated"], res.get("state")
assert m["samples"] > 0 and m["gap_count"] == 0 and m["energy_kind"] == "modelled", m
acc, n = res["summary"]["test_acc"], m["samples"]
print(f"board-test-armv7: rehearsal finished: test accuracy {acc:.2%}, {n} samples of the simulated "
      f"meter (modelled energy), report in {sys.argv[1]}")' "$out"
