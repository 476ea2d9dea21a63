"""The ``tmva:`` section of the training YAML: TMVA's option names, declared per method.

Declared here, with the other sections of the configs; :mod:`htt_tmva.tmva.options` turns
the options set into TMVA's option strings.

The lists follow the options TMVA declares (``DeclareOptions`` of MethodBase, MethodBDT,
MethodDL, MethodPyKeras, Factory and DataSetFactory); every one of them is declared by ROOT
6.30 to 6.40. Each option has a type; unknown names are config errors with a did-you-mean.
Options that htt-tmva fixes for the workflow to stay right (``AnalysisType=multiclass``,
``NormMode=None``, the per-class ``TrainTestSplit_<class>``) are not in the lists and so cannot
be overridden; ``ModelPersistence`` may only stay true (without it TMVA writes no weight file).

Values are checked as TMVA reads them: a string option with predefined values matches them
ignoring case (``Option<TString>``; TMVA then uses its own spelling, and so does the plan),
while ``VarTransform`` is parsed case-sensitively (``CreateVariableTransforms``).
"""

from __future__ import annotations

import re
from typing import Any, Optional

from htt_tmva.config.schema import Expression, Field, non_empty, unique
from htt_tmva.errors import choices_text, did_you_mean


def _number(text: str) -> Optional[float]:
    try:
        value = float(text)
    except ValueError:
        return None
    return value if value == value and abs(value) != float("inf") else None


def validation_size_problem(value: Any) -> Optional[str]:
    """Why TMVA cannot parse ``ValidationSize`` (``20%``, ``0.2`` or a number of events)."""
    text = str(value).strip()
    number = _number(text[:-1] if text.endswith("%") else text)
    if number is None:
        return (
            f"has value {value!r}; TMVA expects a fraction of the training sample ('20%' or "
            "0.2) or a number of events (100)"
        )
    if number <= 0 or (text.endswith("%") and number >= 100):
        return f"has value {value!r}; it must leave a validation sample and a training sample"
    return None


#: methods the engine books; each is a key of the ``tmva:`` section
METHODS = ("BDTG", "DNN", "PyKeras")
DEFAULT_METHODS = ("BDTG", "DNN")

_VERBOSITY = ("Default", "Debug", "Verbose", "Info", "Warning", "Error", "Fatal")


class OneOf:
    """The predefined values of a TMVA string option, matched ignoring case as TMVA's
    ``Option<TString>`` matches them; ``only`` narrows them to those that work in htt-tmva's
    multiclass jobs (``reason`` says why)."""

    def __init__(self, *choices: str, only: tuple = (), reason: str = ""):
        self.choices, self.only, self.reason = choices, only or choices, reason

    def canonical(self, value: str) -> Optional[str]:
        """TMVA's own spelling of ``value``, or None where TMVA does not know it."""
        return next((c for c in self.choices if c.lower() == str(value).lower()), None)

    def __call__(self, value: str) -> Optional[str]:
        known = self.canonical(value)
        if known is None:
            return (
                f"has value {value!r}{did_you_mean(value, self.choices)}; valid choices (any "
                f"case, as TMVA reads them): {choices_text(self.choices)}"
            )
        if known not in self.only:
            return f"has value {value!r}; {self.reason}"
        return None


def _opt(kind: type, choices: tuple = (), check=None) -> Field:
    return Field(kind, default=None, nullable=True, check=OneOf(*choices) if choices else check)


#: transformation names of ``CreateVariableTransforms`` (compared case-sensitively there)
TRANSFORMATIONS = (
    "I", "Ident", "Identity", "D", "Deco", "Decorrelate", "P", "PCA",
    "U", "Uniform", "G", "Gauss", "N", "Norm", "Normalise", "Normalize",
)  # fmt: skip


