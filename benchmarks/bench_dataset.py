"""Benchmark of the dataset step: whole ``htt-tmva dataset`` commands against the classic
algorithm, and ``create_training_dataset`` against a bare RDataFrame Snapshot.

Inputs (written to a temporary folder): ``--processes`` toy processes (4 by default: signal,
background_1, background_2 and a second draw of background_1) of ``--events`` each (1 M by
default), tree ``ntuple`` with x, y, weights and a float ``event`` branch; a dataset config
with the classic keys in which background_2 and the fourth process form one class; 2 folds.

1. Whole commands, start-up included (Python, ROOT import): ``python -m htt_tmva -q dataset
   CONFIG`` against ``classic_dataset_reference.py CONFIG`` (the classic 2017 algorithm, by
   default from ../shared/bench next to the repository, or ``--classic``). Each runs once
   untimed first (page cache, nothing else is kept between commands), then ``--repeat``
   times, alternating; medians of wall time and of CPU time (user + system of the child)
   are printed. The fold files of both are compared (same events, same order, same
   weights).
2. In one process: ``create_training_dataset`` against one bare ``RDataFrame(...).Snapshot``
   of every process file (all branches, no cut, no folds, run together with ``RunGraphs``).
   A warm-up on a tiny toy loads ROOT's libraries and our compiled loop first; every timed
   run still compiles its own cut and weight functions (ours) or its Snapshot graph (the
   reference), as a real run does. The best of ``--repeat`` runs is shown.

Usage::

    python benchmarks/bench_dataset.py [--events N] [--repeat R] [--skip-commands]
"""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import yaml

CLASSIC = Path(__file__).resolve().parents[2] / "shared" / "bench" / "classic_dataset_reference.py"
CLASSES = {
    "signal": "signal",
    "background_1": "background_1",
    "background_2": "background_2",
    "background_3": "background_2",
}


def write_inputs(folder: Path, events: int, processes: int, seed: int = 1) -> list[str]:
    """The toy processes with a float event branch; the fourth is background_1 drawn again."""
    from htt_tmva.data.toy import PROCESSES, draw_process, write_tree

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    names = list(CLASSES)[:processes]
    for name, process in zip(names, [*PROCESSES, PROCESSES[1]]):
        columns = draw_process(process, events, rng)
        columns["event"] = columns["event"].astype(np.float32)
        write_tree(folder / f"{name}.root", columns)
    return names


def write_config(path: Path, names: list[str], inputs: str, outputs: str) -> Path:
    """A dataset config with the classic keys only; paths relative to the folder of the config,
    from which both commands run (so both rules for relative paths agree)."""
    doc = {
        "base_path": inputs,
        "output_path": outputs,
        "output_filename": "training_dataset.root",
        "tree_path": "ntuple",
        "event_branch": "event",
        "training_weight_branch": "training_weight",
        "processes": {
            name: {
                "files": [f"{name}.root"],
                "cut_string": "(x > -3.0)",
                "weight_string": "(weights)",
                "class": CLASSES[name],
            }
            for name in names
        },
    }
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    (path.parent / outputs).mkdir(exist_ok=True)
    return path


def timed_command(command: list[str], cwd: Path) -> tuple[float, float, float]:
    """Wall seconds, CPU seconds (user + system) and peak memory (MB, resident) of a command."""
    start = time.perf_counter()
    child = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=cwd)
    _, status, usage = os.wait4(child.pid, 0)
    wall = time.perf_counter() - start
    child.returncode = os.waitstatus_to_exitcode(status)
    if child.returncode != 0:
        raise subprocess.CalledProcessError(child.returncode, command)
    return wall, usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024


def same_folds(ours: Path, classic: Path, classes: list[str]) -> bool:
    """Same events in the same order and the same weights in every fold and class tree."""
    import uproot

    for fold in (0, 1):
        name = f"fold{fold}_training_dataset.root"
        with uproot.open(ours / name) as a, uproot.open(classic / name) as b:
            for cls in classes:
                x, y = a[cls].arrays(library="np"), b[cls].arrays(library="np")
                for branch in ("event", "x", "y", "weights", "training_weight"):
                    if not np.array_equal(x[branch], y[branch]):
                        return False
    return True


