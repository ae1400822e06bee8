"""Typed configs: dataclasses loaded from YAML with `key=value` overrides.

Every recipe has one config dataclass. Unknown or mistyped keys are errors that name
the key (with a suggestion), so a typo never silently falls back to a default. Numbers are
checked at load too: every float must be finite, a field declared with `bounded(...)` must lie
in its range, and a config class may add cross-field rules in `check(self, where)`.
"""

from __future__ import annotations

import dataclasses
import difflib
import importlib.util
import math
import re
import types
import typing
from pathlib import Path
from typing import Any, Literal, TypeVar

import yaml

from alignlab.errors import ConfigError, naming_path

T = TypeVar("T")

Dtype = Literal["float32", "bfloat16", "float16"]  # the dtypes models.loading loads
LRSchedule = Literal["constant", "linear", "cosine"]
MixedPrecision = Literal["no", "bf16", "fp16"]
AttnImplementation = Literal["sdpa", "eager", "flash_attention_2"]  # transformers' attention kernels


class _Loader(yaml.SafeLoader):
    """Safe YAML where only true/false are booleans (YAML 1.2), so `mixed_precision: no`
    and `mixed_precision=no` stay the string 'no'."""


_BOOL = "tag:yaml.org,2002:bool"
_Loader.yaml_implicit_resolvers = {
    first: [(tag, rx) for tag, rx in resolvers if tag != _BOOL]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_Loader.add_implicit_resolver(_BOOL, re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF"))


def _load_yaml(text: str) -> Any:
    return yaml.load(text, Loader=_Loader)  # _Loader is a SafeLoader


@dataclasses.dataclass(frozen=True)
class Range:
    """The allowed values of a numeric config field: open (gt/lt) or closed (ge/le) bounds,
    plus special values outside them (`also`, e.g. -1 = 'all'). Lists are checked per item."""

    gt: float | None = None
    ge: float | None = None
    lt: float | None = None
    le: float | None = None
    also: tuple[float, ...] = ()

    def contains(self, value: float) -> bool:
        if value in self.also:
            return True
        return not ((self.gt is not None and not value > self.gt) or (self.ge is not None and not value >= self.ge)
                    or (self.lt is not None and not value < self.lt) or (self.le is not None and not value <= self.le))

    def describe(self) -> str:
        parts = [f"{op} {b:g}" for op, b in ((">", self.gt), (">=", self.ge), ("<", self.lt), ("<=", self.le))
                 if b is not None]
        text = " and ".join(parts)
        return text + "".join(f" or {v:g}" for v in self.also)

    def check(self, value: Any, where: str) -> None:
        """ConfigError naming `where` when `value` (or an item of a list value) is out of range."""
        if isinstance(value, (list, tuple)):
            for i, v in enumerate(value):
                self.check(v, f"{where}[{i}]")
        elif isinstance(value, (int, float)) and not isinstance(value, bool) and not self.contains(value):
            raise ConfigError(f"{where}: must be {self.describe()}, got {value!r}")


def bounded(default: Any, *, gt: float | None = None, ge: float | None = None, lt: float | None = None,
            le: float | None = None, also: tuple[float, ...] = ()) -> Any:
    """A config field with a default and an allowed range, checked when the config is loaded:
    `lr: float = bounded(1e-4, gt=0)`; a list default is copied per instance."""
    meta = {"range": Range(gt, ge, lt, le, tuple(also))}
    if isinstance(default, list):
        return dataclasses.field(default_factory=lambda: list(default), metadata=meta)
    return dataclasses.field(default=default, metadata=meta)


def check_config(cfg: Any, where: str = "config") -> None:
    """Range-check the fields of one config dataclass and run its `check(where)` hook, if any
    (nested configs are checked where they are built, by `from_dict`)."""
    for f in dataclasses.fields(cfg):
        rng = f.metadata.get("range")
        value = getattr(cfg, f.name)
        if rng is not None and value is not None:
            rng.check(value, f"{where}.{f.name}")
    hook = getattr(cfg, "check", None)
    if callable(hook):
        hook(where)


@dataclasses.dataclass
class LoraSettings:
    """PEFT LoRA adapter settings; `enabled: false` trains all weights."""

    enabled: bool = False
    r: int = bounded(8, ge=1)
    alpha: int = bounded(16, gt=0)
    dropout: float = bounded(0.0, ge=0, lt=1)
    target_modules: list[str] = dataclasses.field(
        default_factory=lambda: ["q_proj", "k_proj", "v_proj", "o_proj"]
    )


@dataclasses.dataclass
class ModelSettings:
    """Which causal LM to load: a folder, a hub id or a built-in name (resolved by
    `alignlab.resolve.model_path`); required: loading an empty name is a ConfigError."""

    name_or_path: str = ""
    dtype: Dtype = "float32"
    attn_implementation: AttnImplementation | None = None  # None: transformers' default (sdpa where supported)
    gradient_checkpointing: bool = False  # trained model: recompute activations in backward (less memory)
    compile: bool = False  # trained model: torch.compile its decoder stack (pays on a GPU, long steps)
    lora: LoraSettings = dataclasses.field(default_factory=LoraSettings)

    def check(self, where: str) -> None:
        """FlashAttention 2 is only selectable where its package is installed."""
        if self.attn_implementation == "flash_attention_2" and importlib.util.find_spec("flash_attn") is None:
            raise ConfigError(f"{where}.attn_implementation: 'flash_attention_2' needs the flash-attn package "
                              "(pip install flash-attn, CUDA only), which is not installed; use sdpa or eager")


@dataclasses.dataclass
class TrainSettings:
    """Settings of the shared training loop (alignlab.train.loop)."""

    lr: float = bounded(1e-4, gt=0)
    batch_size: int = bounded(8, ge=1)
    grad_accum: int = bounded(1, ge=1)
    epochs: int = bounded(1, ge=1)
    max_steps: int = bounded(-1, ge=1, also=(-1,))  # optimiser steps; -1 = run all epochs
    warmup_steps: int = bounded(0, ge=0)
    lr_schedule: LRSchedule = "constant"  # after warmup
    weight_decay: float = bounded(0.0, ge=0)
    max_grad_norm: float = bounded(1.0, ge=0)  # 0 = no clipping
    seed: int = 0
    log_every: int = bounded(10, ge=1)
    save_every: int = bounded(100, ge=0)  # 0 = no checkpoints during training
    keep_checkpoints: int = bounded(2, ge=0)  # 0 = keep all; the last good one is always kept (may add one)
    mixed_precision: MixedPrecision = "no"  # bf16 / fp16 on a GPU
    progress: bool = True
    divergence_factor: float = bounded(0.0, gt=1, also=(0.0,))  # stop when the loss stays above k x its median (0 = off)
    divergence_patience: int = bounded(10, ge=1)  # ... for this many steps in a row
    # experiment trackers (alignlab.train.trackers), offline by default; a bare name is a one-item list
    report_to: list[Literal["tensorboard", "wandb", "mlflow", "none"]] = dataclasses.field(default_factory=list)


def _is_dataclass_type(tp: Any) -> bool:
    return isinstance(tp, type) and dataclasses.is_dataclass(tp)


def _coerce(value: Any, tp: Any, where: str) -> Any:
    """Check/convert `value` to annotation `tp`; raise ConfigError naming `where`."""
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if tp is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(value, arg, where)
            except ConfigError as e:
                errors.append(str(e))
        raise ConfigError(errors[0] if errors else f"{where}: bad value {value!r}")
    if origin is typing.Literal:
        if value not in args:
            raise ConfigError(f"{where}: {value!r} is not one of {list(args)}")
        return value
    if _is_dataclass_type(tp):
        if isinstance(value, tp):
            return value
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a mapping for {tp.__name__}, got {value!r}")
        return from_dict(tp, value, where)
    if origin in (list, tuple):
        if isinstance(value, str) and args and typing.get_origin(args[0]) is typing.Literal:
            value = [value]  # `train.report_to=tensorboard`: one choice of a list of choices
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where}: expected a list, got {value!r}")
        inner = args[0] if args else Any
        return [_coerce(v, inner, f"{where}[{i}]") for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a mapping, got {value!r}")
        return dict(value)
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"{where}: expected true/false, got {value!r}")
    if tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        raise ConfigError(f"{where}: expected an integer, got {value!r}")
    if tp is float:
        number = None
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            number = float(value)
        elif isinstance(value, str):
            try:
                number = float(value)
            except ValueError:
                pass
        if number is None:
            raise ConfigError(f"{where}: expected a number, got {value!r}")
        if not math.isfinite(number):
            raise ConfigError(f"{where}: must be a finite number, got {value!r}")
        return number
    if tp is str:
        if isinstance(value, (str, int, float)) and not isinstance(value, bool):
            return str(value)
        raise ConfigError(f"{where}: expected a string, got {value!r}")
    return value


def from_dict(cls: type[T], data: dict[str, Any], where: str = "config") -> T:
    """Build dataclass `cls` from a nested dict, rejecting unknown keys by name."""
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    kwargs = {}
    for key, value in data.items():
        if key not in fields:
            near = difflib.get_close_matches(str(key), fields, n=1)
            hint = f" (did you mean '{near[0]}'?)" if near else ""
            raise ConfigError(
                f"{where}: unknown key '{key}'{hint}; valid keys: {', '.join(sorted(fields))}"
            )
        if isinstance(value, dict) and _is_dataclass_type(hints[key]):
            # a partial section overrides the recipe's own defaults for it, not the class's
            value = _merge(_field_default(fields[key]), value)
        kwargs[key] = _coerce(value, hints[key], f"{where}.{key}")
    cfg = cls(**kwargs)
    check_config(cfg, where)
    return cfg


def _field_default(f: dataclasses.Field) -> dict[str, Any]:
    """The default of a nested-config field as a dict ({} when it has none)."""
    if f.default_factory is not dataclasses.MISSING:
        return dataclasses.asdict(f.default_factory())
    if f.default is not dataclasses.MISSING and dataclasses.is_dataclass(f.default):
        return dataclasses.asdict(f.default)
    return {}


def recheck(cfg: Any) -> None:
    """Every load-time check (types, Literals, ranges, `check` hooks) on a config built in code."""
    from_dict(type(cfg), to_dict(cfg))


def to_dict(cfg: Any) -> dict[str, Any]:
    """Plain nested dict of a config (for YAML dumps and run directories)."""
    return dataclasses.asdict(cfg)


def _set_path(data: dict[str, Any], dotted: str, value: Any) -> None:
    node = data
    parts = dotted.split(".")
    for part in parts[:-1]:
        node = node.setdefault(part, {})
        if not isinstance(node, dict):
            raise ConfigError(f"override '{dotted}': '{part}' is not a section")
    node[parts[-1]] = value


def parse_overrides(overrides: list[str]) -> dict[str, Any]:
    """Turn ['train.lr=1e-4', 'loss=ipo'] into a nested dict; values parsed as YAML."""
    out: dict[str, Any] = {}
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"override '{item}' must look like key=value (e.g. train.lr=1e-4)")
        key, raw = item.split("=", 1)
        try:
            value = _load_yaml(raw) if raw != "" else ""
        except yaml.YAMLError:
            value = raw
        except RecursionError as e:
            raise ConfigError(f"override '{key}': value nested too deeply to read") from e
        _set_path(out, key.strip(), value)
    return out


