"""Work-skipping methods other than E2-Train's own, each a policy of the torch trainer.

``REGISTRY`` maps a method's name to a :class:`MethodSpec`: how to build its policy, the
unit it skips (its granularity), and how to build its random control at a measured ratio.
Every policy here reports what it skipped with ``skip_ratios() -> {unit: fraction}``.

| name | skips | unit |
|---|---|---|
| gskip | weight gradients of a leading prefix of layers (backward stops early) | layer-step |
| dh, ddh, sddh | backward of confident samples (after a decision forward) | sample |
| hsdh, hsddh, cdh | forward and backward of samples / classes confident last pass | sample |
| learn-drop | forward and backward of dropped leading units (cached features) | layer-step |
| freeze | backward of the same units (they still run forward) | layer-step |
| wus, wus-lr | weight gradients and updates in bias-only epochs | weight-step |
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from ..policy import Policy
from .deadhorse import POLICIES as DEADHORSE_POLICIES
from .deadhorse import DeadHorsePolicy, RandomSamplePolicy
from .gskip import GSkipConfig, GSkipPolicy, RandomPrefixSkip
from .learn_drop import LearnDropPolicy
from .wus import RandomBiasEpochs, WUSConfig, WUSPolicy


@dataclass(frozen=True)
class MethodSpec:
    name: str
    skip_unit: str
    summary: str
    factory: Callable[..., Policy]                        # factory(seed=0, **options)
    random_control: Callable[..., Policy]                 # (measured ratio, seed, **control options) -> policy
    # what the harness's random control matches: "unit" (the method's own skip unit and
    # ratio) or "workload" (random mini-batch omission at the share of the baseline's
    # modelled work the method saved: paper 000's control for GSkip, its Table 2)
    control_match: str = "unit"


def _gskip(seed: int = 0, **options) -> Policy:
    return GSkipPolicy(GSkipConfig(**options))


def _deadhorse(policy: str) -> Callable[..., Policy]:
    def make(seed: int = 0, **options) -> Policy:
        return DeadHorsePolicy(policy, seed=seed, **options)
    return make


def _learn_drop(freeze: bool) -> Callable[..., Policy]:
    def make(seed: int = 0, **options) -> Policy:
        return LearnDropPolicy(freeze=freeze, **options)
    return make


def _wus(trigger: str) -> Callable[..., Policy]:
    def make(seed: int = 0, **options) -> Policy:
        return WUSPolicy(WUSConfig(trigger=trigger, **options))
    return make


def random_layer_prefix(ratio: float, seed: int = 0) -> Policy:
    return RandomPrefixSkip(ratio, seed)


def random_samples(ratio: float, seed: int = 0, epoch_rates=None, decision_forward: bool = False) -> Policy:
    """Uniform at ``ratio``, or segment-wise at a DeadHorse run's ``epoch_rates``; with the
    decision forward of a reactive policy when ``decision_forward``."""
    return RandomSamplePolicy(list(epoch_rates) if epoch_rates else ratio, seed, decision_forward)


def random_bias_epochs(ratio: float, seed: int = 0) -> Policy:
    return RandomBiasEpochs(ratio, seed)


# unit -> random control at that unit, for the harness's "random-skip" runs
RANDOM_CONTROLS: dict[str, Callable[[float, int], Policy]] = {
    "layer-step": random_layer_prefix,
    "sample": random_samples,
    "weight-step": random_bias_epochs,
}

_DH_SUMMARY = {
    "dh": "DeadHorse: skip the backward of correct, confident samples",
    "ddh": "DeadHorse: skip the backward of confident samples",
    "sddh": "DeadHorse: skip confident samples' backward with probability = confidence",
    "hsdh": "DeadHorse: skip samples correct and confident last pass (stochastic), no forward",
    "hsddh": "DeadHorse: skip samples confident last pass (stochastic), no forward",
    "cdh": "DeadHorse: skip whole classes confident last pass, no forward",
}

REGISTRY: dict[str, MethodSpec] = {
    "gskip": MethodSpec("gskip", "layer-step", "GSkip: layer-wise gradient skipping", _gskip,
                        random_layer_prefix, control_match="workload"),
    **{p: MethodSpec(p, "sample", _DH_SUMMARY[p], _deadhorse(p), random_samples) for p in DEADHORSE_POLICIES},
    "learn-drop": MethodSpec("learn-drop", "layer-step", "Learn&Drop: drop settled leading units, cache features",
                             _learn_drop(False), random_layer_prefix, control_match="workload"),
    "freeze": MethodSpec("freeze", "layer-step", "freezing: Learn&Drop's layer choice, no cache",
                         _learn_drop(True), random_layer_prefix, control_match="workload"),
    "wus": MethodSpec("wus", "weight-step", "WUS: bias-only epochs once validation accuracy settles",
                      _wus("patience"), random_bias_epochs),
    "wus-lr": MethodSpec("wus-lr", "weight-step", "WUS+LR: as WUS, full epoch on learning-rate change",
                         _wus("lr"), random_bias_epochs),
}


def make(name: str, seed: int = 0, **options) -> Policy:
    """The policy of a registered method, with clear errors for unknown names or options."""
    spec = REGISTRY.get(name)
    if spec is None:
        raise ValueError(f"unknown method {name!r}; registered: {', '.join(REGISTRY)}")
    try:
        return spec.factory(seed=seed, **options)
    except TypeError as e:
        raise ValueError(f"bad options for {name}: {e}") from None


__all__ = ["REGISTRY", "RANDOM_CONTROLS", "MethodSpec", "make"]
