"""Every bad input is a located error through the real CLI: exit code 2, one `alignlab: error:`
line naming the file:line, the config key or the model path, no traceback, no input overwritten.

One test per kind of input that used to end in a traceback (or a silent wrong result)."""

from __future__ import annotations

import builtins
import errno
import gzip
import io
import json
import os
import shutil
from pathlib import Path

import pytest

from alignlab.cli import main

SFT_ROWS = [{"prompt": f"review {i} :", "response": "the room was great ."} for i in range(4)]
PREF_ROWS = [{"prompt": f"review {i} :", "chosen": "great .", "rejected": "awful ."} for i in range(4)]
QUICK = ["train.progress=false", "train.save_every=0", "train.log_every=1", "train.max_steps=1",
         "train.batch_size=2", "max_length=32"]


def cli(capsys, *argv: str) -> tuple[int, str]:
    """(exit code, stderr) of `alignlab ARGV`; a traceback in stderr fails the test."""
    code = main([str(a) for a in argv])
    err = capsys.readouterr().err
    assert "Traceback" not in err, err
    return code, err


def write_jsonl(path: Path, rows: list[dict], bad_line: bytes | None = None, at: int = 2) -> Path:
    """Rows as JSONL; `bad_line` replaces line `at` (1-based) with raw bytes."""
    lines = [json.dumps(r).encode() for r in rows]
    if bad_line is not None:
        lines[at - 1] = bad_line
    data = b"\n".join(lines) + b"\n"
    path.write_bytes(gzip.compress(data) if path.suffix == ".gz" else data)
    return path


def sft(capsys, model: Path | str, data: Path, out: Path, *extra: str) -> tuple[int, str]:
    return cli(capsys, "sft", f"model.name_or_path={model}", f"data={data}", "--out", out, *QUICK, *extra)


@pytest.fixture
def model_copy(tiny_dir, tmp_path) -> Path:
    """A private copy of the tiny model folder, to break."""
    dest = tmp_path / "model"
    shutil.copytree(tiny_dir, dest, ignore=shutil.ignore_patterns("pretrain"))
    return dest


# --- data files ------------------------------------------------------------------------------


def test_non_utf8_sft_data_names_file_and_line(tiny_dir, tmp_path, capsys):
    data = write_jsonl(tmp_path / "sft.jsonl", SFT_ROWS, b'{"prompt": "caf\xe9", "response": "x"}', at=3)
    code, err = sft(capsys, tiny_dir, data, tmp_path / "run")
    assert code == 2 and f"{data}:3: not UTF-8" in err and err.startswith("alignlab: error:")


def test_non_utf8_preference_data_names_file_and_line(tiny_dir, tmp_path, capsys):
    data = write_jsonl(tmp_path / "prefs.jsonl", PREF_ROWS, b'{"prompt": "\xff\xfe", "chosen": "a", "rejected": "b"}')
    code, err = cli(capsys, "prefs", f"model.name_or_path={tiny_dir}", f"data={data}", "--out", tmp_path / "run")
    assert code == 2 and f"{data}:2: not UTF-8" in err


def test_non_utf8_ppo_prompts_name_file_and_line(tiny_dir, tmp_path, capsys):
    prompts = tmp_path / "prompts.txt"
    prompts.write_bytes(b"review one :\nreview two :\nreview \xe9 three :\nreview four :\n")
    code, err = cli(capsys, "ppo", f"model.name_or_path={tiny_dir}", f"prompts={prompts}", "reward=gold:sentiment",
                    "eval.n_prompts=1", "--out", tmp_path / "run")
    assert code == 2 and f"{prompts}:3: not UTF-8" in err


def test_non_utf8_psle_queries_name_file_and_line(tiny_dir, tmp_path, capsys):
    queries = write_jsonl(tmp_path / "queries.jsonl", [{"prompt": f"review {i} :"} for i in range(4)],
                          b'{"prompt": "\xc3\x28"}', at=4)
    code, err = cli(capsys, "psle", f"model.name_or_path={tiny_dir}", f"queries={queries}", "reward=gold:sentiment",
                    "principle=be kind", "eval_queries=1", "--out", tmp_path / "run")
    assert code == 2 and f"{queries}:4: not UTF-8" in err


