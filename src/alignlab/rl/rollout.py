"""One PPO rollout batch: sample responses (KV-cache sampling), score them under the policy,
the value head and the KL anchor, get sequence rewards, then token rewards and GAE.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch

from alignlab.generation import Samples, sample
from alignlab.losses.rl import gae, kl_penalty_rewards, masked_mean, sequence_kl, whiten
from alignlab.rl.policy import PolicyWithValue
from alignlab.rl.rewards import RewardFn, check_finite_rewards
from alignlab.rl.row_packing import RowPacking, fixed_response_logprobs, rollout_rows
from alignlab.scoring import Packed, pack, score_in_chunks


@dataclass
class Rollout:
    """Everything PPO needs about one batch of sampled responses (response-aligned [B, R])."""

    packed: Packed
    prompts: list[str]
    texts: list[str]
    logprobs: torch.Tensor  # log π_old(a_t)
    ref_logprobs: torch.Tensor  # log π_anchor(a_t)
    values: torch.Tensor  # V_old(s_t)
    scores: torch.Tensor  # raw sequence rewards [B]
    rewards: torch.Tensor | None = None  # token rewards (KL penalty + processed score)
    advantages: torch.Tensor | None = None
    returns: torch.Tensor | None = None
    kl: torch.Tensor | None = None  # per-token KL estimate to the anchor
    rows: RowPacking | None = None  # `packed` laid out in rows without padding (None: not supported)
    timings: dict[str, float] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.packed)

    @property
    def mask(self) -> torch.Tensor:
        return self.packed.response_mask

    def minibatch(self, rows: torch.Tensor) -> dict[str, torch.Tensor | Packed]:
        """The tensors of rows `rows`, trimmed to their longest response."""
        packed = self.packed.select(rows)
        r = packed.response_ids.shape[1]
        take = {"old_logprobs": self.logprobs, "old_values": self.values,
                "advantages": self.advantages, "returns": self.returns}
        out: dict[str, torch.Tensor | Packed] = {"packed": packed}
        for k, v in take.items():
            if v is None:
                raise RuntimeError("call finish() on the rollout before taking minibatches")
            out[k] = v[rows, :r]
        return out


@torch.no_grad()
def score_rollout(policy: PolicyWithValue, packed: Packed, temperature: float, batch_size: int,
                  rows: RowPacking | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """(log-probs, values) of packed responses under the current policy, in chunks (`rows`: the
    packing of all of `packed`, used when one chunk holds it all)."""
    logprobs, values = score_in_chunks(
        policy, packed, lambda m, c: m(c, temperature, False, rows if len(c) == len(packed) else None)[:2], batch_size)
    return logprobs, values


def collect_rollout(
    policy: PolicyWithValue,
    anchor: torch.nn.Module,
    tokenizer,
    prompts: Sequence[str],
    reward_fn: RewardFn,
    max_new_tokens: int = 24,
    temperature: float = 1.0,
    top_p: float = 1.0,
    batch_size: int = 64,
    generator: torch.Generator | None = None,
    where: str = "",
    score_policy: bool = True,
    backend: str = "auto",
    sample_fn: Callable[..., Samples] = sample,
) -> Rollout:
    """Sample one response per prompt from the policy and score it (no gradients).

    `score_policy=False` skips the policy/value scoring forward: the fused PPO update fills
    `logprobs` and `values` from its own forward (see `alignlab.recipes.ppo.fused_ppo_loss`).
    `sample_fn`: `generation.sample` or a drop-in with its signature (`vllm_backend.VLLMSampler`).
    """
    device = next(policy.parameters()).device
    t0 = time.perf_counter()
    samples = sample_fn(policy.lm, tokenizer, prompts, max_new_tokens=max_new_tokens, temperature=temperature,
                        top_p=top_p, batch_size=batch_size, generator=generator, backend=backend)
    t1 = time.perf_counter()
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    packed = pack(samples.prompt_ids, samples.response_ids, pad).to(device)
    rows = rollout_rows(policy.lm, packed)  # one layout for the anchor's pass and the policy's
    if score_policy:
        logprobs, values = score_rollout(policy, packed, temperature, batch_size, rows)
    else:  # filled in by the fused update
        logprobs = values = torch.zeros(packed.response_mask.shape, device=device)
    ref = fixed_response_logprobs(anchor, packed, temperature, batch_size, rows)
    t2 = time.perf_counter()
    raw = reward_fn(list(prompts), samples.texts)
    scores = check_finite_rewards(list(raw), list(prompts), samples.texts, where).to(device)
    t3 = time.perf_counter()
    return Rollout(packed, list(prompts), samples.texts, logprobs, ref, values, scores, rows=rows,
                   timings={"generate": t1 - t0, "score": t2 - t1, "reward": t3 - t2})


def finish_rollout(
    rollout: Rollout,
    processed_scores: torch.Tensor,
    kl_coef: float,
    kl_estimator: str = "k1",
    gamma: float = 1.0,
    lam: float = 0.95,
    whiten_advantages: bool = True,
) -> dict[str, float]:
    """Fill token rewards, KL, advantages and returns in place; returns batch statistics."""
    mask = rollout.mask
    rewards, kl = kl_penalty_rewards(rollout.logprobs, rollout.ref_logprobs, processed_scores, mask,
                                     kl_coef, kl_estimator)
    adv, ret = gae(rewards, rollout.values, mask, gamma, lam)
    if whiten_advantages:
        adv = whiten(adv, mask)
    rollout.rewards, rollout.kl, rollout.advantages, rollout.returns = rewards, kl, adv, ret
    seq_kl = sequence_kl(rollout.logprobs, rollout.ref_logprobs, mask, "k1")
    return {
        "reward": float(rollout.scores.mean()),
        "reward_std": float(rollout.scores.std()) if len(rollout) > 1 else 0.0,
        "kl": float(seq_kl.mean()),
        "kl_penalty": float(masked_mean(-kl_coef * kl, mask) * mask.sum() / len(rollout)),
        "response_len": float(mask.sum(-1).mean()),
        "value_mean": float(masked_mean(rollout.values, mask)),
        "return_mean": float(masked_mean(ret, mask)),
    }
