"""Progress bars on a terminal only (not in logs, batch jobs or with -q), and TensorFlow's
start-up lines only with -v."""

from __future__ import annotations

import os
import pty
import subprocess
import sys
from pathlib import Path

from conftest import dataset_document, write_yaml

ROOT_DIR = Path(__file__).resolve().parents[1]


def run_command(args: list[str], terminal: bool, cwd: Path) -> str:
    """Run ``python -m htt_tmva ARGS``; stderr on a pseudo-terminal or a pipe; its text."""
    env = {**os.environ, "PYTHONPATH": f"{ROOT_DIR}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    command = [sys.executable, "-m", "htt_tmva", *args]
    if not terminal:
        done = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True)
        assert done.returncode == 0, done.stderr
        return done.stderr
    main, secondary = pty.openpty()
    process = subprocess.Popen(
        command, cwd=cwd, env=env, stdout=subprocess.DEVNULL, stderr=secondary
    )
    os.close(secondary)
    chunks = []
    while True:
        try:
            data = os.read(main, 65536)
        except OSError:  # the terminal closes when the process ends
            break
        if not data:
            break
        chunks.append(data)
    os.close(main)
    assert process.wait() == 0
    return b"".join(chunks).decode(errors="replace")


def test_dataset_shows_progress_on_a_terminal_only(tmp_path, toy_dir):
    config = write_yaml(tmp_path / "dataset.yaml", dataset_document(toy_dir, tmp_path / "out"))
    on_terminal = run_command(["dataset", str(config)], terminal=True, cwd=tmp_path)
    assert "dataset" in on_terminal and "100%" in on_terminal
    assert "9000/9000" in on_terminal and "events" in on_terminal and "left" in on_terminal
    quiet = run_command(["-q", "dataset", str(config)], terminal=True, cwd=tmp_path)
    in_log = run_command(["dataset", str(config)], terminal=False, cwd=tmp_path)
    for text in (quiet, in_log):
        assert "100%" not in text and "events/s" not in text and "\r" not in text
    assert "wrote" in in_log  # the log itself is still there


def tensorflow_import_stderr(verbose: int) -> str:
    code = (
        "from htt_tmva.cli import _setup_logging\n"
        f"_setup_logging({verbose}, False)\n"
        "from htt_tmva.engines.keras import import_keras\n"
        "keras = import_keras()\n"
        "keras.ops.convert_to_numpy(keras.ops.ones(3) + 1)\n"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT_DIR)}
    env.pop("TF_CPP_MIN_LOG_LEVEL", None)
    done = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    )
    return done.stderr


def test_tensorflow_start_up_lines_reach_the_terminal_only_with_v():
    quiet = tensorflow_import_stderr(verbose=0)
    assert "oneDNN" not in quiet and "absl" not in quiet and "I0000" not in quiet, quiet
    verbose = tensorflow_import_stderr(verbose=1)
    assert "htt_tmva.tensorflow" in verbose and "oneDNN" in verbose


def test_tracked_yields_every_item_and_stays_silent_without_a_terminal(capsys):
    from htt_tmva._progress import tracked

    items = list(tracked(iter([(0, 5), (5, 9)]), 9, "scoring", lambda c: c[0]))
    assert items == [(0, 5), (5, 9)]
    assert capsys.readouterr().err == ""
