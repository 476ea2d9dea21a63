"""Figures of the testing step, readable from 3 to 21 classes: confusion matrices, ROC curves
and score distributions.

matplotlib is imported only here and only when a figure is drawn. Figures are drawn on their
own Agg canvas (no pyplot, no global backend change) in a HEP look (ticks inside on all four
sides), and written as PNG and PDF. Classes have the colours of :data:`PALETTE` (21 distinct
colours, a qualitative palette), models the line styles of :data:`LINESTYLES`. Sizes and fonts
scale with the number of classes: a figure is readable when shown at 100 %.

Each ``*_figure`` function builds a figure from numbers only (no model, no ROOT), so that
figures can be drawn in worker processes (:mod:`htt_tmva.evaluation.render`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Optional

import numpy as np

#: tab10, then 11 colours picked for the largest CIELAB distance to those before (min ΔE 27).
PALETTE = (
    "#1f77b4",
    "#ff7f0e",
    "#2ca02c",
    "#d62728",
    "#9467bd",
    "#8c564b",
    "#e377c2",
    "#7f7f7f",
    "#bcbd22",
    "#17becf",
    "#00008b",
    "#222222",
    "#ffb6c1",
    "#556b2f",
    "#ff1493",
    "#c2b280",
    "#a1caf1",
    "#008856",
    "#b3446c",
    "#f99379",
    "#800000",
)
LINESTYLES = ("-", "--", ":", "-.")
DPI = 100
PANEL = 3.3  # inches per panel of the small multiples

STYLE = {
    "font.size": 12,
    "axes.titlesize": 12,
    "axes.labelsize": 12,
    "legend.fontsize": 11,
    "xtick.direction": "in",
    "ytick.direction": "in",
    "xtick.top": True,
    "ytick.right": True,
    "xtick.minor.visible": True,
    "ytick.minor.visible": True,
    "axes.linewidth": 1.0,
    "legend.frameon": False,
    "savefig.dpi": DPI,
}


def class_colour(index: int) -> str:
    """The colour of class ``index`` (the palette repeats beyond 21 classes)."""
    return PALETTE[index % len(PALETTE)]


def new_figure(width: float, height: float):
    """A new Agg figure of ``width`` x ``height`` inches in the HEP look."""

    import matplotlib as mpl
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    with mpl.rc_context(STYLE):
        fig = Figure(figsize=(width, height), dpi=DPI, layout=None)
        FigureCanvasAgg(fig)
    return fig


def save(fig, paths: Sequence[Path]) -> None:
    """Write ``fig`` to each path; the format is given explicitly (paths may be temporary)."""
    import matplotlib as mpl

    with mpl.rc_context(STYLE):
        for path, fmt in zip(paths, ("png", "pdf")):
            extra = {"pil_kwargs": {"compress_level": 1}} if fmt == "png" else {}
            fig.savefig(path, format=fmt, dpi=DPI, **extra)


def compact(value: float, fmt: str) -> str:
    """A cell value in at most about 6 characters: ``37.7k`` rather than ``3.77e+04``."""
    if not np.isfinite(value):
        return "n/a"
    if fmt != "compact":
        return format(value, fmt)
    for scale, unit in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(value) >= scale:
            return f"{value / scale:.3g}{unit}"
    return f"{value:.3g}"


def grid(n: int) -> tuple[int, int]:
    """Rows and columns of the small multiples of ``n`` panels (wider than tall)."""
    cols = min(n, math.ceil(math.sqrt(1.6 * n)))
    return math.ceil(n / cols), cols


def confusion_figure(
    values: np.ndarray,
    classes: Sequence[str],
    title: str,
    colorbar: str,
    fmt: str = "compact",
    limits: Optional[tuple[float, float]] = None,
):
    """Matrix as coloured cells with their values written in; NaN cells are grey and 'n/a'.

    Cells are 1.8 inches at 3 classes and shrink to 0.52 inches at 21, fonts with them.
    ``limits`` fixes the colour scale (e.g. (0, 1) for fractions); by default it spans the
    finite values (and 0)."""
    import matplotlib as mpl

    n = len(classes)
    cell = float(np.clip(11.0 / n, 0.52, 1.8))
    value_pt = float(np.clip(cell * 72 * 0.26, 8, 18))
    label_pt = float(np.clip(cell * 72 * 0.34, 10, 18))
    longest = max(len(c) for c in classes)
    label_in = 0.55 * label_pt / 72 * longest  # width of the longest class name
    left = label_in + 0.9
    bottom = 0.72 * label_in + 0.9  # names turned by 45 degrees
    width = left + n * cell + 1.6
    height = bottom + n * cell + 0.8
    fig = new_figure(width, height)
    ax = fig.add_axes((left / width, bottom / height, n * cell / width, n * cell / height))
    cmap = mpl.colormaps["Blues"].with_extremes(bad="lightgrey")
    finite = values[np.isfinite(values)]
    vmin = min(0.0, float(finite.min())) if finite.size else 0.0
    vmax = float(finite.max()) if finite.size and finite.max() > vmin else vmin + 1.0
    if limits is not None:
        vmin, vmax = min(vmin, limits[0]), max(vmax, limits[1])
    edges = np.arange(n + 1) - 0.5  # vector cells: crisp in the PDF, no image to encode
    image = ax.pcolormesh(
        edges, edges, np.ma.masked_invalid(values), cmap=cmap, vmin=vmin, vmax=vmax
    )
    ax.set_xlim(-0.5, n - 0.5)
    ax.set_ylim(n - 0.5, -0.5)  # the first class in the top row
    ax.set_aspect("equal")
    cax = fig.add_axes(
        ((left + n * cell + 0.2) / width, bottom / height, 0.25 / width, n * cell / height)
    )
    bar = fig.colorbar(image, cax=cax)
    bar.set_label(colorbar, fontsize=12)
    bar.ax.tick_params(labelsize=11)
    for (i, j), v in np.ndenumerate(values):
        dark = np.isfinite(v) and (v - vmin) > 0.55 * (vmax - vmin)
        ax.text(
            j,
            i,
            compact(v, fmt),
            ha="center",
            va="center",
            fontsize=value_pt,
            color="white" if dark else "black",
        )
    turned = 45 if n > 2 else 0
    ax.set_xticks(
        range(n),
        classes,
        rotation=turned,
        ha="right" if turned else "center",
        rotation_mode="anchor",
        fontsize=label_pt,
    )
    ax.set_yticks(range(n), classes, fontsize=label_pt)
    ax.minorticks_off()
    ax.tick_params(length=0, top=False, right=False)
    ax.set_xlabel("predicted class", fontsize=15)
    ax.set_ylabel("true class", fontsize=15)
    fig.suptitle(title, fontsize=16, x=(left + n * cell / 2) / width, y=1 - 0.2 / height, va="top")
    return fig


def small_multiples(n: int, legend_labels: Sequence[str], share: bool = False):
    """A figure with one panel per class (``grid``), laid out by hand in inches (a layout
    engine costs seconds at 21 panels) with room on the right for the shared legend."""
    rows, cols = grid(n)
    gap_x, gap_y = 0.75, 0.6
    left, bottom, top = 0.95, 0.75, 0.8
    legend = 0.9 + 0.56 * 11 / 72 * max(len(label) for label in legend_labels)
    width = left + cols * PANEL + (cols - 1) * gap_x + 0.2 + legend
    height = bottom + rows * PANEL + (rows - 1) * gap_y + top
    fig = new_figure(width, height)
    axes = fig.subplots(
        rows,
        cols,
        sharex=share,
        sharey=share,
        squeeze=False,
        gridspec_kw={
            "left": left / width,
            "right": (width - legend - 0.2) / width,
            "bottom": bottom / height,
            "top": 1 - top / height,
            "wspace": gap_x / PANEL,
            "hspace": gap_y / PANEL,
        },
    ).ravel()
    for ax in axes[n:]:
        ax.set_axis_off()
    for ax in axes[:n]:
        ax.minorticks_off()
        # the panels have no axis labels (the figure's are supxlabel and supylabel): fixed
        # label places spare matplotlib measuring every panel's tick labels at each draw
        ax.xaxis.set_label_coords(0.5, 0.0)
        ax.yaxis.set_label_coords(0.0, 0.5)
    return fig, axes[:n], (width - legend) / width


def _shared_legend(fig, handles, labels, x: float, title: str = "") -> None:
    """One legend for all panels, outside them on the right, at the height of the first row."""
    fig.legend(
        handles,
        labels,
        loc="upper left",
        bbox_to_anchor=(x, 1 - 0.8 / fig.get_figheight()),
        ncols=1,
        title=title or None,
        fontsize=11,
    )


def _titles(fig, title: str, xlabel: str, ylabel: str) -> None:
    height = fig.get_figheight()
    fig.suptitle(title, fontsize=15, y=1 - 0.15 / height, va="top")
    fig.supxlabel(xlabel, fontsize=13, y=0.1 / height, va="bottom")
    fig.supylabel(ylabel, fontsize=13, x=0.1 / fig.get_figwidth(), ha="left")


def roc_figure(curves: Sequence[tuple[str, Sequence]], classes: Sequence[str], title: str):
    """One panel per class: its one-vs-rest ROC curve of every model ``(label, rocs)``, in the
    class colour, models told apart by line style; each panel lists the AUCs, one legend
    names the models."""
    from matplotlib.lines import Line2D

    names = [label for label, _ in curves] + ["random"]
    fig, axes, right = small_multiples(len(classes), names, share=True)
    for c, cls in enumerate(classes):
        ax = axes[c]
        ax.plot([0, 1], [0, 1], color="grey", linestyle=":", linewidth=1)
        aucs = []
        for m, (model, rocs) in enumerate(curves):
            style = LINESTYLES[m % len(LINESTYLES)]
            ax.plot(rocs[c].fpr, rocs[c].tpr, linestyle=style, color=class_colour(c), lw=1.8)
            auc = rocs[c].auc
            aucs.append(f"{model}: {auc:.3f}" if np.isfinite(auc) else f"{model}: n/a")
        ax.text(
            0.96, 0.04, "AUC\n" + "\n".join(aucs), transform=ax.transAxes, ha="right",
            va="bottom", fontsize=10,
        )  # fmt: skip
        ax.set_title(cls, fontsize=12, y=1.0)  # y given: no search for tick labels above
    axes[0].set_xlim(0, 1)
    axes[0].set_ylim(0, 1.02)
    handles = [
        Line2D([], [], color="black", linestyle=LINESTYLES[m % len(LINESTYLES)], linewidth=1.8)
        for m in range(len(curves))
    ]
    handles.append(Line2D([], [], color="grey", linestyle=":", linewidth=1))
    _shared_legend(fig, handles, names, right)
    _titles(fig, title, "false positive rate (other classes)", "true positive rate (class)")
    return fig


def score_histograms(
    proba: np.ndarray, y_true: np.ndarray, weights: np.ndarray, bins: int = 30
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Weighted histograms of every class output per true class, in one pass.

    Returns edges (outputs, bins + 1), counts (outputs, true classes, bins) normalised to unit
    area per true class, and the total weight of each true class. The range of an output is
    its scores' range rounded out to multiples of 0.05 (within [0, 1])."""
    n_events, n = proba.shape
    if n_events:
        low = np.floor(20 * np.maximum(proba.min(axis=0), 0.0)) / 20
        high = np.ceil(20 * np.minimum(proba.max(axis=0), 1.0)) / 20
    else:
        low, high = np.zeros(n), np.ones(n)
    high = np.where(high > low, high, low + 0.05)
    edges = low[:, None] + (high - low)[:, None] * np.linspace(0, 1, bins + 1)
    counts = np.empty((n, n, bins))
    for c in range(n):  # one weighted bincount per output over (true class, bin)
        index = ((proba[:, c] - low[c]) / (high[c] - low[c]) * bins).astype(np.int64)
        np.clip(index, 0, bins - 1, out=index)  # scores on the upper edge: the last bin
        flat = np.bincount(y_true * bins + index, weights=weights, minlength=n * bins)
        counts[c] = flat.reshape(n, bins)
    totals = np.bincount(y_true, weights=weights, minlength=n)
    with np.errstate(divide="ignore", invalid="ignore"):
        density = counts / (totals[None, :, None] * np.diff(edges)[:, None, :])
    return edges, density, totals


