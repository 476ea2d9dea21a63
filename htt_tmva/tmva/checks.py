"""Checks of a TMVA booking that TMVA itself would fail on late (a FATAL error after the data
are loaded, or after training) or get silently wrong; each follows the TMVA source named.

They need neither ROOT nor TMVA: the plan runs them on the config, ``check_inputs`` on the
numbers of events in the fold file.
"""

from __future__ import annotations

import ast
import operator
from collections.abc import Iterable
from typing import Any, Optional

from htt_tmva.config.tmva import transformation_parts, validation_size_problem
from htt_tmva.errors import ConfigError, choices_text, did_you_mean

__all__ = ["validation_size_problem"]  # declared with the options, checked here too

#: names MethodDL::ParseDenseLayer compares (exactly, upper case) to choose the activation
DL_ACTIVATIONS = ("RELU", "TANH", "SYMMRELU", "SOFTSIGN", "SIGMOID", "LINEAR", "GAUSS")
#: layer types MethodDL::CreateDeepNet knows; a layer without one is a dense layer
DL_LAYER_TYPES = ("DENSE", "CONV", "MAXPOOL", "RESHAPE", "BNORM", "RNN", "LSTM", "GRU")
#: characters that break TMVA's option strings in a class name (TrainTestSplit_<class>=...)
_OPTION_SEPARATORS = (":", "=")


def check_class_names(classes: list[str], source) -> None:
    """TMVA names the per-class split options ``TrainTestSplit_<class>`` and matches option
    names ignoring case (``Configurable::ParseOptions``): two classes that differ only by case
    share one option, and the second loses its split (TMVA's 50/50 default); a ':' or '='
    in a class name breaks the option string."""
    for c in classes:
        bad = [s for s in _OPTION_SEPARATORS if s in c]
        if bad:
            raise ConfigError(
                f"{source}: key 'classes': class '{c}' holds {choices_text(bad)}, which TMVA's "
                "option strings use as separators (TrainTestSplit_<class>=...); rename the "
                "class for --engine tmva"
            )
    seen: dict[str, str] = {}
    for c in classes:
        other = seen.setdefault(c.lower(), c)
        if other != c:
            raise ConfigError(
                f"{source}: key 'classes': '{other}' and '{c}' differ only by case; TMVA "
                "matches option names ignoring case, so both would share one "
                f"TrainTestSplit_{c} option and one class would silently get TMVA's default "
                "50/50 split; rename one for --engine tmva"
            )


def check_patience(early_stopping: Optional[int], source) -> None:
    if early_stopping is not None and early_stopping <= 0:
        raise ConfigError(
            f"{source}: key 'model.early_stopping' is {early_stopping}; the TMVA engine needs "
            "a positive patience (epochs without improvement before stopping), or leave it out"
        )


def convergence_steps(early_stopping: Optional[int], epochs: int) -> int:
    """MethodDL's ConvergenceSteps for a Keras-like patience: MethodDL stops once more than
    ConvergenceSteps epochs passed without improvement (``convergenceCount >
    convergenceSteps``, one count per epoch with TestRepetitions=1), i.e. after
    ConvergenceSteps + 1 epochs; Keras's EarlyStopping after ``patience``. No patience: never
    before MaxEpochs."""
    return epochs if early_stopping is None else early_stopping - 1


# --- ValidationSize (MethodDL/MethodPyKeras::GetNumValidationSamples) -------------------


def validation_samples(value: Any, n_training: int) -> int:
    """The number of events of TMVA's training sample that MethodDL/PyKeras keep for
    validation: the last ones of the training vector."""
    text = str(value).strip()
    if text.endswith("%"):
        return int(n_training * float(text[:-1]) / 100.0)
    number = float(text)
    return int(n_training * number) if number < 1.0 else int(number)


# --- MethodDL's Layout and TrainingStrategy ---------------------------------------------

_ARITHMETIC = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
    ast.USub: operator.neg,
    ast.UAdd: operator.pos,
}


def _evaluate(node: ast.AST, n: int) -> float:
    if isinstance(node, ast.Expression):
        return _evaluate(node.body, n)
    if isinstance(node, ast.Constant) and isinstance(node.value, (int, float)):
        return node.value
    if isinstance(node, ast.Name) and node.id in ("N", "n"):
        return n
    if isinstance(node, ast.BinOp) and type(node.op) in _ARITHMETIC:
        return _ARITHMETIC[type(node.op)](_evaluate(node.left, n), _evaluate(node.right, n))
    if isinstance(node, ast.UnaryOp) and type(node.op) in _ARITHMETIC:
        return _ARITHMETIC[type(node.op)](_evaluate(node.operand, n))
    raise ValueError("not arithmetic in N")


def layer_width(token: str, n_variables: int) -> Optional[int]:
    """A dense layer's width as TMVA reads it (an integer or a formula in N, the number of
    variables; 0 counts as 1); None if it is neither."""
    try:
        width = int(_evaluate(ast.parse(token.strip(), mode="eval"), n_variables))
    except (SyntaxError, ValueError, ZeroDivisionError):
        return None
    return width or 1


