"""Loading causal LMs (a folder, a hub id or a built-in name via `alignlab.resolve`) and LoRA."""

from alignlab.models.loading import load_model, load_tokenizer

__all__ = ["load_model", "load_tokenizer"]
