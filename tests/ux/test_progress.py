"""Plain progress output where no terminal is attached: lines on a timer, a heartbeat while a
step is slow, an end line; the demo's stage start/end lines."""

from __future__ import annotations

import io
import sys
import time

import pytest

from alignlab import progress
from alignlab.progress import fmt_duration, plain_stream, progress_bar


class _Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_every_step_line_has_count_loss_speed_and_eta():
    out = io.StringIO()
    with progress_bar("sft", total=4, stream=out, interval=0) as bar:
        for i in range(4):
            bar.advance(loss=1.0 / (i + 1))
    lines = out.getvalue().splitlines()
    assert lines[0] == "sft started: 0/4"
    assert lines[1].startswith("sft 1/4 (25%) loss=1 | ") and " it/s" in lines[1] and "ETA" in lines[1]
    assert lines[3].startswith("sft 3/4 (75%) loss=0.3333")
    assert lines[-1].startswith("sft done: 4/4 in ") and lines[-1].endswith("loss=0.25")


def test_lines_are_spaced_by_the_interval():
    out = io.StringIO()
    with progress_bar("rm", total=50, stream=out, interval=1000) as bar:
        for _ in range(50):
            bar.advance(loss=0.5)
    lines = out.getvalue().splitlines()
    # start, the first step (so a log shows the speed early), the end — nothing in between
    assert len(lines) == 3 and lines[1].startswith("rm 1/50 (2%)") and lines[2].startswith("rm done: 50/50")


def test_heartbeat_prints_while_one_step_is_slow():
    out = io.StringIO()
    with progress_bar("ppo", total=2, stream=out, interval=0.1) as bar:
        bar.advance(reward=0.1)
        time.sleep(0.45)  # a slow rollout: no advance, yet the log must show life
        bar.advance(reward=0.2)
    waiting = [ln for ln in out.getvalue().splitlines() if "working on step 2" in ln]
    assert len(waiting) >= 2 and waiting[0].startswith("ppo 1/2 (50%) reward=0.1")


def test_a_failing_loop_says_where_it_stopped():
    out = io.StringIO()
    with pytest.raises(RuntimeError), progress_bar("sft", total=10, stream=out, interval=1000) as bar:
        bar.advance(loss=1.0)
        raise RuntimeError("boom")
    assert out.getvalue().splitlines()[-1].startswith("sft stopped at 1/10 in ")


def test_disabled_bar_prints_nothing(capsys):
    with progress_bar("x", total=3, enabled=False) as bar:
        bar.advance(loss=1.0)
    assert capsys.readouterr() == ("", "")


def test_plain_lines_go_to_stdout_when_it_is_piped(monkeypatch):
    piped, tty = io.StringIO(), _Tty()
    monkeypatch.setattr(sys, "stdout", piped)
    monkeypatch.setattr(sys, "stderr", tty)
    assert plain_stream() is piped
    with progress_bar("sft", total=2, interval=0) as bar:
        bar.advance(loss=2.0)
        bar.advance(loss=1.0)
    assert "sft 2/2 (100%) loss=1" in piped.getvalue() and tty.getvalue() == ""
    monkeypatch.setattr(sys, "stdout", _Tty())
    assert plain_stream() is None  # both terminals: the rich bar draws instead
    monkeypatch.setattr(sys, "stderr", piped)
    assert plain_stream() is piped  # `2> log`: lines to the log


def test_interval_comes_from_the_environment(monkeypatch):
    monkeypatch.setenv("ALIGNLAB_PROGRESS_SECONDS", "3")
    assert progress.plain_interval() == 3.0
    monkeypatch.setenv("ALIGNLAB_PROGRESS_SECONDS", "soon")
    assert progress.plain_interval() == progress.PLAIN_EVERY_S
    assert progress.PLAIN_EVERY_S <= 30  # the promise: a piped log shows a line at least every 30 s


def test_durations_read_at_a_glance():
    assert [fmt_duration(s) for s in (4.4, 65, 3720)] == ["4s", "1m05s", "1h02m"]


def test_demo_stage_lines_say_start_end_and_time(capsys):
    from alignlab.demo import _timed_stage

    res, seconds = _timed_stage("stage 1/1 sft", lambda: "ok")
    out = capsys.readouterr().out.splitlines()
    assert res == "ok" and seconds >= 0
    assert out[0].startswith("demo: stage 1/1 sft started at ") and out[1].startswith("demo: stage 1/1 sft done in ")
    with pytest.raises(ValueError):
        _timed_stage("stage 2/2 rm", lambda: (_ for _ in ()).throw(ValueError("bad")))
    assert "demo: stage 2/2 rm failed after" in capsys.readouterr().out


def test_a_piped_summary_table_keeps_every_figure_whole(capsys):
    """Without a terminal rich would cut the table to 80 columns ('stu… │ 104…'); a log must read whole."""
    from alignlab.progress import print_table

    path = "/very/long/cache/folder/testbed/2baf62ae5ddd/student-2c895e15cacd"
    print_table("testbed models", [{"size": "student", "params": 1042176, "val_ppl": 2.3865, "build_s": 106.1,
                                    "threads": 2, "load_before_after": "0.5/1.0", "path": path}])
    out = capsys.readouterr().out
    assert path in out and "1042176" in out and "student" in out and "…" not in out
