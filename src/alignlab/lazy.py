"""Heavy (torch-side) names of a module, imported on first use, so that importing a recipe for its
config or `alignlab CMD --help` stays fast and torch-free."""

from __future__ import annotations

import functools
import importlib
from collections.abc import Callable, MutableMapping
from typing import Any


def lazy_names(namespace: MutableMapping[str, Any], sources: dict[str, str]) -> Callable[[str], Any]:
    """A module `__getattr__` for `sources` (name -> "module" or "module:attribute"): the first
    access imports the value and keeps it in `namespace`. Code that reads a name through it gets
    the module's current binding, so a test that monkeypatches the module attribute is obeyed."""

    def get(name: str) -> Any:
        if name in namespace:
            return namespace[name]
        if name not in sources:
            raise AttributeError(f"module {namespace.get('__name__')!r} has no attribute {name!r}")
        module, _, attr = sources[name].partition(":")
        value = importlib.import_module(module)
        if attr:
            try:
                value = getattr(value, attr)
            except AttributeError:
                value = importlib.import_module(f"{module}.{attr}")
        namespace[name] = value
        return value

    return get


def no_grad(fn: Callable[..., Any]) -> Callable[..., Any]:
    """`@torch.no_grad()` for a plain function, importing torch only when the function runs."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        import torch

        with torch.no_grad():
            return fn(*args, **kwargs)

    return wrapper
