"""Inference-time alignment: activation hooks, steering vectors, function vectors, SEA, limits.

- `hooks`: read/edit activations at `resid.L`, `mlp.L`, `heads.L` (context manager).
- `steering`: contrastive activation addition (train, apply, sweep, save/load).
- `function_vectors`: mean head activations, causal indirect effects, FV by layer.
- `sea`: spectral editing (linear and Φ-SEA), layer heuristic, save/load.
- `limits`: steering success as prompt structure and context complexity change.
"""

from alignlab.interventions.hooks import Hooks, Site

__all__ = ["Hooks", "Site"]
