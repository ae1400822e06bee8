"""Read and edit activations of decoder-only transformers at named sites and token positions.

Sites (`Site.parse("resid.3")`):
- `resid.L`  the residual stream after block L (the decoder layer's output),
- `mlp.L`    the MLP's output in block L (before it is added to the residual),
- `heads.L`  the attention head outputs of block L before the output projection,
             seen as [batch, tokens, heads, head_dim].

Positions (which tokens of each forward call are read or edited):
- `"all"`; `"last"` (the last token of each call: with a KV cache, the last prompt token
  and then every generated token); `"after_prompt"` (the last token of the first call
  and every token of the later, cached calls); an int or list of ints (absolute indices
  in the padded sequence, negatives count from the end of the call); a `slice` of
  absolute indices; or a bool tensor [tokens] / [batch, tokens] for the current call.

`Hooks(model)` is a context manager: every hook it added is removed on exit, also after
an exception, so the model's outputs are bit-identical to before. Works with plain
forwards, `alignlab.generation.sample` and HF `generate()` (absolute positions follow
the KV cache). Decoder-layer hooks get a tensor in transformers 5.x and a tuple in 4.x;
both are handled.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from alignlab.errors import ConfigError

SITE_KINDS = ("resid", "mlp", "heads")
Positions = str | int | Sequence[int] | slice | torch.Tensor
EditFn = Callable[[torch.Tensor], torch.Tensor]

_LAYER_LISTS = ("model.layers", "transformer.h", "gpt_neox.layers", "model.decoder.layers", "transformer.layers")
_ATTN_NAMES = ("self_attn", "attn", "attention", "self_attention")
_OUT_PROJ_NAMES = ("o_proj", "c_proj", "dense", "out_proj")
_MLP_NAMES = ("mlp", "feed_forward", "ffn")


@dataclass(frozen=True, order=True)
class Site:
    """A place in the network: kind (resid | mlp | heads) and block index."""

    kind: str
    layer: int

    def __post_init__(self) -> None:
        if self.kind not in SITE_KINDS:
            raise ConfigError(f"site kind '{self.kind}' is not one of {SITE_KINDS}")

    def __str__(self) -> str:
        return f"{self.kind}.{self.layer}"

    @classmethod
    def parse(cls, text: str | Site) -> Site:
        """'resid.3' -> Site('resid', 3)."""
        if isinstance(text, Site):
            return text
        kind, _, layer = str(text).partition(".")
        if not layer.lstrip("-").isdigit():
            raise ConfigError(f"site '{text}': expected KIND.LAYER, e.g. resid.3 (kinds: {', '.join(SITE_KINDS)})")
        return cls(kind, int(layer))


# --- architecture lookup ----------------------------------------------------------------
def _base(model: nn.Module) -> nn.Module:
    """Unwrap a PEFT model to the transformers model underneath."""
    get = getattr(model, "get_base_model", None)
    return get() if callable(get) else model


def decoder_layers(model: nn.Module) -> nn.ModuleList:
    """The list of decoder blocks (Llama/Qwen2/Mistral, GPT-2, GPT-NeoX, OPT, ...)."""
    m = _base(model)
    for path in _LAYER_LISTS:
        obj: Any = m
        for part in path.split("."):
            obj = getattr(obj, part, None)
            if obj is None:
                break
        if isinstance(obj, nn.ModuleList):
            return obj
    n = getattr(getattr(m, "config", None), "num_hidden_layers", None)
    for _, mod in m.named_modules():
        if isinstance(mod, nn.ModuleList) and len(mod) == n:
            return mod
    raise ConfigError(f"{type(m).__name__}: cannot find its decoder layers (tried {', '.join(_LAYER_LISTS)})")


def num_layers(model: nn.Module) -> int:
    """Number of decoder blocks."""
    return len(decoder_layers(model))


def _child(module: nn.Module, names: Sequence[str], what: str, layer: int) -> nn.Module:
    for n in names:
        c = getattr(module, n, None)
        if isinstance(c, nn.Module):
            return c
    raise ConfigError(f"block {layer} ({type(module).__name__}) has no {what} (looked for {', '.join(names)})")


def attention_out_proj(model: nn.Module, layer: int) -> nn.Module:
    """The attention output projection of block `layer` (its input = concatenated heads)."""
    block = decoder_layers(model)[layer]
    attn = _child(block, _ATTN_NAMES, "attention module", layer)
    return _child(attn, _OUT_PROJ_NAMES, "attention output projection", layer)


def mlp_module(model: nn.Module, layer: int) -> nn.Module:
    """The MLP of block `layer`."""
    return _child(decoder_layers(model)[layer], _MLP_NAMES, "MLP", layer)


def head_shape(model: nn.Module) -> tuple[int, int]:
    """(number of attention heads, head dimension)."""
    cfg = _base(model).config
    n = getattr(cfg, "num_attention_heads", None) or cfg.n_head
    proj = attention_out_proj(model, 0)
    width = getattr(proj, "in_features", None) or getattr(proj, "nx", None) or proj.weight.shape[0]
    return int(n), int(width) // int(n)


def hidden_size(model: nn.Module) -> int:
    """Width of the residual stream."""
    cfg = _base(model).config
    return int(getattr(cfg, "hidden_size", None) or cfg.n_embd)


def check_site(model: nn.Module, site: Site) -> None:
    """Raise ConfigError when `site` does not exist in `model`."""
    n = num_layers(model)
    if not -n <= site.layer < n:
        raise ConfigError(f"site {site}: the model has {n} layers (0..{n - 1})")


def _module_for(model: nn.Module, site: Site) -> nn.Module:
    check_site(model, site)
    if site.kind == "resid":
        return decoder_layers(model)[site.layer]
    if site.kind == "mlp":
        return mlp_module(model, site.layer)
    return attention_out_proj(model, site.layer)


# --- positions ------------------------------------------------------------------------
def _cache_length(kwargs: dict[str, Any]) -> int:
    """Tokens already in the KV cache at the start of this forward call."""
    cp = kwargs.get("cache_position")
    if isinstance(cp, torch.Tensor) and cp.numel():
        return int(cp.reshape(-1)[0])
    past = kwargs.get("past_key_values", kwargs.get("cache"))
    if past is None:
        return 0
    get = getattr(past, "get_seq_length", None)
    if callable(get):
        return int(get())
    try:  # legacy tuple cache: ((k, v), ...) with k [B, H, T, D]
        return int(past[0][0].shape[-2])
    except (TypeError, IndexError, AttributeError):
        return 0


def cache_kwarg(model: nn.Module) -> str:
    """Name of the KV-cache argument of `model.forward` (`cache` in recent transformers)."""
    import inspect

    params = inspect.signature(_base(model).forward).parameters
    return "cache" if "cache" in params and "past_key_values" not in params else "past_key_values"


def _needs_offset(positions: Positions) -> bool:
    return not (isinstance(positions, str) and positions in ("all", "last")) and not isinstance(positions, torch.Tensor)


def position_mask(positions: Positions, length: int, offset: int, device: torch.device) -> torch.Tensor | None:
    """Bool mask over the `length` tokens of a call starting at absolute `offset`; None = all."""
    if isinstance(positions, str):
        if positions == "all":
            return None
        mask = torch.zeros(length, dtype=torch.bool, device=device)
        if positions == "last" or (positions == "after_prompt" and offset == 0):
            mask[-1] = True
            return mask
        if positions == "after_prompt":
            return None
        raise ConfigError(f"positions '{positions}': use all, last, after_prompt, an index list or a slice")
    if isinstance(positions, torch.Tensor):
        if positions.shape[-1] != length:
            raise ConfigError(f"position mask has {positions.shape[-1]} tokens, the forward call {length}")
        return positions.to(device=device, dtype=torch.bool)
    absolute = torch.arange(offset, offset + length, device=device)
    if isinstance(positions, slice):
        start = positions.start if positions.start is not None else 0
        stop = positions.stop if positions.stop is not None else offset + length + 1
        return (absolute >= start) & (absolute < stop)
    idx = [positions] if isinstance(positions, int) else list(positions)
    mask = torch.zeros(length, dtype=torch.bool, device=device)
    for i in idx:
        if i < 0:
            if -length <= i:
                mask[i] = True
        elif offset <= i < offset + length:
            mask[i - offset] = True
    return mask


def _select(h: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    if mask is None:
        return h
    if mask.dim() == 1:
        return h[:, mask]
    return h[mask]  # [B, T] mask -> [n, ...]


# --- the manager ----------------------------------------------------------------------
class Hooks:
    """Context manager holding readers and editors; all hooks are removed on exit."""

    def __init__(self, model: nn.Module):
        self.model = model
        self._handles: list[Any] = []
        self._offset = 0
        self._tracking = False
        self.captured: dict[Site, list[torch.Tensor]] = {}

    # registration ------------------------------------------------------------------
    def _track_offset(self) -> None:
        if self._tracking:
            return

        def pre(_mod: nn.Module, _args: tuple, kwargs: dict[str, Any]) -> None:
            self._offset = _cache_length(kwargs)

        self._handles.append(_base(self.model).register_forward_pre_hook(pre, with_kwargs=True))
        self._tracking = True

    def _register(self, site: Site, transform: Callable[[torch.Tensor], torch.Tensor | None]) -> None:
        """Hook `site` so that `transform(acts)` sees (and may replace) its activation."""
        module = _module_for(self.model, site)
        if site.kind == "heads":
            n_heads, head_dim = head_shape(self.model)

            def pre(_mod: nn.Module, args: tuple) -> tuple | None:
                x = args[0]
                heads = x.view(*x.shape[:-1], n_heads, head_dim)
                new = transform(heads)
                if new is None:
                    return None
                return (new.reshape(x.shape), *args[1:])

            self._handles.append(module.register_forward_pre_hook(pre))
            return

        def post(_mod: nn.Module, _args: tuple, output: Any) -> Any:
            h = output[0] if isinstance(output, tuple) else output
            new = transform(h)
            if new is None:
                return None
            return (new, *output[1:]) if isinstance(output, tuple) else new

        self._handles.append(module.register_forward_hook(post))

    def read(self, site: Site | str, positions: Positions = "all", detach: bool = True) -> Hooks:
        """Record the activation at `site` (selected positions) on every forward call."""
        site = Site.parse(site)
        store = self.captured.setdefault(site, [])
        if _needs_offset(positions):
            self._track_offset()

        def transform(h: torch.Tensor) -> None:
            mask = position_mask(positions, h.shape[1], self._offset, h.device)
            sel = _select(h, mask)
            store.append(sel.detach().clone() if detach else sel)
            return None

        self._register(site, transform)
        return self

    def edit(self, site: Site | str, fn: EditFn, positions: Positions = "all") -> Hooks:
        """Replace the activation at `site` (selected positions) by `fn(activation)`."""
        site = Site.parse(site)
        if isinstance(positions, str) and positions == "all":
            self._register(site, fn)  # the hot path of per-token edits: no position logic
            return self
        if _needs_offset(positions):
            self._track_offset()

        def transform(h: torch.Tensor) -> torch.Tensor:
            mask = position_mask(positions, h.shape[1], self._offset, h.device)
            if mask is None:
                return fn(h)
            out = h.clone()
            if mask.dim() == 1:
                out[:, mask] = fn(h[:, mask])
            else:
                out[mask] = fn(h[mask])
            return out

        self._register(site, transform)
        return self

    def add(self, site: Site | str, vector: torch.Tensor, coefficient: float = 1.0, positions: Positions = "all") -> Hooks:
        """Add `coefficient * vector` at `site` (broadcast over batch and positions)."""
        v = vector.detach()
        return self.edit(site, lambda h: h + (coefficient * v).to(device=h.device, dtype=h.dtype), positions)

    def remove(self) -> None:
        """Remove every hook this manager added (idempotent)."""
        while self._handles:
            self._handles.pop().remove()
        self._tracking = False

    def stacked(self, site: Site | str) -> torch.Tensor:
        """Captured activations of `site` over all calls, concatenated along the batch."""
        site = Site.parse(site)
        if site not in self.captured or not self.captured[site]:
            raise ConfigError(f"nothing captured at {site}")
        return torch.cat(self.captured[site], dim=0)

    def __enter__(self) -> Hooks:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.remove()


# --- convenience -----------------------------------------------------------------------
def hooks(model: nn.Module) -> Hooks:
    """`with hooks(model) as h: h.read(...); h.edit(...)` — removed on exit."""
    return Hooks(model)


@torch.no_grad()
def last_token_activations(
    model: nn.Module,
    tokenizer,
    texts: Sequence[str] | Sequence[Sequence[int]],
    sites: Sequence[Site | str],
    batch_size: int = 16,
    progress: bool = False,
) -> dict[Site, torch.Tensor]:
    """Activation at the last token of each text, per site: resid/mlp [N, d], heads [N, H, Dh]."""
    from alignlab.scoring import pad_batch

    parsed = [Site.parse(s) for s in sites]
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    ids_list = [list(t) if not isinstance(t, str) else tokenizer(t, add_special_tokens=False)["input_ids"] for t in texts]
    if any(len(x) == 0 for x in ids_list):
        raise ConfigError("last_token_activations: an input text encodes to no tokens")
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    out: dict[Site, list[torch.Tensor]] = {s: [] for s in parsed}
    starts = range(0, len(ids_list), batch_size)
    from alignlab.progress import progress_bar

    with progress_bar("activations", total=len(starts), enabled=progress) as bar:
        for s in starts:
            ids, mask = pad_batch(ids_list[s : s + batch_size], pad, side="left")
            pos = (mask.cumsum(-1) - 1).clamp_min(0)
            with Hooks(model) as h:
                for site in parsed:
                    h.read(site, positions="last")
                model(input_ids=ids.to(device), attention_mask=mask.to(device),
                      position_ids=pos.to(device), use_cache=False)
                for site in parsed:
                    out[site].append(h.stacked(site)[:, 0].float().cpu())
            bar.advance()
    if was_training:
        model.train()
    return {s: torch.cat(v) for s, v in out.items()}


def head_to_residual(model: nn.Module, layer: int, head: int, vector: torch.Tensor) -> torch.Tensor:
    """Map one head's output through its layer's output projection (bias excluded) -> [d]."""
    proj = attention_out_proj(model, layer)
    n_heads, head_dim = head_shape(model)
    p = next(proj.parameters())
    x = torch.zeros(n_heads * head_dim, dtype=p.dtype, device=p.device)
    x[head * head_dim : (head + 1) * head_dim] = vector.to(p.dtype)
    with torch.no_grad():
        return (proj(x[None]) - proj(torch.zeros_like(x)[None]))[0].float()
