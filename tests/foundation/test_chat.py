import pytest

from alignlab.data.chat import collate, encode_chat, encode_pair
from alignlab.errors import DataError

MSGS = [
    {"role": "user", "content": "how was the food ?"},
    {"role": "assistant", "content": "the food was great ."},
    {"role": "user", "content": "why ?"},
    {"role": "assistant", "content": "the staff were kind ."},
]


def test_loss_only_on_assistant_turns(tiny):
    _, tok = tiny
    enc = encode_chat(tok, MSGS)
    trained = tok.decode([t for t, m in zip(enc.input_ids, enc.loss_mask) if m])
    assert trained == "the food was great .<|end|>the staff were kind .<|end|>"
    assert tok.decode(enc.input_ids) == tok.apply_chat_template(MSGS, tokenize=False)


def test_pair_masks_only_the_response(tiny):
    _, tok = tiny
    enc = encode_pair(tok, MSGS[:1], "the food was great .")
    assert tok.decode([t for t, m in zip(enc.input_ids, enc.loss_mask) if m]) == "the food was great .<|end|>"
    plain = encode_pair(tok, "review : the food was", " great .")
    assert tok.decode([t for t, m in zip(plain.input_ids, plain.loss_mask) if m]) == " great .<|end|>"


def test_truncation_is_flagged_and_errors_are_clear(tiny):
    _, tok = tiny
    enc = encode_chat(tok, MSGS, max_length=5)
    assert enc.truncated and len(enc.input_ids) == 5
    with pytest.raises(DataError, match="response is empty"):
        encode_pair(tok, "hi", "  ")
    batch = collate([encode_chat(tok, MSGS), encode_chat(tok, MSGS[:2])], tok.pad_token_id)
    assert batch["input_ids"].shape == batch["loss_mask"].shape
    assert batch["attention_mask"][1].sum() < batch["attention_mask"][0].sum()


def test_read_prompts_jsonl_text_and_errors(tmp_path):
    import json

    import pytest

    from alignlab.data.chat import read_prompts
    from alignlab.errors import ConfigError, DataError

    msgs = [{"role": "user", "content": "hi"}]
    jl = tmp_path / "p.jsonl"
    jl.write_text(json.dumps({"prompt": "a review :"}) + "\n\n" + json.dumps({"prompt": msgs}) + "\n")
    assert read_prompts(jl, "prompts", "testbed:reviews") == ["a review :", msgs]
    txt = tmp_path / "p.txt"
    txt.write_text("one\n\n two \n")
    assert read_prompts(txt, "prompts", "testbed:reviews") == ["one", " two "]
    jl.write_text(json.dumps({"prompt": "ok"}) + "\n" + json.dumps({"prompt": ""}) + "\n")
    with pytest.raises(DataError, match=r"p\.jsonl:2: prompt is empty"):
        read_prompts(jl, "prompts", "testbed:reviews")
    with pytest.raises(ConfigError, match="queries: '.*nope' is neither 'testbed' nor a file"):
        read_prompts(tmp_path / "nope", "queries", "testbed")
    (tmp_path / "empty.txt").write_text("\n")
    with pytest.raises(DataError, match="no prompts"):
        read_prompts(tmp_path / "empty.txt", "prompts", "testbed:reviews")
