"""Each method's state survives the trainer's checkpoint (loaded with weights_only=True): an
interrupted and resumed run ends with the same weights as an uninterrupted one."""
import pytest
import torch

from e2train.torch.methods import make
from e2train.torch.methods.learn_drop import DropDecider
from e2train.torch.trainer import train


class Interrupt(Exception):
    pass


class DropFirstTwo(DropDecider):
    """Drops the first two units at the first decision (its state is the decider's own, so a
    resumed run decides alike): the test is about the state, not the decision."""

    def decide(self, head_scores):
        super().decide(head_scores)
        if self.dropped_scores:
            return 0
        self.dropped_scores.extend(head_scores[:2])
        return 2


def policy(name, digits):
    p = make(name, seed=1, **options(name, digits))
    if name == "learn-drop":
        p.decider = DropFirstTwo()
    return p


def options(name, digits):
    # settings under which each method skips within 4 one-batch epochs
    return {
        "gskip": dict(warmup_steps=2, loss_threshold=1.0, loss_window=1, recheck_every=3),
        "hsdh": dict(threshold=0.12, n_samples=len(digits.x_train), n_classes=10),
        "learn-drop": dict(train_x=digits.x_train, warmup_epochs=0),
        "wus": dict(std_threshold=100.0, window=2, settle_epochs=1),
    }[name]


@pytest.mark.parametrize("device", ["auto", pytest.param("cuda", marks=pytest.mark.skipif(
    not torch.cuda.is_available(), reason="needs a CUDA device"))])
@pytest.mark.parametrize("name", ["gskip", "hsdh", "learn-drop", "wus"])
def test_resume_matches_uninterrupted_run(digits, quick, tmp_path, name, device, request):
    # "auto": the test device (E2TRAIN_TEST_DEVICE, cpu by default); "cuda": on the GPU too
    if device == "cuda":
        request.getfixturevalue("deterministic_cuda")
    cfg = dict(epochs=4, max_batches=1, augment=False, device=device)
    pol = policy(name, digits)
    whole = train(quick(**cfg), [pol], data=digits)
    assert next(iter(pol.skip_ratios().values())) > 0        # the state under test is live

    def stop_after_2(rec):
        if rec["epoch"] == 2:
            raise Interrupt

    with pytest.raises(Interrupt):
        train(quick(out_dir=str(tmp_path), **cfg), [policy(name, digits)], data=digits, callback=stop_after_2)
    resumed = train(quick(out_dir=str(tmp_path), resume=True, **cfg), [policy(name, digits)], data=digits)
    assert len(resumed.records) == 4
    for (n, a), b in zip(whole.model.state_dict().items(), resumed.model.state_dict().values()):
        assert torch.equal(a, b), n
