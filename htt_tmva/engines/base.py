"""The engine interface that training, testing and application share.

An :class:`Engine` trains a :class:`Model` on a fold's arrays and loads saved ones. A
:class:`Model` predicts class probabilities for a batch (n_events x n_variables ->
n_events x n_classes, rows summing to 1) and saves itself with its manifest. Testing
and application know nothing else about a model.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any, ClassVar, Optional

import numpy as np

from htt_tmva.data.arrays import FoldData
from htt_tmva.engines.manifest import (
    Manifest,
    check_compatible,
    classic_manifest,
    is_classic_model,
    locate_preprocessing,
    read_manifest,
    verify_model_files,
)
from htt_tmva.engines.registry import ENGINES, foreign_engine, get_engine
from htt_tmva.errors import ExportError, ModelError

__all__ = [
    "ENGINES",
    "Engine",
    "FoldData",
    "Model",
    "checked_manifest",
    "get_engine",
    "load_model",
]


class Model(ABC):
    """A trained model of one fold."""

    manifest: Manifest

    @abstractmethod
    def predict(self, x: np.ndarray) -> np.ndarray:
        """Class probabilities for a batch: (n, n_variables) -> (n, n_classes)."""

    @abstractmethod
    def save(self, model_path: Path) -> list[Path]:
        """Write the model, its preprocessing and its manifest; return the files written."""

    def describe(self) -> dict[str, Any]:
        """The neutral description of the model (:mod:`htt_tmva.export.spec`) that the C++,
        JSON and ONNX exports write; models that cannot be exported raise ExportError."""
        raise ExportError(
            f"models of engine '{self.manifest.engine}' cannot be exported; valid: keras, bdt"
        )

    def rescue(self, model_path: Path) -> list[Path]:
        """After a failed :meth:`save`, keep what can be kept of the trained model (weights,
        preprocessing) beside ``model_path`` or in a temporary folder; return those files."""
        return []


class Engine(ABC):
    """A way to train and load models (keras, bdt, tmva)."""

    name: ClassVar[str]
    requires: ClassVar[str] = ""

    @abstractmethod
    def check_available(self) -> None:
        """Raise EngineError with an install hint if the engine's library is missing."""

    def check_loadable(self, manifest: Manifest) -> None:
        """Raise EngineError if the saved model of ``manifest`` cannot be run here."""
        self.check_available()

    @abstractmethod
    def model_path(self, output_path: Path, fold: int, model_name: str) -> Path:
        """Where the model of ``fold`` is written."""

    def check_config(self, config) -> None:
        """Check what the training config asks of this engine before any data is read
        (e.g. that its model builds); raise an HttTmvaError if it cannot work."""
        return None

    @abstractmethod
    def train(self, train: FoldData, validation: FoldData, config, fold: int) -> Model:
        """Train on ``train``, monitor ``validation``; return the model (unsaved)."""

    @abstractmethod
    def load(
        self, model_path: Path, manifest: Manifest, preprocessing: Optional[Path] = None
    ) -> Model:
        """Load a saved model."""

    def load_foreign(self, model_path: Path, engine: Optional[str] = None) -> Model:
        """Load a model file that another program wrote (no htt-tmva manifest needed; see
        :data:`htt_tmva.engines.registry.FOREIGN_FILES`); ``engine`` is the one asked for."""
        raise ModelError(f"engine '{self.name}' reads no model files of other programs")

    def check_foreign(
        self,
        model_path: Path,
        scored_fold: int,
        n_folds: int,
        variables: list[str],
        classes: list[str],
        engine: Optional[str] = None,
    ) -> Manifest:
        """:func:`checked_manifest` of a model file that another program wrote."""
        raise ModelError(f"engine '{self.name}' reads no model files of other programs")


def load_model(
    model_path: Path,
    engine: Optional[str] = None,
    preprocessing: Optional[Path] = None,
    manifest: Optional[Manifest] = None,
) -> Model:
    """Load any saved model through its manifest (read next to it unless given, e.g. the
    checked one); ``engine``, if given, must match it. The files it reads must be those the
    manifest records (digests), and ``preprocessing`` one saved with this model. Only the
    libraries that this model needs to run must be installed (a Dense network saved as
    ``.dense.npz`` needs neither Keras nor TensorFlow). A TMVA weight file (``*.xml``) loads
    as a model read without TMVA."""
    reader = foreign_engine(model_path)
    if reader is not None:
        return reader.load_foreign(Path(model_path), engine)
    if manifest is None:
        manifest = read_manifest(model_path)
    if engine is not None and engine != manifest.engine:
        raise ModelError(
            f"model '{model_path}' was trained with engine '{manifest.engine}', not '{engine}'"
        )
    if preprocessing is not None:
        preprocessing = locate_preprocessing(preprocessing, manifest, Path(model_path))
    verify_model_files(manifest, Path(model_path), preprocessing)
    loader = get_engine(manifest.engine, check=False)
    loader.check_loadable(manifest)
    return loader.load(Path(model_path), manifest, preprocessing)


def checked_manifest(
    model: Path,
    scored_fold: int,
    n_folds: int,
    variables: list[str],
    classes: list[str],
    engine: Optional[str] = None,
) -> Manifest:
    """The manifest of ``model``, which is to score the events of ``scored_fold``; refuses a
    model of another engine, another number of folds, other variables or classes (or order),
    or one that was trained on that fold."""
    from htt_tmva.data.folds import check_never_seen, model_for_fold

    reader = foreign_engine(model)
    if reader is not None:  # e.g. a TMVA weight file: checked from its own contents
        return reader.check_foreign(model, scored_fold, n_folds, variables, classes, engine)
    if is_classic_model(model):
        manifest = classic_manifest(
            model, variables, classes, model_for_fold(scored_fold, n_folds), n_folds
        )
    else:
        manifest = read_manifest(model)
    if engine is not None and engine != manifest.engine:
        raise ModelError(
            f"model '{model}' was trained with engine '{manifest.engine}', not '{engine}'"
        )
    if manifest.n_folds != n_folds:
        raise ModelError(
            f"model '{model}' belongs to a {manifest.n_folds}-fold training, but the configs "
            f"have {n_folds} folds"
        )
    check_compatible(manifest, model, variables, classes)
    check_never_seen(Path(model).name, manifest.trained_on, scored_fold, n_folds)
    return manifest
