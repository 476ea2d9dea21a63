"""The manifest written next to every model: what it was trained on and how to use it.

Testing and application read it to check variables, classes and their order, and to
refuse scoring events of a fold the model was trained on. It records the name and sha256
digest of every file saved with the model (model, preprocessing, dense weights, history),
and loading checks them: a preprocessing file of another model, or a file left over from
an interrupted save, is refused instead of giving wrong scores.
"""

from __future__ import annotations

import datetime
import hashlib
import json
import logging
import platform
import re
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Optional

from htt_tmva.errors import ModelError, choices_text

log = logging.getLogger(__name__)

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
    #: the branch whose value % n_folds gave the folds (None: a model of an older version)
    event_branch: Optional[str] = None
    #: role ("model", "preprocessing", "dense", ...) -> {"file": name, "sha256": digest}
    files: dict[str, dict[str, str]] = field(default_factory=dict)
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
        raise ModelError(missing_file_message("model file", model_path, _is_model_file))
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
        event_branch=getattr(config, "event_branch", None),
    )


# --- files of a model: where they are, and whether they belong together -------------------

#: roles of preprocessing files: any one of them may be given for the model
PREPROCESSING_ROLES = ("preprocessing", "preprocessing_pickle")
#: roles that prediction never reads (not checked on loading): the history, TMVA's
#: .class.C files, later exports
UNREAD_ROLES = ("history", "class_file", "onnx")


