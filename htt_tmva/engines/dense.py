"""A numpy forward pass for feed-forward networks of Dense layers.

A Dense network needs nothing but its weights to run, so application and testing avoid
importing TensorFlow (seconds) and run batched matrix products instead.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import numpy as np


def _relu(z):
    return np.maximum(z, 0, out=z)


def _softmax(z):
    z -= z.max(axis=1, keepdims=True)
    np.exp(z, out=z)
    z /= z.sum(axis=1, keepdims=True)
    return z


def _sigmoid(z):
    return 1.0 / (1.0 + np.exp(-z))


ACTIVATIONS = {
    "linear": lambda z: z,
    "relu": _relu,
    "softmax": _softmax,
    "sigmoid": _sigmoid,
    "tanh": np.tanh,
    "elu": lambda z: np.where(z > 0, z, np.expm1(np.minimum(z, 0))),
}
_PASS_THROUGH = ("InputLayer", "Dropout", "GaussianNoise", "GaussianDropout", "AlphaDropout")


class DenseNetwork:
    """Layers ``(W, b, activation)`` applied in float32."""

    def __init__(self, layers: list[tuple[np.ndarray, np.ndarray, str]]):
        self.layers = [
            (np.ascontiguousarray(w, np.float32), np.asarray(b, np.float32), a)
            for w, b, a in layers
        ]

    @classmethod
    def from_keras(cls, model) -> Optional[DenseNetwork]:
        """Extract the layers of a Keras model, or None if it is not a plain Dense stack."""
        layers = []
        for layer in model.layers:
            kind = type(layer).__name__
            if kind in _PASS_THROUGH:
                continue
            if kind != "Dense":
                return None
            activation = layer.activation.__name__
            if activation not in ACTIVATIONS:
                return None
            weights = [np.asarray(v) for v in layer.get_weights()]
            if len(weights) != (2 if layer.use_bias else 1):
                return None
            kernel = weights[0]
            bias = weights[1] if layer.use_bias else np.zeros(kernel.shape[1], kernel.dtype)
            layers.append((kernel, bias, activation))
        return cls(layers) if layers else None

    def save(self, path: Path) -> Path:
        arrays = {}
        for i, (w, b, a) in enumerate(self.layers):
            arrays[f"w{i}"], arrays[f"b{i}"], arrays[f"a{i}"] = w, b, np.array(a)
        with open(path, "wb") as f:
            np.savez(f, n=np.array(len(self.layers)), **arrays)
        return path

    @classmethod
    def load(cls, path: Path) -> DenseNetwork:
        """The layers saved at ``path``; activations only from :data:`ACTIVATIONS`."""
        from htt_tmva.errors import ModelError

        with np.load(path) as data:
            n = int(data["n"])
            layers = [(data[f"w{i}"], data[f"b{i}"], str(data[f"a{i}"])) for i in range(n)]
        for i, (_, _, activation) in enumerate(layers):
            if activation not in ACTIVATIONS:
                raise ModelError(
                    f"'{path}': layer {i} has the activation {activation[:60]!r}, which is not "
                    f"one of {', '.join(ACTIVATIONS)}"
                )
        return cls(layers)

    def __call__(self, x: np.ndarray) -> np.ndarray:
        z = np.asarray(x, dtype=np.float32)
        for w, b, activation in self.layers:
            z = z @ w
            z += b
            z = ACTIVATIONS[activation](z)
        return z

    @property
    def macs_per_event(self) -> int:
        """Multiply-accumulate operations per event (a cost estimate)."""
        return sum(w.size for w, _, _ in self.layers)