def _merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for k, v in extra.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = _merge(out[k], v)
        else:
            out[k] = v
    return out


def _read_yaml_file(p: Path) -> Any:
    """The YAML content of a config file; ConfigError naming the file when it is missing, binary,
    not UTF-8, not YAML or nested too deeply."""
    if not p.is_file():
        raise ConfigError(f"config file not found: {p}")
    raw = p.read_bytes()
    if b"\0" in raw:
        raise ConfigError(f"{p}: not a YAML config file (binary content)")
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        line = raw[: e.start].count(b"\n") + 1
        raise ConfigError(f"{p}:{line}: not UTF-8 text (byte {e.start}); a config file is YAML text") from e
    try:
        return _load_yaml(text)
    except yaml.YAMLError as e:
        raise ConfigError(f"{p}: not valid YAML: {e}") from e
    except RecursionError as e:
        raise ConfigError(f"{p}: YAML nested too deeply to read") from e


def load_config(cls: type[T], path: str | Path | None = None, overrides: list[str] | None = None) -> T:
    """Load `cls` from an optional YAML file plus `key=value` overrides."""
    data: dict[str, Any] = {}
    where = "config"
    if path is not None:
        p = Path(path)
        where = str(p)
        loaded = _read_yaml_file(p)
        if loaded is None:
            loaded = {}
        if not isinstance(loaded, dict):
            raise ConfigError(f"{p}: top level must be a mapping of keys, got a {type(loaded).__name__}")
        data = loaded
    check_override_keys(cls, overrides or [])
    data = _merge(data, parse_overrides(overrides or []))
    return from_dict(cls, data, where)


