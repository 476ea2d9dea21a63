"""MethodDL (TMVA's deep networks, ``DL::*``): dense layers only.

``<DenseLayer Width ActivationFunction>`` holds ``<Weights Rows=out Columns=in>`` (row-major)
and ``<Biases>``; the activation codes are TMVA::DNN::EActivationFunction and the network's
OutputFunction ('I' identity, 'S' sigmoid, 'M' softmax) is applied to the last layer's output.
"""

from __future__ import annotations

import numpy as np

from htt_tmva.tmva._xml import Header, attr, numbers

_ACTIVATIONS = {
    0: ("identity", lambda v: v),
    1: ("relu", lambda v: np.maximum(v, 0.0)),
    2: ("sigmoid", lambda v: 1.0 / (1.0 + np.exp(-v))),
    3: ("tanh", np.tanh),
    4: ("symmetric relu", np.abs),
    5: ("softsign", lambda v: v / (1.0 + np.abs(v))),
    6: ("gauss", lambda v: np.exp(-v * v)),
}


def _output(code: str, header: Header):
    if code == "I":
        return lambda v: v
    if code == "S":
        return lambda v: 1.0 / (1.0 + np.exp(-v))
    if code == "M":

        def softmax(v):
            shifted = np.exp(v - v.max(axis=1, keepdims=True))
            return shifted / shifted.sum(axis=1, keepdims=True)

        return softmax
    raise header.fail(f"DL OutputFunction '{code}' is not supported (I, S, M are)")


def _matrix(element, header: Header, rows: int | None = None) -> np.ndarray:
    n_rows = attr(element, "Rows", header, int)
    n_cols = attr(element, "Columns", header, int)
    values = numbers(element.text)
    if values.size != n_rows * n_cols:
        raise header.fail(
            f"<{element.tag}> holds {values.size} numbers, expected {n_rows}x{n_cols}"
        )
    return values.astype(np.float32).astype(np.float64).reshape(n_rows, n_cols)


class DlMethod:
    """A stack of dense layers as MethodDL evaluates it."""

    def __init__(self, header: Header):
        weights = header.weights
        self.layers = []
        self.activation_names = []  # per layer, as in _ACTIVATIONS (for the C++ export)
        for layer in list(weights):
            if layer.tag != "DenseLayer":
                raise header.fail(f"DL layer <{layer.tag}> is not supported (only DenseLayer)")
            code = attr(layer, "ActivationFunction", header, int)
            if code not in _ACTIVATIONS:
                raise header.fail(f"DL activation function code {code} is not supported")
            w_el, b_el = layer.find("Weights"), layer.find("Biases")
            if w_el is None or b_el is None:
                raise header.fail("DL <DenseLayer> without <Weights> or <Biases>")
            matrix = _matrix(w_el, header)
            bias = _matrix(b_el, header).ravel()
            self.layers.append((matrix.T, bias, _ACTIVATIONS[code][1]))
            self.activation_names.append(_ACTIVATIONS[code][0])
        if not self.layers:
            raise header.fail("DL <Weights> holds no <DenseLayer>")
        if self.layers[0][0].shape[0] != len(header.variables):
            raise header.fail(
                f"DL input width {self.layers[0][0].shape[0]} does not match the "
                f"{len(header.variables)} variables"
            )
        self.output_function = weights.get("OutputFunction", "I")
        self.output = _output(self.output_function, header)
        self.multiclass = header.analysis_type.lower() == "multiclass"

    def evaluate(self, x: np.ndarray) -> np.ndarray:
        values = np.asarray(x, dtype=np.float64)
        for matrix, bias, activation in self.layers:
            values = activation(values @ matrix + bias)
        values = self.output(values)
        if self.multiclass:
            return values.astype(np.float32).astype(np.float64)
        return values[:, 0]
