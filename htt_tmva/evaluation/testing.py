"""The testing step: evaluate the model of one fold on the fold it never saw.

Writes, under the training output_path, with names ``<output_prefix>fold<i>_...``:
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
from htt_tmva.config import TestingConfig, TrainingConfig, load_testing_config, load_training_config
from htt_tmva.data.arrays import read_fold_file
from htt_tmva.data.folds import check_never_seen, scored_fold
from htt_tmva.engines.base import load_model
from htt_tmva.engines.manifest import Manifest, check_compatible, read_manifest
from htt_tmva.errors import ConfigError, ModelError
from htt_tmva.evaluation.confusion import (
    REPRESENTATIONS,
    confusion_matrix,
    format_table,
    nan_to_none,
    representations,
)
from htt_tmva.evaluation.roc import Roc, one_vs_rest

log = logging.getLogger(__name__)

CHUNK_SIZE = 500_000  # events per predict call


@dataclass
class Scored:
    """The scores of one testing config's model on the tested fold."""

    label: str
    testing: TestingConfig
    model_path: Path
    manifest: Manifest
    proba: np.ndarray


def checked_model(
    testing: TestingConfig, training: TrainingConfig, fold: int
) -> tuple[Path, Manifest]:
    """The model of ``fold`` and its manifest, refused unless it fits the training config
    and never saw the fold it is to score."""
    k = training.folds
    for key in ("model", "preprocessing"):
        entries = getattr(testing, key)
        if entries is not None and len(entries) != k:
            raise ConfigError(
                f"{testing.source}: key '{key}' needs one entry per fold ({k}), got {len(entries)}"
            )
    path = testing.model[fold]
    manifest = read_manifest(path)
    if manifest.n_folds != k:
        raise ModelError(
            f"model '{path}' belongs to a {manifest.n_folds}-fold training, "
            f"but the training config has {k} folds"
        )
    check_compatible(manifest, path, training.variables, training.classes)
    check_never_seen(path.name, manifest.trained_on, scored_fold(fold, k), k)
    if manifest.fold != fold:
        raise ModelError(
            f"{testing.source}: entry {fold} of 'model' is '{path.name}', the model "
            f"of fold {manifest.fold}; list the models in fold order"
        )
    return path, manifest


def predict(model, x: np.ndarray, n_classes: int, chunk_size: int = CHUNK_SIZE) -> np.ndarray:
    """Scores of all events, in batches of ``chunk_size`` through the engine interface."""
    parts = [model.predict(x[start : start + chunk_size]) for start in range(0, len(x), chunk_size)]
    proba = np.concatenate(parts) if parts else np.empty((0, n_classes))
    if proba.shape != (len(x), n_classes):
        raise ModelError(
            f"model returned scores of shape {proba.shape}, expected ({len(x)}, {n_classes})"
        )
    if not np.isfinite(proba).all():
        raise ModelError(
            f"model returned non-finite scores for {int((~np.isfinite(proba)).any(1).sum())} events"
        )
    return proba


def _score(
    testing: TestingConfig,
    training: TrainingConfig,
    fold: int,
    x: np.ndarray,
    engine: Optional[str],
) -> Scored:
    path, manifest = checked_model(testing, training, fold)
    preprocessing = testing.preprocessing[fold] if testing.preprocessing else None
    model = load_model(path, engine or testing.engine, preprocessing)
    label = testing.output_prefix.strip("_-. ") or manifest.engine
    log.info("scoring %d events with '%s' (%s)", len(x), path.name, manifest.engine)
    return Scored(label, testing, path, manifest, predict(model, x, len(training.classes)))


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name)


def output_files(training: TrainingConfig, testing: TestingConfig, fold: int) -> dict[str, Path]:
    """Every output of the step, keyed by role (``confusion_<rep>.png``, ``json``, ...)."""
    stem = training.output_path / f"{testing.output_prefix}fold{fold}_"
    files = {}
    figures = [f"confusion_{r}" for r in REPRESENTATIONS] + ["roc"]
    figures += [f"scores_{_safe(c)}" for c in training.classes]
    for figure in figures:
        for ext in ("png", "pdf"):
            files[f"{figure}.{ext}"] = Path(f"{stem}{figure}.{ext}")
    files["json"] = Path(f"{stem}confusion.json")
    files["root"] = Path(f"{stem}confusion.root")
    files["config"] = Path(f"{stem}testing_config.yaml")
    return files


def _aucs(classes: Sequence[str], rocs: Sequence[Roc]) -> dict[str, Optional[float]]:
    return {c: (r.auc if np.isfinite(r.auc) else None) for c, r in zip(classes, rocs)}


