"""A model as plain data: the neutral description that the JSON and C++ exports write.

Two kinds, each with the variables and classes in order:

* ``network``: ``preprocessing`` (a per-variable affine map ``(x - offset) / scale`` or a
  quantile table), then ``ops``: ``dense`` (kernel ``weights[in][out]``, ``bias``,
  ``activation``), ``affine`` (per-unit ``scale`` and ``shift``, from Normalization and
  BatchNormalization layers) and ``activation``;
* ``trees``: XGBoost's gradient-boosted trees: per tree its class and the node arrays
  (``feature``, ``threshold``, ``left``, ``right``, ``default_left``; a leaf has left -1
  and its value in ``threshold``), the per-class ``base_margin``, then a softmax.

TMVA weight files (:mod:`htt_tmva.exporters.tmva_spec`) use the same kinds with
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
  activations of :data:`htt_tmva.exporters.cpp_tmva.ACTIVATIONS`, ``round_float32``,
  ``tmva_softmax`` (``p_i = 1 / (1 + sum_{j != i} exp(o_j - o_i))``) and ``take``
  (``units``: output node 0 of a two-class job).

Two-class jobs have one output, ``classes == ["response"]`` (TMVA's EvaluateMVA value).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from htt_tmva.errors import ExportError

ACTIVATIONS = ("linear", "relu", "softmax", "sigmoid", "tanh", "elu")
_SKIPPED_LAYERS = ("InputLayer", "Dropout", "GaussianNoise", "GaussianDropout", "AlphaDropout")


def model_spec(model) -> dict[str, Any]:
    """The neutral description of a loaded model of any engine, of a TMVA weight file read as
    a model, or of what :func:`htt_tmva.tmva.read_weights` returns."""
    weights = _tmva_weights(model)
    if weights is not None:
        from htt_tmva.exporters.tmva_spec import weights_spec

        return weights_spec(weights)
    engine = model.manifest.engine
    if engine == "keras":
        spec = network_spec(model)
    elif engine == "bdt":
        spec = trees_spec(model)
    else:
        raise ExportError(f"models of engine '{engine}' cannot be exported; valid: keras, bdt")
    spec["variables"] = list(model.manifest.variables)
    spec["classes"] = list(model.manifest.classes)
    return spec


def _tmva_weights(model):
    """The TMVA weight file behind ``model`` (a WeightFileModel or a TmvaModel), or None."""
    from htt_tmva.engines.weightfile import WeightFileModel
    from htt_tmva.tmva.model import TmvaModel

    if isinstance(model, TmvaModel):
        return model
    if isinstance(model, WeightFileModel):
        return model.weights
    return None


def network_spec(model) -> dict[str, Any]:
    """A Keras model: its preprocessing and its layers as ops."""
    if model.dense is not None:
        ops = [
            {"op": "dense", "weights": w.tolist(), "bias": b.tolist(), "activation": a}
            for w, b, a in model.dense.layers
        ]
    else:
        ops = keras_ops(_keras_network(model))
    return {"kind": "network", "preprocessing": preprocessing_spec(model.preprocessing), "ops": ops}


def _keras_network(model):
    if model.network is None:
        from htt_tmva.engines.keras import import_keras

        model.network = import_keras().saving.load_model(model._model_path, compile=False)
    return model.network


def keras_ops(network) -> list[dict[str, Any]]:
    """Dense, Normalization, BatchNormalization and Activation layers as ops; others refused."""
    ops: list[dict[str, Any]] = []
    for layer in network.layers:
        kind = type(layer).__name__
        if kind in _SKIPPED_LAYERS:
            continue
        if kind == "Dense":
            weights = [np.asarray(v, dtype=np.float64) for v in layer.get_weights()]
            bias = weights[1] if len(weights) > 1 else np.zeros(weights[0].shape[1])
            ops.append(
                {
                    "op": "dense",
                    "weights": weights[0].tolist(),
                    "bias": bias.tolist(),
                    "activation": _activation(layer),
                }
            )
        elif kind == "Activation":
            ops.append({"op": "activation", "activation": _activation(layer)})
        elif kind == "BatchNormalization":
            ops.append(_batch_normalization(layer))
        elif kind == "Normalization":
            mean = np.asarray(layer.mean, dtype=np.float64).ravel()
            std = np.sqrt(np.maximum(np.asarray(layer.variance, dtype=np.float64).ravel(), 1e-7))
            ops.append(
                {"op": "affine", "scale": (1 / std).tolist(), "shift": (-mean / std).tolist()}
            )
        else:
            raise ExportError(
                f"layer '{layer.name}' of type {kind} cannot be exported; supported layers: "
                "Dense, Activation, Normalization, BatchNormalization, Dropout (and other "
                "layers inactive at inference)"
            )
    return ops


def _activation(layer) -> str:
    name = layer.activation.__name__
    if name not in ACTIVATIONS:
        raise ExportError(
            f"layer '{layer.name}' has activation '{name}', which cannot be exported; "
            f"supported: {', '.join(ACTIVATIONS)}"
        )
    return name


def _batch_normalization(layer) -> dict[str, Any]:
    config = layer.get_config()
    if config.get("axis", -1) not in (-1, 1, [-1], [1]):
        raise ExportError(f"BatchNormalization '{layer.name}' on axis {config['axis']}")
    n = int(np.asarray(layer.moving_mean).size)
    gamma = np.asarray(layer.gamma, np.float64) if layer.scale else np.ones(n)
    beta = np.asarray(layer.beta, np.float64) if layer.center else np.zeros(n)
    mean = np.asarray(layer.moving_mean, np.float64)
    variance = np.asarray(layer.moving_variance, np.float64)
    scale = gamma / np.sqrt(variance + config["epsilon"])
    return {"op": "affine", "scale": scale.tolist(), "shift": (beta - mean * scale).tolist()}


def preprocessing_spec(pre) -> dict[str, Any]:
    """An affine map or a quantile table; a classic scaler pickle only if it is affine."""
    if pre.sklearn is not None:
        scaler = pre.sklearn
        if type(scaler).__name__ != "StandardScaler":
            raise ExportError(
                f"a {type(scaler).__name__} preprocessing pickle cannot be exported; "
                "only StandardScaler (or the JSON preprocessing written by htt-tmva train)"
            )
        n = len(pre.variables)
        mean = getattr(scaler, "mean_", None)
        scale = getattr(scaler, "scale_", None)
        offset = np.zeros(n) if mean is None else np.asarray(mean, np.float64)
        return {
            "kind": "affine",
            "offset": offset.tolist(),
            "scale": (np.ones(n) if scale is None else np.asarray(scale, np.float64)).tolist(),
        }
    if pre.kind == "quantile":
        return {
            "kind": "quantile",
            "levels": list(pre.params["levels"]),
            "quantiles": [list(q) for q in pre.params["quantiles"]],
        }
    return {"kind": "affine", "offset": pre.params["offset"], "scale": pre.params["scale"]}


def trees_spec(model) -> dict[str, Any]:
    """XGBoost trees (up to the best iteration, as the engine predicts) with base margins."""
    learner = model.model_json()["learner"]
    forest = learner["gradient_booster"]["model"]
    n_classes = int(learner["learner_model_param"]["num_class"]) or 1
    base = _base_margin(learner["learner_model_param"]["base_score"], n_classes)
    best = model.manifest.details.get("best_iteration")
    count = len(forest["trees"]) if best is None else (best + 1) * n_classes
    trees = []
    for tree, cls in zip(forest["trees"][:count], forest["tree_info"][:count]):
        if any(int(t) != 0 for t in tree.get("split_type", [])):
            raise ExportError("XGBoost trees with categorical splits cannot be exported")
        trees.append(
            {
                "class": int(cls),
                "feature": [int(v) for v in tree["split_indices"]],
                "threshold": [float(v) for v in tree["split_conditions"]],
                "left": [int(v) for v in tree["left_children"]],
                "right": [int(v) for v in tree["right_children"]],
                "default_left": [int(v) for v in tree["default_left"]],
            }
        )
    return {"kind": "trees", "base_margin": base, "trees": trees, "output": "softmax"}


def _base_margin(text: str, n_classes: int) -> list[float]:
    """XGBoost ≥ 2 stores the intercept as one number or a ``[a,b,c]`` vector (margins)."""
    values = [float(v) for v in str(text).strip("[]").split(",")]
    if len(values) == 1:
        values = values * n_classes
    if len(values) != n_classes:
        raise ExportError(f"XGBoost base_score '{text}' does not match {n_classes} classes")
    return values
