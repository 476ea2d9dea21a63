"""One-pass application: the models compiled to C++ score each event inside the RDataFrame
event loop that writes the output (one read of the input, no Python per chunk).

Used when every fold's model exports (:mod:`htt_tmva.exporters`); otherwise the two-pass
Python path runs. The loop also computes what the Python path checks: the order hash of
(entry, event), the events per fold, non-finite inputs (per variable, over the whole tree),
NaN scores and float event numbers that are not exact integers.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import logging
import sys
import time
from dataclasses import dataclass
from typing import Optional

from htt_tmva._progress import progress_wanted
from htt_tmva._root import root
from htt_tmva.application.inputs import InputInfo
from htt_tmva.application.models import FoldModels
from htt_tmva.application.scores import Pass1Result
from htt_tmva.application.writer import OutputPlan, output_columns, snapshot_options
from htt_tmva.errors import (
    ExportError,
    InvalidEventNumberError,
    ModelError,
    NonFiniteError,
    OutputError,
)

log = logging.getLogger(__name__)

SCORES = "htt_tmva_scores_"
_RUN_TEMPLATE = """
#include "ROOT/RVec.hxx"
namespace htt_tmva_onepass {
struct Run_%(id)s {
  static constexpr unsigned NV = %(nv)d, NC = %(nc)d, K = %(k)d;
  ULong64_t hash = 0, nonfinite_events = 0, nan_scores = 0, bad_events = 0;
  std::array<ULong64_t, NV> nonfinite{};
  std::array<ULong64_t, K> per_fold{};
  bool has_default = false;
  float default_value = 0.f;
  double event_limit = 0.;
  void Reset(bool with_default, float value, double limit) {
    *this = Run_%(id)s{};
    has_default = with_default; default_value = value; event_limit = limit;
  }
  template <typename E>
  std::array<float, NC + 2> operator()(ULong64_t entry, E event, const std::array<double, NV>& in) {
    ULong64_t bits;
    if constexpr (std::is_floating_point_v<E>) {
      if (event_limit > 0 && !(std::isfinite(event) && event == std::trunc(event) &&
                               std::abs(event) <= event_limit)) ++bad_events;
      bits = static_cast<ULong64_t>(static_cast<Long64_t>(event));
    } else {
      bits = static_cast<ULong64_t>(event);
    }
    // the order hash of the Python path (htt_tmva.application.stream.event_hash)
    ULong64_t z = entry * 0x9E3779B97F4A7C15ULL + bits;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    hash += z ^ (z >> 31);
    std::array<float, NC + 2> out;
    bool good = true;
    for (unsigned i = 0; i < NV; ++i)
      if (!std::isfinite(in[i])) { ++nonfinite[i]; good = false; }
    if (!good) {
      ++nonfinite_events;
      out.fill(default_value);
      out[NC + 1] = -1.f;  // no class
      return out;
    }
    const unsigned fold = htt_tmva_export::fold_of(event, K);
    ++per_fold[fold];
    %(symbol)s(fold, in.data(), out.data());
    unsigned best = 0;
    bool nan = false;
    for (unsigned c = 0; c < NC; ++c) {
      if (std::isnan(out[c])) nan = true;
      if (out[c] > out[best]) best = c;
    }
    if (nan) ++nan_scores;
    out[NC] = out[best];
    out[NC + 1] = static_cast<float>(best);
    return out;
  }
};
inline Run_%(id)s run_%(id)s;
}  // namespace htt_tmva_onepass
"""
_ids = itertools.count()


@dataclass
class CompiledScorer:
    """The compiled models of all event folds and the per-run counters of the event loop."""

    run_name: str
    variables: list[str]
    classes: list[str]
    n_folds: int
    where: str  # "compiled" or "interpreted", for the log
    header: str  # the fold-aware header (event fold j scored by model j)
    namespace: str

    @property
    def run(self):
        return getattr(root().htt_tmva_onepass, self.run_name)


def compiled_scorer(models: FoldModels) -> Optional[CompiledScorer]:
    """Compile the fold models into one scorer, or None (logged) if one cannot be exported."""
    from htt_tmva.exporters.compile import compiler, load_compiled
    from htt_tmva.exporters.cpp import HELPERS, INCLUDES, application_header
    from htt_tmva.exporters.spec import model_spec

    try:
        specs = [model_spec(m) for m in models.models]
        content = hashlib.sha256(json.dumps(specs, sort_keys=True).encode()).hexdigest()
        namespace = f"htt_tmva_apply_{content[:16]}"
        header = application_header(
            specs, namespace, models.variables, models.classes, list(range(models.n_folds))
        )
        symbol = load_compiled(header, namespace)
    except ExportError as exc:
        log.info("the models cannot be compiled (%s): scoring runs in Python (two passes)", exc)
        return None
    ROOT = root()
    run_id = symbol.rsplit("_", 1)[-1] + f"_{next(_ids)}"
    code = (
        "\n".join(INCLUDES)
        + HELPERS
        + _RUN_TEMPLATE
        % {
            "id": run_id,
            "nv": len(models.variables),
            "nc": len(models.classes),
            "k": models.n_folds,
            "symbol": symbol,
        }
    )
    if not ROOT.gInterpreter.Declare(code):  # pragma: no cover - only if the C++ is broken
        raise ModelError("could not compile the one-pass scorer")
    where = "compiled" if compiler() else "interpreted"
    log.info("scoring in one pass with the models compiled to C++ (%s)", where)
    return CompiledScorer(
        f"run_{run_id}",
        models.variables,
        models.classes,
        models.n_folds,
        where,
        header,
        namespace,
    )


def inputs_array(variables: list[str]) -> str:
    """C++ expression of an event's inputs as ``std::array<double, n>``."""
    inputs = ", ".join(f"static_cast<double>({v})" for v in variables)
    return f"std::array<double, {len(variables)}>{{{inputs}}}"


