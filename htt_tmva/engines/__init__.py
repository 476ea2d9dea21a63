"""Engines behind one interface: Keras, gradient-boosted trees (XGBoost), TMVA."""

from __future__ import annotations

from htt_tmva.engines.base import ENGINES, Engine, FoldData, Model, get_engine, load_model

__all__ = ["ENGINES", "Engine", "FoldData", "Model", "get_engine", "load_model"]
