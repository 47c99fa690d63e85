"""Every tensor the torch reference creates lives where it is used.

On a GPU a tensor made on the CPU and combined with the model's tensors stops the run
("Expected all tensors to be on the same device"); CI has no GPU to catch that, so this
test reads the code instead. Every call of a torch tensor factory in e2train.torch and
e2train.bench must say where its result lives: a ``device=`` argument, or a ``.to(...)``
applied to it at once, or its enclosing function is listed below with the reason it
belongs on the CPU. (``*_like`` and ``Tensor.new_*`` follow their argument and are not
factories here.) A new factory call anywhere else fails this test until it does one of
those.
"""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

import e2train

FACTORIES = {"zeros", "ones", "empty", "full", "arange", "tensor", "as_tensor", "from_numpy", "rand", "randn",
             "randint", "randperm", "linspace", "logspace", "eye", "Generator"}

ROOT = Path(e2train.__file__).parent
SEEDED = "a seeded CPU generator: the same seed gives the same draws on any device"
HOST_DATA = "the data set and its batches live on the host; the trainer moves each batch to the device"
MODULE_INIT = "a module's parameters and buffers at construction: .to(device) moves them with the module"
# (file relative to e2train/, enclosing function) -> why its factory calls stay on the CPU
HOST_SIDE = {
    ("bench/psg_control.py", "RandomPredictorChoice.__init__"): SEEDED,
    ("torch/data.py", "augment"): HOST_DATA + " (augmented on the host, drawn from the epoch's CPU generator)",
    ("torch/data.py", "split_validation"): HOST_DATA + " (the held-out indices, from a seeded CPU generator)",
    ("torch/policy.py", "RandomBatchOmission.on_train_start"): SEEDED + "; read as Python numbers",
    ("torch/data.py", "train_batches"): HOST_DATA + " (the epoch's order, from a seeded CPU generator)",
    ("torch/distributed/ddp.py", "ddp_worker"): "indices into the host batch before it is moved",
    ("torch/distributed/p2p.py", "P2P.send"): "a message header built on the host, moved to the link's device",
    ("torch/methods/deadhorse.py", "SampleHistory.__init__"): "the per-sample history, indexed by host indices",
    ("torch/methods/deadhorse.py", "UniformRandom.skip"): SEEDED + "; the caller moves the mask",
    ("torch/methods/deadhorse.py", "DeadHorsePolicy.__init__"): SEEDED,
    ("torch/methods/deadhorse.py", "RandomSamplePolicy.__init__"): SEEDED,
    ("torch/methods/gskip.py", "RandomPrefixSkip.__init__"): SEEDED,
    ("torch/methods/gskip.py", "RandomPrefixSkip.before_forward"): SEEDED + "; read as a Python number",
    ("torch/methods/learn_drop.py", "FeatureCache.fill"): "the feature cache is host memory (or a file) by design",
    ("torch/methods/wus.py", "RandomBiasEpochs.on_train_start"): SEEDED + "; read as Python numbers",
    ("torch/policy.py", "RandomBatchSkip.__init__"): SEEDED,
    ("torch/policy.py", "RandomBatchSkip.skip_batch"): SEEDED + "; read as a Python bool",
    ("torch/policy.py", "RandomSampleSkip.__init__"): SEEDED,
    ("torch/policy.py", "RandomSampleSkip.sample_mask"): SEEDED + "; the trainer moves the mask",
    ("torch/slu.py", "StochasticDepth.__init__"): SEEDED,
    ("torch/slu.py", "StochasticDepth.block_masks"): SEEDED + "; the masks are made on the input's device",
    ("torch/slu.py", "RandomBlockSkip.__init__"): SEEDED,
    ("torch/slu.py", "RandomBlockSkip.block_masks"): SEEDED + "; moved to the input's device",
    ("torch/trainer.py", "_setup"): SEEDED + " (the step context's)",
    ("torch/device_check.py", "run_layer"): SEEDED + ": the same batches on every device compared",
    ("torch/psg.py", "PSGConv2d.__init__"): MODULE_INIT,
    ("torch/psg.py", "QConv2d.__init__"): MODULE_INIT,
    ("torch/psg.py", "PSGConv2d.sign_step"): "the CPU branch: numpy's golden rule on CPU tensors",
}


def _files():
    return sorted([*ROOT.glob("torch/**/*.py"), *ROOT.glob("bench/*.py")])


def _factory_calls(path: Path):
    """(enclosing function's qualified name, line, source) of each factory call whose result
    has no device= and no immediate .to(...)."""
    tree = ast.parse(path.read_text())
    parent = {c: n for n in ast.walk(tree) for c in ast.iter_child_nodes(n)}

    def where(node):
        names = []
        while node in parent:
            node = parent[node]
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                names.append(node.name)
        return ".".join(reversed(names)) or "<module>"

    for n in ast.walk(tree):
        if not (isinstance(n, ast.Call) and isinstance(n.func, ast.Attribute) and n.func.attr in FACTORIES
                and isinstance(n.func.value, ast.Name) and n.func.value.id == "torch"):
            continue
        if any(k.arg == "device" for k in n.keywords):
            continue
        up = parent.get(n)
        if isinstance(up, ast.Attribute) and up.attr == "to" and isinstance(parent.get(up), ast.Call):
            continue
        yield where(n), n.lineno, ast.unparse(n)


def test_every_tensor_factory_says_where_its_result_lives():
    unplaced = []
    for f in _files():
        rel = f.relative_to(ROOT).as_posix()
        for func, line, src in _factory_calls(f):
            if (rel, func) not in HOST_SIDE:
                unplaced.append(f"{rel}:{line} in {func}: {src}")
    assert not unplaced, ("tensor factories with no device= (pass the model's or the input's device, "
                          "or list the function in HOST_SIDE with the reason):\n" + "\n".join(unplaced))


def test_the_host_side_list_names_only_functions_that_exist():
    """A stale entry would let a future factory call in a renamed function go unchecked."""
    found = {(f.relative_to(ROOT).as_posix(), func) for f in _files() for func, _, _ in _factory_calls(f)}
    assert not set(HOST_SIDE) - found, sorted(set(HOST_SIDE) - found)


def test_the_check_catches_a_factory_without_a_device(tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text("import torch\n\ndef f(x):\n    return x + torch.zeros(3)\n\n"
                   "def g(x):\n    return torch.zeros(3, device=x.device) + torch.rand(3).to(x.device)\n")
    assert [(func, src) for func, _, src in _factory_calls(bad)] == [("f", "torch.zeros(3)")]


@pytest.mark.parametrize("rel", ["torch/psg.py", "torch/fused.py", "torch/methods/deadhorse.py"])
def test_the_files_that_run_on_the_device_are_scanned(rel):
    assert ROOT / rel in _files()
