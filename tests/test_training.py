"""Training: both engines on the toy folds, reload, the fold rule, and refused inputs."""

from __future__ import annotations

import json
import logging

import numpy as np
import pytest

from htt_tmva.config import load_training_config
from htt_tmva.data.folds import check_never_seen
from htt_tmva.engines import get_engine, load_model
from htt_tmva.engines.manifest import read_manifest
from htt_tmva.errors import (
    EmptySelectionError,
    EngineError,
    FoldLeakError,
    MissingBranchError,
    MissingTreeError,
    NonFiniteError,
    OutputError,
)
from htt_tmva.training import load_training_data, split, train_fold


def write_fold_file(path, classes: dict[str, dict[str, np.ndarray]]) -> None:
    """A fold file with one tree per class, written with RDataFrame."""
    from htt_tmva._root import root

    ROOT = root()
    for i, (name, columns) in enumerate(classes.items()):
        options = ROOT.RDF.RSnapshotOptions()
        options.fMode = "RECREATE" if i == 0 else "UPDATE"
        ROOT.RDF.FromNumpy(columns).Snapshot(name, str(path), list(columns), options)


def toy_class(n: int, shift: float, rng, weight: float = 1.0) -> dict[str, np.ndarray]:
    return {
        "x": rng.normal(shift, 1, n),
        "y": rng.normal(-shift, 1, n),
        "training_weight": np.full(n, weight),
    }


def weighted_accuracy(model, data) -> float:
    predicted = model.predict(data.x).argmax(axis=1)
    return float(data.w[predicted == data.y].sum() / data.w.sum())


@pytest.mark.parametrize("engine", ["keras", "bdt"])
def test_engine_trains_reloads_and_separates_the_toy(engine, training_config):
    config = load_training_config(
        training_config(model={"name": "example", "batch_size": 128, "epochs": 8, "seed": 3})
    )
    model = train_fold(config, 0, get_engine(engine))
    held_out = load_training_data(config, 1)

    before = model.predict(held_out.x)
    reloaded = load_model(config.output_path / model.manifest.model_file)
    after = reloaded.predict(held_out.x)

    np.testing.assert_array_equal(before, after)
    assert before.shape == (len(held_out), 3)
    np.testing.assert_allclose(before.sum(axis=1), 1.0, rtol=1e-5)
    # chance is 1/3 with the balancing class weights; the toy classes overlap strongly
    assert weighted_accuracy(reloaded, held_out) > 0.5


def test_numpy_forward_pass_matches_keras(training_config):
    config = load_training_config(training_config())
    model = train_fold(config, 1, get_engine("keras"))
    data = load_training_data(config, 0)
    z = model.preprocessing.transform(data.x)
    from_keras = np.asarray(model.network.predict(z, verbose=0))
    np.testing.assert_allclose(model.dense(z), from_keras, atol=1e-5)


def test_smhtt_model_trains(training_config):
    config = load_training_config(
        training_config(model={"name": "smhtt", "batch_size": 512, "epochs": 2})
    )
    model = train_fold(config, 0, get_engine("keras"))
    assert [w.shape for w, _, _ in model.dense.layers] == [
        (2, 300),
        (300, 300),
        (300, 300),
        (300, 3),
    ]
    assert model.network.loss == "mean_squared_error"


