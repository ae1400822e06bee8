"""Reward heads on frozen embeddings: the MLP head (SPEC sizes, early stopping); trees are in gbdt.py.

Objectives (SPEC §5): Bradley–Terry, `-log σ(f(a) − f(b))` on pairs, and classification,
`-log σ(f(x))` for the chosen and `-log(1 − σ(f(x)))` for the rejected response.
M MLP heads train together as one stacked network (one GEMM for all heads' first layers),
each with its own initialisation, optional per-pair weights (its data split) and its own
early stopping; a single model is M = 1.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from alignlab.embedding_rm.data import PairData, check_embeddings
from alignlab.errors import ConfigError, DataError
from alignlab.method_settings import MLPSettings  # noqa: F401  (re-exported: configs import it light)
from alignlab.progress import progress_bar
from alignlab.threads import cpu_threads

OBJECTIVES = ("bt", "cls")


def bt_loss(score_a: torch.Tensor, score_b: torch.Tensor, label: torch.Tensor) -> torch.Tensor:
    """Per-pair Bradley–Terry loss: BCE(σ(f(a) − f(b)), label), label = P(a ≻ b)."""
    return F.binary_cross_entropy_with_logits(score_a - score_b, label.expand_as(score_a), reduction="none")


def classification_loss(score_a: torch.Tensor, score_b: torch.Tensor, label: torch.Tensor) -> torch.Tensor:
    """Per-pair classification loss: the preferred response is class 1, the other class 0."""
    lab = label.expand_as(score_a)
    return (F.binary_cross_entropy_with_logits(score_a, lab, reduction="none")
            + F.binary_cross_entropy_with_logits(score_b, 1 - lab, reduction="none")) / 2


def pair_loss(objective: str, score_a: torch.Tensor, score_b: torch.Tensor, label: torch.Tensor) -> torch.Tensor:
    """Per-pair loss of the named objective ('bt' or 'cls')."""
    if objective == "bt":
        return bt_loss(score_a, score_b, label)
    if objective == "cls":
        return classification_loss(score_a, score_b, label)
    raise ConfigError(f"objective: '{objective}' is not one of {', '.join(OBJECTIVES)}")


class StackedMLP(torch.nn.Module):
    """M independent MLPs D → h1 → h2 → 1 (ReLU) evaluated together; forward [B, D] → [M, B]."""

    def __init__(self, n_heads: int, dim: int, hidden: tuple[int, ...] = (1024, 512), seed: int = 0):
        super().__init__()
        if len(hidden) != 2:
            raise ConfigError(f"hidden: expected two layer sizes, got {hidden}")
        self.n_heads, self.dim, self.hidden = n_heads, dim, tuple(hidden)
        h1, h2 = hidden
        self.w1 = torch.nn.Parameter(torch.empty(dim, n_heads, h1))
        self.b1 = torch.nn.Parameter(torch.empty(n_heads, h1))
        self.w2 = torch.nn.Parameter(torch.empty(n_heads, h1, h2))
        self.b2 = torch.nn.Parameter(torch.empty(n_heads, 1, h2))
        self.w3 = torch.nn.Parameter(torch.empty(n_heads, h2, 1))
        self.b3 = torch.nn.Parameter(torch.empty(n_heads, 1, 1))
        with torch.no_grad():  # nn.Linear's default init, each head from its own seed
            for m in range(n_heads):
                g = torch.Generator().manual_seed(seed * 100_003 + m)
                for w, b, fan_in in ((self.w1[:, m], self.b1[m], dim), (self.w2[m], self.b2[m], h1),
                                     (self.w3[m], self.b3[m], h2)):
                    bound = 1 / math.sqrt(fan_in)
                    w.copy_(torch.rand(w.shape, generator=g) * 2 * bound - bound)
                    b.copy_(torch.rand(b.shape, generator=g) * 2 * bound - bound)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Every head scores the same rows: [B, D] → [M, B] (one GEMM for all first layers)."""
        h = torch.addmm(self.b1.reshape(-1), x, self.w1.reshape(self.dim, -1)).relu_()  # bias + ReLU fused
        h = h.reshape(x.shape[0], self.n_heads, -1).transpose(0, 1)
        return self._tail(h)

    def forward_per_head(self, x: torch.Tensor) -> torch.Tensor:
        """Each head scores its own rows: [M, B, D] → [M, B]."""
        return self._tail(torch.baddbmm(self.b1.unsqueeze(1), x, self.w1.permute(1, 0, 2)).relu_())

    def _tail(self, h: torch.Tensor) -> torch.Tensor:
        h = torch.baddbmm(self.b2, h, self.w2).relu_()
        return torch.baddbmm(self.b3, h, self.w3).squeeze(-1)


