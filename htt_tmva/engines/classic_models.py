"""The models of the classic ``keras_models.py`` (KIT-CMS/htt-ml), written anew for Keras 3.

Same layers, widths, activations, regularisation, dropout, loss and optimiser as the classic
functions that the analyses named in ``model.name``; each keeps its classic learning rate
unless the config sets ``model.learning_rate``. Differences that Keras 3 imposes: the
optimisers' epsilon is Keras 3's (1e-7), ``glorot_normal`` is Keras 3's truncated normal, and
accuracy is a weighted metric, as for every model here.
"""

from __future__ import annotations

from typing import Callable, Optional

#: classic optimisers' learning rates: Keras 1/2 ``Adam()`` 1e-3, ``Nadam()`` 2e-3
ADAM, NADAM = 1e-3, 2e-3


def _dense_stack(
    n_inputs: int,
    n_outputs: int,
    widths: list[int],
    activation: str,
    l2: Optional[float] = None,
    dropout: float = 0.0,
    initializer: str = "glorot_uniform",
    l2_output: bool = False,
):
    """Dense(width, activation) per width (with optional L2 and dropout), softmax output."""
    import keras

    def regulariser():
        return keras.regularizers.L2(l2) if l2 else None

    layers = [keras.Input((n_inputs,))]
    for width in widths:
        layers.append(
            keras.layers.Dense(
                width,
                activation=activation,
                kernel_initializer=initializer,
                kernel_regularizer=regulariser(),
            )
        )
        if dropout:
            layers.append(keras.layers.Dropout(dropout))
    layers.append(
        keras.layers.Dense(
            n_outputs,
            activation="softmax",
            kernel_initializer=initializer,
            kernel_regularizer=regulariser() if l2_output else None,
        )
    )
    return keras.Sequential(layers)


def _compiled(model, loss: str, optimizer: str, learning_rate: float):
    import keras

    kind = {"adam": keras.optimizers.Adam, "nadam": keras.optimizers.Nadam}[optimizer]
    model.compile(
        loss=loss,
        optimizer=kind(learning_rate),
        weighted_metrics=["categorical_accuracy"],
    )
    return model


def smhtt_simple(n_inputs: int, n_outputs: int, learning_rate: float = NADAM):
    """Dense(100, tanh) -> softmax; mean squared error, Nadam."""
    network = _dense_stack(n_inputs, n_outputs, [100], "tanh", initializer="glorot_normal")
    return _compiled(network, "mean_squared_error", "nadam", learning_rate)


def smhtt_mt(n_inputs: int, n_outputs: int, learning_rate: float = NADAM):
    """Three Dense(300, tanh, L2 1e-4) -> softmax; mean squared error, Nadam."""
    network = _dense_stack(
        n_inputs, n_outputs, [300] * 3, "tanh", l2=1e-4, initializer="glorot_normal"
    )
    return _compiled(network, "mean_squared_error", "nadam", learning_rate)


def smhtt_et(n_inputs: int, n_outputs: int, learning_rate: float = NADAM):
    """Dense(1000, tanh, L2 1e-4) -> softmax; mean squared error, Nadam."""
    network = _dense_stack(
        n_inputs, n_outputs, [1000], "tanh", l2=1e-4, initializer="glorot_normal"
    )
    return _compiled(network, "mean_squared_error", "nadam", learning_rate)


def smhtt_tt(n_inputs: int, n_outputs: int, learning_rate: float = NADAM):
    """Three Dense(200, tanh, L2 1e-4) -> softmax; mean squared error, Nadam."""
    network = _dense_stack(
        n_inputs, n_outputs, [200] * 3, "tanh", l2=1e-4, initializer="glorot_normal"
    )
    return _compiled(network, "mean_squared_error", "nadam", learning_rate)


