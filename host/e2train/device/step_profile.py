"""Where two device-trainer runs spent their modelled critical path, side by side.

The device trainer's driver is synchronous: each fabric call starts once the ARM work before it
is done, and ARM work between the calls waits for the call before it. So a run's critical path
is its calls' fabric seconds plus the ARM operations that ran between the calls or at the
optimiser; the side work that ran under a call adds nothing (``ArmTally`` starts a task only
where it fits). ``Trainer.profile`` keeps both per item; this module groups them into the rows
a reader compares: each block's fabric time (its convs and BN calls), the fabric time by call
kind, and the ARM's critical-path time by kind.

A row whose E²-Train / baseline is above the ratio of the two critical paths holds E²-Train's
ratio up: the rows at the ratio of the batches the runs ran are what runs in every step SMD
keeps, which SLU and PSG do not touch. A row below it pulls the ratio down. Every figure here is
modelled (the trainer's performance model of each call, the ARM at its configured rate).
"""
from __future__ import annotations

from collections import Counter

from .nn_layers import GATE_KINDS


def _block_of(key: str) -> str:
    """The block a "layer/call" key belongs to: "block4" of "block4.conv1/conv_fwd", "stem" of
    "stem.bn/bn_act"."""
    return key.rpartition("/")[0].split(".")[0]


def _group(fabric_s: dict, by: str) -> Counter:
    out: Counter = Counter()
    for key, s in fabric_s.items():
        out[_block_of(key) if by == "block" else key.rpartition("/")[2]] += s
    return out


def _fabric_rows(first: dict, second: dict):
    """(section, item, seconds in ``first``, in ``second``) of two "layer/call" -> seconds maps,
    by block and by call kind, each section's items by ``first``'s seconds, largest first."""
    for section, by in (("fabric by block", "block"), ("fabric by call", "call")):
        a, b = _group(first, by), _group(second, by)
        for item in sorted(set(a) | set(b), key=lambda k: -a.get(k, 0.0)):
            yield section, item, a.get(item, 0.0), b.get(item, 0.0)


def arm_path_ops(run: dict) -> Counter:
    """A run's ARM operations by kind that ran on its critical path: all of them but the side
    work run under the calls."""
    total = Counter(run["skips"]["arm_ops_by_kind"])
    total.subtract(run["profile"]["arm_ops_under_calls"])
    return Counter({k: v for k, v in total.items() if v > 0})


def slu_floor_seconds(run: dict) -> float:
    """The run's critical path less its gated blocks' fabric seconds and its gates' ARM work on
    the path: what it would be if SLU skipped every gated block for every sample at no cost,
    with SMD's steps and everything else in them as they ran. A lower bound: the pooled means
    the gates read stay (the kind is the classifier's too), and a gated stride-2 block's shortcut
    call (``slu_downsample``), which runs when no sample does, goes with its block."""
    prof = run["profile"]
    gated = set(prof.get("gated_blocks", ()))
    fabric = sum(s for k, s in prof["fabric_seconds"].items() if _block_of(k) in gated)
    gates = sum(v for k, v in arm_path_ops(run).items() if k in GATE_KINDS) / prof["arm_ops_per_second"]
    return run["modelled"]["critical_path_seconds"] - fabric - gates


def rows(base: dict, e2: dict, top_arm: int = 8) -> list[tuple[str, str, float, float]]:
    """(section, item, baseline seconds, E²-Train seconds) for both runs' results
    (``Trainer.result``): the fabric by block (E²-Train's gated ones marked), the fabric by call
    kind, and the ARM on the critical path by kind at each run's ARM rate (the ``top_arm``
    largest in E²-Train, the rest summed)."""
    gated = set(e2["profile"].get("gated_blocks", ()))
    out = [(section, f"{item} (gated)" if item in gated else item, sb, se)
           for section, item, sb, se in _fabric_rows(base["profile"]["fabric_seconds"], e2["profile"]["fabric_seconds"])]
    rate_b, rate_e = base["profile"]["arm_ops_per_second"], e2["profile"]["arm_ops_per_second"]
    b, e = arm_path_ops(base), arm_path_ops(e2)
    kinds = sorted(set(b) | set(e), key=lambda k: -e.get(k, 0))
    for k in kinds[:top_arm]:
        out.append(("ARM on the path", k, b.get(k, 0) / rate_b, e.get(k, 0) / rate_e))
    rest = kinds[top_arm:]
    if rest:
        out.append(("ARM on the path", f"{len(rest)} other kinds", sum(b.get(k, 0) for k in rest) / rate_b,
                    sum(e.get(k, 0) for k in rest) / rate_e))
    return out


def table(base: dict, e2: dict) -> str:
    """``rows`` as a markdown table, with each row's share of E²-Train's critical path."""
    crit_b = base["modelled"]["critical_path_seconds"]
    crit_e = e2["modelled"]["critical_path_seconds"]
    lines = ["| part (modelled) | item | baseline (s) | E²-Train (s) | E²-Train / baseline | share of E²-Train's path |",
             "|---|---|---|---|---|---|"]
    for section, item, b, e in rows(base, e2):
        r = f"{e / b:.2f}" if b else "-"
        lines.append(f"| {section} | {item} | {b:.3f} | {e:.3f} | {r} | {e / crit_e:.1%} |")
    lines.append(f"| critical path | all | {crit_b:.3f} | {crit_e:.3f} | {crit_e / crit_b:.3f} | 100.0% |")
    floor = slu_floor_seconds(e2)
    lines.append(f"| floor | E²-Train's path if SLU skipped every gated block at no cost | {crit_b:.3f} | {floor:.3f} "
                 f"| {floor / crit_b:.3f} | {floor / crit_e:.1%} |")
    return "\n".join(lines)


def measured_table(run: dict) -> str | None:
    """One run's fabric time per block and per call kind, modelled beside measured by the board's
    driver (``fabric_wall_seconds``: ap_start to ap_done seen, the side work the driver ran while
    it waited included), as markdown; the check of the performance model that only a board gives.
    None when the run's backend measured nothing; one line when it ran on the simulated board,
    whose calls end at once (no board time to compare with)."""
    prof = run.get("profile") or {}
    wall = prof.get("fabric_wall_seconds")
    if wall is None:
        return None
    if prof.get("wall_source") != "board":
        return ("The simulated board ends each call at once: its measured waits are not board time, so no "
                "measured column (on a board, this section compares each block's measured fabric time with "
                "the model's).")
    lines = ["| part | item | modelled (s) | measured (s) | measured / modelled |", "|---|---|---|---|---|"]
    for section, item, m, w in _fabric_rows(prof["fabric_seconds"], wall):
        lines.append(f"| {section} | {item} | {m:.3f} | {w:.3f} | {f'{w / m:.2f}' if m else '-'} |")
    tm, tw = sum(prof["fabric_seconds"].values()), sum(wall.values())
    lines.append(f"| fabric | all | {tm:.3f} | {tw:.3f} | {tw / tm:.2f} |" if tm else f"| fabric | all | 0 | {tw:.3f} | - |")
    if prof.get("unmatched_waits"):
        lines.append(f"\n{prof['unmatched_waits']} measured waits could not be paired with a tallied call: "
                     "the measured column leaves them out.")
    return "\n".join(lines)
