"""The training step: read a fold, split it, train with an engine, save model and manifest."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from pathlib import Path
from typing import Optional

import numpy as np

from htt_tmva.config.stages import TrainingConfig
from htt_tmva.data.arrays import load_training_data
from htt_tmva.data.folds import scored_fold
from htt_tmva.engines.base import Engine, FoldData, Model, get_engine
from htt_tmva.errors import ConfigError, HttTmvaError, ModelError, OutputError

log = logging.getLogger(__name__)

__all__ = ["load_training_data", "split", "train_fold", "train_folds"]


def split(data: FoldData, train_fraction: float, seed: int) -> tuple[FoldData, FoldData]:
    """Reproducible random split into training and validation, stratified by class."""
    rng = np.random.default_rng(seed)
    train_mask = np.zeros(len(data), dtype=bool)
    for cls in np.unique(data.y):
        members = np.flatnonzero(data.y == cls)
        rng.shuffle(members)
        train_mask[members[: int(round(train_fraction * len(members)))]] = True
    return data.subset(train_mask), data.subset(~train_mask)


def train_fold(config: TrainingConfig, fold: int, engine: Engine, overwrite: bool = False) -> Model:
    """Train and save the model of ``fold``; refuse to overwrite an existing one."""
    if not 0 <= fold < config.folds:
        raise ConfigError(
            f"fold {fold} does not exist: {config.source} lists {config.folds} datasets "
            f"(folds 0 to {config.folds - 1})"
        )
    model_path = engine.model_path(config.output_path, fold, config.model.name)
    if model_path.exists() and not overwrite:
        raise OutputError(f"model '{model_path}' exists already; use --overwrite to replace it")
    engine.check_config(config)  # an unknown or failing model stops before the data is read
    log.info(
        "fold %d: training %s on %s; it will score fold %d",
        fold,
        engine.name,
        config.datasets[fold],
        scored_fold(fold, config.folds),
    )
    data = load_training_data(config, fold)
    train, validation = split(data, config.train_test_split, config.model.seed)
    log.info("fold %d: %d training and %d validation events", fold, len(train), len(validation))
    model = engine.train(train, validation, config, fold)
    model.manifest.fold_file = data.origin
    for path in _save_or_rescue(model, model_path, fold):
        log.info("wrote %s", path)
    config.write_resolved(model_path.with_name(f"{model_path.stem}.config.yaml"))
    return model


def _save_or_rescue(model: Model, model_path: Path, fold: int) -> list[Path]:
    """Save the model; if that fails, keep its trained weights and say where."""
    try:
        return model.save(model_path)
    except Exception as exc:
        kept = model.rescue(model_path)
        if not kept:
            raise
        where = ", ".join(f"'{p}'" for p in kept)
        note = f"the trained weights and preprocessing are kept in {where}"
        if isinstance(exc, HttTmvaError):
            log.error("saving the model of fold %d failed: %s", fold, note)
            raise
        log.debug("saving the model of fold %d failed", fold, exc_info=True)
        raise ModelError(
            f"saving the model of fold {fold} to '{model_path}' failed "
            f"({type(exc).__name__}: {exc}); {note} (load them into the model built by the "
            "model function with load_weights)"
        ) from exc


def train_folds(
    config: TrainingConfig,
    folds: Iterable[int],
    engine: Optional[str] = None,
    overwrite: bool = False,
    dry_run: bool = False,
) -> list[Model]:
    """Train each of ``folds`` with ``engine`` (default: the config's).

    The TMVA engine trains from the fold files itself (one run per fold, several methods);
    ``dry_run`` prints its booking plan instead and needs no TMVA.
    """
    if (engine or config.engine) == "tmva":
        from htt_tmva.tmva.factory import train_tmva_folds

        return train_tmva_folds(config, folds, overwrite=overwrite, dry_run=dry_run)
    if dry_run:
        raise ConfigError("--dry-run prints TMVA's booking plan: it exists for --engine tmva")
    chosen = get_engine(engine or config.engine)
    Path(config.output_path).mkdir(parents=True, exist_ok=True)
    return [train_fold(config, fold, chosen, overwrite) for fold in folds]
