"""The weight gradient's chunk buffers: the HLS source stages x and g on chip and feeds the
engine only from there, and the model prices what it stages.

The C simulation counts what the stagers read from DDR and their loop trips, per call and in
the prologue (``core.csim.wgrad_staging``); ``engine_map.wgrad_staging`` is the model's
account of the same pass, from which ``perfmodel`` takes the sweep's DDR bytes and cycles.
They must agree to the byte and the trip on every layout: 3x3 and 1x1, stride 1 and 2, chunks
that end inside an image, several samples a chunk, sample lists, weight groups split by the
partial sums and by the x buffer. Every column read must find its own word in the bank it
reads (the layout's argument; the C simulation counts misses), and the results stay golden's
(tests/kernels/test_csim_vs_golden.py runs the same kernel on these layouts too).
"""
from __future__ import annotations

import ctypes
import re
from pathlib import Path

import numpy as np
import pytest

from e2train.core import engine_map as em
from e2train.core import golden, perfmodel
from e2train.core.shapes import ConvShape, ShapeError, check_wgrad_stage
from e2train.device import kernel_iface as ki

REPO = Path(__file__).resolve().parents[2]
NO_BLOCK = (None,) * 9 + (0,) * 14

CASES = [
    (ConvShape(3, 2, 13, 11, 3, 3, 1, 1), [2, 0]),        # chunks end inside images, two samples listed
    (ConvShape(64, 16, 8, 8, 32, 3, 2, 1), None),         # 16 samples a chunk, stride 2
    (ConvShape(2, 40, 9, 9, 20, 1, 2, 0), None),          # 1x1: two channels a cycle; stride 2 stages every row between
    (ConvShape(4, 64, 8, 8, 64, 3, 1, 1), [3, 1, 2]),     # two weight groups (partial sums)
    (ConvShape(2, 16, 32, 32, 16, 3, 1, 1), None),        # a chunk is 8 of 32 rows: halo rows staged twice
    (ConvShape(1, 260, 3, 3, 9, 3, 1, 1), None),          # column groups (a row block's partial sums)
    (ConvShape(5, 3, 31, 29, 70, 3, 2, 1), [4, 0, 2, 1]),  # 70 output channels: a group of 64 and one of 6
    (ConvShape(2, 300, 12, 12, 16, 1, 1, 0), None),       # 1x1 channel groups (the x buffer: 90 of 300 fit)
    (ConvShape(1, 128, 16, 64, 8, 3, 1, 1), None),        # 3x3 channel groups (the x buffer: 76 of 128 fit)
]


def _run(sh: ConvShape, samples, seed: int):
    from e2train.core import csim
    rng = np.random.default_rng(seed)
    x = rng.integers(0, 256, sh.x_shape).astype(np.uint8)
    g = rng.integers(-3000, 3000, sh.y_shape).astype(np.int16)
    w = rng.integers(-1000, 1000, sh.w_shape).astype(np.int32)
    kw = dict(stride=sh.stride, pad=sh.pad, beta_q=3277, lr_q=5, samples=samples)
    got = csim.conv_bwd_weight_psg(x, g, w, **kw)
    want = golden.conv_bwd_weight_psg(x, g, w, **kw)
    assert np.array_equal(got.w_master, want.w_master) and np.array_equal(got.sign, want.sign)
    return csim.wgrad_staging()


