"""What the testing step says: a log summary that stays narrow at 21 classes, the full
tables for the text file, and notes grouped so that each is said once."""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np

from htt_tmva.evaluation.confusion import REPRESENTATIONS, Representation, format_table
from htt_tmva.evaluation.roc import Roc

log = logging.getLogger("htt_tmva.evaluation.testing")


def tables_text(views: dict[str, Representation], classes: Sequence[str], head: str) -> str:
    """Every representation as a full table (rows: true class, columns: predicted class)."""
    parts = [head]
    for name, view in views.items():
        parts.append(
            f"{REPRESENTATIONS[name][0]} ({name}; rows: true class, columns: predicted class)"
        )
        parts.append(format_table(view.values, classes))
    return "\n\n".join(parts) + "\n"


def summary_table(
    views: dict[str, Representation],
    classes: Sequence[str],
    aucs: Sequence[tuple[str, Sequence[Roc]]],
) -> str:
    """One line per class: its efficiency, purity and AUC of each model (narrow for any n)."""
    efficiency = np.diag(views["efficiency"].values)
    purity = np.diag(views["purity"].values)
    width = max(5, *(len(c) for c in classes))
    names = [label for label, _ in aucs]
    auc_heads = "".join(f"  {'AUC ' + n:>{max(9, len(n) + 4)}}" for n in names)
    lines = [f"{'class':<{width}}  {'efficiency':>10}  {'purity':>8}{auc_heads}"]
    for c, cls in enumerate(classes):
        cells = "".join(
            f"  {_number(rocs[c].auc):>{max(9, len(n) + 4)}}" for n, (_, rocs) in zip(names, aucs)
        )
        lines.append(
            f"{cls:<{width}}  {_number(efficiency[c]):>10}  {_number(purity[c]):>8}{cells}"
        )
    return "\n".join(lines)


def _number(value: float) -> str:
    return "n/a" if not np.isfinite(value) else f"{value:.4f}"


def grouped_notes(notes: Sequence[tuple[str, str]], what: str) -> list[str]:
    """``(class, note)`` pairs as one line per distinct note naming its classes."""
    by_note: dict[str, list[str]] = {}
    for cls, note in notes:
        if note:
            by_note.setdefault(note, []).append(cls)
    return [
        f"{what} of {_names(classes)}: {note}" if len(classes) < len(notes) else f"{what}: {note}"
        for note, classes in by_note.items()
    ]


def _names(classes: Sequence[str]) -> str:
    quoted = [f"'{c}'" for c in classes]
    return (
        ", ".join(quoted)
        if len(quoted) <= 6
        else f"{', '.join(quoted[:6])} and {len(quoted) - 6} more"
    )


def roc_notes(classes: Sequence[str], rocs: Sequence[Roc]) -> list[str]:
    """The ROC notes of one model, each said once (e.g. negative weights concern all classes)."""
    return grouped_notes(list(zip(classes, (r.note for r in rocs))), "ROC")
