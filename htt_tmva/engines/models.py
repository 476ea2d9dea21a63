"""The Keras model zoo (``example``, ``smhtt``) and user models named ``module:function``.

A model function takes ``(n_inputs, n_outputs, learning_rate)`` and returns a compiled
Keras model (accuracy is a weighted metric, as the loss is weighted); user functions may
take only ``(n_inputs, n_outputs)`` and may return an uncompiled model, which is then
compiled with categorical cross-entropy and Adam.
"""

from __future__ import annotations

import importlib
import importlib.util
import inspect
from pathlib import Path
from typing import Any, Callable, Optional

from htt_tmva.errors import ConfigError, ModelError, choices_text, did_you_mean


def example(n_inputs: int, n_outputs: int, learning_rate: float = 1e-3):
    """Dense(10, relu) -> Dense(n_classes, softmax); cross-entropy, Adam."""
    import keras

    model = keras.Sequential(
        [
            keras.Input((n_inputs,)),
            keras.layers.Dense(10, activation="relu", kernel_initializer="glorot_normal"),
            keras.layers.Dense(
                n_outputs, activation="softmax", kernel_initializer="glorot_uniform"
            ),
        ]
    )
    model.compile(
        loss="categorical_crossentropy",
        optimizer=keras.optimizers.Adam(learning_rate),
        weighted_metrics=["categorical_accuracy"],
    )
    return model


def smhtt(n_inputs: int, n_outputs: int, learning_rate: float = 1e-3):
    """Three Dense(300, relu, L2 1e-4) -> Dense(n_classes, softmax); mean squared error, Adam."""
    import keras

    hidden = [
        keras.layers.Dense(
            300,
            activation="relu",
            kernel_initializer="glorot_normal",
            kernel_regularizer=keras.regularizers.L2(1e-4),
        )
        for _ in range(3)
    ]
    model = keras.Sequential(
        [
            keras.Input((n_inputs,)),
            *hidden,
            keras.layers.Dense(n_outputs, activation="softmax", kernel_initializer="glorot_normal"),
        ]
    )
    model.compile(
        loss="mean_squared_error",
        optimizer=keras.optimizers.Adam(learning_rate),
        weighted_metrics=["categorical_accuracy"],
    )
    return model


BUILTIN: dict[str, Callable] = {"example": example, "smhtt": smhtt}


def resolve_model_function(name: str, base: Optional[Path] = None) -> Callable:
    """A built-in model by name, or ``module:function`` (a ``.py`` path or an importable module)."""
    if name in BUILTIN:
        return BUILTIN[name]
    if ":" not in name:
        raise ConfigError(
            f"key 'model.name' has value '{name}'{did_you_mean(name, BUILTIN)}; valid: "
            f"{choices_text(BUILTIN)} or 'module:function' (a .py file or a module)"
        )
    module_name, function = name.rsplit(":", 1)
    module = _import_user_module(user_module(name, base), "key 'model.name'")
    if not hasattr(module, function):
        functions = [n for n, v in vars(module).items() if callable(v) and not n.startswith("_")]
        raise ConfigError(
            f"key 'model.name': '{module_name}' has no function '{function}'"
            f"{did_you_mean(function, functions)}; functions there: {choices_text(functions)}"
        )
    return getattr(module, function)


def user_module(name: str, base: Optional[Path] = None) -> Optional[str]:
    """Where the user model function ``name`` lives: the absolute path of its ``.py`` file or
    its module name; None for a built-in model. Recorded in the manifest for loading."""
    if name in BUILTIN or ":" not in name:
        return None
    module_name = name.rsplit(":", 1)[0]
    if not module_name.endswith(".py"):
        return module_name
    path = Path(module_name)
    if not path.is_absolute() and base is not None:
        path = base / path
    return str(path.resolve())


