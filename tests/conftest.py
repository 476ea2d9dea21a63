"""Shared fixtures: small real toy ROOT files, fold datasets and configs under tmp paths."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

CLASSES = ["signal", "background_1", "background_2"]


def htt_tmva(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    """Run ``python -m htt_tmva ARGS`` in ``cwd``, as a user (or a batch job) would."""
    return subprocess.run(
        [sys.executable, "-m", "htt_tmva", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=600,
    )


def write_yaml(path: Path, document: dict) -> Path:
    path.write_text(yaml.safe_dump(document, sort_keys=False))
    return path


def dataset_document(toy_dir: Path, output_dir: Path, **overrides) -> dict:
    """A dataset config for the toy files (absolute paths), with top-level overrides."""
    doc = {
        "base_path": str(toy_dir),
        "output_path": str(output_dir),
        "output_filename": "training_dataset.root",
        "tree_path": "ntuple",
        "event_branch": "event",
        "training_weight_branch": "training_weight",
        "processes": {
            name: {
                "files": [f"example_{name}.root"],
                "cut_string": "(x > -3.0)",
                "weight_string": "(weights)",
                "class": name,
            }
            for name in CLASSES
        },
    }
    doc.update(overrides)
    return doc


def training_document(fold_dir: Path, output_dir: Path, **overrides) -> dict:
    """A training config for the toy fold files, small and fast."""
    doc = {
        "datasets": [
            str(fold_dir / "fold0_training_dataset.root"),
            str(fold_dir / "fold1_training_dataset.root"),
        ],
        "output_path": str(output_dir),
        "classes": list(CLASSES),
        "class_weights": {"signal": 10.0, "background_1": 1.7, "background_2": 3.3},
        "global_weight_scale": 1.0,
        "event_weights": "training_weight",
        "variables": ["x", "y"],
        "train_test_split": 0.75,
        "model": {"name": "example", "batch_size": 256, "epochs": 8, "seed": 1},
        "bdt": {"NTrees": 60, "MaxDepth": 3},
    }
    doc.update(overrides)
    return doc


@pytest.fixture(scope="session")
def toy_dir(tmp_path_factory) -> Path:
    """The four toy files, 3000 events per process."""
    from htt_tmva.data.toy import write_toy_dataset

    directory = tmp_path_factory.mktemp("toy")
    write_toy_dataset(directory, events=3000, seed=42)
    return directory


@pytest.fixture(scope="session")
def fold_dir(toy_dir, tmp_path_factory) -> Path:
    """Two-fold training datasets of the toy."""
    from htt_tmva.config import load_dataset_config
    from htt_tmva.data.dataset import create_training_dataset

    directory = tmp_path_factory.mktemp("folds")
    config = write_yaml(directory / "dataset.yaml", dataset_document(toy_dir, directory))
    create_training_dataset(load_dataset_config(config))
    return directory


@pytest.fixture
def dataset_config(toy_dir, tmp_path):
    """Factory: write a dataset config (overrides at top level) and return its path."""

    def make(**overrides) -> Path:
        return write_yaml(
            tmp_path / "dataset.yaml", dataset_document(toy_dir, tmp_path / "out", **overrides)
        )

    return make


@pytest.fixture
def training_config(fold_dir, tmp_path):
    """Factory: write a training config (overrides at top level) and return its path."""

    def make(**overrides) -> Path:
        return write_yaml(
            tmp_path / "training.yaml",
            training_document(fold_dir, tmp_path / "models", **overrides),
        )

    return make


@pytest.fixture(scope="session")
def trained_models(fold_dir, tmp_path_factory) -> dict:
    """Both folds of the toy trained with both engines (small and fast).

    Returns engine -> {"training_config", "output_path", "models": [fold0, fold1],
    "preprocessing": [fold0, fold1] or None}.
    """
    from htt_tmva.config import load_training_config
    from htt_tmva.training import train_folds

    directory = tmp_path_factory.mktemp("trained")
    output = directory / "models"
    config_path = write_yaml(directory / "training.yaml", training_document(fold_dir, output))
    config = load_training_config(config_path)
    result = {}
    for engine in ("keras", "bdt"):
        models = train_folds(config, range(2), engine=engine)
        paths = [output / m.manifest.model_file for m in models]
        preprocessing = None
        if engine == "keras":
            preprocessing = [output / m.manifest.preprocessing["file"] for m in models]
        result[engine] = {
            "training_config": config_path,
            "output_path": output,
            "models": paths,
            "preprocessing": preprocessing,
        }
    return result


USER_MODEL = """
import keras

def normalised(n_inputs, n_outputs):
    return keras.Sequential([
        keras.Input((n_inputs,)),
        keras.layers.BatchNormalization(),
        keras.layers.Dense(8, activation="tanh", use_bias=False),
        keras.layers.Dropout(0.1),
        keras.layers.BatchNormalization(),
        keras.layers.Activation("elu"),
        keras.layers.Dense(n_outputs, activation="softmax"),
    ])
"""


@pytest.fixture(scope="session")
def special_keras_models(fold_dir, tmp_path_factory) -> dict:
    """Keras models beyond a plain Dense stack, fold 0 each, for the exports: ``smhtt`` with
    quantile preprocessing; ``user``, a user model of BatchNormalization, a Dense layer without
    bias, Dropout, an Activation layer and a softmax Dense.

    Returns name -> {"document", "training_config", "output_path", "model"}; tests that write
    next to a model work on a copy of its output_path.
    """
    from htt_tmva.config import load_training_config
    from htt_tmva.training import train_folds

    directory = tmp_path_factory.mktemp("special_keras")
    user = directory / "usermodel.py"
    user.write_text(USER_MODEL)
    result = {}
    for name, model, pre in [
        ("smhtt", "smhtt", "quantile"),
        ("user", f"{user}:normalised", "standard"),
    ]:
        doc = training_document(fold_dir, directory / name, preprocessing=pre)
        doc["model"] = {"name": model, "batch_size": 256, "epochs": 2, "seed": 1}
        config = write_yaml(directory / f"{name}.yaml", doc)
        (trained,) = train_folds(load_training_config(config), [0], engine="keras")
        result[name] = {
            "document": doc,
            "training_config": config,
            "output_path": directory / name,
            "model": directory / name / trained.manifest.model_file,
        }
    return result
