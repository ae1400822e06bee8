"""Hostile programs against the code sandbox, run exactly as AKD and pass@k run them (a `Program`).

Each program is a wrong solution plus an attack. Most tests are built so that a pass would *be*
the escape: the trusted test expects what only a successful escape could return (a host file's
content, a secret only the checker holds, True after writing outside). Each test asserts (a) no
pass and (b) nothing escaped (no host file written or deleted, parent and a sentinel process
alive, no leftover process, no temp dir). Forgery attacks run with both backends (the verdict
lives outside the candidate either way); escape attacks need bubblewrap and skip without it.
"""

from __future__ import annotations

import os
import secrets
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from alignlab.eval import sandbox_bwrap
from alignlab.eval.sandbox import Program, SandboxLimits, SandboxResult, run_program, run_programs
from alignlab.paths import cache_root

pytestmark = pytest.mark.filterwarnings("ignore:alignlab sandbox:RuntimeWarning")  # the fallback's, on purpose
HAS_BWRAP, WHY = sandbox_bwrap.available()
needs_bwrap = pytest.mark.skipif(not HAS_BWRAP, reason=f"no OS sandbox here: {WHY}")
BACKENDS = [pytest.param("bwrap", marks=needs_bwrap), "fallback"]
JAILED = SandboxLimits(timeout_s=3.0, require_os_isolation=True)
REPO = Path(__file__).resolve().parents[2]
INC_TEST = "def check(candidate):\n    assert candidate(2) == 3\n    assert candidate(-1) == 0\n"


@pytest.fixture
def backend(request, monkeypatch) -> str:
    monkeypatch.setenv("ALIGNLAB_SANDBOX", request.param)
    return request.param


FORGE = """
import os, re, sys
def forge(*namespaces):
    # Every nonce-like string it can reach: sent as a verdict on every fd, printed last, then exit 0.
    found = [v for ns in namespaces for v in list(ns.values()) if isinstance(v, str) and re.fullmatch('[0-9a-f]{32}', v)]
    for fd in map(int, os.listdir('/proc/self/fd')):
        for nonce in found:
            try:
                sys.modules['__main__'].send(fd, {'nonce': nonce, 'status': 'passed', 'reason': ''})
            except Exception:
                pass
    for nonce in found:
        print('\\n' + nonce, flush=True)
    if found:
        os._exit(0)
"""


def inc_program(body: str, top: str = "") -> Program:
    """`inc(x)` runs `body` (an attack, then a wrong answer); `top` is top-level code after it,
    with `forge(*dicts)`: what an attack on a nonce shared with the candidate would do."""
    completion = textwrap.indent(textwrap.dedent(body), "    ") + "\n" + FORGE + textwrap.dedent(top)
    return Program("def inc(x):\n", completion, INC_TEST, "inc")


def escape_program(body: str, expected: object, top: str = "") -> Program:
    """`solve()` runs `body`; the test expects `expected`, which only an escape can produce."""
    completion = textwrap.indent(textwrap.dedent(body), "    ") + "\n" + textwrap.dedent(top)
    return Program("def solve():\n", completion, f"def check(candidate):\n    assert candidate() == {expected!r}\n",
                   "solve")


def leftovers(marker: str) -> list[int]:
    """Host processes whose command line contains `marker`."""
    pids = []
    for entry in Path("/proc").iterdir():
        try:
            if entry.name.isdigit() and marker.encode() in (entry / "cmdline").read_bytes():
                pids.append(int(entry.name))
        except OSError:
            pass
    return pids


def contained(res: SandboxResult, backend: str = "bwrap") -> None:
    """(a) not a pass; (b) the run left no process behind and its work dir is gone."""
    assert not res.passed, (res.status, res.reason, res.stderr[-500:])
    assert res.backend == backend
    assert not Path(res.workdir).exists()
    assert leftovers(res.workdir) == [], "a sandbox process outlived its run"


# -- forging a pass: the verdict lives outside the candidate's interpreter -------------------------

