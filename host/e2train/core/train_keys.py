"""The training config's vocabulary, shared by both trainers, and the one validator they call.

e2train has two trainers: the board's numpy trainer (``e2train train``, ``device.trainer``)
and the torch reference (``e2train torch-train``, ``torch.trainer``). A config is one flat
table of keys (JSON over the link, JSON or TOML in a file). Every key is declared once here,
with its type, unit, allowed values, default and the trainers that implement it; the same
concept has the same name in both (the E²-Train paper's terms, the torch trainer's names where
it had the richer set). docs/config.md is this table, written by ``config_table_md`` (a test
keeps the two identical).

``check_config(d, trainer)`` is the validator both trainers call (stdlib only, so the board
runs it too). It returns the complete canonical config and raises :class:`ConfigError` with
one line naming the key, the value and the fix:

* a key the other trainer has is refused naming that trainer (not "unknown key");
* a value only the other trainer implements (``schedule = "step"`` on the device) likewise;
* an unknown key gets "did you mean" when a known key is close;
* the board trainer's old key names (``depth``, ``psg_beta``, ``gate_target``, ...) still load:
  configs, checkpoints and run records written with them, and the JSON an older host sends a
  board, must keep working, so they are mapped to the new names (``OLD_KEYS``, one table) with
  a one-line note instead of being refused.
"""
from __future__ import annotations

import difflib
import json
import math
import warnings
from dataclasses import dataclass, field
from typing import Any, Callable

from .energy import ARM_OPS_PER_SECOND
from .fixedpoint import ACT_SCALE_DEFAULT, ACT_SCALE_POLICIES
from .model_names import MODEL_FORMS, parse_model, resnet_cifar_name
from .shapes import MAX_BATCH, MAX_DIM

DEVICE, TORCH = "device", "torch"
TRAINERS = (DEVICE, TORCH)
TRAINER_COMMANDS = {DEVICE: "the device trainer (e2train train)", TORCH: "the torch trainer (e2train torch-train)"}
# ResNet-CIFAR depths the device trainer builds (6n+2); its stage widths are (w, 2w, 4w)
DEVICE_DEPTHS = (8, 110)
# the precisions of the torch trainer; the device's kernels implement the two 8-bit ones
PRECISIONS = ("fp32", "signsgd", "int8_fp32grad", "int8_int16grad", "psg")
SCHEDULES = ("cosine", "constant", "step", "cyclic")
LR_STEP_UNITS = ("epoch", "iteration")
SLU_COSTS = ("flops", "target")
GATE_CELLS = ("lstm", "gru")
# what a shifted training image shows where it moved away from (device: smd.batch_images;
# torch: data.augment, the same rule)
AUGMENT_PADS = ("mean", "edge", "min")


class ConfigError(ValueError):
    """A configuration that cannot run; the message names the key and what is allowed."""


class RenamedKeyWarning(FutureWarning):
    """A config used an old key name; it loaded under the new one (the message says which)."""


def bad(key: str, value: Any, rule: str, now: str | None = None) -> ConfigError:
    """The one message format: ``config 'key' = value: rule`` (``now``: an old key's new name)."""
    return ConfigError(f"config '{key}'{f' (now {now!r})' if now else ''} = {value!r}: {rule}")


@dataclass(frozen=True)
class Range:
    lo: float | None = None
    hi: float | None = None
    lo_open: bool = False
    hi_open: bool = False

    def contains(self, v: float) -> bool:
        if self.lo is not None and (v < self.lo or (self.lo_open and v == self.lo)):
            return False
        return not (self.hi is not None and (v > self.hi or (self.hi_open and v == self.hi)))

    def text(self) -> str:
        if self.hi is None:
            return f"{'>' if self.lo_open else '>='} {_num(self.lo)}"
        if self.lo is None:
            return f"{'<' if self.hi_open else '<='} {_num(self.hi)}"
        return f"in {'(' if self.lo_open else '['}{_num(self.lo)}, {_num(self.hi)}{')' if self.hi_open else ']'}"


def _num(v: float) -> str:
    return str(int(v)) if float(v).is_integer() and abs(v) < 1e6 else f"{v:g}"


