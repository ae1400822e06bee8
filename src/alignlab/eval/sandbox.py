"""Run model-written Python against its tests in a separate, limited process (SPEC §7).

Each program runs as `python -I -B -c RUNNER` in a fresh temp dir (its cwd, HOME and TMPDIR),
in its own session, with a minimal environment (no proxy variables). `preexec_fn` sets, before
the interpreter starts: address space, CPU seconds, file size, open files, no core dumps and
(unless allowed) no new processes or threads (RLIMIT_NPROC = 0; the kernel ignores it for
root). The runner then disables sockets, process creation and `os.kill` from Python, refuses
writes and deletions outside the temp dir, runs the program and prints a secret nonce (read
from stdin before the program starts) only if it finished: `sys.exit(0)` is not a pass. A
wall-clock timeout kills the whole process group; the temp dir is removed afterwards.

This guards against the mistakes of model-written code (endless loops, huge allocations,
stray files, network calls, killing the parent), not against a determined adversary:
without root there are no namespaces or seccomp filters here.
"""

from __future__ import annotations

import math
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

STATUSES = ("passed", "failed", "timeout", "error")
_EXIT_REASONS = {3: ("failed", "assertion"), 4: ("error", "memory"), 5: ("error", "exit"),
                 6: ("error", "exception"), 7: ("error", "syntax")}

# Executed by `python -I -B -c`; argv[1] = the work dir (also the cwd), argv[2] = the program file.
RUNNER = r'''
import sys
_nonce = sys.stdin.readline().strip()
sys.stdin.close()


def _lock_down(workdir):
    import builtins, io, os, shutil, socket, subprocess, _socket

    def _inside(path):
        try:
            full = os.path.realpath(os.path.join(workdir, os.fsdecode(os.fspath(path))))
        except TypeError:
            return True  # a file descriptor: it was opened through a guarded call
        return full == workdir or full.startswith(workdir + os.sep)

    def _refuse(what):
        def f(*args, **kwargs):
            raise PermissionError(f"{what} is disabled in the alignlab sandbox")
        return f

    class _NoNet(socket.socket):
        def __init__(self, *args, **kwargs):
            raise OSError("network access is disabled in the alignlab sandbox")

    class _NoNetC(_socket.socket):
        def __init__(self, *args, **kwargs):
            raise OSError("network access is disabled in the alignlab sandbox")

    socket.socket, _socket.socket = _NoNet, _NoNetC
    for name in ("socketpair", "fromfd", "create_connection", "create_server", "getaddrinfo"):
        setattr(socket, name, _refuse(f"socket.{name}"))

    class _NoPopen(subprocess.Popen):
        def __init__(self, *args, **kwargs):
            raise PermissionError("subprocess is disabled in the alignlab sandbox")

    subprocess.Popen = _NoPopen
    for name in ("fork", "forkpty", "system", "popen", "kill", "killpg", "execv", "execve", "execvp",
                 "execvpe", "execl", "execle", "execlp", "execlpe", "spawnv", "spawnve", "spawnvp",
                 "spawnvpe", "spawnl", "spawnle", "spawnlp", "spawnlpe", "posix_spawn", "posix_spawnp",
                 "setuid", "chroot"):
        if hasattr(os, name):
            setattr(os, name, _refuse(f"os.{name}"))

    real_open, real_os_open = builtins.open, os.open

    def guarded_open(file, mode="r", *args, **kwargs):
        if any(c in mode for c in "wax+") and not _inside(file):
            raise PermissionError(f"writing outside the sandbox dir is disabled: {file}")
        return real_open(file, mode, *args, **kwargs)

    def guarded_os_open(path, flags, *args, **kwargs):
        writes = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_TRUNC
        if flags & writes and not _inside(path):
            raise PermissionError(f"writing outside the sandbox dir is disabled: {path}")
        return real_os_open(path, flags, *args, **kwargs)

    builtins.open = io.open = guarded_open
    os.open = guarded_os_open

    def guard_paths(module, name):
        real = getattr(module, name)

        def f(*paths, **kwargs):
            for p in paths[:2]:
                if isinstance(p, (str, bytes, os.PathLike)) and not _inside(p):
                    raise PermissionError(f"{name} outside the sandbox dir is disabled: {p}")
            return real(*paths, **kwargs)
        setattr(module, name, f)

    for name in ("remove", "unlink", "rmdir", "removedirs", "rename", "renames", "replace", "chmod",
                 "chown", "truncate", "mkdir", "makedirs", "symlink", "link", "utime"):
        if hasattr(os, name):
            guard_paths(os, name)
    for name in ("rmtree", "move", "copy", "copy2", "copyfile", "copytree", "chown"):
        guard_paths(shutil, name)


_workdir, _path = sys.argv[1], sys.argv[2]
_lock_down(_workdir)
try:
    with open(_path, encoding="utf-8") as _f:
        _code = compile(_f.read(), "program.py", "exec")
except SyntaxError:
    import traceback
    traceback.print_exc()
    sys.exit(7)
try:
    exec(_code, {"__name__": "__candidate__", "__builtins__": __builtins__})
except AssertionError:
    import traceback
    traceback.print_exc()
    sys.exit(3)
except MemoryError:
    sys.stderr.write("MemoryError: the program exceeded the sandbox memory limit\n")
    sys.exit(4)
except SystemExit as e:
    sys.stderr.write(f"SystemExit({e.code!r}) before the tests finished\n")
    sys.exit(5)
except BaseException:
    import traceback
    traceback.print_exc()
    sys.exit(6)
sys.stdout.flush()
print("\n" + _nonce, flush=True)
'''


