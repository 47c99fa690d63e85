"""PynqBackend's step arena: once a step has begun, the fabric's activation-sized outputs stay in
the buffers it wrote them to and go back in without a copy, bit-exact to the golden models
through the simulated board's non-coherent buffers (a missing flush or invalidate reads stale
data there, as on a board)."""
from __future__ import annotations

import numpy as np
import pytest

from e2train.core import golden
from e2train.core.fixedpoint import Dyadic
from e2train.core.shapes import ConvShape

SHAPE = ConvShape(4, 3, 6, 6, 5, 3, 1, 1)
MULT = Dyadic(3 << 12, 24)


def _data(rng):
    x = rng.integers(0, 256, SHAPE.x_shape).astype(np.uint8)
    w = rng.integers(-128, 128, SHAPE.w_shape).astype(np.int8)
    return x, w


def _block_step(be, x, w, samples):
    """One forward piece of a block: conv -> BN/ReLU on its output -> the next conv's input."""
    y = be.conv_fwd(x, w, None, MULT, pad=1, samples=samples)
    a, b = np.full(SHAPE.co, 300, np.int64), np.full(SHAPE.co, 1 << 10, np.int64)
    o, pooled, vmax = be.bn_act(y, a, b, 10, samples=samples)
    return y, o, pooled, vmax


def _golden_block_step(x, w, samples):
    y = golden.conv_fwd(x, w, None, MULT, pad=1, samples=samples)
    from e2train.core import block_ops
    a, b = np.full(SHAPE.co, 300, np.int64), np.full(SHAPE.co, 1 << 10, np.int64)
    return (y, *block_ops.bn_act(y, a, b, 10, samples=samples))


def test_outputs_go_back_in_without_a_copy_and_equal_golden(overlay, rng):
    be = overlay.backend()
    x, w = _data(rng)
    be.begin_step()
    y, o, pooled, vmax = _block_step(be, x, w, None)
    st = be.copy_stats()
    # y went into bn_act in place; x and w (made by the ARM) were copied in, y never copied out
    assert st["in_place"] == y.nbytes
    assert st["copied_in"] == x.nbytes + w.nbytes
    # y had no dirty line when it went back in (only the fabric wrote it): its flush was skipped;
    # o, a new buffer, was flushed once before the kernel wrote it
    assert st["flush_skipped"] == y.nbytes
    for got, want in zip((y, o, pooled, vmax), _golden_block_step(x, w, None)):
        assert np.array_equal(got, want)
    # o is the next conv's input, in place as well
    w2 = rng.integers(-128, 128, (SHAPE.co, SHAPE.co, 3, 3)).astype(np.int8)
    y2 = be.conv_fwd(o, w2, None, MULT, pad=1)
    assert np.array_equal(y2, golden.conv_fwd(o.copy(), w2, None, MULT, pad=1))
    assert be.copy_stats()["in_place"] == y.nbytes + o.nbytes


def test_a_later_step_reuses_the_buffers_and_allocates_nothing(overlay, rng):
    be, dev = overlay.backend(), overlay.device
    x, w = _data(rng)
    be.begin_step()
    y1, o1, *_ = _block_step(be, x, w, None)
    first = (y1.__array_interface__["data"][0], o1.__array_interface__["data"][0])
    live = len(dev._allocs)
    for step in range(3):
        x, w = _data(rng)
        be.begin_step()
        y, o, *_ = _block_step(be, x, w, None)
        assert (y.__array_interface__["data"][0], o.__array_interface__["data"][0]) == first
        assert len(dev._allocs) == live, f"step {step} allocated"
        for got, want in zip((y, o), _golden_block_step(x, w, None)):
            assert np.array_equal(got, want)


def test_rows_the_kernel_does_not_write_read_as_zero_in_a_reused_buffer(overlay, rng):
    be = overlay.backend()
    x, w = _data(rng)
    be.begin_step()
    _block_step(be, x, w, None)                          # every row written: the buffers hold data
    be.begin_step()
    samples = [2, 0]
    got = _block_step(be, x, w, samples)
    want = _golden_block_step(x, w, samples)
    for g, wv in zip(got, want):
        assert np.array_equal(g, wv)
    assert not got[0][[1, 3]].any() and not got[1][[1, 3]].any()
    # the zeros reach the fabric too: the next call reads them from DDR after the driver's flush
    g = rng.integers(-3000, 3000, SHAPE.y_shape).astype(np.int16)
    wm = rng.integers(-(1 << 20), 1 << 20, (SHAPE.co, SHAPE.co, 3, 3)).astype(np.int32)
    kw = dict(pad=1, beta_q=3277, lr_q=9, wd_q=0)
    r = be.conv_bwd_weight_psg(got[1], g, wm, **kw)
    assert np.array_equal(r.w_master, golden.conv_bwd_weight_psg(want[1], g, wm, **kw).w_master)