@dataclass(frozen=True)
class Key:
    """One config key: what it means and what it accepts, for each trainer that has it."""
    name: str
    kind: type                                  # bool, int, float or str
    help: str
    default: Any = None                         # for every trainer, unless ``defaults`` says otherwise
    trainers: tuple[str, ...] = TRAINERS
    unit: str = ""
    choices: tuple | None = None                # the allowed values
    only: dict[str, tuple] = field(default_factory=dict)       # trainer -> the choices it implements
    range: Range | None = None
    what: str = ""                              # what a value is ("a learning rate "), in messages
    optional: bool = False                      # None (unset) allowed
    defaults: dict[str, Any] = field(default_factory=dict)     # trainer -> its own default
    check: Callable[[Any, str], str | None] | None = None      # extra rule: the broken rule's text, or None
    doc_allowed: str = ""                       # the allowed values in words, where ``check`` decides

    def default_for(self, trainer: str) -> Any:
        return self.defaults.get(trainer, self.default)

    def allowed_text(self, trainer: str | None = None) -> str:
        """What the key accepts, for a message or the docs table."""
        if self.choices is not None:
            vals = self.only.get(trainer, self.choices) if trainer else self.choices
            return "one of " + ", ".join(str(v) for v in vals)
        if self.kind is bool:
            return "true or false"
        return (self.what + self.range.text()) if self.range else ""


def _model_rule(v: str, trainer: str) -> str | None:
    try:
        kind, arg = parse_model(v)
    except ValueError:
        return f"unknown model {v!r}: use {MODEL_FORMS}"
    if trainer == DEVICE and not (kind == "resnet" and DEVICE_DEPTHS[0] <= arg <= DEVICE_DEPTHS[1]):
        return (f"the device trainer builds ResNet-CIFAR only: resnet<6n+2> of depth {DEVICE_DEPTHS[0]} to "
                f"{DEVICE_DEPTHS[1]} (resnet8, resnet14, resnet20, ..., resnet110); {v!r} runs on the torch trainer")
    return None


def _width_rule(v: int, trainer: str) -> str | None:
    return None if 4 * v <= MAX_DIM else f"4*width must be <= {MAX_DIM} channels (the kernels' limit)"


def _batch_rule(v: int, trainer: str) -> str | None:
    return f"must be <= {MAX_BATCH} on the device (the kernels' limit)" if trainer == DEVICE and v > MAX_BATCH else None


def _device_rule(v: str, trainer: str) -> str | None:
    return None if v in ("auto", "cpu") or v.startswith("cuda") else "must be auto, cpu or cuda[:N]"


def lr_step_points(text: str) -> list[float]:
    """``lr_steps`` ('32000,48000') as increasing positive numbers (ValueError otherwise)."""
    pts = [float(t) for t in text.replace(" ", "").split(",") if t]
    if any(b <= a for a, b in zip(pts, pts[1:])) or any(p <= 0 for p in pts):
        raise ValueError(text)
    return pts


def _lr_steps_rule(v: str, trainer: str) -> str | None:
    try:
        lr_step_points(v)
    except ValueError:
        return "must be comma-separated increasing numbers (e.g. '32000,48000')"
    return None


_UNIT = Range(0, 1, hi_open=True)            # [0, 1)
_OPEN_UNIT = Range(0, 1, lo_open=True)       # (0, 1]
_LR = Range(0, 10, lo_open=True, hi_open=True)
_COUNT = Range(1)
D, T = (DEVICE,), (TORCH,)

