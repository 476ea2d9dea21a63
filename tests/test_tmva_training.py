"""The TMVA engine with TMVA itself (marker ``tmva``): train BDTG and DNN on the toy, check the
weight files, manifests and TMVA output, and that TMVA::Reader, TMVA's own TestTree and
htt-tmva's weight-file reader agree on every event.

These tests skip where ROOT has no TMVA (the pip wheel); they run as they are in the conda
environment of environment.yml: ``pytest -m tmva``.
"""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from conftest import training_document, write_yaml

pytestmark = pytest.mark.tmva

CLASSES = ["signal", "background_1", "background_2"]
METHODS = ["BDTG", "DNN"]


SKIP_REASON = (
    "needs ROOT with TMVA (the conda environment of environment.yml, or an LCG view); "
    "this ROOT has none (the pip wheel ships without TMVA)"
)


@pytest.fixture(scope="module")
def tmva_available():
    from htt_tmva._root import has_tmva

    if not has_tmva():
        pytest.skip(SKIP_REASON)


@pytest.fixture(scope="module")
def tmva_trained(tmva_available, fold_dir, tmp_path_factory):
    """Both folds of the toy trained with TMVA's BDTG and DNN, with small options."""
    from htt_tmva.config import load_training_config
    from htt_tmva.training import train_folds

    directory = tmp_path_factory.mktemp("tmva")
    output = directory / "models"
    document = training_document(
        fold_dir,
        output,
        model={"name": "example", "batch_size": 256, "epochs": 20, "seed": 7},
        tmva={"methods": METHODS, "BDTG": {"NTrees": 40}, "Factory": {"Color": False}},
    )
    path = write_yaml(directory / "training.yaml", document)
    config = load_training_config(path)
    results = train_folds(config, range(2), engine="tmva")
    return {"config": config, "path": path, "output": output, "results": results}


def weight_file(trained, fold: int, method: str):
    return trained["output"] / f"fold{fold}_training/weights/TMVAMulticlass_{method}.weights.xml"


def test_weight_files_manifests_and_tmva_output(tmva_trained):
    from htt_tmva.engines.manifest import read_manifest

    output = tmva_trained["output"]
    for fold in (0, 1):
        assert (output / f"fold{fold}_training.root").is_file()
        assert not list(output.glob(f".fold{fold}_training.root.*"))  # no temporary left
        for method in METHODS:
            path = weight_file(tmva_trained, fold, method)
            assert path.is_file()
            manifest = read_manifest(path)
            assert manifest.engine == "tmva"
            assert manifest.model_file == path.name
            assert (manifest.variables, manifest.classes) == (["x", "y"], CLASSES)
            assert (manifest.fold, manifest.trained_on, manifest.scores_fold) == (
                fold,
                [fold],
                1 - fold,
            )
            assert manifest.details["title"] == method
            assert (manifest.fold_file["fold"], manifest.fold_file["folds"]) == (fold, 2)
            assert manifest.details["tmva_output"] == f"fold{fold}_training.root"
            rocs = manifest.details["roc_integrals"]
            assert list(rocs) == CLASSES
            assert all(0.55 < value <= 1.0 for value in rocs.values()), rocs
    assert (output / "fold0_training.config.yaml").is_file()


def test_tmva_output_has_test_and_train_trees_for_the_gui(tmva_trained):
    import uproot

    with uproot.open(tmva_trained["output"] / "fold0_training.root") as f:
        test = f["fold0_training/TestTree"]
        train = f["fold0_training/TrainTree"]
        for tree in (test, train):
            assert {"classID", "className", "x", "y", "weight", *METHODS} <= set(tree.keys())
        # the 75/25 split per class of train_test_split
        n_test, n_train = test.num_entries, train.num_entries
        assert abs(n_train / (n_train + n_test) - 0.75) < 0.01


def _test_tree(trained, fold: int, method: str):
    import uproot

    with uproot.open(trained["output"] / f"fold{fold}_training.root") as f:
        data = f[f"fold{fold}_training/TestTree"].arrays(["x", "y", method], library="np")
    x = np.column_stack([data["x"], data["y"]]).astype(np.float32)
    response = data[method]
    scores = np.column_stack([response[c] for c in CLASSES]).astype(np.float64)
    return x, scores


@pytest.mark.parametrize("method", METHODS)
def test_tmva_reader_reproduces_tmvas_test_tree(tmva_trained, method):
    from htt_tmva.tmva.reader import load_with_tmva_reader

    x, expected = _test_tree(tmva_trained, 0, method)
    model = load_with_tmva_reader(weight_file(tmva_trained, 0, method))
    got = model.predict(x)
    assert got.shape == expected.shape
    np.testing.assert_allclose(got, expected, atol=1e-5, rtol=0)


