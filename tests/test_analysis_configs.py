"""Configs written as KIT-CMS/sm-htt-analysis wrote them (ml/templates/*_training.yaml, ...):
top-level seed, balanced batches, the classic model zoo, classic model file names, model
paths relative to the working directory."""

from __future__ import annotations

import logging
import shutil

import numpy as np
import pytest
from conftest import CLASSES, dataset_document, write_yaml

from htt_tmva.config import load_training_config
from htt_tmva.engines import get_engine
from htt_tmva.errors import ConfigError, ModelError
from htt_tmva.training import train_fold


def analysis_training(fold_dir, output_path: str, output_path_json=None, **model) -> dict:
    """A training config in the shape of ml/templates/2017_mt_training.yaml."""
    extra = {"output_path_json": output_path_json} if output_path_json else {}
    return {
        **extra,
        "class_weights": {"signal": 300.0, "background_1": 2.7, "background_2": 7.9},
        "classes": list(CLASSES),
        "datasets": [str(fold_dir / f"fold{i}_training_dataset.root") for i in (0, 1)],
        "event_weights": "training_weight",
        "global_weight_scale": 1.0,
        "model": {
            "eventsPerClassAndBatch": 30,
            "early_stopping": 50,
            "epochs": 2,
            "name": "smhtt_dropout_tanh",
            "save_best_only": True,
            "steps_per_epoch": 5,
            **model,
        },
        "output_path": output_path,
        "preprocessing": "standard_scaler",
        "seed": 1234,
        "train_test_split": 0.75,
        "variables": ["x", "y"],
    }


def training_yaml(tmp_path, fold_dir, **model):
    doc = analysis_training(fold_dir, str(tmp_path / "models"), **model)
    return write_yaml(tmp_path / "training.yaml", doc)


# --- top-level seed and the model keys of the analyses ------------------------------------


def test_top_level_seed_is_the_model_seed(fold_dir, tmp_path):
    config = load_training_config(training_yaml(tmp_path, fold_dir))
    assert config.model.seed == 1234
    doc = analysis_training(fold_dir, "models")
    doc["model"]["seed"] = 1234  # both, equal: fine
    assert load_training_config(write_yaml(tmp_path / "t.yaml", doc)).model.seed == 1234


def test_classic_lwtnn_export_folder_is_accepted_and_not_used(fold_dir, tmp_path, caplog):
    doc = analysis_training(fold_dir, "ml/2017_mt", output_path_json="ml/2017_mt_json")
    with caplog.at_level(logging.INFO):
        load_training_config(write_yaml(tmp_path / "t.yaml", doc))
    assert "key 'output_path_json' (the classic lwtnn exports) is not used" in caplog.text


def test_top_level_and_model_seed_that_differ_are_refused(fold_dir, tmp_path):
    doc = analysis_training(fold_dir, "models")
    doc["model"]["seed"] = 7
    with pytest.raises(ConfigError, match=r"'seed' \(1234\) and 'model.seed' \(7\) differ"):
        load_training_config(write_yaml(tmp_path / "t.yaml", doc))


def test_events_per_class_and_batch_sets_the_batch_size(fold_dir, tmp_path):
    config = load_training_config(training_yaml(tmp_path, fold_dir))
    assert config.model.balanced_batches
    assert config.model.batch_size == 30 * len(CLASSES)
    assert config.model.steps_per_epoch == 5


@pytest.mark.parametrize(
    "model, message",
    [
        ({"eventsPerClassAndBatch": None}, "'model.batch_size' is required"),
        ({"batch_size": 100}, "'model.batch_size' and 'model.eventsPerClassAndBatch' both"),
        (
            {"eventsPerClassAndBatch": None, "batch_size": 100},
            "'model.steps_per_epoch' needs 'model.eventsPerClassAndBatch'",
        ),
        ({"eventsPerClassAndBatch": -1}, "must be positive"),
    ],
)
def test_inconsistent_batch_keys_are_refused(fold_dir, tmp_path, model, message):
    doc = analysis_training(fold_dir, "models")
    doc["model"].update(model)
    doc["model"] = {k: v for k, v in doc["model"].items() if v is not None}
    with pytest.raises(ConfigError, match=message):
        load_training_config(write_yaml(tmp_path / "t.yaml", doc))


# --- balanced batches ---------------------------------------------------------------------


