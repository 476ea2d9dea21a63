"""Schemas and typed objects of the four stage configs (dataset, training, testing, application).

The classic keys of the original scripts keep working; new keys are optional.
Relative paths resolve once here, so the rest of the code sees absolute paths only. The rule:
``base_path`` and ``output_path`` are relative to the working directory (as in the classic
scripts), the files listed under them to them (process files and training datasets to
``base_path``, testing and application models and preprocessing to the training
``output_path``).
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import yaml

from htt_tmva._root import RemoteUrl, is_remote
from htt_tmva.config.schema import (
    Expression,
    Field,
    branch_name,
    expression,
    fraction,
    non_empty,
    positive,
    unique,
    validate,
)
from htt_tmva.config.tmva import TMVA_SCHEMA
from htt_tmva.errors import ConfigError, choices_text

log = logging.getLogger(__name__)

ENGINES = ("keras", "bdt", "tmva")
PREPROCESSING = ("standard", "identity", "minmax", "robust", "quantile")
#: names of the classic training script (scikit-learn classes) -> ours
CLASSIC_PREPROCESSING = {
    "standard_scaler": "standard",
    "robust_scaler": "robust",
    "min_max_scaler": "minmax",
    "quantile_transformer": "quantile",
}

_strings = Field(list, items=Field(str), check=non_empty)
#: keys of the analyses' application configs naming files that the classic scripts exported
#: for lwtnn; htt-tmva reads the model files themselves (their weights, layers, variables)
CLASSIC_EXPORTS = {
    "weights": "Keras weight files",
    "architecture_exports": "lwtnn architecture exports",
    "variable_exports": "lwtnn variable exports",
}

PROCESS_SCHEMA = {
    "files": Field(
        list, items=Field(str), check=non_empty, doc="ROOT files, relative to base_path"
    ),
    "cut_string": Field(
        Expression, default="1", check=expression, doc="selection in ROOT expression syntax"
    ),
    "weight_string": Field(
        Expression, default="1", check=expression, doc="event weight expression"
    ),
    "class": Field(str, doc="class (output tree) of this process"),
}

DATASET_SCHEMA = {
    "output_path": Field(str, doc="folder of the fold files"),
    "output_filename": Field(str, doc="fold files are named fold{i}_<output_filename>"),
    "tree_path": Field(str, doc="path of the tree in every input file"),
    "base_path": Field(str, default=".", doc="folder the process files are relative to"),
    "event_branch": Field(str, check=branch_name, doc="event number branch used for the folds"),
    "training_weight_branch": Field(
        str, check=branch_name, doc="name of the computed weight branch"
    ),
    "folds": Field(
        int, default=2, check=lambda v: None if v >= 2 else f"must be at least 2, got {v}"
    ),
    "processes": Field(dict, values=Field(dict, keys=PROCESS_SCHEMA), check=non_empty),
    "friend_paths": Field(
        list,
        items=Field(str),
        default=None,
        doc="friend folders, one per friend source, with the file layout of base_path",
    ),
}

MODEL_SCHEMA = {
    "name": Field(str, doc="built-in model ('example', 'smhtt') or 'module:function'"),
    "batch_size": Field(
        int, default=None, check=positive, doc="events per batch (or eventsPerClassAndBatch)"
    ),
    "epochs": Field(int, check=positive),
    "early_stopping": Field(int, default=None, doc="patience in epochs", nullable=True),
    "seed": Field(int, default=1234),
    "learning_rate": Field(float, default=1e-3, check=positive),
    "save_best_only": Field(bool, default=True),
    "reduce_lr_on_plateau": Field(int, default=None, nullable=True, doc="patience in epochs"),
    "eventsPerClassAndBatch": Field(
        int, default=None, check=positive, doc="balanced batches: events of each class per batch"
    ),
    "steps_per_epoch": Field(int, default=None, check=positive, doc="batches per epoch"),
}

BDT_SCHEMA = {
    "NTrees": Field(int, default=1500, check=positive),
    "Shrinkage": Field(float, default=0.10, check=positive),
    "MaxDepth": Field(int, default=3, check=positive),
    "UseBaggedBoost": Field(bool, default=True),
    "BaggedSampleFraction": Field(
        float, default=0.5, check=lambda v: fraction(v) if v != 1.0 else None
    ),
    "nCuts": Field(int, default=50, check=positive),
    "early_stopping": Field(int, default=None, nullable=True, doc="rounds without improvement"),
    "n_jobs": Field(int, default=2, check=positive),
}

TRAINING_SCHEMA = {
    "datasets": Field(list, items=Field(str), check=non_empty, doc="one fold file per fold"),
    "base_path": Field(str, default=".", doc="folder the datasets are relative to"),
    "output_path": Field(str),
    "classes": Field(list, items=Field(str), check=lambda v: non_empty(v) or unique(v)),
    "class_weights": Field(dict, values=Field(float), default=None),
    "global_weight_scale": Field(
        float, default=1.0, doc="factor on event weights; no effect on keras or bdt models"
    ),
    "event_weights": Field(str, check=branch_name, doc="weight branch in the fold trees"),
    "event_branch": Field(
        str,
        default="event",
        check=branch_name,
        doc="event number, checks the fold of files without metadata",
    ),
    "variables": Field(
        list, items=Field(str, check=expression), check=lambda v: non_empty(v) or unique(v)
    ),
    "train_test_split": Field(float, default=0.75, check=fraction),
    "engine": Field(str, default="keras", choices=ENGINES),
    "preprocessing": Field(
        str, default="standard", choices=PREPROCESSING + tuple(CLASSIC_PREPROCESSING)
    ),
    "write_pickle": Field(bool, default=False, doc="also write a classic sklearn pickle"),
    "model": Field(dict, keys=MODEL_SCHEMA),
    "bdt": Field(dict, keys=BDT_SCHEMA, default=None),
    "tmva": Field(
        dict, keys=TMVA_SCHEMA, default=None, doc="TMVA engine: methods, option overrides"
    ),
    "seed": Field(int, default=None, doc="classic place of model.seed"),
    "output_path_json": Field(str, default=None, doc="classic: lwtnn export folder; not used"),
}

TESTING_SCHEMA = {
    "model": Field(list, items=Field(str), check=non_empty, doc="model file per fold"),
    "preprocessing": Field(list, items=Field(str), default=None, doc="preprocessing per fold"),
    "weight_branch": Field(str, doc="event weight used to fill the matrices"),
    "output_prefix": Field(str, default="", doc="prefix of the output files"),
    "engine": Field(str, default=None, choices=ENGINES, nullable=True),
}

APPLICATION_SCHEMA = {
    "classifiers": Field(
        list,
        items=Field(str),
        check=non_empty,
        doc="model per event fold: entry i scores events with event % k == i",
    ),
    "preprocessing": Field(list, items=Field(str), default=None),
    "branch_prefix": Field(str),
    "engine": Field(str, default=None, choices=ENGINES, nullable=True),
    **{
        key: Field(list, items=Field(str), default=None, doc=f"classic: {what}; not read")
        for key, what in CLASSIC_EXPORTS.items()
    },
    "output_directory": Field(
        str,
        default=None,
        nullable=True,
        doc="friend output folder (classic friend producer): DIR/<nick>/<nick>.root",
    ),
}


def load_yaml(path: str | Path) -> tuple[Path, Any]:
    """Read a YAML file safely; a missing file or bad YAML is a ConfigError naming the file."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file '{path}' does not exist (looked for '{path.absolute()}')")
    try:
        with open(path) as f:
            return path.resolve(), yaml.safe_load(f)
    except yaml.YAMLError as exc:
        raise ConfigError(f"config file '{path}' is not valid YAML: {exc}") from None


