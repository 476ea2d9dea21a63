"""Confusion-matrix arithmetic, ROC/AUC, TH2D round trip and figures on hand-made inputs."""

from __future__ import annotations

import json

import numpy as np
import pytest

from htt_tmva.evaluation.confusion import (
    REPRESENTATIONS,
    confusion_matrix,
    format_table,
    nan_to_none,
    representations,
)
from htt_tmva.evaluation.roc import one_vs_rest, roc_curve, thin

CLASSES = ["signal", "background_1", "background_2"]
NAN = np.nan

# true 0 -> predicted 0 (w 1), 1 (w 2); true 1 -> 1 (w 3 + 4); true 2 -> 0 (w 5)
Y_TRUE = np.array([0, 0, 1, 1, 2])
Y_PRED = np.array([0, 1, 1, 1, 0])
WEIGHTS = np.array([1.0, 2.0, 3.0, 4.0, 5.0])
MATRIX = np.array([[1.0, 2.0, 0.0], [0.0, 7.0, 0.0], [5.0, 0.0, 0.0]])


def assert_same(actual, expected):
    np.testing.assert_allclose(actual, expected, rtol=1e-12, equal_nan=True)


def test_confusion_matrix_sums_weights_true_rows_predicted_columns():
    assert_same(confusion_matrix(Y_TRUE, Y_PRED, WEIGHTS, 3), MATRIX)
    assert_same(confusion_matrix(Y_TRUE, Y_PRED, np.ones(5), 3).sum(), 5)


def test_confusion_matrix_refuses_bad_input():
    with pytest.raises(ValueError, match="outside"):
        confusion_matrix(Y_TRUE, Y_PRED + 2, WEIGHTS, 3)
    with pytest.raises(ValueError, match="same length"):
        confusion_matrix(Y_TRUE, Y_PRED[:-1], WEIGHTS, 3)


def test_all_representations_known_answers():
    views = representations(MATRIX, CLASSES)
    assert list(views) == list(REPRESENTATIONS)
    assert_same(views["standard"].values, MATRIX)
    assert_same(views["efficiency"].values, [[1 / 3, 2 / 3, 0], [0, 1, 0], [1, 0, 0]])
    assert_same(views["efficiency_diagonal"].values, [[1, 2, 0], [0, 1, 0], [NAN, NAN, NAN]])
    assert_same(views["purity"].values, [[1 / 6, 2 / 9, NAN], [0, 7 / 9, NAN], [5 / 6, 0, NAN]])
    assert_same(views["purity_diagonal"].values, [[1, 2 / 7, NAN], [0, 1, NAN], [5, 0, NAN]])
    assert views["standard"].notes == views["efficiency"].notes == []
    # the zero diagonal of background_2 and its empty predicted column are named
    assert len(views["efficiency_diagonal"].notes) == 1
    assert "'background_2'" in views["efficiency_diagonal"].notes[0]
    assert "diagonal element is zero" in views["efficiency_diagonal"].notes[0]
    assert "column of predicted class 'background_2'" in views["purity"].notes[0]
    assert "'background_2'" in views["purity_diagonal"].notes[0]


def test_efficiency_rows_and_purity_columns_sum_to_one():
    rng = np.random.default_rng(1)
    matrix = confusion_matrix(rng.integers(0, 4, 500), rng.integers(0, 4, 500), rng.random(500), 4)
    views = representations(matrix, ["a", "b", "c", "d"])
    assert_same(views["efficiency"].values.sum(axis=1), np.ones(4))
    assert_same(views["purity"].values.sum(axis=0), np.ones(4))
    assert_same(np.diag(views["efficiency_diagonal"].values), np.ones(4))
    assert_same(np.diag(views["purity_diagonal"].values), np.ones(4))


def test_zero_row_gives_nan_row_and_note():
    matrix = np.array([[2.0, 1.0], [0.0, 0.0]])
    views = representations(matrix, ["a", "b"])
    assert_same(views["efficiency"].values, [[2 / 3, 1 / 3], [NAN, NAN]])
    assert views["efficiency"].notes == [
        "row of true class 'b': the sum of weights is zero, its cells are n/a"
    ]
    assert_same(views["purity"].values, [[1, 1], [0, 0]])
    assert views["purity"].notes == []


def test_negative_denominator_is_computed_with_a_note():
    views = representations(np.array([[1.0, -3.0], [0.0, 1.0]]), ["a", "b"])
    assert_same(views["efficiency"].values[0], [-0.5, 1.5])
    assert "negative" in views["efficiency"].notes[0]


