"""The testing step: evaluate the model of one fold on the fold it never saw.

Writes, under the training output_path, with names ``<output_prefix>fold<i>_...``
(without ``output_prefix``: ``<engine>_<model name>_fold<i>_...``, see :func:`output_stem`):
confusion matrices in five representations (PNG, PDF), one-vs-rest ROC curves and
score distributions (PNG, PDF), all numbers in a JSON file, the matrices as TH2D in a
ROOT file, and the resolved testing config. All files are written atomically together.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np

from htt_tmva._files import atomic_outputs
from htt_tmva._progress import tracked
from htt_tmva.config import TestingConfig, TrainingConfig, load_testing_config, load_training_config
from htt_tmva.data.arrays import read_fold_file
from htt_tmva.data.fold_identity import ExpectedFold
from htt_tmva.data.folds import scored_fold
from htt_tmva.engines.base import FoldData, checked_manifest, load_model
from htt_tmva.engines.manifest import Manifest, locate_model
from htt_tmva.errors import ConfigError, ModelError, OutputError
from htt_tmva.evaluation.confusion import (
    REPRESENTATIONS,
    Representation,
    confusion_matrix,
    nan_to_none,
    representations,
)
from htt_tmva.evaluation.plots import score_histograms, score_notes
from htt_tmva.evaluation.render import Job, Renderer
from htt_tmva.evaluation.report import roc_notes, summary_table, tables_text
from htt_tmva.evaluation.roc import Roc, one_vs_rest, thinned

log = logging.getLogger(__name__)

CHUNK_SIZE = 500_000  # events per predict call
RELATIVE_HINT = " (relative model paths are relative to the training config's output_path)"


@dataclass
class Scored:
    """A testing config's model for the tested fold, checked, and (once scored) its scores."""

    label: str
    testing: TestingConfig
    model_path: Path
    manifest: Manifest
    engine: Optional[str] = None
    proba: Optional[np.ndarray] = None
    reader: Optional[str] = None


def checked_model(
    testing: TestingConfig, training: TrainingConfig, fold: int, engine: Optional[str] = None
) -> Scored:
    """The model of ``fold``, refused unless its manifest fits the training config (folds,
    variables, classes), the requested engine, and it never saw the fold it is to score."""
    k = training.folds
    for key in ("model", "preprocessing"):
        entries = getattr(testing, key)
        if entries is not None and len(entries) != k:
            raise ConfigError(
                f"{testing.source}: key '{key}' needs one entry per fold ({k}), got {len(entries)}"
            )
    path = locate_model(testing.model[fold], RELATIVE_HINT)
    engine = engine or testing.engine
    manifest = checked_manifest(
        path, scored_fold(fold, k), k, training.variables, training.classes, engine
    )
    if manifest.fold != fold:
        raise ModelError(
            f"{testing.source}: entry {fold} of 'model' is '{path.name}', the model "
            f"of fold {manifest.fold}; list the models in fold order"
        )
    label = testing.output_prefix.strip("_-. ") or manifest.engine
    return Scored(label, testing, path, manifest, engine)


def refuse_other_models_outputs(files: dict[str, Path], scored: Scored) -> None:
    """Refuse, before anything is read or written, to replace the outputs of another model:
    the JSON summary already under these names records which model it tested."""
    path = files["json"]
    try:
        other = json.loads(path.read_text()).get("model")
    except (OSError, ValueError, AttributeError):
        return  # no summary (or not ours): nothing recorded to protect
    if other is not None and Path(other) != scored.model_path:
        raise OutputError(
            f"'{path}' holds the testing outputs of model '{other}', not of "
            f"'{scored.model_path}'; set another 'output_prefix' in {scored.testing.source} "
            "(or remove those outputs) so that both are kept"
        )


def predict(model, x: np.ndarray, n_classes: int, chunk_size: int = CHUNK_SIZE) -> np.ndarray:
    """Scores of all events, in batches of ``chunk_size`` through the engine interface."""
    starts = tracked(range(0, len(x), chunk_size), len(x), "testing")
    parts = [model.predict(x[start : start + chunk_size]) for start in starts]
    proba = np.concatenate(parts) if parts else np.empty((0, n_classes))
    if proba.shape != (len(x), n_classes):
        raise ModelError(
            f"model returned scores of shape {proba.shape}, expected ({len(x)}, {n_classes})"
        )
    bad = int((~np.isfinite(proba)).any(axis=1).sum())
    if bad:
        raise ModelError(f"model returned non-finite scores for {bad} events")
    return proba


