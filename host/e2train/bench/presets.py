"""Named grids: `e2train bench --preset NAME`.

The ``e2train`` preset was sized to finish from one command within 15 minutes on a 2-core
CPU (docs/harness.md gives the measured time); the ``methods`` preset takes its method list
from the methods registry at run time, and fails with the list of what is missing if the
registry lacks any of them.
"""
from __future__ import annotations

from .records import Budget

PRESETS: dict[str, dict] = {
    "e2train": dict(
        methods=["fp32", "smd", "slu", "psg", "e2train"],
        budgets=[Budget("epochs", 8)],
        seeds=[0, 1, 2],
        # The trainer's default FLOPs-penalty weight (0.1) leaves SLU's gates on for all of a
        # short digits run (measured: 0% of blocks skipped in 8 epochs); at 2.0 they settle
        # near the 0.5 target within two epochs (measured execution ratio 0.56-0.64).
        method_options={"slu": {"slu_alpha": 2.0}, "e2train": {"slu_alpha": 2.0}},
        targets=[0.9, 0.95],
        dataset="digits",
        model="resnet8",
        baseline="fp32",
        about="E2-Train's three techniques alone and combined vs fp32 SGD, with their random "
              "and fewer-iterations controls, on digits",
    ),
    "methods": dict(
        # The skipping methods of e2train.torch.methods, each with its controls.
        methods=["fp32", "gskip", "dh", "hsdh", "learn-drop", "wus"],
        budgets=[Budget("epochs", 8)],
        seeds=[0, 1],
        targets=[0.9, 0.95],
        dataset="digits",
        model="resnet8",
        baseline="fp32",
        about="the other work-skipping methods (GSkip, DeadHorse, Learn&Drop, WUS) vs fp32, "
              "with their random and fewer-iterations controls, on digits",
    ),
}
