"""TMVA's option names, declared per method, and the ``tmva:`` section of the training YAML.

The lists follow the options TMVA declares (``DeclareOptions`` of MethodBase, MethodBDT,
MethodDL, MethodPyKeras, Factory and DataSetFactory) in ROOT 6.30 to 6.40. Each option has a
type; unknown names are config errors with a did-you-mean. Options that htt-tmva fixes for the
workflow to stay right (``AnalysisType=multiclass``, ``NormMode=None``, the per-class
``TrainTestSplit_<class>``) are not in the lists and so cannot be overridden. A few options
are newer than ROOT 6.30 (e.g. ``CalcCorrelations``); an older TMVA rejects them itself.
"""

from __future__ import annotations

from typing import Any

from htt_tmva.config.schema import Expression, Field, non_empty, unique

#: methods the engine books; each is a key of the ``tmva:`` section
METHODS = ("BDTG", "DNN", "PyKeras")
DEFAULT_METHODS = ("BDTG", "DNN")

_VERBOSITY = ("Default", "Debug", "Verbose", "Info", "Warning", "Error", "Fatal")


def _opt(kind: type, choices: tuple = ()) -> Field:
    return Field(kind, default=None, nullable=True, choices=choices or None)


#: options of every method (TMVA::MethodBase::DeclareBaseOptions)
BASE_OPTIONS = {
    "H": _opt(bool),
    "V": _opt(bool),
    "VerbosityLevel": _opt(str, _VERBOSITY),
    "VarTransform": _opt(str),
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
        str, ("AdaBoost", "RealAdaBoost", "AdaCost", "Bagging", "AdaBoostR2", "Grad")
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
    "WeightInitialization": _opt(str, ("XAVIER", "XAVIERUNIFORM")),
    "RandomSeed": _opt(int),
    "ValidationSize": _opt(Expression),
    "Architecture": _opt(str, ("CPU", "GPU", "CUDNN", "STANDARD")),
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
    "ValidationSize": _opt(Expression),
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
    "ModelPersistence": _opt(bool),
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


def set_options(section: Any) -> dict[str, Any]:
    """The options a user set in a validated sub-section (those left out are None)."""
    return {k: v for k, v in (section or {}).items() if v is not None}


def format_value(value: Any) -> str:
    """Numbers exactly (``repr`` round-trips a float), everything else as text."""
    return repr(value) if isinstance(value, float) else str(value)


def option_string(options: dict[str, Any]) -> str:
    """TMVA's ``A=1:B:!C`` syntax; booleans as ``Name`` / ``!Name``."""
    parts = []
    for name, value in options.items():
        if isinstance(value, bool):
            parts.append(name if value else f"!{name}")
        else:
            parts.append(f"{name}={format_value(value)}")
    return ":".join(parts)
