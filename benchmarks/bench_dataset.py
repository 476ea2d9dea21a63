"""Benchmark of ``create_training_dataset`` against a bare RDataFrame Snapshot.

Writes the toy (signal, background_1, background_2; ``--events`` per process, 1M by
default) into a temporary folder, then times, in the same run and on the same files:

* ``create_training_dataset``: cut, weight, k-fold split, class trees, merge, verify;
* the reference: one bare ``RDataFrame(...).Snapshot`` of every process file, all
  branches, no cut and no folds (the three run together with ``RunGraphs``, as the
  dataset step runs its processes together).

Both are warmed up first on a tiny toy so that the timings exclude ROOT's start-up and
the just-in-time compilation of the expressions. Usage::

    python benchmarks/bench_dataset.py [--events N] [--folds K] [--repeat R]
"""

from __future__ import annotations

import argparse
import logging
import shutil
import tempfile
import time
from pathlib import Path

import yaml

PROCESSES = ("signal", "background_1", "background_2")


def dataset_config(toy_dir: Path, out_dir: Path, folds: int) -> Path:
    """The toy's usual dataset config: one class per process, a loose cut, the weights."""
    doc = {
        "base_path": str(toy_dir),
        "output_path": str(out_dir),
        "output_filename": "training_dataset.root",
        "tree_path": "ntuple",
        "event_branch": "event",
        "training_weight_branch": "training_weight",
        "folds": folds,
        "processes": {
            name: {
                "files": [f"example_{name}.root"],
                "cut_string": "(x > -3.0)",
                "weight_string": "(weights)",
                "class": name,
            }
            for name in PROCESSES
        },
    }
    path = out_dir.parent / f"{out_dir.name}.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


def time_dataset(toy_dir: Path, work: Path, folds: int) -> float:
    from htt_tmva.config import load_dataset_config
    from htt_tmva.data.dataset import create_training_dataset

    out = work / "folds"
    shutil.rmtree(out, ignore_errors=True)
    config = load_dataset_config(dataset_config(toy_dir, out, folds))
    start = time.perf_counter()
    create_training_dataset(config)
    return time.perf_counter() - start


def time_reference(toy_dir: Path, work: Path) -> float:
    from htt_tmva._root import root

    ROOT = root()
    out = work / "reference"
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    start = time.perf_counter()
    options = ROOT.RDF.RSnapshotOptions()
    options.fLazy = True
    frames, snapshots = [], []
    for name in PROCESSES:
        df = ROOT.RDataFrame("ntuple", str(toy_dir / f"example_{name}.root"))
        frames.append(df)
        columns = ROOT.std.vector["std::string"](list(df.GetColumnNames()))
        snapshots.append(df.Snapshot("ntuple", str(out / f"{name}.root"), columns, options))
    ROOT.RDF.RunGraphs(snapshots)
    return time.perf_counter() - start


def size_mb(folder: Path) -> float:
    return sum(p.stat().st_size for p in folder.glob("*.root")) / 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=1_000_000, help="events per process")
    parser.add_argument("--folds", type=int, default=2)
    parser.add_argument("--repeat", type=int, default=1, help="timed runs; the best is shown")
    parser.add_argument("--seed", type=int, default=1234)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)

    from htt_tmva._root import root
    from htt_tmva.data.toy import write_toy_dataset

    root()
    with tempfile.TemporaryDirectory(prefix="bench_dataset_") as tmp:
        tmp = Path(tmp)
        warm = tmp / "warm"
        write_toy_dataset(warm / "toy", events=1000, seed=1)
        time_dataset(warm / "toy", warm, args.folds)
        time_reference(warm / "toy", warm)

        start = time.perf_counter()
        write_toy_dataset(tmp / "toy", events=args.events, seed=args.seed)
        toy_seconds = time.perf_counter() - start
        n_in = args.events * len(PROCESSES)
        print(
            f"toy: {args.events:,} events per process ({n_in:,} in {len(PROCESSES)} files, "
            f"{size_mb(tmp / 'toy'):.1f} MB incl. data) written in {toy_seconds:.2f} s"
        )

        dataset_times, reference_times = [], []
        for _ in range(args.repeat):
            reference_times.append(time_reference(tmp / "toy", tmp))
            dataset_times.append(time_dataset(tmp / "toy", tmp, args.folds))
        dataset, reference = min(dataset_times), min(reference_times)

        print(
            f"reference  bare RDataFrame Snapshot (all branches, no cut/folds): "
            f"{reference:7.3f} s  {n_in / reference:12,.0f} events/s  "
            f"({size_mb(tmp / 'reference'):.1f} MB)"
        )
        print(
            f"dataset    create_training_dataset ({args.folds} folds, cut, weight, merge): "
            f"{dataset:7.3f} s  {n_in / dataset:12,.0f} events/s  "
            f"({size_mb(tmp / 'folds'):.1f} MB)"
        )
        print(f"ratio      dataset time / reference time: {dataset / reference:.2f}")


if __name__ == "__main__":
    main()
