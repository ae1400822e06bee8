"""Run model-written Python against its tests, isolated by the operating system (SPEC §7).

Two processes per program, each in its own bubblewrap sandbox (`alignlab.eval.sandbox_bwrap`:
new user/pid/net/ipc/uts/mount namespaces, read-only system dirs, a size-limited tmpfs as the
only writable place, a seccomp filter, rlimits; killing bwrap at the deadline kills everything
inside). The *candidate* executes prompt + completion and serves calls to its functions; it never
sees the tests. The *checker* executes the trusted prompt and test in its own interpreter, where
the entry point is a proxy that calls the candidate over a pipe and gets back plain data; it
writes the verdict, with a nonce, to a pipe the candidate has no handle on. So nothing the
candidate does to its own interpreter (patching `sys.exit` or builtins, reading frames, an
always-equal object, printing "passed") can produce a pass: only right answers do.
See `alignlab.eval.sandbox_child` for both sides.

Where bwrap is missing or cannot start (unprivileged containers), the same two processes run as
plain child processes with rlimits and Python-level guards: this *fallback* stops the mistakes
of model-written code, not an adversary. It is announced with a warning and marked in each
result (`backend`); `ALIGNLAB_SANDBOX=bwrap` or `SandboxLimits(require_os_isolation=True)`
refuses it, `ALIGNLAB_SANDBOX=fallback` asks for it. Programs see the standard library only.
"""

from __future__ import annotations

import json
import math
import os
import secrets
import selectors
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import warnings
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

from alignlab.errors import AlignlabError
from alignlab.eval import sandbox_bwrap

STATUSES = ("passed", "failed", "timeout", "error")
Backend = Literal["bwrap", "fallback"]
MODES = ("auto", "bwrap", "fallback")
CHILD_SOURCE = Path(__file__).with_name("sandbox_child.py").read_text(encoding="utf-8")
_TAIL = 64 * 1024
_MB = 1024 * 1024


class SandboxUnavailable(AlignlabError, RuntimeError):
    """OS isolation was required (`ALIGNLAB_SANDBOX=bwrap` / `require_os_isolation`) but cannot run."""


@dataclass(frozen=True)
class SandboxLimits:
    """Limits of one sandboxed run (wall clock, address space, CPU, file size, open files, disk)."""

    timeout_s: float = 5.0
    memory_mb: int = 1024
    file_size_mb: int = 16
    open_files: int = 64
    allow_subprocesses: bool = False  # False: no fork/threads (seccomp under bwrap; RLIMIT_NPROC = 0)
    disk_mb: int = 64  # size of the writable tmpfs (bwrap backend): a total disk quota
    require_os_isolation: bool = False  # True: refuse the fallback (raise SandboxUnavailable)

    def validate(self) -> SandboxLimits:
        if (self.timeout_s <= 0 or self.memory_mb < 64 or self.file_size_mb < 1 or self.open_files < 16
                or self.disk_mb < 1):
            raise ValueError(f"sandbox limits out of range: {self} (timeout_s > 0, memory_mb >= 64, "
                             "file_size_mb >= 1, open_files >= 16, disk_mb >= 1)")
        return self

    def rlimits(self) -> list[list[Any]]:
        """[name, soft, hard] for `sandbox_child.set_limits` (CPU: SIGXCPU a second before SIGKILL)."""
        cpu, fsize, mem = int(math.ceil(self.timeout_s)) + 1, self.file_size_mb * _MB, self.memory_mb * _MB
        out: list[list[Any]] = [["RLIMIT_CPU", cpu, cpu + 1], ["RLIMIT_FSIZE", fsize, fsize],
                                ["RLIMIT_NOFILE", self.open_files, self.open_files], ["RLIMIT_CORE", 0, 0],
                                ["RLIMIT_AS", mem, mem]]
        if not self.allow_subprocesses:
            out.append(["RLIMIT_NPROC", 0, 0])
        return out


@dataclass(frozen=True)
class Program:
    """A HumanEval-style check: prompt + completion, then the tests, then `check(entry_point)`."""

    prompt: str
    completion: str
    test: str
    entry_point: str

    def source(self) -> str:
        return f"{self.prompt}{self.completion}\n\n{self.test}\n\ncheck({self.entry_point})\n"

    def candidate_source(self) -> str:
        """What the candidate's process executes: prompt + completion, never the tests."""
        return f"{self.prompt}{self.completion}\n"


