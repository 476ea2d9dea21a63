"""Reading the class trees of a fold file into arrays (one RDataFrame AsNumpy per class)."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Optional

import numpy as np

from htt_tmva._root import branch_names, get_tree, input_path, open_root_file, root
from htt_tmva.engines.base import FoldData
from htt_tmva.errors import EmptySelectionError, NonFiniteError, branch_missing

log = logging.getLogger(__name__)


def read_fold_file(
    path: Path,
    classes: Sequence[str],
    variables: Sequence[str],
    weight_branch: str,
    class_weights: Optional[dict[str, float]] = None,
    scale: float = 1.0,
) -> FoldData:
    """Read ``variables`` and ``weight_branch`` of each class tree of a fold file.

    The class index of an event is the position of its tree in ``classes``. The event
    weight is ``weight_branch * class_weights[class] * scale``. Missing trees or
    branches, empty classes, non-finite values and a negative class total are refused.
    """
    ROOT = root()
    path = input_path(path)
    xs, ys, ws = [], [], []
    tfile = open_root_file(path)
    try:
        for index, cls in enumerate(classes):
            tree = get_tree(tfile, cls)
            names = branch_names(tree)
            for column in [*variables, weight_branch]:
                if column not in names:
                    raise branch_missing(column, cls, str(path), names)
            if tree.GetEntries() == 0:
                raise EmptySelectionError(f"class '{cls}' has no events in '{path}'")
            data = ROOT.RDataFrame(tree).AsNumpy([*variables, weight_branch])
            x = np.column_stack([np.asarray(data[v], dtype=np.float64) for v in variables])
            w = np.asarray(data[weight_branch], dtype=np.float64)
            _check_finite(x, w, variables, weight_branch, cls, path)
            w = w * (class_weights or {}).get(cls, 1.0) * scale
            _check_weights(w, cls, path)
            xs.append(x)
            ys.append(np.full(len(w), index, dtype=np.int64))
            ws.append(w)
    finally:
        tfile.Close()
    return FoldData(
        np.concatenate(xs), np.concatenate(ys), np.concatenate(ws), list(variables), list(classes)
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