def scores_figure(
    edges: np.ndarray,
    density: np.ndarray,
    totals: np.ndarray,
    classes: Sequence[str],
    title: str,
):
    """One panel per class output: its normalised weighted distribution for each true class
    (in the class colour; true classes with a total weight <= 0 are not drawn), one legend."""
    from matplotlib.lines import Line2D

    drawn = [t for t in range(len(classes)) if totals[t] > 0]
    fig, axes, right = small_multiples(len(classes), [classes[t] for t in drawn])
    many = len(classes) > 4  # log scale: the tails of many classes stay apart
    for c, cls in enumerate(classes):
        ax = axes[c]
        for t in drawn:
            own = t == c  # the output's own class on top, thicker
            ax.stairs(
                density[c, t], edges[c], color=class_colour(t), linewidth=2.4 if own else 1.2,
                zorder=3 if own else 2,
            )  # fmt: skip
        ax.set_xlim(edges[c, 0], edges[c, -1])
        if many:
            ax.set_yscale("log")
            ax.minorticks_off()
        else:
            ax.set_ylim(bottom=0)
        ax.set_title(f"{cls} output", fontsize=12, y=1.0)
    handles = [Line2D([], [], color=class_colour(t), linewidth=2) for t in drawn]
    _shared_legend(fig, handles, [classes[t] for t in drawn], right, title="true class")
    ylabel = "normalised weighted events" + (" (log scale)" if many else "")
    _titles(fig, title, "score", ylabel)
    return fig


def score_notes(totals: np.ndarray, classes: Sequence[str]) -> list[str]:
    """Notes on true classes left out of the score figure."""
    return [
        f"scores: true class '{cls}' has total weight {total:.4g}, not drawn"
        for cls, total in zip(classes, totals)
        if total <= 0
    ]
