"""The code sandbox: right and wrong solutions, time and memory limits, the temp dir, no network,
the backend choice, and what the tests see of the candidate (plain data, prompt helpers, state).

Hostile programs are in test_sandbox_adversarial.py.
"""

from __future__ import annotations

import json
import math
import warnings
from collections import Counter, namedtuple
from pathlib import Path

import pytest

from alignlab.eval import sandbox, sandbox_bwrap
from alignlab.eval.sandbox import (
    Program,
    SandboxLimits,
    SandboxUnavailable,
    run_program,
    run_programs,
    sandbox_backend,
)
from alignlab.eval.sandbox_child import Opaque, ProtocolError, decode, encode

TEST = "def check(candidate):\n    assert candidate(2) == 3\n    assert candidate(-1) == 0\n"
GOOD = Program("def inc(x):\n", "    return x + 1\n", TEST, "inc")
WRONG = Program("def inc(x):\n", "    return x + 2\n", TEST, "inc")
FAST = SandboxLimits(timeout_s=2.0)


def test_passing_solution_passes_and_wrong_one_fails():
    ok, bad = run_program(GOOD, FAST), run_program(WRONG, FAST)
    assert (ok.passed, ok.status) == (True, "passed")
    assert (bad.passed, bad.status, bad.reason) == (False, "failed", "assertion")
    assert "AssertionError" in bad.stderr


def test_endless_loop_times_out_within_the_limit():
    res = run_program(Program("def inc(x):\n", "    while True:\n        pass\n", TEST, "inc"),
                      SandboxLimits(timeout_s=1.0))
    assert (res.passed, res.status) == (False, "timeout")
    assert 0.9 <= res.seconds < 3.0


def test_allocating_4gb_is_stopped_by_the_memory_limit():
    res = run_program("x = bytearray(4 * 1024 ** 3)\nprint(len(x))\n", SandboxLimits(timeout_s=5.0, memory_mb=512))
    assert (res.passed, res.status, res.reason) == (False, "error", "memory")
    assert res.seconds < 5.0


def test_files_are_written_inside_the_temp_dir_which_is_removed():
    src = ("import os\nopen('out.txt', 'w').write('hello')\n"
           "assert open(os.path.join(os.getcwd(), 'out.txt')).read() == 'hello'\n"
           "print('CWD=' + os.getcwd())\n")
    res = run_program(src, FAST)
    assert res.passed, res.stderr
    assert "alignlab-sandbox-" in res.workdir and not Path(res.workdir).exists()
    outside = run_program("open('/tmp/alignlab-sandbox-escape.txt', 'w').write('x')\n", FAST)
    assert not outside.passed and "PermissionError" in outside.reason
    assert not Path("/tmp/alignlab-sandbox-escape.txt").exists()


@pytest.mark.parametrize("src", [
    "import socket\nsocket.socket(socket.AF_INET, socket.SOCK_STREAM)\n",
    "import socket\nsocket.create_connection(('127.0.0.1', 9))\n",
    "import _socket\n_socket.socket()\n",
])
def test_opening_a_socket_fails(src):
    res = run_program(src, FAST)
    assert (res.passed, res.status) == (False, "error")
    assert "disabled in the alignlab sandbox" in res.reason


def test_exiting_early_or_killing_the_parent_is_not_a_pass():
    early = run_program(Program("def inc(x):\n", "    return x\nimport sys\nsys.exit(0)\n", TEST, "inc"), FAST)
    assert (early.passed, early.status) == (False, "error")
    os_exit = run_program("import os\nos._exit(0)\n", FAST)
    assert not os_exit.passed and os_exit.reason == "exited before the tests finished"
    kill = run_program("import os, signal\nos.kill(os.getppid(), signal.SIGKILL)\n", FAST)
    assert not kill.passed and "os.kill is disabled" in kill.reason
    spawn = run_program("import subprocess\nsubprocess.run(['true'])\n", FAST)
    assert not spawn.passed and "subprocess is disabled" in spawn.reason


def test_syntax_errors_and_exceptions_are_errors_with_a_reason():
    syn = run_program("def f(:\n", FAST)
    assert (syn.status, syn.reason) == ("error", "syntax")
    exc = run_program("1 / 0\n", FAST)
    assert exc.status == "error" and exc.reason.startswith("exception: ZeroDivisionError")


def test_batch_keeps_order_and_runs_duplicates_once():
    progs = [GOOD, WRONG, GOOD, WRONG, GOOD]
    ticks: list[int] = []
    res = run_programs(progs, FAST, workers=2, on_done=ticks.append)
    assert [r.passed for r in res] == [True, False, True, False, True]
    assert len(ticks) == 2  # two distinct sources


