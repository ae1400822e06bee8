"""What a run directory is and who writes it: the identity of a run (a fingerprint of its config
and the files it names, compared on every rerun) and the one-writer lock (`RUN/.lock`).
Used by `alignlab.runs.RunDir`."""

from __future__ import annotations

import errno
import fcntl
import hashlib
import json
import os
import socket
import time
from dataclasses import is_dataclass
from pathlib import Path
from typing import Any

from alignlab.config import to_dict
from alignlab.errors import ConfigError

IDENTITY = "identity.json"
VOLATILE_KEYS = frozenset({"output_dir"})
VOLATILE_LEAVES = frozenset({"progress", "log_every", "save_every", "keep_checkpoints",
                             "divergence_factor", "divergence_patience", "report_to"})
HASH_LIMIT = 64 * 2**20  # files up to this size are identified by content, larger ones by size + mtime


# --- identity ------------------------------------------------------------------------------
def is_volatile(key: str) -> bool:
    """True for config keys that do not change what a run computes (see the module docstring)."""
    return key in VOLATILE_KEYS or key.rsplit(".", 1)[-1] in VOLATILE_LEAVES


def _flatten(data: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(data, dict):
        out: dict[str, Any] = {}
        for k, v in data.items():
            out.update(_flatten(v, f"{prefix}.{k}" if prefix else str(k)))
        return out
    return {prefix: data}


DATASET_MARKERS = ("dataset_info.json", "dataset_dict.json", "state.json", "data")


def folder_stamp(path: str) -> dict[str, Any] | None:
    """A dataset folder (`save_to_disk` or hub layout; not a model folder): sha256 over each file's
    relative path, size and mtime — a changed dataset is a changed run. None for other folders."""
    p = Path(path)
    if (p / "config.json").exists() or (p / "adapter_config.json").exists():
        return None
    if not any((p / m).exists() for m in DATASET_MARKERS):
        return None
    h, size = hashlib.sha256(), 0
    for f in sorted(x for x in p.rglob("*") if x.is_file() and ".cache" not in x.parts):
        st = f.stat()
        size += st.st_size
        h.update(f"{f.relative_to(p)}|{st.st_size}|{st.st_mtime_ns}\n".encode())
    return {"path": path, "size": size, "sha256": h.hexdigest()}


def file_stamp(path: str) -> dict[str, Any] | None:
    """Size + sha256 (or + mtime when over HASH_LIMIT) of an existing file, a dataset folder's
    listing stamp (`folder_stamp`); None for anything else."""
    if path and "\n" not in path and os.path.isdir(path):
        return folder_stamp(path)
    if not path or "\n" in path or not os.path.isfile(path):
        return None
    st = os.stat(path)
    stamp: dict[str, Any] = {"path": path, "size": st.st_size}
    if st.st_size > HASH_LIMIT:
        stamp["mtime_ns"] = st.st_mtime_ns
        return stamp
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    stamp["sha256"] = h.hexdigest()
    return stamp


def run_identity(cfg: Any) -> dict[str, Any]:
    """What a run is: its flattened resolved config and a stamp of each file a value names."""
    flat = _flatten(to_dict(cfg) if is_dataclass(cfg) else dict(cfg))
    files: dict[str, Any] = {}
    for key, value in flat.items():
        values = value if isinstance(value, list) else [value]
        for i, v in enumerate(values):
            stamp = file_stamp(v) if isinstance(v, str) and not is_volatile(key) else None
            if stamp is not None:
                files[key if len(values) == 1 else f"{key}[{i}]"] = stamp
    return json.loads(json.dumps({"version": 1, "config": flat, "files": files}))  # as it reads back


_ABSENT = object()


def _show(v: Any) -> str:
    return "(absent)" if v is _ABSENT else json.dumps(v)


def _stamp_text(s: dict[str, Any]) -> str:
    if "sha256" in s:
        return f"sha256 {s['sha256'][:12]}, {s['size']} bytes"
    return f"{s['size']} bytes, mtime {s.get('mtime_ns')}"


def config_defaults(cfg: Any) -> dict[str, Any]:
    """The flattened defaults of `cfg`'s class ({} when it cannot be built without arguments)."""
    try:
        return run_identity(type(cfg)())["config"]
    except Exception:  # noqa: BLE001 — a class with required fields simply has no defaults to offer
        return {}


def identity_changes(old: dict[str, Any], new: dict[str, Any], defaults: dict[str, Any] | None = None) -> list[str]:
    """'key: old → new' for each difference that matters (volatile keys are skipped). A key the
    old run did not have (the config class grew since) counts only when it is not at its default."""
    changes = []
    oc, nc, defaults = old.get("config", {}), new.get("config", {}), defaults or {}
    for key in sorted(set(oc) | set(nc)):
        a, b = oc.get(key, _ABSENT), nc.get(key, _ABSENT)
        if a is _ABSENT and key in defaults and defaults[key] == b:
            continue
        if not is_volatile(key) and a != b:
            changes.append(f"{key}: {_show(a)} → {_show(b)}")
    if "files" not in old:  # recorded before identities had files (config.yaml only)
        return changes
    of, nf = old["files"], new.get("files", {})
    for key in sorted(set(of) | set(nf)):
        a, b = of.get(key), nf.get(key)
        path = (a or b)["path"]
        if (a and b and a["path"] != b["path"]) or (a == b):
            continue  # a changed path is already a changed config value
        if a is None or b is None:
            if oc.get(key.split("[")[0]) == nc.get(key.split("[")[0]):
                changes.append(f"{key}: file {path} {'appeared' if a is None else 'is gone'}")
        else:
            changes.append(f"{key}: file {path} changed ({_stamp_text(a)} → {_stamp_text(b)})")
    return changes


def mismatch_message(path: Path, changes: list[str]) -> str:
    lines = "\n  ".join(changes)
    return (f"{path} holds a run with a different config; refusing to mix them:\n  {lines}\n"
            f"Write this run elsewhere (--out NEW_DIR), or continue the old run with the new config "
            f"(--resume-anyway; in Python RunDir(..., allow_mismatch=True)).")


# --- the one-writer lock -------------------------------------------------------------------
RANK_VARIABLES = ("RANK", "OMPI_COMM_WORLD_RANK", "PMI_RANK", "PMIX_RANK", "MV2_COMM_WORLD_RANK")


def launcher_rank() -> int:
    """This process's global rank as the launcher (torchrun / accelerate launch / MPI) set it; 0 alone."""
    for name in RANK_VARIABLES:
        value = os.environ.get(name, "")
        if value.isdigit():
            return int(value)
    return 0


_HELD: dict[str, list[Any]] = {}  # resolved run path -> [open lock file, number of RunDirs using it]


def _lock_owner(text: str) -> str:
    parts = text.split()
    if not parts:
        return "another process (pid unknown)"
    pid, host = parts[0], parts[1] if len(parts) > 1 else "?"
    owner = f"pid {pid} on {host}"
    if host == socket.gethostname() and pid.isdigit():
        try:
            os.kill(int(pid), 0)
        except ProcessLookupError:
            owner += " (no longer running: a child process it started may still hold the lock)"
        except PermissionError:
            pass
    return owner


def _acquire(run_path: Path) -> str:
    key = str(run_path.resolve())
    if key in _HELD:
        _HELD[key][1] += 1
        return key
    f = open(run_path / ".lock", "a+")
    try:
        fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as e:
        if e.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
            f.close()
            raise ConfigError(f"{run_path}: cannot lock the run directory ({e.strerror})") from e
        f.seek(0)
        owner = _lock_owner(f.read())
        f.close()
        raise ConfigError(f"{run_path} is in use by another run ({owner}); wait for it to finish or stop it, "
                          f"or write this run elsewhere (--out NEW_DIR)") from None
    try:
        f.seek(0)
        f.truncate()
        f.write(f"{os.getpid()} {socket.gethostname()} {time.strftime('%Y-%m-%dT%H:%M:%S')}\n")
        f.flush()
    except OSError:  # e.g. a full disk: let go of the lock, the caller reports the error
        f.close()
        raise
    _HELD[key] = [f, 1]
    return key


def _release(key: str) -> None:
    held = _HELD.get(key)
    if held is None:
        return
    held[1] -= 1
    if held[1] <= 0:
        del _HELD[key]
        held[0].close()  # closing the last descriptor releases the flock (no LOCK_UN: forks share it)


