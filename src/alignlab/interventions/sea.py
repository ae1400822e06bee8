"""SEA — spectral editing of activations (Qiu et al., 2024), linear and Φ-SEA.

Fit (per site, from N demonstrations, last-token activations as rows of [N, d]):
  Ω⁺ = Hᵀ H⁺ / N,  Ω⁻ = Hᵀ H⁻ / N  (H: the model's own greedy answer, H± the ± answers);
  U± from the SVD; k± = smallest k with Σ_{i≤k} σ_i² / Σ σ_i² ≥ K± (K ≥ 1 keeps all d);
  P⁺ = U⁺[:, :k⁺] U⁺[:, :k⁺]ᵀ (keep top positive directions),
  P⁻ = U⁻[:, k⁻:] U⁻[:, k⁻:]ᵀ (remove top negative directions), M = P⁺ + P⁻ precomputed.
Apply (every token at the same site it was fitted on): h' = M h · ‖h‖ / ‖M h‖.
Each fitted site records its strength, mean ‖h' − h‖ / ‖h‖ over the fitting activations: below
1 % (`WEAK_EDIT`) the edit is ≈ the identity and says so (`SEAEditor.weak_sites`).
`center=True` (an option, off by default as in the paper's formula) fits Ω on mean-centred
activations and edits h − μ (μ the neutral mean), adding μ back; on the built-in task it hurt.
Φ-SEA: z = φ(h / s) with s the per-dimension RMS of the neutral activations; the same
edit in φ-space (norm kept there); h' = s · φ⁻¹(z'), then rescaled to ‖h‖ so the edit
never changes a token's norm. φ⁻¹: tanh → atanh of z clamped to ±(1 − 1e-6);
elu → log1p on the negative side (z clamped above −1 + 1e-6); squared-exponential
φ(x) = exp(−x²/2) is even, so φ⁻¹(z) = sign(h) · sqrt(−2 log z) with the sign of the
unedited activation and z clamped to [1e-30, 1].
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch

from alignlab.errors import ConfigError, DataError
from alignlab.interventions.artifacts import load_artifact, save_artifact
from alignlab.interventions.hooks import Hooks, Positions, Site, check_site, last_token_activations

FEATURE_MAPS = ("none", "tanh", "elu", "sqexp")
_EPS = 1e-6
WEAK_EDIT = 0.01  # an edit moving activations by less than 1 % on average is ≈ the identity


# --- feature maps (pure) ---------------------------------------------------------------
def feature_forward(x: torch.Tensor, name: str) -> torch.Tensor:
    """φ(x) elementwise for a feature map name."""
    if name == "none":
        return x
    if name == "tanh":
        return torch.tanh(x)
    if name == "elu":
        return torch.nn.functional.elu(x)
    if name == "sqexp":
        return torch.exp(-0.5 * x * x)
    raise ConfigError(f"feature map '{name}' is not one of {FEATURE_MAPS}")


def feature_inverse(z: torch.Tensor, name: str, sign: torch.Tensor | None = None) -> torch.Tensor:
    """φ⁻¹(z) (clamped where φ is bounded); sqexp needs the sign of the original x."""
    if name == "none":
        return z
    if name == "tanh":
        return torch.atanh(z.clamp(-1 + _EPS, 1 - _EPS))
    if name == "elu":
        return torch.where(z > 0, z, torch.log1p(z.clamp_min(-1 + _EPS)))
    if name == "sqexp":
        mag = torch.sqrt(-2.0 * torch.log(z.clamp(1e-30, 1.0)))
        s = torch.ones_like(z) if sign is None else torch.where(sign < 0, -1.0, 1.0).to(z.dtype)
        return s * mag
    raise ConfigError(f"feature map '{name}' is not one of {FEATURE_MAPS}")


# --- fitting (pure) --------------------------------------------------------------------
def energy_rank(singular_values: torch.Tensor, K: float, dim: int | None = None) -> int:
    """Smallest k whose top-k squared singular values hold a share ≥ K of the energy.

    K ≥ 1 keeps every direction: returns `dim` (the full width), so P⁺ = I and P⁻ = 0.
    """
    if not 0 < K:
        raise ConfigError(f"SEA energy threshold K={K} must be > 0")
    d = dim if dim is not None else len(singular_values)
    if K >= 1:
        return d
    e = singular_values.double() ** 2
    total = e.sum()
    if total <= 0:
        return 0
    share = e.cumsum(0) / total
    return int((share < K).sum().item()) + 1


def cross_covariance(h: torch.Tensor, h_other: torch.Tensor, center: bool = False) -> torch.Tensor:
    """Ω = Hᵀ H' / N for activations as rows [N, d] -> [d, d] (`center`: subtract each side's mean)."""
    if h.shape != h_other.shape or h.dim() != 2:
        raise DataError(f"SEA needs paired activations [N, d]; got {tuple(h.shape)} and {tuple(h_other.shape)}")
    a, b = h.double(), h_other.double()
    if center:
        a, b = a - a.mean(0), b - b.mean(0)
    return a.T @ b / h.shape[0]


def projections(h: torch.Tensor, h_pos: torch.Tensor, h_neg: torch.Tensor, k_pos: float, k_neg: float,
                center: bool = False) -> tuple[torch.Tensor, torch.Tensor, int, int]:
    """(P⁺, P⁻, k⁺, k⁻) from neutral/positive/negative activations [N, d] (float64)."""
    d = h.shape[1]
    u_pos, s_pos, _ = torch.linalg.svd(cross_covariance(h, h_pos, center), full_matrices=True)
    u_neg, s_neg, _ = torch.linalg.svd(cross_covariance(h, h_neg, center), full_matrices=True)
    kp, kn = energy_rank(s_pos, k_pos, d), energy_rank(s_neg, k_neg, d)
    p_pos = u_pos[:, :kp] @ u_pos[:, :kp].T
    p_neg = u_neg[:, kn:] @ u_neg[:, kn:].T
    return p_pos, p_neg, kp, kn


def sea_edit(h: torch.Tensor, matrix: torch.Tensor, mean: torch.Tensor | None = None) -> torch.Tensor:
    """h' = M h · ‖h‖ / ‖M h‖ per token (last dim); M symmetric [d, d].

    With `mean` μ the edit acts on the centred vector: h' = μ + M(h − μ) · ‖h − μ‖ / ‖M(h − μ)‖.
    """
    c = h if mean is None else h - mean
    e = c @ matrix
    ratio = torch.linalg.vector_norm(c, dim=-1, keepdim=True)
    ratio = ratio.div_(torch.linalg.vector_norm(e, dim=-1, keepdim=True).clamp_min_(1e-12))
    return e.mul_(ratio) if mean is None else torch.addcmul(mean, e, ratio)


def phi_sea_edit(h: torch.Tensor, matrix: torch.Tensor, feature: str, scale: torch.Tensor,
                 mean: torch.Tensor | None = None) -> torch.Tensor:
    """Φ-SEA: edit φ(h / s) with `sea_edit`, map back with φ⁻¹, keep ‖h‖."""
    if feature == "none":
        return sea_edit(h, matrix, mean)
    z = feature_forward(h / scale, feature)
    back = feature_inverse(sea_edit(z, matrix, mean), feature, sign=h) * scale
    return back * (h.norm(dim=-1, keepdim=True) / back.norm(dim=-1, keepdim=True).clamp_min(1e-12))


def edit_strength(h: torch.Tensor, edit: Callable[[torch.Tensor], torch.Tensor]) -> float:
    """mean_i ‖h'_i − h_i‖ / ‖h_i‖ over activations [N, d]: how far an edit moves them (0: identity).

    Why: uncentred activations often share one dominant (mean) direction holding ≥ K of both
    covariances' energy; then k⁺ = k⁻ = 1, P⁻ removes what P⁺ keeps and M ≈ I, a silent no-op."""
    h = h.float()
    moved = (edit(h) - h).norm(dim=-1) / h.norm(dim=-1).clamp_min(1e-12)
    return float(moved.mean())


