"""Engines behind one interface: Keras, gradient-boosted trees (XGBoost), and TMVA's (in
:mod:`htt_tmva.tmva`), found by name (:mod:`htt_tmva.engines.registry`).

The interface (:mod:`htt_tmva.engines.base`, which needs numpy) is loaded on first use of
its names, so that steps which only read engine options (the dataset step, through the
config schemas) do not import numpy.
"""

from __future__ import annotations

import importlib
from typing import Any

__all__ = ["ENGINES", "Engine", "FoldData", "Model", "get_engine", "load_model"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        return getattr(importlib.import_module("htt_tmva.engines.base"), name)
    raise AttributeError(f"module 'htt_tmva.engines' has no attribute '{name}'")