def check_override_keys(cls: type, overrides: list[str], where: str = "command line") -> None:
    """Reject a `key=value` override whose dotted key is not a field of `cls`, blaming the command
    line (not the YAML file) and suggesting the nearest dotted key."""
    for item in overrides:
        key = item.split("=", 1)[0].strip()
        if "=" not in item or not key:
            continue  # parse_overrides says what is wrong with it
        tp: Any = cls
        done: list[str] = []
        for part in key.split("."):
            if not _is_dataclass_type(tp):
                break  # a free-form mapping (e.g. column names): any key goes
            fields = {f.name: f for f in dataclasses.fields(tp)}
            if part not in fields:
                near = difflib.get_close_matches(part, fields, n=1)
                hint = f" (did you mean '{'.'.join([*done, near[0]])}'?)" if near else ""
                raise ConfigError(f"{where}: unknown key '{'.'.join([*done, part])}'{hint}; valid keys"
                                  f"{' of ' + '.'.join(done) if done else ''}: {', '.join(sorted(fields))}")
            tp = typing.get_type_hints(tp)[part]
            done.append(part)


def save_config(cfg: Any, path: str | Path) -> None:
    """Write a resolved config as YAML (a failed write names the file)."""
    with naming_path(path):
        Path(path).write_text(yaml.safe_dump(to_dict(cfg), sort_keys=False))