class MLPRewardModel:
    """M trained MLP heads plus the input standardisation they were trained with."""

    kind = "mlp"

    def __init__(self, net: StackedMLP, mean: np.ndarray, std: np.ndarray, objective: str,
                 history: list[dict] | None = None):
        self.net, self.mean, self.std, self.objective = net.eval(), mean.astype(np.float32), std.astype(np.float32), objective
        self.history = history or []

    @property
    def n_heads(self) -> int:
        return self.net.n_heads

    @torch.no_grad()
    def predict(self, emb: np.ndarray, batch_size: int = 8192) -> np.ndarray:
        """Scores [M, n] of embedding rows [n, D]."""
        emb = check_embeddings(emb)
        if emb.shape[1] != self.net.dim:
            raise DataError(f"embeddings have dim {emb.shape[1]} but the heads expect {self.net.dim}")
        out = []
        for s in range(0, emb.shape[0], batch_size):
            x = torch.from_numpy((np.asarray(emb[s : s + batch_size], dtype=np.float32) - self.mean) / self.std)
            out.append(self.net(x))
        return torch.cat(out, 1).numpy()

    def save(self, path: str | Path) -> Path:
        """Write mlp.safetensors + mlp.json into folder `path`."""
        from safetensors.torch import save_file

        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        tensors = {k: v.detach().contiguous() for k, v in self.net.state_dict().items()}
        tensors["input_mean"], tensors["input_std"] = torch.from_numpy(self.mean), torch.from_numpy(self.std)
        save_file(tensors, str(path / "mlp.safetensors"))
        meta = {"n_heads": self.n_heads, "dim": self.net.dim, "hidden": list(self.net.hidden),
                "objective": self.objective, "history": self.history}
        (path / "mlp.json").write_text(json.dumps(meta, indent=1))
        return path

    @classmethod
    def load(cls, path: str | Path) -> MLPRewardModel:
        from safetensors.torch import load_file

        path = Path(path)
        meta = json.loads((path / "mlp.json").read_text())
        tensors = load_file(str(path / "mlp.safetensors"))
        net = StackedMLP(meta["n_heads"], meta["dim"], tuple(meta["hidden"]))
        mean, std = tensors.pop("input_mean").numpy(), tensors.pop("input_std").numpy()
        net.load_state_dict(tensors)
        return cls(net, mean, std, meta["objective"], meta.get("history"))


