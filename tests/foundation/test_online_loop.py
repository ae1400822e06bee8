"""The trainer's online loop (`Trainer.fit_online`), tested once for every online method:
iteration/epoch/step structure, gradient accumulation, callbacks, cadence, exact resume,
a buffer's own epoch layout, error wrapping, and device placement of micro-batches."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
import torch

from alignlab.config import TrainSettings
from alignlab.errors import TrainingError
from alignlab.runs import RunDir
from alignlab.train.loop import Callback, Trainer, device_generator, seed_everything, to_device


class Toy(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.lin = torch.nn.Linear(3, 1)

    def forward(self, x):
        return self.lin(x)


@dataclass
class Rows:
    """A buffer: n rows of (x, y)."""

    x: torch.Tensor
    y: torch.Tensor

    def __len__(self) -> int:
        return len(self.y)

    def minibatch(self, rows: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"x": self.x[rows], "y": self.y[rows], "rows": rows}


def make_collect(trainer: Trainer, n: int = 8):
    def collect(it: int) -> Rows:
        g = trainer.rng.sampling_generator(trainer.rank)  # the checkpointed stream, as PPO/PSLE use it
        x = torch.randn(n, 3, generator=g)
        return Rows(x, x.sum(-1) + it)

    return collect


def mse(model, mb):
    return ((model(mb["x"]).squeeze(-1) - mb["y"]) ** 2).mean(), {"n": float(len(mb["y"]))}


class Counter(Callback):
    def __init__(self):
        self.calls: list[tuple[str, int, int]] = []

    def on_step(self, trainer, iteration):
        self.calls.append(("step", iteration, trainer.step_count))

    def on_epoch(self, trainer, iteration):
        self.calls.append(("epoch", iteration, trainer.step_count))

    def on_iteration(self, trainer, iteration):
        self.calls.append(("iteration", iteration, trainer.step_count))


def make(tmp, **kw) -> Trainer:
    seed_everything(0)
    cfg = TrainSettings(lr=0.05, batch_size=2, grad_accum=2, save_every=2, progress=False, **kw)
    return Trainer(Toy(), cfg, RunDir(tmp))


def test_structure_callbacks_and_cadence(tmp_path):
    t = make(tmp_path)
    cb = Counter()
    evals = []
    records = t.fit_online(make_collect(t), mse, iterations=5, epochs=2, start=lambda: {"eval": -1.0},
                           evaluate=lambda it: evals.append(it) or {"eval": float(it)}, eval_every=2,
                           callbacks=[cb])
    # 8 rows / batch 2 = 4 micro-batches = 2 steps (accumulating 2) per epoch; 2 epochs; 5 iterations
    assert t.step_count == 5 * 2 * 2 and t.iteration == 5
    assert [c for c in cb.calls if c[0] == "step"][:4] == [("step", 1, 1), ("step", 1, 2), ("step", 1, 3), ("step", 1, 4)]
    assert [c for c in cb.calls if c[0] == "epoch"][:2] == [("epoch", 1, 2), ("epoch", 1, 4)]
    assert [c for c in cb.calls if c[0] == "iteration"] == [("iteration", i, 4 * i) for i in range(1, 6)]
    assert evals == [2, 4, 5]  # every 2 and at the last
    assert [r["iteration"] for r in records] == [0, 1, 2, 3, 4, 5] and records[0]["eval"] == -1.0
    assert records[1]["n"] == 2.0 and "time_collect" in records[1] and "time_update" in records[1]
    assert [r["iteration"] for r in t.run.metrics()] == [0, 1, 2, 3, 4, 5]
    assert [c.name for c in t.run.checkpoints()][-1] == "step-0000016"  # save_every counts iterations (4 → step 16)


def test_resume_after_a_crash_is_exact(tmp_path):
    full = make(tmp_path / "full")
    full.fit_online(make_collect(full), mse, iterations=5, epochs=2, evaluate=lambda it: {"e": float(it)},
                    eval_every=1)
    part = make(tmp_path / "part")
    real = make_collect(part)

    def crashing(it):
        if it == 4:
            raise KeyboardInterrupt
        return real(it)

    with pytest.raises(KeyboardInterrupt):
        part.fit_online(crashing, mse, iterations=5, epochs=2, evaluate=lambda it: {"e": float(it)}, eval_every=1)
    assert part.run.latest_checkpoint().name == "step-0000008"  # iteration 2; iteration 3 is lost
    resumed = make(tmp_path / "part")
    resumed.fit_online(make_collect(resumed), mse, iterations=5, epochs=2, evaluate=lambda it: {"e": float(it)},
                       eval_every=1)
    for a, b in zip(full.model.parameters(), resumed.model.parameters()):
        assert torch.equal(a, b)

    def strip(rs):
        return [{k: v for k, v in r.items() if not k.startswith("time")} for r in rs]

    assert strip(full.run.metrics()) == strip(resumed.run.metrics())  # iteration 3 logged once, by the rerun


def test_buffer_layout_empty_buffers_and_error_wrapping(tmp_path):
    class Mixed(Rows):
        """Lays out its own epoch: one micro-batch per row (e.g. AKD's proportional mix)."""

        def micro_batches(self, batch_size, generator):
            order = torch.randperm(len(self), generator=generator)
            return [self.minibatch(order[i:i + 1]) for i in range(len(self))]

    t = make(tmp_path / "a")
    seen = []

    def collect(it):
        return Mixed(torch.ones(3 if it == 1 else 0, 3), torch.zeros(3 if it == 1 else 0))

    def loss(model, mb):
        seen.append(len(mb["y"]))
        return mse(model, mb)

    t.fit_online(collect, loss, iterations=2)
    assert seen == [1, 1, 1] and t.step_count == 2  # 3 micro-batches, accumulated 2 + 1
    assert [r["iteration"] for r in t.run.metrics()] == [1, 2]  # an iteration without data is still recorded

    t2 = make(tmp_path / "b")

    def failing(it):
        if it == 3:
            raise TrainingError("reward is nan for sample 0")
        return make_collect(t2)(it)

    # no step ran on iteration 2's weights yet: named, but not (yet) called good
    with pytest.raises(TrainingError, match=r"reward is nan.*Last good checkpoint: none yet \(newer, not yet "
                                            r"confirmed by a calm step: .*step-0000004\)"):
        t2.fit_online(failing, mse, iterations=4)


def test_micro_batches_reach_the_model_device(tmp_path, monkeypatch):
    @dataclass
    class Pair:
        a: torch.Tensor
        b: list

    moved = to_device({"p": Pair(torch.ones(2), [torch.zeros(1), 3]), "n": 5}, "meta")
    assert moved["p"].a.device.type == "meta" and moved["p"].b[0].device.type == "meta" and moved["n"] == 5
    assert moved["p"].b[1] == 3
    assert device_generator(7, "cpu").device == torch.device("cpu")
    t = make(tmp_path)
    seen = []
    monkeypatch.setattr("alignlab.train.loop.to_device", lambda batch, device: seen.append(device) or batch)
    t.fit_online(make_collect(t), mse, iterations=1)
    assert seen and all(d == t.accelerator.device for d in seen)
