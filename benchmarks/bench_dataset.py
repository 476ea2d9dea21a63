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

3. ``--analysis``: an analysis-shaped dataset (as the sm-htt-analysis configs of 2017/2018,
   generated): 35 files (DY, tt, VV, W, EWKZ, ggH, qqH, data, ...) of ~100 branches of mixed
   types (float, double, int, unsigned, bool, a uint64 event number), ``--events`` in all
   (2 M by default), and two configs of processes sharing them: 14 processes in 8 classes
   and 34 processes in 21 classes (STXS-style signal splits: a ggH file read by 16
   processes), with cuts and weight products as the analysis wrote them. Whole commands,
   as in 1, with the peak memory (max RSS) of each; the outputs are compared tree by tree.

Usage::

    python benchmarks/bench_dataset.py [--events N] [--repeat R] [--skip-commands]
    python benchmarks/bench_dataset.py --analysis [--events 2000000] [--repeat 1]
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


# --- the analysis-shaped dataset ----------------------------------------------------------------

SAMPLES = {  # sample -> files (35 in all)
    "DY": 6, "TT": 4, "VV": 3, "W": 4, "EWKZ": 2, "ggH": 3, "qqH": 2, "ST": 2, "data": 9,
}  # fmt: skip
_BACKGROUND = {  # process -> (sample, extra cut, class of the 8-class / 21-class config)
    "ZTT": ("DY", "gen_match_2 == 5", "ztt"),
    "ZL": ("DY", "gen_match_2 < 5", "zll"),
    "ZJ": ("DY", "gen_match_2 == 6", "zll"),
    "TTT": ("TT", "gen_match_2 == 5", "tt"),
    "TTL": ("TT", "gen_match_2 < 5", "tt"),
    "TTJ": ("TT", "gen_match_2 == 6", "tt"),
    "VVT": ("VV", "gen_match_2 == 5", "misc"),
    "VVJ": ("VV", "gen_match_2 == 6", "misc"),
    "VVL": ("VV", "gen_match_2 < 5", "misc"),
    "W": ("W", "1", "w"),
    "EWKZ": ("EWKZ", "1", "misc"),
    "ST": ("ST", "1", "misc"),
}
_WEIGHT = (
    "generatorWeight*puweight*idWeight_1*isoWeight_1*trackWeight_1*trigweight_1"
    "*eleTauFakeRateWeight*muTauFakeRateWeight*(sf_tau_2)*prefiringweight*lumi_scale"
)
_BASE_CUT = "(q_1*q_2<0)&&(pt_2>30)&&(iso_1<0.15)&&(mt_1<70)&&(byTightDeepTau_2>0.5)"
_SS_CUT = _BASE_CUT.replace("q_1*q_2<0", "q_1*q_2>0")  # data-driven QCD: same sign


def analysis_processes(classes: int) -> dict[str, tuple[str, str, str]]:
    """Processes (sample, cut, class) of the 8-class (14 processes) or 21-class config."""
    procs = {name: (s, c, cls) for name, (s, c, cls) in _BACKGROUND.items()}
    if classes == 8:
        procs = {n: v for n, v in procs.items() if n != "VVL"}
        procs.update(ggH=("ggH", "1", "ggh"), qqH=("qqH", "1", "qqh"))
        procs["QCD"] = ("data", "1", "ss")
        return procs
    for b in range(16):  # ggH stage-1 bins, merged into 9 classes
        procs[f"ggH_bin{b}"] = ("ggH", f"stxs_bin == {b}", f"ggh_{min(b // 2, 8)}")
    for b in range(6):  # qqH stage-1 bins, merged into 5 classes
        procs[f"qqH_bin{b}"] = ("qqH", f"stxs_bin == {b}", f"qqh_{min(b, 4)}")
    procs["QCD"] = ("data", "1", "ss")
    del procs["EWKZ"]
    return procs


