"""`alignlab --help` and every `alignlab CMD --help` import no heavy library (torch, transformers,
accelerate, scikit-learn, datasets), and a command's help lists its config keys with defaults.
Checked in a fresh interpreter by the modules it loaded, not by timing."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from alignlab.cli import COMMANDS

HEAVY = ("torch", "transformers", "accelerate", "sklearn", "datasets")

PROBE = """
import contextlib, io, json, sys
from alignlab.cli import main
out = io.StringIO()
with contextlib.redirect_stdout(out):
    try:
        code = main(json.loads(sys.argv[1]))
    except SystemExit as e:
        code = e.code
heavy = sorted(m for m in sys.modules if m.split(".")[0] in json.loads(sys.argv[2]))
print(json.dumps({"code": code, "help": out.getvalue(), "heavy": heavy}))
"""


def help_of(argv: list[str]) -> dict:
    """Run `alignlab.cli.main(argv)` in a fresh interpreter: exit code, stdout, heavy modules loaded."""
    res = subprocess.run([sys.executable, "-c", PROBE, json.dumps(argv), json.dumps(HEAVY)],
                         capture_output=True, text=True, timeout=120, check=True)
    return json.loads(res.stdout.strip().splitlines()[-1])


def test_top_level_help_imports_nothing_heavy():
    got = help_of(["--help"])
    assert got["code"] == 0
    assert got["heavy"] == [], f"`alignlab --help` imported {len(got['heavy'])} heavy modules: {got['heavy'][:10]}"
    for name in COMMANDS:
        assert f"    {name} " in got["help"]


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_command_help_imports_nothing_heavy(command):
    got = help_of([command, "--help"])
    assert got["code"] == 0
    assert f"usage: alignlab {command}" in got["help"]
    assert got["heavy"] == [], f"`alignlab {command} --help` imported {len(got['heavy'])} heavy modules: {got['heavy'][:10]}"


@pytest.mark.parametrize(("command", "lines"), [
    ("ppo", ["ppo.kl_coef: float = 0.05", "train.lr: float = 0.0001", "ppo.kl_estimator: 'k1' | 'k2' | 'k3' = 'k1'",
             "model.lora.r: int = 8", "elastic_reset.enabled: bool = False"]),
    ("prefs", ["preference.loss: 'dpo' | 'ipo' | 'cal_dpo' = 'dpo'", "preference.beta: float = 0.1"]),
    ("sft", ["model.name_or_path: str = ''", "train.lr_schedule: 'constant' | 'linear' | 'cosine' = 'constant'"]),
    ("erm", ["mlp.hidden: list[int] = [1024, 512]", "mode: 'train' | 'eval' = 'train'"]),
    ("sample", ["generation.temperature: float = "]),
    ("runs", ["port: int = 8000"]),
])
def test_command_help_lists_config_keys_with_defaults_and_types(command, lines):
    text = help_of([command, "--help"])["help"]
    assert "config keys" in text
    for line in lines:
        assert line in text, f"{line!r} not in `alignlab {command} --help`"
