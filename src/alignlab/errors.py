"""Errors users see: each names what went wrong and where, never a bare traceback."""

from __future__ import annotations

import errno
import os
from collections.abc import Iterator
from contextlib import contextmanager


class AlignlabError(Exception):
    """Base class for errors reported to the user with exit code 2."""


class ConfigError(AlignlabError, ValueError):
    """A config file or override is wrong: unknown key, bad type, missing file."""


class DataError(AlignlabError, ValueError):
    """An input data file is malformed; the message names file, line and field."""


class TrainingError(AlignlabError, RuntimeError):
    """Training cannot go on (e.g. a NaN loss); the last good checkpoint is intact."""


_OS_HINTS = {
    errno.ENOSPC: "the disk is full; free space or write elsewhere (--out)",
    errno.EDQUOT: "the disk quota is exceeded; free space or write elsewhere (--out)",
    errno.EROFS: "the file system is read-only; write elsewhere (--out)",
    errno.EACCES: "permission denied",
    errno.EPERM: "operation not permitted",
}


@contextmanager
def naming_path(path: str | os.PathLike[str]) -> Iterator[None]:
    """Re-raise an OSError that names no file (a failed write or flush) with `path` attached, so
    the CLI's message says which file could not be written."""
    try:
        yield
    except OSError as e:
        if e.filename is not None or e.errno is None:
            raise
        raise OSError(e.errno, e.strerror or str(e), os.fspath(path)) from e


def describe_os_error(e: OSError, fallback: str = "") -> str:
    """One line for an OSError: the file(s) it names (else `fallback`), the system's reason and,
    for a full disk, a read-only file system or a permission problem, what to do."""
    files = [str(f) for f in (e.filename, e.filename2) if f is not None] or ([fallback] if fallback else [])
    reason = e.strerror or str(e) or type(e).__name__
    hint = _OS_HINTS.get(e.errno or -1, "")
    head = f"{' -> '.join(files)}: " if files else ""
    return f"{head}{reason}" + (f" ({hint})" if hint and hint.lower() != reason.lower() else "")