def _standardizer(emb: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    x = np.asarray(emb, dtype=np.float64)
    return x.mean(0).astype(np.float32), np.maximum(x.std(0), 1e-6).astype(np.float32)


def train_mlp(data: PairData, n_heads: int = 1, objective: str = "bt", settings: MLPSettings | None = None,
              weights: np.ndarray | None = None, val: PairData | None = None, progress: bool = True) -> MLPRewardModel:
    """Train M MLP heads on pairs; `weights` [M, len(data)] gives each head its split (0 = unseen).

    Early stopping on a held-out share (`settings.val_frac`, or `val`): each head keeps the
    weights of its best validation loss and stops after `patience` evaluations without gain.
    """
    s = settings or MLPSettings()
    with cpu_threads(s.threads):
        return _train_mlp(data, n_heads, objective, s, weights, val, progress)


def _train_mlp(data: PairData, n_heads: int, objective: str, s: MLPSettings, weights: np.ndarray | None,
               val: PairData | None, progress: bool) -> MLPRewardModel:
    if objective not in OBJECTIVES:
        raise ConfigError(f"objective: '{objective}' is not one of {', '.join(OBJECTIVES)}")
    if n_heads < 1:
        raise ConfigError(f"n_heads must be ≥ 1, got {n_heads}")
    if val is None:
        keep = np.ones(len(data), dtype=bool)
        if s.val_frac > 0:
            train_part, val = data.split(s.val_frac, seed=s.seed)
            perm = np.random.default_rng(s.seed).permutation(len(data))
            keep[perm[: len(val)]] = False
            data = train_part
            if weights is not None:
                weights = np.asarray(weights)[:, keep]
    if weights is None:
        weights = np.ones((n_heads, len(data)), dtype=np.float32)
    weights = np.asarray(weights, dtype=np.float32)
    if weights.shape != (n_heads, len(data)):
        raise DataError(f"weights: expected shape {(n_heads, len(data))}, got {weights.shape}")
    if (weights.sum(1) <= 0).any():
        raise DataError("weights: a head has no training pairs (empty split)")
    torch.manual_seed(s.seed)
    mean, std = _standardizer(data.emb)
    x = torch.from_numpy((np.asarray(data.emb, dtype=np.float32) - mean) / std)
    net = StackedMLP(n_heads, data.dim, tuple(s.hidden), seed=s.seed)
    # fused Adam: one kernel per step instead of ~10 elementwise passes over 13M parameters
    opt = torch.optim.Adam(net.parameters(), lr=s.lr, weight_decay=s.weight_decay, fused=True)
    left, right = torch.from_numpy(data.left), torch.from_numpy(data.right)
    label, w_all = torch.from_numpy(data.label), torch.from_numpy(weights)
    n, bs = len(data), min(s.batch_size, len(data))
    # Heads with different integer weights (bootstrap / disjoint splits) each draw batches from
    # their own rows, so a head trained on 1/M of the data costs 1/M of the compute.
    per_head = n_heads > 1 and not (weights == weights[0]).all() and np.array_equal(weights, np.round(weights))
    own = [torch.from_numpy(np.repeat(np.arange(n), weights[m].astype(np.int64))) for m in range(n_heads)] \
        if per_head else []
    n_max = max(len(o) for o in own) if per_head else n
    steps_per_epoch = math.ceil(n_max / bs)
    eval_at = {round(steps_per_epoch * (k + 1) / max(1, s.evals_per_epoch)) for k in range(max(1, s.evals_per_epoch))}
    best = torch.full((n_heads,), float("inf"))
    best_state = {k: v.detach().clone() for k, v in net.state_dict().items()}
    bad = torch.zeros(n_heads, dtype=torch.long)
    history: list[dict] = []
    gen = torch.Generator().manual_seed(s.seed)

    def val_loss() -> torch.Tensor:
        if val is None:
            return torch.full((n_heads,), float("nan"))
        with torch.no_grad():
            xv = torch.from_numpy((np.asarray(val.emb, dtype=np.float32) - mean) / std) if val.emb is not data.emb else x
            tot = torch.zeros(n_heads)
            for b0 in range(0, len(val), 8192):
                sl = slice(b0, b0 + 8192)
                li, ri = torch.from_numpy(val.left[sl]), torch.from_numpy(val.right[sl])
                sc = net(torch.cat([xv[li], xv[ri]]))
                k = len(li)
                tot += pair_loss(objective, sc[:, :k], sc[:, k:], torch.from_numpy(val.label[sl])).sum(1)
            return tot / len(val)

    stopped = False
    with progress_bar(f"train {n_heads} MLP head(s)", total=s.epochs * steps_per_epoch, enabled=progress) as bar:
        for epoch in range(s.epochs):
            perm = torch.randperm(n, generator=gen)
            perms = [o[torch.randperm(len(o), generator=gen)] for o in own]
            net.train()
            for step in range(steps_per_epoch):
                active = (bad < s.patience).float()
                if per_head:
                    pos = torch.arange(step * bs, min((step + 1) * bs, n_max))
                    idx = torch.stack([p[pos % len(p)] for p in perms])  # [M, k]; short lists wrap around
                    k = idx.shape[1]
                    sc = net.forward_per_head(torch.cat([x[left[idx]], x[right[idx]]], dim=1))
                    loss = (pair_loss(objective, sc[:, :k], sc[:, k:], label[idx]).mean(1) * active).sum()
                else:
                    idx = perm[step * bs : (step + 1) * bs]
                    k = len(idx)
                    sc = net(torch.cat([x[left[idx]], x[right[idx]]]))
                    losses = pair_loss(objective, sc[:, :k], sc[:, k:], label[idx])
                    w = w_all[:, idx] * active.unsqueeze(1)
                    loss = ((losses * w).sum(1) / w_all[:, idx].sum(1).clamp_min(1e-8)).sum()
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                bar.advance(1, loss=loss.item() / n_heads)
                if step + 1 in eval_at:
                    net.eval()
                    vl = val_loss()
                    rec = {"epoch": epoch + (step + 1) / steps_per_epoch, "train_loss": loss.item() / n_heads,
                           "val_loss": [round(float(v), 5) for v in vl]}
                    history.append(rec)
                    if val is None:
                        best_state = {k_: v.detach().clone() for k_, v in net.state_dict().items()}
                        continue
                    if not torch.isfinite(vl).all():
                        raise DataError("MLP training diverged (non-finite validation loss)")
                    improved = (vl < best - 1e-4) & (bad < s.patience)
                    for m in torch.nonzero(improved).flatten().tolist():
                        for k_, v in net.state_dict().items():
                            head_axis = 1 if k_ == "w1" else 0
                            best_state[k_].select(head_axis, m).copy_(v.select(head_axis, m))
                    best = torch.where(improved, vl, best)
                    bad = torch.where(improved, torch.zeros_like(bad), bad + (bad < s.patience).long())
                    if bool((bad >= s.patience).all()):
                        stopped = True
                        break
                    net.train()
            if stopped:
                break
    net.load_state_dict(best_state)
    return MLPRewardModel(net, mean, std, objective, history)


def settings_dict(s) -> dict:
    """Plain dict of head settings (for run records)."""
    return asdict(s)

