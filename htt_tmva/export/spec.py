"""A model as plain data: the neutral description that the JSON and C++ exports write.

Two kinds, each with the variables and classes in order:

* ``network``: ``preprocessing`` (a per-variable affine map ``(x - offset) / scale`` or a
  quantile table), then ``ops``: ``dense`` (kernel ``weights[in][out]``, ``bias``,
  ``activation``), ``affine`` (per-unit ``scale`` and ``shift``, from Normalization and
  BatchNormalization layers) and ``activation``;
* ``trees``: XGBoost's gradient-boosted trees: per tree its class and the node arrays
  (``feature``, ``threshold``, ``left``, ``right``, ``default_left``; a leaf has left -1
  and its value in ``threshold``), the per-class ``base_margin``, then a softmax.

TMVA weight files (:mod:`htt_tmva.tmva.spec`) use the same kinds with
``"precision": "float64"`` (computed in double after the transformations) and a ``tmva``
block (method, analysis, the job's classes, expressions, internal names):

* ``preprocessing`` of kind ``tmva``: ``transformations`` in chain order, each on float
  values and stored as float: ``normalize`` (``columns``, ``class``, ``low``, ``scale``:
  ``2 (x - low) scale - 1`` in float), ``linear`` (Decorrelation, PCA: ``columns``,
  ``class``, ``offset``, ``matrix[in][out]``: ``(x - offset) M``), ``gauss`` (``columns``,
  ``flat`` for Uniform, ``classes``, ``pdfs``: ``fine`` with ``x_min``, ``x_max`` and the
  resampled ``values``, or ``histogram`` with ``edges``, ``contents``);
* ``trees`` with ``output`` ``tmva_adaboost`` (sum / ``norm``), ``tmva_grad``
  (``2 / (1 + exp(-2 s)) - 1``) or ``tmva_multiclass`` (TMVA's softmax); every node goes
  left when ``x < threshold`` and NaN left, as TMVA's ``x >= Cut`` cuts (cType=0 swapped);
* ``network`` ops also ``affine`` with an ``offset`` (``(x - offset) scale + shift``), the
  activations of :data:`htt_tmva.tmva.cpp.ACTIVATIONS`, ``round_float32``,
  ``tmva_softmax`` (``p_i = 1 / (1 + sum_{j != i} exp(o_j - o_i))``) and ``take``
  (``units``: output node 0 of a two-class job).

Two-class jobs have one output, ``classes == ["response"]`` (TMVA's EvaluateMVA value).
"""

from __future__ import annotations

from typing import Any

from htt_tmva.engines.spec import (
    ACTIVATIONS,
    keras_ops,
    network_spec,
    preprocessing_spec,
    trees_spec,
)
from htt_tmva.errors import ExportError

__all__ = [
    "ACTIVATIONS",
    "keras_ops",
    "model_spec",
    "network_spec",
    "preprocessing_spec",
    "trees_spec",
]


def model_spec(model) -> dict[str, Any]:
    """The neutral description of a loaded model of any engine, of a TMVA weight file read as
    a model, or of what :func:`htt_tmva.tmva.read_weights` returns: each describes itself
    (``describe()``)."""
    describe = getattr(model, "describe", None)
    if describe is None:
        raise ExportError(
            f"a {type(model).__name__} is not a model that can be exported; valid: models "
            "of the engines keras and bdt, TMVA weight files"
        )
    return describe()
