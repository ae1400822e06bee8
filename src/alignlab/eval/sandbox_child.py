"""What runs inside the code sandbox: the candidate's runner and the separate checker.

`alignlab.eval.sandbox` passes this file's text to `python -I -S -B -c`, so it imports only the
standard library. Two roles, each in its own process (and, with bubblewrap, its own sandbox):

* `candidate` sets its resource limits, reads prompt + completion from stdin (it never sees the
  tests), installs the Python-level guards if asked, executes the code and reports on the
  response pipe whether that worked (`init`); then it serves calls: each request names one of
  its top-level functions and carries encoded arguments, each reply the encoded return value or
  the name of the exception raised.
* `checker` reads the trusted parts (prompt, test, entry point, a nonce) from stdin, executes the
  prompt and the test in its own interpreter with the entry point replaced by a proxy that calls
  the candidate over the pipes, and writes the verdict with the nonce to the verdict pipe, which
  the candidate cannot reach. Values cross as JSON and are rebuilt as plain built-in objects, so
  no object of the candidate ever exists in the checker: an `__eq__` that is always true, patched
  builtins, `sys.exit` tricks or a printed "pass" cannot make `check` pass; only right answers can.
"""

from __future__ import annotations

import builtins
import json
import os
import sys
import traceback

MAX_FRAME = 16 * 1024 * 1024
_SAFE_INT = 1 << 53
_BASES = (bool, int, float, complex, str, bytes, bytearray, list, tuple, dict, set, frozenset)
_INIT_STATUS = {"assertion": ("failed", "assertion"), "memory": ("error", "memory"),
                "exit": ("error", "exit"), "syntax": ("error", "syntax")}


class ProtocolError(BaseException):
    """A malformed, oversized or truncated message (BaseException: a test's `except` misses it)."""


class CandidateGone(BaseException):
    """The candidate's process closed its end of the pipes (it exited or was killed)."""


class CandidateExit(BaseException):
    """The candidate raised SystemExit / KeyboardInterrupt / GeneratorExit inside a call."""


class Opaque:
    """A returned value that is not plain data: equal only to itself, never to an expected value."""

    __slots__ = ("type_name",)

    def __init__(self, type_name: str) -> None:
        self.type_name = type_name

    def __repr__(self) -> str:
        return f"<{self.type_name} object from the sandboxed program>"


# -- values: plain data <-> JSON ------------------------------------------------------------------

def encode(value, strict: bool):
    """JSON-ready form of plain data; other objects are an error (`strict`) or an opaque marker."""
    t = type(value)
    if value is None or t is bool or t is str or t is float:
        return value
    if t is int:
        return value if -_SAFE_INT < value < _SAFE_INT else {"t": "int", "v": hex(value)}
    if t is list:
        return [encode(v, strict) for v in value]
    if t is tuple or t is set or t is frozenset:
        return {"t": t.__name__, "v": [encode(v, strict) for v in value]}
    if t is dict:
        return {"t": "dict", "v": [[encode(k, strict), encode(v, strict)] for k, v in value.items()]}
    if t is bytes or t is bytearray:
        return {"t": "bytes", "v": bytes(value).hex()}
    if t is complex:
        return {"t": "complex", "v": [value.real, value.imag]}
    for base in _BASES:  # subclasses: namedtuple, Counter, IntEnum, OrderedDict ...
        if isinstance(value, base):
            return encode(base(value), strict)
    if strict:
        raise TypeError(f"cannot pass a {t.__name__} to the sandboxed program (plain data only)")
    return {"t": "opaque", "type": str(t.__name__)[:100]}


def decode(data):
    """Rebuild plain built-in objects from `encode`'s output; anything else is a ProtocolError."""
    t = type(data)
    if data is None or t is bool or t is int or t is float or t is str:
        return data
    if t is list:
        return [decode(v) for v in data]
    if t is not dict:
        raise ProtocolError(f"unexpected {t.__name__} in a message")
    tag, v = data.get("t"), data.get("v")
    try:
        if tag in ("tuple", "set", "frozenset") and type(v) is list:
            items = [decode(x) for x in v]
            return tuple(items) if tag == "tuple" else set(items) if tag == "set" else frozenset(items)
        if tag == "dict" and type(v) is list:
            return {decode(k): decode(x) for k, x in v}
        if tag == "int" and type(v) is str:
            return int(v, 16)
        if tag == "bytes" and type(v) is str:
            return bytes.fromhex(v)
        if tag == "complex" and type(v) is list and len(v) == 2:
            return complex(float(v[0]), float(v[1]))
        if tag == "opaque":
            return Opaque(str(data.get("type"))[:100])
    except (TypeError, ValueError) as e:
        raise ProtocolError(f"bad {tag} value: {e}") from None
    raise ProtocolError(f"unknown value tag {tag!r}")


