"""Tally of the fabric calls the trainer made: counts, MACs, PSG statistics and their ``Work``.

Each call's work comes from ``core.call_price`` (the training engine's model of a conv pass, with
the weight gradient's own decisions: ``call_work``; of a block operation: ``block_work``), the
one place that knows what a fabric call costs, so the trainer's modelled time and energy agree
with the simulated board's. Only calls that ran are tallied: a skipped batch or block adds
nothing.
"""
from __future__ import annotations

from collections import Counter, defaultdict

from ..core.shapes import ConvShape
from ..core.work import Work

try:  # the performance model is a sibling module of core; import it once
    from ..core.call_price import block_work as _block_work
    from ..core.call_price import call_work as _call_work
except ImportError:  # pragma: no cover - only while the tree is incomplete
    _call_work = _block_work = None


# what core.overlap.Timeline needs to know of a kernel: which pass it is
_PASS_KIND = {"conv_bwd_data": "bwd_data", "conv_bwd_weight_psg": "wgrad"}


class KernelTally:
    def __init__(self, work: Work | None = None, timeline=None, side_work=None, waits=None):
        self.work = work if work is not None else Work()
        self.timeline = timeline                         # core.overlap.Timeline of the step, or None
        # nn_layers.ArmTally whose deferred side work runs while each tallied call keeps the
        # fabric busy (its ``run_while_fabric_busy``), or None
        self.side_work = side_work
        self.calls: Counter = Counter()                  # kernel -> calls
        self.macs: Counter = Counter()                   # kernel -> MACs of the samples processed
        self.sample_passes: Counter = Counter()          # kernel -> samples processed
        self.predicted: Counter = Counter()              # layer -> weights decided by the predictor
        self.weights: Counter = Counter()                # layer -> weights updated (per call)
        self.per_layer_calls: dict[str, Counter] = defaultdict(Counter)
        # "layer/kernel" -> modelled fabric seconds of its calls (the call's own time, not the
        # ARM side work run under it): where the fabric's time goes
        self.fabric_s: Counter = Counter()
        # ``waits()``: the backend's measured waits of the calls made since it was last asked
        # (PynqBackend.take_waits), or None; each tallied call takes its own, by the same key
        self._take_waits = waits
        self.fabric_wall_s: Counter = Counter()
        self.unmatched_waits = 0                         # waits that no single tallied call took (a bug if not 0)

    @property
    def modelled(self) -> bool:
        """True when the performance model priced the calls (time and energy are available)."""
        return _call_work is not None

    def kernel(self, kernel: str, shape: ConvShape, n_active: int, *, n_predicted: int = 0,
               x_unsigned: bool = True, layer: str = "", n_weights: int = 0,
               predictor_on: bool = True, predicted=None, bn_sums: bool = False,
               w_sums: bool = False) -> None:
        """One call that ran. ``predicted``: the weight gradient's per-weight decisions (its
        output), which say which blocks its exact sweep ran."""
        key = f"{layer or '?'}/{kernel}"               # the profile's item
        self.calls[kernel] += 1
        self.per_layer_calls[layer][kernel] += 1
        self._wall(key)
        self.macs[kernel] += shape.macs(n_active)
        self.sample_passes[kernel] += int(n_active)
        if kernel == "conv_bwd_weight_psg":
            self.predicted[layer] += int(n_predicted)
            self.weights[layer] += int(n_weights)
        if _call_work is not None:
            kw = ({"predictor_on": predictor_on, "predicted": predicted if predictor_on else None,
                   "n_predicted": int(n_predicted)} if kernel == "conv_bwd_weight_psg"
                  else {k: True for k, on in (("bn_sums", bn_sums), ("w_sums", w_sums)) if on})
            w = _call_work(kernel, shape, int(n_active), **kw)
            self.work += w
            self.fabric_s[key] += w.seconds
            self._on_fabric(w.seconds, _PASS_KIND.get(kernel, ""))

    def block(self, op: str, nchw: tuple, n_listed: int, *, residual: bool = False,
              two_sources: bool = False, gate: bool = False, layer: str = "") -> None:
        """One block-operation call that ran (``core.block_ops``; ``nchw``: its tensor, all
        samples; ``n_listed``: the samples it ran BN for; ``layer``: its BN's name)."""
        key = f"{layer or '?'}/{op}"
        self.calls[op] += 1
        self.sample_passes[op] += int(n_listed)
        self._wall(key)
        if _block_work is not None:
            w = _block_work(op, tuple(int(v) for v in nchw), int(n_listed), residual=residual,
                            two_sources=two_sources, gate=gate)
            self.work += w
            self.fabric_s[key] += w.seconds
            self._on_fabric(w.seconds, "")

    def _wall(self, key: str) -> None:
        """The call just tallied takes the backend's measured wait of the call it made (none when
        the backend made no call: an empty sample list)."""
        if self._take_waits is None:
            return
        got = self._take_waits()
        if len(got) == 1:
            self.fabric_wall_s[key] += got[0]
        else:
            self.unmatched_waits += len(got)

    def _on_fabric(self, seconds: float, kind: str) -> None:
        """The call's fabric segment, then the side work that runs while it is busy."""
        if self.timeline is None:
            return
        self.timeline.add("fabric", seconds, kind)
        if self.side_work is not None:
            self.side_work.run_while_fabric_busy(self.timeline.free_s("fabric"))

    def predicted_fraction(self) -> dict[str, float]:
        """Fraction of weight updates decided by the MSB predictor, per layer and overall."""
        out = {k: self.predicted[k] / self.weights[k] for k in sorted(self.weights) if self.weights[k]}
        tot = sum(self.weights.values())
        out["overall"] = sum(self.predicted.values()) / tot if tot else 0.0
        return out

    def to_dict(self) -> dict:
        return {"calls": dict(self.calls), "macs": dict(self.macs),
                "sample_passes": dict(self.sample_passes),
                "predicted_fraction": self.predicted_fraction()}