def _working_directory() -> Path:
    """What relative paths in configs are relative to: the working directory, as for the
    classic scripts (run from the analysis folder; resolved once, when a config is loaded)."""
    return Path.cwd()


def _resolve(base: Path | RemoteUrl, value: str) -> Path | RemoteUrl:
    """``value`` against ``base``; root:// URLs (either one) stay URLs, never local paths."""
    if is_remote(value):
        return RemoteUrl(value)
    p = Path(value).expanduser()
    if p.is_absolute():
        return p
    return base.joinpath(value) if is_remote(base) else (base / p).resolve()


def _local_output(here: Path, value: str, source: str | Path) -> Path:
    """``output_path`` resolved; outputs are written locally (atomic renames need it)."""
    if is_remote(value):
        raise ConfigError(
            f"{source}: key 'output_path' is a remote URL ('{value}'); outputs are written to "
            "a local folder only (copy them to the storage afterwards, e.g. with xrdcp)"
        )
    return _resolve(here, value)


def config_hash(raw: dict) -> str:
    """Stable short hash of a validated config (key order independent)."""
    text = json.dumps(raw, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


@dataclass
class StageConfig:
    """What every stage config has: its file and its validated contents."""

    source: Path
    raw: dict = field(repr=False)

    @property
    def hash(self) -> str:
        return config_hash(self.raw)

    def resolved(self) -> dict:
        """The validated config, paths resolved, with its source and hash."""
        return {"source": str(self.source), "config_hash": self.hash, "resolved": _plain(self)}

    def write_resolved(self, path: str | Path) -> Path:
        """Write the resolved config next to an output."""
        return write_resolved_configs(path, self)


def write_resolved_configs(path: str | Path, *configs: StageConfig, **extra: Any) -> Path:
    """Write one or several resolved configs (and extra facts) as one YAML file."""
    path = Path(path)
    docs = [c.resolved() for c in configs]
    doc = docs[0] if len(docs) == 1 and not extra else {**_plain(extra), "configs": docs}
    with open(path, "w") as f:
        yaml.safe_dump(doc, f, sort_keys=False)
    return path


def _plain(obj: Any) -> Any:
    if isinstance(obj, (Path, str)):
        return str(obj)
    if isinstance(obj, dict):
        return {str(k): _plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_plain(v) for v in obj]
    if hasattr(obj, "__dataclass_fields__"):
        return {
            k: _plain(getattr(obj, k))
            for k in obj.__dataclass_fields__
            if k not in ("raw", "source")
        }
    return obj


@dataclass
class ProcessConfig:
    name: str
    files: list[Path]
    cut_string: str
    weight_string: str
    class_name: str
    friend_files: list[list[Path]] = field(default_factory=list)  # per file, one per friend


@dataclass
class DatasetConfig(StageConfig):
    output_path: Path = Path(".")
    output_filename: str = ""
    tree_path: str = ""
    base_path: Path = Path(".")
    event_branch: str = ""
    training_weight_branch: str = ""
    folds: int = 2
    processes: dict[str, ProcessConfig] = field(default_factory=dict)
    friend_paths: list[Path] = field(default_factory=list)

    def fold_file(self, fold: int) -> Path:
        return self.output_path / f"fold{fold}_{self.output_filename}"

    @property
    def classes(self) -> list[str]:
        """Class names in order of first appearance."""
        return list(dict.fromkeys(p.class_name for p in self.processes.values()))


@dataclass
class ModelConfig:
    name: str
    batch_size: int
    epochs: int
    early_stopping: Optional[int]
    seed: int
    learning_rate: float
    save_best_only: bool
    reduce_lr_on_plateau: Optional[int]
    eventsPerClassAndBatch: Optional[int] = None
    steps_per_epoch: Optional[int] = None
    learning_rate_given: bool = True  # false: a classic zoo model keeps its classic rate

    @property
    def balanced_batches(self) -> bool:
        """Batches of ``eventsPerClassAndBatch`` events of every class (the classic trainer's
        ``--balance-batches``, which the analyses used)."""
        return self.eventsPerClassAndBatch is not None


@dataclass
class BdtConfig:
    NTrees: int = 1500
    Shrinkage: float = 0.10
    MaxDepth: int = 3
    UseBaggedBoost: bool = True
    BaggedSampleFraction: float = 0.5
    nCuts: int = 50
    early_stopping: Optional[int] = None
    n_jobs: int = 2


@dataclass
class TrainingConfig(StageConfig):
    datasets: list[Path] = field(default_factory=list)
    output_path: Path = Path(".")
    classes: list[str] = field(default_factory=list)
    class_weights: dict[str, float] = field(default_factory=dict)
    global_weight_scale: float = 1.0
    event_weights: str = ""
    event_branch: str = "event"
    variables: list[str] = field(default_factory=list)
    train_test_split: float = 0.75
    engine: str = "keras"
    preprocessing: str = "standard"
    write_pickle: bool = False
    model: Optional[ModelConfig] = None
    bdt: BdtConfig = field(default_factory=BdtConfig)
    tmva: dict[str, Any] = field(default_factory=dict)

    @property
    def folds(self) -> int:
        return len(self.datasets)


@dataclass
class TestingConfig(StageConfig):
    model: list[Path] = field(default_factory=list)
    preprocessing: Optional[list[Path]] = None
    weight_branch: str = ""
    output_prefix: str = ""
    engine: Optional[str] = None


@dataclass
class ApplicationConfig(StageConfig):
    classifiers: list[Path] = field(default_factory=list)
    preprocessing: Optional[list[Path]] = None
    branch_prefix: str = ""
    engine: Optional[str] = None
    #: relative entries from the working directory, as the classic application read them
    #: (used where the file is there; None for absolute entries)
    classifiers_cwd: list[Optional[Path]] = field(default_factory=list)
    preprocessing_cwd: Optional[list[Optional[Path]]] = None
    output_directory: Optional[Path] = None  # friend files: DIR/<nick>/<nick>.root


# --- merged dataset + training files (sm-htt-analysis wrote both into dataset_config.yaml) ---

#: keys that only a dataset config has; ``base_path`` there is the folder of the ntuples
_DATASET_ONLY = ("processes", "friend_paths", "output_filename", "tree_path", "base_path")


def _dataset_part(doc: Any, path) -> Any:
    """The dataset keys of a config; a merged dataset + training file loses its training keys
    (known to the training schema); a training config is refused, saying what to give."""
    if not isinstance(doc, dict):
        return doc
    if "processes" not in doc and "datasets" in doc:
        raise ConfigError(
            f"{path} is a training config (key 'datasets' lists fold files, and it has no "
            "'processes'): the dataset step needs a dataset config with 'processes' (files, "
            "cut_string, weight_string, class per process); train on this one with "
            "`htt-tmva train`"
        )
    training = [k for k in doc if k in TRAINING_SCHEMA and k not in DATASET_SCHEMA]
    if "processes" in doc and training:
        logging.getLogger(__name__).info(
            "%s: a merged dataset + training config; the dataset step ignores its training keys %s",
            path,
            ", ".join(training),
        )
        return {k: v for k, v in doc.items() if k not in training}
    return doc


def _training_part(doc: Any, path) -> Any:
    """The training keys of a config; a merged dataset + training file loses its dataset keys
    (its ``base_path`` is the ntuples' folder: its ``datasets`` are relative to the working
    directory, as in the classic trainer); a dataset config is refused, saying what to do."""
    if not isinstance(doc, dict) or "processes" not in doc:
        return doc
    if "datasets" not in doc:
        raise ConfigError(
            f"{path} is a dataset config (it has 'processes' and no 'datasets'): build the "
            f"fold files with `htt-tmva dataset {path}`, then train with a training config "
            "that lists them under 'datasets' (one file per fold)"
        )
    dropped = [k for k in doc if k in _DATASET_ONLY or (k in DATASET_SCHEMA and k not in
               TRAINING_SCHEMA)]  # fmt: skip
    logging.getLogger(__name__).info(
        "%s: a merged dataset + training config; training ignores its dataset keys %s",
        path,
        ", ".join(dropped),
    )
    return {k: v for k, v in doc.items() if k not in dropped}


def _friend_files(files: list[str], friends: list, name: str, path) -> list[list[Path]]:
    """Per process file, its friend files: the same relative path under each friend folder."""
    out = []
    for f in files:
        if is_remote(f) or Path(f).expanduser().is_absolute():
            raise ConfigError(
                f"{path}: key 'processes.{name}.files' holds the absolute path '{f}'; with "
                "'friend_paths', process files are relative to base_path (each friend folder "
                "holds the same relative paths)"
            )
        out.append([_resolve(folder, f) for folder in friends])
    return out


def load_dataset_config(path: str | Path) -> DatasetConfig:
    """Load and validate a dataset config; ``base_path``, ``friend_paths`` and ``output_path``
    resolve against the working directory, process files against ``base_path`` (and each
    friend folder)."""
    source, doc = load_yaml(path)
    raw = validate(_dataset_part(doc, path), DATASET_SCHEMA, str(path))
    here = _working_directory()
    base = _resolve(here, raw["base_path"])
    friends = [_resolve(here, f) for f in raw["friend_paths"] or []]
    processes = {
        name: ProcessConfig(
            name=name,
            files=[_resolve(base, f) for f in p["files"]],
            cut_string=p["cut_string"],
            weight_string=p["weight_string"],
            class_name=p["class"],
            friend_files=_friend_files(p["files"], friends, name, path) if friends else [],
        )
        for name, p in raw["processes"].items()
    }
    return DatasetConfig(
        source=source,
        raw=raw,
        output_path=_local_output(here, raw["output_path"], path),
        output_filename=raw["output_filename"],
        tree_path=raw["tree_path"],
        base_path=base,
        event_branch=raw["event_branch"],
        training_weight_branch=raw["training_weight_branch"],
        folds=raw["folds"],
        processes=processes,
        friend_paths=friends,
    )


def load_training_config(path: str | Path) -> TrainingConfig:
    """Load and validate a training config; ``base_path`` and ``output_path`` resolve against
    the working directory, datasets against ``base_path``; class weights default to 1."""
    source, doc = load_yaml(path)
    raw = validate(_training_part(doc, path), TRAINING_SCHEMA, str(path))
    if raw["output_path_json"] is not None:
        log.info(
            "%s: key 'output_path_json' (the classic lwtnn exports) is not used; "
            "`htt-tmva export` writes next to the models",
            path,
        )
    here = _working_directory()
    base = _resolve(here, raw["base_path"])
    classes = raw["classes"]
    weights = raw["class_weights"] or {c: 1.0 for c in classes}
    unknown = [c for c in weights if c not in classes]
    missing = [c for c in classes if c not in weights]
    if unknown or missing:
        raise ConfigError(
            f"{path}: key 'class_weights' must hold one weight per class; "
            + (f"unknown classes {choices_text(unknown)}; " if unknown else "")
            + (f"missing classes {choices_text(missing)}; " if missing else "")
            + f"classes: {choices_text(classes)}"
        )
    if len(raw["datasets"]) < 2:
        raise ConfigError(f"{path}: key 'datasets' needs one file per fold, at least 2")
    return TrainingConfig(
        source=source,
        raw=raw,
        datasets=[_resolve(base, d) for d in raw["datasets"]],
        output_path=_local_output(here, raw["output_path"], path),
        classes=classes,
        class_weights=weights,
        global_weight_scale=raw["global_weight_scale"],
        event_weights=raw["event_weights"],
        event_branch=raw["event_branch"],
        variables=raw["variables"],
        train_test_split=raw["train_test_split"],
        engine=raw["engine"],
        preprocessing=CLASSIC_PREPROCESSING.get(raw["preprocessing"], raw["preprocessing"]),
        write_pickle=raw["write_pickle"],
        model=_model_config(raw, doc, classes, path),
        bdt=BdtConfig(**(raw["bdt"] or {})),
        tmva=raw["tmva"] or validate({}, TMVA_SCHEMA, str(path)),
    )


def _model_config(raw: dict, doc: dict, classes: list[str], path) -> ModelConfig:
    """The ``model`` section with the classic keys of the analyses' configs: a top-level
    ``seed`` is ``model.seed``; ``eventsPerClassAndBatch`` (balanced batches) sets the batch
    size to that many events of each class."""
    settings = dict(raw["model"])
    given = doc["model"]
    if raw["seed"] is not None:
        if "seed" in given and given["seed"] != raw["seed"]:
            raise ConfigError(
                f"{path}: keys 'seed' ({raw['seed']}) and 'model.seed' ({given['seed']}) differ; "
                "they mean the same (the classic scripts read 'seed'): give one of them"
            )
        settings["seed"] = raw["seed"]
    per_class = settings["eventsPerClassAndBatch"]
    if per_class is None:
        if settings["batch_size"] is None:
            raise ConfigError(
                f"{path}: key 'model.batch_size' is required but missing (events per batch; "
                "or 'model.eventsPerClassAndBatch' for balanced batches)"
            )
        if settings["steps_per_epoch"] is not None:
            raise ConfigError(
                f"{path}: key 'model.steps_per_epoch' needs 'model.eventsPerClassAndBatch' "
                "(balanced batches); without it an epoch is one pass over the training events"
            )
    elif settings["batch_size"] is not None:
        raise ConfigError(
            f"{path}: keys 'model.batch_size' and 'model.eventsPerClassAndBatch' both given; "
            "balanced batches hold eventsPerClassAndBatch events of each class: give one of them"
        )
    else:
        settings["batch_size"] = per_class * len(classes)
    return ModelConfig(**settings, learning_rate_given="learning_rate" in given)


def _per_fold(paths: Optional[list[str]], base: Path) -> Optional[list[Path]]:
    return None if paths is None else [_resolve(base, p) for p in paths]


def load_testing_config(path: str | Path, training: TrainingConfig) -> TestingConfig:
    """Load a testing config; model paths resolve against the training output_path."""
    source, doc = load_yaml(path)
    raw = validate(doc, TESTING_SCHEMA, str(path))
    base = training.output_path
    return TestingConfig(
        source=source,
        raw=raw,
        model=_per_fold(raw["model"], base),
        preprocessing=_per_fold(raw["preprocessing"], base),
        weight_branch=raw["weight_branch"],
        output_prefix=raw["output_prefix"],
        engine=raw["engine"],
    )


def load_application_config(path: str | Path, training: TrainingConfig) -> ApplicationConfig:
    """Load an application config; classifier paths resolve against the training output_path."""
    source, doc = load_yaml(path)
    raw = validate(doc, APPLICATION_SCHEMA, str(path))
    ignored = [key for key in CLASSIC_EXPORTS if raw[key] is not None]
    if ignored:
        log.info(
            "%s: keys %s (files exported for lwtnn by the classic scripts) are not read: the "
            "models are read from 'classifiers'",
            path,
            choices_text(ignored),
        )
    base = training.output_path
    return ApplicationConfig(
        source=source,
        raw=raw,
        classifiers=_per_fold(raw["classifiers"], base),
        preprocessing=_per_fold(raw["preprocessing"], base),
        branch_prefix=raw["branch_prefix"],
        engine=raw["engine"],
        classifiers_cwd=_from_working_directory(raw["classifiers"], base),
        preprocessing_cwd=_from_working_directory(raw["preprocessing"], base),
        output_directory=(
            _resolve(_working_directory(), raw["output_directory"])
            if raw["output_directory"]
            else None
        ),
    )


def _from_working_directory(
    paths: Optional[list[str]], base: Path
) -> Optional[list[Optional[Path]]]:
    """Relative entries from the working directory, where that differs from ``base``."""
    if paths is None:
        return None
    here = _working_directory()
    out = []
    for value in paths:
        local = not is_remote(value) and not Path(value).expanduser().is_absolute()
        candidate = _resolve(here, value) if local else None
        out.append(candidate if candidate != _resolve(base, value) else None)
    return out
