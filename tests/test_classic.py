"""Drop-in for the classic scripts (KIT-CMS/htt-ml): their example configs, unchanged, run
the whole workflow from their layout, and models they trained (Keras ``.h5`` with a
scikit-learn scaler pickle, no manifest) are usable for testing and application."""

from __future__ import annotations

import json
import logging
import os
import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import CLASSES, write_yaml

from htt_tmva.application.apply import run_application
from htt_tmva.evaluation.confusion import confusion_matrix
from htt_tmva.evaluation.testing import run_testing

uproot = pytest.importorskip("uproot")

# The example configs of the classic scripts, exactly as they are there.
CLASSIC_CONFIGS = {
    "dataset/example_dataset_config.yaml": """\
# Path to output directory
output_path: .

# Filename postfix of merged training dataset
output_filename: "example_dataset.root"

# Path to nominal ntuple in files
tree_path: "ntuple"

# Base path prefix for processes files
base_path: .

# Branch in all files holding the event number used for creating the folds
event_branch: "event"

# Branch to be added with training weights generated from formula using the weight string
training_weight_branch: "training_weight"

# Define the processes and the according files
processes:
    signal:
        files:
            - example_signal.root
        cut_string: "x>0.0"
        weight_string: "1.0"
        class: signal

    background_1:
        files:
            - example_background_1.root
        cut_string: "x>0.0"
        weight_string: "1.0"
        class: background_1

    background_2:
        files:
            - example_background_2.root
        cut_string: "x>0.0"
        weight_string: "1.0"
        class: background_2

    data:
        files:
            - example_data.root
        cut_string: "x>0.0"
        weight_string: "1.0"
        class: data
""",
    "training/example_training_config.yaml": """\
# Training datasets for different folds
datasets:
    - fold0_example_dataset.root
    - fold1_example_dataset.root

# Base path for all output files
output_path: .

# Define classes based on tree names in dataset file
classes:
    - signal
    - background_1
    - background_2

# Set class weights
class_weights:
    signal: 1.0
    background_1: 1.0
    background_2: 1.0

# Define global scale factor, which is multiplied to all event weights
global_weight_scale: 10000.0

# Set event weight variable
event_weights: training_weight

# Define list of variables to be used for training
variables:
    - x
    - y

# Split of dataset in training and validation (in TMVA called training and testing)
train_test_split: 0.75

# Preprocessing
preprocessing: standard_scaler

# Model parameters
model:
    name: example # Name of model function in keras_models.py
    batch_size: 100
    epochs: 10
""",
    "testing/example_keras_testing_config.yaml": """\
# Trained Keras model
# NOTE: They need to be booked in the correct order! The index (0,1) is
# matched with the dataset (1,0) so that the testing runs not on the
# training dataset.
model:
    - fold0_keras_model_example.h5
    - fold1_keras_model_example.h5

# NOTE: Same as for the model files.
preprocessing:
    - fold0_keras_preprocessing_example.pickle
    - fold1_keras_preprocessing_example.pickle

# Event weight branch
weight_branch: weights

# Prefix of output files
output_prefix: "confusion_"
""",
    "application/example_keras_application_config.yaml": """\
# Classifier configs of both folds.
# The first entry is used for the even event numbers (N%2==0) and
# the second for the odd event numbers (N%2==1)
# NOTE: To be indepedent, the classifier trained on fold 1 needs to be
# booked first and vice versa.
classifiers:
    - fold1_keras_model_example.h5
    - fold0_keras_model_example.h5

preprocessing:
    - fold1_keras_preprocessing_example.pickle
    - fold0_keras_preprocessing_example.pickle

# Prefix of new branches with method's responses
branch_prefix: "ml_score_"
""",
}


def htt_tmva(root: Path, *args: str) -> subprocess.CompletedProcess:
    """Run a command as a classic user would: from the analysis folder."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    result = subprocess.run(
        [sys.executable, "-m", "htt_tmva", *args],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, f"htt-tmva {' '.join(args)} failed:\n{result.stderr}"
    assert "Traceback" not in result.stderr
    assert "alpha stage" not in result.stderr + result.stdout
    return result


def keras_scores(model_path: Path, x: np.ndarray, offset, scale) -> np.ndarray:
    """Scores computed independently of htt-tmva's predict: Keras on standard-scaled inputs."""
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    import keras

    network = keras.saving.load_model(model_path, compile=False)
    z = ((x - np.asarray(offset)) / np.asarray(scale)).astype(np.float32)
    return np.asarray(network.predict(z, verbose=0))


