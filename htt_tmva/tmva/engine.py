"""The TMVA engine: Factory/DataLoader training of BDTG, DNN (MethodDL) and PyKeras per fold.

Training needs ROOT with TMVA (conda-forge's ``root``, LCG views); the pip wheel has none,
and training then stops before any work naming the alternatives. The booking plan
(:mod:`htt_tmva.tmva.plan`) needs nothing but the config; running it lives in
:mod:`htt_tmva.tmva.factory`. Trained weight files are read by our own reader
(:mod:`htt_tmva.tmva`, no TMVA needed) or, with ``--reader tmva``, by ``TMVA::Reader``
(:mod:`htt_tmva.tmva.reader`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

from htt_tmva.engines.base import Engine, Model
from htt_tmva.engines.manifest import Manifest
from htt_tmva.errors import EngineError
from htt_tmva.tmva.factory import ALTERNATIVES  # noqa: F401 - kept for importers


class TmvaEngine(Engine):
    name = "tmva"

    def check_available(self) -> None:
        """Loading weight files needs no TMVA; training checks TMVA itself (factory.py)."""

    def model_path(self, output_path: Path, fold: int, model_name: str) -> Path:
        return (
            Path(output_path)
            / f"fold{fold}_training"
            / "weights"
            / "TMVAMulticlass_BDTG.weights.xml"
        )

    def train(self, train, validation, config, fold):
        raise EngineError(
            "the TMVA engine trains from the fold files itself: use "
            "htt_tmva.tmva.factory.train_tmva_folds (htt-tmva train --engine tmva)"
        )

    def load(
        self, model_path: Path, manifest: Manifest, preprocessing: Optional[Path] = None
    ) -> Model:
        from htt_tmva.tmva.weightfile import WeightFileModel, read_weight_file

        return WeightFileModel(Path(model_path), read_weight_file(Path(model_path)), manifest)

    def load_foreign(self, model_path: Path, engine: Optional[str] = None) -> Model:
        """A TMVA weight file, read without TMVA (its manifest, if any, or a made-up one)."""
        from htt_tmva.tmva.weightfile import load_weight_file

        return load_weight_file(Path(model_path), engine)

    def check_foreign(
        self,
        model_path: Path,
        scored_fold: int,
        n_folds: int,
        variables: list[str],
        classes: list[str],
        engine: Optional[str] = None,
    ) -> Manifest:
        """A TMVA weight file's variables and classes checked, and its folds where it has a
        manifest."""
        from htt_tmva.tmva.weightfile import checked_weight_file

        return checked_weight_file(model_path, scored_fold, n_folds, variables, classes, engine)
