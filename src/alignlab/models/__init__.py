"""Loading causal LMs (testbed, local path, hub id, the offline real model) and LoRA."""

from alignlab.models.loading import load_model, load_tokenizer, resolve_model_path

__all__ = ["load_model", "load_tokenizer", "resolve_model_path"]
