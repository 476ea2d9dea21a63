"""Benchmark of ``htt-tmva apply --executor dask`` (a local Dask cluster of two workers,
distributed RDataFrame) against the local one-pass run, whole commands, same input.

Trains a small BDT on the toy, writes a toy-like ntuple of ``--events`` entries (default
5 M), and times, each on a fresh copy of the ntuple, ``apply --output`` locally and with
``--executor dask --workers 2``; prints wall and CPU time (of the command and its
children: the Dask workers are child processes) and events per second. Usage::

    python benchmarks/bench_dask.py [--events 5000000] [--repeat 1] [--work DIR]
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_apply import MAKE_NTUPLE  # noqa: E402

CLASSES = ("signal", "background_1", "background_2")


def htt_tmva() -> list[str]:
    return [sys.executable, "-m", "htt_tmva", "-q"]


def run(command: list[str]) -> tuple[float, float]:
    """Wall and CPU seconds (user + system, children included) of a command."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu


def write(path: Path, doc: dict) -> Path:
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


def configs(work: Path) -> list[Path]:
    toy = work / "toy"
    subprocess.run([*htt_tmva(), "toy", str(toy), "--events", "5000"], check=True)
    processes = {
        c: {"files": [f"example_{c}.root"], "cut_string": "(x > -3.0)",
            "weight_string": "(weights)", "class": c}
        for c in CLASSES
    }  # fmt: skip
    dataset = write(
        work / "dataset.yaml",
        {"base_path": str(toy), "output_path": str(toy), "output_filename": "td.root",
         "tree_path": "ntuple", "event_branch": "event",
         "training_weight_branch": "training_weight", "processes": processes},
    )  # fmt: skip
    subprocess.run([*htt_tmva(), "dataset", str(dataset)], check=True)
    training = write(
        work / "training.yaml",
        {"datasets": [str(toy / f"fold{i}_td.root") for i in range(2)],
         "output_path": str(work / "models"), "classes": list(CLASSES),
         "event_weights": "training_weight", "variables": ["x", "y"], "engine": "bdt",
         "model": {"name": "example", "batch_size": 256, "epochs": 1},
         "bdt": {"NTrees": 200, "MaxDepth": 3}},
    )  # fmt: skip
    subprocess.run([*htt_tmva(), "train", str(training), "--all-folds"], check=True)
    app = write(
        work / "application.yaml",
        {"classifiers": ["fold1_bdt_model.json", "fold0_bdt_model.json"], "branch_prefix": "b_"},
    )
    return [dataset, training, app]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=5_000_000)
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--work", type=Path, default=None)
    args = parser.parse_args()
    work = args.work or Path(tempfile.mkdtemp(prefix="bench_dask_"))
    work.mkdir(parents=True, exist_ok=True)
    print(f"work folder {work}; load average {os.getloadavg()[0]:.1f}", flush=True)
    files = configs(work)
    ntuple = work / "ntuple.root"
    subprocess.run([sys.executable, "-c", MAKE_NTUPLE, str(ntuple), str(args.events)], check=True)
    copy, out = work / "input.root", work / "out.root"
    commands = {
        "local (one pass)": ["--compile"],
        "dask, 2 workers": ["--executor", "dask", "--workers", "2"],
    }
    best: dict[str, tuple[float, float]] = {}
    for _ in range(args.repeat):
        for label, extra in commands.items():
            shutil.copyfile(ntuple, copy)
            out.unlink(missing_ok=True)
            command = [*htt_tmva(), "apply", *map(str, files), str(copy), "ntuple"]
            wall, cpu = run([*command, "--output", str(out), *extra])
            if wall < best.get(label, (float("inf"), 0.0))[0]:
                best[label] = (wall, cpu)
    print(f"\n{'command':<20}{'events':>10}{'wall s':>9}{'CPU s':>9}{'events/s':>12}")
    for label, (wall, cpu) in best.items():
        print(f"{label:<20}{args.events:>10}{wall:>9.1f}{cpu:>9.1f}{args.events / wall:>12.0f}")
    if args.work is None:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