def compare_commands(work: Path, names: list[str], repeat: int, classic: Path) -> None:
    python = sys.executable
    env_path = str(Path(__file__).resolve().parents[1])
    os.environ["PYTHONPATH"] = env_path + os.pathsep + os.environ.get("PYTHONPATH", "")
    ours_config = write_config(work / "ours.yaml", names, "inputs", "ours")
    classic_config = write_config(work / "classic.yaml", names, "inputs", "classic")
    commands = {
        "htt-tmva dataset": [python, "-m", "htt_tmva", "-q", "dataset", str(ours_config)],
        "classic algorithm": [python, str(classic), str(classic_config)],
    }
    times: dict[str, list[tuple[float, float, float]]] = {k: [] for k in commands}
    for command in commands.values():  # untimed first run of each
        timed_command(command, work)
    for _ in range(repeat):
        for label, command in commands.items():
            times[label].append(timed_command(command, work))
    medians = {}
    for label, runs in times.items():
        wall = statistics.median(r[0] for r in runs)
        cpu = statistics.median(r[1] for r in runs)
        memory = max(r[2] for r in runs)
        medians[label] = wall
        walls = " ".join(f"{r[0]:.2f}" for r in runs)
        print(
            f"{label:18s} median wall {wall:6.2f} s  median CPU {cpu:6.2f} s  "
            f"peak memory {memory:5.0f} MB  (walls: {walls})"
        )
    ratio = medians["htt-tmva dataset"] / medians["classic algorithm"]
    print(f"ratio      htt-tmva dataset / classic algorithm (median wall): {ratio:.2f}")
    classes = list(dict.fromkeys(CLASSES[n] for n in names))
    same = same_folds(work / "ours", work / "classic", classes)
    print(f"same events, order and weights as the classic algorithm: {'yes' if same else 'NO'}")
    print(f"load average (1, 5, 15 min): {' '.join(f'{x:.1f}' for x in os.getloadavg())}")


def time_dataset(config_path: Path, out: Path) -> float:
    from htt_tmva.config import load_dataset_config
    from htt_tmva.data.dataset import create_training_dataset

    shutil.rmtree(out, ignore_errors=True)
    config = load_dataset_config(config_path)
    start = time.perf_counter()
    create_training_dataset(config)
    return time.perf_counter() - start


def time_reference(inputs: Path, names: list[str], out: Path) -> float:
    from htt_tmva._root import root

    ROOT = root()
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    start = time.perf_counter()
    options = ROOT.RDF.RSnapshotOptions()
    options.fLazy = True
    frames, snapshots = [], []
    for name in names:
        df = ROOT.RDataFrame("ntuple", str(inputs / f"{name}.root"))
        frames.append(df)
        columns = ROOT.std.vector["std::string"](list(df.GetColumnNames()))
        snapshots.append(df.Snapshot("ntuple", str(out / f"{name}.root"), columns, options))
    ROOT.RDF.RunGraphs(snapshots)
    return time.perf_counter() - start


def compare_in_process(work: Path, names: list[str], events: int, repeat: int) -> None:
    warm = work / "warm"
    write_inputs(warm / "inputs", 1000, len(names), seed=2)
    warm_config = write_config(
        warm / "dataset.yaml", names, str(warm / "inputs"), str(warm / "folds")
    )
    time_dataset(warm_config, warm / "folds")
    time_reference(warm / "inputs", names, warm / "reference")
    config = write_config(
        work / "inprocess.yaml", names, str(work / "inputs"), str(work / "inprocess")
    )
    dataset_times, reference_times = [], []
    for _ in range(repeat):
        reference_times.append(time_reference(work / "inputs", names, work / "reference"))
        dataset_times.append(time_dataset(config, work / "inprocess"))
    dataset, reference = min(dataset_times), min(reference_times)
    n_in = events * len(names)
    print(
        f"reference  bare RDataFrame Snapshot (all branches, no cut/folds): "
        f"{reference:7.3f} s  {n_in / reference:12,.0f} events/s"
    )
    print(
        f"dataset    create_training_dataset (2 folds, cut, weight, class trees): "
        f"{dataset:7.3f} s  {n_in / dataset:12,.0f} events/s"
    )
    print(f"ratio      dataset time / reference time: {dataset / reference:.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=1_000_000, help="events per process")
    parser.add_argument("--processes", type=int, default=4, choices=(2, 3, 4))
    parser.add_argument("--repeat", type=int, default=3, help="timed runs of each")
    parser.add_argument("--classic", type=Path, default=CLASSIC, help="classic reference script")
    parser.add_argument("--skip-commands", action="store_true", help="in-process part only")
    parser.add_argument("--write-inputs", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    if args.write_inputs:
        write_inputs(args.write_inputs, args.events, args.processes)
        return

    with tempfile.TemporaryDirectory(prefix="bench_dataset_") as tmp:
        work = Path(tmp)
        # In a child process: this one stays without ROOT until the commands are timed, so
        # that the peak memory of each command (inherited across fork) is its own.
        subprocess.run(
            [
                sys.executable,
                __file__,
                "--write-inputs",
                str(work / "inputs"),
                "--events",
                str(args.events),
                "--processes",
                str(args.processes),
            ],
            check=True,
        )
        names = list(CLASSES)[: args.processes]
        print(
            f"inputs: {len(names)} processes x {args.events:,} events (float event branch), "
            f"classes {sorted(set(CLASSES[n] for n in names))}, 2 folds"
        )
        if not args.skip_commands:
            if args.classic.is_file():
                compare_commands(work, names, args.repeat, args.classic)
            else:
                print(f"classic reference {args.classic} not found: command comparison skipped")
        compare_in_process(work, names, args.events, args.repeat)


if __name__ == "__main__":
    main()