def _import_user_module(where: str, what: str):
    """Import a user module given by ``.py`` path or module name; ``what`` names its origin."""
    if where.endswith(".py"):
        path = Path(where)
        if not path.is_file():
            raise ConfigError(f"{what}: model file '{path}' does not exist")
        spec = importlib.util.spec_from_file_location(path.stem, path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module
    try:
        return importlib.import_module(where)
    except ImportError as exc:
        raise ConfigError(f"{what}: cannot import module '{where}': {exc}") from None


def custom_objects(where: Optional[str], model_path: Path) -> dict[str, Any]:
    """The objects that Keras needs to load a user model saved at ``model_path``: importing
    the user module registers its ``register_keras_serializable`` classes; then its
    ``get_custom_objects()`` if it has one, else the classes and functions defined in it."""
    if where is None:
        return {}
    try:
        module = _import_user_module(where, f"model '{model_path}'")
    except ConfigError as exc:
        raise ModelError(
            f"{exc}; the model was built by it and may need its custom objects to load"
        ) from None
    if hasattr(module, "get_custom_objects"):
        return dict(module.get_custom_objects())
    return {
        name: obj
        for name, obj in vars(module).items()
        if callable(obj) and getattr(obj, "__module__", None) == module.__name__
    }


def is_compiled(model) -> bool:
    """Whether a model function returned a compiled model: Keras 3 says so in ``compiled``,
    Keras 2 (TMVA's PyKeras) in ``_is_compiled``; either way it has an optimizer. A model
    that is compiled keeps its loss and settings (smhtt's mean squared error)."""
    flag = getattr(model, "compiled", None)
    if flag is None:
        flag = getattr(model, "_is_compiled", False)
    return bool(flag) and getattr(model, "optimizer", None) is not None


def build_model(
    name: str, n_inputs: int, n_outputs: int, learning_rate: float, base: Optional[Path]
):
    """Build and compile the model ``name``."""
    function = resolve_model_function(name, base)
    takes_rate = len(inspect.signature(function).parameters) >= 3
    model = (
        function(n_inputs, n_outputs, learning_rate)
        if takes_rate
        else function(n_inputs, n_outputs)
    )
    if not is_compiled(model):
        import keras

        model.compile(
            loss="categorical_crossentropy",
            optimizer=keras.optimizers.Adam(learning_rate),
            weighted_metrics=["categorical_accuracy"],
        )
    return model


# --- the classic zoo, and the checks made before any data is read ------------------------

from htt_tmva.engines.classic_models import CLASSIC, NOT_BUILT_IN, classic_learning_rate  # noqa: E402

BUILTIN.update(CLASSIC)


def checked_model_function(name: str, base: Optional[Path], source: Any = None) -> Callable:
    """The model function ``name``, or a ConfigError naming the config file: an unknown name
    (with a did-you-mean over every built-in model), a classic model that is not built in
    (and why), a missing module or function."""
    where = f"{source}: " if source else ""
    if name in NOT_BUILT_IN:
        raise ConfigError(
            f"{where}key 'model.name' is the classic model '{name}', which is not built in: "
            f"{NOT_BUILT_IN[name]}; give a model of your own as 'module:function' "
            f"(built in: {choices_text(BUILTIN)})"
        )
    try:
        return resolve_model_function(name, base)
    except ConfigError as exc:
        raise ConfigError(f"{where}{exc}") from None


def model_learning_rate(name: str, configured: float, given: bool, base: Optional[Path]) -> float:
    """The learning rate to build ``name`` with: the config's if it sets one, else a classic
    model's own (e.g. 1e-4 for smhtt_dropout_tanh), else the config's default."""
    if given:
        return configured
    classic = classic_learning_rate(resolve_model_function(name, base))
    return configured if classic is None else classic


def build_checked(
    name: str,
    n_inputs: int,
    n_outputs: int,
    learning_rate: float,
    base: Optional[Path],
    source: Any = None,
):
    """:func:`build_model`, with any failure of the model function as one ModelError line
    naming the function and the exception (no traceback)."""
    from htt_tmva.errors import HttTmvaError

    checked_model_function(name, base, source)
    try:
        return build_model(name, n_inputs, n_outputs, learning_rate, base)
    except HttTmvaError:
        raise
    except Exception as exc:
        text = " ".join(str(exc).split())
        where = f"{source}: " if source else ""
        raise ModelError(
            f"{where}model function '{name}' failed to build the model for {n_inputs} inputs "
            f"and {n_outputs} classes: {type(exc).__name__}: {text}"
        ) from exc