def test_the_backward_chain_stays_on_the_fabric(overlay, rng):
    """bn_bwd_reduce's g_m into bn_bwd_apply, its g_y into both conv backward passes: in place."""
    be = overlay.backend()
    x, w = _data(rng)
    be.begin_step()
    y, o, *_ = _block_step(be, x, w, None)
    g_a = rng.integers(-2000, 2000, o.shape).astype(np.int16)
    before = be.copy_stats()["in_place"]
    g_m, red, gate = be.bn_bwd_reduce(o, y, g_a, ma=1 << 10, shift=10)
    p, q, t = (np.full(SHAPE.co, v, np.int64) for v in (1 << 9, -(1 << 8), 1 << 11))
    g_y = be.bn_bwd_apply(g_m, y, p, q, t, 10)
    gx = be.conv_bwd_data(g_y, w, Dyadic(1 << 14, 24), in_hw=(6, 6), pad=1)
    assert be.copy_stats()["in_place"] - before == o.nbytes + y.nbytes + g_m.nbytes + y.nbytes + g_y.nbytes
    from e2train.core import block_ops
    want_gm, want_red, want_gate = block_ops.bn_bwd_reduce(o.copy(), y.copy(), g_a, ma=1 << 10, shift=10)
    want_gy = block_ops.bn_bwd_apply(want_gm, y.copy(), p, q, t, 10)
    assert np.array_equal(g_m, want_gm) and np.array_equal(red, want_red) and np.array_equal(gate, want_gate)
    assert np.array_equal(g_y, want_gy)
    assert np.array_equal(gx, golden.conv_bwd_data(want_gy, w, Dyadic(1 << 14, 24), in_hw=(6, 6), pad=1))


@pytest.mark.parametrize("cap", [0, 800])
def test_over_the_cap_or_before_a_step_the_outputs_are_copied(overlay, rng, cap):
    """Past the arena's cap (0: none; 800 B: y fits, o does not) outputs come from the role
    buffers, copied out, with the same results."""
    from e2train.device.backend_pynq import PynqBackend
    x, w = _data(rng)
    be = PynqBackend(overlay, arena_bytes=cap)
    be.begin_step()
    got = _block_step(be, x, w, [1, 3])
    for g, wv in zip(got, _golden_block_step(x, w, [1, 3])):
        assert np.array_equal(g, wv)
    st = be.copy_stats()
    assert st["arena_bytes"] <= cap
    assert st["in_place"] == (got[0].nbytes if cap else 0)
    fresh = overlay.backend()                         # no begin_step: role buffers, as before
    fresh_got = _block_step(fresh, x, w, [1, 3])
    assert all(np.array_equal(a, b) for a, b in zip(fresh_got, got))
    assert fresh.copy_stats()["in_place"] == 0 and fresh.copy_stats()["arena_buffers"] == 0


def test_a_callers_own_out_is_filled_as_before(overlay, rng):
    be = overlay.backend()
    x, w = _data(rng)
    be.begin_step()
    out = np.full(SHAPE.y_shape, 7, np.int8)
    got = be.conv_fwd(x, w, None, MULT, pad=1, samples=[0], out=out)
    assert got is out and np.array_equal(out, golden.conv_fwd(x, w, None, MULT, pad=1, samples=[0],
                                                              out=np.full(SHAPE.y_shape, 7, np.int8)))


def test_master_weights_get_a_buffer_of_their_own_updated_in_place(overlay, rng):
    """The first weight-gradient call copies the caller's master weights into a buffer of their
    own; its result is that buffer, and passing it back (the trainer's next step) updates it in
    place with no copy, step after step, equal to golden applied as many times."""
    be = overlay.backend()
    x, _ = _data(rng)
    g = rng.integers(-3000, 3000, SHAPE.y_shape).astype(np.int16)
    wm0 = rng.integers(-(1 << 20), 1 << 20, SHAPE.w_shape).astype(np.int32)
    kw = dict(pad=1, beta_q=3277, lr_q=9, wd_q=1 << 18)
    orig, want, w, copied = wm0.copy(), wm0.copy(), wm0, []
    for step in range(3):
        be.begin_step()
        before = be.copy_stats()
        r = be.conv_bwd_weight_psg(x, g, w, **kw)
        after = be.copy_stats()
        copied.append(after["copied_in"] - before["copied_in"] - x.nbytes - g.nbytes)
        want = golden.conv_bwd_weight_psg(x, g, want, **kw).w_master
        assert np.array_equal(r.w_master, want), f"step {step}"
        if step:
            assert np.shares_memory(r.w_master, w), "the master weights did not stay in their buffer"
        w = r.w_master
    assert copied == [wm0.nbytes, 0, 0]
    assert np.array_equal(wm0, orig), "the caller's first array was written"   # the kernel updated the copy
    assert be.copy_stats()["own_bytes"] == wm0.nbytes


