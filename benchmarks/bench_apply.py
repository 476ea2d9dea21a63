"""Benchmark of ``htt-tmva apply`` against a bare RDataFrame Snapshot (the I/O limit).

Trains small models on the toy first (``htt-tmva toy``, ``dataset``, ``train``: the Keras
``example`` and ``smhtt`` networks for a few epochs, a BDT with few trees), writes a
toy-like ntuple (x, y, weights, event) of each size, and times whole commands as
subprocesses, start-up included, each on a fresh copy of the ntuple:

* (a) a bare RDataFrame Snapshot of the same output columns with no model: the original
  branches plus as many new float columns as the application writes, defined as trivial
  expressions, single-threaded, with the input file's compression;
* (b) ``htt-tmva apply`` in place with the Keras ``example`` model (the default: one pass,
  the models compiled to C++, scoring threads ahead of the writing loop);
* (c) the same with ``smhtt``;
* (d) the same with the BDT;
* (e), (f), (g): the three models with ``--no-compile`` (the Python path: two passes,
  batched inference).

The compiled library of each model is built before the timed runs (it is cached by content
and CPU; the first run of a model on a machine compiles it once).

For every command it prints the wall time, events per second, the ratio to (a), the CPU
time (user + system of the child process and the children it waited for, from
``os.wait4``) with the cores it used on average (CPU / wall), the CPU ratio to (a), and the
peak memory (max RSS). The application uses a second core (its scoring threads, or the Python
path's two passes at the same time) while (a) uses one thread: compare the CPU columns as well
as the wall times. Usage::

    python benchmarks/bench_apply.py [--events 3000000] [--repeat 3] [--work DIR]
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

CLASSES = ("signal", "background_1", "background_2")
N_NEW = len(CLASSES) + 2  # scores per class, max_score, max_index

BARE_SNAPSHOT = """
import sys
import ROOT
ROOT.gROOT.SetBatch(True)
source, target, n_new = sys.argv[1], sys.argv[2], int(sys.argv[3])
tfile = ROOT.TFile.Open(source)
settings = tfile.GetCompressionSettings()
columns = [b.GetName() for b in tfile.Get("ntuple").GetListOfBranches()]
tfile.Close()
frame = ROOT.RDataFrame("ntuple", source)
for i in range(n_new):
    frame = frame.Define(f"new_{i}", f"x * {i + 1}.5f + y")