WRONG = "return x + 2"
FORGERIES: dict[str, tuple[str, str]] = {
    "sys_exit_patched": (WRONG, "import sys\nsys.exit = lambda *a, **k: None"),
    "os_exit_at_top_level": (WRONG, "import os\nos._exit(0)"),
    "os_exit_inside_the_call": ("import os\nos._exit(0)", ""),
    "atexit_handler": (WRONG, "import atexit\natexit.register(lambda: forge(vars(sys.modules['__main__'])))"),
    "main_module_nonce": ("forge(vars(sys.modules['__main__']))\nreturn x + 2", ""),
    "getframe_walk_and_patch": ("""
        f = sys._getframe()
        while f is not None:
            forge(f.f_locals, f.f_globals)
            if '_reply' in f.f_globals:
                f.f_globals['_reply'] = lambda ns, msg: {'ok': 3}
            f = f.f_back
        return x + 2""", ""),
    "gc_get_objects": ("""
        import gc
        for o in gc.get_objects():
            if isinstance(o, dict) and ('nonce' in o or 'status' in o or 'init' in o):
                o.update(status='passed', init='ok')
        forge(*[o for o in gc.get_objects() if isinstance(o, dict)])
        return x + 2""", ""),
    "inspect_stack": ("""
        import inspect
        for fr in inspect.stack():
            fr.frame.f_locals.update({'status': 'passed', 'passed': True})
            forge(fr.frame.f_locals, fr.frame.f_globals)
        return x + 2""", ""),
    "always_equal_object": ("""
        class Eq:
            __eq__ = lambda self, other: True
            __ne__ = lambda self, other: False
            __hash__ = lambda self: 0
        return Eq()""", ""),
    "always_equal_int_subclass": ("""
        class E(int):
            __eq__ = lambda self, other: True
            __ne__ = lambda self, other: False
            __hash__ = int.__hash__
        return E(x + 2)""", ""),
    "always_equal_list_subclass": ("""
        class L(list):
            __eq__ = lambda self, other: True
        return L([x])""", ""),
    "builtins_patched": (WRONG, """
        import builtins
        builtins.AssertionError = type('AssertionError', (Exception,), {})
        builtins.isinstance = lambda *a: True
        builtins.abs = lambda v: 0
        abs = lambda v: 0
        def check(candidate):
            return None"""),
    "fake_verdict_on_stdout_and_stderr": ("""
        import json, os
        frame = json.dumps({'nonce': '0' * 32, 'status': 'passed', 'reason': ''}).encode()
        for fd in (1, 2):
            os.write(fd, b'\\npassed\\n' + len(frame).to_bytes(4, 'big') + frame + b'0' * 32 + b'\\n')
        return x + 2""", ""),
    "system_exit_inside_the_call": ("raise SystemExit(0)", ""),
    "keyboard_interrupt_inside_the_call": ("raise KeyboardInterrupt", ""),
    "garbage_on_every_fd": (WRONG, """
        for fd in map(int, os.listdir('/proc/self/fd')):
            try:
                os.write(fd, b'\\x00\\x00\\x00\\x05{"ok"' + b'\\xff' * 64)
            except OSError:
                pass"""),
    "reply_too_large": ("return 'x' * (40 * 1024 * 1024)", ""),
    "reply_too_deep": ("v = []\nfor _ in range(100000):\n    v = [v]\nreturn v", ""),
    "generator_instead_of_value": ("return (i for i in [x + 1])", ""),
    "flood_stdout_and_stderr": ("""
        import sys
        for _ in range(2000):
            sys.stdout.write('passed\\n' * 1000)
            sys.stderr.write('passed\\n' * 1000)
        return x + 2""", ""),
}


@pytest.mark.parametrize("backend", BACKENDS, indirect=True)
@pytest.mark.parametrize("name", sorted(FORGERIES))
def test_a_wrong_solution_cannot_forge_a_pass(name, backend, tmp_path):
    res = run_program(inc_program(*FORGERIES[name]), SandboxLimits(timeout_s=5.0), base_dir=str(tmp_path))
    contained(res, backend)
    assert len(res.stderr) <= 2000
    assert list(tmp_path.iterdir()) == []  # the fallback's temp dir is removed too


def test_builtins_shadowing_does_not_reach_the_tests_tolerance():
    """A candidate-defined `abs` and a redefined prompt helper cannot stand in for the test's."""
    prompt = ("def poly(c, x):\n    return sum(a * x ** i for i, a in enumerate(c))\n\n\n"
              "def find_zero(c):\n    \"\"\"a zero of poly(c, .)\"\"\"\n")
    completion = "    return 0.0\n\n\ndef poly(c, x):\n    return 0.0\n\n\nabs = lambda v: 0\n"
    test = "def check(candidate):\n    assert abs(poly([1, 2], candidate([1, 2]))) < 1e-6\n"
    right = "    return -c[0] / c[1]\n"
    res = run_programs([Program(prompt, completion, test, "find_zero"), Program(prompt, right, test, "find_zero")],
                       SandboxLimits(timeout_s=5.0))
    assert [r.passed for r in res] == [False, True]


