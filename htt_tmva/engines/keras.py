"""The Keras engine: Keras 3 on TensorFlow (CPU), built-in or user models.

TensorFlow is imported only to train, or to run a model that is not a plain Dense
stack; Dense networks predict through a numpy forward pass of their saved weights.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
from pathlib import Path
from typing import Optional

import numpy as np

from htt_tmva._files import atomic_outputs
from htt_tmva._progress import progress_wanted, quiet_tensorflow_start
from htt_tmva.engines.base import Engine, FoldData, Model
from htt_tmva.engines.batches import balanced_batches, class_balanced
from htt_tmva.engines.dense import DenseNetwork
from htt_tmva.engines.manifest import Manifest, manifest_for, manifest_path, record_files
from htt_tmva.engines.preprocessing import Preprocessing, load_preprocessing
from htt_tmva.errors import EngineError, ModelError

log = logging.getLogger(__name__)


def import_keras():
    """Import Keras on the TensorFlow backend, quietly."""
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    try:
        with quiet_tensorflow_start():  # start-up noise only with -v
            import keras
    except ImportError as exc:
        raise EngineError(
            "the keras engine needs Keras 3 and TensorFlow: "
            "pip install 'keras>=3.14' tensorflow-cpu (or use --engine bdt)"
        ) from exc
    return keras


def normalised(w: np.ndarray) -> np.ndarray:
    """Weights scaled to mean 1: a global factor that changes only the loss's numerical scale."""
    return (w / w.mean()).astype(np.float32)


class KerasModel(Model):
    """A trained Keras network with its preprocessing."""

    def __init__(
        self,
        manifest: Manifest,
        preprocessing: Preprocessing,
        network=None,
        dense: Optional[DenseNetwork] = None,
        history: Optional[dict] = None,
    ):
        self.manifest, self.preprocessing = manifest, preprocessing
        self.network, self.dense, self.history = network, dense, history

    def describe(self) -> dict:
        """Its preprocessing and layers as a ``network`` (:mod:`htt_tmva.export.spec`)."""
        from htt_tmva.engines.spec import named, network_spec

        if self.dense is None and self.network is None:
            self.network = import_keras().saving.load_model(self._model_path, compile=False)
        return named(network_spec(self), self.manifest)

    def predict(self, x: np.ndarray) -> np.ndarray:
        z = self.preprocessing.transform(x)
        if self.dense is not None:
            return self.dense(z)
        if self.network is None:
            self.network = load_network(self._model_path, self.manifest)
        return np.asarray(self.network.predict(z, batch_size=65536, verbose=0))

    def rescue(self, model_path: Path) -> list[Path]:
        stem = Path(model_path).stem
        for folder in (Path(model_path).parent, None):
            try:
                folder = folder or Path(tempfile.mkdtemp(prefix="htt_tmva_rescued_"))
                kept = [folder / f"{stem}.rescued.weights.h5", folder / f"{stem}.rescued.json"]
                self.network.save_weights(kept[0])
                self.preprocessing.to_json(kept[1])
                return kept
            except Exception as exc:  # noqa: BLE001 - try the next folder, then give up
                log.debug("cannot keep the trained weights in %s: %s", folder, exc)
        return []

    def save(self, model_path: Path) -> list[Path]:
        """Write the model and every file that goes with it, each named after the model
        (``fold{i}_keras_<role>_<name>.<ext>``), the manifest last with their digests."""
        model_path = Path(model_path)
        files = model_files(model_path)
        if self.dense is None:
            del files["dense"]
        pickle_wanted = self.manifest.details.get("write_pickle")
        if not (pickle_wanted and self.preprocessing.kind == "standard"):
            if pickle_wanted:
                log.warning(
                    "a classic pickle is written only for standard scaling, not '%s'",
                    self.preprocessing.kind,
                )
            del files["preprocessing_pickle"]
        self.manifest.model_file = model_path.name
        self.manifest.preprocessing = {
            "kind": self.preprocessing.kind,
            "file": files["preprocessing"].name,
        }
        self.manifest.details["dense_weights"] = files["dense"].name if "dense" in files else None
        with atomic_outputs(list(files.values())) as temps:
            tmp = dict(zip(files, temps))
            self.network.save(tmp["model"])
            self.preprocessing.to_json(tmp["preprocessing"])
            if "preprocessing_pickle" in files:
                self.preprocessing.to_pickle(tmp["preprocessing_pickle"])
            if "dense" in files:
                self.dense.save(tmp["dense"])
            with open(tmp["history"], "w") as f:
                json.dump(self.history or {}, f, indent=1)
            record_files(
                self.manifest,
                {role: (files[role], tmp[role]) for role in files if role != "manifest"},
            )
            self.manifest.write(tmp["manifest"])
        written = list(files.values())
        if self.history:
            written.append(
                plot_history(
                    self.history,
                    files["history"].with_suffix(".png"),
                    f"{self.manifest.details.get('model_name', '')}, fold {self.manifest.fold}",
                )
            )
        return written


