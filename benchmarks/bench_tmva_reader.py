"""Benchmark of the TMVA weight-file reader's BDT response against XGBoost's own predictor.

Both on one core, on the same events, measured in the same run:

* (a) XGBoost ``inplace_predict`` (nthread=1) of a model trained here with 850 rounds of
  depth-3 trees (binary:logistic) -- the reference;
* (b) ``read_weights(...).response`` (the whole call) of a TMVA AdaBoost BDT weight file with
  850 complete depth-3 trees (random cuts on the same variables), with the compiled kernel
  (the system's C++ compiler, else ROOT's interpreter: the line below the table says which);
* (c) the same forest with the numpy traversal only (HTT_TMVA_NO_JIT behaviour);
* (d) when ../shared/data/tmva (or $HTT_TMVA_TMVA_DATA, e.g. from a worktree) is present,
  ``response`` of the real 850-tree depth-3 TMVA file of pair #4 (compiled kernel).

Prints events/s of each, the ratio to (a) and the issue's target (1 M events/s on one core).
Measured on the 2-core development VM (AMD EPYC, AVX-512, load < 1): (a) about 290 k,
(b) and (d) about 3.8 M events/s (13x) with the AVX-512 kernel (g++ 12 -O3 -march=native);
measured apart, the same kernel built without AVX-512 (as on AVX2 CPUs) about 1.4 M and ROOT's
interpreter alone (it walks the trees) about 0.5 M.

Usage::

    python benchmarks/bench_tmva_reader.py [--events 200000] [--variables 4] [--repeat 3]
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")  # one core for numpy's BLAS and XGBoost
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import argparse  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

TARGET = 1_000_000
N_TREES, DEPTH = 850, 3
TMVA_DATA = Path(
    os.environ.get("HTT_TMVA_TMVA_DATA")
    or Path(__file__).resolve().parents[1].parent / "shared" / "data" / "tmva"
)
REAL_BDT = (
    TMVA_DATA
    / "mjongerh__SharedFol/b7884a956f98/dataset/weights"
    / "TMVAClassification_BDT.weights.xml"
)


def random_tmva_bdt(path: Path, n_vars: int, rng) -> Path:
    """A TMVA AdaBoost BDT weight file of N_TREES complete trees of depth DEPTH."""

    def node(pos: str, depth: int) -> str:
        if depth == DEPTH:
            kind = int(rng.choice([-1, 1]))
            return (
                f'<Node pos="{pos}" depth="{depth}" NCoef="0" IVar="-1" Cut="0" cType="1" '
                f'res="0" rms="0" purity="0.5" nType="{kind}"/>'
            )
        children = node("l", depth + 1) + node("r", depth + 1)
        return (
            f'<Node pos="{pos}" depth="{depth}" NCoef="0" IVar="{rng.integers(n_vars)}" '
            f'Cut="{np.float32(rng.normal()):.9e}" cType="{rng.integers(2)}" res="0" rms="0" '
            f'purity="0.5" nType="0">{children}</Node>'
        )

    trees = "".join(
        f'<BinaryTree type="DecisionTree" boostWeight="{rng.uniform(0.1, 1):.6f}" itree="{i}">'
        f"{node('s', 0)}</BinaryTree>"
        for i in range(N_TREES)
    )
    variables = "".join(
        f'<Variable VarIndex="{i}" Expression="v{i}" Label="v{i}" Internal="v{i}" Type="F"/>'
        for i in range(n_vars)
    )
    path.write_text(
        '<?xml version="1.0"?><MethodSetup Method="BDT::BDT"><GeneralInfo>'
        '<Info name="TMVA Release" value="4.2.1 [262657]"/>'
        '<Info name="AnalysisType" value="Classification"/></GeneralInfo><Options>'
        '<Option name="BoostType" modified="Yes">AdaBoost</Option></Options>'
        f'<Variables NVar="{n_vars}">{variables}</Variables><Spectators NSpec="0"/>'
        '<Classes NClass="2"><Class Name="Signal" Index="0"/><Class Name="Background" '
        'Index="1"/></Classes><Transformations NTransformations="0"/><MVAPdfs/>'
        f'<Weights NTrees="{N_TREES}" AnalysisType="0">{trees}</Weights></MethodSetup>'
    )
    return path


def best_rate(function, x, repeat: int) -> float:
    function(x[: min(len(x), 50000)])  # warm-up: compilation, caches
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        function(x)
        best = min(best, time.perf_counter() - start)
    return len(x) / best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--variables", type=int, default=4)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()

    import xgboost

    from htt_tmva.tmva import read_weights

    rng = np.random.default_rng(42)
    x = rng.normal(size=(args.events, args.variables)).astype(np.float32)
    label = (x[:, 0] + x[:, 1] * x[:, -1] > 0).astype(int)
    train = slice(0, min(50_000, args.events))
    booster = xgboost.train(
        {
            "max_depth": DEPTH,
            "eta": 0.1,
            "objective": "binary:logistic",
            "nthread": 1,
            "tree_method": "hist",
        },
        xgboost.DMatrix(x[train], label[train]),
        num_boost_round=N_TREES,
    )
    booster.set_param({"nthread": 1})
    rows = [
        (
            "(a) XGBoost inplace_predict, nthread=1",
            best_rate(booster.inplace_predict, x, args.repeat),
        )
    ]
    with tempfile.TemporaryDirectory() as tmp:
        model = read_weights(random_tmva_bdt(Path(tmp) / "bdt.weights.xml", args.variables, rng))
        method = model._method
        rows.append(
            ("(b) TMVA BDT reader, compiled kernel", best_rate(model.response, x, args.repeat))
        )
        rows.append(
            (
                "(c) TMVA BDT reader, numpy only",
                best_rate(lambda v: method.evaluate(v, compiled=False), x, args.repeat),
            )
        )
    if REAL_BDT.is_file() and args.variables == 4:
        real = read_weights(REAL_BDT)
        rows.append(
            ("(d) real TMVA file (pair #4), compiled", best_rate(real.response, x, args.repeat))
        )
    from htt_tmva.engines import _forest_kernel

    kernel = _forest_kernel.kernel()
    if kernel is None:
        print("note: no compiled kernel here (no compiler, no ROOT); (b) ran with numpy")
    print(
        f"{N_TREES} trees of depth {DEPTH}, {args.variables} variables, {args.events} events, "
        f"one core; target {TARGET:,} events/s"
    )
    reference = rows[0][1]
    for name, rate in rows:
        print(
            f"{name:45s} {rate:12,.0f} events/s  x{rate / reference:5.2f} of (a)  "
            f"{rate / TARGET:6.1%} of target"
        )
    if kernel is not None:
        print(f"kernel: {kernel.name}")


if __name__ == "__main__":
    main()
