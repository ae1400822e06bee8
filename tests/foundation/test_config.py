"""Typed configs: YAML + key=value overrides, every bad key or value named."""

from dataclasses import dataclass, field

import pytest

from alignlab.config import (
    ModelSettings,
    TrainSettings,
    bounded,
    load_config,
    parse_overrides,
    save_config,
)
from alignlab.errors import ConfigError


@dataclass
class SFTConfig:
    """A recipe-shaped config (the config layer is tested without importing any recipe)."""

    model: ModelSettings = field(default_factory=ModelSettings)
    train: TrainSettings = field(default_factory=lambda: TrainSettings(lr=5e-4, batch_size=16, epochs=1))
    data: str = ""


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


def test_model_name_is_required_and_dtype_is_checked():
    assert ModelSettings().name_or_path == ""
    assert load_config(SFTConfig, None, ["model.dtype=bfloat16"]).model.dtype == "bfloat16"
    with pytest.raises(ConfigError, match=r"config\.model\.dtype: 'fp32' is not one of \['float32', 'bfloat16', 'float16'\]"):
        load_config(SFTConfig, None, ["model.dtype=fp32"])


def test_wrong_literal_value_names_the_key(tmp_path):
    cfg = load_config(SFTConfig, None, ["train.lr_schedule=cosine", "train.mixed_precision=bf16"])
    assert (cfg.train.lr_schedule, cfg.train.mixed_precision) == ("cosine", "bf16")
    with pytest.raises(ConfigError, match=r"train\.lr_schedule: 'cosin' is not one of \['constant', 'linear', 'cosine'\]"):
        load_config(SFTConfig, None, ["train.lr_schedule=cosin"])
    p = tmp_path / "c.yaml"
    p.write_text("train:\n  mixed_precision: fp8\n")
    with pytest.raises(ConfigError, match=r"train\.mixed_precision: 'fp8' is not one of \['no', 'bf16', 'fp16'\]"):
        load_config(SFTConfig, p)


def test_no_stays_a_string_and_only_true_false_are_booleans(tmp_path):
    """YAML 1.1 reads `no` as false; `mixed_precision: no` must mean the string 'no'."""
    p = tmp_path / "c.yaml"
    p.write_text("train:\n  mixed_precision: no\n  progress: false\n")
    cfg = load_config(SFTConfig, p, ["train.lr_schedule=linear"])
    assert (cfg.train.mixed_precision, cfg.train.progress) == ("no", False)
    assert load_config(SFTConfig, None, ["train.mixed_precision=no"]).train.mixed_precision == "no"
    with pytest.raises(ConfigError, match=r"model\.lora\.enabled: expected true/false, got 'yes'"):
        load_config(SFTConfig, None, ["model.lora.enabled=yes"])
    save_config(cfg, tmp_path / "saved.yaml")
    assert load_config(SFTConfig, tmp_path / "saved.yaml") == cfg


def test_typo_in_an_override_key_is_named_with_suggestion():
    with pytest.raises(ConfigError, match=r"command line: unknown key 'train\.lr_schedul' \(did you mean 'train\.lr_schedule'\?\)"):
        load_config(SFTConfig, None, ["train.lr_schedul=cosine"])
    with pytest.raises(ConfigError, match=r"unknown key 'mdoel' \(did you mean 'model'\?\)"):
        load_config(SFTConfig, None, ["mdoel.dtype=float32"])


@dataclass
class RangedConfig:
    """A recipe-shaped config using the range mechanism: bounded fields, a list, a check hook."""

    train: TrainSettings = field(default_factory=TrainSettings)
    beta: float = bounded(0.1, gt=0)
    fraction: float = bounded(0.1, ge=0, lt=1)
    weights: list[float] = bounded([1.0], gt=0)
    limit: int | None = bounded(None, ge=1)
    lo: int = 0
    hi: int = 1

    def check(self, where: str) -> None:
        if self.lo >= self.hi:
            raise ConfigError(f"{where}.lo: must be < hi ({self.hi}), got {self.lo}")


def test_bounded_fields_are_checked_at_load_and_name_the_key(tmp_path):
    cfg = load_config(RangedConfig, None, ["beta=0.5", "weights=[1, 2.5]", "limit=3"])
    assert (cfg.beta, cfg.weights, cfg.limit) == (0.5, [1.0, 2.5], 3)
    assert RangedConfig().weights is not RangedConfig().weights  # a list default is copied
    for override, named in [("beta=0", r"config\.beta: must be > 0, got 0\.0"),
                            ("fraction=1", r"config\.fraction: must be >= 0 and < 1"),
                            ("weights=[1, -2]", r"config\.weights\[1\]: must be > 0"),
                            ("weights=[1, .nan]", r"config\.weights\[1\]: must be a finite number"),
                            ("limit=0", r"config\.limit: must be >= 1"),
                            ("lo=3", r"config\.lo: must be < hi \(1\), got 3"),
                            ("train.weight_decay=-0.1", r"config\.train\.weight_decay: must be >= 0")]:
        with pytest.raises(ConfigError, match=named):
            load_config(RangedConfig, None, [override])
    assert load_config(RangedConfig, None, ["limit=null"]).limit is None
    p = tmp_path / "c.yaml"
    p.write_text("train:\n  max_grad_norm: .inf\n")
    with pytest.raises(ConfigError, match=r"c\.yaml\.train\.max_grad_norm: must be a finite number"):
        load_config(RangedConfig, p)


def test_train_settings_ranges_accept_their_special_values():
    cfg = load_config(SFTConfig, None, ["train.max_steps=-1", "train.max_grad_norm=0", "train.save_every=0",
                                        "train.keep_checkpoints=0", "train.warmup_steps=0", "model.lora.dropout=0"])
    assert (cfg.train.max_steps, cfg.train.max_grad_norm, cfg.train.save_every) == (-1, 0.0, 0)
    for override, named in [("train.max_steps=-2", "must be >= 1 or -1"), ("train.batch_size=0", "must be >= 1"),
                            ("train.lr=-1e-4", "must be > 0"), ("train.lr=inf", "finite"),
                            ("model.lora.alpha=0", "must be > 0"), ("train.save_every=-1", "must be >= 0")]:
        with pytest.raises(ConfigError, match=named):
            load_config(SFTConfig, None, [override])


def test_unreadable_config_files_name_the_file(tmp_path):
    p = tmp_path / "c.yaml"
    for content, why in [(b"\x00\x01binary", "binary content"), (b"a: 1\nb: caf\xe9\n", r"c\.yaml:2: not UTF-8"),
                         (b"- a\n", "top level must be a mapping of keys, got a list"),
                         (b"a: " + b"[" * 50_000, "nested too deeply"), (b"a: [\n", "not valid YAML")]:
        p.write_bytes(content)
        with pytest.raises(ConfigError, match=why):
            load_config(SFTConfig, p)
    p.write_bytes(b"")
    assert load_config(SFTConfig, p).train.lr == SFTConfig().train.lr  # an empty file = no settings


def test_failed_config_write_names_the_file(tmp_path, monkeypatch):
    import errno
    from pathlib import Path

    def full(self, *args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(Path, "write_text", full)
    with pytest.raises(OSError) as info:
        save_config(SFTConfig(), tmp_path / "config.yaml")
    assert info.value.filename == str(tmp_path / "config.yaml") and info.value.errno == errno.ENOSPC