def test_balanced_batches_draw_each_class_equally_with_its_event_weights():
    from htt_tmva.engines.batches import balanced_batches

    rng = np.random.default_rng(0)
    y = np.repeat([0, 1, 2], [1000, 50, 7])  # very different class sizes
    x = rng.normal(size=(len(y), 2))
    w = rng.uniform(0.5, 2.0, len(y))
    w[y == 1] *= 100.0  # a class weight: cancels in the per-class normalisation
    w[:100] = 0.0  # events that must not count
    x[:, 0] = np.arange(len(y))  # to find each drawn event again

    batches = balanced_batches(x, y, w, 3, per_class=20, seed=5)
    for _ in range(5):
        bx, by, bw = next(batches)
        index = bx[:, 0].astype(int)
        assert bx.shape == (60, 2) and by.shape == (60, 3)
        np.testing.assert_array_equal(by.argmax(1), y[index])
        np.testing.assert_array_equal(np.bincount(by.argmax(1), minlength=3), [20, 20, 20])
        for c in range(3):
            mine = by.argmax(1) == c
            assert bw[mine].sum() == pytest.approx(20.0, rel=1e-5)  # each class weighs the same
            # within the class, the ratios of the event weights
            np.testing.assert_allclose(
                bw[mine], w[index[mine]] * 20.0 / w[index[mine]].sum(), rtol=1e-5
            )
        assert np.all(bw[index < 100] == 0.0)
    again = next(balanced_batches(x, y, w, 3, per_class=20, seed=5))
    first = next(balanced_batches(x, y, w, 3, per_class=20, seed=5))
    np.testing.assert_array_equal(again[0], first[0])  # reproducible from the seed


def test_validation_weights_of_balanced_training_weigh_each_class_the_same():
    from htt_tmva.engines.batches import class_balanced

    y = np.array([0, 0, 0, 1, 2, 2])
    w = np.array([1.0, 2.0, 1.0, 50.0, 0.1, 0.3])
    out = class_balanced(y, w, 3)
    np.testing.assert_allclose([out[y == c].sum() for c in range(3)], [2.0, 2.0, 2.0])
    np.testing.assert_allclose(out[:3], [0.5, 1.0, 0.5])


def test_balanced_training_runs_the_configured_steps(fold_dir, tmp_path, caplog):
    config = load_training_config(training_yaml(tmp_path, fold_dir, epochs=2, steps_per_epoch=7))
    with caplog.at_level(logging.INFO):
        model = train_fold(config, 0, get_engine("keras"))
    assert int(model.network.optimizer.iterations) == 2 * 7
    assert "30 events of each class per batch" in caplog.text
    assert model.manifest.details["events_per_class_and_batch"] == 30
    assert model.manifest.details["steps_per_epoch"] == 7
    assert "its classic learning rate 0.0001" in caplog.text
    assert float(model.network.optimizer.learning_rate) == pytest.approx(1e-4)


# --- the classic model zoo ----------------------------------------------------------------

#: name -> (hidden widths, activation, L2 of hidden layers, dropout, loss, optimiser, rate)
CLASSIC_ZOO = {
    "smhtt_simple": ([100], "tanh", None, None, "mean_squared_error", "Nadam", 2e-3),
    "smhtt_mt": ([300] * 3, "tanh", 1e-4, None, "mean_squared_error", "Nadam", 2e-3),
    "smhtt_et": ([1000], "tanh", 1e-4, None, "mean_squared_error", "Nadam", 2e-3),
    "smhtt_tt": ([200] * 3, "tanh", 1e-4, None, "mean_squared_error", "Nadam", 2e-3),
    "smhtt_legacy": ([300] * 3, "relu", 1e-4, None, "mean_squared_error", "Adam", 1e-3),
    "smhtt_dropout": ([200] * 2, "relu", None, 0.5, "mean_squared_error", "Nadam", 2e-3),
    "smhtt_dropout_relu": ([200] * 2, "relu", 1e-5, 0.3, "categorical_crossentropy", "Adam", 1e-4),
    "smhtt_dropout_tanh": ([200] * 2, "tanh", 1e-5, 0.3, "categorical_crossentropy", "Adam", 1e-4),
    "smhtt_dropout_tanh_large": (
        [512] * 4,
        "tanh",
        1e-5,
        0.3,
        "categorical_crossentropy",
        "Adam",
        1e-4,
    ),
}


def test_every_classic_model_is_built_in():
    from htt_tmva.engines.classic_models import CLASSIC
    from htt_tmva.engines.models import BUILTIN

    assert set(CLASSIC_ZOO) == set(CLASSIC) and set(CLASSIC) <= set(BUILTIN)