def _score(scored: Scored, fold: int, x: np.ndarray, n_classes: int) -> None:
    """Load the model and fill ``scored.proba``."""
    testing = scored.testing
    preprocessing = testing.preprocessing[fold] if testing.preprocessing else None
    if scored.reader == "tmva":
        from htt_tmva.tmva.reader import load_with_tmva_reader

        model = load_with_tmva_reader(scored.model_path)
    else:
        model = load_model(scored.model_path, scored.engine, preprocessing, scored.manifest)
    log.info(
        "scoring %d events with '%s' (%s)", len(x), scored.model_path.name, model.manifest.engine
    )
    scored.proba = predict(model, x, n_classes)


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name)


def model_name(model_file: str, engine: str, fold: int) -> str:
    """The model's name for file names: engine, then the model file's stem without its fold,
    engine and "model" parts (``fold0_keras_model_example.keras`` -> ``keras_example``,
    ``fold0_bdt_model.json`` -> ``bdt``, ``TMVAClassification_BDTG.weights.xml`` ->
    ``tmva_TMVAClassification_BDTG``)."""
    stem = Path(model_file).name.split(".")[0]
    skip = {f"fold{fold}", engine.lower(), "model"}
    parts = [t for t in re.split(r"[^A-Za-z0-9]+", stem) if t and t.lower() not in skip]
    return _safe("_".join([engine, *parts]))


def output_stem(testing: TestingConfig, manifest: Manifest, fold: int) -> str:
    """``<output_prefix>fold<i>_``; without a prefix the model's name takes its place, so that
    the outputs of two models in one folder never share a name."""
    prefix = testing.output_prefix or f"{model_name(manifest.model_file, manifest.engine, fold)}_"
    return f"{prefix}fold{fold}_"


def output_files(training: TrainingConfig, stem: str) -> dict[str, Path]:
    """Every output of the step, keyed by role (``confusion_<rep>.png``, ``json``, ...)."""
    stem = training.output_path / stem
    files = {}
    for figure in [*(f"confusion_{r}" for r in REPRESENTATIONS), "roc", "scores"]:
        for ext in ("png", "pdf"):
            files[f"{figure}.{ext}"] = Path(f"{stem}{figure}.{ext}")
    files["tables"] = Path(f"{stem}confusion.txt")
    files["json"] = Path(f"{stem}confusion.json")
    files["root"] = Path(f"{stem}confusion.root")
    files["config"] = Path(f"{stem}testing_config.yaml")
    return files


def _aucs(classes: Sequence[str], rocs: Sequence[Roc]) -> dict[str, Optional[float]]:
    return {c: (r.auc if np.isfinite(r.auc) else None) for c, r in zip(classes, rocs)}


@dataclass
class Evaluation:
    """Everything the step computed for one fold (the main model is ``results[0]``)."""

    training: TrainingConfig
    fold: int
    data: FoldData
    results: list[Scored]
    views: dict[str, Representation]
    sumw2: np.ndarray
    rocs: list[list[Roc]]  # thinned for drawing; AUCs from the full curves
    histograms: tuple[np.ndarray, np.ndarray, np.ndarray]  # edges, densities, class totals

    @property
    def scored_fold(self) -> int:
        return scored_fold(self.fold, self.training.folds)


