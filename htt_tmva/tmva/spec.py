"""TMVA weight files as neutral model specs (see :mod:`htt_tmva.export.spec`).

The spec computes what :mod:`htt_tmva.tmva` computes (which matches TMVA's TestTree): the
inputs rounded to float32, the input transformations in chain order (each output rounded to
float32, as TMVA's events hold Float_t), then the method in double precision
(``"precision": "float64"``) and its output step. The methods map onto the two kinds:

* BDT (AdaBoost, Grad, multiclass BDTG) -> ``trees``: TMVA's node cuts ``x >= Cut`` go right
  (cType=1; cType=0 daughters are swapped), so every node is ``x < threshold`` left with NaN
  left (``default_left`` 1) -- exactly XGBoost's node layout; AdaBoost leaf values are
  pre-multiplied by the tree's boost weight (UseWeightedTrees) and ``output`` says how the
  per-class sums become the response (``tmva_adaboost`` with ``norm``, ``tmva_grad``,
  ``tmva_multiclass``).
* MLP, DL, PyKeras, Fisher/LD -> ``network`` with ``dense`` / ``activation`` / ``affine`` ops
  and the output ops ``round_float32``, ``tmva_softmax`` and ``take``.

Two-class jobs give one output, TMVA's ``EvaluateMVA`` value, named ``response``; the job's
classes are kept under ``tmva.classes``.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from htt_tmva.errors import ExportError

EXPORTABLE_METHODS = ("BDT", "MLP", "DL", "PyKeras", "Fisher", "LD")
TWO_CLASS_OUTPUT = "response"

_DL_ACTIVATIONS = {
    "identity": "linear",
    "relu": "relu",
    "sigmoid": "sigmoid",
    "tanh": "tanh",
    "symmetric relu": "abs",
    "softsign": "softsign",
    "gauss": "gauss",
}
# MLP's ReLU sends NaN to 0 (np.where(v > 0, v, 0)); Keras' and DL's propagate it
_MLP_ACTIVATIONS = {
    "sigmoid": "sigmoid",
    "linear": "linear",
    "radial": "radial",
    "relu": "tmva_relu",
}


def weights_spec(weights) -> dict[str, Any]:
    """The spec of a :class:`htt_tmva.tmva.TmvaModel` (what ``read_weights`` returns)."""
    method = weights._method
    kind = type(method).__name__
    builders = {
        "BdtMethod": _bdt,
        "MlpMethod": _mlp,
        "DlMethod": _dl,
        "PyKerasMethod": _pykeras,
        "LinearMethod": _linear,
    }
    if kind not in builders:
        raise ExportError(
            f"TMVA weight file '{weights.path}': method '{weights.method}' cannot be exported; "
            f"supported methods: {', '.join(EXPORTABLE_METHODS)}"
        )
    spec = builders[kind](method, weights)
    spec["precision"] = "float64"
    spec["preprocessing"] = {
        "kind": "tmva",
        "transformations": [_transformation(t) for t in weights._transformations],
    }
    spec["variables"] = list(weights.expressions)
    spec["classes"] = list(weights.classes) if weights.multiclass else [TWO_CLASS_OUTPUT]
    spec["tmva"] = {
        "method": weights.method,
        "title": weights.name,
        "analysis": weights.analysis_type,
        "classes": list(weights.classes),
        "expressions": list(weights.expressions),
        "internal_names": list(weights.variables),
        "transformations": weights.transformations,
        "file": str(weights.path),
    }
    return spec


# ------------------------------------------------------------------------------ transformations


def _transformation(t) -> dict[str, Any]:
    kind = type(t).__name__
    columns = [int(c) for c in t.columns]
    if kind == "Normalize":
        return {
            "op": "normalize",
            "class": int(t.class_block),
            "columns": columns,
            "low": _f32(t.low),
            "scale": _f32(t.scale),
        }
    if kind in ("Decorrelation", "PCA"):
        if kind == "Decorrelation":
            matrix, offset = np.asarray(t.matrix).T, np.zeros(len(columns))
        else:
            matrix, offset = np.asarray(t.vectors), np.asarray(t.mean)
        if matrix.shape != (len(columns), len(columns)) or offset.size != len(columns):
            raise ExportError(
                f"{kind} transformation of shape {matrix.shape} on {len(columns)} variables"
            )
        return {
            "op": "linear",
            "name": kind,
            "class": int(t.class_block),
            "columns": columns,
            "offset": [float(v) for v in offset],
            "matrix": matrix.astype(np.float64).tolist(),
        }
    if kind == "Gauss":
        return {
            "op": "gauss",
            "flat": bool(t.flat),
            "classes": [int(c) for c in t.class_blocks],
            "columns": columns,
            "pdfs": [_pdf(p) for p in t.pdfs],
        }
    raise ExportError(f"TMVA transformation {kind} cannot be exported")


def _pdf(pdf) -> dict[str, Any]:
    if pdf.use_histogram:
        return {
            "kind": "histogram",
            "edges": [float(v) for v in pdf.edges],
            "contents": [float(v) for v in pdf.contents],
        }
    return {
        "kind": "fine",
        "x_min": float(pdf.x_min),
        "x_max": float(pdf.x_max),
        "values": _f32(pdf.fine),
    }


def _f32(values) -> list[float]:
    """float32 values as Python floats (exact)."""
    return [float(v) for v in np.asarray(values, dtype=np.float32)]


# ------------------------------------------------------------------------------------ methods


def _bdt(method, weights) -> dict[str, Any]:
    forest = method.forest
    n_out = method.n_classes if method.multiclass else 1
    scale = np.ones(len(forest.roots))
    if not forest.grad and forest.weighted_trees:
        scale = forest.boost_weights
    ends = [*forest.roots[1:], len(forest.features)]
    trees = []
    for t, (first, end) in enumerate(zip(forest.roots, ends)):
        tree = {"class": t % n_out, "feature": [], "threshold": [], "left": [], "right": []}
        for node in range(int(first), int(end)):
            left, right = int(forest.left[node]), int(forest.right[node])
            if left == node:  # a leaf: its value in threshold, as XGBoost's layout
                with np.errstate(invalid="ignore"):
                    value = float(scale[t] * forest.values[node])
                tree["feature"].append(0)
                tree["threshold"].append(value)
                tree["left"].append(-1)
                tree["right"].append(-1)
                continue
            if forest.inverted[node]:  # cType=0: right when NOT x >= cut
                left, right = right, left
            tree["feature"].append(int(forest.features[node]))
            tree["threshold"].append(float(forest.cuts[node]))
            tree["left"].append(left - int(first))
            tree["right"].append(right - int(first))
        tree["default_left"] = [1] * len(tree["left"])  # NaN: x >= cut is false
        trees.append(tree)
    spec: dict[str, Any] = {"kind": "trees", "base_margin": [0.0] * n_out, "trees": trees}
    if method.multiclass:
        spec["output"] = "tmva_multiclass"
    elif forest.grad:
        spec["output"] = "tmva_grad"
    else:
        norm = float(forest.boost_weights.sum()) if forest.weighted_trees else len(trees)
        spec["output"] = "tmva_adaboost"
        spec["norm"] = norm
    return spec


def _network(ops: list, multiclass: bool, softmax: bool = False) -> dict[str, Any]:
    if multiclass and softmax:
        ops = [*ops, {"op": "round_float32"}, {"op": "tmva_softmax"}]
    elif not multiclass:
        ops = [*ops, {"op": "take", "units": [0]}]
    return {"kind": "network", "ops": ops}


def _dense(weights, bias, activation: str) -> dict[str, Any]:
    return {
        "op": "dense",
        "weights": np.asarray(weights, np.float64).tolist(),
        "bias": np.asarray(bias, np.float64).ravel().tolist(),
        "activation": activation,
    }


def _mlp(method, weights) -> dict[str, Any]:
    if method.neuron_type == "tanh":
        hidden = "tanh" if method.exact_tanh else "tmva_fast_tanh"
    elif method.neuron_type in _MLP_ACTIVATIONS:
        hidden = _MLP_ACTIVATIONS[method.neuron_type]
    else:
        raise ExportError(f"MLP NeuronType '{method.neuron_type}' cannot be exported")
    last = len(method.matrices) - 1
    ops = []
    for index, matrix in enumerate(method.matrices):
        output = "sigmoid" if method.sigmoid_output else "linear"
        activation = hidden if index < last else output
        ops.append(_dense(matrix[:-1], matrix[-1], activation))
    return _network(ops, method.multiclass, softmax=True)


def _dl(method, weights) -> dict[str, Any]:
    ops = [
        _dense(matrix, bias, _DL_ACTIVATIONS[name])
        for (matrix, bias, _), name in zip(method.layers, method.activation_names)
    ]
    output = {"I": None, "S": "sigmoid", "M": "softmax"}[method.output_function]
    if output is not None:
        ops.append({"op": "activation", "activation": output})
    return _network(ops, method.multiclass)


def _pykeras(method, weights) -> dict[str, Any]:
    if method.backend == "numpy":
        ops = list(method.network.ops)
    else:  # loaded with Keras itself
        from htt_tmva.engines.spec import keras_ops

        ops = keras_ops(method.network.model)
    return _network(ops, method.multiclass)


def _linear(method, weights) -> dict[str, Any]:
    column = np.asarray(method.weights, np.float64).reshape(-1, 1)
    return _network([_dense(column, [method.offset], "linear")], multiclass=False)
