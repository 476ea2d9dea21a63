"""TMVA weight files (``*.weights.xml``) as models, evaluated without TMVA.

Wherever a model file is named (``model:`` of a testing config, ``classifiers:`` of an
application config), a TMVA weight file can stand: it is read by :mod:`htt_tmva.tmva`, and
its multiclass response (what ``TMVA::Reader::EvaluateMulticlass`` returns) is the model's
class probabilities. The file must list the training config's variables (TMVA expressions,
in order) and classes (in order).

A weight file written by TMVA has no manifest: the fold rule comes from the configs (entry
j of ``classifiers`` scores the events with ``event % k == j``), and a warning says that the
folds cannot be verified from the file. One written by ``htt-tmva export`` carries the
manifest of its model, and the folds are checked as for any model. One trained by
``htt-tmva train --engine tmva`` records the digests of the weight file and of PyKeras's
trained model, and they are checked as for any model.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Optional

import numpy as np

from htt_tmva.engines.base import Model
from htt_tmva.engines.manifest import (
    Manifest,
    check_compatible,
    manifest_path,
    read_manifest,
    verify_model_files,
)
from htt_tmva.errors import ModelError, did_you_mean

log = logging.getLogger(__name__)

ENGINE = "tmva-weights"  # the engine recorded for a weight file
ACCEPTED_ENGINES = (None, "tmva")


def is_weight_file(path) -> bool:
    """A TMVA weight file is named ``*.xml`` (TMVA writes ``<job>_<method>.weights.xml``)."""
    return str(path).lower().endswith(".xml")


def read_weight_file(path: Path):
    """The parsed weight file; a missing file is a ModelError naming it."""
    path = Path(path)
    if not path.is_file():
        raise ModelError(f"TMVA weight file '{path}' does not exist")
    from htt_tmva.tmva import read_weights

    return read_weights(path)


def _check_engine(path: Path, engine: Optional[str]) -> None:
    if engine not in ACCEPTED_ENGINES:
        raise ModelError(
            f"'{path}' is a TMVA weight file, read without TMVA; the engine '{engine}' does "
            "not apply to it: leave 'engine' out of the config (or give tmva)"
        )


def check_weights_fit(weights, path: Path, variables: list[str], classes: list[str]) -> None:
    """Refuse a weight file whose variables (expressions) or classes, or their order, differ
    from the training config's, and a two-class (non-multiclass) job."""
    expressions = list(weights.expressions)
    if expressions != list(variables):
        wrong = [
            f"#{i}: file '{theirs}', config '{ours}'{did_you_mean(ours, expressions)}"
            for i, (theirs, ours) in enumerate(zip(expressions, variables))
            if theirs != ours
        ]
        raise ModelError(
            f"TMVA weight file '{path}' has the variables (expressions) {expressions}, but the "
            f"training config lists {list(variables)}; the order matters, as for "
            f"TMVA::Reader::AddVariable" + (f" ({'; '.join(wrong)})" if wrong else "")
        )
    if list(weights.classes) != list(classes):
        raise ModelError(
            f"TMVA weight file '{path}' has the classes {list(weights.classes)}, but the "
            f"training config lists {list(classes)}; they must be the same, in the same order"
        )
    if not weights.multiclass:
        raise ModelError(
            f"TMVA weight file '{path}' ({weights.method}) is a two-class job: its response "
            "(EvaluateMVA) is one number, not a probability per class; scores per class "
            "(<prefix><class>, max_score, max_index) need a multiclass job, as the classic "
            "TMVA application (EvaluateMulticlass) did"
        )


def weights_manifest(path: Path, weights, fold: int, n_folds: int, verified: bool) -> Manifest:
    """A manifest for a weight file without one: folds as the configs say (unverified)."""
    from htt_tmva.data.folds import scored_fold

    return Manifest(
        engine=ENGINE,
        model_file=Path(path).name,
        variables=list(weights.expressions),
        classes=list(weights.classes),
        fold=fold,
        n_folds=n_folds,
        trained_on=[fold] if fold >= 0 else [],
        scores_fold=scored_fold(fold, n_folds) if fold >= 0 else -1,
        config_hash="",
        training_config="",
        details={"method": weights.method, "folds_verified": verified},
    )


def _verified_manifest(path: Path) -> Manifest:
    """The manifest next to ``path``; where the TMVA engine wrote it with digests, the weight
    file and the trained Keras model it names must be those written with it (an export's
    manifest carries its source model's digests instead)."""
    manifest = read_manifest(path)
    if manifest.engine == "tmva" and manifest.files:
        verify_model_files(manifest, path)
    return manifest


def checked_weight_file(
    path: Path,
    event_fold: int,
    n_folds: int,
    variables: list[str],
    classes: list[str],
    engine: Optional[str] = None,
) -> Manifest:
    """The manifest of weight file ``path``, which is to score events of ``event_fold``:
    the file's own variables and classes are checked against the config; its folds are
    checked where an ``htt-tmva export`` manifest is next to it, else taken from the configs
    with a warning."""
    from htt_tmva.data.folds import check_never_seen, model_for_fold

    path = Path(path)
    _check_engine(path, engine)
    weights = read_weight_file(path)
    check_weights_fit(weights, path, variables, classes)
    if manifest_path(path).is_file():
        manifest = _verified_manifest(path)
        if manifest.n_folds != n_folds:
            raise ModelError(
                f"'{path}' belongs to a {manifest.n_folds}-fold training, but the configs "
                f"have {n_folds} folds"
            )
        check_compatible(manifest, path, variables, classes)
        check_never_seen(path.name, manifest.trained_on, event_fold, n_folds)
        return manifest
    fold = model_for_fold(event_fold, n_folds)
    log.warning(
        "TMVA weight file %s has no manifest: it is taken to be the model of fold %d (events "
        "with event %% %d == %d never used in its training), as the configs say; the folds "
        "cannot be verified from the file",
        path.name,
        fold,
        n_folds,
        event_fold,
    )
    return weights_manifest(path, weights, fold, n_folds, verified=False)


class WeightFileModel(Model):
    """A multiclass TMVA weight file: ``predict`` is TMVA's EvaluateMulticlass response."""

    def __init__(self, path: Path, weights, manifest: Manifest):
        self.path, self.weights, self.manifest = Path(path), weights, manifest

    def predict(self, x: np.ndarray) -> np.ndarray:
        # The Reader hands TMVA Float_t values: evaluate on the float32 inputs.
        x = np.asarray(x, dtype=np.float32).astype(np.float64)
        response = np.asarray(self.weights.response(x))
        return response.reshape(len(x), -1)

    def describe(self) -> dict:
        """The weight file as the neutral description (:mod:`htt_tmva.tmva.spec`)."""
        return self.weights.describe()

    def save(self, model_path: Path) -> list[Path]:
        raise ModelError(f"'{self.path}' is a TMVA weight file; it is read, not written here")


def load_weight_file(path: Path, engine: Optional[str] = None) -> WeightFileModel:
    """The weight file at ``path`` as a model (its manifest, if any, or a made-up one)."""
    path = Path(path)
    _check_engine(path, engine)
    weights = read_weight_file(path)
    if manifest_path(path).is_file():
        manifest = _verified_manifest(path)
    else:
        manifest = weights_manifest(path, weights, -1, 0, verified=False)
    return WeightFileModel(path, weights, manifest)
