"""The Python scoring back-end: read the input variables and event numbers in chunks, score
each event with the model of its fold and hand the scores (classes, max_score, max_index)
of each chunk, in entry order, to the C++ filler (:class:`pipeline.Filler`).

Only the needed columns are read, one chunk of entries at a time, so memory does not grow
with the number of events; inference runs batched, one ``predict`` per fold and chunk.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import numpy as np

from htt_tmva._progress import tracked
from htt_tmva._root import input_path
from htt_tmva.application.models import FoldModels
from htt_tmva.errors import InputFileError, InvalidEventNumberError, ModelError, NonFiniteError

log = logging.getLogger(__name__)


def score_names(prefix: str, classes: Sequence[str]) -> list[str]:
    """The new branches: one score per class, then max_score and max_index."""
    return [f"{prefix}{c}" for c in classes] + [f"{prefix}max_score", f"{prefix}max_index"]


#: set by the wrapper of an ``htt-tmva submit`` job to its job folder's token; the record
#: names it, so that ``--resubmit`` tells this job's outputs from older ones
JOB_TOKEN_VARIABLE = "HTT_TMVA_JOB"


def record_path(output: str | Path, prefix: str) -> Path:
    """The record written beside a committed output: configs, input, tree, mode, batch job."""
    output = Path(output)
    return output.with_name(f"{output.stem}.{prefix}application.yaml")


def reader_columns(variables: Sequence[str], event_branch: str, float_event: bool) -> list[str]:
    """Columns pass 1 reads as doubles: the variables, and a floating-point event branch last."""
    return [*variables, *([event_branch] if float_event else [])]


class ChunkReader:
    """Reads ranges of entries of numeric columns (as float64) and the event number: int64,
    or uint64 with ``unsigned_events`` (a ULong64_t branch, whose values >= 2^63 would wrap)."""

    def __init__(
        self,
        path: Path,
        tree_path: str,
        columns: Sequence[str],
        event_branch: str,
        unsigned_events: bool = False,
    ):
        self.path, self.tree_path, self.columns = input_path(path), tree_path, list(columns)
        self.unsigned_events = unsigned_events
        try:
            from htt_tmva.application.pipeline import declare

            self.cpp = declare().LeafReader(str(path), tree_path, self.columns, event_branch)
        except Exception as exc:  # a C++ exception through cppyy
            raise self._error(exc) from None

    def read(self, begin: int, end: int) -> tuple[np.ndarray, np.ndarray]:
        """Values (n, n_columns) and event numbers of entries [begin, end), in entry order."""
        values = np.empty((end - begin, max(len(self.columns), 1)), dtype=np.float64)
        events = np.empty(end - begin, dtype=np.int64)
        try:
            self.cpp.Read(begin, end, values, events)
        except Exception as exc:  # a C++ exception through cppyy
            raise self._error(exc) from None
        if self.unsigned_events:  # the C++ reader copies the 64 bits unchanged
            events = events.view(np.uint64)
        return values[:, : len(self.columns)], events

    def _error(self, exc: Exception) -> InputFileError:
        why = str(exc).strip().splitlines()[-1]
        return InputFileError(f"reading tree '{self.tree_path}' of '{self.path}' failed: {why}")


def event_hash(entries: np.ndarray, events: np.ndarray) -> int:
    """Order-sensitive hash of (entry, event) pairs: a splitmix64 finaliser of each pair,
    summed modulo 2^64 (``PairHash`` in the C++). Events count by their 64 bits."""
    events = events.astype(np.int64, copy=False) if events.dtype != np.uint64 else events
    events = events.view(np.uint64)
    with np.errstate(over="ignore"):
        z = entries.astype(np.uint64) * np.uint64(0x9E3779B97F4A7C15) + events
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        z = z ^ (z >> np.uint64(31))
        return int(z.sum(dtype=np.uint64))


def chunks(n_entries: int, chunk_size: int) -> Iterator[tuple[int, int]]:
    """[begin, end) ranges of ``chunk_size`` entries covering n_entries."""
    for begin in range(0, n_entries, chunk_size):
        yield begin, min(n_entries, begin + chunk_size)


def check_float_events(raw: np.ndarray, branch: str, limit: int, where: str) -> None:
    """Refuse floating-point event numbers that are not exact integers (folds would be wrong)."""
    bad = ~np.isfinite(raw) | (raw != np.trunc(raw)) | (np.abs(raw) > limit)
    if bad.any():
        raise InvalidEventNumberError(
            f"event branch '{branch}' of {where} is floating point and holds {int(bad.sum())} "
            f"values that are not integers up to {limit} (e.g. {raw[bad][0]!r}); folds cannot be "
            "assigned exactly: use an integer event branch"
        )


def folds_of(events: np.ndarray, n_folds: int) -> np.ndarray:
    """Fold of each event, ``((e % k) + k) % k`` like the dataset step: numpy's modulo has
    the sign of k, and uint64 events (ULong64_t branches) are taken modulo k unsigned."""
    return np.mod(events, np.array(n_folds, dtype=events.dtype))


@dataclass
class Pass1Result:
    """What pass 1 saw: entries scored, the order hash of (entry, event), per-fold counts,
    events with non-finite inputs (per variable) and with non-finite scores (per fold)."""

    entries: int = 0
    order_hash: int = 0
    per_fold: list[int] = field(default_factory=list)
    nonfinite: dict[str, int] = field(default_factory=dict)
    nonfinite_events: int = 0
    nonfinite_scores: list[int] = field(default_factory=list)
    seconds_read: float = 0.0
    seconds_predict: float = 0.0


# max_index of events without a valid score (non-finite inputs with --nonfinite-default):
# no class has it, so a ``max_index==0`` cut never selects them
NO_CLASS = -1

# Events per predict call: the numpy Dense pass is fastest on cache-sized batches, XGBoost
# on large ones (its DMatrix has a fixed cost per call).
INFERENCE_BATCH = {"keras": 32768}


def batched_predict(model, x: np.ndarray, n_classes: int, path: Path) -> np.ndarray:
    """``model.predict`` over batches of the engine's preferred size; shape checked."""
    batch = INFERENCE_BATCH.get(model.manifest.engine, len(x))
    parts = [np.asarray(model.predict(x[i : i + batch])) for i in range(0, len(x), batch)]
    predicted = parts[0] if len(parts) == 1 else np.concatenate(parts)
    if predicted.shape != (len(x), n_classes):
        raise ModelError(
            f"model '{path}' returned scores of shape {predicted.shape} for {len(x)} "
            f"events and {n_classes} classes"
        )
    return predicted


