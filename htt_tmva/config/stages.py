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
from htt_tmva.engines.tmva_options import TMVA_SCHEMA
from htt_tmva.errors import ConfigError, choices_text

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
}

MODEL_SCHEMA = {
    "name": Field(str, doc="built-in model ('example', 'smhtt') or 'module:function'"),
    "batch_size": Field(int, check=positive),
    "epochs": Field(int, check=positive),
    "early_stopping": Field(int, default=None, doc="patience in epochs", nullable=True),
    "seed": Field(int, default=1234),
    "learning_rate": Field(float, default=1e-3, check=positive),
    "save_best_only": Field(bool, default=True),
    "reduce_lr_on_plateau": Field(int, default=None, nullable=True, doc="patience in epochs"),
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


def load_dataset_config(path: str | Path) -> DatasetConfig:
    """Load and validate a dataset config; ``base_path`` and ``output_path`` resolve against
    the working directory, process files against ``base_path``."""
    source, doc = load_yaml(path)
    raw = validate(doc, DATASET_SCHEMA, str(path))
    here = _working_directory()
    base = _resolve(here, raw["base_path"])
    processes = {
        name: ProcessConfig(
            name=name,
            files=[_resolve(base, f) for f in p["files"]],
            cut_string=p["cut_string"],
            weight_string=p["weight_string"],
            class_name=p["class"],
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
    )


def load_training_config(path: str | Path) -> TrainingConfig:
    """Load and validate a training config; ``base_path`` and ``output_path`` resolve against
    the working directory, datasets against ``base_path``; class weights default to 1."""
    source, doc = load_yaml(path)
    raw = validate(doc, TRAINING_SCHEMA, str(path))
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
        model=ModelConfig(**raw["model"]),
        bdt=BdtConfig(**(raw["bdt"] or {})),
        tmva=raw["tmva"] or validate({}, TMVA_SCHEMA, str(path)),
    )


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
    base = training.output_path
    return ApplicationConfig(
        source=source,
        raw=raw,
        classifiers=_per_fold(raw["classifiers"], base),
        preprocessing=_per_fold(raw["preprocessing"], base),
        branch_prefix=raw["branch_prefix"],
        engine=raw["engine"],
    )