def run_testing(
    training_config_path: str | Path,
    testing_config_path: str | Path,
    fold: int,
    engine: Optional[str] = None,
    compare: Sequence[str | Path] = (),
    reader: Optional[str] = None,
) -> dict:
    """Evaluate the model of ``fold`` on the fold it never saw; write all outputs.

    Models of ``compare`` configs (same fold, e.g. another engine) are scored on the same
    events with the same weights and drawn in the ROC figure. Returns the JSON summary.
    """
    training = load_training_config(training_config_path)
    testing = load_testing_config(testing_config_path, training)
    k = training.folds
    if not 0 <= fold < k:
        raise ConfigError(
            f"fold {fold} does not exist: the training config has {k} folds (0..{k - 1})"
        )
    # every model is checked before any data is read or any model is loaded
    results = [checked_model(testing, training, fold, engine)]
    results += [checked_model(load_testing_config(p, training), training, fold) for p in compare]
    files = output_files(training, output_stem(testing, results[0].manifest, fold))
    refuse_other_models_outputs(files, results[0])
    if reader and not any(r.manifest.engine == "tmva" for r in results):
        log.warning("--reader %s applies to TMVA weight files only; no model here is one", reader)
    elif reader == "tmva":
        from htt_tmva.tmva.reader import check_tmva_reader

        check_tmva_reader()
    # the figure workers start now (they load matplotlib while the data is read) and draw
    # each figure as soon as its numbers exist; every output is written under a temporary
    # name and all are renamed together at the end
    with Renderer(jobs=len(REPRESENTATIONS) + 2) as renderer:
        data = _read_tested_fold(training, testing, fold)
        with atomic_outputs(list(files.values())) as temps:
            tmp = dict(zip(files, temps))
            try:
                evaluation = _evaluate(training, fold, data, results, reader, renderer, tmp)
                _log(evaluation, files["tables"])
                summary = _summary(evaluation)
                _write(evaluation, summary, tmp)
                renderer.wait()
            finally:
                renderer.close()  # no worker writes once the temporary files are removed
    log.info(
        "testing outputs of fold %d written to '%s' (%s*)",
        fold,
        training.output_path,
        files["json"].name.removesuffix("confusion.json"),
    )
    return summary


def _read_tested_fold(training: TrainingConfig, testing: TestingConfig, fold: int) -> FoldData:
    """The fold that the model of ``fold`` never saw, checked to be that fold."""
    tested = scored_fold(fold, training.folds)
    expected = ExpectedFold(
        tested,
        training.folds,
        training.event_branch,
        role=f"the fold that the model of fold {fold} is tested on: entry {tested} of "
        f"'datasets' in {training.source}",
    )
    return read_fold_file(
        training.datasets[tested],
        training.classes,
        training.variables,
        testing.weight_branch,
        expected=expected,
    )


def _evaluate(
    training: TrainingConfig,
    fold: int,
    data: FoldData,
    results: list[Scored],
    reader: Optional[str],
    renderer: Renderer,
    temps: dict[str, Path],
) -> Evaluation:
    """Score the tested fold with every model and compute all numbers; each figure goes to
    ``renderer`` (drawn into ``temps``) as soon as its numbers exist."""
    classes = training.classes
    labels = [r.label for r in results]
    for r in results:
        r.reader = reader if r.manifest.engine == "tmva" else None
        if labels.count(r.label) > 1:
            r.label = f"{r.label} ({r.testing.source.stem})"

    main = results[0]
    _score(main, fold, data.x, len(classes))
    predicted = main.proba.argmax(axis=1)
    views = representations(confusion_matrix(data.y, predicted, data.w, len(classes)), classes)
    histograms = score_histograms(main.proba, data.y, data.w)
    renderer.submit(main_figure_jobs(main.label, classes, fold, views, histograms, temps))
    for r in results[1:]:
        _score(r, fold, data.x, len(classes))
    rocs = [[thinned(c) for c in one_vs_rest(r.proba, data.y, data.w)] for r in results]
    renderer.submit([roc_figure_job([r.label for r in results], rocs, classes, fold, temps)])
    return Evaluation(
        training,
        fold,
        data,
        results,
        views=views,
        sumw2=confusion_matrix(data.y, predicted, data.w**2, len(classes)),
        rocs=rocs,
        histograms=histograms,
    )


def _log(ev: Evaluation, tables: Path) -> None:
    """A summary per class (efficiency, purity, AUCs), the notes once each; the full
    matrices are in ``tables``, which the log names."""
    classes = ev.training.classes
    log.info("%s", _headline(ev))
    log.info(
        "per class (diagonals of the efficiency and purity matrices, one-vs-rest AUCs):\n%s",
        summary_table(ev.views, classes, [(r.label, rocs) for r, rocs in zip(ev.results, ev.rocs)]),
    )
    for name, view in ev.views.items():
        for note in view.notes:
            log.warning("%s: %s", name, note)
    for note in roc_notes(classes, ev.rocs[0]):
        log.warning("%s", note)
    log.info("all five matrices as tables: %s", tables)