def file_digest(path: Path) -> str:
    """sha256 of a file's content, hex."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def record_files(manifest: Manifest, written: dict[str, tuple[Path, Path]]) -> None:
    """Record ``role -> (final path, file as written now)`` in the manifest: final names,
    digests of the content written (e.g. under a temporary name before the rename)."""
    manifest.files = {
        role: {"file": Path(final).name, "sha256": file_digest(now)}
        for role, (final, now) in written.items()
    }


def _is_model_file(path: Path) -> bool:
    return path.suffix in (".keras", ".h5", ".xml") or (
        path.suffix == ".json" and path.stem.endswith("_model")
    )


def _is_preprocessing_file(path: Path) -> bool:
    return "preprocessing" in path.name or path.suffix in (".pickle", ".pkl")


def missing_file_message(what: str, path: Path, wanted=None, hint: str = "") -> str:
    """``what 'name' not found in 'folder'`` with the matching files that are there."""
    from htt_tmva.errors import did_you_mean

    path = Path(path)
    folder = path.parent
    if not folder.is_dir():
        return f"{what} '{path.name}' not found: folder '{folder}' does not exist{hint}"
    there = sorted(
        p.name
        for p in folder.iterdir()
        if p.is_file() and not p.name.startswith(".") and (wanted is None or wanted(p))
    )
    return (
        f"{what} '{path.name}' not found in '{folder}'{did_you_mean(path.name, there)}; "
        f"{what}s there: {choices_text(there)}{hint}"
    )


#: the names of the classic trainer's files, which hold no model name
_CLASSIC_MODEL = re.compile(r"fold(\d+)_keras_model\.(h5|keras)")
_CLASSIC_PREPROCESSING = re.compile(r"fold(\d+)_keras_preprocessing\.(pickle|json)")


def _same_engine(path: Path):
    """Which files may stand for the model file ``path`` in a did-you-mean: those of its
    engine (a Keras name is never offered the BDT's file)."""
    name = Path(path).name
    if Path(path).suffix in (".h5", ".keras") or "_keras_" in name:
        return lambda p: p.suffix in (".h5", ".keras")
    if Path(path).suffix == ".xml":
        return lambda p: p.suffix == ".xml"
    if "_bdt_" in name:
        return lambda p: p.suffix == ".json" and p.stem.endswith("_model") and "_bdt_" in p.name
    return _is_model_file


def keras_models_of_fold(folder: Path, fold: int) -> list[Path]:
    """The Keras models of ``fold`` that htt-tmva saved in ``folder`` (with a manifest)."""
    pattern = re.compile(rf"fold{fold}_keras_model_.+\.(keras|h5)")
    return sorted(
        p
        for p in Path(folder).iterdir()
        if pattern.fullmatch(p.name) and p.is_file() and manifest_path(p).is_file()
    )


def _classic_model_name(path: Path, hint: str) -> Optional[Path]:
    """The model that the classic name ``fold{i}_keras_model.h5`` stands for: the one Keras
    model of fold i in its folder; several are refused, listing them."""
    match = _CLASSIC_MODEL.fullmatch(path.name)
    if not match or not path.parent.is_dir():
        return None
    fold = int(match.group(1))
    candidates = keras_models_of_fold(path.parent, fold)
    if len(candidates) > 1:
        raise ModelError(
            f"model file '{path.name}' (the classic trainer's name, without a model name) "
            f"could be any of the {len(candidates)} Keras models of fold {fold} in "
            f"'{path.parent}': {choices_text([c.name for c in candidates])}; name one of them"
            f"{hint}"
        )
    if candidates:
        log.info(
            "model '%s': using '%s', the one Keras model of fold %d in '%s'",
            path.name,
            candidates[0].name,
            fold,
            path.parent,
        )
        return candidates[0]
    return None


def find_model(path: Path) -> Optional[Path]:
    """The file that the model name ``path`` stands for (see :func:`locate_model`), or None
    if there is none; several candidates are an error."""
    path = Path(path)
    if path.is_file():
        return path
    if path.suffix == ".h5":
        saved = path.with_suffix(".keras")
        if saved.is_file() and manifest_path(saved).is_file():
            log.info("model '%s': using '%s', as htt-tmva saves it", path.name, saved.name)
            return saved
    return _classic_model_name(path, "")


def locate_model(path: Path, hint: str = "") -> Path:
    """The model file ``path``; a classic ``.h5`` name that htt-tmva saved as ``.keras``
    (same name otherwise, with a manifest) maps to that file, and the classic trainer's
    ``fold{i}_keras_model.h5`` (no model name) to the one Keras model of fold i there."""
    path = Path(path)
    try:
        found = find_model(path)
    except ModelError as exc:
        raise ModelError(f"{exc}{hint}") from None
    if found is not None:
        return found
    raise ModelError(missing_file_message("model file", path, _same_engine(path), hint))


def locate_model_from(path: Path, from_cwd: Optional[Path], hint: str = "") -> Path:
    """The model of a config entry resolved against the training ``output_path`` (``path``)
    or, for a relative entry, the working directory (``from_cwd``), as the classic
    application read it: the working directory's where the model is there, else
    ``output_path``'s; the log says which."""
    if from_cwd is None:
        return locate_model(path, hint)
    found = find_model(from_cwd)
    if found is not None:
        log.info("model '%s': found from the working directory: %s", from_cwd.name, found)
        return found
    located = locate_model(path, f"{hint}; not in '{Path(from_cwd).parent}' either")
    log.info("model '%s': found from the training output_path: %s", path.name, located)
    return located


def preprocessing_from(path: Path, from_cwd: Optional[Path], model_path: Path) -> Path:
    """Of a relative preprocessing entry, the path from the working directory where the file
    is there or the model was found there, else the one from the training ``output_path``."""
    if from_cwd is None:
        return path
    if from_cwd.is_file() or from_cwd.parent == Path(model_path).parent:
        return from_cwd
    return path


def locate_preprocessing(path: Path, manifest: Manifest, model_path: Path) -> Path:
    """The preprocessing file ``path``; a name the model's manifest does not have as a file
    but as the stem of its preprocessing (the classic ``.pickle`` name of a model saved with
    JSON preprocessing) maps to the file saved with the model."""
    path = Path(path)
    if path.is_file():
        return path
    for role in _preprocessing_roles_for(path, manifest):
        saved = Path(model_path).with_name(manifest.files[role]["file"])
        if saved.is_file():
            log.info(
                "preprocessing '%s': using '%s', the preprocessing saved with model '%s'",
                path.name,
                saved.name,
                Path(model_path).name,
            )
            return saved
    raise ModelError(
        missing_file_message(
            "preprocessing file", path, _is_preprocessing_file, f" (for model '{model_path}')"
        )
    )


def _preprocessing_roles_for(path: Path, manifest: Manifest) -> list[str]:
    """The preprocessing files of the model that the missing name ``path`` may stand for:
    those of the same stem; for the classic trainer's ``fold{i}_keras_preprocessing.pickle``
    (no model name) of the model of fold i, the one of the same kind first."""
    saved = [r for r in PREPROCESSING_ROLES if r in manifest.files]
    same_stem = [r for r in saved if Path(manifest.files[r]["file"]).stem == path.stem]
    classic = _CLASSIC_PREPROCESSING.fullmatch(path.name)
    if same_stem or not classic or int(classic.group(1)) != manifest.fold:
        return same_stem
    wanted = "preprocessing_pickle" if path.suffix == ".pickle" else "preprocessing"
    return sorted(saved, key=lambda r: r != wanted)


def _check_digest(path: Path, entry: dict, role: str, model_path: Path) -> None:
    mpath = manifest_path(model_path)
    if not path.is_file():
        raise ModelError(
            f"{role} file '{path}' of model '{model_path.name}' is missing (its manifest "
            f"'{mpath.name}' lists it); retrain the model or restore the file"
        )
    digest = file_digest(path)
    if digest != entry["sha256"]:
        raise ModelError(
            f"{role} file '{path}' is not the one saved with model '{model_path}': its sha256 "
            f"is {digest[:16]}..., the manifest '{mpath}' records {entry['sha256'][:16]}... "
            "(the file was replaced, or a save was interrupted); retrain the model or restore "
            "its files together"
        )


def verify_model_files(
    manifest: Manifest, model_path: Path, preprocessing: Optional[Path] = None
) -> None:
    """Check that the files prediction reads are those the model was saved with: the model,
    its dense weights, and ``preprocessing`` (or the one in the manifest if None)."""
    model_path = Path(model_path)
    if manifest.details.get("classic"):
        return
    if not set(manifest.files) - set(UNREAD_ROLES):  # e.g. only an export recorded since
        log.warning(
            "manifest '%s' records no digests of the model's files (written by an older "
            "htt-tmva): cannot check that model and preprocessing belong together; retrain "
            "to get them",
            manifest_path(model_path),
        )
        return
    for role, entry in manifest.files.items():
        if role in PREPROCESSING_ROLES or role in UNREAD_ROLES:
            continue
        path = model_path if role == "model" else model_path.with_name(entry["file"])
        _check_digest(path, entry, role, model_path)
    recorded = {r: manifest.files[r] for r in PREPROCESSING_ROLES if r in manifest.files}
    if not recorded:
        return
    if preprocessing is None:
        role = "preprocessing" if "preprocessing" in recorded else next(iter(recorded))
        _check_digest(
            model_path.with_name(recorded[role]["file"]), recorded[role], role, model_path
        )
        return
    digest = file_digest(preprocessing)
    if any(entry["sha256"] == digest for entry in recorded.values()):
        return
    same_name = [e for e in recorded.values() if e["file"] == Path(preprocessing).name]
    entry = same_name[0] if same_name else next(iter(recorded.values()))
    raise ModelError(
        f"preprocessing file '{preprocessing}' does not belong to model '{model_path}': "
        f"the model was saved with '{model_path.with_name(entry['file'])}' (sha256 "
        f"{entry['sha256'][:16]}..., recorded in '{manifest_path(model_path).name}'), this file "
        f"has sha256 {digest[:16]}...; give the preprocessing written with this model (same "
        "fold and model name)"
    )


# --- models trained by the classic scripts: a Keras .h5 file, no manifest ----------------


def is_classic_model(model_path: Path) -> bool:
    """A Keras ``.h5`` model without a manifest, as the classic scripts wrote them."""
    model_path = Path(model_path)
    return (
        model_path.suffix == ".h5"
        and model_path.is_file()
        and not manifest_path(model_path).is_file()
    )


def classic_manifest(
    model_path: Path, variables: list[str], classes: list[str], fold: int, n_folds: int
) -> Manifest:
    """A manifest for a classic model: variables and classes from the training config (as the
    classic scripts took them), its fold from its place in the config, with a warning."""
    from htt_tmva.data.folds import scored_fold

    log.warning(
        "model '%s' has no manifest (trained by the classic scripts?): its variables and "
        "classes are taken from the training config, and its folds cannot be verified; "
        "it is used as the model of fold %d, scoring fold %d: make sure it never saw those "
        "events",
        model_path,
        fold,
        scored_fold(fold, n_folds),
    )
    return Manifest(
        engine="keras",
        model_file=Path(model_path).name,
        variables=list(variables),
        classes=list(classes),
        fold=fold,
        n_folds=n_folds,
        trained_on=[fold],
        scores_fold=scored_fold(fold, n_folds),
        config_hash="",
        training_config="",
        details={"classic": True},
        versions={},
        created="",
    )
