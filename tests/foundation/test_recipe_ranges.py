"""Every recipe config range-checks its numbers at load: an out-of-range (or NaN) value, or a
broken cross-field rule, is a clean CLI error (exit 2) naming the key, before any model loads."""

from __future__ import annotations

import pytest

from alignlab.cli import build_parser, main
from alignlab.recipe import config_from_args

RECIPES = ("sft", "rm", "prefs", "ppo", "psle", "akd", "steer", "fv", "sea", "embed", "erm")

# (command, overrides, the key the error must name)
OUT_OF_RANGE = [
    ("sft", ["max_length=1"], "max_length"),
    ("rm", ["eval_fraction=1"], "eval_fraction"),
    ("rm", ["score_penalty=-0.1"], "score_penalty"),
    ("rm", ["eval_batch_size=0"], "eval_batch_size"),
    ("prefs", ["eval_fraction=1.0"], "eval_fraction"),
    ("prefs", ["max_length=1"], "max_length"),
    ("prefs", ["eval_every=-1"], "eval_every"),
    ("prefs", ["preference.beta=0"], "preference.beta"),
    ("prefs", ["preference.beta=nan"], "preference.beta"),
    ("prefs", ["preference.calibration_weight=-1"], "preference.calibration_weight"),
    ("ppo", ["ppo.gamma=1.5"], "ppo.gamma"),
    ("ppo", ["ppo.clip=0"], "ppo.clip"),
    ("ppo", ["ppo.kl_horizon=0"], "ppo.kl_horizon"),
    ("ppo", ["ppo.lam=.nan"], "ppo.lam"),
    ("ppo", ["ppo.iterations=0"], "ppo.iterations"),
    ("ppo", ["eval.n_prompts=0"], "eval.n_prompts"),
    ("ppo", ["n_prompts=0"], "n_prompts"),
    ("ppo", ["elastic_reset.decay=1"], "elastic_reset.decay"),
    ("ppo", ["elastic_reset.reset_every=0"], "elastic_reset.reset_every"),
    ("ppo", ["generation.top_p=0"], "generation.top_p"),
    ("ppo", ["generation.max_new_tokens=0"], "generation.max_new_tokens"),
    ("ppo", ["generation.temperature=-1"], "generation.temperature"),
    ("psle", ["alpha=0"], "alpha"),
    ("psle", ["alpha=1.5"], "alpha"),
    ("psle", ["beta=0"], "beta"),
    ("psle", ["tau0=-0.1"], "tau0"),
    ("psle", ["sft_temperature=nan"], "sft_temperature"),
    ("psle", ["eval_every=-1"], "eval_every"),
    ("akd", ["curriculum.memory=1.5"], "curriculum.memory"),
    ("akd", ["curriculum.weights=[1.0, -1.0, 1.0, 1.0]"], "curriculum.weights[1]"),
    ("akd", ["curriculum.temperature=nan"], "curriculum.temperature"),
    ("akd", ["sandbox.timeout_s=0"], "sandbox.timeout_s"),
    ("akd", ["sandbox.memory_mb=10"], "sandbox.memory_mb"),
    ("akd", ["eval.ks=[0, 1]"], "eval.ks[0]"),
    ("akd", ["heldout_every=1"], "heldout_every"),
    ("akd", ["distill_weight=-1"], "distill_weight"),
    ("akd", ["rounds=0"], "rounds"),
    ("steer", ["layers=[1, -1]"], "layers[1]"),
    ("steer", ["n_eval=0"], "n_eval"),
    ("steer", ["temperature=-1"], "temperature"),
    ("fv", ["top_k=0"], "top_k"),
    ("fv", ["n_shots=0"], "n_shots"),
    ("sea", ["k_pos=0"], "k_pos"),
    ("sea", ["k_neg=1.5"], "k_neg"),
    ("sea", ["k_pos=nan"], "k_pos"),
    ("sea", ["top_layers=-1"], "top_layers"),
    ("embed", ["limit=-1"], "limit"),
    ("embed", ["encoder.max_length=0"], "encoder.max_length"),
    ("embed", ["encoder.chunk_size=0"], "encoder.chunk_size"),
    ("erm", ["test_frac=1"], "test_frac"),
    ("erm", ["quality=-0.5"], "quality"),
    ("erm", ["members=0"], "members"),
    ("erm", ["mlp.hidden=[32, 0]"], "mlp.hidden[1]"),
    ("erm", ["mlp.lr=nan"], "mlp.lr"),
    ("erm", ["mlp.val_frac=1"], "mlp.val_frac"),
    ("erm", ["gbdt.max_leaf_nodes=1"], "gbdt.max_leaf_nodes"),
]