def define_scores(node, names: list[str], existing: list[str]) -> list:
    """Define (or, for ``existing`` branches, Redefine) each of ``names`` from the scores
    column; return the new nodes in order (they must stay alive until the loop has run)."""
    nodes = []
    for index, name in enumerate(names):
        define = node.Redefine if name in existing else node.Define
        node = define(name, f"{SCORES}[{index}]")
        nodes.append(node)
    return nodes


def run_one_pass(
    scorer: CompiledScorer,
    info: InputInfo,
    plan: OutputPlan,
    names: list[str],
    event_branch: str,
    nonfinite_default: Optional[float],
) -> Pass1Result:
    """Score and write ``info`` in one single-threaded event loop into ``plan.temp``."""
    ROOT = root()
    if ROOT.IsImplicitMTEnabled():
        raise OutputError(
            "implicit multi-threading is on: a multi-threaded Snapshot would reorder "
            "entries; call ROOT.DisableImplicitMT() before applying"
        )
    run = scorer.run
    run.Reset(nonfinite_default is not None, float(nonfinite_default or 0.0), info.event_limit)
    call = (
        f"htt_tmva_onepass::{scorer.run_name}(rdfentry_, {event_branch}, "
        f"{inputs_array(scorer.variables)})"
    )
    start = time.perf_counter()
    frame = ROOT.RDataFrame(info.tree_path, str(info.path))
    nodes = [frame, frame.Define(SCORES, call)]
    nodes += define_scores(nodes[-1], names, info.existing)
    node = nodes[-1]
    columns = output_columns(info, names, event_branch, plan.full_copy)
    if progress_wanted() and sys.stdout.isatty():  # ROOT's bar: events, rate, time left
        ROOT.RDF.Experimental.AddProgressBar(ROOT.RDF.AsRNode(node))
    result = node.Snapshot(
        info.tree_path, str(plan.temp), columns, snapshot_options(info.compression)
    )
    result.GetValue()  # runs the event loop
    seconds = time.perf_counter() - start
    del result, nodes
    where = f"tree '{info.tree_path}' in '{info.path}'"
    _check_counts(run, scorer, info, where, event_branch, nonfinite_default)
    return Pass1Result(
        entries=info.entries,
        order_hash=int(run.hash),
        per_fold=[int(n) for n in run.per_fold],
        nonfinite={v: int(n) for v, n in zip(scorer.variables, run.nonfinite) if n},
        nonfinite_events=int(run.nonfinite_events),
        seconds_read=0.0,
        seconds_predict=seconds,
    )


def _check_counts(run, scorer, info, where, event_branch, nonfinite_default) -> None:
    if run.bad_events:
        raise InvalidEventNumberError(
            f"event branch '{event_branch}' of {where} is floating point and holds "
            f"{int(run.bad_events)} values that are not integers up to {info.event_limit}; "
            "folds cannot be assigned exactly: use an integer event branch"
        )
    listed = ", ".join(
        f"'{v}' in {int(n)} events" for v, n in zip(scorer.variables, run.nonfinite) if n
    )
    if run.nonfinite_events and nonfinite_default is None:
        raise NonFiniteError(
            f"{int(run.nonfinite_events)} of {info.entries} events of {where} have non-finite "
            f"inputs (NaN or inf): {listed}; nothing was written. Give --nonfinite-default "
            "VALUE to write VALUE as every score of such events (and max_index -1)"
        )
    if run.nan_scores:
        raise ModelError(
            f"the models gave NaN scores for {int(run.nan_scores)} of {info.entries} events of "
            f"{where}; nothing was written"
        )
    if run.nonfinite_events:
        log.warning(
            "%d events of %s have non-finite inputs (%s): their scores are set to %g and "
            "max_index to -1",
            int(run.nonfinite_events),
            where,
            listed,
            nonfinite_default,
        )
