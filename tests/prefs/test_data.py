"""Reading, validating, tokenizing and collating preference / ranking data."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from alignlab.data.preference import (
    parse_hh,
    read_preferences,
    read_rankings,
    split_records,
    to_pairs,
)
from alignlab.data.preference_batches import (
    EncodedPair,
    collate_pairs,
    encode_pairs,
    encode_rankings,
)
from alignlab.errors import DataError
from alignlab.models import load_tokenizer


def write(tmp_path: Path, rows: list, name: str = "d.jsonl") -> Path:
    p = tmp_path / name
    p.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return p


@pytest.fixture(scope="module")
def tok(tiny_dir):
    return load_tokenizer(str(tiny_dir))


def test_every_row_shape_is_read(tmp_path):
    msgs = [{"role": "user", "content": "how was the food ?"}]
    rows = [
        {"prompt": "review : the food was", "chosen": " great .", "rejected": " bad ."},
        {"prompt": msgs, "chosen": [{"role": "assistant", "content": "good"}], "rejected": "bad"},
        {"chosen": "\n\nHuman: hi\n\nAssistant: hello\n\nHuman: food?\n\nAssistant: great",
         "rejected": "\n\nHuman: hi\n\nAssistant: hello\n\nHuman: food?\n\nAssistant: awful"},
        {"chosen": msgs + [{"role": "assistant", "content": "nice"}],
         "rejected": msgs + [{"role": "assistant", "content": "dull"}]},
        {"prompt": msgs, "replies": ["a", "b", "c"], "ranks": [0, 1, 2], "tree_id": "t1"},
    ]
    pairs, report = read_preferences(write(tmp_path, rows))
    assert report.skipped == []
    assert len(pairs) == 4 + 3  # the 3-reply ranking gives 3 pairs
    hh = pairs[2]
    assert hh.prompt == [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"},
                         {"role": "user", "content": "food?"}]
    assert (hh.chosen, hh.rejected) == ("great", "awful")
    assert pairs[1].chosen == "good"
    assert [(p.chosen, p.rejected) for p in pairs[4:]] == [("a", "b"), ("a", "c"), ("b", "c")]
    assert pairs[4].group == "t1"


def test_pairing_modes(tmp_path):
    recs, _ = read_rankings(write(tmp_path, [{"prompt": "q", "replies": ["a", "b", "c", "d"]}]))
    assert len(to_pairs(recs, "all")) == 6
    assert [(p.chosen, p.rejected) for p in to_pairs(recs, "best_vs_rest")] == [("a", "b"), ("a", "c"), ("a", "d")]
    assert [(p.chosen, p.rejected) for p in to_pairs(recs, "best_vs_worst")] == [("a", "d")]


@pytest.mark.parametrize("row, message", [
    ({"prompt": "q", "chosen": "a"}, r"missing field\(s\) \['rejected'\]"),
    ({"prompt": "q", "chosen": "", "rejected": "b"}, "'chosen' is empty"),
    ({"prompt": "  ", "chosen": "a", "rejected": "b"}, "'prompt' is empty"),
    ({"prompt": "q", "chosen": "a", "rejected": "a"}, "identical"),
    ({"prompt": [{"role": "robot", "content": "x"}], "chosen": "a", "rejected": "b"}, "unknown role"),
    ({"prompt": "q", "replies": ["a"]}, "at least 2"),
    ({"prompt": "q", "replies": ["a", "b"], "ranks": [0, 0]}, "same rank"),
    ({"chosen": "\n\nHuman: hi\n\nAssistant: ", "rejected": "\n\nHuman: hi\n\nAssistant: no"}, "empty assistant"),
    ({"chosen": "\n\nHuman: a\n\nAssistant: x", "rejected": "\n\nHuman: b\n\nAssistant: y"}, "differ before"),
])
def test_bad_rows_name_file_and_line(tmp_path, row, message):
    path = write(tmp_path, [{"prompt": "q", "chosen": "a", "rejected": "b"}, row])
    with pytest.raises(DataError, match=message) as e:
        read_preferences(path)
    assert f"{path}:2" in str(e.value)


def test_skip_mode_counts_and_reports(tmp_path):
    rows = [{"prompt": "q", "chosen": "a", "rejected": "b"}, {"prompt": "q", "chosen": "", "rejected": "b"},
            {"prompt": "q2", "chosen": "c", "rejected": "d"}]
    pairs, report = read_preferences(write(tmp_path, rows), on_bad="skip")
    assert len(pairs) == 2 and len(report.skipped) == 1
    assert report.skipped[0][0].endswith(":2") and "1 skipped" in report.summary()


def test_bad_json_line(tmp_path):
    p = tmp_path / "bad.jsonl"
    p.write_text('{"prompt": "q", "chosen": "a", "rejected": "b"}\n{not json\n')
    with pytest.raises(DataError, match=r"bad.jsonl:2"):
        read_preferences(p)


def test_parse_hh_rejects_plain_text():
    with pytest.raises(DataError, match="not an HH-RLHF dialogue"):
        parse_hh("just text", "f:1", "chosen")


def test_split_keeps_groups_together(tmp_path):
    rows = [{"prompt": f"q{i % 10}", "chosen": f"a{i}", "rejected": f"b{i}"} for i in range(200)]
    pairs, _ = read_preferences(write(tmp_path, rows))
    train, val = split_records(pairs, 0.3, seed=1)
    assert train and val and len(train) + len(val) == 200
    assert not {p.group for p in train} & {p.group for p in val}


def test_truncation_is_counted_or_an_error(tok, tmp_path):
    long = " ".join(["the food was great ."] * 40)
    rows = [{"prompt": "review : " + long, "chosen": " good .", "rejected": " bad ."},
            {"prompt": "review :", "chosen": long, "rejected": " bad ."},
            {"prompt": "review :", "chosen": " fine .", "rejected": " bad ."}]
    pairs, _ = read_preferences(write(tmp_path, rows))
    items, stats = encode_pairs(tok, pairs, max_length=32, max_prompt_length=16)
    assert stats.prompt_truncated == 1 and stats.response_truncated == 1 and stats.total == 3
    assert "response truncated in 1" in stats.report()
    for e in items:
        assert len(e.prompt_ids) + max(len(e.chosen_ids), len(e.rejected_ids)) <= 32
        assert e.prompt_ids and e.chosen_ids and e.rejected_ids
    # the prompt keeps its end (the part next to the response)
    full_prompt = tok(rows[0]["prompt"], add_special_tokens=False)["input_ids"]
    assert items[0].prompt_ids == full_prompt[-len(items[0].prompt_ids):]
    with pytest.raises(DataError, match=r"d.jsonl:1.*exceeds max_length 32"):
        encode_pairs(tok, pairs, max_length=32, max_prompt_length=16, truncation="error")
    ranked, rstats = encode_rankings(tok, [r for r in read_rankings(write(tmp_path, rows))[0]], max_length=32)
    assert rstats.prompt_truncated == 2 and all(len(s) <= 32 for e in ranked for s in e.sequences)
    # a truncated RM sequence keeps its final (scored) token
    assert ranked[1].sequences[0][-1] == tok.eos_token_id


def test_chat_prompts_use_the_template(tok):
    from alignlab.data.preference import PreferenceRecord

    rec = PreferenceRecord([{"role": "user", "content": "how was the food ?"}], "great .", "bad .", "x:1", "g")
    (item,), _ = encode_pairs(tok, [rec], 128, 64)
    full = tok.apply_chat_template([{"role": "user", "content": "how was the food ?"},
                                    {"role": "assistant", "content": "great ."}], tokenize=True, return_dict=False)
    assert item.prompt_ids + item.chosen_ids == list(full)
    assert item.chosen_ids[-1] == tok.convert_tokens_to_ids("<|end|>")


def test_collate_aligns_responses():
    a = EncodedPair([5, 6, 7], [8, 9], [10], ref_chosen=-1.0, ref_rejected=-2.0)
    b = EncodedPair([5], [11], [12, 13, 14], ref_chosen=-3.0, ref_rejected=-4.0)
    batch = collate_pairs([a, b], pad_id=0)
    assert batch["prompt_len"] == 3
    assert batch["input_ids"].tolist() == [[5, 6, 7, 8, 9, 0], [0, 0, 5, 11, 0, 0],
                                           [5, 6, 7, 10, 0, 0], [0, 0, 5, 12, 13, 14]]
    assert batch["position_ids"][1].tolist()[2:4] == [0, 1]
    assert batch["response_mask"].tolist() == [[1, 1, 0], [1, 0, 0], [1, 0, 0], [1, 1, 1]]
    assert batch["ref_logps"].tolist() == [-1.0, -3.0, -2.0, -4.0]


def test_hh_file_reads_with_counted_skips(shared_data):
    path = shared_data / "preference" / "hh-rlhf_harmless-base_test.jsonl.gz"
    with pytest.raises(DataError, match=r":87: 'chosen' ends with an empty assistant turn"):
        read_preferences(path)
    pairs, report = read_preferences(path, on_bad="skip")
    assert len(pairs) + len(report.skipped) == 2312 and 0 < len(report.skipped) < 20


def test_rank_share_pads_every_rank_to_the_same_count():
    from alignlab.recipes.prefs import rank_share

    assert rank_share(5, 2, 0) == ([0, 2, 4], 3)
    assert rank_share(5, 2, 1) == ([1, 3, 0], 2)
    assert rank_share(1, 3, 2) == ([0], 0)
    assert rank_share(0, 2, 1) == ([], 0)
    assert rank_share(4, 1, 0) == ([0, 1, 2, 3], 4)