def _headline(ev: Evaluation) -> str:
    main = ev.results[0]
    return (
        f"model '{main.model_path.name}' of fold {ev.fold} tested on fold {ev.scored_fold} "
        f"('{ev.training.datasets[ev.scored_fold].name}'), {len(ev.data)} events, "
        f"weights '{main.testing.weight_branch}'"
    )


def _summary(ev: Evaluation) -> dict:
    """The JSON document: matrices (NaN as null), class order, AUCs, provenance."""
    main, classes = ev.results[0], ev.training.classes
    return {
        "fold": ev.fold,
        "scored_fold": ev.scored_fold,
        "n_folds": ev.training.folds,
        "model": str(main.model_path),
        "engine": main.manifest.engine,
        "dataset": str(ev.training.datasets[ev.scored_fold]),
        "weight_branch": main.testing.weight_branch,
        "events": len(ev.data),
        "sum_of_weights": float(ev.data.w.sum()),
        "classes": list(classes),
        "axes": {"rows": "true class", "columns": "predicted class (argmax of the scores)"},
        "matrices": {name: nan_to_none(view.values) for name, view in ev.views.items()},
        "sum_of_squared_weights": nan_to_none(ev.sumw2),
        "notes": {
            **{name: view.notes for name, view in ev.views.items()},
            "roc": roc_notes(classes, ev.rocs[0]),
            "scores": score_notes(ev.histograms[2], classes),
        },
        "auc": _aucs(classes, ev.rocs[0]),
        "compare": [
            {
                "label": r.label,
                "model": str(r.model_path),
                "engine": r.manifest.engine,
                "testing_config": str(r.testing.source),
                "auc": _aucs(classes, rocs),
            }
            for r, rocs in zip(ev.results[1:], ev.rocs[1:])
        ],
        "training_config": str(ev.training.source),
        "testing_config": str(main.testing.source),
        "config_hash": main.testing.hash,
    }


def main_figure_jobs(
    label: str,
    classes: Sequence[str],
    fold: int,
    views: dict[str, Representation],
    histograms: tuple[np.ndarray, np.ndarray, np.ndarray],
    temps: dict[str, Path],
) -> list[Job]:
    """The figures of the main model (score distributions, the costliest, first; confusion
    matrices), as numbers to draw (see :mod:`htt_tmva.evaluation.render`)."""
    jobs = [
        Job(
            "scores_figure",
            (*histograms, classes, f"Score distributions ({label}, fold {fold})"),
            [temps["scores.png"], temps["scores.pdf"]],
        )
    ]
    for name, view in views.items():
        title, colorbar = REPRESENTATIONS[name]
        fractions = name in ("efficiency", "purity")
        jobs.append(
            Job(
                "confusion_figure",
                (view.values, classes, f"{title} ({label}, fold {fold})", colorbar),
                [temps[f"confusion_{name}.png"], temps[f"confusion_{name}.pdf"]],
                {"fmt": "compact" if name == "standard" else ".3f",
                 "limits": (0.0, 1.0) if fractions else None},
            )
        )  # fmt: skip
    return jobs


def roc_figure_job(
    labels: Sequence[str],
    rocs: Sequence[Sequence[Roc]],
    classes: Sequence[str],
    fold: int,
    temps: dict[str, Path],
) -> Job:
    """The ROC figure of every model (``labels``, ``rocs``: one list of curves per model)."""
    return Job(
        "roc_figure",
        (list(zip(labels, rocs)), classes, f"One-vs-rest ROC ({', '.join(labels)}, fold {fold})"),
        [temps["roc.png"], temps["roc.pdf"]],
    )


def _write(ev: Evaluation, summary: dict, temps: dict[str, Path]) -> None:
    """Tables, ROOT file, JSON and resolved config (to their temporary names)."""
    from htt_tmva.evaluation import root_output

    classes = ev.training.classes
    temps["tables"].write_text(tables_text(ev.views, classes, _headline(ev)))
    root_output.write_matrices(
        temps["root"],
        {name: (REPRESENTATIONS[name][0], view.values) for name, view in ev.views.items()},
        classes,
        ev.sumw2,
    )
    with open(temps["json"], "w") as f:
        json.dump(summary, f, indent=2, allow_nan=False)
    ev.results[0].testing.write_resolved(temps["config"])