def check_score_branches(
    data: dict, prefix: str, expected_even: np.ndarray, expected_odd: np.ndarray
) -> None:
    """The score branches: each event scored by the model of the other fold (floats)."""
    even = data["event"].astype(np.int64) % 2 == 0
    scores = np.stack([data[f"{prefix}{c}"] for c in CLASSES], axis=1)
    assert scores.dtype == np.float32
    np.testing.assert_allclose(scores[even], expected_even, atol=2e-6)
    np.testing.assert_allclose(scores[~even], expected_odd, atol=2e-6)
    np.testing.assert_array_equal(data[f"{prefix}max_score"], scores.max(axis=1))
    np.testing.assert_array_equal(data[f"{prefix}max_index"], scores.argmax(axis=1))


@pytest.mark.slow
def test_classic_layout_and_configs_run_the_whole_workflow(tmp_path):
    root = tmp_path / "htt-ml"
    for name, text in CLASSIC_CONFIGS.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)

    htt_tmva(root, "toy", ".", "--events", "2000")
    htt_tmva(root, "dataset", "dataset/example_dataset_config.yaml")
    assert (root / "fold0_example_dataset.root").is_file()
    for fold in ("0", "1"):
        htt_tmva(root, "train", "training/example_training_config.yaml", fold)
    for fold in ("0", "1"):
        htt_tmva(
            root,
            "confusion",
            "training/example_training_config.yaml",
            "testing/example_keras_testing_config.yaml",
            fold,
        )
        summary = json.loads((root / f"confusion_fold{fold}_confusion.json").read_text())
        assert summary["classes"] == CLASSES and summary["weight_branch"] == "weights"
        assert summary["model"] == str(root / f"fold{fold}_keras_model_example.keras")
        assert all(0.5 < auc <= 1.0 for auc in summary["auc"].values())
    htt_tmva(
        root,
        "apply",
        "dataset/example_dataset_config.yaml",
        "training/example_training_config.yaml",
        "application/example_keras_application_config.yaml",
        "example_data.root",
        "ntuple",
    )

    with uproot.open(root / "example_data.root") as f:
        data = f["ntuple"].arrays(library="np")
    assert {f"ml_score_{c}" for c in CLASSES} | {"ml_score_max_score", "ml_score_max_index"} <= set(
        data
    )
    x = np.stack([data["x"], data["y"]], axis=1).astype(np.float64)
    even = data["event"].astype(np.int64) % 2 == 0
    expected = {}
    for fold in (0, 1):
        pre = json.loads((root / f"fold{fold}_keras_preprocessing_example.json").read_text())
        model = root / f"fold{fold}_keras_model_example.keras"
        expected[fold] = keras_scores(model, x, pre["offset"], pre["scale"])
    # even events by the model of fold 1 (trained on odd events), odd ones by fold 0
    check_score_branches(data, "ml_score_", expected[1][even], expected[0][~even])


@pytest.fixture
def classic_models(fold_dir, tmp_path):
    """What the classic keras_training.py left: per fold a Keras model saved as .h5 and a
    pickled sklearn StandardScaler fitted on the fold's training events, no manifest."""
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    import keras
    from sklearn.preprocessing import StandardScaler

    output = tmp_path / "classic_models"
    output.mkdir()
    models = {}
    for fold in (0, 1):
        with uproot.open(fold_dir / f"fold{fold}_training_dataset.root") as f:
            x = np.concatenate(
                [
                    np.stack([f[c]["x"].array(library="np"), f[c]["y"].array(library="np")], 1)
                    for c in CLASSES
                ]
            )
        scaler = StandardScaler().fit(x)
        keras.utils.set_random_seed(fold + 10)
        network = keras.Sequential(
            [
                keras.Input((2,)),
                keras.layers.Dense(16, activation="relu"),
                keras.layers.Dense(len(CLASSES), activation="softmax"),
            ]
        )
        network.save(output / f"fold{fold}_keras_model_example.h5")
        with open(output / f"fold{fold}_keras_preprocessing_example.pickle", "wb") as f:
            pickle.dump(scaler, f)
        models[fold] = (network, scaler)
    return output, models


def classic_training_config(fold_dir: Path, output: Path, path: Path) -> Path:
    return write_yaml(
        path,
        {
            "datasets": [str(fold_dir / f"fold{i}_training_dataset.root") for i in (0, 1)],
            "output_path": str(output),
            "classes": list(CLASSES),
            "class_weights": {c: 1.0 for c in CLASSES},
            "global_weight_scale": 1.0,
            "event_weights": "training_weight",
            "variables": ["x", "y"],
            "train_test_split": 0.75,
            "preprocessing": "standard_scaler",
            "model": {"name": "example", "batch_size": 100, "epochs": 10},
        },
    )