def test_table_and_json_show_undefined_cells():
    values = representations(MATRIX, CLASSES)["purity"].values
    table = format_table(values, CLASSES)
    lines = table.splitlines()
    assert len(lines) == 4 and lines[0].split()[-3:] == CLASSES
    assert lines[3].split()[0] == "background_2" and lines[3].split()[-1] == "n/a"
    listed = nan_to_none(values)
    assert listed[0][2] is None and listed[2][0] == pytest.approx(5 / 6)
    json.dumps(listed, allow_nan=False)


def mann_whitney(scores, positive, w):
    """Brute-force weighted AUC over all (positive, negative) pairs."""
    sp, wp = scores[positive], w[positive]
    sn, wn = scores[~positive], w[~positive]
    greater = (sp[:, None] > sn[None, :]) + 0.5 * (sp[:, None] == sn[None, :])
    return float(wp @ greater @ wn / (wp.sum() * wn.sum()))


def test_auc_known_cases():
    s = np.array([0.9, 0.4, 0.6, 0.1])
    pos = np.array([True, True, False, False])
    assert roc_curve(s, pos, np.ones(4)).auc == pytest.approx(0.75)
    # weights: positives 1, 3; negatives 2, 1 -> (1*2 + 1*1 + 3*1) / (4*3)
    assert roc_curve(s, pos, np.array([1.0, 3.0, 2.0, 1.0])).auc == pytest.approx(0.5)
    assert roc_curve(s, s > 0.5, np.ones(4)).auc == pytest.approx(1.0)
    assert roc_curve(-s, s > 0.5, np.ones(4)).auc == pytest.approx(0.0)
    assert roc_curve(np.zeros(4), pos, np.ones(4)).auc == pytest.approx(0.5)  # all tied


def test_roc_curve_runs_from_origin_to_one_with_one_point_per_threshold():
    s = np.array([0.9, 0.9, 0.5, 0.5, 0.2])
    roc = roc_curve(s, np.array([True, False, True, True, False]), np.ones(5))
    assert_same(roc.fpr, [0, 0.5, 0.5, 1])
    assert_same(roc.tpr, [0, 1 / 3, 1, 1])
    assert roc.note == ""


def test_auc_equals_weighted_mann_whitney_with_ties_and_negative_weights():
    rng = np.random.default_rng(7)
    s = np.round(rng.random(400), 2)  # many ties
    pos = rng.random(400) < 0.3
    s[pos] += 0.2
    w = rng.normal(1.0, 0.8, 400)  # about 10% negative
    roc = roc_curve(s, pos, w)
    assert (w < 0).any() and "negative weights" in roc.note
    assert roc.auc == pytest.approx(mann_whitney(s, pos, w), rel=1e-12)
    assert roc.fpr[-1] == pytest.approx(1) and roc.tpr[-1] == pytest.approx(1)


def test_auc_matches_sklearn_for_positive_weights():
    metrics = pytest.importorskip("sklearn.metrics")
    rng = np.random.default_rng(3)
    s, pos, w = rng.random(300), rng.random(300) < 0.5, rng.random(300)
    expected = metrics.roc_auc_score(pos, s, sample_weight=w)
    assert roc_curve(s, pos, w).auc == pytest.approx(expected, rel=1e-12)


def test_undefined_auc_is_nan_with_note():
    roc = roc_curve(np.array([0.1, 0.2]), np.array([False, False]), np.ones(2))
    assert np.isnan(roc.auc) and "signal total weight" in roc.note
    roc = roc_curve(np.array([0.1, 0.2]), np.array([True, False]), np.array([1.0, -1.0]))
    assert np.isnan(roc.auc) and "background total weight" in roc.note


def test_one_vs_rest_and_thin():
    rng = np.random.default_rng(5)
    y = rng.integers(0, 3, 5000)
    proba = rng.dirichlet(np.ones(3), 5000)
    proba[np.arange(5000), y] += 1.0
    proba /= proba.sum(axis=1, keepdims=True)
    rocs = one_vs_rest(proba, y, np.ones(5000))
    assert len(rocs) == 3 and all(r.auc > 0.9 for r in rocs)
    fpr, tpr = thin(rocs[0], points=100)
    assert len(fpr) <= 100 and (fpr[0], tpr[0]) == (0, 0) and (fpr[-1], tpr[-1]) == (1, 1)


