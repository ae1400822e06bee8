"""The SmolLM2-135M claim rows without the model: which runs select them, the table's model mark,
"untestable here" (never an error) when the model or the public data is absent, and the rows'
pure helpers (aligned context levels, seeded contrast pairs of the right sign)."""

from __future__ import annotations

import json

import pytest

from alignlab.claims.registry import BUILT_IN, REAL_MODEL, ROWS, default_keys, load_rows, model_of
from alignlab.claims.row import ClaimRow, ClaimTest, RowContext, SeedResult
from alignlab.claims.rows import real_smollm2
from alignlab.claims.runner import RowOutcome, Untestable, run_row


def test_quick_skips_real_model_rows_that_full_runs_and_rows_name():
    assert set(REAL_MODEL) == {"cal_dpo_smollm2", "sea_smollm2", "steering_smollm2"} and set(REAL_MODEL) <= set(ROWS)
    assert default_keys(False) == [k for k in ROWS if k != "cal_dpo_smollm2"]  # LoRA training: only when named
    assert [r.key for r in load_rows(["cal_dpo_smollm2"])] == ["cal_dpo_smollm2"]
    assert default_keys(True) == [k for k in ROWS if not k.endswith("_smollm2") and k != "akd_teacher"]
    assert "sft" in default_keys(True) and "akd" in default_keys(True)  # akd_teacher needs the teacher build
    assert [r.key for r in load_rows(None, quick=True)] == default_keys(True)
    assert [r.key for r in load_rows(["steering_smollm2"], quick=True)] == ["steering_smollm2"]  # named: runs
    assert model_of("sea_smollm2") == "SmolLM2-135M" and model_of("sea") == BUILT_IN
    for key in REAL_MODEL:
        row = load_rows([key])[0]
        assert "SmolLM2-135M" in row.paper and "SmolLM2-135M" in row.claim and "SmolLM2-135M" in row.setup


def test_untestable_is_a_verdict_with_its_reason_not_an_error(tmp_path):
    calls = []

    def measure(ctx, seed):
        calls.append(seed)
        raise Untestable("model X is not installed")

    row = ClaimRow("toy_real", "paper", "claim", (ClaimTest("gain", "greater", "gain"),), measure=measure)
    out = run_row(row, RowContext(tmp_path, False, {}), [0, 1, 2])
    assert (out.verdict, out.reason, out.error, out.results) == ("untestable here", "model X is not installed", "", [])
    assert calls == [0]  # the reason holds for every seed: asked once


@pytest.mark.parametrize("key", sorted(REAL_MODEL))
def test_real_rows_are_untestable_without_their_data(tmp_path, key):
    row = load_rows([key])[0]
    ctx = RowContext(tmp_path / "runs", False, {}, {"data_root": str(tmp_path / "no_data")})
    with pytest.raises(Untestable, match="public data absent: .*no_data"):
        row.measure(ctx, 0)
    assert "smollm2" not in ctx.shared  # the check comes before any model load


