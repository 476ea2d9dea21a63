"""Figures of the testing step: confusion matrices, ROC curves, score distributions.

matplotlib and mplhep are imported only here and only when a figure is drawn. Figures
are drawn on their own Agg canvas (no pyplot, no global backend change) in mplhep's
HEP style, and written as PNG and PDF.
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Optional

import numpy as np

from htt_tmva.evaluation.roc import Roc, thin

LINESTYLES = ("-", "--", ":", "-.")


@contextmanager
def _figure(width: float, height: float):
    """A new Agg figure in HEP style; the style stays active until it is saved."""
    import matplotlib.style
    import mplhep
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    with matplotlib.style.context(mplhep.style.CMS):
        fig = Figure(figsize=(width, height))
        FigureCanvasAgg(fig)
        yield fig


def save(fig, paths: Sequence[Path]) -> None:
    """Write ``fig`` to each path; the format is given explicitly (paths may be temporary)."""
    for path, fmt in zip(paths, ("png", "pdf")):
        fig.savefig(path, format=fmt, dpi=100)


def confusion_figure(
    values: np.ndarray,
    classes: Sequence[str],
    title: str,
    colorbar: str,
    paths: Sequence[Path],
    fmt: str = ".3g",
    limits: Optional[tuple[float, float]] = None,
) -> None:
    """Matrix as coloured cells with their values written in; NaN cells are grey and 'n/a'.

    ``limits`` fixes the colour scale (e.g. (0, 1) for fractions); by default it spans the
    finite values (and 0)."""
    import matplotlib as mpl

    n = len(classes)
    size = max(9.0, 1.9 * n + 5.0)
    with _figure(size + 1.5, size) as fig:
        ax = fig.subplots()
        cmap = mpl.colormaps["Blues"].with_extremes(bad="lightgrey")
        masked = np.ma.masked_invalid(values)
        finite = values[np.isfinite(values)]
        vmin = min(0.0, float(finite.min())) if finite.size else 0.0
        vmax = float(finite.max()) if finite.size and finite.max() > vmin else vmin + 1.0
        if limits is not None:
            vmin, vmax = min(vmin, limits[0]), max(vmax, limits[1])
        image = ax.imshow(masked, cmap=cmap, vmin=vmin, vmax=vmax, origin="upper", aspect="equal")
        fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04).set_label(colorbar)
        for (i, j), v in np.ndenumerate(values):
            text = "n/a" if not np.isfinite(v) else format(v, fmt)
            dark = np.isfinite(v) and (v - vmin) > 0.55 * (vmax - vmin)
            ax.text(
                j,
                i,
                text,
                ha="center",
                va="center",
                fontsize=20,
                color="white" if dark else "black",
            )
        ax.set_xticks(
            range(n),
            classes,
            rotation=30 if n > 2 else 0,
            ha="right" if n > 2 else "center",
            rotation_mode="anchor",
        )
        ax.set_yticks(range(n), classes)
        ax.minorticks_off()
        ax.tick_params(length=0)
        ax.set_xlabel("predicted class")
        ax.set_ylabel("true class")
        ax.set_title(title, fontsize="medium", pad=12)
        fig.tight_layout()
        save(fig, paths)


def roc_figure(
    curves: Sequence[tuple[str, Sequence[str], Sequence[Roc]]],
    paths: Sequence[Path],
    title: str = "One-vs-rest ROC",
) -> None:
    """One-vs-rest ROC curves: colour per class, line style per model ``(label, classes, rocs)``."""
    with _figure(10.0, 10.0) as fig:
        ax = fig.subplots()
        ax.plot([0, 1], [0, 1], color="grey", linestyle=":", linewidth=1, label="random")
        for m, (model, classes, rocs) in enumerate(curves):
            for c, (cls, roc) in enumerate(zip(classes, rocs)):
                fpr, tpr = thin(roc)
                auc = "n/a" if not np.isfinite(roc.auc) else f"{roc.auc:.3f}"
                name = cls if len(curves) == 1 else f"{cls}, {model}"
                ax.plot(
                    fpr,
                    tpr,
                    linestyle=LINESTYLES[m % len(LINESTYLES)],
                    color=f"C{c % 10}",
                    label=f"{name} (AUC {auc})",
                )
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1.02)
        ax.set_xlabel("false positive rate (other classes)")
        ax.set_ylabel("true positive rate (class)")
        ax.set_title(title, fontsize="medium")
        ax.legend(loc="lower right", fontsize=14 if len(curves) * len(curves[0][1]) > 6 else 18)
        fig.tight_layout()
        save(fig, paths)


def score_figure(
    scores: np.ndarray,
    y_true: np.ndarray,
    weights: np.ndarray,
    classes: Sequence[str],
    output: str,
    paths: Sequence[Path],
    title: str = "",
    bins: int = 30,
) -> list[str]:
    """Normalised weighted distributions of one class output per true class; returns notes.

    The range is the scores' range rounded out to multiples of 0.05 (within [0, 1])."""
    import mplhep

    notes = []
    low = np.floor(20 * max(float(scores.min()), 0.0)) / 20 if len(scores) else 0.0
    high = np.ceil(20 * min(float(scores.max()), 1.0)) / 20 if len(scores) else 1.0
    edges = np.linspace(low, high if high > low else low + 0.05, bins + 1)
    with _figure(10.0, 8.0) as fig:
        ax = fig.subplots()
        for c, cls in enumerate(classes):
            mask = y_true == c
            total = float(weights[mask].sum())
            if total <= 0:
                notes.append(
                    f"score '{output}': true class '{cls}' has total weight {total:.4g}, not drawn"
                )
                continue
            counts, _ = np.histogram(
                np.clip(scores[mask], edges[0], edges[-1]), bins=edges, weights=weights[mask]
            )
            mplhep.histplot(
                counts / (total * np.diff(edges)),
                edges,
                ax=ax,
                label=f"true {cls}",
                color=f"C{c % 10}",
                linewidth=2,
            )
        ax.set_xlim(edges[0], edges[-1])
        ax.set_xlabel(f"{output} score")
        ax.set_ylabel("normalised weighted events")
        low, high = ax.get_ylim()
        ax.set_ylim(low, high + 0.3 * (high - low))  # room for the legend
        ax.set_title(title, fontsize="medium")
        ax.legend(fontsize=18)
        fig.tight_layout()
        save(fig, paths)
    return notes