def model_files(model_path: Path) -> dict[str, Path]:
    """Every file saved with a Keras model, by role, named after the model; the manifest last.

    ``fold0_keras_model_example.keras`` -> ``fold0_keras_preprocessing_example.json``,
    ``fold0_keras_preprocessing_example.pickle``, ``fold0_keras_history_example.json``, ...
    """
    model_path = Path(model_path)
    fold, _, name = model_path.stem.partition("_keras_model_")
    suffix = f"_{name}" if name else ""
    return {
        "model": model_path,
        "preprocessing": model_path.with_name(f"{fold}_keras_preprocessing{suffix}.json"),
        "preprocessing_pickle": model_path.with_name(f"{fold}_keras_preprocessing{suffix}.pickle"),
        "dense": model_path.with_name(f"{model_path.stem}.dense.npz"),
        "history": model_path.with_name(f"{fold}_keras_history{suffix}.json"),
        "manifest": manifest_path(model_path),
    }


class KerasEngine(Engine):
    name = "keras"

    def check_available(self) -> None:
        import importlib.util

        for module in ("keras", "tensorflow"):
            if importlib.util.find_spec(module) is None:
                raise EngineError(
                    f"the keras engine needs '{module}', which is not installed: "
                    "pip install 'keras>=3.14' tensorflow-cpu (or use --engine bdt)"
                )

    def check_loadable(self, manifest: Manifest) -> None:
        if not manifest.details.get("dense_weights"):  # the numpy path needs neither
            self.check_available()

    def model_path(self, output_path: Path, fold: int, model_name: str) -> Path:
        safe = model_name.replace(":", "_").replace("/", "_").replace(".py", "")
        return Path(output_path) / f"fold{fold}_keras_model_{safe}.keras"

    def train(self, train: FoldData, validation: FoldData, config, fold: int) -> KerasModel:
        keras = import_keras()
        from htt_tmva.engines.models import user_module

        settings = config.model
        keras.utils.set_random_seed(settings.seed)
        preprocessing = Preprocessing.fit(config.preprocessing, train.x, train.variables)
        n_classes = len(train.classes)
        network = self._build(config, len(train.variables), n_classes)
        fit_data = (
            preprocessing.transform(train.x),
            keras.utils.to_categorical(train.y, n_classes),
            normalised(train.w),
        )
        val_data = (
            preprocessing.transform(validation.x),
            keras.utils.to_categorical(validation.y, n_classes),
            class_balanced(validation.y, validation.w, n_classes)
            if settings.balanced_batches
            else normalised(validation.w),
        )
        callbacks = [_LogEpochs(keras)]
        if settings.early_stopping:
            callbacks.append(
                keras.callbacks.EarlyStopping(
                    patience=settings.early_stopping, restore_best_weights=settings.save_best_only
                )
            )
        elif settings.save_best_only:
            callbacks.append(_KeepBest(keras))
        if settings.reduce_lr_on_plateau:
            callbacks.append(
                keras.callbacks.ReduceLROnPlateau(patience=settings.reduce_lr_on_plateau)
            )
        x, y, w = fit_data
        common = dict(
            validation_data=val_data,
            epochs=settings.epochs,
            callbacks=callbacks,
            verbose=1 if progress_wanted() else 0,  # Keras' bar and epoch line on a terminal
        )
        steps = None
        if settings.balanced_batches:
            steps = settings.steps_per_epoch or -(-len(train) // settings.batch_size)
            log.info(
                "balanced batches: %d events of each class per batch (weights scaled to the "
                "same sum per class), %d batches per epoch%s",
                settings.eventsPerClassAndBatch,
                steps,
                "" if settings.steps_per_epoch else " (one pass over the training events)",
            )
            batches = balanced_batches(
                x, train.y, train.w, n_classes, settings.eventsPerClassAndBatch, settings.seed
            )
            result = network.fit(batches, steps_per_epoch=steps, shuffle=False, **common)
        else:
            result = network.fit(
                x, y, sample_weight=w, batch_size=settings.batch_size, shuffle=True, **common
            )
        history = {k: [float(v) for v in vals] for k, vals in result.history.items()}
        try:
            dense = DenseNetwork.from_keras(network)
        except Exception as exc:  # noqa: BLE001 - the Keras path still predicts
            log.warning("model %s: no numpy forward pass (%s)", settings.name, exc)
            dense = None
        if dense is None:
            log.info(
                "model %s is not a plain Dense stack: predictions will run through Keras",
                settings.name,
            )
        manifest = manifest_for(
            config,
            self.name,
            self.model_path(config.output_path, fold, settings.name),
            fold,
            model_name=settings.name,
            model_module=user_module(settings.name, Path.cwd()),
            epochs_run=len(history.get("loss", [])),
            write_pickle=config.write_pickle,
            events_per_class_and_batch=settings.eventsPerClassAndBatch,
            steps_per_epoch=steps if settings.balanced_batches else None,
        )
        return KerasModel(manifest, preprocessing, network=network, dense=dense, history=history)

    def _build(self, config, n_inputs: int, n_outputs: int):
        """The model of the config, compiled; a model ``.py`` file is relative to the working
        directory. A classic zoo model keeps its classic learning rate unless the config
        sets one."""
        from htt_tmva.engines.models import (
            build_checked,
            checked_model_function,
            model_learning_rate,
        )

        settings = config.model
        base = Path.cwd()
        checked_model_function(settings.name, base, config.source)
        rate = model_learning_rate(
            settings.name, settings.learning_rate, settings.learning_rate_given, base
        )
        if rate != settings.learning_rate:
            log.info("model %s: its classic learning rate %g", settings.name, rate)
        return build_checked(settings.name, n_inputs, n_outputs, rate, base, config.source)

    def check_config(self, config) -> None:
        """Build the model once, before any data is read: an unknown ``model.name`` or a
        model function that fails stops here."""
        import_keras()
        self._build(config, len(config.variables), len(config.classes))

    def load(
        self, model_path: Path, manifest: Manifest, preprocessing: Optional[Path] = None
    ) -> KerasModel:
        model_path = Path(model_path)
        if preprocessing is None:
            if not manifest.preprocessing:
                raise ModelError(
                    f"model '{model_path}' has no preprocessing in its manifest; give its "
                    "file in the config's 'preprocessing' list"
                )
            preprocessing = model_path.with_name(manifest.preprocessing["file"])
        pre = load_preprocessing(preprocessing, manifest.variables)
        dense_file = manifest.details.get("dense_weights")
        dense = DenseNetwork.load(model_path.with_name(dense_file)) if dense_file else None
        model = KerasModel(manifest, pre, dense=dense)
        model._model_path = model_path
        return model


def load_network(model_path: Path, manifest: Manifest):
    """The saved Keras network, with the custom objects of the user module that built it."""
    from htt_tmva.engines.models import custom_objects

    keras = import_keras()
    objects = custom_objects(manifest.details.get("model_module"), model_path)
    try:
        return keras.saving.load_model(model_path, compile=False, custom_objects=objects)
    except (TypeError, ValueError) as exc:
        raise ModelError(
            f"Keras cannot load model '{model_path}': {exc}; custom layers of a user model "
            "must be defined in its module (or returned by its get_custom_objects()) and "
            "implement get_config()"
        ) from exc


def _LogEpochs(keras):
    class LogEpochs(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            logs = logs or {}
            log.info("epoch %d: %s", epoch + 1, ", ".join(f"{k} {v:.4g}" for k, v in logs.items()))

    return LogEpochs()


def _KeepBest(keras):
    class KeepBest(keras.callbacks.Callback):
        """Restore the weights of the epoch with the lowest validation loss at the end."""

        def on_train_begin(self, logs=None):
            self.best, self.weights = np.inf, None

        def on_epoch_end(self, epoch, logs=None):
            loss = (logs or {}).get("val_loss", np.inf)
            if loss < self.best:
                self.best, self.weights, self.epoch = loss, self.model.get_weights(), epoch + 1

        def on_train_end(self, logs=None):
            if self.weights is not None:
                self.model.set_weights(self.weights)
                log.info(
                    "kept the weights of epoch %d (best validation loss %.4g)",
                    self.epoch,
                    self.best,
                )

    return KeepBest()


def history_figure(history: dict, title: str = ""):
    """Loss (and the weighted accuracy, when the model has it) per epoch, training and
    validation, one panel each; whole epochs on the x axis; the title is never clipped."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    metrics = [m for m in ("loss", "categorical_accuracy") if m in history]
    fig = Figure(figsize=(6 * len(metrics), 4.8), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    for ax in fig.subplots(1, len(metrics), squeeze=False)[0]:
        metric = metrics.pop(0)
        epochs = np.arange(1, len(history[metric]) + 1)
        ax.plot(epochs, history[metric], "o-", label="training")
        if f"val_{metric}" in history:
            ax.plot(epochs, history[f"val_{metric}"], "s--", label="validation")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_xlabel("epoch")
        ax.set_ylabel("weighted accuracy" if metric == "categorical_accuracy" else metric)
        ax.legend()
        ax.grid(alpha=0.3)
    if title:
        fig.suptitle(f"Keras training history ({title})")
    return fig


def plot_history(history: dict, path: Path, title: str = "") -> Path:
    """The history figure (:func:`history_figure`) as a PNG."""
    history_figure(history, title).savefig(path, format="png")
    return path