# Rules across fields, checked by the config's `check(where)` at load.
CROSS_FIELD = [
    ("prefs", ["max_length=256", "max_prompt_length=256"], "max_prompt_length: must be < max_length (256)"),
    ("prefs", ["reference=adapter"], "needs model.lora.enabled"),
    ("ppo", ["ppo.rollout_batch=10", "train.batch_size=4"], "ppo.rollout_batch: must be a multiple of"),
    ("psle", ["queries_per_iteration=10", "train.batch_size=4"], "queries_per_iteration: must be a multiple of"),
    ("akd", ["eval.n=4", "eval.ks=[1, 5]"], "eval.ks: each k must be <= n (4)"),
    ("akd", ["curriculum.buckets=3", "curriculum.weights=[1.0, 2.0]"], "curriculum.weights: need one per bucket"),
    ("akd", ["train.lr_schedule=cosine"], "train.lr_schedule: must be 'constant'"),
    ("akd", ["max_pairs_per_exercise=0", "max_distill_per_exercise=0"], "max_pairs_per_exercise"),
]


def _fails_naming(capsys, command: str, overrides: list[str], named: str) -> None:
    rc = main([command, *overrides])
    err = capsys.readouterr().err
    assert rc == 2, err
    assert named in err, err
    assert "Traceback" not in err and err.startswith("alignlab: error:"), err


@pytest.mark.parametrize(("command", "overrides", "named"), OUT_OF_RANGE, ids=lambda v: str(v))
def test_out_of_range_value_is_a_clean_error_naming_the_key(capsys, command, overrides, named):
    _fails_naming(capsys, command, overrides, named)


@pytest.mark.parametrize(("command", "overrides", "named"), CROSS_FIELD, ids=lambda v: str(v))
def test_cross_field_rule_is_a_clean_error_naming_the_key(capsys, command, overrides, named):
    _fails_naming(capsys, command, overrides, named)


@pytest.mark.parametrize("command", RECIPES)
def test_defaults_are_in_range(command):
    args = build_parser().parse_args([command])
    assert type(config_from_args(args.config_cls, args)) is args.config_cls


def test_validate_checks_a_config_built_in_code():
    """Configs made in Python skip loading; the recipe's own validate runs every load-time check."""
    from alignlab.config import TrainSettings
    from alignlab.errors import ConfigError
    from alignlab.recipes import akd, ppo
    from alignlab.rl.elastic_reset import ElasticResetSettings

    cfg = ppo.PPOConfig(reward="r", ppo=ppo.PPOSettings(rollout_batch=10), train=TrainSettings(batch_size=4))
    with pytest.raises(ConfigError, match="ppo.rollout_batch: must be a multiple"):
        ppo.validate(cfg)
    with pytest.raises(ConfigError, match=r"config\.ppo\.gamma: must be >= 0 and <= 1"):
        ppo.validate(ppo.PPOConfig(reward="r", ppo=ppo.PPOSettings(gamma=2.0)))
    with pytest.raises(ConfigError, match=r"config\.eval\.ks: each k must be <= n \(2\)"):
        akd.validate(akd.AKDConfig(eval=akd.PassAtKSettings(n=2, ks=[1, 5])))
    with pytest.raises(ConfigError, match=r"elastic_reset\.decay: must be >= 0 and < 1, got 1\.0"):
        ElasticResetSettings(decay=1.0).validate()
