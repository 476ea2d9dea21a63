"""Gradient-boosted trees: TMVA's BDTG booking, without TMVA, on XGBoost.

The config section ``bdt`` uses TMVA's option names and classic defaults (NTrees 1500,
Shrinkage 0.10, MaxDepth 3, bagged boosting with BaggedSampleFraction 0.5, nCuts 50
histogram bins). The multiclass softmax gives class probabilities.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Optional

import numpy as np

from htt_tmva._files import atomic_outputs
from htt_tmva.engines.base import Engine, FoldData, Model
from htt_tmva.engines.manifest import Manifest, manifest_for, manifest_path, record_files
from htt_tmva.engines.xgboost_trees import MAX_TREE_DEPTH, check_trees, forest_from_document
from htt_tmva.errors import EngineError, ModelError

log = logging.getLogger(__name__)

__all__ = ["MAX_TREE_DEPTH", "BdtEngine", "BdtModel", "check_trees", "import_xgboost"]


def import_xgboost():
    try:
        import xgboost
    except ImportError as exc:
        raise EngineError(
            "the bdt engine needs XGBoost: pip install xgboost-cpu (or use --engine keras)"
        ) from exc
    return xgboost


def training_weights(w: np.ndarray, what: str) -> np.ndarray:
    """Weights for XGBoost: negative ones set to zero (logged), scaled to mean 1.

    XGBoost refuses negative weights (as TMVA's IgnoreNegWeightsInTraining does, they
    are left out of the training); the global scale only keeps min_child_weight meaningful.
    """
    negative = w < 0
    if negative.any():
        log.warning(
            "bdt: %d %s events with negative weight (sum %.4g) are given weight 0 in the "
            "training, as XGBoost accepts no negative weights",
            int(negative.sum()),
            what,
            float(w[negative].sum()),
        )
        w = np.where(negative, 0.0, w)
    return w / w.mean()


class BdtModel(Model):
    """A booster, or the file it is loaded from when first needed (reading the trees of a
    JSON model file, e.g. for the C++ export, needs no XGBoost). Its trees are checked
    (:func:`check_trees`) before any walk."""

    def __init__(self, manifest: Manifest, booster=None, n_jobs: int = 2, path=None):
        self.manifest, self._booster, self.n_jobs, self.path = manifest, booster, n_jobs, path
        self._checked = False
        self._trees = None  # XgbForest once read; False: only XGBoost predicts this model

    @property
    def booster(self):
        if self._booster is None:
            if Path(self.path).suffix == ".json":
                self.model_json()  # checked before XGBoost reads it
            xgboost = import_xgboost()
            booster = xgboost.Booster()
            booster.load_model(str(self.path))
            self._booster = booster
            if not self._checked:  # other formats: checked once loaded
                self.model_json()
        return self._booster

    def model_json(self) -> dict:
        """XGBoost's JSON description of the model (``save_raw("json")``), checked."""
        if self._booster is None and Path(self.path).suffix == ".json":
            try:
                document = json.loads(Path(self.path).read_text())
            except (OSError, ValueError) as exc:
                raise ModelError(
                    f"{self.path}: not a readable XGBoost JSON model ({exc})"
                ) from None
        else:
            document = json.loads(bytes(self.booster.save_raw("json")))
        if not self._checked:
            check_trees(document, str(self.path or "the trained booster"))
            self._checked = True
        return document

    def trees(self):
        """The trees as :class:`~htt_tmva.engines.xgboost_trees.XgbForest` to walk without
        XGBoost, or None for a model that only XGBoost predicts (not a softmax gbtree)."""
        if self._trees is None:
            document, source = self.model_json(), str(self.path or "the trained booster")
            best = self.manifest.details.get("best_iteration")
            try:
                self._trees = forest_from_document(document, best, source)
            except ModelError as exc:
                log.debug("%s: predicted by XGBoost (%s)", source, exc)
                self._trees = False
        return self._trees or None

    def describe(self) -> dict:
        """Its trees and base margins as ``trees`` (:mod:`htt_tmva.export.spec`)."""
        from htt_tmva.engines.spec import named, trees_spec

        return named(trees_spec(self), self.manifest)

    def predict(self, x: np.ndarray) -> np.ndarray:
        """Class probabilities: finite inputs by walking the trees (no XGBoost import, the
        same probabilities to float precision), others (NaN takes each node's default
        direction) and other objectives by XGBoost."""
        x = np.asarray(x, dtype=np.float32)
        trees = self.trees()
        if trees is not None and np.isfinite(x).all():
            return trees.probabilities(x)
        xgboost = import_xgboost()
        matrix = xgboost.DMatrix(x, nthread=self.n_jobs)
        best = self.manifest.details.get("best_iteration")
        rounds = (0, best + 1) if best is not None else (0, 0)
        return self.booster.predict(matrix, iteration_range=rounds).reshape(len(x), -1)

    def save(self, model_path: Path) -> list[Path]:
        model_path = Path(model_path)
        files = [model_path, manifest_path(model_path)]
        self.manifest.model_file = model_path.name
        with atomic_outputs(files) as (tmp_model, tmp_manifest):
            self.booster.save_model(str(tmp_model))
            record_files(self.manifest, {"model": (model_path, tmp_model)})
            self.manifest.write(tmp_manifest)
        return files