def layer_score(h_pos: torch.Tensor, h_neg: torch.Tensor) -> float:
    """Sum of singular values of the cross-covariance of stacked ± activations with ± labels.

    Activations are divided by their mean token norm first so layers of different scale
    compare; labels are one-hot (positive, negative), both sides centred.
    """
    x = torch.cat([h_pos, h_neg]).double()
    x = x / x.norm(dim=-1).mean().clamp_min(1e-12)
    y = torch.zeros(len(x), 2, dtype=torch.float64)
    y[: len(h_pos), 0] = 1
    y[len(h_pos) :, 1] = 1
    c = (x - x.mean(0)).T @ (y - y.mean(0)) / len(x)
    return float(torch.linalg.svdvals(c).sum())


# --- the editor ------------------------------------------------------------------------
@dataclass
class SiteEdit:
    """The fitted edit of one site: combined matrix, ranks kept, feature scale."""

    matrix: torch.Tensor  # [d, d] = P⁺ + P⁻ (float32)
    k_pos: int
    k_neg: int
    scale: torch.Tensor  # [d] per-dimension RMS (Φ-SEA), ones for linear
    mean: torch.Tensor | None = None  # [d] centre of the (φ-space) neutral activations; None = uncentred
    strength: float = math.nan  # `edit_strength` on the fitting activations (neutral answers)