@pytest.mark.parametrize("method", METHODS)
def test_our_reader_agrees_with_tmva_reader_on_every_event(tmva_trained, method):
    from htt_tmva.data.arrays import read_fold_file
    from htt_tmva.engines.base import load_model
    from htt_tmva.tmva.reader import load_with_tmva_reader

    config = tmva_trained["config"]
    data = read_fold_file(config.datasets[1], CLASSES, config.variables, config.event_weights)
    path = weight_file(tmva_trained, 0, method)
    ours = load_model(path).predict(data.x)  # default: htt-tmva's own reader, no TMVA
    theirs = load_with_tmva_reader(path).predict(data.x.astype(np.float32))
    assert ours.shape == theirs.shape == (len(data), 3)
    np.testing.assert_allclose(ours, theirs, atol=1e-5, rtol=0)


def test_confusion_with_reader_tmva_matches_our_reader(tmva_trained, tmp_path, caplog):
    import logging

    from htt_tmva.evaluation.testing import run_testing

    models = [f"fold{f}_training/weights/TMVAMulticlass_BDTG.weights.xml" for f in (0, 1)]
    summaries = {}
    for reader in (None, "tmva"):
        prefix = f"bdtg_{reader or 'ours'}_"
        testing = write_yaml(
            tmp_path / f"{prefix}testing.yaml",
            {"model": models, "weight_branch": "training_weight", "output_prefix": prefix},
        )
        caplog.clear()
        with caplog.at_level(logging.INFO):
            summaries[reader] = run_testing(tmva_trained["path"], testing, 0, reader=reader)
        used_tmva_reader = "with TMVA::Reader" in caplog.text
        assert used_tmva_reader == (reader == "tmva")
        assert (tmva_trained["output"] / f"{prefix}fold0_confusion.json").is_file()
    ours, theirs = summaries[None], summaries["tmva"]
    assert ours["events"] == theirs["events"]
    for c in CLASSES:
        assert abs(ours["auc"][c] - theirs["auc"][c]) < 1e-6
    for name, matrix in ours["matrices"].items():
        np.testing.assert_allclose(
            np.asarray(matrix, dtype=float),
            np.asarray(theirs["matrices"][name], dtype=float),
            rtol=1e-3,
        )


def test_apply_with_reader_tmva_matches_our_reader(tmva_trained, toy_dir, fold_dir, tmp_path):
    import uproot

    from htt_tmva.application.apply import run_application

    application = write_yaml(
        tmp_path / "application.yaml",
        {
            "classifiers": [
                "fold1_training/weights/TMVAMulticlass_DNN.weights.xml",
                "fold0_training/weights/TMVAMulticlass_DNN.weights.xml",
            ],
            "branch_prefix": "tmva_",
        },
    )
    source = tmp_path / "data.root"
    shutil.copy(toy_dir / "example_data.root", source)
    scores = {}
    for reader in (None, "tmva"):
        out = tmp_path / f"scored_{reader or 'ours'}.root"
        run_application(
            fold_dir / "dataset.yaml",
            tmva_trained["path"],
            application,
            [str(source)],
            "ntuple",
            output=str(out),
            reader=reader,
        )
        names = [f"tmva_{c}" for c in CLASSES] + ["tmva_max_index"]
        with uproot.open(out) as f:
            scores[reader] = f["ntuple"].arrays(names, library="np")
    for name, ours in scores[None].items():
        np.testing.assert_allclose(ours, scores["tmva"][name], atol=1e-5, rtol=0)


def test_retraining_refuses_to_overwrite_before_any_work(tmva_trained):
    from htt_tmva.errors import OutputError
    from htt_tmva.training import train_folds

    before = weight_file(tmva_trained, 0, "BDTG").stat().st_mtime_ns
    with pytest.raises(OutputError, match="--overwrite"):
        train_folds(tmva_trained["config"], [0], engine="tmva")
    assert weight_file(tmva_trained, 0, "BDTG").stat().st_mtime_ns == before


def test_pykeras_with_keras_3_stops_before_any_work(tmva_available, fold_dir, tmp_path):
    from importlib import metadata

    from htt_tmva.config import load_training_config
    from htt_tmva.errors import EngineError
    from htt_tmva.training import train_folds

    if int(metadata.version("keras").split(".")[0]) < 3:
        pytest.skip("Keras 2 is installed: PyKeras can train here")
    output = tmp_path / "models"
    document = training_document(fold_dir, output, tmva={"methods": ["BDTG", "PyKeras"]})
    config = load_training_config(write_yaml(tmp_path / "training.yaml", document))
    with pytest.raises(EngineError, match="PyKeras") as error:
        train_folds(config, [0], engine="tmva")
    for alternative in ("DNN", "--engine keras"):
        assert alternative in str(error.value)
    assert not output.exists()


# --- issue 22: what the review against TMVA's sources found -------------------------------


