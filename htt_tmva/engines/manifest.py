"""The manifest written next to every model: what it was trained on and how to use it.

Testing and application read it to check variables, classes and their order, and to
refuse scoring events of a fold the model was trained on.
"""

from __future__ import annotations

import datetime
import json
import platform
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Optional

from htt_tmva.errors import ModelError

_VERSIONED = (
    "numpy",
    "root",
    "keras",
    "tensorflow-cpu",
    "tensorflow",
    "xgboost-cpu",
    "xgboost",
    "scikit-learn",
    "htt_tmva",
)


def library_versions() -> dict[str, str]:
    """Versions of the libraries that matter for reproducing a model."""
    from importlib import metadata

    versions = {"python": platform.python_version()}
    for name in _VERSIONED:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    ROOT = sys.modules.get("ROOT")  # any ROOT build (LCG, conda); never imported just for this
    if ROOT is not None and hasattr(ROOT, "gROOT"):
        versions["ROOT"] = str(ROOT.gROOT.GetVersion())
    return versions


@dataclass
class Manifest:
    engine: str
    model_file: str
    variables: list[str]
    classes: list[str]
    fold: int
    n_folds: int
    trained_on: list[int]
    scores_fold: int
    config_hash: str
    training_config: str
    preprocessing: Optional[dict[str, Any]] = None
    details: dict[str, Any] = field(default_factory=dict)
    fold_file: Optional[dict[str, Any]] = None  # the training fold file and how it was verified
    versions: dict[str, str] = field(default_factory=library_versions)
    created: str = field(
        default_factory=lambda: datetime.datetime.now(datetime.timezone.utc).isoformat(
            timespec="seconds"
        )
    )

    def write(self, path: Path) -> Path:
        with open(path, "w") as f:
            json.dump(asdict(self), f, indent=2)
        return path


def manifest_path(model_path: Path) -> Path:
    """``fold0_keras_model_example.keras`` -> ``fold0_keras_model_example.manifest.json``."""
    model_path = Path(model_path)
    return model_path.with_name(f"{model_path.stem}.manifest.json")


def read_manifest(model_path: Path) -> Manifest:
    """Read the manifest next to a model file, with clear errors if the model or it is missing."""
    model_path = Path(model_path)
    if not model_path.exists():
        raise ModelError(f"model file '{model_path}' does not exist")
    path = manifest_path(model_path)
    if not path.is_file():
        raise ModelError(
            f"model '{model_path}' has no manifest '{path.name}' next to it; models trained by "
            "htt-tmva carry one (it records variables, classes and folds); "
            "retrain with `htt-tmva train`"
        )
    try:
        with open(path) as f:
            data = json.load(f)
        known = Manifest.__dataclass_fields__
        return Manifest(**{k: v for k, v in data.items() if k in known})
    except (ValueError, TypeError, AttributeError) as exc:  # JSON, missing keys, not a dict
        raise ModelError(
            f"manifest '{path}' of model '{model_path.name}' is not a valid htt-tmva manifest "
            f"({type(exc).__name__}: {exc}); retrain with `htt-tmva train`"
        ) from None


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
    from htt_tmva.data.folds import check_never_seen
    from htt_tmva.engines.weightfile import checked_weight_file, is_weight_file

    if is_weight_file(model):  # a TMVA weight file: checked from its own contents
        return checked_weight_file(model, scored_fold, n_folds, variables, classes, engine)
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


def check_compatible(
    manifest: Manifest, model: Path, variables: list[str], classes: list[str]
) -> None:
    """Refuse a model whose variables or classes (or their order) differ from the config's."""
    for what, theirs, ours in (
        ("variables", manifest.variables, variables),
        ("classes", manifest.classes, classes),
    ):
        if list(theirs) != list(ours):
            raise ModelError(
                f"model '{model}' was trained with {what} {theirs}, but the training config "
                f"lists {ours}; the order matters. Use the matching training config or retrain"
            )


def manifest_for(
    config,
    engine: str,
    model_path: Path,
    fold: int,
    preprocessing: Optional[dict[str, Any]] = None,
    **details: Any,
) -> Manifest:
    """The manifest of a model trained on ``fold`` of a training config."""
    from htt_tmva.data.folds import scored_fold

    return Manifest(
        engine=engine,
        model_file=Path(model_path).name,
        variables=list(config.variables),
        classes=list(config.classes),
        fold=fold,
        n_folds=config.folds,
        trained_on=[fold],
        scores_fold=scored_fold(fold, config.folds),
        config_hash=config.hash,
        training_config=str(config.source),
        preprocessing=preprocessing,
        details=details,
    )
