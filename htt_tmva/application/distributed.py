"""The application on a Dask cluster: ROOT's distributed RDataFrame (DistRDF).

The models travel to the workers as the fold-aware C++ header (each worker compiles it
once, into its own cache, or JIT-compiles it without a compiler); no TensorFlow or XGBoost
runs there. Each worker scores and writes its entry ranges; the output comes back as one
file in entry order, and then goes through the same steps as a local run: the other
objects copied, verified (entries, branches, the order of the event column against the
input, read here) and only then renamed into place.

Workers must see the input and output paths (a local cluster, or a shared filesystem) and
have htt_tmva and ROOT installed.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Optional

from htt_tmva._root import root
from htt_tmva.application.compiled import SCORES, CompiledScorer, define_scores, inputs_array
from htt_tmva.application.inputs import InputInfo
from htt_tmva.application.scores import Pass1Result
from htt_tmva.application.writer import (
    OutputPlan,
    output_columns,
    output_hash,
    snapshot_options,
    writing_nodes,
)
from htt_tmva.errors import ConfigError, InvalidEventNumberError, ModelError, NonFiniteError
from htt_tmva.expressions import value_cpp

log = logging.getLogger(__name__)

_SCORE = """
namespace htt_tmva_dist_%(tag)s {
template <typename E>
inline std::array<float, %(nc)d + 2> score(E event, const std::array<double, %(nv)d>& in,
                                           bool has_default, float value) {
  std::array<float, %(nc)d + 2> out;
  for (double v : in)
    if (!std::isfinite(v)) { out.fill(value); out[%(nc)d + 1] = -1.f; return out; }
  %(symbol)s(htt_tmva_export::fold_of(event, %(k)du), in.data(), out.data());
  unsigned best = 0;
  for (unsigned c = 1; c < %(nc)d; ++c) if (out[c] > out[best]) best = c;
  out[%(nc)d] = out[best];
  out[%(nc)d + 1] = static_cast<float>(best);
  return out;
}
inline int nan_scores(const std::array<float, %(nc)d + 2>& s) {
  for (unsigned c = 0; c < %(nc)d; ++c) if (std::isnan(s[c])) return 1;
  return 0;
}
}  // namespace htt_tmva_dist_%(tag)s
"""


def parse_executor(executor: str) -> Optional[str]:
    """``local`` -> None; ``dask`` -> '' (a local cluster); ``dask=ADDRESS`` -> ADDRESS."""
    if executor == "local":
        return None
    if executor == "dask":
        return ""
    if executor.startswith("dask="):
        return executor[len("dask=") :]
    raise ConfigError(f"unknown executor '{executor}'; valid: 'local', 'dask', 'dask=ADDRESS'")


@contextlib.contextmanager
def dask_client(address: str, workers: int) -> Iterator[object]:
    """A client of the scheduler at ``address``, or of a local cluster of ``workers``."""
    try:
        from dask.distributed import Client, LocalCluster
    except ImportError:
        raise ConfigError("--executor dask needs Dask: pip install 'dask[distributed]'") from None
    if not log.isEnabledFor(logging.INFO):  # -q: Dask's INFO lines too (set up at its import)
        logging.getLogger("distributed").setLevel(logging.WARNING)
    if address:
        client = Client(address)
        log.info("Dask scheduler %s: %d workers", address, len(client.scheduler_info()["workers"]))
        try:
            yield client
        finally:
            client.close()
        return
    cluster = LocalCluster(
        n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=None
    )
    client = Client(cluster)
    log.info("local Dask cluster of %d workers", workers)
    try:
        yield client
    finally:
        client.close()
        cluster.close()


def score_code(scorer: CompiledScorer, symbol: str) -> str:
    from htt_tmva.export.cpp import HELPERS, INCLUDES

    return (
        "\n".join(INCLUDES)
        + HELPERS
        + _SCORE
        % {
            "tag": symbol.rsplit("_", 1)[-1],
            "nc": len(scorer.classes),
            "nv": len(scorer.variables),
            "k": scorer.n_folds,
            "symbol": symbol,
        }
    )


def setup_worker(header: str, namespace: str, code: str, tag: str) -> None:
    """Run on every worker (and here): the compiled model and the scoring function."""
    from htt_tmva.export.compile import load_compiled

    load_compiled(header, namespace)
    ROOT = root()
    if not hasattr(ROOT, f"htt_tmva_dist_{tag}"):
        ROOT.gInterpreter.Declare(code)


def run_distributed(
    client,
    scorer: CompiledScorer,
    info: InputInfo,
    plan: OutputPlan,
    names: list[str],
    event_branch: str,
    nonfinite_default: Optional[float],
    partitions: int,
) -> Pass1Result:
    """Score and write ``info`` on the cluster into ``plan.temp``; counts as the local run."""
    from htt_tmva.export.compile import load_compiled
    from htt_tmva.export.cpp import _floats  # NaN and inf as C++ expressions

    ROOT = root()
    symbol = load_compiled(scorer.header, scorer.namespace)
    code, tag = score_code(scorer, symbol), symbol.rsplit("_", 1)[-1]
    setup_worker(scorer.header, scorer.namespace, code, tag)
    ROOT.RDF.Distributed.initialize(setup_worker, scorer.header, scorer.namespace, code, tag)
    array = inputs_array(scorer.variables)
    default = "true" if nonfinite_default is not None else "false"
    node = writing_nodes(info, executor=client, npartitions=partitions)[-1]
    node = node.Define(
        SCORES,
        f"htt_tmva_dist_{tag}::score({event_branch}, {array}, {default}, "
        f"{_floats([nonfinite_default or 0.0])})",
    )
    node = define_scores(node, names, info.existing)[-1]
    values = [value_cpp(v) for v in scorer.variables]  # what the models receive
    good = " && ".join(f"std::isfinite({v})" for v in values)
    counts = {
        v: node.Define(f"htt_tmva_bad_{i}_", f"int(!std::isfinite({value}))").Sum(
            f"htt_tmva_bad_{i}_"
        )
        for i, (v, value) in enumerate(zip(scorer.variables, values))
    }
    bad_events = node.Define("htt_tmva_bad_", f"int(!({good}))").Sum("htt_tmva_bad_")
    nan = node.Define(
        "htt_tmva_nan_", f"int({good}) * htt_tmva_dist_{tag}::nan_scores({SCORES})"
    ).Sum("htt_tmva_nan_")
    per_fold = [
        node.Define(
            f"htt_tmva_fold_{f}_",
            f"int(({good}) && htt_tmva_export::fold_of({event_branch}, {scorer.n_folds}u) == {f})",
        ).Sum(f"htt_tmva_fold_{f}_")
        for f in range(scorer.n_folds)
    ]
    float_bad = None
    if info.event_limit:
        float_bad = node.Define(
            "htt_tmva_float_event_",
            f"int(!(std::isfinite(double({event_branch})) && double({event_branch}) == "
            f"std::trunc(double({event_branch})) && std::abs(double({event_branch})) <= "
            f"{float(info.event_limit)!r}))",
        ).Sum("htt_tmva_float_event_")
    columns = output_columns(info, names, event_branch, plan.full_copy)
    # the handle is kept: DistRDF drops actions whose proxies are gone before the run
    snapshot = node.Snapshot(
        info.tree_path, str(plan.temp), columns, snapshot_options(info.compression)
    )
    try:
        n_bad = int(bad_events.GetValue())  # runs the distributed event loop
        _gather(plan.temp)
        del snapshot
    finally:
        for part in _parts(plan.temp):
            part.unlink(missing_ok=True)
    where = f"tree '{info.tree_path}' in '{info.path}'"
    if float_bad is not None and int(float_bad.GetValue()):
        raise InvalidEventNumberError(
            f"event branch '{event_branch}' of {where} is floating point and holds "
            f"{int(float_bad.GetValue())} values that are not integers up to {info.event_limit}"
        )
    nonfinite = {v: int(c.GetValue()) for v, c in counts.items() if int(c.GetValue())}
    listed = ", ".join(f"'{v}' in {n} events" for v, n in nonfinite.items())
    if n_bad and nonfinite_default is None:
        raise NonFiniteError(
            f"{n_bad} of {info.entries} events of {where} have non-finite inputs (NaN or inf): "
            f"{listed}; nothing was written. Give --nonfinite-default VALUE to write VALUE as "
            "every score of such events (and max_index -1)"
        )
    if int(nan.GetValue()):
        raise ModelError(
            f"the models gave NaN scores for {int(nan.GetValue())} of {info.entries} events of "
            f"{where}; nothing was written"
        )
    return Pass1Result(
        entries=info.entries,
        order_hash=output_hash(Path(info.path), info.tree_path, event_branch, 500_000),
        per_fold=[int(c.GetValue()) for c in per_fold],
        nonfinite=nonfinite,
        nonfinite_events=n_bad,
    )


def _parts(temp: Path) -> list[Path]:
    found = temp.parent.glob(f"{temp.stem}_*{temp.suffix}")
    parts = [p for p in found if p.stem.rsplit("_", 1)[1].isdigit()]
    return sorted(parts, key=lambda p: int(p.stem.rsplit("_", 1)[1]))


def _gather(temp: Path) -> None:
    """DistRDF writes ``<stem>_<range>.root`` files: one is renamed to ``temp``, several are
    merged in range (entry) order."""
    parts = _parts(temp)
    if not parts:
        if temp.exists():
            return
        raise ModelError(f"the distributed run wrote no output for '{temp}'")
    if len(parts) == 1:
        os.replace(parts[0], temp)
        return
    merger = root().TFileMerger(False, False)
    merger.OutputFile(str(temp), "RECREATE")
    for part in parts:
        merger.AddFile(str(part), False)
    ok = merger.Merge()
    for part in parts:
        part.unlink()
    if not ok:
        raise ModelError(f"merging the distributed outputs into '{temp}' failed")