def test_manifests_record_the_validation_size_and_digests_of_what_tmva_wrote(tmva_trained):
    from htt_tmva.engines.manifest import file_digest, read_manifest

    for method in METHODS:
        path = weight_file(tmva_trained, 0, method)
        manifest = read_manifest(path)
        assert manifest.files["model"]["sha256"] == file_digest(path)
        class_file = path.with_name(f"TMVAMulticlass_{method}.class.C")
        if class_file.is_file():
            assert manifest.files["class_file"]["sha256"] == file_digest(class_file)
    dnn = read_manifest(weight_file(tmva_trained, 0, "DNN"))
    assert ":ValidationSize=20%" in dnn.details["options"]
    assert "ValidationSize" in weight_file(tmva_trained, 0, "DNN").read_text()


def test_tmva_reader_leaves_tmva_talking(tmva_trained):
    """The Reader is not Silent: that would silence TMVA for the rest of the process."""
    from htt_tmva._root import root
    from htt_tmva.tmva.reader import load_with_tmva_reader

    load_with_tmva_reader(weight_file(tmva_trained, 0, "BDTG"))
    assert not root().TMVA.gConfig().IsSilent()


def test_tmva_reader_fatal_error_is_a_model_error_naming_the_weight_file(tmva_trained, tmp_path):
    from htt_tmva.engines.manifest import manifest_path
    from htt_tmva.errors import ModelError
    from htt_tmva.tmva.reader import load_with_tmva_reader

    source = weight_file(tmva_trained, 0, "BDTG")
    broken = tmp_path / "fold0_training/weights" / source.name
    broken.parent.mkdir(parents=True)
    text = source.read_text()
    broken.write_text(text[: text.index("<Weights")] + "<Weights>\n")  # cut in the forest
    manifest = json.loads(manifest_path(source).read_text())
    with pytest.raises(ModelError, match="is not the one saved with model"):  # digest
        manifest_path(broken).write_text(json.dumps(manifest))
        load_with_tmva_reader(broken)
    manifest["files"] = {}  # an older manifest: TMVA reads the file and stops
    manifest_path(broken).write_text(json.dumps(manifest))
    with pytest.raises(ModelError, match=r"TMVA::Reader .*TMVAMulticlass_BDTG\.weights\.xml"):
        load_with_tmva_reader(broken).predict(np.zeros((2, 2), dtype=np.float32))


def _small_plan(fold_dir, tmp_path, **tmva):
    from htt_tmva.config import load_training_config
    from htt_tmva.tmva.plan import booking_plan

    document = training_document(
        fold_dir, tmp_path / "models", tmva={"methods": ["BDTG"], "BDTG": {"NTrees": 5}, **tmva}
    )
    config = load_training_config(write_yaml(tmp_path / "training.yaml", document))
    return config, booking_plan(config, 0)


def test_output_file_that_cannot_be_created_is_an_output_error(tmva_available, fold_dir, tmp_path):
    import os

    from htt_tmva.errors import OutputError
    from htt_tmva.tmva.factory import run_plan

    config, plan = _small_plan(fold_dir, tmp_path)
    plan.output_path.mkdir(parents=True)
    # TMVA's output file is a link into a missing folder: TFile.Open cannot create it
    temporary = plan.output_file.with_name(f".{plan.output_file.name}.{os.getpid()}.tmp")
    temporary.symlink_to(tmp_path / "missing" / "output.root")
    with pytest.raises(OutputError, match="cannot create TMVA's output file"):
        run_plan(plan, config)
    assert not plan.methods[0].weight_file.exists()


def test_method_tmva_does_not_book_is_an_engine_error(tmva_available, fold_dir, tmp_path):
    from htt_tmva.errors import EngineError
    from htt_tmva.tmva.factory import run_plan

    config, plan = _small_plan(fold_dir, tmp_path)
    plan.methods[0].type = "kFisher"  # two-class only: BookMethod returns nullptr
    plan.methods[0].options = "!H:!V"
    with pytest.raises(EngineError, match="TMVA refused to book BDTG"):
        run_plan(plan, config)
    assert not plan.output_file.exists()


def test_pykeras_folds_train_each_in_a_process_of_its_own(tmva_available, fold_dir, tmp_path):
    from htt_tmva._root import has_pymva
    from htt_tmva.config import load_training_config
    from htt_tmva.engines.manifest import read_manifest
    from htt_tmva.tmva.factory import keras2_problem
    from htt_tmva.training import train_folds

    if not has_pymva() or keras2_problem() is not None:
        pytest.skip("needs TMVA's PyMVA and Keras 2 (TensorFlow <= 2.15, or tf_keras)")
    output = tmp_path / "models"
    document = training_document(
        fold_dir,
        output,
        model={"name": "example", "batch_size": 256, "epochs": 2, "seed": 3},
        tmva={"methods": ["PyKeras"]},
    )
    config = load_training_config(write_yaml(tmp_path / "training.yaml", document))
    results = train_folds(config, [0, 1], engine="tmva")
    assert [r.plan.fold for r in results] == [0, 1]
    for fold in (0, 1):
        weights = output / f"fold{fold}_training/weights"
        manifest = read_manifest(weights / f"TMVAMulticlass_PyKeras_fold{fold}.weights.xml")
        assert manifest.files["keras_model"]["file"] == f"TrainedModel_PyKeras_fold{fold}.h5"