@dataclass(frozen=True)
class SandboxLimits:
    """Limits of one sandboxed run (wall clock, address space, CPU, file size, open files)."""

    timeout_s: float = 5.0
    memory_mb: int = 1024
    file_size_mb: int = 16
    open_files: int = 64
    allow_subprocesses: bool = False  # False: RLIMIT_NPROC = 0 (no fork/threads; not enforced for root)

    def validate(self) -> SandboxLimits:
        if self.timeout_s <= 0 or self.memory_mb < 64 or self.file_size_mb < 1 or self.open_files < 16:
            raise ValueError(f"sandbox limits out of range: {self} (timeout_s > 0, memory_mb >= 64, "
                             "file_size_mb >= 1, open_files >= 16)")
        return self


@dataclass(frozen=True)
class Program:
    """A HumanEval-style check: prompt + completion, then the tests, then `check(entry_point)`."""

    prompt: str
    completion: str
    test: str
    entry_point: str

    def source(self) -> str:
        return f"{self.prompt}{self.completion}\n\n{self.test}\n\ncheck({self.entry_point})\n"


@dataclass
class SandboxResult:
    """Outcome of one run: status is passed | failed (an assert) | timeout | error (anything else)."""

    passed: bool
    status: str
    reason: str
    stderr: str
    seconds: float
    workdir: str = ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _preexec(limits: SandboxLimits) -> Callable[[], None]:
    """The child's rlimits, set between fork and exec (before any candidate code exists).

    Values are computed here, in the parent; the address-space limit goes last because the
    forked child still has the parent's (possibly multi-GB) mappings until exec.
    """
    import resource

    mb = 1024 * 1024
    pairs = [(resource.RLIMIT_CPU, int(math.ceil(limits.timeout_s)) + 1),
             (resource.RLIMIT_FSIZE, limits.file_size_mb * mb),
             (resource.RLIMIT_NOFILE, limits.open_files),
             (resource.RLIMIT_CORE, 0)]
    if not limits.allow_subprocesses and hasattr(resource, "RLIMIT_NPROC"):
        pairs.append((resource.RLIMIT_NPROC, 0))
    pairs.append((resource.RLIMIT_AS, limits.memory_mb * mb))
    pairs = [(res, (value, value)) for res, value in pairs]
    setrlimit = resource.setrlimit

    def apply() -> None:
        for res, both in pairs:
            try:
                setrlimit(res, both)
            except (ValueError, OSError):  # a hard limit already lower than ours stays as it is
                pass

    return apply