@pytest.mark.parametrize("i", range(len(CASES)))
def test_the_stagers_traffic_and_trips_are_the_models(csim_lib, i):
    sh, samples = CASES[i]
    c = _run(sh, samples, i)
    n = len(samples) if samples is not None else sh.n
    m = em.wgrad_staging(sh, n)
    assert c.bank_misses == 0
    assert (c.x_bytes, c.g_bytes) == (m["x_bytes"], m["g_bytes"])
    assert (c.x_trips, c.g_trips, c.prologue) == (m["x_trips"], m["g_trips"], m["prologue"])
    assert (c.staging_calls, c.call_trips) == (m["staging_calls"], m["call_trips"])
    # the output stage beside the calls; the loops outside them (the update's trips, one a weight)
    assert c.out_trips == m["out_trips"]
    nw = sh.co * sh.ci * sh.k * sh.k
    # a layer of more than one group reads each group's sums out; one of one group keeps them on
    # chip for the update, which takes max |G_msb| and the range check from the output stage
    multi = em.weight_groups(sh, n_samples=n) > 1
    assert c.loop_trips == (2 if multi else 1) * nw
    assert perfmodel.wgrad_loop_cycles(sh, False, False, read_out=multi) == (
        c.loop_trips - nw + perfmodel.wgrad_update_cycles(sh, False, False))
    assert perfmodel.wgrad_sweep_ddr(sh, n) == c.x_bytes + c.g_bytes
    # g comes once per group of columns; x once per group of rows, as the rows each chunk reaches
    groups = em.wgrad_groups(sh, n)
    col_groups = len({(j0, j1) for _, _, j0, j1 in groups})
    assert c.g_bytes == 2 * n * sh.ho * sh.wo * sh.co * col_groups
    assert c.x_bytes >= (len(groups) // col_groups) * n * sh.ci * sh.h * sh.w * (sh.stride == 1 or sh.k == 3)


def test_the_cases_cover_the_layouts_they_name():
    """Each case above is the layout its comment names (a guard against a silent change of the plan)."""
    groups = [em.wgrad_groups(sh, len(s) if s is not None else None) for sh, s in CASES]
    assert [len(g) for g in groups] == [1, 1, 1, 2, 1, 4, 2, 4, 2]
    assert groups[5][0][3] - groups[5][0][2] == (em.WGRAD_PART_WEIGHTS // (em.ROWS * em.COLS)) * em.COLS
    sh8 = CASES[8][0]
    assert em.wgrad_plan(sh8)[1] < sh8.ci * 9 and em.wgrad_plan(sh8)[0] >= sh8.co   # split by x, not rows
    sh4 = CASES[4][0]
    assert em.chunk_slots(sh4, 0, 256) == 9 and em.chunk_slots(sh4, 256, 512) == 10   # the halo


def test_the_chunk_buffers_declared_are_the_ones_fit_counts():
    """The constants of hls/include/e2t_passes.h are engine_map's, and perfmodel.wgrad_bram36
    (fpga/fit.py's row) counts the arrays e2t_engine declares: x 18 banks of 2 x 256 words of
    72 bits (a BRAM36 each), g 8 banks of 2 x 512 words of 64 bits (two each)."""
    src = (REPO / "hls" / "include" / "e2t_passes.h").read_text()
    const = {k: int(v) for k, v in re.findall(r"constexpr int (\w+) = (\d+);", src)}
    assert (const["CHUNK"], const["X_BANKS"], const["X_WORDS"], const["G_ROWS"], const["X_1X1_CYCLES"]) == (
        em.WGRAD_CHUNK, em.WGRAD_X_BANKS, em.WGRAD_X_WORDS, em.WGRAD_G_ROWS, em.WGRAD_1X1_CYCLES)
    top = (REPO / "hls" / "src" / "e2t_engine.cpp").read_text()
    assert "XWord xs[e2t::wgrad::X_BANKS][2 * e2t::wgrad::X_WORDS]" in top
    assert "word_t gs[e2t::R][2 * e2t::wgrad::G_WORDS]" in top
    b = perfmodel.wgrad_bram36()
    assert (b["x_chunks"], b["g_chunks"], b["chunks"]) == (18, 16, 34)
    # the feeder is handed the buffers, never a DDR pointer: it cannot read DDR beat by beat
    decl = re.search(r"void feed\(psg::stream<eng::Beat> &in, const XWord xs[^;]*;", src).group(0)
    assert "uint8_t *" not in decl and "int16_t *" not in decl


def _wide_1x1(n: int = 1) -> ConvShape:
    # 1x1, stride 2, 1000 wide: a chunk of 256 positions straddles two output rows, which reach
    # three input rows (one staged row a logical bank) of 143 words: a block's 9 channel pairs
    # need 1287 words, over a logical bank's 768
    return ConvShape(n, 18, 8, 1000, 1, 1, 2, 0)


def test_a_chunk_whose_rows_do_not_fit_is_refused_alike(csim_lib):
    """The host check (so golden and every backend) and the kernel (status 1, nothing written)
    refuse the same shape; a 3x3 layer as wide as ConvShape allows fits (in channel pairs)."""
    s = _wide_1x1()
    with pytest.raises(ShapeError, match=r"3 rows of 1000 codes, 143 words a channel pair, and a 1x1 block's 18 "
                                         r"channels need 1287.*about 595 columns or fewer"):
        check_wgrad_stage(s)
    check_wgrad_stage(ConvShape(1, 18, 8, 595, 1, 1, 2, 0))
    with pytest.raises(ShapeError):
        check_wgrad_stage(ConvShape(1, 18, 8, 596, 1, 1, 2, 0))
    for k, stride in ((3, 1), (3, 2)):
        check_wgrad_stage(ConvShape(2, 64, 1024, 1024, 8, k, stride, 1))
    x = np.zeros(s.x_shape, np.uint8)
    g = np.zeros(s.y_shape, np.int16)
    wm = np.full(s.w_shape, 1000, np.int32)
    with pytest.raises(ShapeError, match="x chunk buffer"):
        golden.conv_bwd_weight_psg(x, g, wm, stride=2, beta_q=3277, lr_q=9)
    lib = csim_lib
    lib.e2t_engine.argtypes = ([ctypes.c_int] + [ctypes.c_void_p] * 12 + [ctypes.c_int] * 17
                               + [ctypes.c_void_p] * 9 + [ctypes.c_int] * 14)
    lib.e2t_engine.restype = ctypes.c_int
    sign = np.full(s.w_shape, 5, np.int8)
    smp = np.zeros(1, np.int32)
    p = lambda a: a.ctypes.data                                       # noqa: E731
    status = lib.e2t_engine(ki.PASSES["conv_bwd_weight_psg"].op, p(x), None, None, None, p(g), None, p(wm),
                            p(sign), p(np.zeros(s.w_shape, np.uint8)), p(np.zeros(wm.size, np.int32)),
                            p(np.zeros(8, np.int64)), p(smp), 1, s.n, s.ci, s.h, s.w, s.co, s.k, s.stride, s.pad,
                            1, 0, 0, 1, 0, 3277, 9, 0, *NO_BLOCK)
    assert status == 1 and (sign == 5).all() and (wm == 1000).all()


def test_the_sweeps_cycles_hide_the_staging_under_the_calls_where_it_fits():
    """Each call lasts the longest of its beats, its stagers' share of the next chunk and its
    output stage (the call before's rows into the partial sums: 8 row reads and 18 weights a row,
    a weight a cycle, fewer than a full chunk's 256 beats); on the ResNet-20 CIFAR layers the
    staging never outlasts a call, so the sweep costs its calls, each group's flush call (its
    output stage) and the first chunk's staging."""
    gather = em.gather_trips()
    for _, sh in perfmodel.resnet20_cifar(64):
        st = em.wgrad_staging(sh)
        calls = [s.p1 - s.p0 for s in em.wgrad_steps(sh) for _ in range(s.blocks)]
        assert max(t - (b + em.HLS_CALL_OVERHEAD) for b, t in zip(calls, st["per_call"])) <= 0
        assert set(st["per_call_out"]) <= {0, gather} and st["flush_out"] == [gather] * em.weight_groups(sh)
        assert perfmodel.wgrad_sweep_cycles(sh) == st["prologue"] + gather * em.weight_groups(sh) + sum(
            max(b + em.HLS_CALL_OVERHEAD, o) for b, o in zip(calls, st["per_call_out"]))
    # a layer of one block a chunk: its one call stages the next chunk's g of 8 channels (8 x 64
    # words) and x rows, longer than its 256 beats, so the stagers set the pace
    sh = ConvShape(2, 2, 32, 32, 8, 3, 1, 1)
    st = em.wgrad_staging(sh)
    assert min(st["per_call"][:-1]) == 8 * 64 > 256 + em.HLS_CALL_OVERHEAD and st["per_call"][-1] == 0
    assert perfmodel.wgrad_sweep_cycles(sh) == st["prologue"] + gather + sum(max(256 + em.HLS_CALL_OVERHEAD, t)
                                                                             for t in st["per_call"])
