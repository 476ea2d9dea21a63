"""TMVA weight files without TMVA: ``read_weights(path)`` gives a model whose ``response``
is what ``TMVA::Reader`` returns (BDT, MLP, DL, PyKeras, Fisher, LD; Normalize, Decorrelation,
PCA and Gauss input transformations)."""

from __future__ import annotations

from htt_tmva.tmva.model import SUPPORTED_METHODS, TmvaModel, read_weights

__all__ = ["SUPPORTED_METHODS", "TmvaModel", "read_weights"]


def read_inputs(path, tree_path, model):
    """Evaluate a model's variable expressions on a ROOT tree (see :mod:`htt_tmva.tmva.inputs`)."""
    from htt_tmva.tmva.inputs import read_inputs as _read_inputs

    return _read_inputs(path, tree_path, model)


__all__.append("read_inputs")
