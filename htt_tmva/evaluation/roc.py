"""Weighted one-vs-rest ROC curves and AUCs (pure numpy).

Negative event weights are kept, not clipped: the curve is built from cumulative sums
of weights, so it may step backwards locally, and the AUC (trapezoidal integral over
distinct score thresholds) equals the weighted Mann-Whitney statistic
``sum_{p,n} w_p w_n ([s_p > s_n] + 0.5 [s_p = s_n]) / (W_p W_n)`` exactly. It is
undefined (NaN) when the positive or negative total weight is not positive.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class Roc:
    """False and true positive rates at decreasing thresholds, from (0, 0) to (1, 1)."""

    fpr: np.ndarray
    tpr: np.ndarray
    auc: float
    note: str = ""


def roc_curve(scores: np.ndarray, positive: np.ndarray, weights: np.ndarray) -> Roc:
    """Weighted ROC curve of ``scores`` separating ``positive`` (bool) from the rest."""
    scores = np.asarray(scores, dtype=np.float64)
    positive = np.asarray(positive, dtype=bool)
    weights = np.asarray(weights, dtype=np.float64)
    total_pos = float(weights[positive].sum())
    total_neg = float(weights[~positive].sum())
    if total_pos <= 0 or total_neg <= 0:
        which = "signal" if total_pos <= 0 else "background"
        total = total_pos if total_pos <= 0 else total_neg
        return Roc(
            np.array([0.0, 1.0]),
            np.array([0.0, 1.0]),
            float("nan"),
            f"the {which} total weight is {total:.4g} (not positive): ROC and AUC undefined",
        )
    # the order within a group of equal scores does not matter (only group ends are kept),
    # so the faster unstable sort will do
    order = np.argsort(-scores)
    s, pos, w = scores[order], positive[order], weights[order]
    # the last event of each group of equal scores: one curve point per distinct threshold
    ends = np.r_[np.flatnonzero(np.diff(s)), len(s) - 1]
    true_positive = np.cumsum(np.where(pos, w, 0.0))[ends]
    tpr = np.r_[0.0, true_positive / total_pos]
    fpr = np.r_[0.0, (np.cumsum(w)[ends] - true_positive) / total_neg]
    auc = float(np.sum(np.diff(fpr) * (tpr[1:] + tpr[:-1]) / 2))
    note = "negative weights: the curve may step backwards locally" if (w < 0).any() else ""
    return Roc(fpr, tpr, auc, note)


def one_vs_rest(proba: np.ndarray, y_true: np.ndarray, weights: np.ndarray) -> list[Roc]:
    """ROC curve of each class output against all other true classes."""
    return [roc_curve(proba[:, c], y_true == c, weights) for c in range(proba.shape[1])]


def thin(roc: Roc, points: int = 2000) -> tuple[np.ndarray, np.ndarray]:
    """At most ``points`` evenly spaced curve points (first and last kept), for drawing."""
    if len(roc.fpr) <= points:
        return roc.fpr, roc.tpr
    index = np.unique(np.linspace(0, len(roc.fpr) - 1, points).round().astype(int))
    return roc.fpr[index], roc.tpr[index]


def thinned(roc: Roc, points: int = 500) -> Roc:
    """The same curve with at most ``points`` points (for figures), AUC and note kept."""
    fpr, tpr = thin(roc, points)
    return Roc(fpr, tpr, roc.auc, roc.note)