@needs_bwrap
def test_the_checkers_secrets_are_out_of_reach():
    """The expected value exists only in the checker; hunting for it everywhere finds nothing."""
    token = "tok_" + secrets.token_hex(8)
    body = r'''
    import gc, os, re, sys
    pat = re.compile(rb"tok_[0-9a-f]{16}")
    def look(data):
        m = pat.search(data if isinstance(data, bytes) else str(data).encode("utf-8", "replace"))
        return m.group().decode() if m else None
    for o in gc.get_objects():
        if isinstance(o, (str, bytes, dict)) and look(o):
            return look(o)
    f = sys._getframe()
    while f is not None:
        if look(f.f_locals) or look(f.f_globals):
            return look(f.f_locals) or look(f.f_globals)
        f = f.f_back
    for pid in os.listdir("/proc"):
        for part in ("cmdline", "environ", "fd/0", "fd/3", "fd/4", "fd/5", "mem"):
            try:
                with open(f"/proc/{pid}/{part}", "rb") as fh:
                    os.set_blocking(fh.fileno(), False)
                    hit = look(fh.read(1 << 20) or b"")
                    if hit:
                        return hit
            except (OSError, ValueError, TypeError):
                pass
    for fd in range(0, 64):
        try:
            os.set_blocking(fd, False)
            hit = look(os.read(fd, 1 << 16))
            if hit:
                return hit
        except OSError:
            pass
    for root, dirs, files in os.walk("/"):
        if root.startswith(("/proc", "/sys", "/usr", "/dev", sys.base_prefix)):
            dirs[:] = []
            continue
        for name in files:
            try:
                with open(os.path.join(root, name), "rb") as fh:
                    hit = look(fh.read(1 << 16))
                    if hit:
                        return hit
            except OSError:
                pass
    return ""
    '''
    contained(run_program(escape_program(body, token), JAILED))


# -- escaping: only the OS sandbox stops these -----------------------------------------------------

def _bypasses(call: str) -> dict[str, str]:
    """The same call through Python, posix, _io, importlib and ctypes (the Python guards' gaps)."""
    return {name: body.format(call=call) for name, body in {
        "python": "import os\n{call}",
        "posix": "import posix as os\n{call}",
        "importlib": "import importlib\nos = importlib.import_module('posix')\n{call}",
    }.items()}


READS = {
    "etc_passwd": lambda tmp: "/etc/passwd",
    "repo_file": lambda tmp: str(REPO / "pyproject.toml"),
    "host_secret_file": lambda tmp: str(tmp / "secret.txt"),
    "via_proc_1_root": lambda tmp: "/proc/1/root" + str(tmp / "secret.txt"),
}


@needs_bwrap
@pytest.mark.parametrize("how", ["python", "posix", "importlib"])
@pytest.mark.parametrize("what", sorted(READS))
def test_reading_host_files_returns_nothing(what, how, tmp_path):
    (tmp_path / "secret.txt").write_text("secret " + secrets.token_hex(8))
    path = READS[what](tmp_path)
    target = Path(path.removeprefix("/proc/1/root"))
    body = _bypasses(f"fd = os.open({path!r}, os.O_RDONLY)\nreturn os.read(fd, 1 << 20).decode()")[how]
    contained(run_program(escape_program(body, target.read_text()), JAILED))


@needs_bwrap
def test_home_the_model_cache_and_the_parents_environment_are_invisible(tmp_path, monkeypatch):
    secret = "s" + secrets.token_hex(8)
    monkeypatch.setenv("ALIGNLAB_TEST_SECRET", secret)
    listing = {str(p): sorted(os.listdir(p)) for p in (Path.home(), cache_root(), REPO) if p.is_dir()}
    body = f'''
    import os
    seen = {{p: sorted(os.listdir(p)) for p in {sorted(listing)!r} if os.path.isdir(p)}}
    env = b""
    for pid in ["self", str(os.getppid()), "1"] + os.listdir("/proc"):
        try:
            env += open(f"/proc/{{pid}}/environ", "rb").read()
        except OSError:
            pass
    return seen == {listing!r} or {secret!r}.encode() in env
    '''
    contained(run_program(escape_program(body, True), JAILED))


WRITES = {
    "open": "open({path!r}, 'w').write('x')",
    "posix_open": "import posix\nposix.write(posix.open({path!r}, posix.O_WRONLY | posix.O_CREAT), b'x')",
    "io_open": "import _io\n_io.open({path!r}, 'w').write('x')",
    "ctypes_libc": ("import ctypes\nlibc = ctypes.CDLL(None)\nfd = libc.open({path!r}.encode(), 0o101, 0o644)\n"
                    "assert fd >= 0 and libc.write(fd, b'x', 1) == 1"),
    "sqlite3": "import sqlite3\nc = sqlite3.connect({path!r})\nc.execute('create table t(x)')\nc.commit()",
    "chdir_up_relative": "import os\nfor _ in range(8):\n    os.chdir('..')\nopen({rel!r}, 'w').write('x')",
}


