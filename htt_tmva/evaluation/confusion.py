"""Weighted confusion matrices and their normalised representations (pure numpy).

Rows are the true class (the tree an event comes from), columns the predicted class
(the argmax of the scores); each cell is a sum of event weights. A ratio whose
denominator is zero is undefined: it is NaN here (null in JSON, "n/a" in figures) and
comes with a note that says why.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

#: Representation name -> (figure title, colour bar label).
REPRESENTATIONS = {
    "standard": ("Confusion matrix", "sum of event weights"),
    "efficiency": ("Efficiency: row / row sum", "fraction of the true class"),
    "efficiency_diagonal": (
        "Efficiency: row / diagonal element",
        "cell / diagonal element of its row",
    ),
    "purity": ("Purity: column / column sum", "fraction of the predicted class"),
    "purity_diagonal": (
        "Purity: column / diagonal element",
        "cell / diagonal element of its column",
    ),
}


@dataclass
class Representation:
    """One view of a confusion matrix: values (NaN where undefined) and notes on them."""

    name: str
    values: np.ndarray
    notes: list[str] = field(default_factory=list)


def confusion_matrix(
    y_true: np.ndarray, y_pred: np.ndarray, weights: np.ndarray, n_classes: int
) -> np.ndarray:
    """Sum of ``weights`` per (true class, predicted class): an (n_classes, n_classes) array."""
    y_true = np.asarray(y_true, dtype=np.int64)
    y_pred = np.asarray(y_pred, dtype=np.int64)
    weights = np.asarray(weights, dtype=np.float64)
    if not (len(y_true) == len(y_pred) == len(weights)):
        raise ValueError("y_true, y_pred and weights must have the same length")
    for name, y in (("y_true", y_true), ("y_pred", y_pred)):
        if len(y) and (y.min() < 0 or y.max() >= n_classes):
            raise ValueError(f"{name} holds class indices outside [0, {n_classes})")
    flat = np.bincount(y_true * n_classes + y_pred, weights=weights, minlength=n_classes**2)
    return flat.reshape(n_classes, n_classes)


def _divide(
    name: str,
    matrix: np.ndarray,
    denominators: np.ndarray,
    axis: int,
    what: str,
    classes: Sequence[str],
) -> Representation:
    """Divide rows (axis 0) or columns (axis 1) by ``denominators``; zero -> NaN plus a note."""
    line = "row" if axis == 0 else "column"
    kind = "true" if axis == 0 else "predicted"
    notes = []
    values = np.full(matrix.shape, np.nan)
    for i, d in enumerate(denominators):
        index = (i, slice(None)) if axis == 0 else (slice(None), i)
        if d == 0:
            notes.append(
                f"{line} of {kind} class '{classes[i]}': {what} is zero, its cells are n/a"
            )
            continue
        if d < 0:
            notes.append(
                f"{line} of {kind} class '{classes[i]}': {what} is negative ({d:.4g}) "
                "because of negative weights; its ratios may lie outside [0, 1]"
            )
        values[index] = matrix[index] / d
    return Representation(name, values, notes)


def representations(matrix: np.ndarray, classes: Sequence[str]) -> dict[str, Representation]:
    """All representations of ``matrix`` (see :data:`REPRESENTATIONS`), keyed by name."""
    matrix = np.asarray(matrix, dtype=np.float64)
    diagonal = np.diag(matrix)
    views = [
        Representation("standard", matrix.copy()),
        _divide("efficiency", matrix, matrix.sum(axis=1), 0, "the sum of weights", classes),
        _divide("efficiency_diagonal", matrix, diagonal, 0, "the diagonal element", classes),
        _divide("purity", matrix, matrix.sum(axis=0), 1, "the sum of weights", classes),
        _divide("purity_diagonal", matrix, diagonal, 1, "the diagonal element", classes),
    ]
    return {view.name: view for view in views}


def format_table(values: np.ndarray, classes: Sequence[str], fmt: str = ".4g") -> str:
    """A plain-text table (rows: true class, columns: predicted class); NaN shows as n/a."""
    head = "true \\ predicted"
    cells = [[("n/a" if not np.isfinite(v) else format(v, fmt)) for v in row] for row in values]
    first = max(len(head), *(len(c) for c in classes))
    width = max(8, *(len(c) for c in classes), *(len(c) for row in cells for c in row))
    lines = [f"{head:<{first}}  " + "  ".join(f"{c:>{width}}" for c in classes)]
    for cls, row in zip(classes, cells):
        lines.append(f"{cls:<{first}}  " + "  ".join(f"{c:>{width}}" for c in row))
    return "\n".join(lines)


def nan_to_none(values: np.ndarray) -> list:
    """Nested lists of floats with NaN as None (null in JSON)."""
    return [[None if not np.isfinite(v) else float(v) for v in row] for row in np.asarray(values)]
