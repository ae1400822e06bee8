"""A causal LM with a scalar value head on its shared trunk (the PPO actor-critic).

Design choice: the critic shares the policy's transformer (one forward gives both the
token log-probs and the values), which halves the compute of PPO's update on small models.
The value head is a linear layer on the last hidden state, initialised at zero so the first
values are 0 and runs are reproducible without touching the random stream.
"""

from __future__ import annotations

from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from alignlab.losses.rl import logprobs_and_entropy
from alignlab.rl.row_packing import RowPacking, response_token_logits, rollout_rows
from alignlab.scoring import Packed, response_logits

VALUE_HEAD_FILE = "value_head.safetensors"


def hidden_size_of(lm: nn.Module) -> int:
    """Width of the LM's last hidden state (works through PEFT wrappers)."""
    cfg = getattr(lm, "config", None)
    for key in ("hidden_size", "n_embd", "d_model"):
        if cfg is not None and getattr(cfg, key, None):
            return int(getattr(cfg, key))
    raise ValueError(f"cannot tell the hidden size of {type(lm).__name__} (no config.hidden_size)")


class PolicyWithValue(nn.Module):
    """`lm` (any HF causal LM, PEFT allowed) plus `value_head`: hidden state → scalar."""

    def __init__(self, lm: nn.Module):
        super().__init__()
        self.lm = lm
        self.value_head = nn.Linear(hidden_size_of(lm), 1)
        nn.init.zeros_(self.value_head.weight)
        nn.init.zeros_(self.value_head.bias)

    def forward(self, packed: Packed, temperature: float = 1.0, entropy_grad: bool = False,
                rows: RowPacking | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(response log-probs, values, entropies), each [B, R] and 0 on padding, for packed sequences.

        The value at response position t is read from the hidden state just before token
        t, i.e. it is V(prefix) of the state in which token t is chosen. When the model's
        attention takes a block mask the sequences are packed into rows without padding
        (`alignlab.rl.row_packing`) and the LM head, log-softmax and value head run only at real
        response positions; otherwise (padded layout) the log-softmax does. The entropy has a
        gradient only with `entropy_grad`.
        `rows`: the packing of `packed`, when the caller already made it (`rollout_rows`).
        """
        if rows is None:
            rows = rollout_rows(self.lm, packed)
        if rows is not None:
            logits, hidden = response_token_logits(self.lm, rows, hidden=True)
            logp, entropy = logprobs_and_entropy(logits, rows.targets, temperature, entropy_grad)
            values = self.value_head(hidden.to(self.value_head.weight.dtype)).squeeze(-1).float()
            return rows.scatter(logp), rows.scatter(values), rows.scatter(entropy)
        R = packed.response_ids.shape[1]
        out = response_logits(self.lm, packed, output_hidden_states=True)
        mask = packed.response_mask
        b, t = mask.bool().nonzero(as_tuple=True)
        logp, entropy = logprobs_and_entropy(out.logits[b, t], packed.response_ids[b, t], temperature, entropy_grad)
        hidden = out.hidden_states[-1][:, -R - 1 : -1]
        values = self.value_head(hidden.to(self.value_head.weight.dtype)).squeeze(-1).float()
        zeros = mask.new_zeros(mask.shape, dtype=logp.dtype)
        return zeros.index_put((b, t), logp), values * mask, zeros.index_put((b, t), entropy)

    def save(self, out: str | Path, state_dict: dict[str, torch.Tensor] | None = None) -> None:
        """Save the LM (transformers/PEFT format) and the value head beside it; `state_dict`: this
        module's whole weights gathered from shards (FSDP2 / ZeRO-3), used instead of its own."""
        out = Path(out)
        lm_state = {k[3:]: v for k, v in state_dict.items() if k.startswith("lm.")} if state_dict else None
        self.lm.save_pretrained(out, safe_serialization=True, **({"state_dict": lm_state} if lm_state else {}))
        head = ({k[len("value_head."):]: v for k, v in state_dict.items() if k.startswith("value_head.")}
                if state_dict else self.value_head.state_dict())
        save_file({k: v.detach().cpu().contiguous() for k, v in head.items()}, str(out / VALUE_HEAD_FILE))

    def load_value_head(self, folder: str | Path) -> bool:
        """Load a saved value head from `folder` if it has one; True when loaded."""
        path = Path(folder) / VALUE_HEAD_FILE
        if not path.exists():
            return False
        self.value_head.load_state_dict(load_file(str(path)))
        return True