@pytest.mark.parametrize("name", sorted(CLASSIC_ZOO))
def test_classic_model_builds_as_classic_and_trains_one_epoch(name):
    import keras

    from htt_tmva.engines.models import build_checked, model_learning_rate

    widths, activation, l2, dropout, loss, optimizer, rate = CLASSIC_ZOO[name]
    assert model_learning_rate(name, 1e-3, False, None) == rate
    assert model_learning_rate(name, 0.05, True, None) == 0.05  # the config's, when given
    keras.utils.set_random_seed(1)
    network = build_checked(name, 4, 3, rate, None)
    dense = [layer for layer in network.layers if isinstance(layer, keras.layers.Dense)]
    assert [d.units for d in dense] == [*widths, 3]
    assert [d.activation.__name__ for d in dense] == [activation] * len(widths) + ["softmax"]
    for d in dense[:-1]:
        assert (d.kernel_regularizer is None) if l2 is None else d.kernel_regularizer.l2 == l2
    drops = [layer.rate for layer in network.layers if isinstance(layer, keras.layers.Dropout)]
    assert drops == ([dropout] * len(widths) if dropout else [])
    assert network.loss == loss
    assert type(network.optimizer).__name__ == optimizer
    assert float(network.optimizer.learning_rate) == pytest.approx(rate)

    rng = np.random.default_rng(0)
    x = rng.normal(size=(96, 4)).astype(np.float32)
    y = keras.utils.to_categorical(rng.integers(0, 3, 96), 3)
    history = network.fit(x, y, sample_weight=np.ones(96), batch_size=32, epochs=1, verbose=0)
    assert np.isfinite(history.history["loss"][0])
    assert network.predict(x, verbose=0).shape == (96, 3)


# --- unknown and failing models: before any data is read -----------------------------------


def no_data_config(tmp_path, name: str):
    """A config whose datasets do not exist: a model problem must be found before them."""
    doc = analysis_training(tmp_path / "nowhere", str(tmp_path / "models"), name=name)
    return load_training_config(write_yaml(tmp_path / "training.yaml", doc))


def test_unknown_model_name_is_reported_before_reading_data(tmp_path):
    config = no_data_config(tmp_path, "smhtt_dropout_tahn")
    with pytest.raises(ConfigError) as error:
        train_fold(config, 0, get_engine("keras"))
    message = str(error.value)
    assert str(config.source) in message and "'model.name'" in message
    assert "did you mean 'smhtt_dropout_tanh'" in message


def test_classic_model_that_is_not_built_in_says_why(tmp_path):
    config = no_data_config(tmp_path, "smhtt_ams")
    with pytest.raises(ConfigError, match="classic model 'smhtt_ams', which is not built in: .*"):
        train_fold(config, 0, get_engine("keras"))


def test_user_model_that_fails_to_build_is_one_line_before_reading_data(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "mymodels.py").write_text(
        "import keras\n"
        "def broken(n_inputs, n_outputs):\n"
        "    return keras.Sequential([keras.Input((n_inputs,)),\n"
        "        keras.layers.Dense(8, activation='no_such_activation')])\n"
    )
    config = no_data_config(tmp_path, "mymodels.py:broken")
    with pytest.raises(ModelError) as error:
        train_fold(config, 0, get_engine("keras"))
    message = str(error.value)
    assert "\n" not in message
    assert "model function 'mymodels.py:broken' failed to build the model" in message
    assert "ValueError" in message and "no_such_activation" in message


@pytest.mark.slow
def test_train_command_prints_a_failing_model_in_one_line_without_traceback(tmp_path):
    from conftest import htt_tmva

    (tmp_path / "mymodels.py").write_text("def broken(n_inputs, n_outputs):\n    return 1 / 0\n")
    no_data_config(tmp_path, "mymodels.py:broken")
    result = htt_tmva("train", "training.yaml", "0", cwd=tmp_path)
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert (
        "model function 'mymodels.py:broken' failed to build the model for 2 inputs and 3 "
        "classes: ZeroDivisionError: division by zero"
    ) in result.stderr


# --- classic model file names, and model paths from the working directory ------------------


@pytest.fixture(scope="module")
def analysis(fold_dir, toy_dir, tmp_path_factory):
    """An analysis folder (the working directory of its commands) with both folds trained
    from an analysis-style config into ml/2017_mt, a dataset config and a data file."""
    root = tmp_path_factory.mktemp("analysis")
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(root)
        (root / "ml").mkdir()
        training = write_yaml(
            root / "ml" / "2017_mt_training.yaml", analysis_training(fold_dir, "ml/2017_mt")
        )
        config = load_training_config(training)
        for fold in (0, 1):
            train_fold(config, fold, get_engine("keras"))
    dataset = write_yaml(root / "ml" / "dataset.yaml", dataset_document(toy_dir, root / "ml"))
    shutil.copy(toy_dir / "example_data.root", root / "data.root")
    return root, training, dataset


