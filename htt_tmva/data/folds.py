"""The fold rule, in one place, and the never-seen-fold check.

With k folds, fold i holds the events with ``event % k == i``. The model of fold i is
trained on fold i only, and it scores (is tested on and applied to) fold ``(i + 1) % k``.
For the classic two folds this is the known rule: the model trained on even events
scores odd events and vice versa. Every event is scored by exactly one model, and that
model never saw it.
"""

from __future__ import annotations

from collections.abc import Sequence

from htt_tmva.errors import FoldLeakError

FLOAT_EXACT_LIMIT = 2**24  # above this a 32-bit float no longer holds every integer


def scored_fold(trained_fold: int, n_folds: int) -> int:
    """The fold that the model trained on ``trained_fold`` scores."""
    return (trained_fold + 1) % n_folds


def model_for_fold(event_fold: int, n_folds: int) -> int:
    """The training fold of the model that scores events of ``event_fold``."""
    return (event_fold - 1) % n_folds


def fold_expression(event_branch: str, n_folds: int, column_type: str = "Long64_t") -> str:
    """C++ expression giving the fold of an event; exact for integer branches (unsigned ones
    too) and for float branches holding integers up to 2^24 (checked separately)."""
    unsigned = column_type.startswith(("U", "unsigned")) or column_type in ("size_t", "uint64_t")
    value = f"static_cast<{'ULong64_t' if unsigned else 'Long64_t'}>({event_branch})"
    return f"((({value}) % {n_folds}) + {n_folds}) % {n_folds}"


def check_never_seen(model_name: str, trained_on: Sequence[int], fold: int, n_folds: int) -> None:
    """Refuse to score events of ``fold`` with a model that trained on that fold."""
    if fold in trained_on:
        raise FoldLeakError(
            f"model '{model_name}' was trained on fold(s) {list(trained_on)} and must not score "
            f"events of fold {fold}: that would test or apply it on its own training events; "
            f"events of fold {fold} are scored by the model of fold {model_for_fold(fold, n_folds)}"
        )
