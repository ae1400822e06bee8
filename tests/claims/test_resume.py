"""`alignlab claims` into a folder that holds an earlier run: an interrupted run goes on where it
stopped (finished rows are taken, not measured again), rows not asked for stay in the files, and
a run with other settings is refused instead of silently replacing the folder's content."""

from __future__ import annotations

import dataclasses
import json

import pytest

from alignlab.claims import registry
from alignlab.claims.cli import run_claims
from alignlab.claims.row import SeedResult
from alignlab.errors import ConfigError

VALUES = {"sft": [0.20, 0.25, 0.22], "akd": [0.05, 0.10, 0.08]}


@pytest.fixture
def fake_rows(monkeypatch):
    """sft and akd with stand-in measurements (counted); `stop` makes akd raise KeyboardInterrupt."""
    calls: dict[str, int] = {"sft": 0, "akd": 0}
    stop = {"akd": False}
    real = registry.load_rows

    def fake(key):
        row = real([key])[0]

        def measure(ctx, seed):
            if stop.get(key):
                raise KeyboardInterrupt
            calls[key] += 1
            return SeedResult({row.tests[0].key: VALUES[key][seed], "before_pass@1": 0.1})
        return dataclasses.replace(row, measure=measure)

    monkeypatch.setattr(registry, "load_rows", lambda keys=None, quick=False: [fake(k) for k in keys])
    return calls, stop


def _saved(out) -> dict:
    return json.loads((out / "claims.json").read_text())


def test_an_interrupted_run_goes_on_where_it_stopped(fake_rows, tmp_path):
    calls, stop = fake_rows
    out = tmp_path / "claims"
    stop["akd"] = True
    with pytest.raises(KeyboardInterrupt):
        run_claims(out, rows=["sft", "akd"])
    partial = _saved(out)
    assert partial["partial"] and [r["key"] for r in partial["rows"]] == ["sft"] and calls == {"sft": 3, "akd": 0}
    stop["akd"] = False
    run_claims(out, rows=["sft", "akd"])
    assert calls == {"sft": 3, "akd": 3}  # sft taken from the earlier run, not measured again
    done = _saved(out)
    assert not done.get("partial") and done["reused"] == ["sft"] and [r["key"] for r in done["rows"]] == ["sft", "akd"]
    assert done["rows"][0]["intervals"]["sft_minus_base"]["mean"] == pytest.approx(sum(VALUES["sft"]) / 3)
    assert "rows sft taken from the earlier run in this folder" in (out / "CLAIMS.md").read_text()

    run_claims(out, rows=["akd"], rerun=True)  # measured again; sft, not asked for, stays (after the rows asked for)
    assert calls == {"sft": 3, "akd": 6} and [r["key"] for r in _saved(out)["rows"]] == ["akd", "sft"]


def test_a_folder_holding_other_settings_is_refused(fake_rows, tmp_path):
    out = tmp_path / "claims"
    run_claims(out, rows=["sft"])
    before = (out / "claims.json").read_text()
    with pytest.raises(ConfigError, match=r"holds a full claims run with seeds \[0, 1, 2\]; this one is quick"):
        run_claims(out, quick=True, rows=["sft"])
    with pytest.raises(ConfigError, match=r"seeds \[0, 1\]"):
        run_claims(out, seeds=2, rows=["sft"])
    assert (out / "claims.json").read_text() == before  # nothing already written is lost


def test_an_interrupt_says_where_the_finished_rows_are_and_how_to_go_on(monkeypatch, tmp_path, capsys):
    from alignlab.claims import cli as claims_cli
    from alignlab.cli import main

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(claims_cli, "run_claims", interrupted)
    assert main(["claims", "--rows", "sft", "--out", str(tmp_path / "c")]) == 130
    err = capsys.readouterr().err
    assert f"rows finished so far are in {tmp_path / 'c' / 'claims.json'}" in err
    assert "To go on where it stopped: alignlab claims" in err and "--out" in err and "Traceback" not in err