def transformation_parts(value: str) -> list[tuple[str, Optional[str]]]:
    """``VarTransform`` as TMVA splits it: (name, class or None) per transformation, the
    ``(variables)`` selections left out; ``None`` alone means no transformation."""
    if value == "None":
        return []
    parts, depth, current = [], 0, ""
    for ch in value + ",":
        depth += ch == "("
        depth -= ch == ")"
        if ch in ",+" and depth == 0:
            parts.append(re.sub(r"\(.*?\)", "", current))
            current = ""
        else:
            current += ch
    out = []
    for part in parts:
        name, _, rest = part.partition("_")
        out.append((name, rest.split("_")[0] if rest else None))
    return out


def _var_transform(value: str) -> Optional[str]:
    for name, _ in transformation_parts(value):
        if name not in TRANSFORMATIONS:
            cased = [t for t in TRANSFORMATIONS if t.lower() == name.lower()]
            hint = f" (did you mean '{cased[0]}'?)" if cased else ""
            hint = hint or did_you_mean(name, TRANSFORMATIONS)
            return (
                f"has value {value!r}: TMVA knows no transformation {name!r}{hint} (names are "
                "case-sensitive there); "
                f"valid: 'None' or a comma-separated list of {choices_text(TRANSFORMATIONS)}, "
                "each optionally with _<class> and (variables)"
            )
    return None


#: options of every method (TMVA::MethodBase::DeclareBaseOptions)
BASE_OPTIONS = {
    "H": _opt(bool),
    "V": _opt(bool),
    "VerbosityLevel": _opt(str, _VERBOSITY),
    "VarTransform": _opt(str, check=_var_transform),
    "CreateMVAPdfs": _opt(bool),
    "IgnoreNegWeightsInTraining": _opt(bool),
}

#: TMVA::MethodBDT (deprecated options left out)
BDT_OPTIONS = {
    **BASE_OPTIONS,
    "NTrees": _opt(int),
    "MaxDepth": _opt(int),
    "MinNodeSize": _opt(Expression),
    "nCuts": _opt(int),
    "BoostType": _opt(
        str,
        check=OneOf(
            "AdaBoost",
            "RealAdaBoost",
            "AdaCost",
            "Bagging",
            "AdaBoostR2",
            "Grad",
            only=("Grad",),
            reason="htt-tmva's jobs are multiclass, and a multiclass MethodBDT needs "
            "BoostType=Grad (TMVA stops with a FATAL error for any other)",
        ),
    ),
    "AdaBoostR2Loss": _opt(str, ("Linear", "Quadratic", "Exponential")),
    "UseBaggedBoost": _opt(bool),
    "Shrinkage": _opt(float),
    "AdaBoostBeta": _opt(float),
    "UseRandomisedTrees": _opt(bool),
    "UseNvars": _opt(int),
    "UsePoissonNvars": _opt(bool),
    "BaggedSampleFraction": _opt(float),
    "UseYesNoLeaf": _opt(bool),
    "NegWeightTreatment": _opt(
        str,
        (
            "InverseBoostNegWeights",
            "IgnoreNegWeightsInTraining",
            "NoNegWeightsInTraining",
            "PairNegWeightsGlobal",
            "Pray",
        ),
    ),
    "Css": _opt(float),
    "Cts_sb": _opt(float),
    "Ctb_ss": _opt(float),
    "Cbb": _opt(float),
    "NodePurityLimit": _opt(float),
    "SeparationType": _opt(
        str,
        (
            "CrossEntropy",
            "GiniIndex",
            "GiniIndexWithLaplace",
            "MisClassificationError",
            "SDivSqrtSPlusB",
            "RegressionVariance",
        ),
    ),
    "DoBoostMonitor": _opt(bool),
    "UseFisherCuts": _opt(bool),
    "MinLinCorrForFisher": _opt(float),
    "UseExclusiveVars": _opt(bool),
    "DoPreselection": _opt(bool),
    "SigToBkgFraction": _opt(float),
    "PruneMethod": _opt(str, ("NoPruning", "ExpectedError", "CostComplexity")),
    "PruneStrength": _opt(float),
    "PruningValFraction": _opt(float),
    "SkipNormalization": _opt(bool),
}