# -- framing: 4-byte big-endian length + JSON ------------------------------------------------------

def send(fd: int, message) -> None:
    data = json.dumps(message, separators=(",", ":")).encode("utf-8")
    if len(data) > MAX_FRAME:
        raise ValueError(f"message of {len(data)} bytes exceeds the sandbox limit of {MAX_FRAME}")
    view = memoryview(len(data).to_bytes(4, "big") + data)
    while view:
        view = view[os.write(fd, view):]


def _read_exact(fd: int, n: int) -> bytes | None:
    chunks, got = [], 0
    while got < n:
        chunk = os.read(fd, min(n - got, 1 << 20))
        if not chunk:
            if got:
                raise ProtocolError("truncated message")
            return None
        chunks.append(chunk)
        got += len(chunk)
    return b"".join(chunks)


def recv(fd: int):
    """The next message, or None at end of file."""
    head = _read_exact(fd, 4)
    if head is None:
        return None
    size = int.from_bytes(head, "big")
    if size > MAX_FRAME:
        raise ProtocolError(f"message of {size} bytes exceeds the sandbox limit")
    body = _read_exact(fd, size) if size else b""
    if body is None:
        raise ProtocolError("truncated message")
    try:
        return json.loads(body)
    except (ValueError, RecursionError) as e:
        raise ProtocolError(f"undecodable message: {type(e).__name__}") from None


# -- process setup ----------------------------------------------------------------------------------

def set_limits(limits: list) -> None:
    """setrlimit for each [name, soft, hard]; a hard limit already lower stays as it is."""
    import resource

    for name, soft, hard in limits:
        res = getattr(resource, name, None)
        if res is None:
            continue
        try:
            resource.setrlimit(res, (soft, hard))
        except (ValueError, OSError):
            try:
                resource.setrlimit(res, (soft, soft))
            except (ValueError, OSError):
                pass


def lock_down(workdir: str) -> None:
    """Python-level guards: the fallback's only barrier, a clearer message under bubblewrap."""
    import _socket
    import io
    import shutil
    import socket
    import subprocess

    def inside(path) -> bool:
        try:
            full = os.path.realpath(os.path.join(workdir, os.fsdecode(os.fspath(path))))
        except TypeError:
            return True  # a file descriptor: it was opened through a guarded call
        return full == workdir or full.startswith(workdir + os.sep)

    def refuse(what):
        def f(*args, **kwargs):
            raise PermissionError(f"{what} is disabled in the alignlab sandbox")
        return f

    class NoNet(socket.socket):
        def __init__(self, *args, **kwargs):
            raise OSError("network access is disabled in the alignlab sandbox")

    class NoNetC(_socket.socket):
        def __init__(self, *args, **kwargs):
            raise OSError("network access is disabled in the alignlab sandbox")

    socket.socket, _socket.socket = NoNet, NoNetC
    for name in ("socketpair", "fromfd", "create_connection", "create_server", "getaddrinfo"):
        setattr(socket, name, refuse(f"socket.{name}"))

    class NoPopen(subprocess.Popen):
        def __init__(self, *args, **kwargs):
            raise PermissionError("subprocess is disabled in the alignlab sandbox")

    subprocess.Popen = NoPopen
    for name in ("fork", "forkpty", "system", "popen", "kill", "killpg", "execv", "execve", "execvp",
                 "execvpe", "execl", "execle", "execlp", "execlpe", "spawnv", "spawnve", "spawnvp",
                 "spawnvpe", "spawnl", "spawnle", "spawnlp", "spawnlpe", "posix_spawn", "posix_spawnp",
                 "setuid", "chroot"):
        if hasattr(os, name):
            setattr(os, name, refuse(f"os.{name}"))

    real_open, real_os_open = builtins.open, os.open

    def guarded_open(file, mode="r", *args, **kwargs):
        if any(c in mode for c in "wax+") and not inside(file):
            raise PermissionError(f"writing outside the sandbox dir is disabled: {file}")
        return real_open(file, mode, *args, **kwargs)

    def guarded_os_open(path, flags, *args, **kwargs):
        writes = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_TRUNC
        if flags & writes and not inside(path):
            raise PermissionError(f"writing outside the sandbox dir is disabled: {path}")
        return real_os_open(path, flags, *args, **kwargs)

    builtins.open = io.open = guarded_open
    os.open = guarded_os_open

    def guard_paths(module, name):
        real = getattr(module, name)

        def f(*paths, **kwargs):
            for p in paths[:2]:
                if isinstance(p, (str, bytes, os.PathLike)) and not inside(p):
                    raise PermissionError(f"{name} outside the sandbox dir is disabled: {p}")
            return real(*paths, **kwargs)
        setattr(module, name, f)

    for name in ("remove", "unlink", "rmdir", "removedirs", "rename", "renames", "replace", "chmod",
                 "chown", "truncate", "mkdir", "makedirs", "symlink", "link", "utime"):
        if hasattr(os, name):
            guard_paths(os, name)
    for name in ("rmtree", "move", "copy", "copy2", "copyfile", "copytree", "chown"):
        guard_paths(shutil, name)


