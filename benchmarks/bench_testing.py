"""The testing step at analysis scale: one fold of 300 k events, 8 classes, two models.

Writes two fold files (the tested fold with EVENTS events, the training fold small), trains
a small Keras model (`example`, 1 epoch) and a small BDT (50 trees, depth 3) on fold 0, then
times, each as a fresh process as a user runs it:
  - ours: `htt-tmva confusion TRAINING KERAS_TESTING 0 --compare BDT_TESTING` (the whole
    command: start-up, reading, both models, matrices, ROC, all figures, ROOT/JSON files),
  - the reference: a bare script reading the same fold (one RDataFrame AsNumpy per class
    tree) and scoring it with both models (numpy forward pass of the Dense weights, XGBoost
    inplace_predict), without figures or checks,
and prints wall seconds, peak memory (the process and its figure workers together) and
events per second. Targets (issue 20): the whole command <= 6 s and <= 1 GB.

    python benchmarks/bench_testing.py [--events 300000] [--classes 8] [--variables 10]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import yaml

CLASS_NAMES = ["ggh", "qqh", "ztt", "zll", "w", "tt", "ss", "misc"]

BARE = r"""
import sys, time
import numpy as np
import ROOT
import xgboost
from htt_tmva.engines.dense import DenseNetwork
from htt_tmva.engines.preprocessing import load_preprocessing
path, classes, variables, dense, pre, bdt = sys.argv[1], sys.argv[2].split(","), \
    sys.argv[3].split(","), sys.argv[4], sys.argv[5], sys.argv[6]
f = ROOT.TFile.Open(path)
xs = []
for c in classes:
    data = ROOT.RDataFrame(f.Get(c)).AsNumpy([*variables, "training_weight"])
    xs.append(np.column_stack([data[v].astype(np.float64) for v in variables]))
