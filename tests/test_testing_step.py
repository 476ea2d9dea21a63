"""The testing step end to end on the toy, with models trained by both engines."""

from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import CLASSES, training_document, write_yaml

from htt_tmva.config import load_testing_config, load_training_config
from htt_tmva.errors import ConfigError, FoldLeakError, ModelError, OutputError
from htt_tmva.evaluation.confusion import REPRESENTATIONS
from htt_tmva.evaluation.testing import (
    checked_model,
    model_name,
    output_files,
    output_stem,
    run_testing,
)

ENGINES = ("keras", "bdt")


def write_testing(trained, engine, path, prefix=None, swap=False, **overrides):
    """Write a testing config for the fixture's models of ``engine`` (relative names)."""
    info = trained[engine]
    order = slice(None, None, -1) if swap else slice(None)
    doc = {
        "model": [p.name for p in info["models"]][order],
        "weight_branch": "training_weight",
        "output_prefix": prefix if prefix is not None else f"{engine}_",
    }
    if info["preprocessing"]:
        doc["preprocessing"] = [p.name for p in info["preprocessing"]][order]
    doc.update(overrides)
    return write_yaml(path, doc)


def outputs(trained, engine, config, fold):
    training = load_training_config(trained[engine]["training_config"])
    testing = load_testing_config(config, training)
    manifest = checked_model(testing, training, fold).manifest
    return output_files(training, output_stem(testing, manifest, fold))


def fold_weights(path, fold_dir):
    """Sum of training_weight per class tree of a fold file, read with uproot."""
    uproot = pytest.importorskip("uproot")
    with uproot.open(fold_dir / path) as f:
        return np.array([f[c]["training_weight"].array(library="np").sum() for c in CLASSES])


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("fold", [0, 1])
def test_step_writes_consistent_outputs(trained_models, fold_dir, tmp_path, engine, fold):
    uproot = pytest.importorskip("uproot")
    config = write_testing(trained_models, engine, tmp_path / "testing.yaml")
    summary = run_testing(trained_models[engine]["training_config"], config, fold)

    files = outputs(trained_models, engine, config, fold)
    assert all(p.is_file() and p.stat().st_size > 0 for p in files.values())
    assert not list(files["json"].parent.glob(".*.tmp*"))
    doc = json.loads(files["json"].read_text())
    assert doc == json.loads(json.dumps(summary))
    assert doc["classes"] == CLASSES and doc["engine"] == engine
    assert doc["scored_fold"] == 1 - fold
    assert doc["dataset"].endswith(f"fold{1 - fold}_training_dataset.root")
    assert set(doc["matrices"]) == set(REPRESENTATIONS)

    # rows are true classes filled with the raw weight_branch of the never-seen fold
    standard = np.array(doc["matrices"]["standard"])
    expected = fold_weights(f"fold{1 - fold}_training_dataset.root", fold_dir)
    np.testing.assert_allclose(standard.sum(axis=1), expected, rtol=1e-5)

    # JSON and TH2D agree (x: predicted, y: true), labels are the class names
    with uproot.open(files["root"]) as f:
        for name, values in doc["matrices"].items():
            hist = f[name]
            assert list(hist.axes[0].labels()) == CLASSES == list(hist.axes[1].labels())
            th2d = hist.values().T  # uproot: [x, y] -> [true, predicted]
            json_values = np.array([[np.nan if v is None else v for v in r] for r in values])
            np.testing.assert_allclose(th2d, np.nan_to_num(json_values), rtol=1e-12)

    # the toy separates. Its signal sits between the two backgrounds: even the Bayes-optimal
    # classifier predicts only ~29% of true signal as signal (AUC 0.68), so only the
    # background rows must be diagonal-dominated; the mean diagonal efficiency (random: 1/3,
    # Bayes: 0.60) and the background AUCs (Bayes: 0.88, 0.89) must be clearly better than random
    efficiency = np.array(doc["matrices"]["efficiency"])
    assert (efficiency[1:].argmax(axis=1) == [1, 2]).all(), efficiency
    assert np.diag(efficiency).mean() > 0.45, efficiency
    assert all(0 < doc["auc"][c] <= 1 for c in CLASSES), doc["auc"]
    assert doc["auc"]["background_1"] > 0.75 and doc["auc"]["background_2"] > 0.75, doc["auc"]
    resolved = files["config"].read_text()
    assert "config_hash" in resolved and str(trained_models[engine]["output_path"]) in resolved


def test_compare_engines_in_one_roc_via_cli(trained_models, tmp_path, caplog):
    from htt_tmva.cli import main

    bdt = write_testing(trained_models, "bdt", tmp_path / "bdt.yaml", prefix="cmp_bdt_")
    keras = write_testing(trained_models, "keras", tmp_path / "keras.yaml")
    training = str(trained_models["bdt"]["training_config"])
    with caplog.at_level("INFO"):
        assert main(["confusion", training, str(bdt), "1", "--compare", str(keras)]) == 0
    doc = json.loads(outputs(trained_models, "bdt", bdt, 1)["json"].read_text())
    assert [c["label"] for c in doc["compare"]] == ["keras"]
    assert doc["compare"][0]["engine"] == "keras"
    assert doc["compare"][0]["auc"]["background_1"] > 0.75
    assert doc["auc"] != doc["compare"][0]["auc"]
    # the log gets one line per class; the full matrices go to the tables file
    assert "AUC keras" in caplog.text and "efficiency" in caplog.text
    assert "true \\ predicted" not in caplog.text
    tables = outputs(trained_models, "bdt", bdt, 1)["tables"].read_text()
    assert tables.count("true \\ predicted") == len(REPRESENTATIONS)


