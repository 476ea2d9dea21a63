"""The engine interface that training, testing and application share.

An :class:`Engine` trains a :class:`Model` on a fold's arrays and loads saved ones. A
:class:`Model` predicts class probabilities for a batch (n_events x n_variables ->
n_events x n_classes, rows summing to 1) and saves itself with its manifest. Testing
and application know nothing else about a model.
"""

from __future__ import annotations

import importlib
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Optional

import numpy as np

from htt_tmva.engines.manifest import (
    Manifest,
    locate_preprocessing,
    read_manifest,
    verify_model_files,
)
from htt_tmva.errors import EngineError, ModelError, choices_text, did_you_mean


@dataclass
class FoldData:
    """Arrays of one fold: inputs, class index per event, event weight per event; ``origin``
    names the fold file and how its fold was verified (recorded in the manifest)."""

    x: np.ndarray
    y: np.ndarray
    w: np.ndarray
    variables: list[str]
    classes: list[str]
    origin: Optional[dict[str, Any]] = None

    def __len__(self) -> int:
        return len(self.y)

    def subset(self, mask_or_index: np.ndarray) -> FoldData:
        return FoldData(
            self.x[mask_or_index],
            self.y[mask_or_index],
            self.w[mask_or_index],
            self.variables,
            self.classes,
            self.origin,
        )


class Model(ABC):
    """A trained model of one fold."""

    manifest: Manifest

    @abstractmethod
    def predict(self, x: np.ndarray) -> np.ndarray:
        """Class probabilities for a batch: (n, n_variables) -> (n, n_classes)."""

    @abstractmethod
    def save(self, model_path: Path) -> list[Path]:
        """Write the model, its preprocessing and its manifest; return the files written."""

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


ENGINES = {
    "keras": "htt_tmva.engines.keras:KerasEngine",
    "bdt": "htt_tmva.engines.bdt:BdtEngine",
    "tmva": "htt_tmva.engines.tmva:TmvaEngine",
}


def get_engine(name: str, check: bool = True) -> Engine:
    """The engine registered under ``name``, checked (unless ``check`` is false) to be usable
    here."""
    if name not in ENGINES:
        raise EngineError(
            f"unknown engine '{name}'{did_you_mean(name, ENGINES)}; "
            f"known engines: {choices_text(ENGINES)}"
        )
    module, cls = ENGINES[name].split(":")
    engine = getattr(importlib.import_module(module), cls)()
    if check:
        engine.check_available()
    return engine


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
    from htt_tmva.engines.weightfile import is_weight_file, load_weight_file

    if is_weight_file(model_path):
        return load_weight_file(Path(model_path), engine)
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