def smhtt_legacy(n_inputs: int, n_outputs: int, learning_rate: float = ADAM):
    """Three Dense(300, relu, L2 1e-4) -> softmax; mean squared error, Adam."""
    network = _dense_stack(
        n_inputs, n_outputs, [300] * 3, "relu", l2=1e-4, initializer="glorot_normal"
    )
    return _compiled(network, "mean_squared_error", "adam", learning_rate)


def smhtt_dropout(n_inputs: int, n_outputs: int, learning_rate: float = NADAM):
    """Two Dense(200, relu) with dropout 0.5 -> softmax; mean squared error, Nadam."""
    network = _dense_stack(n_inputs, n_outputs, [200] * 2, "relu", dropout=0.5)
    return _compiled(network, "mean_squared_error", "nadam", learning_rate)


def smhtt_dropout_relu(n_inputs: int, n_outputs: int, learning_rate: float = 1e-4):
    """Two Dense(200, relu, L2 1e-5) with dropout 0.3 -> softmax (L2 1e-5); cross-entropy,
    Adam 1e-4."""
    network = _dense_stack(
        n_inputs, n_outputs, [200] * 2, "relu", l2=1e-5, dropout=0.3, l2_output=True
    )
    return _compiled(network, "categorical_crossentropy", "adam", learning_rate)


def smhtt_dropout_tanh(n_inputs: int, n_outputs: int, learning_rate: float = 1e-4):
    """Two Dense(200, tanh, L2 1e-5) with dropout 0.3 -> softmax (L2 1e-5); cross-entropy,
    Adam 1e-4 (the analyses' model from 2018 on)."""
    network = _dense_stack(
        n_inputs, n_outputs, [200] * 2, "tanh", l2=1e-5, dropout=0.3, l2_output=True
    )
    return _compiled(network, "categorical_crossentropy", "adam", learning_rate)


def smhtt_dropout_tanh_large(n_inputs: int, n_outputs: int, learning_rate: float = 1e-4):
    """Four Dense(512, tanh, L2 1e-5) with dropout 0.3 -> softmax (L2 1e-5); cross-entropy,
    Adam 1e-4."""
    network = _dense_stack(
        n_inputs, n_outputs, [512] * 4, "tanh", l2=1e-5, dropout=0.3, l2_output=True
    )
    return _compiled(network, "categorical_crossentropy", "adam", learning_rate)


CLASSIC: dict[str, Callable] = {
    f.__name__: f
    for f in (
        smhtt_simple,
        smhtt_mt,
        smhtt_et,
        smhtt_tt,
        smhtt_legacy,
        smhtt_dropout,
        smhtt_dropout_relu,
        smhtt_dropout_tanh,
        smhtt_dropout_tanh_large,
    )
}

#: classic names that are not built in, and why (the message of an unknown model.name)
NOT_BUILT_IN = {
    **{
        name: "it trains with a custom loss that takes the event weights as a second input "
        "(keras_custom_metrics.py), which the keras engine does not feed"
        for name in (
            "smhtt_ams",
            "smhtt_ams_single_output",
            "smhtt_ams_multi_output",
            "smhtt_significance",
            "smhtt_significance_single_output",
            "smhtt_significance_multi_output",
            "smhtt_significance_binned",
            "smhtt_significance_unbinned",
        )
    },
    "functional": "it has two inputs and two outputs, one per channel, trained from two "
    "configs at once (the 2021 trainer's --configs); the keras engine trains one config's "
    "inputs and classes",
    "smhtt_dropout_tensorflow": "it is no model but a TensorFlow 1 export of smhtt_dropout",
    "smhtt_dropout_tanh_tensorflow": "it is no model but a TensorFlow 1 export of "
    "smhtt_dropout_tanh",
}


def classic_learning_rate(function: Callable) -> Optional[float]:
    """The classic learning rate of a classic zoo model function, else None."""
    if CLASSIC.get(getattr(function, "__name__", None)) is not function:
        return None
    return function.__defaults__[0]