def test_swapped_models_are_a_fold_leak(trained_models, tmp_path):
    config = write_testing(trained_models, "bdt", tmp_path / "t.yaml", prefix="leak_", swap=True)
    with pytest.raises(FoldLeakError, match="must not score events of fold 1"):
        run_testing(trained_models["bdt"]["training_config"], config, 0)
    assert not list(trained_models["bdt"]["output_path"].glob("leak_*"))


@pytest.mark.parametrize(
    ("override", "match"),
    [
        ({"variables": ["y", "x"]}, "variables"),
        ({"classes": ["background_1", "signal", "background_2"]}, "classes"),
    ],
)
def test_model_not_matching_the_training_config_is_refused(
    trained_models, fold_dir, tmp_path, override, match
):
    output = trained_models["keras"]["output_path"]
    training = write_yaml(
        tmp_path / "training.yaml", training_document(fold_dir, output, **override)
    )
    config = write_testing(trained_models, "keras", tmp_path / "t.yaml", prefix="mismatch_")
    with pytest.raises(ModelError, match=match):
        run_testing(training, config, 0)


def test_config_errors(trained_models, tmp_path):
    training = trained_models["keras"]["training_config"]
    config = write_testing(trained_models, "keras", tmp_path / "t.yaml", prefix="bad_")
    with pytest.raises(ConfigError, match="has 2 folds"):
        run_testing(training, config, 2)
    with pytest.raises(ModelError, match="engine 'keras', not 'bdt'"):
        run_testing(training, config, 0, engine="bdt")
    short = write_testing(
        trained_models, "bdt", tmp_path / "s.yaml", model=[trained_models["bdt"]["models"][0].name]
    )
    with pytest.raises(ConfigError, match="one entry per fold"):
        run_testing(training, short, 0)


def test_model_names_for_output_files():
    assert model_name("fold0_keras_model_example.keras", "keras", 0) == "keras_example"
    assert model_name("fold1_keras_model_smhtt.keras", "keras", 1) == "keras_smhtt"
    assert model_name("fold1_bdt_model.json", "bdt", 1) == "bdt"
    assert model_name("fold0_keras_model.h5", "keras", 0) == "keras"
    assert (
        model_name("TMVAClassification_BDTG.weights.xml", "tmva", 0)
        == "tmva_TMVAClassification_BDTG"
    )


def test_two_models_without_output_prefix_keep_both_outputs(trained_models, tmp_path):
    """Classic testing configs have no output_prefix: keras, then bdt, into the same folder."""
    training = trained_models["keras"]["training_config"]
    written = {}
    for engine in ENGINES:
        config = write_testing(trained_models, engine, tmp_path / f"{engine}.yaml", prefix="")
        run_testing(training, config, 0)
        written[engine] = outputs(trained_models, engine, config, 0)
        assert written[engine]["json"].name == f"{engine}{'_example' * (engine == 'keras')}" + (
            "_fold0_confusion.json"
        )
    keras, bdt = written["keras"], written["bdt"]
    assert not set(keras.values()) & set(bdt.values())
    for engine, files in written.items():
        assert all(p.is_file() for p in files.values())
        doc = json.loads(files["json"].read_text())
        assert doc["engine"] == engine
        assert doc["model"] == str(trained_models[engine]["models"][0])
        assert f"{engine}.yaml" in files["config"].read_text()


def test_same_prefix_for_another_model_is_refused_before_writing(trained_models, tmp_path):
    training = trained_models["keras"]["training_config"]
    keras = write_testing(trained_models, "keras", tmp_path / "k.yaml", prefix="same_")
    bdt = write_testing(trained_models, "bdt", tmp_path / "b.yaml", prefix="same_")
    run_testing(training, keras, 0)
    files = outputs(trained_models, "keras", keras, 0)
    before = {p: p.stat().st_mtime_ns for p in files.values()}
    with pytest.raises(OutputError, match="fold0_keras_model_example.keras.*output_prefix"):
        run_testing(training, bdt, 0)
    assert {p: p.stat().st_mtime_ns for p in files.values()} == before
    run_testing(training, keras, 0)  # the same model again replaces its own outputs


def test_command_draws_figures_in_worker_processes(trained_models, tmp_path):
    """As a user runs it: the figures are drawn by forked workers where cores are free;
    the outputs are complete, nothing temporary is left."""
    import os

    from conftest import htt_tmva

    keras = write_testing(trained_models, "keras", tmp_path / "k.yaml", prefix="cli_")
    bdt = write_testing(trained_models, "bdt", tmp_path / "b.yaml", prefix="cli_bdt_")
    training = str(trained_models["keras"]["training_config"])
    result = htt_tmva(
        "-v", "confusion", training, str(keras), "0", "--compare", str(bdt), cwd=tmp_path
    )
    assert result.returncode == 0, result.stderr
    workers = "drawing the figures in" in result.stderr
    assert workers == (len(os.sched_getaffinity(0)) > 1), result.stderr
    files = outputs(trained_models, "keras", keras, 0)
    assert all(p.is_file() and p.stat().st_size > 0 for p in files.values())
    assert files["roc.png"].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not list(files["json"].parent.glob(".*tmp*"))
