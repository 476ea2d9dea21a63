"""The files of a saved model: named after the model, described (with digests) by its
manifest, and refused when they do not belong together."""

from __future__ import annotations

import json
import logging
import shutil

import numpy as np
import pytest

from htt_tmva.config import load_training_config
from htt_tmva.engines import get_engine, load_model
from htt_tmva.engines.manifest import file_digest, manifest_path, read_manifest
from htt_tmva.errors import ModelError, OutputError
from htt_tmva.training import load_training_data, train_fold

TINY_MODEL = (
    "import keras\n"
    "def tiny(n_inputs, n_outputs):\n"
    "    return keras.Sequential([\n"
    "        keras.Input((n_inputs,)), keras.layers.Dense(8, activation='tanh'),\n"
    "        keras.layers.Dense(n_outputs, activation='softmax')])\n"
)


@pytest.fixture
def saved_models(trained_models, tmp_path):
    """A private copy of the session's trained Keras models (the tests change files)."""
    source = trained_models["keras"]["output_path"]
    output = tmp_path / "models"
    shutil.copytree(source, output)
    return output


def test_two_model_names_in_one_folder_both_keep_scoring_as_before(
    training_config, tmp_path, monkeypatch
):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "mymodels.py").write_text(TINY_MODEL)
    first = load_training_config(
        training_config(model={"name": "example", "batch_size": 256, "epochs": 2, "seed": 1})
    )
    events = load_training_data(first, 1).x
    model_a = train_fold(first, 0, get_engine("keras"))
    path_a = first.output_path / model_a.manifest.model_file
    scores_a = load_model(path_a).predict(events)

    # a second model, other preprocessing, same output folder
    second = load_training_config(
        training_config(
            preprocessing="minmax",
            model={"name": "mymodels.py:tiny", "batch_size": 256, "epochs": 2, "seed": 2},
        )
    )
    assert second.output_path == first.output_path
    model_b = train_fold(second, 0, get_engine("keras"))
    path_b = second.output_path / model_b.manifest.model_file
    scores_b = model_b.predict(events)

    np.testing.assert_array_equal(load_model(path_a).predict(events), scores_a)
    np.testing.assert_array_equal(load_model(path_b).predict(events), scores_b)
    names = {p.name for p in first.output_path.iterdir()}
    for model in ("example", "mymodels_tiny"):
        for role in ("preprocessing", "history"):
            assert f"fold0_keras_{role}_{model}.json" in names
    assert read_manifest(path_b).preprocessing == {
        "kind": "minmax",
        "file": "fold0_keras_preprocessing_mymodels_tiny.json",
    }


def test_manifest_records_a_digest_of_every_file_it_describes(saved_models):
    path = saved_models / "fold0_keras_model_example.keras"
    manifest = read_manifest(path)
    assert set(manifest.files) == {"model", "preprocessing", "dense", "history"}
    for entry in manifest.files.values():
        assert entry["sha256"] == file_digest(saved_models / entry["file"])
    # every file of the model is described (figures aside), and no other model's file
    described = {e["file"] for e in manifest.files.values()} | {manifest_path(path).name}
    own = {
        p.name
        for p in saved_models.glob("fold0_keras_*example*")
        if p.suffix not in (".png", ".yaml")
    }
    assert own == described


def test_preprocessing_of_another_model_is_refused(saved_models):
    fold0 = saved_models / "fold0_keras_model_example.keras"
    other = saved_models / "fold1_keras_preprocessing_example.json"
    with pytest.raises(ModelError) as error:
        load_model(fold0, preprocessing=other)
    message = str(error.value)
    assert "does not belong to model" in message
    assert str(other) in message and "fold0_keras_preprocessing_example.json" in message


def test_swapped_preprocessing_file_is_refused(saved_models):
    own = saved_models / "fold0_keras_preprocessing_example.json"
    shutil.copy(saved_models / "fold1_keras_preprocessing_example.json", own)
    fold0 = saved_models / "fold0_keras_model_example.keras"
    for given in (None, own):
        with pytest.raises(ModelError, match="not the one saved with model|does not belong"):
            load_model(fold0, preprocessing=given)


def test_dense_weights_left_from_another_save_are_refused(saved_models):
    shutil.copy(
        saved_models / "fold1_keras_model_example.dense.npz",
        saved_models / "fold0_keras_model_example.dense.npz",
    )
    with pytest.raises(ModelError, match=r"dense file .*fold0_keras_model_example\.dense\.npz"):
        load_model(saved_models / "fold0_keras_model_example.keras")


def test_bdt_model_file_is_checked(trained_models, tmp_path):
    output = tmp_path / "bdt"
    shutil.copytree(trained_models["bdt"]["output_path"], output)
    shutil.copy(output / "fold1_bdt_model.json", output / "fold0_bdt_model.json")
    with pytest.raises(ModelError, match="sha256"):
        load_model(output / "fold0_bdt_model.json")


def test_manifest_without_digests_loads_with_a_warning(saved_models, caplog):
    path = saved_models / "fold0_keras_model_example.keras"
    document = json.loads(manifest_path(path).read_text())
    del document["files"]
    manifest_path(path).write_text(json.dumps(document))
    with caplog.at_level(logging.WARNING):
        load_model(path)
    assert "records no digests" in caplog.text


def test_an_interrupted_save_leaves_no_manifest_that_describes_other_files(training_config):
    config = load_training_config(
        training_config(model={"name": "example", "batch_size": 256, "epochs": 1, "seed": 1})
    )
    history = config.output_path / "fold0_keras_history_example.json"
    history.mkdir(parents=True)  # its rename fails: the save stops half-way
    with pytest.raises(OutputError, match="cannot move .* already in place"):
        train_fold(config, 0, get_engine("keras"))
    model = config.output_path / "fold0_keras_model_example.keras"
    assert model.is_file() and not manifest_path(model).exists()  # the manifest comes last

    # the same over a complete earlier save: its manifest no longer matches the new files
    history.rmdir()
    train_fold(config, 0, get_engine("keras"), overwrite=True)
    history.unlink()
    history.mkdir()
    other_seed = load_training_config(
        training_config(model={"name": "example", "batch_size": 256, "epochs": 1, "seed": 2})
    )
    with pytest.raises(OutputError):
        train_fold(other_seed, 0, get_engine("keras"), overwrite=True)
    with pytest.raises(ModelError, match="not the one saved with model"):
        load_model(model)
