"""Every example config loads into its command's config class (the command is the one its
header says to run), and the examples that run on built-in data run for one small step."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from alignlab.cli import build_parser, main
from alignlab.recipe import config_from_args

EXAMPLES = sorted((Path(__file__).resolve().parents[2] / "examples").glob("*.yaml"))


def command_of(path: Path) -> str:
    """The subcommand named in the example's own usage line `alignlab CMD -c examples/NAME`."""
    m = re.search(rf"alignlab (\w+) -c examples/{re.escape(path.name)}", path.read_text())
    assert m, f"{path.name}: its header must show how to run it (alignlab CMD -c examples/{path.name})"
    return m.group(1)


def test_every_example_is_covered():
    assert len(EXAMPLES) >= 16 and {command_of(p) for p in EXAMPLES} >= {
        "sft", "rm", "prefs", "ppo", "psle", "akd", "steer", "fv", "sea", "embed", "erm"}


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.stem)
def test_example_loads_into_its_config(path):
    args = build_parser().parse_args([command_of(path), "-c", str(path)])
    cfg = config_from_args(args.config_cls, args)
    assert type(cfg) is args.config_cls


# One small step of each example whose data is built in (the others need files a user makes).
SMALL = {
    "ppo": ["ppo.iterations=1", "ppo.rollout_batch=8", "ppo.epochs=1", "train.batch_size=8",
            "generation.max_new_tokens=4", "eval.every=1", "eval.n_prompts=4", "eval.n_reference=4"],
    "elastic_reset": ["ppo.iterations=1", "ppo.rollout_batch=8", "ppo.epochs=1", "train.batch_size=8",
                      "generation.max_new_tokens=4", "eval.every=0", "elastic_reset.reset_every=1"],
    "steer": ["n_pairs=8", "n_eval=4", "max_new_tokens=4", "coefficients=[-2.0,2.0]", "layers=[1]"],
    "sea": ["sites=[resid.1]", "top_layers=0"],
}


@pytest.mark.parametrize("name", sorted(SMALL))
def test_example_runs_one_small_step(name, tiny_dir, tmp_path):
    path = next(p for p in EXAMPLES if p.stem == name)
    out = tmp_path / name
    rc = main([command_of(path), "-c", str(path), "--out", str(out), f"model.name_or_path={tiny_dir}",
               *SMALL[name], *(["train.progress=false"] if "train:" in path.read_text() else [])])
    assert rc == 0
    assert (out / "config.yaml").exists() and (out / "metrics.jsonl").exists() and (out / "report.html").exists()
