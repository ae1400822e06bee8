"""Deprecated alias of `alignlab.scoring` (kept while the tree moves over)."""

from alignlab.losses.lm import causal_lm_loss  # noqa: F401
from alignlab.scoring import *  # noqa: F401,F403
from alignlab.scoring import (  # noqa: F401
    pad_batch,
    score_completions,
    sequence_logprobs,
    sequence_logps,
    token_logprobs,
)
