"""alignlab: align causal language models end to end, measurable offline on a built-in test world."""

__version__ = "0.1.0"