def predict_chunk(
    models: FoldModels, x: np.ndarray, folds: np.ndarray, good: np.ndarray, default: Optional[float]
) -> tuple[np.ndarray, list[int], list[int]]:
    """Scores (n, n_classes + 2) float32 of a chunk: each event by the model of its fold.

    Returns the scores, the events scored per fold and, per fold, the events whose scores
    are not finite (NaN or inf from the model). Events with non-finite inputs (``~good``)
    get ``default`` as every score and max_index NO_CLASS."""
    n_classes = len(models.classes)
    scores = np.empty((len(x), n_classes + 2), dtype=np.float32)
    counts, bad_scores = [], []
    for fold, model in enumerate(models.models):
        index = np.flatnonzero((folds == fold) & good)
        counts.append(len(index))
        if len(index) == 0:
            bad_scores.append(0)
            continue
        predicted = batched_predict(model, x[index], n_classes, models.paths[fold])
        scores[index, :n_classes] = predicted
        bad_scores.append(int((~np.isfinite(scores[index, :n_classes]).all(axis=1)).sum()))
    body = scores[:, :n_classes]
    scores[:, n_classes] = body.max(axis=1)
    scores[:, n_classes + 1] = body.argmax(axis=1)
    if default is not None:
        scores[~good] = default
        scores[~good, n_classes + 1] = NO_CLASS
    return scores, counts, bad_scores


