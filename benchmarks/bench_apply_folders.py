"""Benchmark of ``htt-tmva apply`` on analysis-shaped inputs: many files, about 100 branches,
signal files with systematic-shift folders, all folders of a file scored in one rewrite.

Writes ``--files`` files in the Artus layout ``<nick>/<nick>.root``: ``--signal`` of them
hold ``mt_nominal/ntuple`` and ``--shifts`` shift folders (``mt_shift<i>Up/ntuple``), the
others ``mt_nominal/ntuple`` only; every tree has the same ``--events-per-tree`` entries
(chosen so that all trees together hold ``--events``) and ``--branches`` branches: Float_t
(``x``, ``y`` are the model's variables), Int_t, Bool_t and a ULong64_t ``event``. A BDT is
trained on the toy (``htt-tmva toy``, ``dataset``, ``train``). Timed as whole commands
(subprocesses, start-up included), each on fresh copies of the inputs, in the same run:

* (a) a bare single-threaded RDataFrame Snapshot of every tree of every file (one process),
  with as many new float columns as the application writes and the input's compression;
* (b) ``htt-tmva apply ... '<work>/in/*/*.root' '*/ntuple'`` in place: every folder of
  every file, one command;
* for one signal file: (c) a bare Snapshot of all its trees, (d) ``apply`` of all its
  folders in one command, (e) ``apply`` of ``mt_nominal/ntuple`` only (what each folder
  cost before, when every folder was a separate rewrite of the file).

Targets (issue 18): (a)/(b) >= 0.9; (d)/(e) and (d)/(c) <= 1.2. The per-file fixed cost is
((b) - (a)) / files. Usage (the issue's scale is the default; smaller for a quick check)::

    python benchmarks/bench_apply_folders.py [--files 35] [--signal 5] [--shifts 10]
        [--events 2000000] [--branches 100] [--repeat 1] [--work DIR]
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from bench_apply import N_NEW, htt_tmva, run, train_models  # noqa: E402

MAKE_FILE = """
import sys
import ROOT
ROOT.gROOT.SetBatch(True)
target, n, n_branches, trees = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4:]
ROOT.gRandom.SetSeed(1)
n_int, n_bool = n_branches // 4, n_branches // 10
n_float = n_branches - n_int - n_bool - 1
for index, tree in enumerate(trees):
    frame = ROOT.RDataFrame(n).Define("event", f"ULong64_t(rdfentry_ * 7 + {index})")
    frame = frame.Define("x", "float(gRandom->Gaus())").Define("y", "float(gRandom->Gaus())")
    columns = ["event", "x", "y"]
    for i in range(n_float - 2):
        frame = frame.Define(f"f{i}", f"float(x * {i % 7 + 1} + gRandom->Uniform())")
        columns.append(f"f{i}")
    for i in range(n_int):
        frame = frame.Define(f"i{i}", f"int(gRandom->Poisson({i % 5 + 1}))")
        columns.append(f"i{i}")
    for i in range(n_bool):
        frame = frame.Define(f"b{i}", f"bool(gRandom->Uniform() < 0.{i % 9 + 1})")
        columns.append(f"b{i}")
    options = ROOT.RDF.RSnapshotOptions()
    options.fMode = "UPDATE" if index else "RECREATE"
    frame.Snapshot(tree, target, columns, options)