@dataclass
class SandboxResult:
    """Outcome of one run: status is passed | failed (an assert) | timeout | error (anything else).

    `backend` says which isolation ran it: "bwrap" (operating system) or "fallback" (process
    limits and Python guards only).
    """

    passed: bool
    status: str
    reason: str
    stderr: str
    seconds: float
    workdir: str = ""
    backend: str = ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


_warn_lock = threading.Lock()
_warned = False


def _warn_fallback(why: str) -> None:
    global _warned
    with _warn_lock:
        if _warned:
            return
        _warned = True
    warnings.warn(f"alignlab sandbox: {why}; running model-written code WITHOUT operating-system "
                  "isolation (process limits and Python-level guards only, not a security boundary). "
                  "Install bubblewrap (apt-get install bubblewrap) or set ALIGNLAB_SANDBOX=bwrap to "
                  "refuse.", RuntimeWarning, stacklevel=3)


def sandbox_backend(limits: SandboxLimits | None = None) -> Backend:
    """The backend the next run uses: `ALIGNLAB_SANDBOX` (auto | bwrap | fallback; default auto)."""
    mode = os.environ.get("ALIGNLAB_SANDBOX", "auto").strip().lower() or "auto"
    if mode not in MODES:
        raise SandboxUnavailable(f"ALIGNLAB_SANDBOX={mode!r}: expected one of {', '.join(MODES)}")
    required = mode == "bwrap" or (limits is not None and limits.require_os_isolation)
    if mode == "fallback":
        if required:
            raise SandboxUnavailable("require_os_isolation is set but ALIGNLAB_SANDBOX=fallback")
        _warn_fallback("ALIGNLAB_SANDBOX=fallback")
        return "fallback"
    ok, why = sandbox_bwrap.available()
    if ok:
        return "bwrap"
    if required:
        raise SandboxUnavailable(f"operating-system isolation is required but unavailable: {why}")
    _warn_fallback(why)
    return "fallback"


def _environment(home: str) -> dict[str, str]:
    """A minimal environment: no proxies, no PYTHON* variables, HOME/TMPDIR in the sandbox."""
    return {"PATH": "/usr/bin:/bin", "HOME": home, "TMPDIR": home, "LANG": "C.UTF-8", "LC_ALL": "C.UTF-8",
            "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "no_proxy": "*", "NO_PROXY": "*"}


@dataclass
class _Child:
    """One sandboxed interpreter: its process, its stderr tail, the fds it was given."""

    proc: subprocess.Popen
    info_fd: int = -1  # bwrap's --info-fd (read end): the host pid of the sandbox's pid 1
    err: bytearray = field(default_factory=bytearray)


def _spawn(backend: Backend, role_args: list[str], workdir: str, limits: SandboxLimits, fds: list[int],
           stdin: bytes, disk_mb: int) -> _Child:
    python = sandbox_bwrap.python_executable() if backend == "bwrap" else sys.executable
    argv = [python, "-I", "-S", "-B", "-c", CHILD_SOURCE, *role_args]
    extra: list[int] = []
    info_r = -1
    if backend == "bwrap":
        seccomp = sandbox_bwrap.seccomp_fd(limits.allow_subprocesses)
        info_r, info_w = os.pipe()
        extra = [info_w] + ([] if seccomp is None else [seccomp])
        argv = sandbox_bwrap.command(workdir, disk_mb, seccomp, info_w) + argv
    try:
        proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                pass_fds=(*fds, *extra), close_fds=True, start_new_session=True,
                                env=_environment(workdir), cwd=workdir if backend == "fallback" else None)
    except BaseException:
        if info_r >= 0:
            os.close(info_r)
        raise
    finally:
        for fd in extra:
            os.close(fd)
    try:
        proc.stdin.write(stdin)
        proc.stdin.close()
    except OSError:  # it died before reading its input: the status says so
        pass
    return _Child(proc, info_r)


def _peek(child: _Child) -> int | None:
    """Exit code if the process has ended, without reaping it (so its pid, and the process group
    it leads, cannot be recycled before `_kill` signals the group); None while it runs."""
    if child.proc.returncode is not None:
        return child.proc.returncode
    try:
        res = os.waitid(os.P_PID, child.proc.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT)
    except ChildProcessError:
        return child.proc.returncode
    if res is None:
        return None
    return res.si_status if res.si_code == os.CLD_EXITED else -res.si_status


def _wait(child: _Child, deadline: float) -> int | None:
    """`_peek` until the deadline; None if still running then."""
    while (rc := _peek(child)) is None and time.monotonic() < deadline:
        time.sleep(0.005)
    return rc


