"""How models of the engines describe themselves as data (the neutral description of
:mod:`htt_tmva.export.spec`): Keras networks (or their Dense form) and XGBoost trees."""

from __future__ import annotations

from typing import Any

import numpy as np

from htt_tmva.errors import ExportError

ACTIVATIONS = ("linear", "relu", "softmax", "sigmoid", "tanh", "elu")
_SKIPPED_LAYERS = ("InputLayer", "Dropout", "GaussianNoise", "GaussianDropout", "AlphaDropout")


def named(spec: dict[str, Any], manifest) -> dict[str, Any]:
    """``spec`` with the model's variables and classes, in order."""
    spec["variables"] = list(manifest.variables)
    spec["classes"] = list(manifest.classes)
    return spec


def network_spec(model) -> dict[str, Any]:
    """A Keras model (its network loaded, or its Dense form): its preprocessing and its
    layers as ops."""
    if model.dense is not None:
        ops = [
            {"op": "dense", "weights": w.tolist(), "bias": b.tolist(), "activation": a}
            for w, b, a in model.dense.layers
        ]
    else:
        ops = keras_ops(model.network)
    return {"kind": "network", "preprocessing": preprocessing_spec(model.preprocessing), "ops": ops}


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