def write_analysis_inputs(folder: Path, events: int, seed: int = 1) -> None:
    """35 files of ~100 branches of mixed types, ``events`` in all."""
    from htt_tmva._root import root

    ROOT = root()
    rng = np.random.default_rng(seed)
    files = [(s, i) for s, n in SAMPLES.items() for i in range(n)]
    per_file = events // len(files)
    first_event = 0
    for sample, i in files:
        n = per_file
        cols: dict[str, np.ndarray] = {
            "event": np.arange(first_event, first_event + n, dtype=np.uint64) * 3 + 7,
            "run": np.full(n, 1, dtype=np.uint32),
            "lumi": rng.integers(1, 2000, n).astype(np.uint32),
            "q_1": rng.choice([-1, 1], n).astype(np.int32),
            "q_2": rng.choice([-1, 1], n).astype(np.int32),
            "njets": rng.integers(0, 5, n).astype(np.int32),
            "nbtag": rng.integers(0, 3, n).astype(np.int32),
            "gen_match_2": rng.integers(1, 7, n).astype(np.int32),
            "stxs_bin": rng.integers(0, 16, n).astype(np.int32),
            "byTightDeepTau_2": (rng.random(n) < 0.8),
            "pt_1": rng.exponential(30, n).astype(np.float32) + 20,
            "pt_2": rng.exponential(30, n).astype(np.float32) + 25,
            "iso_1": rng.exponential(0.08, n).astype(np.float32),
            "mt_1": rng.exponential(40, n).astype(np.float32),
        }
        for w in ("generatorWeight", "puweight", "idWeight_1", "isoWeight_1", "trackWeight_1",
                  "trigweight_1", "eleTauFakeRateWeight", "muTauFakeRateWeight", "sf_tau_2",
                  "prefiringweight"):  # fmt: skip
            cols[w] = rng.normal(1.0, 0.05, n).astype(np.float32)
        cols["lumi_scale"] = np.full(n, 59.7, dtype=np.float64)
        for k in range(70):
            cols[f"var_{k}"] = rng.normal(k, 1 + k % 5, n).astype(np.float32)
        for k in range(8):
            cols[f"dvar_{k}"] = rng.normal(0, 1, n)
        df = ROOT.RDF.FromNumpy({k: np.ascontiguousarray(v) for k, v in cols.items()})
        (folder / sample).mkdir(parents=True, exist_ok=True)
        df.Snapshot("mt_nominal/ntuple", str(folder / sample / f"{sample}_{i}.root"), list(cols))
        first_event += n


def write_analysis_config(path: Path, classes: int, inputs: str, outputs: str) -> Path:
    processes = {}
    for name, (sample, cut, cls) in analysis_processes(classes).items():
        processes[name] = {
            "files": [f"{sample}/{sample}_{i}.root" for i in range(SAMPLES[sample])],
            "cut_string": (_SS_CUT if name == "QCD" else _BASE_CUT) + f"&&({cut})",
            "weight_string": _WEIGHT if sample != "data" else "1.0",
            "class": cls,
        }
    doc = {
        "base_path": inputs,
        "output_path": outputs,
        "output_filename": "training_dataset.root",
        "tree_path": "mt_nominal/ntuple",
        "event_branch": "event",
        "training_weight_branch": "training_weight",
        "processes": processes,
    }
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    (path.parent / outputs).mkdir(exist_ok=True)
    return path


def compare_outputs(ours: Path, classic: Path, classes: list[str]) -> str:
    """Same trees, entries, order and branches; the weight to float precision."""
    import uproot

    worst = 0.0
    for fold in (0, 1):
        name = f"fold{fold}_training_dataset.root"
        with uproot.open(ours / name) as a, uproot.open(classic / name) as b:
            for cls in classes:
                x, y = a[cls].arrays(library="np"), b[cls].arrays(library="np")
                if sorted(x) != sorted(y):
                    return f"NO (branches of {cls} differ)"
                for branch in x:
                    if branch == "training_weight":
                        scale = np.maximum(np.abs(y[branch]), 1e-30)
                        diff = np.abs(x[branch] - y[branch]) / scale
                        worst = max(worst, float(diff.max(initial=0.0)))
                    elif not np.array_equal(x[branch], y[branch]):
                        return f"NO ({cls}.{branch} differs)"
    return f"yes (training_weight: largest relative difference {worst:.2g})"