def _last_line(exc: BaseException) -> str:
    try:
        return traceback.format_exception_only(type(exc), exc)[-1].strip()[:300]
    except BaseException:  # a hostile __str__
        return type(exc).__name__


# -- the candidate ----------------------------------------------------------------------------------

def _exports(ns: dict) -> dict:
    """Top-level names the checker may need: functions, stdlib modules, plain values."""
    out = {}
    for name, value in list(ns.items())[:2000]:
        if type(name) is not str or name.startswith("__") or hasattr(builtins, name):
            continue
        if type(value) is type(sys):
            out[name] = ["module", str(getattr(value, "__name__", ""))]
        elif callable(value):
            out[name] = ["call"]
        else:
            try:
                out[name] = ["value", encode(value, strict=True)]
            except (TypeError, ValueError, RecursionError):
                pass
    return out


def _execute(source: str, ns: dict) -> dict:
    try:
        code = compile(source, "program.py", "exec")
    except (SyntaxError, ValueError) as e:
        traceback.print_exc()
        return {"init": "syntax", "text": _last_line(e)}
    try:
        exec(code, ns)
    except AssertionError as e:
        traceback.print_exc()
        return {"init": "assertion", "text": _last_line(e)}
    except MemoryError:
        sys.stderr.write("MemoryError: the program exceeded the sandbox memory limit\n")
        return {"init": "memory", "text": "MemoryError"}
    except SystemExit as e:
        sys.stderr.write(f"SystemExit({e.code!r}) before the tests finished\n")
        return {"init": "exit", "text": "SystemExit"}
    except BaseException as e:
        traceback.print_exc()
        return {"init": "exception", "text": _last_line(e)}
    return {"init": "ok", "names": _exports(ns)}


def _reply(ns: dict, msg) -> dict:
    try:
        fn = ns[msg["call"]]
        args = [decode(a) for a in msg["args"]]
        kwargs = {k: decode(v) for k, v in msg["kwargs"].items()}
        return {"ok": encode(fn(*args, **kwargs), strict=False)}
    except BaseException as e:
        if not isinstance(e, AssertionError):
            traceback.print_exc()
        try:
            text = str(e)[:300]
        except BaseException:
            text = ""
        return {"raise": str(type(e).__name__)[:100], "text": text}


def candidate(limits: list, workdir: str, req_fd: int, resp_fd: int, guard: bool) -> None:
    set_limits(limits)
    source = sys.stdin.buffer.read().decode("utf-8", "replace")
    sys.stdin.close()
    if guard:
        lock_down(workdir)
    ns = {"__name__": "__candidate__", "__builtins__": builtins}
    init = _execute(source, ns)
    send(resp_fd, init)
    if init["init"] != "ok":
        return
    while True:
        msg = recv(req_fd)
        if msg is None:
            return
        send(resp_fd, _reply(ns, msg))


# -- the checker ------------------------------------------------------------------------------------

class Remote:
    """Stands for one of the candidate's functions: a call is a request over the pipes."""

    broken = False  # set on the class: once the candidate misbehaved, nothing may pass

    def __init__(self, name: str, req_fd: int, resp_fd: int) -> None:
        self._name, self._req, self._resp = name, req_fd, resp_fd

    def __repr__(self) -> str:
        return f"<sandboxed function {self._name}>"

    def __call__(self, *args, **kwargs):
        message = {"call": self._name, "args": [encode(a, strict=True) for a in args],
                   "kwargs": {str(k): encode(v, strict=True) for k, v in kwargs.items()}}
        try:
            send(self._req, message)
            reply = recv(self._resp)
        except (BrokenPipeError, ConnectionError):
            reply = None
        except BaseException:
            Remote.broken = True
            raise
        if reply is None:
            Remote.broken = True
            raise CandidateGone()
        if type(reply) is not dict:
            Remote.broken = True
            raise ProtocolError("a reply that is not an object")
        if "ok" in reply:
            return decode(reply["ok"])
        if "raise" not in reply:
            Remote.broken = True
            raise ProtocolError("a reply with neither a value nor an exception")
        raise _exception(str(reply.get("raise")), str(reply.get("text", ""))[:300])


