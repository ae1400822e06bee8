"""The code sandbox: right and wrong solutions, time and memory limits, the temp dir, no network."""

from __future__ import annotations

from pathlib import Path

import pytest

from alignlab.eval.sandbox import Program, SandboxLimits, run_program, run_programs

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
