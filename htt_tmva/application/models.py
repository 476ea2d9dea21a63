"""The models of the application, one per event fold, checked before any event is read."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from htt_tmva.config.stages import ApplicationConfig, TrainingConfig
from htt_tmva.data.folds import model_for_fold
from htt_tmva.engines.base import Model, checked_manifest
from htt_tmva.engines.manifest import (
    Manifest,
    locate_model_from,
    locate_preprocessing,
    preprocessing_from,
)
from htt_tmva.errors import ConfigError, FoldLeakError
from htt_tmva.expressions import ExpressionEvaluator, input_branches

log = logging.getLogger(__name__)


@dataclass
class FoldModels:
    """``models[j]`` scores the events of fold j (``event % n_folds == j``).

    ``variables`` are the branches read; ``inputs`` the values the models receive (the
    training variables, which may be expressions of those branches: ``evaluator`` computes
    them from the branches' values, else None)."""

    models: list[Model]
    paths: list[Path]
    variables: list[str]
    classes: list[str]
    inputs: list[str] = field(default_factory=list)
    evaluator: Optional[Callable] = None

    def __post_init__(self):
        self.inputs = self.inputs or list(self.variables)

    @property
    def n_folds(self) -> int:
        return len(self.models)


def _check_counts(application: ApplicationConfig, training: TrainingConfig, n_folds: int) -> None:
    source = application.source
    if len(application.classifiers) != n_folds:
        raise ConfigError(
            f"{source}: 'classifiers' lists {len(application.classifiers)} model(s), but the "
            f"dataset config has {n_folds} folds; give one model per event fold: entry i scores "
            f"the events with event % {n_folds} == i (classic two folds: the fold1 model first, "
            "then fold0)"
        )
    if training.folds != n_folds:
        raise ConfigError(
            f"the training config {training.source} has {training.folds} datasets "
            f"(folds), but the dataset config has {n_folds} folds"
        )
    pre = application.preprocessing
    if pre is not None and len(pre) != n_folds:
        raise ConfigError(
            f"{source}: 'preprocessing' lists {len(pre)} file(s); give one per entry "
            f"of 'classifiers' ({n_folds})"
        )


def checked_model_manifest(
    path: Path,
    event_fold: int,
    n_folds: int,
    training: TrainingConfig,
    engine: Optional[str],
    event_branch: Optional[str] = None,
) -> Manifest:
    """The manifest of the model that scores ``event_fold``, checked against config, folds
    and (where the manifest records it) the event branch that makes the folds."""
    manifest = checked_manifest(
        path, event_fold, n_folds, training.variables, training.classes, engine
    )
    if event_branch is not None and manifest.event_branch not in (None, event_branch):
        raise FoldLeakError(
            f"model '{path}' was trained on folds of the event branch "
            f"'{manifest.event_branch}', but the dataset config gives 'event_branch: "
            f"{event_branch}': its events would be split into other folds (and scored by models "
            f"trained on them). Use the dataset config the models were trained with"
        )
    if manifest.scores_fold != event_fold:
        log.warning(
            "model %s is listed for events of fold %d, but was made to score fold %d (the "
            "model of fold %d scores fold %d)",
            path.name,
            event_fold,
            manifest.scores_fold,
            model_for_fold(event_fold, n_folds),
            event_fold,
        )
    return manifest


def load_fold_models(
    application: ApplicationConfig,
    training: TrainingConfig,
    n_folds: int,
    engine: Optional[str] = None,
    reader: Optional[str] = None,
    event_branch: Optional[str] = None,
) -> FoldModels:
    """Check every manifest first (cheap), then load the models, one per event fold;
    ``event_branch``: the branch that gives the events' folds here."""
    _check_counts(application, training, n_folds)
    engine = engine or application.engine
    hint = (
        " (relative model paths are relative to the training config's output_path, or to "
        "the working directory where the model is there)"
    )
    from_cwd = application.classifiers_cwd or [None] * n_folds
    paths = [
        locate_model_from(path, cwd, hint) for path, cwd in zip(application.classifiers, from_cwd)
    ]
    pre = application.preprocessing or [None] * n_folds
    pre_cwd = application.preprocessing_cwd or [None] * n_folds
    pre = [
        None if p is None else preprocessing_from(p, cwd, path)
        for p, cwd, path in zip(pre, pre_cwd, paths)
    ]
    manifests = [
        checked_model_manifest(path, fold, n_folds, training, engine, event_branch)
        for fold, path in enumerate(paths)
    ]
    pre = [
        None if p is None else locate_preprocessing(p, manifest, path)
        for p, manifest, path in zip(pre, manifests, paths)
    ]
    from htt_tmva.tmva.reader import load_model_with

    if reader and not any(m.engine == "tmva" for m in manifests):
        log.warning("--reader %s applies to TMVA weight files only; no model here is one", reader)

    models = [
        load_model_with(
            reader if manifests[fold].engine == "tmva" else None,
            path,
            engine,
            pre[fold],
            manifests[fold],
        )
        for fold, path in enumerate(paths)
    ]
    variables = list(training.variables)
    columns = input_branches(variables, what="training variable")
    evaluator = None
    if columns != variables:
        evaluator = ExpressionEvaluator(variables, columns, what="training variable")
        log.info("variables %s are evaluated on the branches %s", variables, columns)
    for fold, path in enumerate(paths):
        log.info(
            "events of fold %d scored by %s (%s)", fold, path.name, models[fold].manifest.engine
        )
    return FoldModels(
        models=models,
        paths=paths,
        variables=columns,
        classes=list(training.classes),
        inputs=variables,
        evaluator=evaluator,
    )
