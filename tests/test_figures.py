"""Figures of the testing step at 3, 8 and 21 classes: size, distinct colours, no overlaps.

Bounding boxes come from matplotlib's own renderer (what is drawn), on synthetic scores."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from htt_tmva.evaluation import plots
from htt_tmva.evaluation.confusion import confusion_matrix, representations
from htt_tmva.evaluation.roc import one_vs_rest, thinned

STXS = [
    *(f"ggh_{j}_pth{lo}to{hi}" for j, lo, hi in [("0j", 0, 10), ("0j", 10, 200), ("1j", 0, 60)]),
    *(f"ggh_{j}_pth{lo}to{hi}" for j, lo, hi in [("1j", 60, 120), ("1j", 120, 200)]),
    *(f"ggh_2j_pth{lo}to{hi}" for lo, hi in [(0, 60), (60, 120), (120, 200)]),
    "ggh_pth200to300",
    "ggh_pth300toinf",
    "qqh_vbftopo_mjj350to700",
    "qqh_vbftopo_mjj700toinf",
    "qqh_vh_had",
    "qqh_rest",
    *["ztt", "zll", "w", "tt", "ss", "misc", "vv"],
]
CLASSES = {
    3: ["signal", "background_1", "background_2"],
    8: ["ggh", "qqh", "ztt", "zll", "w", "tt", "ss", "misc"],
    21: STXS,
}


def synthetic(n: int, events: int = 6000, seed: int = 1):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, n, events)
    logits = rng.normal(size=(events, n))
    logits[np.arange(events), y] += 1.5
    proba = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    return proba, y, rng.exponential(1.0, events)


def drawn(builder, *args, **kwargs):
    """Build and draw a figure as it is saved; return it with its renderer."""
    import matplotlib as mpl

    with mpl.rc_context(plots.STYLE):
        fig = builder(*args, **kwargs)
        fig.canvas.draw()
    return fig, fig.canvas.get_renderer()


def lab(colour) -> np.ndarray:
    """CIELAB of a matplotlib colour (D65)."""
    from matplotlib.colors import to_rgb

    rgb = np.array(to_rgb(colour))
    rgb = np.where(rgb > 0.04045, ((rgb + 0.055) / 1.055) ** 2.4, rgb / 12.92)
    m = np.array([[0.4124, 0.3576, 0.1805], [0.2126, 0.7152, 0.0722], [0.0193, 0.1192, 0.9505]])
    xyz = m @ rgb / np.array([0.95047, 1.0, 1.08883])
    f = np.where(xyz > 0.008856, np.cbrt(xyz), 7.787 * xyz + 16 / 116)
    return np.array([116 * f[1] - 16, 500 * (f[0] - f[1]), 200 * (f[1] - f[2])])


def min_distance(colours) -> float:
    return min(np.linalg.norm(lab(a) - lab(b)) for a, b in itertools.combinations(colours, 2))


def assert_apart(fig, renderer, boxes):
    """Title, legends and labels lie inside the figure and overlap no axes."""
    figure_box = fig.bbox
    axes = [ax.get_window_extent(renderer) for ax in fig.axes if ax.axison]
    for name, box in boxes:
        assert figure_box.x0 - 1 <= box.x0 and box.x1 <= figure_box.x1 + 1, name
        assert figure_box.y0 - 1 <= box.y0 and box.y1 <= figure_box.y1 + 1, name
        for ax_box in axes:
            assert not box.overlaps(ax_box), f"{name} overlaps an axes"


def test_palette_has_21_distinct_colours():
    assert len(set(plots.PALETTE)) == 21
    assert min_distance(plots.PALETTE) > 25  # CIE76 ΔE: clearly different colours


@pytest.mark.parametrize("n", [3, 8, 21])
def test_roc_panels_distinct_colours_models_by_line_style_legend_outside(n):
    classes = CLASSES[n]
    proba, y, w = synthetic(n)
    other = 0.7 * proba + 0.3 * np.roll(proba, 1, axis=0)
    curves = [
        (model, [thinned(r) for r in one_vs_rest(p, y, w)])
        for model, p in (("keras", proba), ("bdt", other))
    ]
    fig, renderer = drawn(plots.roc_figure, curves, classes, "One-vs-rest ROC (keras, bdt)")
    panels = [ax for ax in fig.axes if ax.axison]
    assert len(panels) == n
    colours = []
    for ax, cls in zip(panels, classes):
        assert ax.get_title() == cls
        curves_here = [line for line in ax.get_lines() if line.get_color() != "grey"]
        assert len(curves_here) == 2  # both models, same class colour, two line styles
        assert len({line.get_linestyle() for line in curves_here}) == 2
        colours.append(curves_here[0].get_color())
        assert "keras" in ax.texts[0].get_text() and "bdt" in ax.texts[0].get_text()
    assert min_distance(colours) > 25
    (legend,) = fig.legends
    assert [t.get_text() for t in legend.get_texts()] == ["keras", "bdt", "random"]
    assert_apart(
        fig,
        renderer,
        [
            ("legend", legend.get_window_extent(renderer)),
            ("title", fig._suptitle.get_window_extent(renderer)),
            ("x label", fig._supxlabel.get_window_extent(renderer)),
            ("y label", fig._supylabel.get_window_extent(renderer)),
        ],
    )
    width, height = fig.canvas.get_width_height()
    assert width <= 2800 and height <= 1800, (width, height)


@pytest.mark.parametrize("n", [3, 8, 21])
def test_score_panels_one_legend_of_true_classes_outside(n):
    classes = CLASSES[n]
    proba, y, w = synthetic(n)
    histograms = plots.score_histograms(proba, y, w)
    fig, renderer = drawn(plots.scores_figure, *histograms, classes, "Score distributions")
    panels = [ax for ax in fig.axes if ax.axison]
    assert [ax.get_title() for ax in panels] == [f"{c} output" for c in classes]
    colours = [patch.get_edgecolor() for patch in panels[0].patches]
    assert len(colours) == n and min_distance(colours) > 25
    (legend,) = fig.legends
    assert [t.get_text() for t in legend.get_texts()] == classes
    assert_apart(
        fig,
        renderer,
        [
            ("legend", legend.get_window_extent(renderer)),
            ("title", fig._suptitle.get_window_extent(renderer)),
        ],
    )


@pytest.mark.parametrize("n", [3, 8, 21])
@pytest.mark.parametrize("name", ["standard", "efficiency"])
def test_confusion_matrix_scales_with_classes_and_stays_readable(n, name):
    classes = CLASSES[n]
    proba, y, w = synthetic(n)
    view = representations(confusion_matrix(y, proba.argmax(axis=1), w * 1000, n), classes)[name]
    fmt = "compact" if name == "standard" else ".3f"
    fig, renderer = drawn(plots.confusion_figure, view.values, classes, "Matrix", "w", fmt=fmt)
    ax = fig.axes[0]
    width, height = fig.canvas.get_width_height()
    assert width <= 1800 and height <= 1800, (width, height)  # 21 classes: not 4640 px
    cell = ax.get_window_extent(renderer).width / n
    assert cell >= 50  # pixels at 100 %
    cells = [t for t in ax.texts]
    assert len(cells) == n * n
    assert min(t.get_fontsize() for t in cells) >= 8
    for text in cells:  # every value fits inside its cell
        box = text.get_window_extent(renderer)
        assert box.width < 0.95 * cell and box.height < 0.8 * cell, text.get_text()
    labels = [t for t in ax.get_yticklabels() if t.get_text()]
    boxes = [t.get_window_extent(renderer) for t in labels]
    assert not any(a.overlaps(b) for a, b in itertools.combinations(boxes, 2))
    x_boxes = [t.get_window_extent(renderer) for t in ax.get_xticklabels() if t.get_text()]
    assert all(box.x0 >= 0 and box.y0 >= 0 for box in x_boxes + boxes)  # not clipped
    title = fig._suptitle.get_window_extent(renderer)
    assert not title.overlaps(ax.get_window_extent(renderer)) and title.y1 <= height


@pytest.mark.parametrize("metrics", [("loss",), ("loss", "categorical_accuracy")])
def test_history_plot_title_fits_whole_epochs_no_accuracy_without_it(metrics):
    from htt_tmva.engines.keras import history_figure

    history = {}
    for m in metrics:
        history[m] = [1.0, 0.8, 0.7]
        history[f"val_{m}"] = [1.1, 0.9, 0.85]
    fig = history_figure(history, "a_rather_long_user_model_name:build, fold 0")
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    title = fig._suptitle
    assert ("accuracy" in title.get_text()) is False
    box = title.get_window_extent(renderer)
    assert box.x0 >= 0 and box.x1 <= fig.bbox.x1 and box.y1 <= fig.bbox.y1
    assert len(fig.axes) == len(metrics)
    assert ("accuracy" in " ".join(ax.get_ylabel() for ax in fig.axes)) == (len(metrics) == 2)
    for ax in fig.axes:
        assert not title.get_window_extent(renderer).overlaps(ax.get_window_extent(renderer))
        ticks = [t for t in ax.get_xticks() if 1 <= t <= 3]
        assert ticks and all(float(t).is_integer() for t in ticks)
