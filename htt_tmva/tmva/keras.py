"""MethodPyKeras: the Keras model file that the weight file names, run with numpy.

TMVA feeds the transformed variables to the model and returns output node 0 for two-class
jobs (``Types::kSignal`` is 0, whatever the class names are) and every node for multiclass
jobs. Keras 2 ``.h5`` files are read with h5py: plain stacks of Dense, Activation, Dropout,
BatchNormalization, Flatten, InputLayer and activation layers run without TensorFlow; other
models are loaded with Keras (3) itself when it can read them.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from htt_tmva.errors import TmvaModelFileError
from htt_tmva.tmva._xml import Header


def _sigmoid(v):
    with np.errstate(over="ignore"):
        return 1.0 / (1.0 + np.exp(-v))


def _softmax(v):
    shifted = np.exp(v - v.max(axis=-1, keepdims=True))
    return shifted / shifted.sum(axis=-1, keepdims=True)


def _elu(v, alpha=1.0):
    return np.where(v > 0, v, alpha * (np.exp(np.minimum(v, 0)) - 1.0))


_SELU_ALPHA, _SELU_SCALE = 1.6732632423543772, 1.0507009873554805

ACTIVATIONS = {
    "linear": lambda v: v,
    None: lambda v: v,
    "relu": lambda v: np.maximum(v, 0.0),
    "sigmoid": _sigmoid,
    "tanh": np.tanh,
    "softmax": _softmax,
    "elu": _elu,
    "selu": lambda v: _SELU_SCALE * _elu(v, _SELU_ALPHA),
    "softplus": lambda v: np.logaddexp(0.0, v),
    "softsign": lambda v: v / (1.0 + np.abs(v)),
    "exponential": np.exp,
    "swish": lambda v: v * _sigmoid(v),
    "silu": lambda v: v * _sigmoid(v),
    "hard_sigmoid": lambda v: np.clip(0.2 * v + 0.5, 0.0, 1.0),
}


def _activation_name(value):
    if isinstance(value, dict):  # Keras 3 serialises some activations as objects
        value = value.get("config", {}).get("name", value.get("class_name"))
    return value


def model_file_candidates(header: Header) -> list:
    """Where TMVA's model file may be: as written, next to the XML, and below each parent
    folder of the XML (TMVA writes the name relative to the job's working directory)."""
    # TMVA's default: TrainedModel_<method name>.h5 in the weight-file folder
    name = header.option("FilenameTrainedModel") or f"TrainedModel_{header.method_name}.h5"
    written = Path(name)
    xml_dir = header.path.resolve().parent
    candidates = [written] if written.is_absolute() else []
    candidates.append(xml_dir / written.name)
    if not written.is_absolute():
        candidates.extend(folder / written for folder in [xml_dir, *xml_dir.parents])
    unique = []
    for path in candidates:
        if path not in unique:
            unique.append(path)
    return unique


def find_model_file(header: Header) -> Path:
    candidates = model_file_candidates(header)
    for path in candidates:
        if path.is_file():
            return path
    tried = "\n  ".join(str(p) for p in candidates)
    raise TmvaModelFileError(
        f"TMVA weight file '{header.path}' names the Keras model "
        f"'{header.option('FilenameTrainedModel') or candidates[-1].name}', which was not "
        f"found; tried:\n  {tried}"
    )


def _layers_of(config: dict) -> list:
    inner = config.get("config", config)
    if isinstance(inner, list):  # Keras 2.2 Sequential: the config is the layer list
        return inner
    return inner.get("layers", [])


def _inbound_layers(inbound) -> list:
    """Names of the layers a functional layer takes its inputs from, in either format:
    Keras 2 ``[[["dense_1", 0, 0, {}]]]`` or Keras 3 ``keras_history: ["dense_1", 0, 0]``."""
    names = []

    def visit(item):
        if isinstance(item, dict):
            history = item.get("keras_history")
            if isinstance(history, list) and history and isinstance(history[0], str):
                names.append(history[0])
                return
            for value in item.values():
                visit(value)
        elif isinstance(item, list):
            if len(item) >= 3 and isinstance(item[0], str) and isinstance(item[1], int):
                names.append(item[0])
                return
            for value in item:
                visit(value)

    visit(inbound)
    return names


class _NumpyStack:
    """A sequential stack of simple layers evaluated with numpy."""

    def __init__(self, path: Path):
        import h5py

        self.steps = []
        self.ops = []  # the same steps as data, for the C++/JSON export (tmva/spec.py)
        with h5py.File(path, "r") as h5:
            raw = h5.attrs.get("model_config")
            if raw is None:
                raise ValueError("no model_config attribute (not a Keras 2 .h5 model)")
            config = json.loads(raw.decode() if isinstance(raw, bytes) else raw)
            if config.get("class_name") not in ("Sequential", "Model", "Functional"):
                raise ValueError(f"model class {config.get('class_name')}")
            weights = h5.get("model_weights", h5)
            layers = _layers_of(config)
            if config.get("class_name") != "Sequential":
                self._check_chain(layers)
            for layer in layers:
                self._add(layer, weights)

    @staticmethod
    def _check_chain(layers: list) -> None:
        """A functional model runs here only if every layer takes exactly the previous one."""
        previous = None
        for layer in layers:
            sources = _inbound_layers(layer.get("inbound_nodes") or [])
            expected = [] if previous is None else [previous]
            if sources != expected:
                raise ValueError(f"functional model that is not a plain chain ({sources})")
            previous = layer.get("name") or layer.get("config", {}).get("name")

    @staticmethod
    def _arrays(group) -> dict:
        """A layer's weights by short name ('kernel', 'bias', ...); the layer group's
        ``weight_names`` are paths inside it ('dense_1/kernel:0')."""
        names = [n.decode() if isinstance(n, bytes) else n for n in group.attrs["weight_names"]]
        return {name.split("/")[-1].split(":")[0]: np.array(group[name]) for name in names}

    def _add(self, layer: dict, weights) -> None:
        kind = layer["class_name"]
        config = layer.get("config", {})
        name = config.get("name")
        if kind in (
            "InputLayer",
            "Dropout",
            "Flatten",
            "GaussianNoise",
            "GaussianDropout",
            "AlphaDropout",
            "ActivityRegularization",
        ):
            return
        if kind == "Activation":
            self.steps.append(self._activation(config.get("activation")))
            self.ops.append(
                {"op": "activation", "activation": self._name(config.get("activation"))}
            )
            return
        if kind in ("ReLU", "LeakyReLU", "ELU", "Softmax"):
            alpha = config.get(
                "alpha", config.get("negative_slope", 0.3 if kind == "LeakyReLU" else 1.0)
            )
            self.steps.append(
                {
                    "ReLU": ACTIVATIONS["relu"],
                    "LeakyReLU": lambda v: np.where(v > 0, v, alpha * v),
                    "ELU": lambda v: _elu(v, alpha),
                    "Softmax": _softmax,
                }[kind]
            )
            name = {"ReLU": "relu", "LeakyReLU": "leaky_relu", "ELU": "elu", "Softmax": "softmax"}
            self.ops.append({"op": "activation", "activation": name[kind], "alpha": float(alpha)})
            return
        if kind == "Dense":
            arrays = self._arrays(weights[name])
            kernel = arrays["kernel"].astype(np.float64)
            bias = arrays.get("bias")
            bias = np.zeros(kernel.shape[1]) if bias is None else bias.astype(np.float64)
            act = self._activation(config.get("activation"))
            self.steps.append(lambda v, k=kernel, b=bias, a=act: a(v @ k + b))
            self.ops.append(
                {
                    "op": "dense",
                    "weights": kernel.tolist(),
                    "bias": bias.tolist(),
                    "activation": self._name(config.get("activation")),
                }
            )
            return
        if kind == "BatchNormalization":
            arrays = self._arrays(weights[name])
            eps = float(config.get("epsilon", 1e-3))
            mean, var = arrays["moving_mean"], arrays["moving_variance"]
            gamma = arrays.get("gamma", np.ones_like(mean))
            beta = arrays.get("beta", np.zeros_like(mean))
            scale = gamma / np.sqrt(var + eps)
            self.steps.append(lambda v, s=scale, m=mean, b=beta: (v - m) * s + b)
            self.ops.append(
                {
                    "op": "affine",
                    "offset": np.asarray(mean, np.float64).tolist(),
                    "scale": np.asarray(scale, np.float64).tolist(),
                    "shift": np.asarray(beta, np.float64).tolist(),
                }
            )
            return
        raise ValueError(f"layer type {kind}")

    @staticmethod
    def _name(value) -> str:
        """The activation's name as the export writes it (None is linear)."""
        value = _activation_name(value)
        return "linear" if value is None else str(value)

    @staticmethod
    def _activation(value):
        value = _activation_name(value)
        if value not in ACTIVATIONS:
            raise ValueError(f"activation {value}")
        return ACTIVATIONS[value]

    def __call__(self, x: np.ndarray) -> np.ndarray:
        values = np.asarray(x, dtype=np.float64)
        for step in self.steps:
            values = step(values)
        return values


class _KerasModel:
    """Fallback: Keras itself (Keras 3 loads Keras 2 .h5 files of standard layers)."""

    def __init__(self, path: Path):
        import keras

        self.model = keras.models.load_model(str(path), compile=False)

    def __call__(self, x: np.ndarray) -> np.ndarray:
        return np.asarray(self.model.predict(np.asarray(x, np.float32), verbose=0), np.float64)


class PyKerasMethod:
    """TMVA's MethodPyKeras response from the model file."""

    def __init__(self, header: Header):
        self.path = find_model_file(header)
        try:
            self.network = _NumpyStack(self.path)
            self.backend = "numpy"
        except (ValueError, KeyError) as numpy_failure:
            try:
                self.network = _KerasModel(self.path)
                self.backend = "keras"
            except Exception as exc:  # noqa: BLE001 - any loader failure is reported alike
                raise TmvaModelFileError(
                    f"Keras model '{self.path}' (named by '{header.path}') cannot be read: not a "
                    f"plain layer stack ({numpy_failure}) and Keras failed: {exc}"
                ) from exc
        except OSError as exc:
            raise TmvaModelFileError(
                f"Keras model '{self.path}' (named by '{header.path}') is "
                f"not a readable HDF5 file: {exc}"
            ) from exc
        self.multiclass = header.analysis_type.lower() == "multiclass"

    def evaluate(self, x: np.ndarray) -> np.ndarray:
        out = self.network(x)
        if self.multiclass:
            return out.astype(np.float32).astype(np.float64)
        return out[:, 0]
