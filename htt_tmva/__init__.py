"""htt_tmva: multiclass machine learning for H→ττ analyses on ROOT.

Importing the package is cheap: ROOT, TensorFlow and XGBoost are imported lazily
by the functions that need them.
"""

from __future__ import annotations

from htt_tmva._version import __version__

_API = (
    "apply",
    "confusion",
    "create_toy_dataset",
    "create_training_dataset",
    "export",
    "load_model",
    "train",
    "write_example_configs",
)
__all__ = ["__version__", *_API]


def __getattr__(name: str):
    """The API of :mod:`htt_tmva.api`, imported on first use (importing the package stays
    cheap)."""
    if name in _API:
        from htt_tmva import api

        return getattr(api, name)
    raise AttributeError(f"module 'htt_tmva' has no attribute '{name}'")