def test_bad_limits_are_rejected():
    with pytest.raises(ValueError, match="sandbox limits"):
        run_program(GOOD, SandboxLimits(timeout_s=0))


def test_the_fallback_can_be_forced_is_marked_and_can_be_refused(monkeypatch):
    monkeypatch.setenv("ALIGNLAB_SANDBOX", "fallback")
    monkeypatch.setattr(sandbox, "_warned", False)
    with pytest.warns(RuntimeWarning, match="WITHOUT operating-system isolation"):
        res = run_program(GOOD, FAST)
    assert (res.passed, res.backend) == (True, "fallback")
    with pytest.raises(SandboxUnavailable, match="require_os_isolation"):
        run_program(GOOD, SandboxLimits(timeout_s=2.0, require_os_isolation=True))


def test_without_bubblewrap_auto_warns_once_and_bwrap_mode_refuses(monkeypatch):
    monkeypatch.setattr(sandbox_bwrap, "available", lambda: (False, "bubblewrap (bwrap) is not installed"))
    monkeypatch.setattr(sandbox, "_warned", False)
    monkeypatch.delenv("ALIGNLAB_SANDBOX", raising=False)
    with pytest.warns(RuntimeWarning, match="not installed"):
        assert sandbox_backend() == "fallback"
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert sandbox_backend() == "fallback"  # the warning comes once
    monkeypatch.setenv("ALIGNLAB_SANDBOX", "bwrap")
    with pytest.raises(SandboxUnavailable, match="not installed"):
        run_programs([GOOD], FAST)
    monkeypatch.setenv("ALIGNLAB_SANDBOX", "chroot")
    with pytest.raises(SandboxUnavailable, match="ALIGNLAB_SANDBOX"):
        sandbox_backend()


@pytest.mark.skipif(not sandbox_bwrap.available()[0], reason=f"no OS sandbox here: {sandbox_bwrap.available()[1]}")
def test_auto_uses_bubblewrap_where_it_works(monkeypatch):
    monkeypatch.delenv("ALIGNLAB_SANDBOX", raising=False)
    assert run_program(GOOD, FAST).backend == "bwrap"


def test_values_cross_between_the_processes_as_plain_data():
    Pair = namedtuple("Pair", "a b")
    values = [None, True, 0, -5, 2 ** 80, -(2 ** 70), 1.5, -0.0, float("inf"), "é\n", b"\x00\xff", (1, [2, (3,)]),
              {1: "a", (2, 3): frozenset({4})}, {1, 2}, 1 + 2j, [], {}]
    for v in values:
        back = decode(json.loads(json.dumps(encode(v, strict=True))))
        assert back == v and type(back) is type(v), v
    assert math.isnan(decode(json.loads(json.dumps(encode(float("nan"), strict=True)))))
    assert decode(encode(Counter("aab"), strict=True)) == {"a": 2, "b": 1}
    assert type(decode(encode(Pair(1, 2), strict=True))) is tuple
    with pytest.raises(TypeError, match="plain data"):
        encode(print, strict=True)
    opaque = decode(encode(object(), strict=False))
    assert isinstance(opaque, Opaque) and opaque != 0 and opaque != opaque.__class__("object")
    for bad in ({"t": "evil"}, {"t": "int", "v": "zz"}, {"t": "tuple", "v": 3}):
        with pytest.raises(ProtocolError):
            decode(bad)


def test_tests_see_prompt_helpers_keyword_arguments_exceptions_modules_and_state():
    prompt = "def helper(x):\n    return x * 2\n\n\ndef f(x, scale=1):\n    \"\"\"doc\"\"\"\n"
    completion = ("    global calls\n    calls += 1\n    if x < 0:\n        raise ValueError('negative')\n"
                  "    return helper(x) * scale\n\n\ncalls = 0\nimport string\n\n\n"
                  "def counter():\n    return calls\n")
    test = ("def check(candidate):\n    assert candidate(2) == 4 and candidate(2, scale=3) == 12\n"
            "    try:\n        candidate(-1)\n    except ValueError as e:\n        assert 'negative' in str(e)\n"
            "    else:\n        raise AssertionError('no ValueError')\n"
            "    assert candidate(1.5) == 3.0 and counter() == 4 and len(string.ascii_lowercase) == 26\n")
    res = run_program(Program(prompt, completion, test, "f"), FAST)
    assert res.passed, (res.reason, res.stderr)
