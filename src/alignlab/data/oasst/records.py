"""Convert between JSON objects and `Message`s, accepting the label/emoji layouts real exports use."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any

from .models import Label, Message

# SPEC field order, used when writing a message back out.
FIELDS = (
    "message_id",
    "parent_id",
    "user_id",
    "created_date",
    "text",
    "role",
    "lang",
    "review_count",
    "review_result",
    "deleted",
    "rank",
    "synthetic",
    "model_name",
    "emojis",
    "labels",
    "detoxify",
    "message_tree_id",
    "tree_state",
)
_KNOWN = frozenset(FIELDS) | {"replies"}


class FieldError(ValueError):
    """A field of one message is missing or has the wrong type."""

    def __init__(self, name: str, reason: str) -> None:
        """Name the field and say what is wrong with it."""
        self.name = name
        super().__init__(f"field {name!r} {reason}")


def _missing(value: Any) -> bool:
    """True for null and for the NaN that dataframe exports write for a missing value."""
    return value is None or (isinstance(value, float) and math.isnan(value))


def _opt_str(d: Mapping[str, Any], name: str) -> str | None:
    """A string field that may be absent; numbers (e.g. epoch dates) are kept as text."""
    value = d.get(name)
    if _missing(value):
        return None
    if isinstance(value, str):
        return value
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return str(value)
    raise FieldError(name, f"must be a string, got {type(value).__name__}")


def _req_str(d: Mapping[str, Any], name: str) -> str:
    """A string field that must be present (and non-empty for ids)."""
    value = d.get(name)
    if not isinstance(value, str) or (name == "message_id" and not value):
        got = "nothing" if _missing(value) else repr(value)[:40]
        raise FieldError(name, f"must be a non-empty string, got {got}")
    return value


def _opt_int(d: Mapping[str, Any], name: str, minimum: int | None = None) -> int | None:
    """An integer field that may be absent; whole floats (from dataframe exports) are accepted."""
    value = d.get(name)
    if _missing(value):
        return None
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if not isinstance(value, int) or isinstance(value, bool):
        raise FieldError(name, f"must be an integer or null, got {value!r}")
    if minimum is not None and value < minimum:
        raise FieldError(name, f"must be >= {minimum}, got {value}")
    return value


def _opt_bool(d: Mapping[str, Any], name: str) -> bool | None:
    """A boolean field that may be absent."""
    value = d.get(name)
    if _missing(value):
        return None
    if not isinstance(value, bool):
        raise FieldError(name, f"must be true, false or null, got {value!r}")
    return value


def _opt_object(d: Mapping[str, Any], name: str) -> dict[str, Any] | None:
    """A JSON object field that may be absent (e.g. detoxify scores)."""
    value = d.get(name)
    if _missing(value):
        return None
    if not isinstance(value, Mapping):
        raise FieldError(name, f"must be an object or null, got {type(value).__name__}")
    return dict(value)


def _number(value: Any, name: str) -> float:
    """A label value: any JSON number (range is checked by validation, not here)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise FieldError(name, f"must be a number, got {value!r}")
    return float(value)


def parse_labels(raw: Any) -> dict[str, Label]:
    """Labels as {name: {value, count}}, a list of {name, value, count}, or columns {name: [...], ...}."""
    if _missing(raw):
        return {}
    if isinstance(raw, Mapping) and isinstance(raw.get("name"), list):
        names, values = raw["name"], raw.get("value")
        counts = raw.get("count") or [None] * len(names)
        if not isinstance(values, list) or not (len(names) == len(values) == len(counts)):
            raise FieldError("labels", "columns name/value/count must be lists of one length")
        raw = [
            {"name": n, "value": v, "count": c}
            for n, v, c in zip(names, values, counts, strict=True)
        ]
    items: list[tuple[Any, Any]]
    if isinstance(raw, Mapping):
        items = list(raw.items())
    elif isinstance(raw, list):
        if not all(isinstance(item, Mapping) and "name" in item for item in raw):
            raise FieldError("labels", "list entries must be objects with a 'name'")
        items = [(item["name"], item) for item in raw]
    else:
        raise FieldError("labels", f"must be an object or a list, got {type(raw).__name__}")
    labels: dict[str, Label] = {}
    for name, entry in items:
        if not isinstance(name, str):
            raise FieldError("labels", f"label name must be a string, got {name!r}")
        if not isinstance(entry, Mapping) or "value" not in entry:
            raise FieldError("labels", f"label {name!r} must be an object with a 'value'")
        labels[name] = Label(
            value=_number(entry["value"], f"labels.{name}.value"),
            count=_opt_int(entry, "count", minimum=0),
        )
    return labels