KEYS: tuple[Key, ...] = (
    # -- model ---------------------------------------------------------------------------
    Key("model", str, "the network: resnet<6n+2> (ResNet-CIFAR), mobilenetv2[_<width>] or another paper's model",
        "resnet8", check=_model_rule, doc_allowed=f"{MODEL_FORMS} (device: resnet<6n+2>, depth {DEVICE_DEPTHS[0]} "
        f"to {DEVICE_DEPTHS[1]})"),
    Key("width", int, "channels of the first ResNet stage (stages are width, 2*width, 4*width)", 16, D,
        unit="channels", range=_COUNT, check=_width_rule),
    # -- data and schedule ---------------------------------------------------------------
    Key("dataset", str, "data set (the device trainer gets its data from the host: e2train train --dataset)",
        "digits", T, doc_allowed="a name e2train.data.datasets loads (digits, cifar10, cifar100, mnist, ...)"),
    Key("data_dir", str, "directory of the data set's files (default $E2TRAIN_DATA)", None, T, optional=True),
    Key("epochs", int, "epochs of the plain schedule (SMD with smd_energy_ratio stretches them)", None,
        unit="epochs", range=_COUNT, defaults={DEVICE: 20, TORCH: 40}),
    Key("batch_size", int, "mini-batch size", 64, unit="samples", range=_COUNT, check=_batch_rule,
        doc_allowed=f">= 1 (device: <= {MAX_BATCH})"),
    Key("seed", int, "seed of every random draw (init, order, augmentation, SMD, gates)", 0),
    Key("augment", bool, "random shifts of the training images (torch: +-1 px digits, +-2 MNIST, +-4 and flips "
        "otherwise; device: +-augment_shift px)", True),
    Key("augment_shift", int, "largest random shift when augment is on", 1, D, unit="pixels", range=Range(0, 4)),
    Key("augment_pad", str, "what a shifted image's uncovered border shows: mean, the data set's mean (zero after "
        "standardising, as He et al. pad mean-subtracted CIFAR); edge, the image's own edge pixels repeated; min, "
        "each channel's lowest training value (black on digits, MNIST, CIFAR: torchvision's padding before "
        "normalising)", "mean", choices=AUGMENT_PADS),
    Key("iterations", int, "train this many steps (batches) instead of whole epochs", None, T, unit="steps",
        range=_COUNT, optional=True),
    Key("val_split", float, "fraction of the training set held out as validation", 0.0, T, unit="fraction",
        range=_UNIT),
    Key("limit_train", int, "use only the first N training samples (quick runs)", None, T, unit="samples",
        range=_COUNT, optional=True),
    Key("max_batches", int, "stop each epoch after N batches (quick runs)", None, T, unit="batches",
        range=_COUNT, optional=True),
    # -- optimiser -----------------------------------------------------------------------
    Key("lr", float, "SGD learning rate of BN, classifier (and every weight under fp32)", 0.1, range=_LR,
        what="a learning rate "),
    Key("conv_lr", float, "sign-step learning rate of the conv weights (signsgd, int8_int16grad, psg)", 1e-3,
        range=_LR, what="a learning rate "),
    Key("momentum", float, "SGD momentum", 0.9, range=_UNIT),
    Key("weight_decay", float, "weight decay (device: of BN/FC/gates; torch: of every weight)", 5e-4, range=_UNIT),
    Key("conv_weight_decay", float, "weight decay of the conv weights' sign step", 5e-4, D, range=_UNIT),
    Key("schedule", str, "learning-rate schedule (per batch)", "cosine", choices=SCHEDULES,
        only={DEVICE: ("cosine",)}),
    Key("lr_steps", str, "schedule = step: comma-separated epochs (or iterations) where lr *= lr_gamma", "", T,
        check=_lr_steps_rule, doc_allowed="increasing positive numbers, comma-separated"),
    Key("lr_step_unit", str, "the unit of lr_steps", "epoch", T, choices=LR_STEP_UNITS),
    Key("lr_gamma", float, "schedule = step: factor at each step", 0.1, T, range=_OPEN_UNIT),
    Key("lr_cycle", float, "schedule = cyclic: period (cosine from lr to 0, restarting)", 0.0, T, unit="epochs",
        range=Range(0)),
    Key("swa", bool, "stochastic weight averaging (PSG: of the masters' float view)", False, T),
    Key("swa_start", float, "fraction of the epochs after which weights are averaged", 0.75, T, unit="fraction",
        range=Range(0, 1, lo_open=True, hi_open=True)),
    # -- PSG and precision ---------------------------------------------------------------
    Key("precision", str, "arithmetic: psg (E²-Train), int8_int16grad (8-bit baseline, exact signs), ...", None,
        choices=PRECISIONS, only={DEVICE: ("int8_int16grad", "psg")}, defaults={DEVICE: "psg", TORCH: "fp32"}),
    Key("beta", float, "PSG threshold β: the predictor decides where abs(G_msb) >= β max abs(G_msb)", 0.05,
        unit="fraction", range=_OPEN_UNIT),
    Key("psg_exact", bool, "bit-exact PSG emulation; false: float32 sums (fast, near-ties may differ)", True, T),
    Key("act_scale", str, "activation scale policy (docs/fixed-point.md)", ACT_SCALE_DEFAULT,
        choices=ACT_SCALE_POLICIES),
    # -- SMD -----------------------------------------------------------------------------
    Key("smd", bool, "stochastic mini-batch dropping", None, defaults={DEVICE: True, TORCH: False}),
    Key("smd_p", float, "probability of dropping a mini-batch", 0.5, unit="fraction", range=_UNIT),
    Key("smd_energy_ratio", float, "SMD's energy budget: epochs *= ratio / (1 - smd_p) (0.67 at p 0.5: x1.33); "
        "unset: no stretch", None, unit="fraction", range=_OPEN_UNIT, optional=True,
        defaults={DEVICE: 2.0 / 3.0}),
    # -- SLU -----------------------------------------------------------------------------
    Key("slu", bool, "selective layer update: a recurrent gate per residual block + a FLOPs penalty", None,
        defaults={DEVICE: True, TORCH: False}),
    Key("slu_alpha", float, "weight α of the SLU penalty", None, range=Range(0),
        defaults={DEVICE: 2.0, TORCH: 0.2}),
    Key("slu_target", float, "target (FLOPs-weighted) execution ratio of the gated blocks", 0.5, unit="fraction",
        range=_OPEN_UNIT),
    Key("slu_cost", str, "penalty: flops = α x executed FLOPs ratio (paper); target = α (ratio - slu_target)^2",
        None, choices=SLU_COSTS, defaults={DEVICE: "target", TORCH: "flops"}),
    Key("slu_cell", str, "the gates' shared recurrent cell: lstm (SkipNet) or gru", None, choices=GATE_CELLS,
        defaults={DEVICE: "gru", TORCH: "lstm"}),
    Key("slu_hidden", int, "size of the gates' recurrent state", 10, D, range=Range(1, 256)),
    Key("slu_lr", float, "learning rate of the gates", 0.1, D, range=_LR, what="a learning rate "),
    Key("slu_sampling", bool, "training decisions drawn ~ Bernoulli(p) (SkipNet); false: p > 0.5", True, D),
    Key("slu_downsample", bool, "gate the stride-2 blocks too (their shortcut is lossy)", False, D),
    Key("stochastic_depth", float, "p_L of stochastic depth (0 = off)", 0.0, T, unit="probability",
        range=Range(0, 1)),
    # -- run -----------------------------------------------------------------------------
    Key("arm_ops_per_second", float, "the ARM's float32 throughput in the time model (e2train calibrate-arm "
        "measures it)", ARM_OPS_PER_SECOND, D, unit="ops/s", range=Range(1e6, 1e11)),
    Key("eval_batch_size", int, "batch size of the evaluation passes", 256, D, unit="samples",
        range=Range(1, MAX_BATCH)),
    Key("progress_every", int, "steps between progress events (0 = none)", 10, D, unit="steps", range=Range(0)),
    Key("checkpoint_every", int, "steps between checkpoints (0 = at epoch ends only)", 0, D, unit="steps",
        range=Range(0)),
    Key("device", str, "torch device", "auto", T, check=_device_rule, doc_allowed="auto, cpu, cuda, cuda:N"),
    Key("threads", int, "torch CPU threads (unset: torch's default)", None, T, range=_COUNT, optional=True),
    Key("progress", bool, "progress bars (unset: only on a terminal)", None, T, optional=True),
    Key("out_dir", str, "checkpoints and records.json go here", None, T, optional=True),
    Key("resume", bool, "continue from out_dir's checkpoint", False, T),
)
BY_NAME = {k.name: k for k in KEYS}


