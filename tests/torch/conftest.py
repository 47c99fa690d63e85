import pytest
import torch

torch.set_num_threads(1)


@pytest.fixture(scope="session")
def digits():
    from e2train.torch import data
    return data.load("digits")


@pytest.fixture
def tiny(digits):
    """The first 128 digits: enough for a few batches."""
    from e2train.torch.data import Data
    return Data("digits", digits.x_train[:128], digits.y_train[:128], digits.x_test[:64], digits.y_test[:64])


def _replay_pipeline_grads(res, layers, last_loss) -> tuple[list, int]:
    """Recompute each traced (stage, mb) gradient of a pipeline run from the recorded input,
    forward weights, random state and incoming gradient (``last_loss(out, y)`` on the last
    stage). Returns the (stage, mb) whose applied gradient differs, and the number of
    (stage, mb) whose weights were updated between its forward and its backward."""
    from torch.func import functional_call
    from e2train.torch.distributed.stages import stage_module

    def leaf(v, grad: bool):
        if isinstance(v, tuple):
            return tuple(t.clone().requires_grad_(grad) for t in v)
        return v.clone().requires_grad_(grad)

    wrong, stale = [], 0
    for s, trace in enumerate(res["traces"]):
        mod = stage_module(layers, res["bounds"], s).train()
        ops = res["stages"][s]["ops_epoch1"]
        for mb, t in trace.items():
            # updates this stage made between mb's forward and its backward
            i_f, i_b = ops.index(("F", mb, t["fwd_version"])), [o[:2] for o in ops].index(("B", mb))
            stale += any(o[0] == "U" for o in ops[i_f:i_b])
            w = {n: v.clone().requires_grad_(True) for n, v in t["fwd_weights"].items()}
            with torch.random.fork_rng(devices=[]):
                torch.set_rng_state(t["rng"])
                out = functional_call(mod, w, (leaf(t["input"], s > 0),))
            if t["grad_out"] is None:
                last_loss(out, t["y"]).backward()
            else:
                torch.autograd.backward(out, t["grad_out"])
            for n, g in t["applied"].items():
                if (g is None) != (w[n].grad is None) or (g is not None and
                                                          not torch.allclose(w[n].grad, g, rtol=1e-4, atol=1e-6)):
                    wrong.append((s, mb))
                    break
    return wrong, stale


@pytest.fixture(scope="session")
def replay_pipeline_grads():
    """The gradient replay of traced pipeline runs (test_pipeline*.py)."""
    return _replay_pipeline_grads