def _environment(home: str) -> dict[str, str]:
    """A minimal environment: no proxies, no PYTHON* variables, HOME/TMPDIR in the sandbox."""
    return {"PATH": "/usr/bin:/bin", "HOME": home, "TMPDIR": home, "LANG": "C.UTF-8", "LC_ALL": "C.UTF-8",
            "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "no_proxy": "*", "NO_PROXY": "*"}


def _tail(path: Path, limit: int) -> str:
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            size = f.tell()
            f.seek(max(0, size - limit))
            return f.read().decode("utf-8", "replace")
    except OSError:
        return ""


def _kill_group(pid: int) -> None:
    try:
        os.killpg(pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def _classify(rc: int | None, timed_out: bool, finished: bool) -> tuple[str, str]:
    if timed_out:
        return "timeout", "wall clock"
    if rc == 0:
        return ("passed", "") if finished else ("error", "exited before the tests finished")
    if rc is not None and rc < 0:
        sig = signal.Signals(-rc).name if -rc in signal.valid_signals() else str(-rc)
        return ("timeout", "cpu limit") if sig == "SIGXCPU" else ("error", f"signal {sig}")
    return _EXIT_REASONS.get(rc or 0, ("error", f"exit code {rc}"))


def run_program(program: Program | str, limits: SandboxLimits | None = None, stderr_chars: int = 2000,
                base_dir: str | None = None) -> SandboxResult:
    """Run one program (a `Program` or full source text) in the sandbox; never raises for its faults."""
    limits = (limits or SandboxLimits()).validate()
    source = program.source() if isinstance(program, Program) else program
    root = Path(tempfile.mkdtemp(prefix="alignlab-sandbox-", dir=base_dir)).resolve()
    work = root / "work"
    work.mkdir()
    code_path = root / "program.py"
    code_path.write_text(source, encoding="utf-8")
    nonce = secrets.token_hex(16)
    t0 = time.perf_counter()
    timed_out = False
    try:
        with open(root / "stdout", "wb") as out, open(root / "stderr", "wb") as err:
            proc = subprocess.Popen(
                [sys.executable, "-I", "-B", "-c", RUNNER, str(work), str(code_path)],
                cwd=work, env=_environment(str(work)), stdin=subprocess.PIPE, stdout=out, stderr=err,
                preexec_fn=_preexec(limits), start_new_session=True, close_fds=True)
            try:
                proc.communicate((nonce + "\n").encode(), timeout=limits.timeout_s)
            except subprocess.TimeoutExpired:
                timed_out = True
                _kill_group(proc.pid)
                proc.wait()
            _kill_group(proc.pid)  # anything it left behind
        seconds = time.perf_counter() - t0
        stdout = _tail(root / "stdout", 4096)
        stderr = _tail(root / "stderr", stderr_chars)
        status, reason = _classify(proc.returncode, timed_out, stdout.rstrip().endswith(nonce))
        if status == "error" and reason == "exception":
            last = stderr.strip().splitlines()[-1:] or ["?"]
            reason = f"exception: {last[0][:200]}"
        return SandboxResult(status == "passed", status, reason, stderr, round(seconds, 4), str(work))
    finally:
        shutil.rmtree(root, ignore_errors=True)


def run_programs(programs: Sequence[Program | str], limits: SandboxLimits | None = None, workers: int = 2,
                 dedupe: bool = True, on_done: Callable[[int], None] | None = None) -> list[SandboxResult]:
    """Run many programs, at most `workers` sandbox processes at once; results in input order.

    Identical sources run once (`dedupe`) and share the result: sampled completions repeat often.
    """
    if workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")
    sources = [p.source() if isinstance(p, Program) else p for p in programs]
    unique = list(dict.fromkeys(sources)) if dedupe else sources
    results: dict[int, SandboxResult] = {}

    def job(i: int) -> SandboxResult:
        res = run_program(unique[i], limits)
        if on_done is not None:
            on_done(1)
        return res

    with ThreadPoolExecutor(max_workers=workers) as pool:
        for i, res in enumerate(pool.map(job, range(len(unique)))):
            results[i] = res
    if not dedupe:
        return [results[i] for i in range(len(sources))]
    index = {s: i for i, s in enumerate(unique)}
    return [results[index[s]] for s in sources]