@needs_bwrap
@pytest.mark.parametrize("how", sorted(WRITES))
def test_writing_outside_is_impossible(how, tmp_path):
    name = f"escape-{secrets.token_hex(6)}.txt"
    path = tmp_path / name
    rel = str(Path("/tmp") / name).lstrip("/") if how == "chdir_up_relative" else name
    body = WRITES[how].format(path=str(path), rel=rel) + "\nreturn True"
    contained(run_program(escape_program(body, True), JAILED))
    assert not path.exists() and not (Path("/tmp") / name).exists() and not (Path("/") / name).exists()


@needs_bwrap
@pytest.mark.parametrize("how", ["python", "posix", "importlib"])
def test_deleting_host_files_is_impossible(how, tmp_path):
    victim = tmp_path / "keep.txt"
    victim.write_text("keep")
    body = _bypasses(f"os.unlink({str(victim)!r})\nreturn True")[how]
    contained(run_program(escape_program(body, True), JAILED))
    assert victim.read_text() == "keep"


@needs_bwrap
@pytest.mark.parametrize("how", ["socket", "sockettype", "ctypes", "unix"])
def test_no_network_not_even_to_the_host(how, tmp_path):
    server = socket.socket(socket.AF_UNIX if how == "unix" else socket.AF_INET)
    addr = str(tmp_path / "s.sock") if how == "unix" else ("127.0.0.1", 0)
    server.bind(addr)
    server.listen(1)
    server.settimeout(0.2)
    target = addr if how == "unix" else server.getsockname()
    body = {
        "socket": f"import socket\ns = socket.socket()\ns.connect({target!r})\ns.send(b'hi')\nreturn True",
        "sockettype": f"import _socket\ns = _socket.SocketType()\ns.connect({target!r})\nreturn True",
        "ctypes": ("import ctypes\nlibc = ctypes.CDLL(None)\nfd = libc.socket(2, 1, 0)\nassert fd >= 0\n"
                   "return True"),
        "unix": f"import _socket\ns = _socket.SocketType(_socket.AF_UNIX)\ns.connect({target!r})\nreturn True",
    }[how]
    contained(run_program(escape_program(body, True), JAILED))
    with pytest.raises(TimeoutError):
        server.accept()
    server.close()


@needs_bwrap
@pytest.mark.parametrize("how", ["parent", "everyone", "every_pid"])
def test_killing_the_parent_or_anyone_else_fails(how):
    sentinel = subprocess.Popen(["sleep", "30"])
    try:
        kill = {"parent": "posix.kill(posix.getppid(), signal.SIGKILL)",
                "everyone": "posix.kill(-1, signal.SIGKILL)",
                "every_pid": "for pid in range(2, 70000):\n    try:\n        posix.kill(pid, 9)\n"
                             "    except OSError:\n        pass"}[how]
        body = f"import posix, signal\n{kill}\nposix.kill({sentinel.pid}, 0)\nreturn True"
        res = run_program(escape_program(body, True), JAILED)
        contained(res)
        assert sentinel.poll() is None, "the sandbox killed a host process"
    finally:
        sentinel.kill()
        sentinel.wait()


FORKS = {
    "os_fork": "import posix\npid = posix.fork()\nreturn True",
    "ctypes_fork": "import ctypes\nassert ctypes.CDLL(None).fork() >= 0\nreturn True",
    "multiprocessing": ("import multiprocessing as mp\np = mp.get_context('spawn').Process(target=print)\n"
                        "p.start()\nreturn True"),
    "reloaded_subprocess": ("import importlib, subprocess\nimportlib.reload(subprocess)\n"
                            "subprocess.run(['/bin/true'])\nreturn True"),
    "thread": "import threading\nthreading.Thread(target=print).start()\nreturn True",
    "fork_bomb": "import posix\nwhile True:\n    posix.fork()",
}


@needs_bwrap
@pytest.mark.parametrize("how", sorted(FORKS))
def test_no_new_processes_or_threads_by_default(how):
    contained(run_program(escape_program(FORKS[how], True), JAILED))