def check_layout(layout: str, n_classes: int, n_variables: int, source) -> None:
    """A DNN layout TMVA parses as meant: known layer types and activations in TMVA's
    spelling (it compares them exactly; ``relu`` would be read as a width, the activation
    left at TANH), and a last dense layer with one node per class."""
    where = f"{source}: key 'tmva.DNN.Layout' ('{layout}')"
    layers = [layer for layer in layout.split(",") if layer]
    if not layers:
        raise ConfigError(f"{where} holds no layer")
    last_width = None
    for layer in layers:
        tokens = layer.split("|")
        kind = tokens[0] if tokens[0] in DL_LAYER_TYPES else None
        if kind is None and tokens[0].upper() in DL_LAYER_TYPES:
            raise ConfigError(
                f"{where}: layer '{layer}': TMVA reads layer types in upper case only; write "
                f"'{tokens[0].upper()}'"
            )
        if kind not in (None, "DENSE"):
            last_width = None
            continue
        last_width = None  # the first width token counts (ParseDenseLayer); none: 1
        for token in tokens[1:] if kind else tokens:
            if token in DL_ACTIVATIONS:
                continue
            if token.upper() in DL_ACTIVATIONS:
                raise ConfigError(
                    f"{where}: layer '{layer}': TMVA compares activations exactly and would "
                    f"read '{token}' as a width (keeping TANH); write '{token.upper()}'"
                )
            width = layer_width(token, n_variables)
            if width is None:
                raise ConfigError(
                    f"{where}: layer '{layer}': '{token}' is neither an activation "
                    f"({choices_text(DL_ACTIVATIONS)}{did_you_mean(token, DL_ACTIVATIONS)}) "
                    "nor a width (a number or a formula in N, the number of variables)"
                )
            last_width = last_width or width
        last_width = last_width or 1
    if last_width != n_classes:
        got = "is not a dense layer" if last_width is None else f"has {last_width} nodes"
        raise ConfigError(
            f"{where}: the last layer {got}; a multiclass network needs a last DENSE layer "
            f"with one node per class ({n_classes}), e.g. 'DENSE|{n_classes}|LINEAR' (TMVA "
            "applies the softmax itself)"
        )


def strategy_batch_sizes(strategy: str) -> list[int]:
    """The BatchSize of every phase of a TrainingStrategy, as MethodDL parses it (phases
    split at '|', keys ignoring case, default 30)."""
    sizes = []
    for block in strategy.replace(" ", "").split("|"):
        values = {}
        for token in block.split(","):
            key, eq, value = token.partition("=")
            if eq and key:
                values[key.upper()] = value
        text = values.get("BATCHSIZE", "30")
        digits = text.lstrip("+-")
        sizes.append(int(text) if digits.isdigit() else 0)
    return sizes


def check_dnn_batches(
    options: dict[str, Any], n_training: int, what: str, source
) -> tuple[int, int]:
    """MethodDL::TrainDeepNet stops (FATAL) when a batch is larger than the part of TMVA's
    training sample it trains on or the part it validates on. Returns those two sizes."""
    n_validation = validation_samples(options.get("ValidationSize", "20%"), n_training)
    n_fit = n_training - n_validation
    if n_validation <= 0 or n_fit <= 0:
        raise ConfigError(
            f"{source}: ValidationSize={options.get('ValidationSize')} of the DNN leaves "
            f"{n_fit} training and {n_validation} validation events of {what}'s "
            f"{n_training} TMVA training events; TMVA stops there"
        )
    for size in strategy_batch_sizes(str(options.get("TrainingStrategy", ""))):
        if size <= 0 or size > min(n_fit, n_validation):
            raise ConfigError(
                f"{source}: the DNN's BatchSize {size} does not fit {what}: MethodDL trains on "
                f"{n_fit} and validates on {n_validation} events (ValidationSize="
                f"{options.get('ValidationSize')} of TMVA's {n_training} training events), "
                "and stops when a batch is larger than either; lower model.batch_size (or "
                "BatchSize in tmva.DNN.TrainingStrategy) or the ValidationSize"
            )
    return n_fit, n_validation


def check_split_modes(dataloader: dict[str, Any], methods: Iterable[str], source) -> None:
    """MethodDL and PyKeras validate on the tail of TMVA's training vector: only a randomly
    mixed vector makes it a sample of every class (with Block or Alternate it holds almost
    only the last class, DataSetFactory::MixEvents)."""
    networks = [m for m in methods if m in ("DNN", "PyKeras")]
    if not networks:
        return
    split = dataloader.get("SplitMode", "Random")
    mix = dataloader.get("MixMode", "SameAsSplitMode")
    effective = split if mix == "SameAsSplitMode" else mix
    if split != "Random" or effective != "Random":
        raise ConfigError(
            f"{source}: key 'tmva.DataLoader': SplitMode={split}, MixMode={mix} with "
            f"{' and '.join(networks)} booked: they validate (early stopping, best epoch) on "
            "the last events of TMVA's training sample, which then hold almost only the last "
            "class; use SplitMode=Random with MixMode Random or SameAsSplitMode"
        )


def check_transform_classes(value: str, classes: list[str], key: str, source) -> None:
    """``VarTransform=N_<class>``: TMVA splits the entry at '_' and takes the second part as
    the class, so a class named with '_' cannot be chosen; an unknown one is a FATAL."""
    for name, cls in transformation_parts(value):
        if cls is None or cls == "AllClasses" or cls in classes:
            continue
        cut = [c for c in classes if c.startswith(cls + "_")]
        why = (
            f"TMVA splits '{name}_{cut[0]}' at '_' and looks for a class '{cls}'"
            if cut
            else f"there is no class '{cls}'{did_you_mean(cls, classes)}"
        )
        raise ConfigError(
            f"{source}: key '{key}' has value '{value}': {why}; use AllClasses or a class "
            "without '_' in its name"
        )
