"""Balanced batches, as the classic trainer's ``--balance-batches`` made them.

Every batch draws ``per_class`` events of each class (uniformly, with replacement) and scales
the weights of each class's draw to sum to ``per_class``: each class weighs the same in every
step, and within a class the event weights keep their ratios. Class weights and the global
weight scale cancel in this normalisation, as in the classic trainer.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np


def class_members(y: np.ndarray, n_classes: int) -> list[np.ndarray]:
    """Indices of the events of each class."""
    return [np.flatnonzero(y == c) for c in range(n_classes)]


def balanced_batches(
    x: np.ndarray,
    y: np.ndarray,
    w: np.ndarray,
    n_classes: int,
    per_class: int,
    seed: int,
) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Endless batches ``(x, one-hot y, weight)`` of ``per_class`` events of each class.

    A draw whose weights do not sum to a positive number (negative weights) is scaled by
    the class's mean weight over all its events instead.
    """
    rng = np.random.default_rng(seed)
    members = class_members(y, n_classes)
    means = [float(w[m].mean()) for m in members]
    one_hot = np.eye(n_classes, dtype=np.float32)
    while True:
        picks = [m[rng.integers(0, len(m), per_class)] for m in members]
        weights = []
        for pick, mean in zip(picks, means):
            drawn = w[pick].astype(np.float64)
            total = drawn.sum()
            weights.append(drawn * (per_class / total) if total > 0 else drawn / mean)
        index = np.concatenate(picks)
        yield (
            x[index],
            one_hot[y[index]],
            np.concatenate(weights).astype(np.float32),
        )


def class_balanced(y: np.ndarray, w: np.ndarray, n_classes: int) -> np.ndarray:
    """Weights scaled so that every class has the same sum and the mean is 1 (the
    validation weights of balanced training, as in the classic trainer)."""
    out = np.empty(len(w), dtype=np.float64)
    share = len(w) / n_classes
    for members in class_members(y, n_classes):
        total = w[members].sum()
        out[members] = w[members] * (share / total) if total > 0 else w[members]
    return out.astype(np.float32)