@needs_bwrap
@pytest.mark.parametrize("then", ["return", "hang"])
def test_a_setsid_double_fork_daemon_dies_with_the_sandbox(then):
    """Even where processes are allowed, nothing outlives the run (the pid namespace dies)."""
    marker = "daemon-" + secrets.token_hex(6)
    body = f'''
    import posix, sys
    if posix.fork() == 0:
        posix.setsid()
        if posix.fork() == 0:
            posix.execv(sys.executable, [sys.executable, "-c", "import time; time.sleep(60)", {marker!r}])
        posix._exit(0)
    posix.wait()
    while {then == "hang"}:
        pass
    return True
    '''
    limits = SandboxLimits(timeout_s=1.5, allow_subprocesses=True, require_os_isolation=True)
    res = run_program(escape_program(body, False), limits)
    contained(res)
    assert res.status == ("timeout" if then == "hang" else "failed")
    assert leftovers(marker) == []


TRAINER = """
import subprocess
from alignlab.eval.sandbox import Program, SandboxLimits, run_program

class Spy(subprocess.Popen):  # tells the test which sandboxes it starts
    def __init__(self, argv, *args, **kwargs):
        super().__init__(argv, *args, **kwargs)
        if "candidate" in argv:
            print(argv[argv.index("--chdir") + 1], flush=True)

subprocess.Popen = Spy
run_program(Program("def f():\\n", "    while True:\\n        pass\\n", "def check(c):\\n    c()\\n", "f"),
            SandboxLimits(timeout_s=60, require_os_isolation=True))
"""


@needs_bwrap
def test_killing_the_trainer_takes_its_sandboxes_down():
    trainer = subprocess.Popen([sys.executable, "-c", TRAINER], stdout=subprocess.PIPE)
    try:
        workdir = trainer.stdout.readline().decode().strip()
        assert workdir.startswith("/tmp/alignlab-sandbox-")
        time.sleep(0.5)
        assert leftovers(workdir), "the sandbox should be running"
    finally:
        trainer.kill()
        trainer.wait()
        trainer.stdout.close()
    for _ in range(100):
        if not leftovers(workdir):
            break
        time.sleep(0.05)
    assert leftovers(workdir) == [], "a sandbox outlived the process that started it"


@needs_bwrap
@pytest.mark.parametrize("where", ["cwd", "tmp", "dev_shm"])
def test_filling_the_disk_stops_at_the_quota(where):
    path = {"cwd": "fill", "tmp": "/tmp/fill", "dev_shm": "/dev/shm/fill"}[where]
    body = f'''
    import posix
    chunk = b"x" * (1 << 20)
    for i in range(200):
        fd = posix.open({path!r} + str(i), posix.O_WRONLY | posix.O_CREAT)
        posix.write(fd, chunk)
        posix.close(fd)
    return True
    '''
    res = run_program(escape_program(body, True), SandboxLimits(timeout_s=5.0, disk_mb=16, require_os_isolation=True))
    contained(res)
    assert ("No space left" if where == "cwd" else "Read-only file system") in res.reason


@needs_bwrap
def test_raising_its_own_limits_does_not_work():
    body = '''
    import resource
    try:
        resource.setrlimit(resource.RLIMIT_AS, (resource.RLIM_INFINITY, resource.RLIM_INFINITY))
    except (ValueError, OSError):
        pass
    x = bytearray(3 * 1024 ** 3)
    return True
    '''
    res = run_program(escape_program(body, True), SandboxLimits(timeout_s=5.0, memory_mb=512, require_os_isolation=True))
    contained(res)
    assert res.reason == "memory"


@needs_bwrap
def test_ignoring_signals_does_not_outlive_the_deadline():
    body = '''
    import signal
    for s in (signal.SIGTERM, signal.SIGXCPU, signal.SIGINT, signal.SIGHUP):
        signal.signal(s, signal.SIG_IGN)
    while True:
        pass
    '''
    res = run_program(escape_program(body, True), SandboxLimits(timeout_s=1.0, require_os_isolation=True))
    contained(res)
    assert res.status == "timeout" and res.seconds < 3.0


@needs_bwrap
@pytest.mark.parametrize("call", ["unshare(0x10000000)", "mount(b'none', b'/tmp', b'tmpfs', 0, None)",
                                  "ptrace(16, 1, 0, 0)", "chroot(b'/tmp')"])
def test_namespace_mount_and_ptrace_calls_are_refused(call):
    body = f"import ctypes\nlibc = ctypes.CDLL(None, use_errno=True)\nassert libc.{call} == 0\nreturn True"
    contained(run_program(escape_program(body, True), JAILED))


@needs_bwrap
def test_a_right_solution_still_passes_and_the_backend_is_reported():
    res = run_program(escape_program("import hashlib, math, re, json, itertools\nreturn math.gcd(12, 18)", 6), JAILED)
    assert (res.passed, res.backend) == (True, "bwrap")
    assert res.workdir.startswith("/tmp/alignlab-sandbox-") and not Path(res.workdir).exists()