@dataclass
class SEAEditor:
    """Fitted SEA edits for a set of sites; `with editor.apply(model): ...` edits every token."""

    edits: dict[Site, SiteEdit]
    feature: str = "none"
    k_pos: float = 0.998
    k_neg: float = 0.998
    meta: dict = field(default_factory=dict)

    def edit_fn(self, site: Site):
        """The per-token function applied at `site` (cached device/dtype copies)."""
        e = self.edits[site]
        feature = self.feature
        state: list = [e.matrix, e.scale, e.mean]

        def fn(h: torch.Tensor) -> torch.Tensor:
            """Edit every token vector of `h` (tensors moved to h's device/dtype once)."""
            m, s, mu = state
            if m.dtype != h.dtype or m.device != h.device:
                state[:] = [None if t is None else t.to(device=h.device, dtype=h.dtype) for t in (m, s, mu)]
                m, s, mu = state
            if feature == "none":
                return sea_edit(h, m, mu)
            return phi_sea_edit(h, m, feature, s, mu)

        return fn

    @property
    def strength(self) -> float:
        """The largest site's `edit_strength`: how far the editor as a whole moves activations."""
        return max(e.strength for e in self.edits.values())

    def weak_sites(self, threshold: float = WEAK_EDIT) -> list[tuple[Site, float]]:
        """(site, strength) of the edits that move activations by less than `threshold` (≈ identity)."""
        return [(s, e.strength) for s, e in self.edits.items() if e.strength < threshold]

    def apply(self, model, positions: Positions = "all", sites: Sequence[Site | str] | None = None) -> Hooks:
        """Hooks that edit `model` at the fitted sites (a context manager)."""
        chosen = [Site.parse(s) for s in sites] if sites is not None else list(self.edits)
        h = Hooks(model)
        try:
            for site in chosen:
                if site not in self.edits:
                    raise ConfigError(f"SEA editor has no edit for {site} (fitted: {', '.join(map(str, self.edits))})")
                h.edit(site, self.edit_fn(site), positions)
        except Exception:
            h.remove()
            raise
        return h

    def save(self, path: str | Path) -> Path:
        """Save as <path>/sea.safetensors + sea.json."""
        tensors = {}
        for site, e in self.edits.items():
            tensors[f"{site}.matrix"] = e.matrix
            tensors[f"{site}.scale"] = e.scale
            if e.mean is not None:
                tensors[f"{site}.mean"] = e.mean
        info = {"feature": self.feature, "k_pos": self.k_pos, "k_neg": self.k_neg, "meta": self.meta,
                "sites": {str(s): {"k_pos": e.k_pos, "k_neg": e.k_neg, "strength": e.strength}
                          for s, e in self.edits.items()}}
        return save_artifact(path, "sea", tensors, info)

    @classmethod
    def load(cls, path: str | Path) -> SEAEditor:
        """Load an editor saved by `save`."""
        tensors, info = load_artifact(path, "sea", "SEA editor")
        edits = {}
        for name, ks in info["sites"].items():
            edits[Site.parse(name)] = SiteEdit(tensors[f"{name}.matrix"], ks["k_pos"], ks["k_neg"],
                                               tensors[f"{name}.scale"], tensors.get(f"{name}.mean"),
                                               float(ks.get("strength", math.nan)))
        return cls(edits, info["feature"], info["k_pos"], info["k_neg"], info.get("meta", {}))


@dataclass(frozen=True)
class Demo:
    """One demonstration: a prompt, its positive and negative answers, optional neutral one."""

    prompt: str
    positive: str
    negative: str
    neutral: str | None = None  # None: the model's own greedy answer is generated


def neutral_answers(model, tokenizer, prompts: Sequence[str], max_new_tokens: int = 16, batch_size: int = 32) -> list[str]:
    """The model's own greedy answers (the 'neutral' side of SEA)."""
    from alignlab.generation import sample

    return sample(model, tokenizer, list(prompts), max_new_tokens=max_new_tokens, temperature=0.0,
                  batch_size=batch_size).texts