options = ROOT.RDF.RSnapshotOptions()
options.fCompressionAlgorithm = ROOT.RCompressionSetting.EAlgorithm.EValues(settings // 100)
options.fCompressionLevel = settings % 100
frame.Snapshot("ntuple", target, columns + [f"new_{i}" for i in range(n_new)], options)
"""

MAKE_NTUPLE = """
import sys
import ROOT
ROOT.gROOT.SetBatch(True)
target, n = sys.argv[1], int(sys.argv[2])
ROOT.gRandom.SetSeed(1)
frame = (ROOT.RDataFrame(n)
         .Define("x", "float(gRandom->Gaus())")
         .Define("y", "float(gRandom->Gaus())")
         .Define("weights", "float(0.5 + gRandom->Uniform())")
         .Define("event", "ULong64_t(rdfentry_)"))
frame.Snapshot("ntuple", target, ["x", "y", "weights", "event"])
"""


def htt_tmva() -> list[str]:
    """The command line of ``htt-tmva`` (the installed script, else ``python -m``)."""
    script = shutil.which("htt-tmva")
    return [script] if script else [sys.executable, "-m", "htt_tmva.cli"]


def run(command: list[str], quiet: bool = True) -> tuple[float, float, float]:
    """Run a command; return (wall seconds, CPU seconds (user + sys), peak RSS in MB)."""
    start = time.perf_counter()
    out = subprocess.DEVNULL if quiet else None
    process = subprocess.Popen(command, stdout=out, stderr=subprocess.PIPE)
    stderr = process.stderr.read()
    _, status, usage = os.wait4(process.pid, 0)
    seconds = time.perf_counter() - start
    process.returncode = os.waitstatus_to_exitcode(status)
    if process.returncode:
        sys.exit(f"{' '.join(command)} failed:\n{stderr.decode()[-3000:]}")
    return seconds, usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024


def write(path: Path, doc: dict) -> Path:
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


def train_models(work: Path, labels=("example", "smhtt", "bdt")) -> dict[str, list[Path]]:
    """Toy, folds and small models (of ``labels``); return per model: dataset, training,
    application config."""
    toy = work / "toy"
    run([*htt_tmva(), "toy", str(toy), "--events", "5000"])
    dataset = write(
        work / "dataset.yaml",
        {
            "base_path": str(toy),
            "output_path": str(toy),
            "output_filename": "training_dataset.root",
            "tree_path": "ntuple",
            "event_branch": "event",
            "training_weight_branch": "training_weight",
            "processes": {
                c: {
                    "files": [f"example_{c}.root"],
                    "cut_string": "(x > -3.0)",
                    "weight_string": "(weights)",
                    "class": c,
                }
                for c in CLASSES
            },
        },
    )
    run([*htt_tmva(), "dataset", str(dataset)])
    configs = {}
    for label, engine, model in (
        ("example", "keras", "example"),
        ("smhtt", "keras", "smhtt"),
        ("bdt", "bdt", "example"),
    ):
        if label not in labels:
            continue
        output = work / f"models_{label}"
        training = write(
            work / f"training_{label}.yaml",
            {
                "datasets": [str(toy / f"fold{i}_training_dataset.root") for i in range(2)],
                "output_path": str(output),
                "classes": list(CLASSES),
                "class_weights": {"signal": 10.0, "background_1": 1.67, "background_2": 3.33},
                "event_weights": "training_weight",
                "variables": ["x", "y"],
                "engine": engine,
                "model": {"name": model, "batch_size": 256, "epochs": 2, "seed": 1},
                "bdt": {"NTrees": 200, "MaxDepth": 3},
            },
        )
        seconds, _, _ = run([*htt_tmva(), "train", str(training), "--all-folds", "--overwrite"])
        print(f"trained {label} ({engine}) in {seconds:.0f} s", flush=True)
        app = {"branch_prefix": f"{label}_", "engine": engine}
        if engine == "keras":
            app["classifiers"] = [f"fold{i}_keras_model_{model}.keras" for i in (1, 0)]
            app["preprocessing"] = [f"fold{i}_keras_preprocessing_{model}.json" for i in (1, 0)]
        else:
            app["classifiers"] = [f"fold{i}_bdt_model.json" for i in (1, 0)]
        configs[label] = [dataset, training, write(work / f"application_{label}.yaml", app)]
    return configs


def warm_up(configs: dict, work: Path) -> None:
    """Build each model's compiled library (cached) on a small ntuple, outside the timings."""
    small = work / "ntuple_small.root"
    if not small.exists():
        run([sys.executable, "-c", MAKE_NTUPLE, str(small), "1000"])
    for key, files in configs.items():
        friend = work / f"warm_{key}.root"
        run([*htt_tmva(), "apply", *map(str, files), str(small), "ntuple", "--friend", str(friend)])
    for leftover in work.glob("warm_*"):  # the friend files and their resolved configs
        leftover.unlink()


def measure(events: int, configs: dict, work: Path, repeat: int) -> list[tuple]:
    """Best-of-``repeat`` (wall seconds, CPU seconds of that run, peak MB) per command."""
    ntuple = work / f"ntuple_{events}.root"
    if not ntuple.exists():
        run([sys.executable, "-c", MAKE_NTUPLE, str(ntuple), str(events)])
    copy, target = work / "input.root", work / "bare.root"
    commands = {
        "(a) bare Snapshot": [
            sys.executable,
            "-c",
            BARE_SNAPSHOT,
            str(ntuple),
            str(target),
            str(N_NEW),
        ]
    }
    for label, key, extra in (
        ("(b) apply keras example", "example", []),
        ("(c) apply keras smhtt", "smhtt", []),
        ("(d) apply bdt", "bdt", []),
        ("(e) example, --no-compile", "example", ["--no-compile"]),
        ("(f) smhtt, --no-compile", "smhtt", ["--no-compile"]),
        ("(g) bdt, --no-compile", "bdt", ["--no-compile"]),
    ):
        commands[label] = [
            *htt_tmva(),
            "apply",
            *map(str, configs[key]),
            str(copy),
            "ntuple",
            *extra,
        ]
    warm_up(configs, work)
    best: dict[str, tuple[float, float, float]] = {}
    for _ in range(repeat):
        for label, command in commands.items():  # interleaved, so load changes hit all alike
            shutil.copyfile(ntuple, copy)
            seconds, cpu, peak = run(command)
            previous = best.get(label, (float("inf"), 0.0, 0.0))
            fastest = (seconds, cpu) if seconds < previous[0] else previous[:2]
            best[label] = (*fastest, max(previous[2], peak))
    reference, reference_cpu = best["(a) bare Snapshot"][:2]
    rows = [
        (events, label, s, events / s, reference / s, cpu, cpu / reference_cpu, mb)
        for label, (s, cpu, mb) in best.items()
    ]
    for path in (copy, target):
        path.unlink(missing_ok=True)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, nargs="+", default=[3_000_000])
    parser.add_argument("--repeat", type=int, default=3, help="runs per command (best is shown)")
    parser.add_argument("--work", type=Path, default=None, help="work folder (default: temporary)")
    args = parser.parse_args()
    work = args.work or Path(tempfile.mkdtemp(prefix="bench_apply_"))
    work.mkdir(parents=True, exist_ok=True)
    print(
        f"work folder {work}; load average {os.getloadavg()[0]:.1f}; {os.cpu_count()} cores",
        flush=True,
    )
    configs = train_models(work)
    rows = []
    for events in args.events:
        rows += measure(events, configs, work, args.repeat)
        print(f"measured {events} events; load average {os.getloadavg()[0]:.1f}", flush=True)
    print(
        f"\n{'events':>10}  {'command':<26}{'wall s':>8}{'events/s':>12}{'vs (a)':>8}"
        f"{'CPU s':>8}{'cores':>7}{'CPU/(a)':>9}{'peak MB':>9}"
    )
    for events, label, seconds, rate, ratio, cpu, cpu_ratio, mb in rows:
        print(
            f"{events:>10}  {label:<26}{seconds:>8.1f}{rate:>12.0f}{ratio:>8.2f}"
            f"{cpu:>8.1f}{cpu / seconds:>7.2f}{cpu_ratio:>9.2f}{mb:>9.0f}"
        )
    print(
        "vs (a): wall-time speed relative to (a) (> 1: faster); cores: CPU / wall; "
        "CPU/(a): CPU time relative to (a) (> 1: more CPU spent)"
    )
    if args.work is None:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
