"""``htt-tmva export --format tmva``: a bdt model as a TMVA BDTG weight file.

The file ``<model stem>.weights.xml`` is written next to the model with a manifest, so that
htt-tmva can check its folds when the file is used for testing or application. The other
formats are written by :mod:`htt_tmva.export.run`.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Optional

import numpy as np

from htt_tmva._files import atomic_outputs
from htt_tmva.config.stages import TrainingConfig, load_training_config
from htt_tmva.engines.manifest import manifest_path, read_manifest
from htt_tmva.errors import ConfigError, EngineError, HttTmvaError, OutputError

log = logging.getLogger(__name__)


def exported_path(model_path: Path) -> Path:
    """``fold0_bdt_model.json`` -> ``fold0_bdt_model.weights.xml`` (TMVA's naming)."""
    return Path(model_path).with_name(f"{Path(model_path).stem}.weights.xml")


def export_tmva_fold(
    training_config_path: str | Path,
    fold: int,
    engine: Optional[str] = None,
    overwrite: bool = False,
) -> Path:
    """The bdt model of ``fold`` as a TMVA BDTG weight file next to it; return the file."""
    training = load_training_config(training_config_path)
    engine = engine or training.engine
    if not 0 <= fold < training.folds:
        raise ConfigError(
            f"fold {fold} does not exist: the training config has {training.folds} folds "
            f"(0..{training.folds - 1})"
        )
    if engine != "bdt":
        raise EngineError(
            f"--format tmva writes gradient-boosted trees as a TMVA BDTG file: it needs the "
            f"engine 'bdt', not '{engine}' (give --engine bdt)"
        )
    from htt_tmva.engines.base import get_engine

    model_path = get_engine("bdt").model_path(training.output_path, fold, "")
    return export_bdt_to_tmva(training, model_path, overwrite)


def export_tmva_folds(
    training_config_path: str | Path,
    fold: Optional[int],
    engine: Optional[str] = None,
    overwrite: bool = False,
) -> list[Path]:
    """TMVA weight files of ``fold``, or of every fold with ``fold=None``."""
    if fold is not None:
        return [export_tmva_fold(training_config_path, fold, engine, overwrite)]
    folds = range(load_training_config(training_config_path).folds)
    return [export_tmva_fold(training_config_path, f, engine, overwrite) for f in folds]


def export_bdt_to_tmva(training: TrainingConfig, model_path: Path, overwrite: bool) -> Path:
    """The bdt model at ``model_path`` (checked against ``training``) as a TMVA BDTG file."""
    from htt_tmva.engines.manifest import check_compatible
    from htt_tmva.engines.xgboost_trees import read_forest
    from htt_tmva.tmva.writer import (
        VariableRange,
        bdtg_weights_xml,
        nan_path_differences,
    )

    manifest = read_manifest(model_path)
    if manifest.engine != "bdt":
        raise EngineError(
            f"model '{model_path}' was trained with engine '{manifest.engine}', not 'bdt'"
        )
    check_compatible(manifest, model_path, training.variables, training.classes)
    target = exported_path(model_path)
    target_manifest = manifest_path(target)
    if target.exists() and not overwrite:
        raise OutputError(f"'{target}' exists already; give --overwrite to replace it")

    from htt_tmva.engines.bdt import import_xgboost

    booster = import_xgboost().Booster()
    booster.load_model(str(model_path))
    forest = read_forest(booster, manifest.details.get("best_iteration"), str(model_path))
    if forest.n_features != len(manifest.variables):
        raise HttTmvaError(
            f"model '{model_path}' has {forest.n_features} inputs, its manifest lists "
            f"{len(manifest.variables)} variables"
        )
    ranges, n_events = _variable_ranges(training, manifest.fold, forest)
    options = dict(manifest.details.get("tmva_options") or vars(training.bdt))
    options["NTrees"] = forest.rounds + 1  # the base-margin round comes first
    text = bdtg_weights_xml(
        forest,
        [VariableRange(v, lo, hi) for v, (lo, hi) in zip(manifest.variables, ranges)],
        manifest.classes,
        options,
        n_events=n_events,
    )
    exported = _exported_manifest(manifest, model_path, target)
    with atomic_outputs([target, target_manifest]) as (tmp_xml, tmp_manifest):
        tmp_xml.write_text(text)
        exported.write(tmp_manifest)
    differ = nan_path_differences(forest)
    log.info(
        "wrote %s: TMVA BDTG (Grad, multiclass), %d classes x %d boosting rounds "
        "(%d trees, the first round holds XGBoost's base margins), variables %s",
        target,
        forest.n_classes,
        forest.rounds + 1,
        (forest.rounds + 1) * forest.n_classes,
        manifest.variables,
    )
    if differ:
        log.info(
            "%s: at %d cut nodes XGBoost sends missing values (NaN) right, where TMVA sends "
            "them left; both agree on every finite input",
            target.name,
            differ,
        )
    return target


def _exported_manifest(manifest, model_path: Path, target: Path):
    """The model's manifest, for the weight file: same folds, variables and classes."""
    from dataclasses import replace

    return replace(
        manifest,
        engine="tmva-weights",
        model_file=target.name,
        details={**manifest.details, "exported_from": Path(model_path).name, "format": "tmva"},
    )


def _variable_ranges(training: TrainingConfig, fold: int, forest) -> tuple[list, int]:
    """Min and max of each variable on the fold's dataset, as TMVA records them, and the
    number of events; from the split thresholds (logged) if the dataset is not there."""
    from htt_tmva.tmva.writer import threshold_ranges

    dataset = training.datasets[fold]
    if not Path(dataset).is_file():
        log.warning(
            "dataset '%s' of fold %d is not there: the variable ranges (Min, Max) of the "
            "weight file are the ranges of the split thresholds instead; they do not affect "
            "the response",
            dataset,
            fold,
        )
        return threshold_ranges(forest, forest.n_features), -1
    from htt_tmva.data.arrays import read_fold_file

    data = read_fold_file(dataset, training.classes, training.variables, training.event_weights)
    x = data.x.astype(np.float32)
    return [(float(lo), float(hi)) for lo, hi in zip(x.min(axis=0), x.max(axis=0))], len(x)