@dataclass(frozen=True)
class OldKey:
    """A board-trainer key name from before the shared vocabulary, and how its value maps."""
    new: str | None                              # None: the key is implied by another and dropped
    kind: type
    convert: Callable[[Any, dict], Any] = lambda v, d: v
    rule: Callable[[Any], str | None] = lambda v: None


OLD_KEYS: dict[str, OldKey] = {
    "depth": OldKey("model", int, lambda v, d: resnet_cifar_name(v)),
    "psg": OldKey("precision", bool, lambda v, d: "psg" if v else "int8_int16grad"),
    "psg_beta": OldKey("beta", float),
    # the old key was the epoch multiplier itself; the energy ratio is multiplier x (1 - p)
    "smd_epoch_multiplier": OldKey("smd_energy_ratio", float,
                                   lambda v, d: v * (1.0 - d.get("smd_p", BY_NAME["smd_p"].default))),
    "gate_target": OldKey("slu_target", float),
    "gate_alpha": OldKey("slu_alpha", float),
    "gate_hidden": OldKey("slu_hidden", int),
    "gate_lr": OldKey("slu_lr", float),
    "gate_sampling": OldKey("slu_sampling", bool),
    "gate_downsample": OldKey("slu_downsample", bool),
    # the kernels' only widths, named by precision = int8_int16grad | psg
    "act_bits": OldKey(None, int, rule=lambda v: None if v == 8 else
                       "the kernels support 8-bit activations only (precision int8_int16grad or psg)"),
    "grad_bits": OldKey(None, int, rule=lambda v: None if v == 16 else
                        "the kernels support 16-bit gradients only (precision int8_int16grad or psg)"),
}


