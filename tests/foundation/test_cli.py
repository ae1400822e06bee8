import subprocess
import sys

from alignlab.cli import build_parser, main


def test_help_lists_subcommands():
    text = build_parser().format_help()
    for cmd in ("demo", "testbed", "sft"):
        assert cmd in text


def test_bad_config_key_exits_2_with_message(tmp_path, capsys):
    code = main(["sft", "train.lrr=1"])
    assert code == 2
    assert "command line: unknown key 'train.lrr' (did you mean 'train.lr'?)" in capsys.readouterr().err


def test_missing_data_file_exits_2(tmp_path, capsys):
    code = main(["sft", "model.name_or_path=testbed:tiny", f"data={tmp_path / 'none.jsonl'}", f"output_dir={tmp_path}"])
    assert code == 2
    assert "not found" in capsys.readouterr().err


def test_console_entry_point_runs():
    out = subprocess.run([sys.executable, "-m", "alignlab.cli", "--help"], capture_output=True, text=True)
    assert out.returncode == 0 and "testbed" in out.stdout