def run_testing(
    training_config_path: str | Path,
    testing_config_path: str | Path,
    fold: int,
    engine: Optional[str] = None,
    compare: Sequence[str | Path] = (),
) -> dict:
    """Evaluate the model of ``fold`` on the fold it never saw; write all outputs.

    Models of ``compare`` configs (same fold, e.g. another engine) are scored on the same
    events with the same weights and drawn in the ROC figure. Returns the JSON summary.
    """
    from htt_tmva.evaluation import plots, root_output

    training = load_training_config(training_config_path)
    testing = load_testing_config(testing_config_path, training)
    k, classes = training.folds, training.classes
    if not 0 <= fold < k:
        raise ConfigError(
            f"fold {fold} does not exist: the training config has {k} folds (0..{k - 1})"
        )
    scored = scored_fold(fold, k)
    others = [load_testing_config(p, training) for p in compare]
    for other in [testing, *others]:
        checked_model(other, training, fold)  # refuse before reading data or loading models
    data = read_fold_file(
        training.datasets[scored], classes, training.variables, testing.weight_branch
    )
    main = _score(testing, training, fold, data.x, engine)
    results = [main] + [_score(o, training, fold, data.x, None) for o in others]
    labels = [r.label for r in results]
    for r in results:
        if labels.count(r.label) > 1:
            r.label = f"{r.label} ({r.testing.source.stem})"

    n = len(classes)
    matrix = confusion_matrix(data.y, main.proba.argmax(axis=1), data.w, n)
    sumw2 = confusion_matrix(data.y, main.proba.argmax(axis=1), data.w**2, n)
    views = representations(matrix, classes)
    rocs = [one_vs_rest(r.proba, data.y, data.w) for r in results]

    log.info(
        "model '%s' of fold %d tested on fold %d ('%s'), %d events, weights '%s'",
        main.model_path.name,
        fold,
        scored,
        training.datasets[scored].name,
        len(data),
        testing.weight_branch,
    )
    for name, view in views.items():
        log.info(
            "%s (rows: true class, columns: predicted class):\n%s",
            REPRESENTATIONS[name][0],
            format_table(view.values, classes),
        )
        for note in view.notes:
            log.warning("%s: %s", name, note)
    roc_notes = [f"ROC '{c}': {r.note}" for c, r in zip(classes, rocs[0]) if r.note]
    for r, roc in zip(results, rocs):
        log.info(
            "one-vs-rest AUC, %s: %s",
            r.label,
            ", ".join(f"{c} {x.auc:.4f}" for c, x in zip(classes, roc)),
        )

    summary = {
        "fold": fold,
        "scored_fold": scored,
        "n_folds": k,
        "model": str(main.model_path),
        "engine": main.manifest.engine,
        "dataset": str(training.datasets[scored]),
        "weight_branch": testing.weight_branch,
        "events": len(data),
        "sum_of_weights": float(data.w.sum()),
        "classes": list(classes),
        "axes": {"rows": "true class", "columns": "predicted class (argmax of the scores)"},
        "matrices": {name: nan_to_none(view.values) for name, view in views.items()},
        "sum_of_squared_weights": nan_to_none(sumw2),
        "notes": {
            **{name: view.notes for name, view in views.items()},
            "roc": roc_notes,
            "scores": [],
        },
        "auc": _aucs(classes, rocs[0]),
        "compare": [
            {
                "label": r.label,
                "model": str(r.model_path),
                "engine": r.manifest.engine,
                "testing_config": str(r.testing.source),
                "auc": _aucs(classes, roc),
            }
            for r, roc in zip(results[1:], rocs[1:])
        ],
        "training_config": str(training.source),
        "testing_config": str(testing.source),
        "config_hash": testing.hash,
    }

    files = output_files(training, testing, fold)
    with atomic_outputs(list(files.values())) as temps:
        tmp = dict(zip(files, temps))
        for name, view in views.items():
            title, colorbar = REPRESENTATIONS[name]
            plots.confusion_figure(
                view.values,
                classes,
                f"{title} ({main.label}, fold {fold})",
                colorbar,
                [tmp[f"confusion_{name}.png"], tmp[f"confusion_{name}.pdf"]],
                fmt=".3g" if name == "standard" else ".3f",
            )
        plots.roc_figure(
            [(r.label, classes, roc) for r, roc in zip(results, rocs)],
            [tmp["roc.png"], tmp["roc.pdf"]],
        )
        for c, cls in enumerate(classes):
            key = f"scores_{_safe(cls)}"
            summary["notes"]["scores"] += plots.score_figure(
                main.proba[:, c],
                data.y,
                data.w,
                classes,
                cls,
                [tmp[f"{key}.png"], tmp[f"{key}.pdf"]],
            )
        root_output.write_matrices(
            tmp["root"],
            {name: (REPRESENTATIONS[name][0], view.values) for name, view in views.items()},
            classes,
            sumw2,
        )
        with open(tmp["json"], "w") as f:
            json.dump(summary, f, indent=2, allow_nan=False)
        testing.write_resolved(tmp["config"])
    log.info(
        "testing outputs of fold %d written to '%s' (%s*)",
        fold,
        training.output_path,
        f"{testing.output_prefix}fold{fold}_",
    )
    return summary