def keys_for(trainer: str) -> tuple[Key, ...]:
    return tuple(k for k in KEYS if trainer in k.trainers)


def defaults(trainer: str) -> dict[str, Any]:
    """Every key the trainer has, at its default."""
    return {k.name: k.default_for(trainer) for k in keys_for(trainer)}


def coerce(key: str, value: Any, kind: type, optional: bool = False) -> Any:
    """Type-check one value; JSON gives 1 for 1 and 1.0 for 1.0, so ints pass as floats and
    integral floats as ints, never bools as numbers."""
    if value is None and optional:
        return None
    if kind is bool:
        if isinstance(value, bool):
            return value
        raise bad(key, value, "must be true or false")
    if kind is int:
        if isinstance(value, bool) or not (isinstance(value, int) or (isinstance(value, float) and value.is_integer())):
            raise bad(key, value, "must be an integer")
        return int(value)
    if kind is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise bad(key, value, "must be a number")
        if not math.isfinite(value):
            raise bad(key, value, "must be finite")
        return float(value)
    if not isinstance(value, str):
        raise bad(key, value, "must be a string")
    return value


def upgrade_old_keys(d: dict) -> tuple[dict, list[str], dict[str, str]]:
    """Map the board trainer's old key names to the new ones (checked with their old type).
    When an old key and its new name are both given, the later one in the dict wins (a
    ``--set`` after a preset or file). Returns the new dict, one note per renamed key and
    {new name: old name} (messages about the value name the key the user wrote)."""
    out: dict = {}
    notes: list[str] = []
    pending: dict[str, tuple[str, Any]] = {}     # new name -> (old name, value), converted at the end
    for name, value in d.items():
        old = OLD_KEYS.get(name)
        if old is None:
            out.pop(name, None)                  # dict order: a later value overrides an earlier one
            pending.pop(name, None)
            out[name] = value
            continue
        value = coerce(name, value, old.kind)
        broken = old.rule(value)
        if broken:
            raise bad(name, value, broken)
        if old.new is None:
            notes.append(f"config key '{name}' is implied by 'precision' and ignored (remove it)")
            continue
        out.pop(old.new, None)
        out[old.new] = None                      # keeps the key's place; its value is set below
        pending[old.new] = (name, value)
        notes.append(f"config key '{name}' is now '{old.new}' (the old name still loads; rename it)")
    for new, (name, value) in pending.items():  # once smd_p and friends are known
        out[new] = OLD_KEYS[name].convert(value, out)
    return out, notes, {new: name for new, (name, _) in pending.items()}


