"""Deprecated alias of `alignlab.scoring` (kept while the tree moves over)."""

from alignlab.scoring import *  # noqa: F401,F403
from alignlab.scoring import causal_lm_loss, pad_batch, score_completions, sequence_logprobs, sequence_logps, token_logprobs  # noqa: F401