def test_truncated_and_corrupt_gzip_name_the_file(tiny_dir, tmp_path, capsys):
    whole = gzip.compress(b"\n".join(json.dumps(r).encode() for r in SFT_ROWS * 200))
    cut = tmp_path / "cut.jsonl.gz"
    cut.write_bytes(whole[: len(whole) // 2])
    code, err = sft(capsys, tiny_dir, cut, tmp_path / "run")
    assert code == 2 and f"{cut}: corrupt or truncated gzip" in err
    flipped = tmp_path / "flipped.jsonl.gz"
    flipped.write_bytes(whole[:12] + bytes(b ^ 0xFF for b in whole[12:40]) + whole[40:])
    code, err = sft(capsys, tiny_dir, flipped, tmp_path / "run")
    assert code == 2 and f"{flipped}: corrupt or truncated gzip" in err


def test_deeply_nested_json_names_file_and_line(tiny_dir, tmp_path, capsys):
    deep = b'{"prompt": ' + b"[" * 200_000 + b"]" * 200_000 + b"}"
    data = write_jsonl(tmp_path / "prefs.jsonl", PREF_ROWS, deep, at=2)
    code, err = cli(capsys, "prefs", f"model.name_or_path={tiny_dir}", f"data={data}", "--out", tmp_path / "run")
    assert code == 2 and f"{data}:2: JSON nested too deeply" in err


def test_empty_data_file_is_an_error(tiny_dir, tmp_path, capsys):
    data = tmp_path / "empty.jsonl"
    data.write_text("\n")
    code, err = sft(capsys, tiny_dir, data, tmp_path / "run")
    assert code == 2 and f"{data}: no examples" in err


# --- config files and values -----------------------------------------------------------------


@pytest.mark.parametrize("content", [bytes(range(256)) * 4, b"train:\n  lr: 0.1  # caf\xe9\n", b"- a\n- b\n",
                                     b"a: " + b"[" * 100_000])
def test_binary_or_non_mapping_config_file_names_the_file(tmp_path, capsys, content):
    cfg = tmp_path / "config.yaml"
    cfg.write_bytes(content)
    code, err = cli(capsys, "sft", "-c", cfg)
    assert code == 2 and f"{cfg}" in err


@pytest.mark.parametrize(("override", "named"), [
    ("train.batch_size=0", "train.batch_size: must be >= 1"),
    ("train.grad_accum=0", "train.grad_accum: must be >= 1"),
    ("train.grad_accum=-1", "train.grad_accum: must be >= 1"),
    ("train.log_every=0", "train.log_every: must be >= 1"),
    ("train.epochs=0", "train.epochs: must be >= 1"),
    ("train.lr=0", "train.lr: must be > 0"),
    ("train.lr=nan", "train.lr: must be a finite number"),
    ("train.lr=.inf", "train.lr: must be a finite number"),
    ("train.max_grad_norm=-1", "train.max_grad_norm: must be >= 0"),
    ("train.warmup_steps=-5", "train.warmup_steps: must be >= 0"),
    ("train.keep_checkpoints=-1", "train.keep_checkpoints: must be >= 0"),
    ("train.max_steps=0", "train.max_steps: must be >= 1 or -1"),
    ("train.mixed_precision=fp17", "train.mixed_precision: 'fp17' is not one of ['no', 'bf16', 'fp16']"),
    ("model.lora.r=0", "model.lora.r: must be >= 1"),
])
def test_out_of_range_option_names_the_key_before_anything_is_written(tiny_dir, tmp_path, capsys, override, named):
    data = write_jsonl(tmp_path / "sft.jsonl", SFT_ROWS)
    out = tmp_path / "run"
    code, err = sft(capsys, tiny_dir, data, out, override)
    assert code == 2 and named in err
    assert not out.exists()  # epochs=0 used to "train" and save the base model


# --- model folders ---------------------------------------------------------------------------


def test_corrupt_safetensors_header_names_the_file(model_copy, tmp_path, capsys):
    weights = model_copy / "model.safetensors"
    weights.write_bytes(b"\xff" * 8 + weights.read_bytes()[8:])
    code, err = sft(capsys, model_copy, write_jsonl(tmp_path / "sft.jsonl", SFT_ROWS), tmp_path / "run")
    assert code == 2 and f"{weights}: corrupt safetensors" in err


@pytest.mark.parametrize(("breakage", "named"), [
    ("missing", "has no tokenizer files"),
    ("corrupt", "tokenizer.json: not valid JSON"),
])
def test_missing_or_corrupt_tokenizer_names_the_folder(model_copy, tmp_path, capsys, breakage, named):
    if breakage == "missing":
        for name in ("tokenizer.json", "tokenizer_config.json"):
            (model_copy / name).unlink()
    else:
        (model_copy / "tokenizer.json").write_text('{"version": "1.0", "model": ')
    code, err = sft(capsys, model_copy, write_jsonl(tmp_path / "sft.jsonl", SFT_ROWS), tmp_path / "run")
    assert code == 2 and str(model_copy) in err and named in err


def test_folder_that_is_not_a_model_names_it(tmp_path, capsys):
    folder = tmp_path / "not-a-model"
    folder.mkdir()
    (folder / "notes.txt").write_text("hello")
    code, err = sft(capsys, folder, write_jsonl(tmp_path / "sft.jsonl", SFT_ROWS), tmp_path / "run")
    assert code == 2 and f"{folder}" in err and "config.json" in err


@pytest.mark.parametrize("recipe", ["sft", "prefs"])
def test_chat_data_without_chat_template_names_file_and_line(model_copy, tmp_path, capsys, recipe):
    (model_copy / "chat_template.jinja").unlink()
    chat = [{"role": "user", "content": "review :"}]
    rows = ([{"prompt": "review :", "response": "ok ."}, {"prompt": chat, "response": "ok ."}] if recipe == "sft"
            else [{"prompt": "review :", "chosen": "a .", "rejected": "b ."}, {"prompt": chat, "chosen": "a .", "rejected": "b ."}])
    data = write_jsonl(tmp_path / "chat.jsonl", rows * 2)
    argv = [recipe, f"model.name_or_path={model_copy}", f"data={data}", "--out", tmp_path / "run"]
    code, err = cli(capsys, *argv, *(QUICK if recipe == "sft" else []))
    assert code == 2 and f"{data}:2:" in err and "has no chat template" in err


# --- writing: disk full, read-only run dir ---------------------------------------------------


class FullDiskFile:
    """A file opened for writing on a full disk: it opens, every write fails with ENOSPC."""

    def __init__(self, handle):
        self._handle = handle

    def write(self, data):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    def __getattr__(self, name):
        return getattr(self._handle, name)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self._handle.close()


def test_disk_full_while_writing_the_run_is_a_clean_error(tiny_dir, tmp_path, capsys, monkeypatch):
    out = tmp_path / "run"
    real_open = io.open

    def full_disk_open(file, mode="r", *args, **kwargs):
        handle = real_open(file, mode, *args, **kwargs)
        writing = isinstance(file, (str, os.PathLike)) and str(file).startswith(str(out)) and set(mode) & set("wax+")
        return FullDiskFile(handle) if writing else handle

    monkeypatch.setattr(io, "open", full_disk_open)
    monkeypatch.setattr(builtins, "open", full_disk_open)
    code, err = sft(capsys, tiny_dir, write_jsonl(tmp_path / "sft.jsonl", SFT_ROWS), out)
    assert code == 2 and "No space left on device" in err and "disk is full" in err and str(out) in err


def test_read_only_or_unusable_run_dir_is_a_clean_error(tiny_dir, tmp_path, capsys, monkeypatch):
    data = write_jsonl(tmp_path / "sft.jsonl", SFT_ROWS)
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    code, err = sft(capsys, tiny_dir, data, blocker / "run")
    assert code == 2 and f"{blocker}" in err and "Not a directory" in err

    read_only = tmp_path / "read-only"
    real_mkdir = Path.mkdir

    def mkdir(self, *args, **kwargs):  # as on a read-only mount (root ignores chmod 0555)
        if str(self).startswith(str(read_only)):
            raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(self))
        return real_mkdir(self, *args, **kwargs)

    monkeypatch.setattr(Path, "mkdir", mkdir)
    code, err = sft(capsys, tiny_dir, data, read_only / "run")
    assert code == 2 and f"{read_only}" in err and "read-only" in err.lower()


# --- data export -----------------------------------------------------------------------------


def _oasst_rows(n: int) -> list[dict]:
    common = {"review_result": True, "lang": "en", "tree_state": "ready_for_export"}
    rows = []
    for i in range(n):
        rows += [{"message_id": f"r{i}", "parent_id": None, "role": "prompter", "text": f"q {i}", **common},
                 {"message_id": f"a{i}", "parent_id": f"r{i}", "role": "assistant", "text": "a", "rank": 0, **common}]
    return rows


@pytest.mark.parametrize("how", ["same", "relative", "symlink"])
def test_export_onto_its_own_input_is_refused(tmp_path, capsys, monkeypatch, how):
    src = write_jsonl(tmp_path / "trees.jsonl", _oasst_rows(3))
    before = src.read_bytes()
    out = {"same": src, "relative": Path("sub/../trees.jsonl"), "symlink": tmp_path / "link.jsonl"}[how]
    if how == "relative":
        (tmp_path / "sub").mkdir()
        monkeypatch.chdir(tmp_path)
    if how == "symlink":
        out.symlink_to(src)
    code, err = cli(capsys, "data", "export", src, "--mode", "sft", "--out", out)
    assert code == 2 and "is the input file" in err
    assert src.read_bytes() == before


def test_export_of_empty_file_or_without_records_says_why(tmp_path, capsys):
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    out = tmp_path / "out.jsonl"
    code, err = cli(capsys, "data", "export", empty, "--mode", "sft", "--out", out)
    assert code == 2 and f"{empty}: no rows" in err and not out.exists()
    src = write_jsonl(tmp_path / "trees.jsonl", _oasst_rows(3))
    code, err = cli(capsys, "data", "export", src, "--mode", "rm", "--out", out, "--lang", "de")
    assert code == 2 and "no rm records" in err and "3 removed: 3 by the language filter" in err
    code, err = cli(capsys, "data", "export", src, "--mode", "rm", "--out", out)
    assert code == 2 and "kept trees have no rm example" in err and not out.exists()
    assert cli(capsys, "data", "export", empty, "--mode", "sft", "--out", out, "--allow-empty")[0] == 0