def _kill(child: _Child) -> None:
    """Kill and reap. bwrap: SIGKILL the sandbox's pid 1, and bwrap exits once everything inside
    is gone; then SIGKILL the process group (the fallback's; bwrap itself if it lingers)."""
    if child.info_fd >= 0:
        os.set_blocking(child.info_fd, False)
        try:
            info = os.read(child.info_fd, 4096)
        except OSError:
            info = b""
        os.close(child.info_fd)
        child.info_fd = -1
        if _peek(child) is None:
            sandbox_bwrap.kill_namespace(info, child.proc.pid)
            _wait(child, time.monotonic() + 2.0)
    if child.proc.returncode is None:  # not reaped yet: the group id is still ours
        try:
            os.killpg(child.proc.pid, signal.SIGKILL)
        except OSError:
            pass
    try:
        child.proc.kill()
        child.proc.wait(timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        pass


def _frame(buf: bytes) -> Any:
    """The first complete frame of `buf` as JSON, or None."""
    if len(buf) < 4 or len(buf) < 4 + int.from_bytes(buf[:4], "big"):
        return None
    try:
        return json.loads(buf[4:4 + int.from_bytes(buf[:4], "big")])
    except ValueError:
        return None


def _pump(children: list[_Child], channel: int, deadline: float) -> tuple[Any, bool]:
    """Collect stderr tails until one frame arrives on `channel` (or it closes); (frame, timed_out)."""
    sel = selectors.DefaultSelector()
    for c in children:
        sel.register(c.proc.stderr, selectors.EVENT_READ, c)
    sel.register(channel, selectors.EVENT_READ, None)
    buf = bytearray()
    try:
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return None, True
            for key, _ in sel.select(remaining):
                chunk = os.read(key.fd, 65536)
                if key.data is None:
                    if not chunk or len(buf) > _MB:
                        return _frame(bytes(buf)), False
                    buf += chunk
                    frame = _frame(bytes(buf))
                    if frame is not None:
                        return frame, False
                elif not chunk:
                    sel.unregister(key.fileobj)
                else:
                    key.data.err += chunk
                    del key.data.err[:-_TAIL]
    finally:
        sel.close()


def _drain(child: _Child) -> str:
    fd = child.proc.stderr.fileno()
    os.set_blocking(fd, False)
    try:
        while chunk := os.read(fd, 65536):
            child.err += chunk
            del child.err[:-_TAIL]
    except (BlockingIOError, OSError):
        pass
    child.proc.stderr.close()
    return child.err.decode("utf-8", "replace")


def _exit_reason(rc: int | None, backend: Backend) -> tuple[str, str]:
    """Status of a candidate that ended without a verdict, from its exit code."""
    if rc is None:
        return "timeout", "wall clock"
    if backend == "bwrap" and rc > 128:  # bwrap reports a signal as 128 + its number
        rc = -(rc - 128)
    if rc == 0:
        return "error", "exited before the tests finished"
    if rc < 0:
        sig = signal.Signals(-rc).name if -rc in signal.valid_signals() else str(-rc)
        return ("timeout", "cpu limit") if sig == "SIGXCPU" else ("error", f"signal {sig}")
    return "error", f"exit code {rc}"


def _init_status(init: Any) -> tuple[str, str] | None:
    """Status of a bare source from its runner's first message (None: no message)."""
    if not isinstance(init, dict):
        return None
    kind, text = init.get("init"), str(init.get("text", ""))[:200]
    return {"ok": ("passed", ""), "assertion": ("failed", "assertion"), "memory": ("error", "memory"),
            "exit": ("error", "exit"), "syntax": ("error", "syntax")}.get(kind, ("error", f"exception: {text}"))


def _run(program: Program | str, limits: SandboxLimits, backend: Backend, workdir: str,
         checker_dir: str) -> tuple[str, str, str]:
    """Start the candidate (and, for a Program, the checker); (status, reason, stderr)."""
    rl = json.dumps(limits.rlimits())
    deadline = time.monotonic() + limits.timeout_s
    req_r, req_w = os.pipe()
    resp_r, resp_w = os.pipe()
    verdict_r = verdict_w = -1
    children: list[_Child] = []
    mine = [req_r, req_w, resp_r, resp_w]
    try:
        source = program.candidate_source() if isinstance(program, Program) else program
        guard = "1"  # the Python-level guards: the fallback's barrier, clearer messages under bwrap
        children.append(_spawn(backend, ["candidate", rl, workdir, str(req_r), str(resp_w), guard], workdir,
                               limits, [req_r, resp_w], source.encode("utf-8", "surrogatepass"), limits.disk_mb))
        nonce = secrets.token_hex(16)
        if isinstance(program, Program):
            verdict_r, verdict_w = os.pipe()
            mine += [verdict_r, verdict_w]
            job = {"prompt": program.prompt, "test": program.test, "entry": program.entry_point, "nonce": nonce}
            children.append(_spawn(backend, ["checker", rl, str(req_w), str(resp_r), str(verdict_w)],
                                   checker_dir, limits, [req_w, resp_r, verdict_w],
                                   json.dumps(job).encode("utf-8", "surrogatepass"), min(limits.disk_mb, 16)))
        keep = verdict_r if isinstance(program, Program) else resp_r
        for fd in [fd for fd in mine if fd != keep]:  # only the children hold these now
            mine.remove(fd)
            os.close(fd)
        frame, timed_out = _pump(children, keep, deadline)
        if timed_out:
            status, reason = "timeout", "wall clock"
        elif isinstance(program, Program):
            ok = isinstance(frame, dict) and frame.get("nonce") == nonce and frame.get("status") in STATUSES + ("gone",)
            if not ok:  # no verdict: the checker itself ended (its CPU limit, a crash)
                status, reason = _exit_reason(_wait(children[1], deadline), backend)
                reason = f"checker: {reason}" if status == "error" else reason
            elif frame["status"] == "gone":  # the candidate ended mid-run: say why
                status, reason = _exit_reason(_wait(children[0], deadline), backend)
            else:
                status, reason = frame["status"], str(frame.get("reason", ""))
        else:
            status, reason = _init_status(frame) or _exit_reason(_wait(children[0], deadline), backend)
    finally:
        for c in children:
            _kill(c)
        for fd in mine:
            try:
                os.close(fd)
            except OSError:
                pass
    return status, reason, "".join(_drain(c) for c in children)


def run_program(program: Program | str, limits: SandboxLimits | None = None, stderr_chars: int = 2000,
                base_dir: str | None = None) -> SandboxResult:
    """Run one program (a `Program`, or a bare source that is its own test) in the sandbox.

    Never raises for the program's faults; raises `SandboxUnavailable` when OS isolation is
    required but cannot run. A bare source passes when it runs to its end: its verdict is its own.
    """
    limits = (limits or SandboxLimits()).validate()
    backend = sandbox_backend(limits)
    t0 = time.perf_counter()
    root = None
    if backend == "bwrap":  # the work dir is a tmpfs inside the sandbox; nothing on the host
        workdir = checker_dir = f"/tmp/alignlab-sandbox-{secrets.token_hex(6)}"
    else:
        root = Path(tempfile.mkdtemp(prefix="alignlab-sandbox-", dir=base_dir)).resolve()
        (root / "work").mkdir()
        workdir, checker_dir = str(root / "work"), str(root)
    try:
        status, reason, stderr = _run(program, limits, backend, workdir, checker_dir)
    finally:
        if root is not None:
            shutil.rmtree(root, ignore_errors=True)
    return SandboxResult(status == "passed", status, reason, stderr[-stderr_chars:] if stderr_chars else "",
                         round(time.perf_counter() - t0, 4), workdir, backend)


def run_programs(programs: Sequence[Program | str], limits: SandboxLimits | None = None, workers: int = 2,
                 dedupe: bool = True, on_done: Callable[[int], None] | None = None) -> list[SandboxResult]:
    """Run many programs, at most `workers` at once; results in input order.

    Identical programs run once (`dedupe`) and share the result: sampled completions repeat often.
    """
    if workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")
    limits = (limits or SandboxLimits()).validate()
    sandbox_backend(limits)  # refuse (or warn) once, before any work
    keys = [p.source() if isinstance(p, Program) else p for p in programs]
    first: dict[str, int] = {}
    for i, k in enumerate(keys):
        first.setdefault(k, i)
    unique = list(first.values()) if dedupe else list(range(len(programs)))

    def job(i: int) -> SandboxResult:
        res = run_program(programs[i], limits)
        if on_done is not None:
            on_done(1)
        return res

    with ThreadPoolExecutor(max_workers=workers) as pool:
        done = dict(zip(unique, pool.map(job, unique)))
    return [done[i] if i in done else done[first[keys[i]]] for i in range(len(programs))]
