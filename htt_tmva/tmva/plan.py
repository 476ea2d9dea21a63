"""The TMVA booking plan of one fold: every call and option string TMVA gets, built from the
training config alone (no ROOT, no TMVA), so that it can be printed (``--dry-run``), tested
and checked anywhere; :mod:`htt_tmva.tmva.factory` runs it where TMVA exists.

As the classic ``TMVA_training.py``: a Factory ``TMVAMulticlass`` (multiclass) writing
``fold{i}_training.root`` in ``output_path``, a DataLoader ``fold{i}_training`` (weight files
in ``output_path/fold{i}_training/weights/``), one tree per class with weight
``class_weights[class] * global_weight_scale`` and ``event_weights`` as weight expression,
a random, seeded training/test split per class from ``train_test_split`` with
``NormMode=None`` (no renormalisation of the class weights). DNN and PyKeras train on TMVA's
training sample less its last ``ValidationSize`` events, on which they stop early and keep
the best epoch (MethodDL/MethodPyKeras::Train): it is set explicitly, so the plan shows it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

from htt_tmva.cpp_text import cpp_string
from htt_tmva.errors import ConfigError
from htt_tmva.tmva import checks
from htt_tmva.tmva.options import (
    DATALOADER_OPTIONS,
    FACTORY_OPTIONS,
    METHOD_OPTIONS,
    format_value,
    option_string,
    set_options,
)

FACTORY_NAME = "TMVAMulticlass"
#: the part of TMVA's training sample that DNN and PyKeras keep for validation (TMVA's default)
VALIDATION_SIZE = "20%"
METHOD_TYPES = {"BDTG": "kBDT", "DNN": "kDL", "PyKeras": "kPyKeras"}

#: the classic BDTG booking (TMVA_training.py)
BDTG_DEFAULTS = {
    "H": False,
    "V": False,
    "VarTransform": "None",
    "NTrees": 1500,
    "BoostType": "Grad",
    "Shrinkage": 0.10,
    "UseBaggedBoost": True,
    "BaggedSampleFraction": 0.5,
    "nCuts": 50,
    "MaxDepth": 3,
    "SeparationType": "GiniIndex",
}

#: MethodDL layouts equivalent to the Keras model zoo (htt_tmva.engines.models); {n} = classes
DNN_LAYOUTS = {
    "example": ("DENSE|10|RELU,DENSE|{n}|LINEAR", ""),
    "smhtt": (
        "DENSE|300|RELU,DENSE|300|RELU,DENSE|300|RELU,DENSE|{n}|LINEAR",
        ",Regularization=L2,WeightDecay=1e-4",
    ),
}


@dataclass
class ClassTree:
    """One class: the tree of that name in the fold file, its weight and weight expression."""

    name: str
    weight: float
    weight_expression: str


@dataclass
class BookedMethod:
    method: str  # BDTG, DNN, PyKeras
    type: str  # TMVA::Types enum name
    title: str
    options: str
    weight_file: Path
    keras_model: Optional[Path] = None  # PyKeras: the untrained model written for TMVA
    trained_model: Optional[Path] = None  # PyKeras: the trained model TMVA writes
    values: dict[str, Any] = field(default_factory=dict)  # the options, before joining

    @property
    def class_file(self) -> Path:
        """The standalone C++ class TMVA writes next to the weight file (MakeClass)."""
        stem = self.weight_file.name[: -len(".weights.xml")]
        return self.weight_file.with_name(f"{stem}.class.C")


@dataclass
class BookingPlan:
    fold: int
    scores_fold: int
    dataset: Path  # or a RemoteUrl (root://)
    output_path: Path
    output_file: Path
    factory_name: str
    factory_options: str
    dataloader_name: str
    variables: list[str]
    classes: list[ClassTree]
    split_options: str
    methods: list[BookedMethod]

    @property
    def weights_dir(self) -> Path:
        return self.output_path / self.dataloader_name / "weights"

    @property
    def needs_pymva(self) -> bool:
        return any(m.method == "PyKeras" for m in self.methods)

    def describe(self) -> str:
        """The plan as the calls TMVA gets, with the exact option strings."""
        q = _quoted
        lines = [
            f"# TMVA booking plan of fold {self.fold} (trains on {self.dataset.name}; "
            f"its models score fold {self.scores_fold})",
            "# working directory: " + str(self.output_path),
            "TMVA::Tools::Instance();",
        ]
        if self.needs_pymva:
            lines.append("TMVA::PyMethodBase::PyInitialize();")
        lines += [
            f'auto output = TFile::Open({q(self.output_file)}, "RECREATE");',
            f"TMVA::Factory factory({q(self.factory_name)}, output, {q(self.factory_options)});",
            f"TMVA::DataLoader loader({q(self.dataloader_name)});",
        ]
        lines += [f"loader.AddVariable({q(v)});" for v in self.variables]
        lines.append(f"auto input = TFile::Open({q(self.dataset)});")
        for c in self.classes:
            lines.append(
                f"loader.AddTree(input->Get<TTree>({q(c.name)}), {q(c.name)}, "
                f"{format_value(c.weight)});"
            )
            lines.append(f"loader.SetWeightExpression({q(c.weight_expression)}, {q(c.name)});")
        lines.append(f'loader.PrepareTrainingAndTestTree("", {q(self.split_options)});')
        for m in self.methods:
            if m.keras_model is not None:
                lines.append(f"# untrained Keras model saved to {m.keras_model}")
            lines.append(
                f"factory.BookMethod(&loader, TMVA::Types::{m.type}, {q(m.title)}, {q(m.options)});"
            )
            lines.append(f"#   -> weight file {m.weight_file}")
            if m.trained_model is not None:
                lines.append(f"#   -> trained Keras model {m.trained_model}")
        lines += [
            "factory.TrainAllMethods();",
            "factory.TestAllMethods();",
            "factory.EvaluateAllMethods();",
        ]
        return "\n".join(lines)


def _quoted(value: Any) -> str:
    return cpp_string(value)


def _merged(defaults: dict[str, Any], section: Any, declared: dict) -> dict[str, Any]:
    """Our defaults, each replaced in place by the user's value; the user's others appended
    (predefined values in TMVA's spelling)."""
    options = dict(defaults)
    options.update(set_options(section, declared))
    return options


def _checked_seed(seed: int, source: Path) -> int:
    if seed <= 0:
        raise ConfigError(
            f"{source}: key 'model.seed' is {seed}; the TMVA engine needs a positive seed "
            "(TMVA takes SplitSeed=0 and RandomSeed=0 as 'a different seed every run')"
        )
    return seed


def factory_options(config) -> str:
    defaults = {
        "V": False,
        "Silent": False,
        "Color": True,
        "DrawProgressBar": False,
        "Transformations": "I",
    }
    options = _merged(defaults, config.tmva.get("Factory"), FACTORY_OPTIONS)
    return option_string(options) + ":AnalysisType=multiclass"


def dataloader_options(config) -> dict[str, Any]:
    seed = _checked_seed(config.model.seed, config.source)
    defaults = {"SplitMode": "Random", "SplitSeed": seed}
    options = _merged(defaults, config.tmva.get("DataLoader"), DATALOADER_OPTIONS)
    options.setdefault("V", False)
    return options


def split_options(config) -> str:
    per_class = [
        f"TrainTestSplit_{c}={format_value(config.train_test_split)}" for c in config.classes
    ]
    options = dataloader_options(config)
    return ":".join([*per_class, option_string(options), "NormMode=None"])


def _dnn_defaults(config) -> dict[str, Any]:
    model = config.model
    n_classes = len(config.classes)
    layout, regularisation = DNN_LAYOUTS.get(model.name, (None, ""))
    user = set_options(config.tmva.get("DNN"), METHOD_OPTIONS["DNN"])
    if layout is None and "Layout" not in user:
        raise ConfigError(
            f"{config.source}: the model '{model.name}' has no TMVA DNN equivalent; give the "
            "layout in TMVA's syntax as key 'tmva.DNN.Layout' (e.g. "
            f"'DENSE|64|RELU,DENSE|{n_classes}|LINEAR'), or book BDTG/PyKeras only"
        )
    checks.check_patience(model.early_stopping, config.source)
    patience = checks.convergence_steps(model.early_stopping, model.epochs)
    strategy = (
        f"LearningRate={format_value(model.learning_rate)},Optimizer=ADAM,"
        f"BatchSize={model.batch_size},MaxEpochs={model.epochs},"
        f"ConvergenceSteps={patience},TestRepetitions=1{regularisation}"
    )
    return {
        "H": False,
        "V": False,
        "VarTransform": "N",
        "ErrorStrategy": "MUTUALEXCLUSIVE",
        "WeightInitialization": "XAVIER",
        "Layout": (layout or "").format(n=n_classes),
        "TrainingStrategy": strategy,
        "Architecture": "CPU",
        "RandomSeed": _checked_seed(model.seed, config.source),
        "ValidationSize": VALIDATION_SIZE,
    }


def _pykeras_defaults(config, keras_model: str, trained_model: str) -> dict[str, Any]:
    model = config.model
    checks.check_patience(model.early_stopping, config.source)
    return {
        "H": False,
        "V": False,
        "VarTransform": "N",
        "FilenameModel": keras_model,
        "FilenameTrainedModel": trained_model,
        "ValidationSize": VALIDATION_SIZE,
        "NumEpochs": model.epochs,
        "BatchSize": model.batch_size,
        "SaveBestOnly": model.save_best_only,
        "TriesEarlyStopping": model.early_stopping if model.early_stopping is not None else -1,
    }


def book_method(config, method: str, fold: int, dataloader: str) -> BookedMethod:
    """The method's title and option string (our defaults, then the ``tmva.<method>`` keys)."""
    section, declared = config.tmva.get(method), METHOD_OPTIONS[method]
    keras_model = trained_model = None
    if method == "BDTG":
        title, options = "BDTG", _merged(BDTG_DEFAULTS, section, declared)
    elif method == "DNN":
        title, options = "DNN", _merged(_dnn_defaults(config), section, declared)
        checks.check_layout(
            str(options["Layout"]), len(config.classes), len(config.variables), config.source
        )
    else:
        # the classic title, so that the classic TMVA application config finds the file
        title = f"PyKeras_fold{fold}"
        relative = f"{dataloader}/{title}_untrained.h5"
        trained = f"{dataloader}/weights/TrainedModel_{title}.h5"  # TMVA's default name
        options = _merged(_pykeras_defaults(config, relative, trained), section, declared)
        keras_model = config.output_path / options["FilenameModel"]
        trained_model = config.output_path / options["FilenameTrainedModel"]
    for key in ("VarTransform",):
        if key in options:
            checks.check_transform_classes(
                str(options[key]), config.classes, f"tmva.{method}.{key}", config.source
            )
    weight_file = (
        config.output_path / dataloader / "weights" / f"{FACTORY_NAME}_{title}.weights.xml"
    )
    return BookedMethod(
        method,
        METHOD_TYPES[method],
        title,
        option_string(options),
        weight_file,
        keras_model,
        trained_model,
        options,
    )


def booking_plan(config, fold: int) -> BookingPlan:
    """The plan of ``fold`` of a training config (validated, paths resolved)."""
    from htt_tmva.data.folds import scored_fold

    if not 0 <= fold < config.folds:
        raise ConfigError(
            f"fold {fold} does not exist: {config.source} lists {config.folds} datasets "
            f"(folds 0 to {config.folds - 1})"
        )
    checks.check_class_names(config.classes, config.source)
    checks.check_split_modes(dataloader_options(config), config.tmva["methods"], config.source)
    dataloader = f"fold{fold}_training"
    scale = config.global_weight_scale
    classes = [
        ClassTree(c, config.class_weights[c] * scale, config.event_weights) for c in config.classes
    ]
    methods = [book_method(config, m, fold, dataloader) for m in config.tmva["methods"]]
    return BookingPlan(
        fold=fold,
        scores_fold=scored_fold(fold, config.folds),
        dataset=config.datasets[fold],  # a Path, or a root:// URL kept as written
        output_path=Path(config.output_path),
        output_file=Path(config.output_path) / f"fold{fold}_training.root",
        factory_name=FACTORY_NAME,
        factory_options=factory_options(config),
        dataloader_name=dataloader,
        variables=list(config.variables),
        classes=classes,
        split_options=split_options(config),
        methods=methods,
    )