def compare_analysis(work: Path, repeat: int, classic: Path, events: int) -> None:
    python = sys.executable
    env_path = str(Path(__file__).resolve().parents[1])
    os.environ["PYTHONPATH"] = env_path + os.pathsep + os.environ.get("PYTHONPATH", "")
    for classes in (8, 21):
        procs = analysis_processes(classes)
        names = sorted(set(c for _, _, c in procs.values()))
        ours = write_analysis_config(work / f"ours{classes}.yaml", classes, "inputs", f"o{classes}")
        theirs = write_analysis_config(
            work / f"classic{classes}.yaml", classes, "inputs", f"c{classes}"
        )
        commands = {
            "htt-tmva dataset": [python, "-m", "htt_tmva", "-q", "dataset", str(ours)],
            "classic algorithm": [python, str(classic), str(theirs)],
        }
        reads = sum(SAMPLES[s] for s, _, _ in procs.values())
        print(
            f"{classes} classes, {len(procs)} processes, 35 files, {events:,} events "
            f"(the classic algorithm reads {reads} files x 2 folds)"
        )
        runs: dict[str, list] = {k: [] for k in commands}
        for _ in range(repeat):
            for label, command in commands.items():
                runs[label].append(timed_command(command, work))
        for label, rs in runs.items():
            wall, cpu = (statistics.median(r[i] for r in rs) for i in (0, 1))
            print(
                f"  {label:18s} median wall {wall:7.2f} s  CPU {cpu:7.2f} s"
                f"  peak memory (max RSS) {max(r[2] for r in rs):6.0f} MB"
            )
        ratio = statistics.median(r[0] for r in runs["htt-tmva dataset"]) / statistics.median(
            r[0] for r in runs["classic algorithm"]
        )
        print(f"  ratio htt-tmva / classic (wall): {ratio:.2f}   (target <= 0.35)")
        print(
            f"  same outputs: {compare_outputs(work / f'o{classes}', work / f'c{classes}', names)}"
        )
    print(f"load average (1, 5, 15 min): {' '.join(f'{x:.1f}' for x in os.getloadavg())}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=1_000_000, help="events per process")
    parser.add_argument("--processes", type=int, default=4, choices=(2, 3, 4))
    parser.add_argument("--repeat", type=int, default=3, help="timed runs of each")
    parser.add_argument("--classic", type=Path, default=CLASSIC, help="classic reference script")
    parser.add_argument("--skip-commands", action="store_true", help="in-process part only")
    parser.add_argument("--analysis", action="store_true", help="the analysis-shaped dataset")
    parser.add_argument("--write-analysis-inputs", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--write-inputs", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    if args.write_inputs:
        write_inputs(args.write_inputs, args.events, args.processes)
        return
    if args.write_analysis_inputs:
        write_analysis_inputs(args.write_analysis_inputs, args.events)
        return
    if args.analysis:
        events = args.events if args.events != 1_000_000 else 2_000_000
        with tempfile.TemporaryDirectory(prefix="bench_dataset_") as tmp:
            work = Path(tmp)
            start = time.perf_counter()
            subprocess.run(
                [sys.executable, __file__, "--write-analysis-inputs", str(work / "inputs"),
                 "--events", str(events)],
                check=True,
            )  # fmt: skip
            print(f"inputs written in {time.perf_counter() - start:.0f} s")
            compare_analysis(work, args.repeat, args.classic, events)
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
