import pytest

from alignlab.config import ModelSettings, TrainSettings, load_config, parse_overrides
from alignlab.errors import ConfigError
from alignlab.train.sft import SFTConfig


def test_yaml_plus_overrides(tmp_path):
    p = tmp_path / "c.yaml"
    p.write_text("model:\n  name_or_path: testbed:tiny\ntrain:\n  lr: 0.01\n  batch_size: 4\n")
    cfg = load_config(SFTConfig, p, ["train.lr=1e-4", "model.lora.enabled=true", "data=x.jsonl"])
    assert cfg.train.lr == pytest.approx(1e-4)
    assert cfg.train.batch_size == 4
    assert cfg.model.lora.enabled is True
    assert isinstance(cfg.model, ModelSettings) and isinstance(cfg.train, TrainSettings)
    assert cfg.data == "x.jsonl"


def test_unknown_key_is_named_with_suggestion(tmp_path):
    p = tmp_path / "c.yaml"
    p.write_text("train:\n  lrr: 0.01\n")
    with pytest.raises(ConfigError, match=r"unknown key 'lrr'.*did you mean 'lr'"):
        load_config(SFTConfig, p)
    with pytest.raises(ConfigError, match="unknown key 'bogus'"):
        load_config(SFTConfig, None, ["bogus=1"])


def test_wrong_type_and_missing_file(tmp_path):
    with pytest.raises(ConfigError, match=r"train.batch_size: expected an integer"):
        load_config(SFTConfig, None, ["train.batch_size=abc"])
    with pytest.raises(ConfigError, match="expected true/false"):
        load_config(SFTConfig, None, ["model.lora.enabled=maybe"])
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(SFTConfig, tmp_path / "nope.yaml")
    with pytest.raises(ConfigError, match="key=value"):
        parse_overrides(["train.lr"])


def test_partial_section_keeps_recipe_defaults():
    """`train.progress=false` must not reset the recipe's own train defaults (lr, batch)."""
    default = SFTConfig().train
    cfg = load_config(SFTConfig, None, ["train.progress=false"])
    assert cfg.train.progress is False
    assert cfg.train.lr == default.lr and cfg.train.batch_size == default.batch_size
    assert default.lr != TrainSettings().lr  # the recipe default differs from the class default