"""

BARE_SNAPSHOT = """
import sys
import ROOT
ROOT.gROOT.SetBatch(True)
n_new, pairs = int(sys.argv[1]), sys.argv[2:]
for source, target in zip(pairs[::2], pairs[1::2]):
    tfile = ROOT.TFile.Open(source)
    settings = tfile.GetCompressionSettings()
    trees = [f"{k.GetName()}/ntuple" for k in tfile.GetListOfKeys()]
    columns = {t: [b.GetName() for b in tfile.Get(t).GetListOfBranches()] for t in trees}
    tfile.Close()
    for index, tree in enumerate(trees):
        frame = ROOT.RDataFrame(tree, source)
        for i in range(n_new):
            frame = frame.Define(f"new_{i}", f"x * {i + 1}.5f + y")
        options = ROOT.RDF.RSnapshotOptions()
        options.fMode = "UPDATE" if index else "RECREATE"
        options.fCompressionAlgorithm = ROOT.RCompressionSetting.EAlgorithm.EValues(
            settings // 100)
        options.fCompressionLevel = settings % 100
        frame.Snapshot(tree, target, columns[tree] + [f"new_{i}" for i in range(n_new)], options)
"""


def make_inputs(args, work: Path) -> list[Path]:
    """Two template files (a signal file with shift folders, a background file), copied
    into the Artus layout; returns the files."""
    trees_signal = ["mt_nominal/ntuple"] + [f"mt_shift{i}Up/ntuple" for i in range(args.shifts)]
    n_trees = args.signal * len(trees_signal) + (args.files - args.signal)
    per_tree = max(1, args.events // n_trees)
    templates = work / "templates"
    templates.mkdir(exist_ok=True)
    signal, background = templates / "signal.root", templates / "background.root"
    for path, trees in ((signal, trees_signal), (background, trees_signal[:1])):
        if not path.exists():
            command = [sys.executable, "-c", MAKE_FILE, str(path), str(per_tree)]
            run([*command, str(args.branches), *trees])
    files = []
    for i in range(args.files):
        nick = f"sample{i:02d}"
        files.append((signal if i < args.signal else background, nick))
    print(
        f"{args.files} files ({args.signal} with {args.shifts} shift folders), "
        f"{per_tree} events per tree, {n_trees * per_tree} events in {n_trees} trees, "
        f"{args.branches} branches",
        flush=True,
    )
    return files


def fresh_copies(files, folder: Path) -> list[Path]:
    shutil.rmtree(folder, ignore_errors=True)
    copies = []
    for template, nick in files:
        (folder / nick).mkdir(parents=True)
        copies.append(shutil.copyfile(template, folder / nick / f"{nick}.root"))
    return copies


def timed(label: str, command: list[str], prepare, best: dict, repeat: int) -> None:
    for _ in range(repeat):
        prepare()
        seconds, cpu, peak = run(command)
        old = best.get(label, (float("inf"), 0.0, 0.0))
        best[label] = (seconds, cpu, peak) if seconds < old[0] else old
        print(f"  {label}: {seconds:.1f} s (load {os.getloadavg()[0]:.1f})", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=35)
    parser.add_argument("--signal", type=int, default=5, help="files with shift folders")
    parser.add_argument("--shifts", type=int, default=10, help="shift folders per signal file")
    parser.add_argument("--events", type=int, default=2_000_000, help="events in all trees")
    parser.add_argument("--branches", type=int, default=100)
    parser.add_argument("--repeat", type=int, default=1, help="runs per command (best shown)")
    parser.add_argument("--work", type=Path, default=None, help="work folder (default: temporary)")
    args = parser.parse_args()
    work = args.work or Path(tempfile.mkdtemp(prefix="bench_apply_folders_"))
    work.mkdir(parents=True, exist_ok=True)
    print(f"work folder {work}; load average {os.getloadavg()[0]:.1f}; {os.cpu_count()} cores")
    dataset, training, application = train_models(work, labels=("bdt",))["bdt"]
    files = make_inputs(args, work)
    inputs, bare = work / "in", work / "bare"
    configs = [str(dataset), str(training), str(application)]
    apply = [*htt_tmva(), "apply", *configs]
    # the compiled library of the model, built once (cached) outside the timings
    warm = fresh_copies(files[:1], work / "warm")
    for old in work.glob("warm.*"):
        old.unlink()
    run([*apply, str(warm[0]), "mt_nominal/ntuple", "--friend", str(work / "warm.root")])
    best: dict[str, tuple] = {}

    def prepare_bare():
        shutil.rmtree(bare, ignore_errors=True)
        bare.mkdir()

    copies = [inputs / nick / f"{nick}.root" for _, nick in files]
    pairs = [str(p) for c in copies for p in (c, bare / c.name)]

    def fresh():
        fresh_copies(files, inputs)

    def fresh_and_bare():
        fresh()
        prepare_bare()

    one = copies[0]
    bare_all = [sys.executable, "-c", BARE_SNAPSHOT, str(N_NEW), *pairs]
    bare_one = [sys.executable, "-c", BARE_SNAPSHOT, str(N_NEW), str(one), str(bare / one.name)]
    for label, command, prepare in (
        ("(a) bare Snapshot, all", bare_all, fresh_and_bare),
        ("(b) apply, all folders", [*apply, str(inputs / "*" / "*.root"), "*/ntuple"], fresh),
        ("(c) bare Snapshot, 1 file", bare_one, fresh_and_bare),
        ("(d) apply, 1 file, all", [*apply, str(one), "*/ntuple"], fresh),
        ("(e) apply, 1 file, nominal", [*apply, str(one), "mt_nominal/ntuple"], fresh),
    ):
        timed(label, command, prepare, best, args.repeat)
    print(f"\n{'command':<30}{'wall s':>8}{'CPU s':>8}{'peak MB':>9}")
    for label, (seconds, cpu, peak) in best.items():
        print(f"{label:<30}{seconds:>8.1f}{cpu:>8.1f}{peak:>9.0f}")
    a, b, c, d, e = (best[k][0] for k in best)
    print(
        f"\nspeed of apply against the bare Snapshot, all files (a)/(b): {a / b:.2f} "
        f"(target >= 0.9)\n"
        f"{args.shifts + 1} folders against one rewrite of the file: (d)/(e) {d / e:.2f}, "
        f"(d)/(c) {d / c:.2f} (target <= 1.2)\n"
        f"per-file fixed cost ((b) - (a)) / files: {(b - a) / args.files:.2f} s; "
        f"load average now {os.getloadavg()[0]:.1f}"
    )
    if args.work is None:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
