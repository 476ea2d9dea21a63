"""The htt-tmva command: help without heavy imports, exit status and one-line errors."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import uproot
from conftest import dataset_document, write_yaml

from htt_tmva.cli import build_parser, main

SUBCOMMANDS = ["toy", "dataset", "train", "confusion", "apply", "export"]
SCRIPT = Path(sys.executable).with_name("htt-tmva")


def run(*args: str, cwd: Path | None = None, timeout: float = 120) -> subprocess.CompletedProcess:
    """Run ``python -m htt_tmva ARGS`` in a fresh interpreter."""
    return subprocess.run(
        [sys.executable, "-m", "htt_tmva", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=timeout,
    )


def error_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.strip()]


def test_console_script_help_lists_every_subcommand():
    if not SCRIPT.exists():
        pytest.skip("htt-tmva console script not installed next to this python")
    result = subprocess.run([str(SCRIPT), "--help"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("usage: htt-tmva")
    for command in SUBCOMMANDS:
        assert command in result.stdout


def test_python_dash_m_help_works():
    result = run("--help")
    assert result.returncode == 0, result.stderr
    assert "usage: htt-tmva" in result.stdout
    for command in SUBCOMMANDS:
        assert command in result.stdout


def test_version_is_printed():
    from htt_tmva import __version__

    result = run("--version")
    assert result.returncode == 0
    assert __version__ in result.stdout


@pytest.mark.parametrize("command", SUBCOMMANDS)
def test_subcommand_help_exits_zero_and_describes_arguments(command, capsys):
    with pytest.raises(SystemExit) as info:
        main([command, "--help"])
    assert info.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith(f"usage: htt-tmva {command}")


def test_help_of_every_subcommand_imports_neither_root_nor_tensorflow():
    code = f"""
import sys
import htt_tmva.cli
parser = htt_tmva.cli.build_parser()
for args in [["--help"]] + [[c, "--help"] for c in {SUBCOMMANDS!r}]:
    try:
        parser.parse_args(args)
    except SystemExit as exc:
        assert exc.code == 0, args
heavy = ("ROOT", "cppyy", "tensorflow", "keras", "xgboost", "onnx", "onnxruntime")
heavy = [m for m in heavy if m in sys.modules]
print("HEAVY", heavy)
"""
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert "HEAVY []" in result.stdout


def test_toy_subcommand_help_states_the_defaults(capsys):
    with pytest.raises(SystemExit):
        build_parser().parse_args(["toy", "--help"])
    out = capsys.readouterr().out
    assert "--events" in out and "--seed" in out and "OUTPUT_DIR" in out


def test_missing_subcommand_is_a_usage_error(capsys):
    with pytest.raises(SystemExit) as info:
        main([])
    assert info.value.code == 2


def test_train_without_fold_or_all_folds_is_a_usage_error(tmp_path, capsys):
    with pytest.raises(SystemExit) as info:
        main(["train", str(tmp_path / "training.yaml")])
    assert info.value.code == 2
    assert "--all-folds" in capsys.readouterr().err


def test_htt_tmva_error_returns_status_1_in_process(tmp_path, caplog):
    status = main(["dataset", str(tmp_path / "missing.yaml")])
    assert status == 1
    assert "missing.yaml" in caplog.text and "does not exist" in caplog.text


def test_config_error_gives_status_1_and_one_line_without_traceback(tmp_path):
    result = run("dataset", str(tmp_path / "missing.yaml"))
    assert result.returncode == 1
    lines = error_lines(result.stderr)
    assert len(lines) == 1, result.stderr
    assert "missing.yaml" in lines[0] and "does not exist" in lines[0]
    assert "Traceback" not in result.stderr


def test_invalid_toy_events_give_status_1_and_one_line(tmp_path):
    result = run("toy", str(tmp_path / "toy"), "--events", "0")
    assert result.returncode == 1
    lines = error_lines(result.stderr)
    assert len(lines) == 1 and "positive" in lines[0], result.stderr
    assert not (tmp_path / "toy").exists()


@pytest.mark.slow
def test_toy_and_dataset_commands_build_the_folds_end_to_end(tmp_path):
    toy = tmp_path / "toy"
    result = run("-q", "toy", str(toy), "--events", "400", "--seed", "5")
    assert result.returncode == 0, result.stderr
    files = sorted(p.name for p in toy.iterdir())
    assert files == sorted(
        f"example_{n}.root" for n in ("signal", "background_1", "background_2", "data")
    )
    with uproot.open(toy / "example_signal.root") as f:
        assert f["ntuple"].num_entries == 400

    # relative paths in the config resolve against the working directory, not its folder
    config_dir = tmp_path / "configs"
    config_dir.mkdir()
    config = write_yaml(
        config_dir / "dataset.yaml", dataset_document(Path("toy"), Path("folds"), folds=3)
    )
    result = run("-q", "dataset", "configs/dataset.yaml", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert config.is_file()
    folds = tmp_path / "folds"
    for fold in range(3):
        with uproot.open(folds / f"fold{fold}_training_dataset.root") as f:
            events = f["signal"]["event"].array(library="np")
            assert len(events) > 0 and np.all(events % 3 == fold)


def test_dataset_expression_error_gives_status_1_and_one_line(tmp_path, toy_dir):
    """The grammar refuses the cut when the config is read: one line naming the key."""
    doc = dataset_document(toy_dir, tmp_path / "out")
    doc["processes"]["signal"]["cut_string"] = "(x > ) && y"
    config = write_yaml(tmp_path / "dataset.yaml", doc)
    result = run("dataset", str(config))
    assert result.returncode == 1
    lines = error_lines(result.stderr)
    assert len(lines) == 1, result.stderr
    assert "processes.signal.cut_string" in lines[0] and "unexpected ')'" in lines[0]
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


@pytest.mark.parametrize(
    "flags, shown, hidden",
    [
        ([], ["INFO htt_tmva"], ["DEBUG"]),
        (["-v"], ["INFO htt_tmva", "DEBUG htt_tmva: htt-tmva "], []),
        (["-q"], [], ["INFO", "DEBUG"]),
    ],
    ids=["default", "verbose", "quiet"],
)
def test_verbosity_flags_set_the_log_level(tmp_path, flags, shown, hidden):
    command = [sys.executable, "-m", "htt_tmva", *flags, "toy", str(tmp_path), "--events", "50"]
    result = subprocess.run(command, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    for text in shown:
        assert text in result.stderr
    for text in hidden:
        assert text not in result.stderr
    assert (tmp_path / "example_signal.root").is_file()