def test_models_of_the_classic_scripts_test_and_apply_with_a_warning(
    classic_models, fold_dir, toy_dir, tmp_path, caplog
):
    output, models = classic_models
    training = classic_training_config(fold_dir, output, tmp_path / "training.yaml")
    testing = write_yaml(
        tmp_path / "testing.yaml",
        {
            "model": [f"fold{i}_keras_model_example.h5" for i in (0, 1)],
            "preprocessing": [f"fold{i}_keras_preprocessing_example.pickle" for i in (0, 1)],
            "weight_branch": "training_weight",
            "output_prefix": "classic_",
        },
    )
    with caplog.at_level(logging.WARNING):
        summary = run_testing(training, testing, 0)
    assert "has no manifest" in caplog.text and "folds cannot be verified" in caplog.text

    # the matrix is that of the model of fold 0 on fold 1, with its own scaler
    network, scaler = models[0]
    with uproot.open(fold_dir / "fold1_training_dataset.root") as f:
        parts = [f[c].arrays(["x", "y", "training_weight"], library="np") for c in CLASSES]
    x = np.concatenate([np.stack([p["x"], p["y"]], 1) for p in parts]).astype(np.float64)
    w = np.concatenate([p["training_weight"] for p in parts])
    y = np.concatenate([np.full(len(p["x"]), i) for i, p in enumerate(parts)])
    predicted = network.predict(scaler.transform(x).astype(np.float32), verbose=0).argmax(1)
    np.testing.assert_allclose(
        summary["matrices"]["standard"], confusion_matrix(y, predicted, w, 3), rtol=1e-9
    )

    data_file = tmp_path / "example_data.root"
    data_file.write_bytes((toy_dir / "example_data.root").read_bytes())
    dataset = write_yaml(
        tmp_path / "dataset.yaml",
        {
            "base_path": str(toy_dir),
            "output_path": str(tmp_path),
            "output_filename": "unused.root",
            "tree_path": "ntuple",
            "event_branch": "event",
            "training_weight_branch": "training_weight",
            "processes": {"signal": {"files": ["example_signal.root"], "class": "signal"}},
        },
    )
    application = write_yaml(
        tmp_path / "application.yaml",
        {
            "classifiers": [f"fold{i}_keras_model_example.h5" for i in (1, 0)],
            "preprocessing": [f"fold{i}_keras_preprocessing_example.pickle" for i in (1, 0)],
            "branch_prefix": "classic_",
        },
    )
    run_application(dataset, training, application, [str(data_file)], "ntuple")
    with uproot.open(data_file) as f:
        data = f["ntuple"].arrays(library="np")
    x = np.stack([data["x"], data["y"]], axis=1).astype(np.float64)
    even = data["event"].astype(np.int64) % 2 == 0

    def expected(fold, mask):
        network, scaler = models[fold]
        return network.predict(scaler.transform(x[mask]).astype(np.float32), verbose=0)

    check_score_branches(data, "classic_", expected(1, even), expected(0, ~even))


def test_missing_model_says_where_it_looked_and_what_is_there(classic_models, fold_dir, tmp_path):
    from htt_tmva.errors import ModelError

    output, _ = classic_models
    training = classic_training_config(fold_dir, output, tmp_path / "training.yaml")
    testing = write_yaml(
        tmp_path / "testing.yaml",
        {"model": ["fold0_keras_model_exampel.h5", "x.h5"], "weight_branch": "training_weight"},
    )
    with pytest.raises(ModelError) as error:
        run_testing(training, testing, 0)
    message = str(error.value)
    assert f"model file 'fold0_keras_model_exampel.h5' not found in '{output}'" in message
    assert "did you mean 'fold0_keras_model_example.h5'" in message
    assert "'fold1_keras_model_example.h5'" in message and "output_path" in message


def test_missing_input_says_where_it_looked(tmp_path, toy_dir, monkeypatch):
    from htt_tmva.config import load_dataset_config
    from htt_tmva.data.dataset import create_training_dataset
    from htt_tmva.errors import InputFileError

    root = tmp_path / "htt-ml"
    (root / "dataset").mkdir(parents=True)
    config = root / "dataset" / "example_dataset_config.yaml"
    config.write_text(CLASSIC_CONFIGS["dataset/example_dataset_config.yaml"])
    for name in ("signal", "background_1"):
        (root / f"example_{name}.root").write_bytes((toy_dir / f"example_{name}.root").read_bytes())
    monkeypatch.chdir(root / "dataset")  # not the analysis folder: base_path '.' is this one
    with pytest.raises(InputFileError) as error:
        create_training_dataset(load_dataset_config("example_dataset_config.yaml"))
    message = str(error.value)
    assert "example_signal.root' does not exist" in message
    assert f"looked in '{root / 'dataset'}'" in message and "ROOT files there: (none)" in message


def test_commands_do_not_show_the_root_wheel_alpha_warning(tmp_path):
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path), "PYTHONWARNINGS": "always"}
    result = subprocess.run(
        [sys.executable, "-m", "htt_tmva", "toy", str(tmp_path), "--events", "10"],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "example_data.root").is_file()
    assert "alpha stage" not in result.stderr + result.stdout
