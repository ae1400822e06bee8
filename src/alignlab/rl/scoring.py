"""Deprecated alias of `alignlab.scoring` (kept while the tree moves over)."""

from alignlab.scoring import Packed, pack, response_logits, response_logprobs  # noqa: F401
