"""The compiled scoring back-end: the models compiled to C++ score each event for the C++
loop that fills the score branches (no Python per chunk).

Used when every fold's model exports (:mod:`htt_tmva.export`); otherwise the Python
back-end runs. Scoring runs ahead of the filling loop, in C++ threads of its own (the
pipeline of :mod:`htt_tmva.application.pipeline`): each reads blocks of entries of the
variables' branches and the event number, and scores a whole block at once with the models'
batched code (vector instructions), so that the filling loop, single-threaded to keep the
entry order, only picks up each entry's scores. The loop checks that every entry's event
number is the one that was scored and computes the order hash of (entry, event); the
scoring threads count what the Python back-end checks: the events per fold, non-finite
inputs (per variable, over the whole tree), NaN scores and float event numbers that are not
exact integers.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import logging
import os
import time
from dataclasses import dataclass
from functools import cache
from typing import Optional

from htt_tmva._root import root
from htt_tmva.application.inputs import InputInfo
from htt_tmva.application.models import FoldModels
from htt_tmva.application.pipeline import declare as declare_pipeline
from htt_tmva.application.scores import Pass1Result
from htt_tmva.errors import (
    CacheError,
    ConfigError,
    ExportError,
    InputFileError,
    InvalidEventNumberError,
    ModelError,
    NonFiniteError,
)
from htt_tmva.expressions import declare_inputs_function

log = logging.getLogger(__name__)

#: entries per block that a scoring thread reads and scores at once
BLOCK = 8192
#: scoring threads for models above this many multiply-adds (or tree nodes) per event
HEAVY = 20000

_ids = itertools.count()


@dataclass
class CompiledScorer:
    """The compiled models of all event folds (per event and batched)."""

    symbol: str  # the per-event entry point; symbol + "_batch" scores blocks
    variables: list[str]
    classes: list[str]
    n_folds: int
    where: str  # "compiled" or "interpreted", for the log
    header: str  # the fold-aware header (event fold j scored by model j)
    namespace: str
    threads: int = 1  # scoring threads of the one-pass application


def compiled_scorer(models: FoldModels, threads: Optional[int] = None) -> Optional[CompiledScorer]:
    """Compile the fold models into one scorer, or None (logged) if one cannot be exported."""
    from htt_tmva.export.compile import compiler, load_compiled
    from htt_tmva.export.cpp import application_header
    from htt_tmva.export.spec import model_spec

    try:
        specs = [model_spec(m) for m in models.models]
        content = hashlib.sha256(json.dumps(specs, sort_keys=True).encode()).hexdigest()
        namespace = f"htt_tmva_apply_{content[:16]}"
        header = application_header(  # the inputs are evaluated ahead (declare_inputs_function)
            specs, namespace, models.inputs, models.classes, list(range(models.n_folds))
        )
        symbol = load_compiled(header, namespace)
        declare_pipeline()
    except CacheError as exc:
        log.warning("%s; scoring runs in Python", exc)
        return None
    except ExportError as exc:
        log.info("the models cannot be compiled (%s): scoring runs in Python", exc)
        return None
    where = "compiled" if compiler() else "interpreted"
    threads = scoring_threads(specs, threads)
    log.info(
        "scoring in one pass with the models compiled to C++ (%s), %d scoring thread(s)",
        where,
        threads,
    )
    return CompiledScorer(
        symbol,
        models.inputs,
        models.classes,
        models.n_folds,
        where,
        header,
        namespace,
        threads,
    )


def scoring_threads(specs: list[dict], wanted: Optional[int] = None) -> int:
    """``wanted`` (``--scoring-threads``), else ``HTT_TMVA_SCORING_THREADS``, else two
    scoring threads for heavy models (where the cores allow) and one for the others. 0: no
    scoring thread, the filling loop scores each block itself."""
    variable = os.environ.get("HTT_TMVA_SCORING_THREADS", "").strip()
    source = "--scoring-threads"
    if wanted is None and variable:
        source = "HTT_TMVA_SCORING_THREADS"
        try:
            wanted = int(variable)
        except ValueError:
            raise ConfigError(
                f"HTT_TMVA_SCORING_THREADS must be a whole number of threads (0 or more), "
                f"got '{variable}'"
            ) from None
    if wanted is not None:
        if wanted < 0:
            raise ConfigError(f"{source} must be 0 or more, got {wanted}")
        return wanted
    cost = max(_cost(spec) for spec in specs)
    return 2 if cost > HEAVY and (os.cpu_count() or 1) > 1 else 1


def _cost(spec: dict) -> int:
    """Multiply-adds (networks) or tree levels walked (trees) per event, roughly."""
    if spec.get("kind") == "network":
        return sum(
            len(op["weights"]) * len(op["bias"]) for op in spec["ops"] if op["op"] == "dense"
        )
    if spec.get("kind") == "trees":
        return 4 * len(spec["trees"])
    return HEAVY + 1  # other kinds are scored event by event: spread them


def score_compiled(
    scorer: CompiledScorer,
    info: InputInfo,
    filler,
    event_branch: str,
    nonfinite_default: Optional[float],
) -> Pass1Result:
    """Fill every entry of ``info`` through ``filler`` (:class:`pipeline.Filler`) with the
    scores of the compiled models, computed ahead by the pipeline's threads."""
    ROOT = root()
    inputs, branches = declare_inputs_function(scorer.variables)
    settings = ROOT.htt_tmva_onepass.Settings()
    settings.file, settings.tree, settings.event = str(info.path), info.tree_path, event_branch
    settings.branches = ROOT.std.vector["std::string"](branches)
    settings.event_kind = event_kind(info)
    settings.event_limit = float(info.event_limit)
    settings.nv, settings.nc = len(scorer.variables), len(scorer.classes)
    settings.folds, settings.threads = scorer.n_folds, scorer.threads
    settings.entries, settings.block = info.entries, BLOCK
    settings.has_default = nonfinite_default is not None
    settings.default_value = float(nonfinite_default or 0.0)
    setup = _setup_function(inputs, scorer.symbol)
    setup(settings)
    pipeline = None
    start = time.perf_counter()
    try:
        pipeline = ROOT.htt_tmva_onepass.Pipeline(settings)
        pipeline.Start()
        try:
            filler.FillAll(pipeline, info.entries)
        except Exception as exc:  # a C++ exception through cppyy
            error = str(pipeline.Finish())
            why = error or str(exc).strip().splitlines()[-1].strip()
            why = why.removeprefix("runtime_error:").strip()  # a C++ exception's type
            raise InputFileError(
                f"scoring tree '{info.tree_path}' of '{info.path}' failed: {why}; nothing "
                "was written"
            ) from None
        error = str(pipeline.Finish())
        if error:  # pragma: no cover - a thread failing after its last block
            raise InputFileError(f"scoring tree '{info.tree_path}' of '{info.path}': {error}")
        seconds = time.perf_counter() - start
        counts, order_hash = pipeline.Total(), int(pipeline.Hash())
        log.debug("scoring threads busy %.2f s", pipeline.ScoringSeconds())
    finally:
        if pipeline is not None:
            pipeline.Finish()
    where = f"tree '{info.tree_path}' in '{info.path}'"
    _check_counts(counts, scorer, info, where, event_branch, nonfinite_default)
    return Pass1Result(
        entries=info.entries,
        order_hash=order_hash,
        per_fold=[int(n) for n in counts.per_fold],
        nonfinite={v: int(n) for v, n in zip(scorer.variables, counts.nonfinite) if n},
        nonfinite_events=int(counts.nonfinite_events),
        seconds_read=0.0,
        seconds_predict=seconds,
    )


def event_kind(info: InputInfo) -> int:
    """How the C++ reads the event number: 0 signed, 1 unsigned 64-bit, 2 floating point."""
    return 2 if info.event_limit > 0 else (1 if info.event_unsigned else 0)


@cache
def _setup_function(inputs: str, symbol: str):
    """A declared C++ function that gives Settings the inputs and batch functions."""
    ROOT = root()
    name = f"set_{next(_ids)}"
    code = (
        f"namespace htt_tmva_onepass {{ inline void {name}(Settings& s) {{ s.inputs = &{inputs}; "
        f"s.batch = &{symbol}_batch; }} }}"
    )
    if not ROOT.gInterpreter.Declare(code):  # pragma: no cover - only if the C++ is broken
        raise ModelError("could not compile the one-pass scorer")
    return getattr(ROOT.htt_tmva_onepass, name)


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
