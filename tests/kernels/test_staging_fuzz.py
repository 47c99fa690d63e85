"""The forward's x buffer and the input gradient's g buffer on random layouts, past the hand-picked
ones of test_fwd_staging.py and test_bwd_staging.py: rows from one column to wider than a block,
both kernel sizes and strides, sample lists. With the checks on (the stagers' trip loops, the
code Vitis HLS builds, and a check of every feeder read against what the stager wrote): no read
finds another segment's or step's code, the C simulation's counters are the model's
(engine_map.fwd_staging / bwd_staging), and the results are golden's."""
from __future__ import annotations

import os

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from e2train.core import engine_map as em
from e2train.core import golden
from e2train.core.fixedpoint import Dyadic
from e2train.core.shapes import ConvShape

SETTINGS = settings(max_examples=int(os.environ.get("E2TRAIN_FUZZ_EXAMPLES", "40")), deadline=None,
                    suppress_health_check=[HealthCheck.function_scoped_fixture])


@st.composite
def layouts(draw):
    k, stride = draw(st.sampled_from((1, 3))), draw(st.sampled_from((1, 2)))
    n, h, w = draw(st.integers(1, 4)), draw(st.integers(1, 20)), draw(st.sampled_from((1, 2, 3, 5, 8, 17, 40)))
    ci, co = draw(st.integers(1, 24)), draw(st.integers(1, 20))
    try:
        sh = ConvShape(n, ci, h, w, co, k, stride, k // 2)
    except ValueError:
        sh = ConvShape(n, ci, max(h, 3), max(w, 3), co, k, stride, k // 2)
    samples = draw(st.one_of(st.none(), st.lists(st.integers(0, n - 1), unique=True, min_size=1, max_size=n)))
    return sh, samples, draw(st.integers(0, 2**16))


def _checked(run, counters):
    from e2train.core import csim
    csim.staging_check(True)
    try:
        got = run(csim)
        return got, counters(csim)
    finally:
        csim.staging_check(False)


def _agree(c, m) -> None:
    assert c.bank_misses == 0
    assert (c.x_bytes, c.trips, c.prologue, c.staging_calls, c.call_trips) == (
        m["x_bytes"], m["trips"], m["prologue"], m["staging_calls"], m["call_trips"])


@SETTINGS
@given(case=layouts())
def test_the_forward_stages_what_the_model_says(csim_lib, case):
    sh, samples, seed = case
    rng = np.random.default_rng(seed)
    x = rng.integers(0, 256, sh.x_shape).astype(np.uint8)
    w = rng.integers(-128, 128, sh.w_shape).astype(np.int8)
    kw = dict(stride=sh.stride, pad=sh.pad, samples=samples)
    m = Dyadic.from_float(0.003)
    got, c = _checked(lambda cs: cs.conv_fwd(x, w, None, m, **kw), lambda cs: cs.fwd_staging())
    assert np.array_equal(got, golden.conv_fwd(x, w, None, m, **kw))
    _agree(c, em.fwd_staging(sh, len(samples) if samples is not None else sh.n))


@SETTINGS
@given(case=layouts())
def test_the_input_gradient_stages_what_the_model_says(csim_lib, case):
    sh, samples, seed = case
    rng = np.random.default_rng(seed)
    g = rng.integers(-4000, 4000, sh.y_shape).astype(np.int16)
    w = rng.integers(-128, 128, sh.w_shape).astype(np.int8)
    kw = dict(in_hw=(sh.h, sh.w), stride=sh.stride, pad=sh.pad, samples=samples)
    m = Dyadic.from_float(0.01)
    got, c = _checked(lambda cs: cs.conv_bwd_data(g, w, m, **kw), lambda cs: cs.bwd_staging())
    assert np.array_equal(got, golden.conv_bwd_data(g, w, m, **kw))
    _agree(c, em.bwd_staging(sh, len(samples) if samples is not None else sh.n))
