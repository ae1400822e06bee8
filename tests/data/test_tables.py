"""Every input form a recipe's `data=` accepts (JSONL, JSON, CSV, parquet, a save_to_disk folder,
a hub-layout folder) reads the same rows and trains the same run; columns map; bad rows are named."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from alignlab.data.tables import ColumnMap, read_rows
from alignlab.errors import DataError
from alignlab.runs import read_metrics

datasets = pytest.importorskip("datasets")

SFT_ROWS = [{"messages": [{"role": "user", "content": f"count to {i}"},
                          {"role": "assistant", "content": " ".join(str(k) for k in range(i + 1))}]} for i in range(8)]
PREF_ROWS = [{"prompt": f"rate film {i}", "chosen": f"film {i} was great", "rejected": f"film {i} was dull"}
             for i in range(12)]
FORMS = ("jsonl", "json", "csv", "parquet", "save_to_disk", "hub")


def write_form(rows: list[dict], form: str, folder: Path) -> Path:
    """`rows` written as one input form under `folder`; returns what `data=` names."""
    folder.mkdir(parents=True, exist_ok=True)
    if form == "jsonl":
        (p := folder / "d.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    elif form == "json":
        (p := folder / "d.json").write_text(json.dumps({"data": rows}))
    elif form == "csv":
        p = folder / "d.csv"
        with open(p, "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=list(rows[0]))
            w.writeheader()
            w.writerows({k: json.dumps(v) if isinstance(v, list) else v for k, v in r.items()} for r in rows)
    elif form == "parquet":
        datasets.Dataset.from_list(rows).to_parquet(p := folder / "d.parquet")
    elif form == "save_to_disk":
        datasets.Dataset.from_list(rows).save_to_disk(p := folder / "saved")
    else:  # the Hub's layout: data/<split>-NNNNN-of-NNNNN.parquet
        p = folder / "hub"
        (p / "data").mkdir(parents=True)
        datasets.Dataset.from_list(rows).to_parquet(p / "data" / "train-00000-of-00001.parquet")
        datasets.Dataset.from_list(rows[:2]).to_parquet(p / "data" / "test-00000-of-00001.parquet")
    return p


@pytest.mark.parametrize("form", FORMS)
def test_every_form_reads_the_rows_of_the_jsonl_file(form, tmp_path):
    for rows in (SFT_ROWS, PREF_ROWS):
        got = read_rows(write_form(rows, form, tmp_path / form / str(len(rows))))
        assert [r for _, r in got] == rows
    where = [w for w, _ in got]
    assert where[1].endswith(":2" if form == "jsonl" else ":row 2")


def test_a_hub_folder_reads_the_split_asked_for(tmp_path):
    hub = write_form(PREF_ROWS, "hub", tmp_path)
    assert [r for _, r in read_rows(hub, split="test")] == PREF_ROWS[:2]
    with pytest.raises(DataError, match=r"hub: not a readable dataset folder for split 'dev'"):
        read_rows(hub, split="dev")
    saved = tmp_path / "dict"
    datasets.DatasetDict({"train": datasets.Dataset.from_list(PREF_ROWS)}).save_to_disk(saved)
    with pytest.raises(DataError, match=r"no split 'test' \(splits: \['train'\]\)"):
        read_rows(saved, split="test")


def test_columns_map_onto_the_fields_and_a_missing_column_names_the_row(tmp_path):
    renamed = [{"question": r["prompt"], "good": r["chosen"], "bad": r["rejected"]} for r in PREF_ROWS]
    p = write_form(renamed, "csv", tmp_path)
    cols = ColumnMap(prompt="question", chosen="good", rejected="bad")
    assert [r for _, r in read_rows(p, cols)] == PREF_ROWS
    with pytest.raises(DataError, match=r"d\.csv:row 1: no column 'query' \(data_columns\.prompt\)"):
        read_rows(p, ColumnMap(prompt="query"))


def test_unreadable_tables_are_data_errors_naming_the_file_or_row(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text('{"rows": []}')
    with pytest.raises(DataError, match=r"bad\.json: a \.json data file must hold a list"):
        read_rows(bad)
    bad.write_text('[{"prompt": "a"}, 3]')
    with pytest.raises(DataError, match=r"bad\.json:row 2: each row must be an object"):
        read_rows(bad)
    pq = tmp_path / "bad.parquet"
    pq.write_text("not parquet")
    with pytest.raises(DataError, match=r"bad\.parquet: not a readable parquet file"):
        read_rows(pq)
    cells = tmp_path / "bad.csv"
    cells.write_text('messages\n"[{""role"": ""user""\n')
    with pytest.raises(DataError, match=r"bad\.csv:row 1: 'messages' must be JSON in a CSV cell"):
        read_rows(cells)
    with pytest.raises(DataError, match="data file not found"):
        read_rows(tmp_path / "missing.parquet")


def _train(recipe: str, tiny_dir: Path, data: Path, out: Path, *extra: str) -> list[float]:
    from alignlab.cli import main

    code = main([recipe, f"model.name_or_path={tiny_dir}", f"data={data}", "train.batch_size=4", "train.max_steps=2",
                 "train.save_every=0", "train.log_every=1", "train.progress=false", *extra, "--out", str(out)])
    assert code == 0
    return [r["loss"] for r in read_metrics(out / "metrics.jsonl") if "loss" in r]


@pytest.mark.parametrize("recipe, rows", [("sft", SFT_ROWS), ("prefs", PREF_ROWS)], ids=["sft", "prefs"])
def test_sft_and_prefs_train_the_same_two_steps_from_every_form(recipe, rows, tiny_dir, tmp_path):
    losses = {form: _train(recipe, tiny_dir, write_form(rows, form, tmp_path / form), tmp_path / f"run-{form}")
              for form in FORMS}
    assert len(losses["jsonl"]) == 2
    assert all(v == losses["jsonl"] for v in losses.values()), losses


def test_prefs_trains_from_mapped_columns_and_names_a_bad_row(tiny_dir, tmp_path, capsys):
    renamed = [{"question": r["prompt"], "good": r["chosen"], "bad": r["rejected"]} for r in PREF_ROWS]
    mapped = _train("prefs", tiny_dir, write_form(renamed, "parquet", tmp_path / "m"), tmp_path / "run-m",
                    "data_columns.prompt=question", "data_columns.chosen=good", "data_columns.rejected=bad")
    plain = _train("prefs", tiny_dir, write_form(PREF_ROWS, "parquet", tmp_path / "p"), tmp_path / "run-p")
    assert mapped == plain
    from alignlab.cli import main

    rows = [*PREF_ROWS[:2], {**PREF_ROWS[2], "rejected": PREF_ROWS[2]["chosen"]}]
    data = write_form(rows, "csv", tmp_path / "bad")
    capsys.readouterr()
    assert main(["prefs", f"model.name_or_path={tiny_dir}", f"data={data}", "--out", str(tmp_path / "run-bad")]) == 2
    assert f"{data}:row 3: 'chosen' and 'rejected' are identical" in capsys.readouterr().err


def test_reading_jsonl_csv_or_json_does_not_import_datasets(tmp_path):
    import subprocess
    import sys

    paths = [write_form(PREF_ROWS, form, tmp_path / form) for form in ("jsonl", "json", "csv")]
    code = ("import sys; from alignlab.data.tables import read_rows; import alignlab.recipes.prefs, alignlab.recipes.sft\n"
            f"for p in {[str(p) for p in paths]!r}: read_rows(p)\n"
            "print(sorted(m for m in ('datasets', 'pyarrow') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_prompt_files_in_every_table_form(tmp_path, tiny_dir):
    """PPO / PSLE prompts (`read_prompts`) also come from JSON, CSV, parquet and dataset folders,
    with a `prompt` or `messages` column; a PPO run trains from a parquet prompts file."""
    import datasets
    import pyarrow as pa
    import pyarrow.parquet as pq

    from alignlab.cli import main
    from alignlab.data.chat import read_prompts

    texts = [f"review : the room {i} was" for i in range(12)]
    (tmp_path / "p.json").write_text(json.dumps([{"prompt": t} for t in texts]))
    (tmp_path / "p.csv").write_text("prompt\n" + "\n".join(texts) + "\n")
    pq.write_table(pa.Table.from_pylist([{"prompt": t} for t in texts]), tmp_path / "p.parquet")
    chat = [{"messages": [{"role": "user", "content": t}]} for t in texts[:2]]
    datasets.Dataset.from_list(chat).save_to_disk(str(tmp_path / "ds"))
    for name in ("p.json", "p.csv", "p.parquet"):
        assert read_prompts(tmp_path / name, "prompts", "testbed:reviews") == texts, name
    assert read_prompts(tmp_path / "ds", "prompts", "testbed:reviews") == [c["messages"] for c in chat]
    out = tmp_path / "ppo"
    rc = main(["ppo", f"model.name_or_path={tiny_dir}", f"prompts={tmp_path / 'p.parquet'}", "reward=gold:sentiment",
               "ppo.iterations=1", "ppo.rollout_batch=8", "ppo.epochs=1", "train.batch_size=8", "eval.every=1",
               "eval.n_prompts=4", "generation.max_new_tokens=4", "train.progress=false", "--out", str(out)])
    assert rc == 0 and (out / "final").exists()


def test_steering_pairs_and_embedding_rows_from_table_forms(tmp_path):
    """steer's contrast pairs (and SEA demos, through the same reader) and embed's rows read the
    table forms too; a row without a field is named."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from alignlab.errors import DataError
    from alignlab.resolve import contrast_pairs

    rows = [{"prompt": f"review {i} :", "positive": " great", "negative": " awful"} for i in range(3)]
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "pairs.parquet")
    got = contrast_pairs(str(tmp_path / "pairs.parquet"))
    assert [(p.prompt, p.positive, p.negative) for p in got] == [(r["prompt"], " great", " awful") for r in rows]
    (tmp_path / "bad.csv").write_text("prompt,positive\nx,y\n")
    with pytest.raises(DataError, match=r"bad.csv:row 1: needs string field\(s\) \['negative'\]"):
        contrast_pairs(str(tmp_path / "bad.csv"))
