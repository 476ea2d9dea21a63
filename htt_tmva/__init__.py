"""htt_tmva: multiclass machine learning for H→ττ analyses on ROOT.

Importing the package is cheap: ROOT, TensorFlow and XGBoost are imported lazily
by the functions that need them.
"""

from __future__ import annotations

__version__ = "0.1.0"

__all__ = ["__version__"]