def _refuse_foreign(name: str, trainer: str) -> ConfigError:
    key = BY_NAME.get(name)
    if key is not None:
        other = [t for t in key.trainers if t != trainer]
        return ConfigError(f"config key '{name}' is implemented by {TRAINER_COMMANDS[other[0]]} only, "
                           f"not by {TRAINER_COMMANDS[trainer]}: remove it from this config")
    known = [k.name for k in keys_for(trainer)]
    near = difflib.get_close_matches(name, known + list(OLD_KEYS), n=1)
    hint = ""
    if near:
        new = OLD_KEYS[near[0]].new if near[0] in OLD_KEYS else None
        hint = f" (did you mean {near[0]!r}{f', now {new!r}' if new else ''}?)"
    return ConfigError(f"unknown config key {name!r}{hint}; known keys: {', '.join(sorted(known))}")


def _check_value(key: Key, value: Any, trainer: str, old: str | None = None) -> Any:
    """The value, checked; ``old``: the old name the user wrote it under (messages name it)."""
    label, now = (old, key.name) if old else (key.name, None)
    value = coerce(label, value, key.kind, key.optional)
    if value is None:
        return None
    if key.choices is not None:
        if value not in key.choices:
            raise bad(label, value, f"must be one of {', '.join(key.choices)}", now)
        here = key.only.get(trainer, key.choices)
        if value not in here:
            other = next(t for t in key.trainers if t != trainer)
            raise bad(label, value, f"implemented by {TRAINER_COMMANDS[other]} only; "
                                       f"{TRAINER_COMMANDS[trainer]} accepts {', '.join(here)}", now)
    if key.range is not None and not key.range.contains(value):
        raise bad(label, value, f"must be {key.what}{key.range.text()}", now)
    broken = key.check(value, trainer) if key.check else None
    if broken:
        raise bad(label, value, broken, now)
    return value


def _check_together(cfg: dict, given: set, trainer: str) -> None:
    """Rules that involve two keys."""
    def need(ok: bool, key: str, rule: str) -> None:
        if not ok:
            raise bad(key, cfg[key], rule)
    if trainer == DEVICE:
        need(cfg["conv_lr"] * cfg["conv_weight_decay"] < 1, "conv_weight_decay", "conv_lr * conv_weight_decay must be < 1")
    else:
        need(cfg["conv_lr"] * cfg["weight_decay"] < 1, "weight_decay", "conv_lr * weight_decay must be < 1")
        need(not (cfg["slu"] and cfg["stochastic_depth"]), "stochastic_depth",
             "slu and stochastic_depth both choose which blocks run: use one")
        need(cfg["schedule"] != "step" or cfg["lr_steps"], "schedule", "schedule = step needs lr_steps "
             "(e.g. lr_steps = '30,60')")
        need(cfg["schedule"] != "cyclic" or cfg["lr_cycle"] > 0, "schedule",
             "schedule = cyclic needs lr_cycle > 0 (epochs per cycle)")
        need(not cfg["resume"] or cfg["out_dir"] is not None, "resume", "resume = true needs out_dir "
             "(where the checkpoint is)")
    # an energy ratio the user set (its own default aside) with SMD off is a mistake, not a no-op
    ratio = cfg["smd_energy_ratio"]
    need(cfg["smd"] or "smd_energy_ratio" not in given or ratio is None
         or ratio == BY_NAME["smd_energy_ratio"].default_for(trainer),
         "smd_energy_ratio", "needs smd = true (it stretches the epochs of an SMD run)")


def check_config(d: Any, trainer: str, *, complete: bool = False) -> tuple[dict, list[str]]:
    """The complete, checked config of ``trainer`` ("device" or "torch") for the keys in ``d``
    (the others at the trainer's defaults), and the notes on old key names it mapped.
    ``complete``: ``d`` is a whole config already built (a trainer's ``validate()``), so no
    key in it counts as set by the user (the rules about keys set in vain do not apply)."""
    if trainer not in TRAINERS:
        raise ValueError(f"trainer must be one of {TRAINERS}, got {trainer!r}")
    if not isinstance(d, dict):
        raise ConfigError(f"a training config must be a table/object of keys (a JSON object or TOML table), "
                          f"got {type(d).__name__}")
    d, notes, renamed = upgrade_old_keys(d)
    for name in d:
        if name not in BY_NAME or trainer not in BY_NAME[name].trainers:
            raise _refuse_foreign(name, trainer)
    cfg = defaults(trainer)
    for name, value in d.items():
        cfg[name] = _check_value(BY_NAME[name], value, trainer, renamed.get(name))
    # a value that came in under an old name keeps the old rules: smd_epoch_multiplier with SMD off was ignored
    _check_together(cfg, set() if complete else set(d) - set(renamed), trainer)
    return cfg, notes