def collect(model, tokenizer, demos: Sequence[Demo], sites: Sequence[Site | str], max_new_tokens: int = 16,
            batch_size: int = 16, progress: bool = False) -> dict[str, dict[Site, torch.Tensor]]:
    """Last-token activations {neutral, positive, negative} -> {site: [N, d]}."""
    if not demos:
        raise DataError("SEA needs at least one demonstration")
    sites = [Site.parse(s) for s in sites]
    for s in sites:
        if s.kind == "heads":
            raise ConfigError(f"SEA edits vectors of the residual width; site {s} is per head (use resid or mlp)")
        check_site(model, s)
    missing = [i for i, d in enumerate(demos) if d.neutral is None]
    gen = neutral_answers(model, tokenizer, [demos[i].prompt for i in missing], max_new_tokens) if missing else []
    neutral = [d.neutral for d in demos]
    for i, text in zip(missing, gen):
        neutral[i] = text if text.startswith(" ") or not text else " " + text
    out = {}
    for name, answers in (("neutral", neutral), ("positive", [d.positive for d in demos]),
                          ("negative", [d.negative for d in demos])):
        texts = [d.prompt + (a or "") for d, a in zip(demos, answers)]
        out[name] = last_token_activations(model, tokenizer, texts, sites, batch_size, progress)
    return out


def fit_from_activations(acts: dict[str, dict[Site, torch.Tensor]], k_pos: float = 0.998, k_neg: float = 0.998,
                         feature: str = "none", center: bool = False) -> SEAEditor:
    """Fit an editor from collected activations (see `collect`)."""
    if feature not in FEATURE_MAPS:
        raise ConfigError(f"feature map '{feature}' is not one of {FEATURE_MAPS}")
    edits = {}
    for site, h in acts["neutral"].items():
        hp, hn = acts["positive"][site], acts["negative"][site]
        if feature == "none":
            scale = torch.ones(h.shape[1])
        else:
            scale = h.float().pow(2).mean(0).sqrt().clamp_min(1e-6)
        z, zp, zn = (feature_forward(x.float() / scale, feature) for x in (h, hp, hn))
        p_pos, p_neg, kp, kn = projections(z, zp, zn, k_pos, k_neg, center)
        edits[site] = SiteEdit((p_pos + p_neg).float(), kp, kn, scale.float(), z.mean(0).float() if center else None)
    editor = SEAEditor(edits, feature, k_pos, k_neg, {"n_demos": len(next(iter(acts["neutral"].values())))})
    for site, e in edits.items():
        e.strength = edit_strength(acts["neutral"][site], editor.edit_fn(site))
    return editor


def fit_sea(model, tokenizer, demos: Sequence[Demo], sites: Sequence[Site | str], k_pos: float = 0.998,
            k_neg: float = 0.998, feature: str = "none", center: bool = False, max_new_tokens: int = 16,
            progress: bool = False) -> SEAEditor:
    """Collect activations for `demos` at `sites` and fit a SEA editor."""
    return fit_from_activations(collect(model, tokenizer, demos, sites, max_new_tokens, progress=progress),
                                k_pos, k_neg, feature, center)


def rank_layers(acts: dict[str, dict[Site, torch.Tensor]]) -> list[tuple[Site, float]]:
    """Sites scored by `layer_score`, best first (the layer-selection heuristic)."""
    scores = [(s, layer_score(acts["positive"][s], acts["negative"][s])) for s in acts["positive"]]
    return sorted(scores, key=lambda t: -t[1])


def select_sites(acts: dict[str, dict[Site, torch.Tensor]], sites) -> dict[str, dict[Site, torch.Tensor]]:
    """The collected activations at `sites` only (in that order), for every answer kind."""
    return {k: {s: v[s] for s in sites} for k, v in acts.items()}


def top_sites(acts: dict[str, dict[Site, torch.Tensor]], n: int
              ) -> tuple[dict[str, dict[Site, torch.Tensor]], list[tuple[Site, float]]]:
    """(the activations at the n best-scoring sites, best first; every site's score, best first):
    the layer heuristic applied before fitting. n ≤ 0 keeps every site."""
    ranked = rank_layers(acts)
    return (select_sites(acts, [s for s, _ in ranked[:n]]) if n > 0 else acts), ranked