def test_a_pinned_array_is_rewritten_by_the_arm_and_read_in_place(overlay, rng):
    """``pinned``: a buffer of its own that the ARM rewrites between calls (as the trainer
    re-derives a layer's int8 weights into it): each call reads the current contents in place
    (the driver's flush carries the ARM's writes to DDR), with no copy."""
    from e2train.core.fixedpoint import weight_codes
    be = overlay.backend()
    x, _ = _data(rng)
    pin = be.pinned(SHAPE.w_shape, np.int8)
    assert pin is not None and pin.dtype == np.int8 and pin.shape == SHAPE.w_shape
    for step in range(3):
        wm = rng.integers(-(1 << 20), 1 << 20, SHAPE.w_shape).astype(np.int32)
        codes, _ = weight_codes(wm, 20, out=pin)
        assert codes is pin and np.array_equal(pin, weight_codes(wm, 20)[0])
        be.begin_step()
        before = be.copy_stats()
        y = be.conv_fwd(x, pin, None, MULT, pad=1)
        assert be.copy_stats()["copied_in"] - before["copied_in"] == x.nbytes     # the weights: in place
        assert np.array_equal(y, golden.conv_fwd(x, pin.copy(), None, MULT, pad=1)), f"step {step}"
    from e2train.device.backend_pynq import PynqBackend
    assert PynqBackend(overlay, arena_bytes=100).pinned((200,), np.int8) is None     # past the cap: none


def test_the_cap_comes_from_the_board_command_and_a_bad_one_is_refused(tmp_path, capsys):
    from e2train.device.agent import add_arguments, open_board, run
    from e2train.device.backend_pynq import PynqBackend
    import argparse
    from e2train.device.agent import Agent
    board = open_board(None, simulated=True, arena_bytes=3 << 20)
    assert board.backend.arena_bytes == 3 << 20
    agent = Agent(tmp_path / "agent", simulated=True, arena_bytes=5 << 20)
    agent.cmd_flash()
    assert agent.board.backend.arena_bytes == 5 << 20
    p = argparse.ArgumentParser()
    add_arguments(p)
    assert run(p.parse_args(["--pty", "--sim", "--cma-arena-mb", "-1", "--data-dir", str(tmp_path)])) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--cma-arena-mb -1" in err[0] and "CMA" in err[0]
    with pytest.raises(ValueError, match="arena_bytes must be >= 0"):
        PynqBackend(board.backend.overlay, arena_bytes=-5)


def test_the_backward_of_each_block_reuses_the_buffers_of_the_block_two_before(overlay, rng):
    """backward_block: a block's backward outputs go to the pool the last block's did not use,
    so the last block's outputs (this block's inputs) stay intact while this block writes, and
    the block two before gives its buffers to this one."""
    be = overlay.backend()
    _, w = _data(rng)
    g = rng.integers(-3000, 3000, SHAPE.y_shape).astype(np.int16)
    m = Dyadic(1 << 14, 24)
    be.begin_step()
    outs, kept = [], []
    for block in range(3):
        be.backward_block()
        gx = be.conv_bwd_data(g, w, m, in_hw=(6, 6), pad=1)
        assert np.array_equal(gx, golden.conv_bwd_data(g, w, m, in_hw=(6, 6), pad=1))
        outs.append(gx)
        kept.append(gx.copy())
        g = rng.integers(-3000, 3000, SHAPE.y_shape).astype(np.int16)
    assert np.array_equal(outs[1], kept[1]), "the last block's output was overwritten"
    assert np.shares_memory(outs[2], outs[0]), "the block two before did not give its buffer"
    assert not np.shares_memory(outs[2], outs[1])


def test_a_buffer_unused_for_a_few_steps_goes_back(overlay, rng):
    from e2train.device.backend_pynq import ARENA_AGE_STEPS
    be = overlay.backend()
    x, w = _data(rng)
    be.begin_step()
    be.conv_fwd(x, w, None, MULT, pad=1)            # once, as a layer's first step calibrates
    _block_step(be, x, w, None)
    held = be.copy_stats()["arena_bytes"]
    for step in range(ARENA_AGE_STEPS):           # unused this many steps: still held
        be.begin_step()
        _block_step(be, x, w, None)
        assert be.copy_stats()["arena_bytes"] == held, f"step {step}: a buffer went too early"
    be.begin_step()
    _block_step(be, x, w, None)
    y_bytes = int(np.prod(SHAPE.y_shape))
    assert be.copy_stats()["arena_bytes"] == held - y_bytes    # the one-off output's buffer went back


def test_master_buffers_nobody_holds_go_back(overlay, rng):
    """A caller that passes a new master-weight array each call (not the view it got back)
    does not take a buffer a call: one nobody holds a view of goes back."""
    be = overlay.backend()
    x, _ = _data(rng)
    g = rng.integers(-3000, 3000, SHAPE.y_shape).astype(np.int16)
    kw = dict(pad=1, beta_q=3277, lr_q=9, wd_q=0)
    for step in range(4):
        be.begin_step()
        wm = rng.integers(-(1 << 20), 1 << 20, SHAPE.w_shape).astype(np.int32)
        r = be.conv_bwd_weight_psg(x, g, wm, **kw)
        assert np.array_equal(r.w_master, golden.conv_bwd_weight_psg(x, g, wm, **kw).w_master)
        if step == 0:
            kept = [r.w_master, r.w_master.copy()]     # a view held: its buffer stays as it was
        del r
    assert be.copy_stats()["own_bytes"] == 2 * wm.nbytes     # the held one and the last one
    assert np.array_equal(kept[0], kept[1])
