"""Reading the class trees of a fold file into arrays (one RDataFrame AsNumpy per class)."""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Optional

import numpy as np

from htt_tmva._root import branch_names, get_tree, input_path, open_root_file, root
from htt_tmva.data.fold_identity import (
    EVENT_FOLD_COLUMN,
    ExpectedFold,
    check_event_folds,
    check_metadata,
    fold_metadata,
    origin,
    warn_unverified,
)
from htt_tmva.data.folds import fold_expression
from htt_tmva.engines.base import FoldData
from htt_tmva.errors import EmptySelectionError, NonFiniteError, branch_missing

log = logging.getLogger(__name__)

_PLAIN = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def read_fold_file(
    path: Path,
    classes: Sequence[str],
    variables: Sequence[str],
    weight_branch: str,
    class_weights: Optional[dict[str, float]] = None,
    scale: float = 1.0,
    expected: Optional[ExpectedFold] = None,
) -> FoldData:
    """Read ``variables`` and ``weight_branch`` of each class tree of a fold file.

    The class index of an event is the position of its tree in ``classes``. The event
    weight is ``weight_branch * class_weights[class] * scale``. Missing trees or
    branches, empty classes, non-finite values and a negative class total are refused.
    With ``expected``, a file that holds another fold is refused (by its ``htt_tmva_fold``
    record, else by its event numbers, read in the same pass); ``FoldData.origin`` then
    says how the fold was verified.
    """
    ROOT = root()
    path = input_path(path)
    xs, ys, ws = [], [], []
    tfile = open_root_file(path)
    record, by_events, unverified = None, False, []
    try:
        if expected is not None:
            meta = fold_metadata(tfile, path)
            if meta is not None:
                record = check_metadata(meta, expected, path)
            by_events = meta is None
        for index, cls in enumerate(classes):
            tree = get_tree(tfile, cls)
            names = branch_names(tree)
            expressions = [v for v in variables if v not in names and not _PLAIN.match(v)]
            for column in [*variables, weight_branch]:
                if column not in names and column not in expressions:
                    raise branch_missing(column, cls, str(path), names)
            if tree.GetEntries() == 0:
                raise EmptySelectionError(f"class '{cls}' has no events in '{path}'")
            frame, read = ROOT.RDataFrame(tree), {v: v for v in variables}
            if expressions:  # TMVA-style variables (``var1+var2``): evaluated, as float
                from htt_tmva.tmva.inputs import define_inputs

                frame, defined = define_inputs(
                    frame, expressions, tree=cls, file=str(path), columns=names
                )
                read.update(zip(expressions, defined))
            columns = [*dict.fromkeys(read.values()), weight_branch]
            check_events = by_events and expected.event_branch in names
            if check_events:
                event_type = str(frame.GetColumnType(expected.event_branch))
                frame = frame.Define(
                    EVENT_FOLD_COLUMN,
                    fold_expression(expected.event_branch, expected.folds, event_type),
                )
                columns.append(EVENT_FOLD_COLUMN)
            elif by_events:
                unverified.append(cls)
            data = frame.AsNumpy(columns)
            if check_events:
                check_event_folds(data[EVENT_FOLD_COLUMN], expected, cls, path)
            x = np.column_stack([np.asarray(data[read[v]], dtype=np.float64) for v in variables])
            w = np.asarray(data[weight_branch], dtype=np.float64)
            _check_finite(x, w, variables, weight_branch, cls, path)
            w = w * (class_weights or {}).get(cls, 1.0) * scale
            _check_weights(w, cls, path)
            xs.append(x)
            ys.append(np.full(len(w), index, dtype=np.int64))
            ws.append(w)
    finally:
        tfile.Close()
    if by_events:
        if unverified:
            warn_unverified(path, expected, unverified)
        checked = len(unverified) < len(classes)
        record = origin(
            path,
            expected,
            "event numbers" if checked else "not verified",
            expected.event_branch if checked else None,
            unverified,
        )
    if record is not None:
        log.debug("'%s' is %s (verified by %s)", path, expected.describe(), record["verified_by"])
    return FoldData(
        np.concatenate(xs),
        np.concatenate(ys),
        np.concatenate(ws),
        list(variables),
        list(classes),
        origin=record,
    )


def _check_finite(x, w, variables, weight_branch, cls, path) -> None:
    bad = [(v, int((~np.isfinite(x[:, i])).sum())) for i, v in enumerate(variables)]
    bad.append((weight_branch, int((~np.isfinite(w)).sum())))
    bad = [(v, n) for v, n in bad if n]
    if bad:
        listed = ", ".join(f"'{v}' in {n} events" for v, n in bad)
        raise NonFiniteError(
            f"class '{cls}' of '{path}' has non-finite values (NaN or inf): {listed}"
        )


def _check_weights(w, cls, path) -> None:
    total = float(w.sum())
    negative = int((w < 0).sum())
    if total <= 0:
        raise EmptySelectionError(
            f"class '{cls}' of '{path}' has a total weight of {total:.6g} (not positive): "
            "it can be neither trained on nor tested; check the weights and class_weights"
        )
    log.info(
        "class %s: %d events, sum of weights %.6g%s",
        cls,
        len(w),
        total,
        f", {negative} with negative weight" if negative else "",
    )