def test_th2d_round_trip(tmp_path):
    from htt_tmva._root import open_root_file
    from htt_tmva.evaluation.root_output import read_matrices, write_matrices

    views = representations(MATRIX, CLASSES)
    path = tmp_path / "m.root"
    sumw2 = confusion_matrix(Y_TRUE, Y_PRED, WEIGHTS**2, 3)
    write_matrices(path, {n: (n, v.values) for n, v in views.items()}, CLASSES, sumw2)
    back = read_matrices(path)
    assert set(back) == set(REPRESENTATIONS)
    for name, view in views.items():
        labels, values = back[name]
        assert labels == CLASSES
        assert_same(values, np.nan_to_num(view.values, nan=0.0))
    tfile = open_root_file(path)
    hist = tfile.Get("standard")
    assert hist.GetYaxis().GetBinLabel(2) == "background_1"
    assert hist.GetBinContent(2, 2) == pytest.approx(7)  # x: predicted, y: true
    assert hist.GetBinError(2, 2) == pytest.approx(5)  # sqrt(3^2 + 4^2)
    tfile.Close()


def test_figures_are_written(tmp_path):
    from htt_tmva.evaluation import plots
    from htt_tmva.evaluation.render import Job, draw

    views = representations(MATRIX, CLASSES)
    rng = np.random.default_rng(2)
    y = rng.integers(0, 3, 900)
    proba = rng.dirichlet(np.ones(3), 900)
    rocs = one_vs_rest(proba, y, np.ones(900))
    weights = np.where(y == 2, 0.0, 1.0)
    edges, density, totals = plots.score_histograms(proba, y, weights)
    assert plots.score_notes(totals, CLASSES) == [
        "scores: true class 'background_2' has total weight 0, not drawn"
    ]
    purity = (views["purity"].values, CLASSES, "Purity", "fraction")
    jobs = [
        Job("confusion_figure", purity, [], {"fmt": ".3f"}),
        Job("roc_figure", ([("a", rocs), ("b", rocs)], CLASSES, "ROC"), []),
        Job("scores_figure", (edges, density, totals, CLASSES, "scores"), []),
    ]  # fmt: skip
    for stem, job in zip("crs", jobs):
        job.paths = [tmp_path / f"{stem}.png", tmp_path / f"{stem}.pdf"]
        draw(job)
        assert (tmp_path / f"{stem}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert (tmp_path / f"{stem}.pdf").read_bytes()[:5] == b"%PDF-"


def test_score_histograms_equal_numpy_histograms_per_class():
    from htt_tmva.evaluation.plots import score_histograms

    rng = np.random.default_rng(4)
    y = rng.integers(0, 4, 3000)
    proba = rng.dirichlet(np.ones(4), 3000)
    proba[0, 1] = 1.0  # a score on the upper edge goes to the last bin
    w = rng.normal(1.0, 0.5, 3000)
    edges, density, totals = score_histograms(proba, y, w, bins=20)
    for c in range(4):
        assert edges[c, 0] == np.floor(20 * proba[:, c].min()) / 20
        for t in range(4):
            mask = y == t
            counts, _ = np.histogram(proba[mask, c], bins=edges[c], weights=w[mask])
            expected = counts / (w[mask].sum() * np.diff(edges[c]))
            np.testing.assert_allclose(density[c, t], expected, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(totals, [w[y == t].sum() for t in range(4)])


def test_log_summary_is_narrow_at_21_classes_and_notes_are_said_once():
    from htt_tmva.evaluation.report import roc_notes, summary_table, tables_text

    classes = [f"stxs_class_{i:02d}" for i in range(21)]
    rng = np.random.default_rng(8)
    y = rng.integers(0, 21, 5000)
    proba = rng.dirichlet(np.ones(21), 5000)
    w = rng.normal(1.0, 0.8, 5000)  # negative weights in every class
    rocs = one_vs_rest(proba, y, w)
    views = representations(confusion_matrix(y, proba.argmax(axis=1), w, 21), classes)
    summary = summary_table(views, classes, [("keras", rocs), ("bdt", rocs)])
    assert len(summary.splitlines()) == 22 and max(map(len, summary.splitlines())) <= 80
    notes = roc_notes(classes, rocs)
    assert notes == ["ROC: negative weights: the curve may step backwards locally"]
    mixed = roc_notes(["a", "b", "c"], [rocs[0], roc_curve([0.1], [False], [1.0]), rocs[1]])
    assert len(mixed) == 2 and mixed[1].startswith("ROC of 'b': the signal total weight")
    tables = tables_text(views, classes, "head")
    assert tables.count("true \\ predicted") == 5 and "stxs_class_20" in tables
