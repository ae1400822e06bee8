"""`alignlab sample` / `alignlab chat`: completions of a model or a run's final model, printed;
the chat keeps its history through the chat template and ends at EOF."""

from __future__ import annotations

import argparse
import io
import json

import pytest

from alignlab.errors import ConfigError
from alignlab.generation import SamplingSettings
from alignlab.recipes import sample as sm

SHORT = SamplingSettings(max_new_tokens=6, temperature=1.0, batch_size=4)


@pytest.fixture
def run_dir(tmp_path, tiny_dir):
    """A finished run folder whose final/ model is the tiny model."""
    run = tmp_path / "sft-run"
    run.mkdir()
    (run / "metrics.jsonl").write_text('{"step": 1, "loss": 1.0}\n')
    (run / "final").symlink_to(tiny_dir, target_is_directory=True)
    return run


def test_sample_prints_n_completions_per_prompt_and_repeats_with_the_seed(run_dir):
    cfg = sm.SampleConfig(model=str(run_dir), prompt=["how was the hotel?", "and the room?"], n=2, generation=SHORT)
    out = io.StringIO()
    first = sm.run_sample(cfg, stdout=out)
    lines = out.getvalue().splitlines()
    assert lines[0] == "[1] how was the hotel?" and lines[1].startswith("  1> ") and lines[2].startswith("  2> ")
    assert lines[3] == "[2] and the room?" and len(first) == 2 and all(len(c) == 2 for c in first)
    assert sm.run_sample(cfg, stdout=io.StringIO()) == first  # same seed, same completions


def test_single_prompt_prints_just_the_completion(tiny_dir):
    out = io.StringIO()
    res = sm.run_sample(sm.SampleConfig(model=str(tiny_dir), prompt="review : the staff was", chat=False,
                                        generation=SHORT), stdout=out)
    assert out.getvalue() == res[0][0] + "\n"


def test_prompts_from_stdin(tiny_dir):
    cfg = sm.SampleConfig(model=str(tiny_dir), prompt="-", generation=SHORT)
    res = sm.run_sample(cfg, stdin=io.StringIO("one\n\ntwo\n"), stdout=io.StringIO())
    assert len(res) == 2


def test_model_source_uses_final_and_refuses_what_cannot_generate(tmp_path, run_dir):
    assert sm.model_source(str(run_dir)) == str(run_dir / "final")
    unfinished = tmp_path / "unfinished"
    (unfinished / "checkpoints").mkdir(parents=True)
    with pytest.raises(ConfigError, match="no final/ model yet"):
        sm.model_source(str(unfinished))
    rm = tmp_path / "rm" / "final"
    rm.mkdir(parents=True)
    (rm / "config.json").write_text(json.dumps({"architectures": ["LlamaForSequenceClassification"]}))
    with pytest.raises(ConfigError, match="reward model"):
        sm.model_source(str(rm.parent))
    with pytest.raises(ConfigError, match="model: give a model"):
        sm.model_source("")
    assert sm.model_source("org/some-hub-model") == "org/some-hub-model"


def test_command_line_bare_word_is_the_model_and_prompts_are_plain_text(tiny_dir):
    cfg = sm.config_from_words(sm.SampleConfig, None, [str(tiny_dir), "prompt=review : the staff", "prompt=x: y",
                                                       "generation.temperature=0", "n=2"])
    assert cfg.model == str(tiny_dir) and cfg.prompt == ["review : the staff", "x: y"]
    assert cfg.generation.temperature == 0.0 and cfg.n == 2
    with pytest.raises(ConfigError, match="one model"):
        sm.config_from_words(sm.SampleConfig, None, ["a", "b"])
    with pytest.raises(ConfigError, match="not a key"):
        sm.config_from_words(sm.ChatConfig, None, ["a", "prompt=hi"])
    with pytest.raises(ConfigError, match="unknown key 'generation.temprature'"):
        sm.config_from_words(sm.SampleConfig, None, ["a", "generation.temprature=1"])


def test_chat_keeps_history_resets_and_ends_at_eof(run_dir):
    cfg = sm.ChatConfig(model=str(run_dir), system="be kind", generation=SHORT)
    out = io.StringIO()
    history = sm.run_chat(cfg, stdin=io.StringIO("how was the hotel?\n\nand the food?\n/reset\nhello\n"), stdout=out)
    replies = [ln for ln in out.getvalue().splitlines() if ln.startswith("assistant> ")]
    assert len(replies) == 3 and "(conversation forgotten)" in out.getvalue()
    assert [m["role"] for m in history] == ["system", "user", "assistant"] and history[1]["content"] == "hello"


def test_long_history_drops_oldest_turns_but_keeps_the_system_message(tiny):
    _, tok = tiny
    history = [{"role": "system", "content": "sys"}]
    for i in range(20):
        history += [{"role": "user", "content": f"question {i} " * 5}, {"role": "assistant", "content": "answer " * 5}]
    history.append({"role": "user", "content": "last"})
    ids = sm.fit_history(tok, history, limit=60)
    assert len(ids) <= 60 and history[0]["content"] == "sys" and history[-1]["content"] == "last"
    assert len(history) < 42


def test_registered_commands_parse(tiny_dir, capsys):
    parser = argparse.ArgumentParser()
    sm.register(parser.add_subparsers())
    args = parser.parse_args(["sample", str(tiny_dir), "prompt=hello", "generation.max_new_tokens=4"])
    assert args.func(args) == 0 and capsys.readouterr().out.strip() != ""
