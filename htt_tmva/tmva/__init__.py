"""TMVA weight files without TMVA: ``read_weights(path)`` gives a model whose ``response``
is what ``TMVA::Reader`` returns (BDT, MLP, DL, PyKeras, Fisher, LD; Normalize, Decorrelation,
PCA and Gauss input transformations); ``read_inputs`` evaluates its variables' expressions on a
ROOT tree. Importing this package loads neither ROOT nor TensorFlow."""

from __future__ import annotations

from htt_tmva.tmva.inputs import read_inputs
from htt_tmva.tmva.model import SUPPORTED_METHODS, TmvaModel, read_weights

__all__ = ["SUPPORTED_METHODS", "TmvaModel", "read_inputs", "read_weights"]