def parse_config_text(text: str, name: str) -> dict:
    """The keys of a config file's text, not yet checked: TOML when ``name`` ends in .toml,
    JSON otherwise (both trainers' ``--config``); ConfigError naming the file if malformed."""
    kind = "TOML" if name.lower().endswith(".toml") else "JSON"
    try:
        if kind == "TOML":
            import tomllib                       # stdlib from Python 3.11; only TOML files need it
            d = tomllib.loads(text)
        else:
            d = json.loads(text)
    except ImportError:
        raise ConfigError(f"{name}: reading TOML needs Python 3.11 or newer; write the config as JSON") from None
    except ValueError as e:                      # JSONDecodeError and TOMLDecodeError are ValueErrors
        raise ConfigError(f"{name} is not valid {kind}: {e}") from None
    if not isinstance(d, dict):
        raise ConfigError(f"{name} holds a {kind} {type(d).__name__}; it must hold an object of keys, "
                          'e.g. {"epochs": 2}')
    return d


def load(d: Any, trainer: str) -> dict:
    """``check_config``, with a ``RenamedKeyWarning`` per old key name it mapped (the CLI
    prints each as one line)."""
    cfg, notes = check_config(d, trainer)
    for note in notes:
        warnings.warn(note, RenamedKeyWarning, stacklevel=3)
    return cfg


def run_epochs(cfg: Any) -> int:
    """Epochs actually run: SMD with an energy ratio stretches the schedule (0.67 at p 0.5: x1.33).
    ``cfg`` has ``epochs``, ``smd``, ``smd_p`` and ``smd_energy_ratio`` (either trainer's config)."""
    if cfg.smd and cfg.smd_energy_ratio:
        return max(1, round(cfg.epochs * cfg.smd_energy_ratio / (1.0 - cfg.smd_p)))
    return cfg.epochs


# -- the docs table ------------------------------------------------------------------------
def config_table_md() -> str:
    """docs/config.md's table of keys (a test checks the file holds exactly this)."""
    def cell(v: Any) -> str:
        if v is None:
            return "unset"
        if isinstance(v, bool):
            return str(v).lower()
        if isinstance(v, float):
            return f"{v:.6g}"
        return f"`{v}`" if isinstance(v, str) and v else ("`\"\"`" if v == "" else str(v))

    rows = ["| key | type | unit | allowed | default | trainers | meaning |", "|---|---|---|---|---|---|---|"]
    for k in KEYS:
        allowed = k.allowed_text()
        if k.only:
            allowed += "".join(f" ({t}: {', '.join(v)})" for t, v in k.only.items())
        if k.optional:
            allowed += (", " if allowed else "") + "or unset"
        allowed = k.doc_allowed or allowed
        dflt = ({t: k.default_for(t) for t in k.trainers})
        if len(set(map(repr, dflt.values()))) == 1:
            dtext = cell(next(iter(dflt.values())))
        else:
            dtext = "; ".join(f"{t}: {cell(v)}" for t, v in dflt.items())
        rows.append(f"| `{k.name}` | {k.kind.__name__} | {k.unit} | {allowed} | {dtext} | "
                    f"{', '.join(k.trainers) if len(k.trainers) == 1 else 'both'} | {k.help} |")
    old = ["| old key (device) | new key | value |", "|---|---|---|"]
    conv = {"depth": "`resnet<depth>` (`resnet50-cifar` for 50)", "psg": "true: `psg`, false: `int8_int16grad`",
            "smd_epoch_multiplier": "multiplier x (1 - smd_p)"}
    for name, o in OLD_KEYS.items():
        old.append(f"| `{name}` | {('`' + o.new + '`') if o.new else 'dropped (implied by `precision`)'} | "
                   f"{conv.get(name, 'same' if o.new else ('8 only' if name == 'act_bits' else '16 only'))} |")
    return ("\n".join(rows) + "\n\nThe device trainer's old key names, mapped on load (see below):\n\n"
            + "\n".join(old) + "\n")