#: TMVA::MethodDL ("DNN" here); TrainingStrategy is one string of TMVA's own syntax
DL_OPTIONS = {
    **BASE_OPTIONS,
    "InputLayout": _opt(str),
    "BatchLayout": _opt(str),
    "Layout": _opt(str),
    "ErrorStrategy": _opt(str, ("CROSSENTROPY", "SUMOFSQUARES", "MUTUALEXCLUSIVE")),
    "WeightInitialization": _opt(
        str, ("XAVIER", "XAVIERUNIFORM", "GAUSS", "UNIFORM", "IDENTITY", "ZERO")
    ),
    "RandomSeed": _opt(int),
    "ValidationSize": _opt(Expression, check=validation_size_problem),
    "Architecture": _opt(
        str,
        check=OneOf(
            "STANDARD",
            "CPU",
            "GPU",
            "OPENCL",
            "CUDNN",
            only=("STANDARD", "CPU", "GPU", "CUDNN"),
            reason="TMVA declares OPENCL but stops with a FATAL error in training (not "
            "implemented); use CPU or GPU",
        ),
    ),
    "TrainingStrategy": _opt(str),
}

#: TMVA::MethodPyKeras (PyMVA)
PYKERAS_OPTIONS = {
    **BASE_OPTIONS,
    "FilenameModel": _opt(str),
    "FilenameTrainedModel": _opt(str),
    "BatchSize": _opt(int),
    "NumEpochs": _opt(int),
    "NumThreads": _opt(int),
    "GpuOptions": _opt(str),
    "Verbose": _opt(int),
    "ContinueTraining": _opt(bool),
    "SaveBestOnly": _opt(bool),
    "TriesEarlyStopping": _opt(int),
    "LearningRateSchedule": _opt(str),
    "TensorBoard": _opt(str),
    "ValidationSize": _opt(Expression, check=validation_size_problem),
    "UserCode": _opt(str),
    "tfkeras": _opt(bool),
}

#: TMVA::Factory (AnalysisType is fixed to multiclass)
FACTORY_OPTIONS = {
    "V": _opt(bool),
    "VerboseLevel": _opt(str, ("Debug", "Verbose", "Info")),
    "Silent": _opt(bool),
    "Color": _opt(bool),
    "DrawProgressBar": _opt(bool),
    "Transformations": _opt(str),
    "Correlations": _opt(bool),
    "ROC": _opt(bool),
    "ModelPersistence": _opt(
        bool,
        check=lambda v: (
            None
            if v
            else "must stay true: without it TMVA writes no weight file, and the training would "
            "fail after all its work (htt-tmva fixes it, like AnalysisType)"
        ),
    ),
}

#: DataLoader::PrepareTrainingAndTestTree, i.e. DataSetFactory (NormMode and the per-class
#: TrainTestSplit_/nTrain_/nTest_ are fixed by htt-tmva)
DATALOADER_OPTIONS = {
    "SplitMode": _opt(str, ("Random", "Alternate", "Block")),
    "MixMode": _opt(str, ("SameAsSplitMode", "Random", "Alternate", "Block")),
    "SplitSeed": _opt(int),
    "ScaleWithPreselEff": _opt(bool),
    "V": _opt(bool),
    "VerboseLevel": _opt(str, ("Debug", "Verbose", "Info")),
    "Correlations": _opt(bool),
    "CalcCorrelations": _opt(bool),
}

METHOD_OPTIONS = {"BDTG": BDT_OPTIONS, "DNN": DL_OPTIONS, "PyKeras": PYKERAS_OPTIONS}

TMVA_SCHEMA = {
    "methods": Field(
        list,
        items=Field(str, choices=METHODS),
        default=list(DEFAULT_METHODS),
        check=lambda v: non_empty(v) or unique(v),
        doc="methods to book",
    ),
    "Factory": Field(dict, keys=FACTORY_OPTIONS, default=None),
    "DataLoader": Field(dict, keys=DATALOADER_OPTIONS, default=None),
    **{name: Field(dict, keys=options, default=None) for name, options in METHOD_OPTIONS.items()},
}