class BdtEngine(Engine):
    name = "bdt"

    def check_available(self) -> None:
        import importlib.util

        if importlib.util.find_spec("xgboost") is None:
            raise EngineError(
                "the bdt engine needs XGBoost, which is not installed: "
                "pip install xgboost-cpu (or use --engine keras)"
            )

    def model_path(self, output_path: Path, fold: int, model_name: str) -> Path:
        return Path(output_path) / f"fold{fold}_bdt_model.json"

    def train(self, train: FoldData, validation: FoldData, config, fold: int) -> BdtModel:
        xgboost = import_xgboost()
        bdt = config.bdt
        params = {
            "objective": "multi:softprob",
            "num_class": len(train.classes),
            "eta": bdt.Shrinkage,
            "max_depth": bdt.MaxDepth,
            "subsample": bdt.BaggedSampleFraction if bdt.UseBaggedBoost else 1.0,
            "tree_method": "hist",
            "max_bin": bdt.nCuts,
            "nthread": bdt.n_jobs,
            "seed": config.model.seed,
            "eval_metric": "mlogloss",
        }
        dtrain = xgboost.DMatrix(
            train.x.astype(np.float32),
            label=train.y,
            weight=training_weights(train.w, "training"),
            nthread=bdt.n_jobs,
        )
        dval = xgboost.DMatrix(
            validation.x.astype(np.float32),
            label=validation.y,
            weight=training_weights(validation.w, "validation"),
            nthread=bdt.n_jobs,
        )
        history: dict = {}
        booster = xgboost.train(
            params,
            dtrain,
            num_boost_round=bdt.NTrees,
            evals=[(dtrain, "training"), (dval, "validation")],
            early_stopping_rounds=bdt.early_stopping,
            evals_result=history,
            verbose_eval=False,
        )
        best = booster.best_iteration if bdt.early_stopping else None
        loss = history["validation"]["mlogloss"]
        log.info(
            "bdt fold %d: %d trees, validation mlogloss %.4g",
            fold,
            len(loss) if best is None else best + 1,
            loss[-1] if best is None else loss[best],
        )
        manifest = manifest_for(
            config,
            self.name,
            self.model_path(config.output_path, fold, ""),
            fold,
            best_iteration=best,
            parameters=params,
            tmva_options=vars(bdt),
        )
        return BdtModel(manifest, booster, bdt.n_jobs)

    def load(
        self, model_path: Path, manifest: Manifest, preprocessing: Optional[Path] = None
    ) -> BdtModel:
        threads = manifest.details.get("parameters", {}).get("nthread", 2)
        return BdtModel(manifest, None, threads, path=model_path)
