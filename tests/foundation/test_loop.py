"""The shared training loop: exact resume, NaN stops, atomic checkpoints, sharding."""

import pytest
import torch
from toy_task import DATA, collate, mse, mse_interrupted_at

from alignlab.config import TrainSettings
from alignlab.errors import TrainingError
from alignlab.runs import RunDir
from alignlab.train.loop import Trainer, seed_everything


class Toy(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.lin = torch.nn.Linear(4, 1)

    def forward(self, x):
        return self.lin(x)




def make(tmp, **kw):
    seed_everything(0)
    cfg = TrainSettings(lr=0.05, batch_size=4, max_steps=12, save_every=3, log_every=1, progress=False, **kw)
    return Trainer(Toy(), cfg, RunDir(tmp))


def test_resume_gives_identical_weights(tmp_path):
    full = make(tmp_path / "a")
    full.fit(DATA, collate, mse)
    crashing = mse_interrupted_at(8)
    part = make(tmp_path / "b")
    with pytest.raises(KeyboardInterrupt):
        part.fit(DATA, collate, crashing)
    assert part.run.latest_checkpoint().name == "step-0000006"
    resumed = make(tmp_path / "b")
    resumed.fit(DATA, collate, mse)
    for a, b in zip(full.model.parameters(), resumed.model.parameters()):
        assert torch.equal(a, b)
    steps = [r["step"] for r in resumed.run.metrics()]
    assert steps == list(range(1, 13))  # no duplicated log lines after resume


def test_nan_loss_stops_and_keeps_last_checkpoint(tmp_path):
    t = make(tmp_path)

    def nan_late(model, batch):
        loss, m = mse(model, batch)
        return (loss * float("nan") if t.step_count >= 4 else loss), m

    with pytest.raises(TrainingError, match=r"loss is nan at step 5.*step-0000003"):
        t.fit(DATA, collate, nan_late)
    ck = t.run.latest_checkpoint()
    assert ck.name == "step-0000003" and (ck / "COMPLETE").exists()
    assert not any(p.name.startswith(".tmp") for p in (tmp_path / "checkpoints").iterdir())


def test_gradient_accumulation_matches_big_batch(tmp_path):
    """batch 4 x accum 2 takes the same step as batch 8 on the same examples (mean loss)."""
    a = make(tmp_path / "a", grad_accum=2)
    b = make(tmp_path / "b")
    b.cfg.batch_size = 8
    xs, ys = collate(DATA[:8])
    a.step(mse, [(xs[:4], ys[:4]), (xs[4:], ys[4:])])
    b.step(mse, [(xs, ys)])
    for p, q in zip(a.model.parameters(), b.model.parameters()):
        assert torch.allclose(p, q, atol=1e-6)


def test_micro_batches_cover_each_example_once(tmp_path):
    t = make(tmp_path)
    idx = [i for mb in t.micro_batch_indices(40, 0) for i in mb]
    assert sorted(idx) == list(range(40))
    assert idx != list(range(40))
    assert t.micro_batch_indices(40, 0) == make(tmp_path / "c").micro_batch_indices(40, 0)