def _exception(name: str, text: str) -> BaseException:
    """The candidate's exception as a genuine built-in one (a test may expect ValueError ...)."""
    cls = getattr(builtins, name, None)
    if isinstance(cls, type) and issubclass(cls, BaseException) and not issubclass(cls, Exception):
        Remote.broken = True
        return CandidateExit(name)
    if isinstance(cls, type) and issubclass(cls, Exception) and cls not in (StopIteration, StopAsyncIteration):
        try:
            return cls(text)
        except BaseException:
            pass
    return RuntimeError(text or name)


def _prompt_namespace(prompt: str) -> tuple[dict, set]:
    """The trusted prompt executed here (helpers the test uses) and the names of its stubs."""
    import ast

    for suffix in ("", "\n    pass\n"):
        try:
            tree = ast.parse(prompt.rstrip() + suffix if suffix else prompt)
        except (SyntaxError, ValueError, RecursionError):
            continue
        stubs = {node.name for node in tree.body if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))
                 and all(isinstance(s, ast.Pass) or (isinstance(s, ast.Expr) and isinstance(s.value, ast.Constant))
                         for s in node.body)}
        ns = {"__name__": "__checker__"}
        try:
            exec(compile(tree, "prompt.py", "exec"), ns)
        except Exception:
            ns = {"__name__": "__checker__"}
        return ns, stubs
    return {"__name__": "__checker__"}, set()


def _names_in(code) -> set:
    """Every global name a code object (and the functions it defines) refers to."""
    out = set(code.co_names)
    for const in code.co_consts:
        if isinstance(const, type(code)):
            out |= _names_in(const)
    return out


def _namespace(job: dict, names: dict, wanted: set, req_fd: int, resp_fd: int) -> dict:
    """Prompt's namespace + what the test needs from the candidate: proxies, stdlib modules, data.

    Only names the test refers to, never a builtin's name, never a name the trusted prompt
    defines (except its stubs): a candidate's `abs` or helper cannot stand in for the test's.
    """
    import importlib

    ns, stubs = _prompt_namespace(job["prompt"])
    for name, kind in names.items():
        if (name not in wanted or not name.isidentifier() or name.startswith("__") or hasattr(builtins, name)
                or (name in ns and name not in stubs) or type(kind) is not list or not kind):
            continue
        if kind[0] == "call":
            ns[name] = Remote(name, req_fd, resp_fd)
        elif kind[0] == "module" and str(kind[1]).split(".")[0] in sys.stdlib_module_names:
            try:
                ns[name] = importlib.import_module(str(kind[1]))
            except Exception:
                pass
        elif kind[0] == "value":
            ns[name] = decode(kind[1])
    ns[job["entry"]] = Remote(job["entry"], req_fd, resp_fd)
    return ns


def _check(job: dict, req_fd: int, resp_fd: int) -> tuple[str, str]:
    init = recv(resp_fd)
    if init is None:
        return "gone", ""
    if type(init) is not dict or type(init.get("names", {})) is not dict:
        return "error", "protocol: a first message that is not an object"
    kind = init.get("init")
    if kind != "ok":
        if kind == "exception":
            return "error", f"exception: {str(init.get('text', ''))[:200]}"
        return _INIT_STATUS.get(kind, ("error", "protocol: unknown first message"))
    test = compile(job["test"], "test.py", "exec")
    ns = _namespace(job, init.get("names", {}), _names_in(test), req_fd, resp_fd)
    exec(test, ns)
    check = ns.get("check")
    if not callable(check):
        return "error", "the test defines no check(candidate)"
    check(ns[job["entry"]])
    return ("error", "the program misbehaved during the tests") if Remote.broken else ("passed", "")


def checker(limits: list, req_fd: int, resp_fd: int, verdict_fd: int) -> None:
    set_limits(limits)
    job = json.loads(sys.stdin.buffer.read())
    sys.stdin.close()
    try:
        status, reason = _check(job, req_fd, resp_fd)
    except AssertionError:
        traceback.print_exc()
        status, reason = "failed", "assertion"
    except CandidateGone:
        status, reason = "gone", ""
    except CandidateExit:
        status, reason = "error", "exit"
    except ProtocolError as e:
        status, reason = "error", f"protocol: {e}"
    except MemoryError:
        status, reason = "error", "memory"
    except BaseException as e:
        traceback.print_exc()
        status, reason = "error", f"exception: {_last_line(e)}"
    if status == "passed" and Remote.broken:
        status, reason = "error", "the program misbehaved during the tests"
    send(verdict_fd, {"nonce": job["nonce"], "status": status, "reason": reason})


def main(argv: list) -> None:
    role, limits = argv[1], json.loads(argv[2])
    if role == "candidate":
        candidate(limits, argv[3], int(argv[4]), int(argv[5]), argv[6] == "1")
    elif role == "checker":
        checker(limits, int(argv[3]), int(argv[4]), int(argv[5]))
    else:
        raise SystemExit(f"unknown sandbox role {role!r}")


if __name__ == "__main__":
    main(sys.argv)
