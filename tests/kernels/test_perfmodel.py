"""The performance model's limits come from one source (the C++ header is generated from the
model), and the weight-gradient kernel streams the engine_map calls the model counts."""
from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

from e2train.core import perfmodel as pm
from e2train.core.shapes import ConvShape

REPO = Path(__file__).resolve().parents[2]


def test_header_is_generated_from_the_model():
    text = (REPO / "hls/include/e2t_tiles.h").read_text()
    assert text == pm.header_text(), "regenerate: python -m e2train.core.perfmodel --header > hls/include/e2t_tiles.h"
    defined = dict(re.findall(r"#define (E2T_\w+) (\d+)", text))
    assert {k: int(v) for k, v in defined.items()} == pm.CONSTANTS


# --- the weight-gradient dataflow -------------------------------------------------------

DIGITS = [ConvShape(64, 8, 8, 8, 32, 3, 1, 1), ConvShape(64, 32, 4, 4, 32, 3, 1, 1)]


def _psg_run(sh: ConvShape, beta_q: int, seed: int = 0):
    """The kernel on heavy-tailed gradients (most small, a few large, as in training), and
    the model's keyword arguments from its own counters."""
    from e2train.core import csim
    rng = np.random.default_rng(seed)
    x = rng.integers(0, 256, sh.x_shape).astype(np.uint8)
    g = np.clip(rng.standard_t(3, sh.y_shape) * 800, -32768, 32767).astype(np.int16)
    wm = np.zeros(sh.w_shape, np.int32)
    r, st = csim.conv_bwd_weight_psg_stats(x, g, wm, stride=sh.stride, pad=sh.pad, beta_q=beta_q, lr_q=1)
    return r, st, dict(predictor_on=beta_q != 0)


@pytest.mark.parametrize("sh", DIGITS[:1] + [ConvShape(3, 5, 9, 7, 11, 3, 2, 1), ConvShape(2, 40, 4, 4, 70, 3, 1, 1)],
                         ids=str)
def test_psg_kernel_streams_the_engine_map_calls(csim_lib, sh):
    """The weight-gradient kernel's engine calls are engine_map's: whatever beta_q, one sweep
    streams every block over every position (engine_map.call_beats), no block twice, with the
    exact and the predictor MACs of every weight on the same beats."""
    from e2train.core import engine_map as em
    calls = em.call_beats("wgrad", sh)
    blocks = -(-sh.co // em.ROWS) * -(-(sh.ci * sh.k * sh.k) // em.COLS)
    for beta_q in (0, 8000):
        r, st, _ = _psg_run(sh, beta_q)
        assert st.decide_beats == sum(n * b for n, b in calls)
        assert st.exact_terms == st.predict_terms == r.sign.size * st.beats_per_tile
        assert st.tiles_skipped == blocks