def classic_testing(path):
    """ml/templates/2017_mt_testing.yaml: the classic trainer's names, no model name."""
    return write_yaml(
        path,
        {
            "model": ["fold0_keras_model.h5", "fold1_keras_model.h5"],
            "preprocessing": [
                "fold0_keras_preprocessing.pickle",
                "fold1_keras_preprocessing.pickle",
            ],
            "weight_branch": "training_weight",
        },
    )


def test_classic_testing_config_finds_the_one_keras_model_of_the_fold(
    analysis, caplog, monkeypatch
):
    from htt_tmva.evaluation.testing import run_testing

    root, training, _ = analysis
    monkeypatch.chdir(root)
    with caplog.at_level(logging.INFO):
        summary = run_testing(training, classic_testing(root / "testing.yaml"), 0)
    assert len(summary["matrices"]["standard"]) == 3
    assert (
        "'fold0_keras_model.h5': using 'fold0_keras_model_smhtt_dropout_tanh.keras', the one "
        "Keras model of fold 0"
    ) in caplog.text
    assert "'fold0_keras_preprocessing.pickle': using 'fold0_keras_preprocessing_" in caplog.text


def test_classic_name_with_several_keras_models_of_the_fold_lists_them(
    analysis, tmp_path, monkeypatch
):
    from htt_tmva.evaluation.testing import run_testing

    root, training, _ = analysis
    folder = tmp_path / "ml" / "2017_mt"
    shutil.copytree(root / "ml" / "2017_mt", folder)
    for name in list(folder.iterdir()):
        if "_smhtt_dropout_tanh" in name.name:
            shutil.copy(name, folder / name.name.replace("_smhtt_dropout_tanh", "_other"))
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ModelError) as error:
        run_testing(training, classic_testing(tmp_path / "testing.yaml"), 0)
    message = str(error.value)
    assert "could be any of the 2 Keras models of fold 0" in message
    assert "'fold0_keras_model_other.keras'" in message
    assert "'fold0_keras_model_smhtt_dropout_tanh.keras'" in message


def test_did_you_mean_proposes_only_files_of_the_same_engine(tmp_path):
    from htt_tmva.engines.manifest import locate_model

    (tmp_path / "fold0_bdt_model.json").write_text("{}")
    (tmp_path / "fold0_bdt_model.manifest.json").write_text("{}")
    with pytest.raises(ModelError) as error:
        locate_model(tmp_path / "fold0_keras_model.h5")
    assert "fold0_bdt_model" not in str(error.value)
    (tmp_path / "fold0_keras_model_a.keras").write_text("")
    with pytest.raises(ModelError) as error:
        locate_model(tmp_path / "fold0_keras_model_b.h5")
    message = str(error.value)
    assert "did you mean 'fold0_keras_model_a.keras'" in message
    assert "fold0_bdt_model" not in message


def analysis_application(path, prefix: str):
    """ml/templates/2017_mt_application.yaml as the analysis filled it in: the fold1 model
    first, paths relative to the working directory (or to output_path)."""
    return write_yaml(
        path,
        {
            "classifiers": [f"{prefix}fold1_keras_model.h5", f"{prefix}fold0_keras_model.h5"],
            "preprocessing": [
                f"{prefix}fold1_keras_preprocessing.pickle",
                f"{prefix}fold0_keras_preprocessing.pickle",
            ],
            # lwtnn exports of the classic scripts: accepted, not read
            "weights": [f"{prefix}fold1_keras_weights.h5", f"{prefix}fold0_keras_weights.h5"],
            "architecture_exports": [f"fold{i}_keras_architecture.json" for i in (1, 0)],
            "variable_exports": [f"fold{i}_keras_variables.json" for i in (1, 0)],
            "branch_prefix": "mt_",
        },
    )


@pytest.mark.parametrize(
    "prefix, used",
    [("ml/2017_mt/", "the working directory"), ("", "the training output_path")],
    ids=["from-working-directory", "from-output-path"],
)
def test_application_model_paths_from_the_working_directory_or_output_path(
    analysis, tmp_path, monkeypatch, caplog, prefix, used
):
    import uproot

    import htt_tmva

    root, training, dataset = analysis
    monkeypatch.chdir(root)
    application = analysis_application(tmp_path / "application.yaml", prefix)
    output = tmp_path / "scored.root"
    with caplog.at_level(logging.INFO):
        htt_tmva.apply(dataset, training, application, root / "data.root", "ntuple", output=output)
    assert f"'fold1_keras_model.h5': found from {used}" in caplog.text
    assert "fold1_keras_model_smhtt_dropout_tanh.keras" in caplog.text
    with uproot.open(output) as f:
        scores = f["ntuple"].arrays([f"mt_{c}" for c in CLASSES], library="np")
    total = sum(scores.values())
    np.testing.assert_allclose(total, 1.0, rtol=1e-5)