def _count_nonfinite(x: np.ndarray, variables: Sequence[str], result: Pass1Result) -> np.ndarray:
    finite = np.isfinite(x)
    good = finite.all(axis=1)
    n_bad = len(good) - int(good.sum())
    if n_bad:
        result.nonfinite_events += n_bad
        for i, name in enumerate(variables):
            bad = len(x) - int(finite[:, i].sum())
            if bad:
                result.nonfinite[name] = result.nonfinite.get(name, 0) + bad
    return good


def _nonfinite_error(result: Pass1Result, where: str) -> NonFiniteError:
    listed = ", ".join(f"'{v}' in {n} events" for v, n in result.nonfinite.items())
    return NonFiniteError(
        f"{result.nonfinite_events} of {result.entries} events of {where} have non-finite inputs "
        f"(NaN or inf): {listed}; nothing was written. Give --nonfinite-default VALUE to write "
        f"VALUE as every score of such events (and {NO_CLASS} as max_index)"
    )


def _nonfinite_scores_error(result: Pass1Result, models: FoldModels, where: str) -> ModelError:
    listed = ", ".join(
        f"{n} by '{models.paths[fold]}'" for fold, n in enumerate(result.nonfinite_scores) if n
    )
    return ModelError(
        f"{sum(result.nonfinite_scores)} of {result.entries} events of {where} got non-finite "
        f"scores (NaN or inf) from the model although their inputs are finite: {listed}; "
        "nothing was written. Check the inputs' ranges (e.g. values beyond the float32 range) "
        "and the model"
    )


def run_pass1(
    reader: ChunkReader,
    n_entries: int,
    models: FoldModels,
    event_branch: str,
    writer,
    chunk_size: int,
    nonfinite_default: Optional[float] = None,
    event_limit: int = 0,
) -> Pass1Result:
    """Score every entry and hand each chunk's event numbers and scores to
    ``writer.write(events, scores)``.

    Non-finite inputs without a default, and non-finite scores, stop the writing; the loop
    then goes on over the whole tree only to count them, and raises NonFiniteError (inputs)
    or ModelError (scores) with the counts. ``event_limit`` > 0: the event
    branch is floating point, exact up to that value (the reader reads it as its last column).
    """
    variables = models.variables  # the branches read; the models receive models.inputs
    where = f"tree '{reader.tree_path}' in '{reader.path}'"
    result = Pass1Result(per_fold=[0] * models.n_folds, nonfinite_scores=[0] * models.n_folds)
    aborted = False
    steps = tracked(chunks(n_entries, chunk_size), n_entries, "scoring", lambda c: c[0])
    for begin, end in steps:
        start = time.perf_counter()
        values, events = reader.read(begin, end)
        x = values[:, : len(variables)]
        if event_limit:
            check_float_events(values[:, -1], event_branch, event_limit, where)
        result.entries += end - begin
        result.seconds_read += time.perf_counter() - start
        if models.evaluator is not None:  # expressions: check the values the models get
            x = models.evaluator(x)
        good = _count_nonfinite(x, models.inputs, result)
        if result.nonfinite_events and nonfinite_default is None:
            aborted = True
            continue
        start = time.perf_counter()
        scores, counts, bad_scores = predict_chunk(
            models, x, folds_of(events, models.n_folds), good, nonfinite_default
        )
        result.seconds_predict += time.perf_counter() - start
        result.per_fold = [a + b for a, b in zip(result.per_fold, counts)]
        result.nonfinite_scores = [a + b for a, b in zip(result.nonfinite_scores, bad_scores)]
        aborted = aborted or any(bad_scores)
        if aborted:
            continue
        result.order_hash = (result.order_hash + event_hash(np.arange(begin, end), events)) % 2**64
        writer.write(events, scores)
    if aborted and result.nonfinite_events and nonfinite_default is None:
        raise _nonfinite_error(result, where)
    if aborted:
        raise _nonfinite_scores_error(result, models, where)
    if result.nonfinite_events:
        log.warning(
            "%d events of %s have non-finite inputs (%s): all their scores are set to %g, "
            "their max_index to %d",
            result.nonfinite_events,
            where,
            ", ".join(f"{v}: {n}" for v, n in result.nonfinite.items()),
            nonfinite_default,
            NO_CLASS,
        )
    return result