def parse_emojis(raw: Any) -> dict[str, int]:
    """Emojis as {code: count} or as columns {name: [...], count: [...]}."""
    if _missing(raw):
        return {}
    if isinstance(raw, Mapping) and isinstance(raw.get("name"), list):
        names, counts = raw["name"], raw.get("count")
        if not isinstance(counts, list) or len(counts) != len(names):
            raise FieldError("emojis", "columns name/count must be lists of one length")
        raw = dict(zip(names, counts, strict=True))
    if not isinstance(raw, Mapping):
        raise FieldError("emojis", f"must be an object, got {type(raw).__name__}")
    emojis: dict[str, int] = {}
    for code, count in raw.items():
        value = _opt_int({"count": count}, "count", minimum=0)
        if not isinstance(code, str) or value is None:
            raise FieldError("emojis", f"entry {code!r}: {count!r} must map a code to a count")
        emojis[code] = value
    return emojis


def message_from_dict(
    d: Mapping[str, Any], *, line: int | None = None, errors: list[FieldError] | None = None
) -> Message:
    """Build a `Message` (without replies) from one JSON object.

    A missing/invalid `message_id` always raises `FieldError`. Other bad fields raise too,
    unless an `errors` list is given: then each is appended there and the field gets its
    default, so the message can still be placed in its tree (which validation then skips).
    """

    def get(parse: Callable[..., Any], name: str, *args: Any, default: Any = None) -> Any:
        try:
            return parse(d, name, *args)
        except FieldError as error:
            if errors is None:
                raise
            errors.append(error)
            return default

    return Message(
        message_id=_req_str(d, "message_id"),
        parent_id=get(_opt_str, "parent_id"),
        user_id=get(_opt_str, "user_id"),
        created_date=get(_opt_str, "created_date"),
        text=get(_req_str, "text", default=""),
        role=get(_opt_str, "role", default="") or "",
        lang=get(_opt_str, "lang"),
        review_count=get(_opt_int, "review_count", 0),
        review_result=get(_opt_bool, "review_result"),
        deleted=bool(get(_opt_bool, "deleted")),
        rank=get(_opt_int, "rank", 0),
        synthetic=bool(get(_opt_bool, "synthetic")),
        model_name=get(_opt_str, "model_name"),
        emojis=get(lambda m, n: parse_emojis(m.get(n)), "emojis", default={}),
        labels=get(lambda m, n: parse_labels(m.get(n)), "labels", default={}),
        detoxify=get(_opt_object, "detoxify"),
        message_tree_id=get(_opt_str, "message_tree_id"),
        tree_state=get(_opt_str, "tree_state"),
        extra={k: v for k, v in d.items() if k not in _KNOWN},
        line=line,
    )


def message_to_dict(message: Message, *, nested: bool = False) -> dict[str, Any]:
    """One JSON object in SPEC field order; with `nested`, replies are included recursively."""
    out: dict[str, Any] = {name: getattr(message, name) for name in FIELDS}
    out["emojis"] = dict(message.emojis)
    out["labels"] = {n: {"value": lb.value, "count": lb.count} for n, lb in message.labels.items()}
    out.update(message.extra)
    if nested:
        out["replies"] = [message_to_dict(reply, nested=True) for reply in message.replies]
    return out