def test_missing_model_is_named_in_the_reason(tmp_path, monkeypatch):
    monkeypatch.setenv("ALIGNLAB_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr("alignlab.models.real.real_model_available", lambda name="smollm2": False)
    (tmp_path / "data" / "corpus").mkdir(parents=True)
    (tmp_path / "data" / "corpus" / "tinyshakespeare_input.txt").write_text("x")
    ctx = RowContext(tmp_path / "runs", False, {}, {"data_root": str(tmp_path / "data")})
    with pytest.raises(Untestable, match="SmolLM2-135M is not installed") as e:
        real_smollm2.require(ctx, "corpus/tinyshakespeare_input.txt")
    assert "public data absent" not in str(e.value)


def test_data_root_order_flag_then_env_then_default(tmp_path, monkeypatch):
    monkeypatch.delenv(real_smollm2.DATA_ENV, raising=False)
    assert real_smollm2.data_root(RowContext(tmp_path, False, {})) == real_smollm2.DEFAULT_DATA
    monkeypatch.setenv(real_smollm2.DATA_ENV, str(tmp_path / "env"))
    assert real_smollm2.data_root(RowContext(tmp_path, False, {})) == tmp_path / "env"
    given = RowContext(tmp_path, False, {}, {"data_root": str(tmp_path / "flag")})
    assert real_smollm2.data_root(given) == tmp_path / "flag"


def test_cli_writes_untestable_real_rows_with_the_model_mark(tmp_path, capsys):
    from alignlab.cli import main

    out = tmp_path / "claims"
    assert main(["claims", "--rows", "steering_smollm2,sea_smollm2", "--data", str(tmp_path / "none"),
                 "--out", str(out)]) == 0
    data = json.loads((out / "claims.json").read_text())
    assert [(r["key"], r["verdict"], r["error"]) for r in data["rows"]] == \
        [("steering_smollm2", "untestable here", ""), ("sea_smollm2", "untestable here", "")]
    assert all("public data absent" in r["reason"] for r in data["rows"])
    md = (out / "CLAIMS.md").read_text()
    assert "| paper | model | claim |" in md and md.count("| SmolLM2-135M |") == 2 and "Model: SmolLM2-135M." in md
    assert "SmolLM2-135M" in capsys.readouterr().out


def test_table_marks_the_model_of_each_row():
    from alignlab.claims.report import table_rows

    def outcome(key):
        return RowOutcome(ClaimRow(key, "p", "c", (), measure=lambda ctx, s: SeedResult({})), [], [])

    assert [r["model"] for r in table_rows([outcome("sea"), outcome("sea_smollm2")])] == [BUILT_IN, "SmolLM2-135M"]


class ChatTok:
    """The least a chat template does: wrap the user turn in role markers."""

    def apply_chat_template(self, messages, tokenize=False, add_generation_prompt=True):
        return "".join(f"<|{m['role']}|>{m['content']}\n" for m in messages) + ("<|assistant|>" if add_generation_prompt else "")


def test_context_levels_are_aligned_and_grow():
    from alignlab.claims.rows.steering import BASE, HARDER
    from alignlab.claims.rows.steering_smollm2 import context_levels, passages

    text = "\n\n".join(["short", "a" * 200, "b" * 300, "c" * 600, "d" * 160])
    pool = passages(text)
    assert pool == ["a" * 200, "b" * 300, "d" * 160]  # 150–500 characters only
    subjects = ["hotel", "museum"]
    levels = context_levels(ChatTok(), subjects, pool, seed=0)
    assert list(levels) == [BASE, *HARDER]
    for name, prompts in levels.items():
        assert len(prompts) == 2 and all(p.endswith(f"The {s} was") for p, s in zip(prompts, subjects)), name
    plain, three = levels["plain"][0], levels["distracted_3"][0]
    assert sum(p in three for p in pool) == 3 and not any(p in plain for p in pool)
    assert sum(p in levels["distracted_1"][0] for p in pool) == 1 and "neutral" in levels["instructed"][0]
    for name in ("plain", "instructed", "distracted_1", "distracted_3"):  # the three neutral example reviews
        assert levels[name][1].count("and the staff were polite.") == 3, name
    assert levels["multi_turn"][0].startswith("<|user|>First,")
    assert context_levels(ChatTok(), subjects, pool, seed=0) == levels  # seeded


def test_contrast_pairs_are_seeded_and_point_from_negative_to_positive():
    from alignlab.claims.rows import common
    from alignlab.claims.rows.steering_smollm2 import contrast_pairs

    pairs = contrast_pairs(12, seed=1)
    assert pairs == contrast_pairs(12, seed=1) and pairs != contrast_pairs(12, seed=2)
    for p in pairs:
        assert p.prompt.endswith(" was") and common.gold([p.positive])[0] > 0 > common.gold([p.negative])[0]


def test_hh_pairs_split_is_seeded_and_disjoint():
    from alignlab.claims.rows.cal_dpo_smollm2 import split_pairs

    rows = [{"chosen": f"c{i}", "rejected": f"r{i}"} for i in range(20)]
    train, held = split_pairs(rows, 8, 5, seed=0)
    assert len(train) == 8 and len(held) == 5 and not {r["chosen"] for r in train} & {r["chosen"] for r in held}
    assert split_pairs(rows, 8, 5, seed=0) == (train, held) and split_pairs(rows, 8, 5, seed=1)[0] != train