x = np.concatenate(xs)
p1 = DenseNetwork.load(dense)(load_preprocessing(pre, variables).transform(x))
booster = xgboost.Booster(model_file=bdt)
p2 = booster.inplace_predict(x)
print(p1.shape, p2.shape)
"""


def write_fold(path: Path, fold: int, events: int, classes: list[str], variables: list[str]):
    """One tree per class, Gaussian variables with class-dependent means, event % 2 == fold."""
    import ROOT

    rng = np.random.default_rng(fold)
    per_class = events // len(classes)
    first = True
    for c, cls in enumerate(classes):
        means = np.cos(np.arange(len(variables)) * (c + 1)) * 0.8
        columns = {
            v: (rng.normal(means[i], 1.0, per_class)).astype(np.float32)
            for i, v in enumerate(variables)
        }
        columns["training_weight"] = rng.exponential(1.0, per_class).astype(np.float32)
        start = c * per_class
        columns["event"] = (2 * np.arange(start, start + per_class) + fold).astype(np.uint64)
        df = ROOT.RDF.FromNumpy(columns)
        options = ROOT.RDF.RSnapshotOptions()
        options.fMode = "RECREATE" if first else "UPDATE"
        df.Snapshot(cls, str(path), list(columns), options)
        first = False
    record = json.dumps({"fold": fold, "folds": 2, "event_branch": "event"})
    tfile = ROOT.TFile.Open(str(path), "UPDATE")
    ROOT.TNamed("htt_tmva_fold", record).Write()
    tfile.Close()


def tree_rss(pid: int) -> int:
    """Resident bytes of a process and all its descendants now (Linux /proc)."""
    total = 0
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                total += int(line.split()[1]) * 1024
        for task in Path(f"/proc/{pid}/task").iterdir():
            for child in (task / "children").read_text().split():
                total += tree_rss(int(child))
    except (OSError, ValueError):
        pass
    return total


def run(command: list[str], cwd: Path) -> tuple[float, float]:
    """Wall seconds and the peak of the summed RSS of the process and its workers (GiB,
    sampled every 20 ms; ru_maxrss would count this benchmark's own memory, copied at the
    fork before the exec)."""
    start = time.perf_counter()
    process = subprocess.Popen(command, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    peak, done = [0], threading.Event()

    def sample() -> None:  # never reaps the process: wait4 below does
        while not done.is_set():
            peak[0] = max(peak[0], tree_rss(process.pid))
            time.sleep(0.02)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    output = process.stdout.read().decode()
    _, status = os.waitpid(process.pid, 0)
    wall = time.perf_counter() - start
    done.set()
    sampler.join()
    if status:
        sys.exit(f"{' '.join(command)} failed:\n{output}")
    return wall, peak[0] / 2**30


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=300_000, help="events in the tested fold")
    parser.add_argument("--classes", type=int, default=8)
    parser.add_argument("--variables", type=int, default=10)
    parser.add_argument("--repeat", type=int, default=2, help="runs of each, the best is shown")
    parser.add_argument("--keep", type=Path, help="work in this folder and keep it (profiling)")
    args = parser.parse_args()

    from htt_tmva.config import load_training_config
    from htt_tmva.training import train_folds

    classes = (CLASS_NAMES + [f"stxs{i}" for i in range(args.classes)])[: args.classes]
    variables = [f"var{i}" for i in range(args.variables)]
    repo = Path(__file__).resolve().parents[1]
    env_path = os.environ.get("PYTHONPATH", "")
    os.environ["PYTHONPATH"] = f"{repo}{os.pathsep}{env_path}" if env_path else str(repo)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = args.keep or Path(tmp)
        tmp.mkdir(parents=True, exist_ok=True)
        write_fold(tmp / "fold0.root", 0, 40_000, classes, variables)
        write_fold(tmp / "fold1.root", 1, args.events, classes, variables)
        training = {
            "datasets": [str(tmp / "fold0.root"), str(tmp / "fold1.root")],
            "output_path": str(tmp / "models"),
            "classes": classes,
            "event_weights": "training_weight",
            "variables": variables,
            "model": {"name": "example", "batch_size": 1000, "epochs": 1},
            "bdt": {"NTrees": 50, "MaxDepth": 3},
        }
        (tmp / "training.yaml").write_text(yaml.safe_dump(training))
        config = load_training_config(tmp / "training.yaml")
        for engine in ("keras", "bdt"):
            train_folds(config, [0], engine=engine)
        models = tmp / "models"
        for engine, model in (("keras", "fold0_keras_model_example.keras"), ("bdt", "")):
            model = model or "fold0_bdt_model.json"
            testing = {"model": [model, model.replace("fold0", "fold1")]}
            testing["weight_branch"] = "training_weight"  # no output_prefix: a classic config
            (tmp / f"{engine}.yaml").write_text(yaml.safe_dump(testing))

        ours = [sys.executable, "-m", "htt_tmva", "confusion", "training.yaml", "keras.yaml"]
        ours += ["0", "--compare", "bdt.yaml"]
        bare = [sys.executable, "-c", BARE, str(tmp / "fold1.root"), ",".join(classes)]
        bare += [",".join(variables), str(models / "fold0_keras_model_example.dense.npz")]
        bare += [str(models / "fold0_keras_preprocessing_example.json")]
        bare += [str(models / "fold0_bdt_model.json")]
        results = {}
        for name, command in (("ours", ours), ("bare", bare)):
            runs = [run(command, tmp) for _ in range(args.repeat)]
            results[name] = (min(r[0] for r in runs), max(r[1] for r in runs))
        n = args.events // args.classes * args.classes
        print(f"{'':6} {'wall s':>7} {'peak RSS GiB':>12} {'events/s':>9}")
        for name, (wall, rss) in results.items():
            print(f"{name:6} {wall:>7.2f} {rss:>12.2f} {n / wall:>9.0f}")
        print(
            f"ours/bare {results['ours'][0] / results['bare'][0]:.2f}; {n} events, "
            f"{args.classes} classes, {args.variables} variables, keras + bdt (--compare); "
            f"targets: ours <= 6 s, <= 1 GiB; best of {args.repeat}"
        )


if __name__ == "__main__":
    main()