def test_user_model_from_python_file(training_config, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # a model file is relative to the working directory
    (tmp_path / "mymodels.py").write_text(
        "import keras\n"
        "def tiny(n_inputs, n_outputs):\n"
        "    return keras.Sequential([\n"
        "        keras.Input((n_inputs,)), keras.layers.Dense(4, activation='tanh'),\n"
        "        keras.layers.Dense(n_outputs, activation='softmax')])\n"
    )
    config = load_training_config(
        training_config(model={"name": "mymodels.py:tiny", "batch_size": 256, "epochs": 1})
    )
    model = train_fold(config, 0, get_engine("keras"))
    assert model.dense.layers[0][2] == "tanh"
    assert (config.output_path / "fold0_keras_model_mymodels_tiny.keras").exists()


def test_manifest_records_the_fold_rule_and_refuses_leaks(trained_models):
    for engine, info in trained_models.items():
        for fold, path in enumerate(info["models"]):
            manifest = read_manifest(path)
            assert manifest.engine == engine
            assert manifest.trained_on == [fold]
            assert manifest.scores_fold == 1 - fold
            assert manifest.variables == ["x", "y"] and manifest.classes[0] == "signal"
            assert "numpy" in manifest.versions and len(manifest.config_hash) == 16
            check_never_seen(path.name, manifest.trained_on, manifest.scores_fold, 2)
            with pytest.raises(FoldLeakError, match=f"fold {fold}"):
                check_never_seen(path.name, manifest.trained_on, fold, 2)


def test_keras_outputs_history_plot_and_readable_preprocessing(trained_models):
    output = trained_models["keras"]["output_path"]
    history = json.loads((output / "fold0_keras_history_example.json").read_text())
    assert len(history["loss"]) == 8 and "val_loss" in history
    assert (output / "fold0_keras_history_example.png").stat().st_size > 1000
    pre = json.loads((output / "fold0_keras_preprocessing_example.json").read_text())
    assert pre["kind"] == "standard" and pre["variables"] == ["x", "y"] and len(pre["scale"]) == 2
    assert (output / "fold0_keras_model_example.config.yaml").exists()


def test_existing_model_is_not_overwritten_without_flag(trained_models):
    config = load_training_config(trained_models["bdt"]["training_config"])
    with pytest.raises(OutputError, match="--overwrite"):
        train_fold(config, 0, get_engine("bdt"))


def test_split_is_reproducible_and_stratified(fold_dir, training_config):
    data = load_training_data(load_training_config(training_config()), 0)
    a, _ = split(data, 0.75, seed=5)
    b, validation = split(data, 0.75, seed=5)
    np.testing.assert_array_equal(a.x, b.x)
    for cls in range(3):
        fraction = (a.y == cls).sum() / (data.y == cls).sum()
        assert fraction == pytest.approx(0.75, abs=1e-3)
    assert len(a) + len(validation) == len(data)


def test_event_weight_is_branch_times_class_weight_times_global_scale(training_config):
    config = load_training_config(training_config(global_weight_scale=2.0))
    data = load_training_data(config, 0)
    raw = load_training_data(
        load_training_config(
            training_config(class_weights={"signal": 1.0, "background_1": 1.0, "background_2": 1.0})
        ),
        0,
    )
    ratio = data.w / raw.w
    np.testing.assert_allclose(ratio[data.y == 0], 20.0)
    np.testing.assert_allclose(ratio[data.y == 1], 3.4)
    np.testing.assert_allclose(ratio[data.y == 2], 6.6)
    assert set(np.unique(data.y)) == {0, 1, 2}


def bad_fold(tmp_path, rng, **replace):
    classes = {
        "signal": toy_class(50, 1.0, rng),
        "background_1": toy_class(50, 0.0, rng),
        "background_2": toy_class(50, -1.0, rng),
    }
    for name, columns in replace.items():
        if columns is None:
            del classes[name]
        else:
            classes[name] = columns
    for fold in (0, 1):
        write_fold_file(tmp_path / f"fold{fold}.root", classes)
    return [str(tmp_path / "fold0.root"), str(tmp_path / "fold1.root")]


def test_refuses_missing_class_tree(training_config, tmp_path):
    rng = np.random.default_rng(0)
    datasets = bad_fold(tmp_path, rng, background_2=None)
    config = load_training_config(training_config(datasets=datasets))
    with pytest.raises(MissingTreeError, match="tree 'background_2' not found"):
        train_fold(config, 0, get_engine("bdt"))


def test_refuses_missing_variable_with_suggestion(training_config, tmp_path):
    datasets = bad_fold(tmp_path, np.random.default_rng(0))
    config = load_training_config(training_config(datasets=datasets, variables=["x", "yy"]))
    with pytest.raises(MissingBranchError, match="'yy'.*did you mean 'y'"):
        train_fold(config, 0, get_engine("bdt"))


def test_refuses_non_finite_inputs_naming_class_variable_and_count(training_config, tmp_path):
    rng = np.random.default_rng(0)
    broken = toy_class(50, 0.0, rng)
    broken["y"][:3] = np.nan
    broken["y"][3] = np.inf
    config = load_training_config(
        training_config(datasets=bad_fold(tmp_path, rng, background_1=broken))
    )
    with pytest.raises(NonFiniteError, match="class 'background_1'.*'y' in 4 events"):
        train_fold(config, 0, get_engine("bdt"))


def test_refuses_class_without_events(training_config, tmp_path):
    rng = np.random.default_rng(0)
    empty = {k: v[:0] for k, v in toy_class(5, 0.0, rng).items()}
    config = load_training_config(training_config(datasets=bad_fold(tmp_path, rng, signal=empty)))
    with pytest.raises(EmptySelectionError, match="class 'signal' has no events"):
        train_fold(config, 0, get_engine("bdt"))


def test_refuses_negative_class_total_but_allows_negative_events(training_config, tmp_path, caplog):
    rng = np.random.default_rng(0)
    negative = toy_class(50, 0.0, rng, weight=-1.0)
    config = load_training_config(
        training_config(datasets=bad_fold(tmp_path, rng, background_2=negative))
    )
    with pytest.raises(EmptySelectionError, match="class 'background_2'.*total weight of -165"):
        train_fold(config, 0, get_engine("bdt"))

    some_negative = toy_class(50, 0.0, rng)
    some_negative["training_weight"][:5] = -0.5
    (tmp_path / "second").mkdir()
    config = load_training_config(
        training_config(
            datasets=bad_fold(tmp_path / "second", rng, background_2=some_negative),
            bdt={"NTrees": 5},
        )
    )
    with caplog.at_level(logging.INFO):
        model = train_fold(config, 0, get_engine("bdt"), overwrite=True)
    assert "5 with negative weight" in caplog.text
    assert model.predict(np.zeros((2, 2))).shape == (2, 3)


def test_fold_outside_the_config_is_refused(training_config):
    from htt_tmva.errors import ConfigError

    config = load_training_config(training_config())
    with pytest.raises(ConfigError, match="fold 2 does not exist.*folds 0 to 1"):
        train_fold(config, 2, get_engine("bdt"))


def test_unknown_engine_lists_known_ones():
    with pytest.raises(EngineError, match="unknown engine 'kears'.*did you mean 'keras'"):
        get_engine("kears")


def test_tmva_engine_names_the_alternatives_when_tmva_is_missing(training_config):
    from htt_tmva._root import has_tmva
    from htt_tmva.training import train_folds

    if has_tmva():
        pytest.skip("this ROOT has TMVA")
    config = load_training_config(training_config())
    with pytest.raises(EngineError, match="conda-forge.*--engine keras.*--engine bdt"):
        train_folds(config, [0], engine="tmva")


@pytest.mark.slow
def test_train_command_with_classic_positional_arguments(training_config):
    import subprocess
    import sys

    path = training_config(bdt={"NTrees": 10})
    command = [sys.executable, "-m", "htt_tmva", "-q", "train", str(path), "1", "--engine", "bdt"]
    first = subprocess.run(command, capture_output=True, text=True)
    assert first.returncode == 0, first.stderr
    assert (load_training_config(path).output_path / "fold1_bdt_model.json").exists()

    again = subprocess.run(command, capture_output=True, text=True)
    assert again.returncode == 1
    assert "exists already; use --overwrite" in again.stderr
    assert "Traceback" not in again.stderr


@pytest.mark.slow
def test_early_stopping_and_learning_rate_schedule_are_applied(training_config):
    config = load_training_config(
        training_config(
            model={
                "name": "example",
                "batch_size": 4096,
                "epochs": 200,
                "seed": 2,
                "learning_rate": 0.05,
                "early_stopping": 2,
                "reduce_lr_on_plateau": 1,
            }
        )
    )
    model = train_fold(config, 0, get_engine("keras"))
    epochs_run = len(model.history["loss"])
    assert epochs_run < 200
    assert model.manifest.details["epochs_run"] == epochs_run
    rates = model.history["learning_rate"]
    assert rates[0] == pytest.approx(0.05) and min(rates) < 0.05


USER_MODELS = '''
import keras


class Opaque:
    """Not serialisable: a layer holding one cannot be saved as .keras."""


class Scale(keras.layers.Layer):
    """Not registered: found among this module's classes when the model is loaded."""

    def __init__(self, factor=1.0, **kwargs):
        super().__init__(**kwargs)
        self.factor = factor

    def call(self, x):
        return x * self.factor

    def get_config(self):
        return {**super().get_config(), "factor": self.factor}


@keras.saving.register_keras_serializable(package="user_models")
class Shift(keras.layers.Layer):
    def __init__(self, offset=0.0, **kwargs):
        super().__init__(**kwargs)
        self.offset = offset

    def call(self, x):
        return x + self.offset

    def get_config(self):
        return {**super().get_config(), "offset": self.offset}


class Holding(keras.layers.Layer):
    def __init__(self, thing, **kwargs):
        super().__init__(**kwargs)
        self.thing = thing

    def call(self, x):
        return x


def head(n_outputs):
    return keras.layers.Dense(n_outputs, activation="softmax")


def no_bias(n_inputs, n_outputs):
    hidden = keras.layers.Dense(8, activation="tanh", use_bias=False)
    out = keras.layers.Dense(n_outputs, activation="softmax", use_bias=False)
    return keras.Sequential([keras.Input((n_inputs,)), hidden, out])


def custom(n_inputs, n_outputs):
    layers = [Scale(0.5), Shift(0.25), keras.layers.Dense(8, activation="relu"), head(n_outputs)]
    return keras.Sequential([keras.Input((n_inputs,)), *layers])


def normalised(n_inputs, n_outputs):
    layers = [keras.layers.Dense(8, activation="relu"), keras.layers.LayerNormalization()]
    return keras.Sequential([keras.Input((n_inputs,)), *layers, head(n_outputs)])


def unsaveable(n_inputs, n_outputs):
    return keras.Sequential([keras.Input((n_inputs,)), Holding(Opaque()), head(n_outputs)])
'''

PREDICT_IN_FRESH_PROCESS = """
import sys
import numpy as np
if sys.argv[4] == "blocked":  # as if TensorFlow and Keras were not installed
    sys.modules["tensorflow"] = sys.modules["keras"] = None
from htt_tmva.engines import load_model
model = load_model(sys.argv[1])
np.save(sys.argv[3], model.predict(np.load(sys.argv[2])))
print("numpy path" if model.dense is not None else "keras path")
print("imported:", sorted(m for m in ("tensorflow", "keras") if sys.modules.get(m) is not None))
"""


def user_model(training_config, tmp_path, monkeypatch, function: str, epochs: int = 2):
    monkeypatch.chdir(tmp_path)  # a model file is relative to the working directory
    (tmp_path / "user_models.py").write_text(USER_MODELS)
    settings = {"name": f"user_models.py:{function}", "batch_size": 512, "epochs": epochs}
    return load_training_config(training_config(model=settings))


def predict_in_fresh_process(model_path, x, tmp_path, blocked=False):
    """Load the model in a new interpreter, predict ``x``; return scores and what it said."""
    import subprocess
    import sys

    np.save(tmp_path / "x.npy", x)
    result = subprocess.run(
        [sys.executable, "-c", PREDICT_IN_FRESH_PROCESS, str(model_path), str(tmp_path / "x.npy")]
        + [str(tmp_path / "scores.npy"), "blocked" if blocked else "open"],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr
    return np.load(tmp_path / "scores.npy"), result.stdout


def test_dense_layers_without_bias_run_on_the_numpy_path(training_config, tmp_path, monkeypatch):
    config = user_model(training_config, tmp_path, monkeypatch, "no_bias")
    model = train_fold(config, 0, get_engine("keras"))
    assert model.dense is not None
    x = load_training_data(config, 1).x[:500]
    expected = np.asarray(model.network.predict(model.preprocessing.transform(x), verbose=0))
    np.testing.assert_allclose(model.predict(x), expected, rtol=1e-5, atol=1e-6)
    reloaded = load_model(config.output_path / model.manifest.model_file)
    np.testing.assert_allclose(reloaded.predict(x), expected, rtol=1e-5, atol=1e-6)


@pytest.mark.slow
def test_model_with_custom_layers_loads_in_a_fresh_process(training_config, tmp_path, monkeypatch):
    config = user_model(training_config, tmp_path, monkeypatch, "custom")
    model = train_fold(config, 0, get_engine("keras"))
    assert model.dense is None  # Scale and Shift have no numpy forward pass
    x = load_training_data(config, 1).x[:500]
    scores, said = predict_in_fresh_process(
        config.output_path / model.manifest.model_file, x, tmp_path
    )
    assert "keras path" in said
    np.testing.assert_allclose(scores, model.predict(x), rtol=1e-5, atol=1e-6)

    from htt_tmva.errors import ModelError

    (tmp_path / "user_models.py").rename(tmp_path / "moved.py")
    reloaded = load_model(config.output_path / model.manifest.model_file)
    with pytest.raises(ModelError, match="model file '.*user_models.py' does not exist"):
        reloaded.predict(x)


def test_saved_keras_file_is_loaded_through_keras_when_numpy_cannot_run_it(
    training_config, tmp_path, monkeypatch
):
    config = user_model(training_config, tmp_path, monkeypatch, "normalised")
    model = train_fold(config, 0, get_engine("keras"))
    x = load_training_data(config, 1).x[:500]
    reloaded = load_model(config.output_path / model.manifest.model_file)
    assert reloaded.dense is None and reloaded.network is None
    scores = reloaded.predict(x)
    assert type(reloaded.network).__name__ == "Sequential"  # read from the .keras file
    assert [type(layer).__name__ for layer in reloaded.network.layers] == [
        "Dense",
        "LayerNormalization",
        "Dense",
    ]
    np.testing.assert_allclose(scores, model.predict(x), rtol=1e-5, atol=1e-6)


@pytest.mark.filterwarnings("ignore:Skipping variable loading for optimizer")
def test_failed_save_keeps_the_trained_weights(training_config, tmp_path, monkeypatch):
    from htt_tmva.engines.models import build_model
    from htt_tmva.errors import ModelError

    config = user_model(training_config, tmp_path, monkeypatch, "unsaveable")
    with pytest.raises(ModelError) as info:
        train_fold(config, 0, get_engine("keras"))
    message = str(info.value)
    assert "saving the model of fold 0" in message and "NotImplementedError" in message
    stem = "fold0_keras_model_user_models_unsaveable"
    weights = config.output_path / f"{stem}.rescued.weights.h5"
    assert f"kept in '{weights}'" in message
    assert not (config.output_path / f"{stem}.keras").exists()
    assert not (config.output_path / f"{stem}.manifest.json").exists()

    network = build_model(config.model.name, 2, 3, 1e-3, config.source.parent)
    network.load_weights(weights)
    trained = np.concatenate([np.ravel(w) for w in network.get_weights()])
    fresh = build_model(config.model.name, 2, 3, 1e-3, config.source.parent)
    assert not np.allclose(trained, np.concatenate([np.ravel(w) for w in fresh.get_weights()]))
    assert (config.output_path / f"{stem}.rescued.json").is_file()


@pytest.mark.parametrize("blocked", [False, True], ids=["installed", "not-installed"])
def test_dense_network_predicts_without_tensorflow(trained_models, fold_dir, tmp_path, blocked):
    info = trained_models["keras"]
    config = load_training_config(info["training_config"])
    x = load_training_data(config, 1).x[:1000]
    expected = load_model(info["models"][0]).predict(x)
    scores, said = predict_in_fresh_process(info["models"][0], x, tmp_path, blocked)
    assert "numpy path" in said
    assert "imported: []" in said
    np.testing.assert_array_equal(scores, expected)


@pytest.mark.parametrize(
    "corrupt, reason",
    [
        (lambda text: text[: len(text) // 2], "JSONDecodeError"),
        (lambda text: "[1, 2]", "AttributeError"),
        (lambda text: json.dumps({"engine": "bdt"}), "missing"),
    ],
    ids=["truncated", "not-an-object", "missing-keys"],
)
def test_corrupt_manifest_is_a_clear_error_naming_the_file(
    trained_models, tmp_path, corrupt, reason
):
    import shutil

    from htt_tmva.engines.manifest import manifest_path
    from htt_tmva.errors import ModelError

    model = tmp_path / trained_models["bdt"]["models"][0].name
    shutil.copy(trained_models["bdt"]["models"][0], model)
    manifest = manifest_path(model)
    original = manifest_path(trained_models["bdt"]["models"][0]).read_text()
    manifest.write_text(corrupt(original))
    with pytest.raises(ModelError) as info:
        load_model(model)
    message = str(info.value)
    assert (
        f"manifest '{manifest}' of model '{model.name}' is not a valid htt-tmva manifest" in message
    )
    assert reason in message


def test_manifest_records_the_root_version_when_root_is_loaded(trained_models):
    import subprocess
    import sys

    from htt_tmva._root import root

    manifest = read_manifest(trained_models["bdt"]["models"][0])
    assert manifest.versions["ROOT"] == root().gROOT.GetVersion()
    check = (
        "import sys; from htt_tmva.engines.manifest import library_versions; "
        "v = library_versions(); assert 'ROOT' not in sys.modules and 'ROOT' not in v, v"
    )
    result = subprocess.run([sys.executable, "-c", check], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def test_global_weight_scale_changes_no_bdt_model(training_config, tmp_path):
    """As docs/training.md says: the engines rescale weights to mean 1, so the factor cancels."""
    models = []
    for scale in (1.0, 7.0):
        config = load_training_config(
            training_config(
                global_weight_scale=scale,
                output_path=str(tmp_path / f"scale{scale}"),
                bdt={"NTrees": 20},
            )
        )
        models.append(train_fold(config, 0, get_engine("bdt")))
    x = load_training_data(config, 1).x
    np.testing.assert_allclose(models[0].predict(x), models[1].predict(x), rtol=1e-5, atol=1e-6)
