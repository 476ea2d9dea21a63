"""The TMVA engine without TMVA: booking plan, tmva: options, --dry-run, detection, Keras 3.

The tests that run TMVA itself are in test_tmva_training.py (marker ``tmva``).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

from htt_tmva.config import load_training_config
from htt_tmva.errors import ConfigError
from htt_tmva.tmva.plan import booking_plan

CLASSES = ["signal", "background_1", "background_2"]
CLASSIC_BDTG = (
    "!H:!V:VarTransform=None:NTrees=1500:BoostType=Grad:Shrinkage=0.1:UseBaggedBoost:"
    "BaggedSampleFraction=0.5:nCuts=50:MaxDepth=3:SeparationType=GiniIndex"
)


@pytest.fixture(autouse=True)
def in_tmp_path(tmp_path, monkeypatch):
    """Relative paths of configs are relative to the working directory: run from tmp_path."""
    monkeypatch.chdir(tmp_path)


def write_config(tmp_path: Path, **overrides) -> Path:
    """A training config whose fold files need not exist (the plan never reads them)."""
    doc = {
        "datasets": ["fold0_training_dataset.root", "fold1_training_dataset.root"],
        "output_path": "models",
        "classes": list(CLASSES),
        "class_weights": {"signal": 10.0, "background_1": 1.67, "background_2": 3.33},
        "global_weight_scale": 2.5,
        "event_weights": "training_weight",
        "variables": ["x", "y"],
        "train_test_split": 0.75,
        "model": {"name": "example", "batch_size": 100, "epochs": 10, "seed": 1234},
    }
    doc.update(overrides)
    path = tmp_path / "training.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


def plan_of(tmp_path, fold=0, **overrides):
    return booking_plan(load_training_config(write_config(tmp_path, **overrides)), fold)


def methods(plan):
    return {m.method: m for m in plan.methods}


# --- the booking plan --------------------------------------------------------------------


def test_plan_names_files_as_the_classic_script(tmp_path):
    plan = plan_of(tmp_path, fold=1)
    out = tmp_path / "models"
    assert plan.factory_name == "TMVAMulticlass"
    assert plan.output_file == out / "fold1_training.root"
    assert plan.dataloader_name == "fold1_training"
    assert plan.weights_dir == out / "fold1_training" / "weights"
    assert plan.dataset == tmp_path / "fold1_training_dataset.root"
    assert plan.scores_fold == 0
    assert plan.factory_options == (
        "!V:!Silent:Color:!DrawProgressBar:Transformations=I:AnalysisType=multiclass"
    )
    assert [m.weight_file for m in plan.methods] == [
        out / "fold1_training/weights/TMVAMulticlass_BDTG.weights.xml",
        out / "fold1_training/weights/TMVAMulticlass_DNN.weights.xml",
    ]


def test_plan_weights_each_class_by_class_weight_times_global_scale(tmp_path):
    plan = plan_of(tmp_path)
    assert [(c.name, c.weight, c.weight_expression) for c in plan.classes] == [
        ("signal", 10.0 * 2.5, "training_weight"),
        ("background_1", 1.67 * 2.5, "training_weight"),
        ("background_2", 3.33 * 2.5, "training_weight"),
    ]
    described = plan.describe()
    assert f'"background_1", {1.67 * 2.5!r});' in described  # exact, not rounded


def test_plan_splits_each_class_randomly_seeded_without_renormalisation(tmp_path):
    plan = plan_of(tmp_path, train_test_split=0.6)
    assert plan.split_options == (
        "TrainTestSplit_signal=0.6:TrainTestSplit_background_1=0.6:"
        "TrainTestSplit_background_2=0.6:SplitMode=Random:SplitSeed=1234:!V:NormMode=None"
    )


def test_plan_books_classic_bdtg_and_a_dnn_like_the_example_model(tmp_path):
    booked = methods(
        plan_of(
            tmp_path,
            model={
                "name": "example",
                "batch_size": 64,
                "epochs": 7,
                "early_stopping": 3,
                "seed": 5,
                "learning_rate": 0.002,
            },
        )
    )
    assert list(booked) == ["BDTG", "DNN"]
    assert booked["BDTG"].type == "kBDT"
    assert booked["BDTG"].options == CLASSIC_BDTG
    dnn = booked["DNN"]
    assert (dnn.type, dnn.title) == ("kDL", "DNN")
    assert dnn.options == (
        "!H:!V:VarTransform=N:ErrorStrategy=MUTUALEXCLUSIVE:WeightInitialization=XAVIER:"
        "Layout=DENSE|10|RELU,DENSE|3|LINEAR:TrainingStrategy=LearningRate=0.002,"
        "Optimizer=ADAM,BatchSize=64,MaxEpochs=7,ConvergenceSteps=2,TestRepetitions=1:"
        "Architecture=CPU:RandomSeed=5:ValidationSize=20%"
    )


def test_dnn_layout_of_smhtt_has_three_300_relu_layers_with_l2(tmp_path):
    dnn = methods(plan_of(tmp_path, model={"name": "smhtt", "batch_size": 100, "epochs": 10}))[
        "DNN"
    ]
    assert "Layout=DENSE|300|RELU,DENSE|300|RELU,DENSE|300|RELU,DENSE|3|LINEAR:" in dnn.options
    assert ",Regularization=L2,WeightDecay=1e-4:" in dnn.options
    assert "ConvergenceSteps=10," in dnn.options  # no early stopping: patience = all epochs


def test_user_model_needs_a_dnn_layout(tmp_path):
    model = {"name": "mymodels.py:build", "batch_size": 100, "epochs": 10}
    with pytest.raises(ConfigError, match=r"tmva\.DNN\.Layout"):
        plan_of(tmp_path, model=model)
    dnn = methods(
        plan_of(tmp_path, model=model, tmva={"DNN": {"Layout": "DENSE|64|TANH,DENSE|3|LINEAR"}})
    )["DNN"]
    assert ":Layout=DENSE|64|TANH,DENSE|3|LINEAR:" in dnn.options


def test_pykeras_gets_the_model_file_epochs_batch_size_and_early_stopping(tmp_path):
    plan = plan_of(
        tmp_path,
        model={"name": "example", "batch_size": 32, "epochs": 4, "early_stopping": 2},
        tmva={"methods": ["PyKeras"]},
    )
    (pykeras,) = plan.methods
    assert pykeras.title == "PyKeras_fold0"  # the classic application config's file name
    assert pykeras.weight_file.name == "TMVAMulticlass_PyKeras_fold0.weights.xml"
    assert pykeras.options == (
        "!H:!V:VarTransform=N:FilenameModel=fold0_training/PyKeras_fold0_untrained.h5:"
        "FilenameTrainedModel=fold0_training/weights/TrainedModel_PyKeras_fold0.h5:"
        "ValidationSize=20%:NumEpochs=4:BatchSize=32:SaveBestOnly:TriesEarlyStopping=2"
    )
    assert pykeras.keras_model == tmp_path / "models/fold0_training/PyKeras_fold0_untrained.h5"
    assert pykeras.trained_model == (
        tmp_path / "models/fold0_training/weights/TrainedModel_PyKeras_fold0.h5"
    )
    assert plan.needs_pymva
    assert "TMVA::PyMethodBase::PyInitialize();" in plan.describe()


def test_pykeras_without_early_stopping_is_minus_one(tmp_path):
    plan = plan_of(tmp_path, tmva={"methods": ["PyKeras"], "PyKeras": {"SaveBestOnly": False}})
    assert plan.methods[0].options.endswith(":!SaveBestOnly:TriesEarlyStopping=-1")


def test_tmva_section_overrides_in_place_and_appends(tmp_path):
    plan = plan_of(
        tmp_path,
        tmva={
            "methods": ["BDTG"],
            "BDTG": {"NTrees": 50, "UseBaggedBoost": False, "MinNodeSize": "2.5%"},
            "Factory": {"Color": False},
            "DataLoader": {"SplitSeed": 7},
        },
    )
    assert (
        plan.methods[0].options
        == CLASSIC_BDTG.replace("NTrees=1500", "NTrees=50").replace(
            ":UseBaggedBoost:", ":!UseBaggedBoost:"
        )
        + ":MinNodeSize=2.5%"
    )
    assert plan.factory_options.startswith("!V:!Silent:!Color:")
    assert ":SplitSeed=7:" in plan.split_options


@pytest.mark.parametrize(
    ("tmva", "expected"),
    [
        ({"BDTG": {"NTree": 10}}, r"tmva\.BDTG\.NTree' is not a valid key \(did you mean 'NTrees'"),
        ({"DNN": {"layout": "x"}}, r"tmva\.DNN\.layout' .*did you mean 'Layout'"),
        ({"BDTG": {"NTrees": "many"}}, r"tmva\.BDTG\.NTrees' has value 'many'.*integer"),
        ({"BDTG": {"BoostType": "Gradient"}}, r"did you mean 'Grad'"),
        ({"methods": ["BDT"]}, r"did you mean 'BDTG'"),
        ({"Factory": {"AnalysisType": "Classification"}}, r"tmva\.Factory\.AnalysisType"),
        ({"DataLoader": {"NormMode": "NumEvents"}}, r"tmva\.DataLoader\.NormMode"),
        ({"methods": []}, r"tmva\.methods' must not be empty"),
    ],
)
def test_bad_tmva_options_are_config_errors(tmp_path, tmva, expected):
    with pytest.raises(ConfigError, match=expected):
        load_training_config(write_config(tmp_path, tmva=tmva))


def test_seed_zero_is_refused_as_tmva_takes_it_as_unseeded(tmp_path):
    with pytest.raises(ConfigError, match="positive seed"):
        plan_of(tmp_path, model={"name": "example", "batch_size": 1, "epochs": 1, "seed": 0})


def test_plan_of_a_missing_fold_is_refused(tmp_path):
    with pytest.raises(ConfigError, match="fold 2 does not exist"):
        plan_of(tmp_path, fold=2)


# --- the command line --------------------------------------------------------------------


def run_cli(*args, cwd=None):
    env = dict(os.environ)
    return subprocess.run(
        [sys.executable, "-m", "htt_tmva", *map(str, args)],
        capture_output=True,
        text=True,
        env=env,
        cwd=cwd,
        timeout=600,
    )


def test_dry_run_prints_the_exact_option_strings_and_writes_nothing(tmp_path):
    config = write_config(tmp_path, tmva={"methods": ["BDTG", "DNN", "PyKeras"]})
    result = run_cli("train", config, "--all-folds", "--engine", "tmva", "--dry-run")
    assert result.returncode == 0, result.stderr
    out = result.stdout
    expected_plans = [booking_plan(load_training_config(config), f) for f in (0, 1)]
    for plan in expected_plans:
        assert plan.describe() in out
        for m in plan.methods:
            assert f'"{m.title}", "{m.options}");' in out
    assert 'TMVA::Factory factory("TMVAMulticlass", output, "!V:!Silent:Color:' in out
    assert (
        "TrainTestSplit_background_2=0.75:SplitMode=Random:SplitSeed=1234:!V:NormMode=None" in out
    )
    assert not (tmp_path / "models").exists()
    assert "Error in <" not in result.stderr


def test_dry_run_is_only_for_the_tmva_engine(tmp_path):
    result = run_cli("train", write_config(tmp_path), "0", "--dry-run")
    assert result.returncode == 1
    assert "--dry-run prints TMVA's booking plan" in result.stderr


# --- detection without TMVA --------------------------------------------------------------


def _tmva_here() -> bool:
    from htt_tmva._root import has_tmva

    return has_tmva()


def test_detection_prints_no_root_error_line(tmp_path):
    """has_tmva/has_pymva on a ROOT without TMVA (the pip wheel) write nothing to fd 2."""
    code = "from htt_tmva._root import has_tmva, has_pymva\nprint(has_tmva(), has_pymva())\n"
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr
    assert result.stderr.strip() == ""
    tmva = result.stdout.split()[0] == "True"
    if not tmva:
        assert result.stdout.split() == ["False", "False"]


def test_training_without_tmva_stops_before_any_work_naming_the_alternatives(tmp_path):
    if _tmva_here():
        pytest.skip("this ROOT has TMVA: the message for a ROOT without it cannot be shown here")
    config = write_config(tmp_path)
    result = run_cli("train", config, "0", "--engine", "tmva")
    assert result.returncode == 1
    err = result.stderr
    assert "this ROOT has no TMVA" in err
    for alternative in ("environment.yml", "LCG view", "--engine keras", "--engine bdt"):
        assert alternative in err
    assert "Error in <" not in err  # ROOT's own FindDynamicLibrary line (issue 8)
    assert not (tmp_path / "models").exists()


def test_pykeras_with_keras_3_is_explained_with_the_alternatives():
    from importlib import metadata

    from htt_tmva.tmva.factory import keras2_problem, requirements_message

    problem = keras2_problem()
    keras_major = int(metadata.version("keras").split(".")[0])
    if keras_major < 3:
        pytest.skip("Keras 2 is installed here: PyKeras can work")
    assert problem is not None
    assert "Keras 2" in problem and f"Keras {keras_major}." in problem
    message = requirements_message([problem])
    for alternative in ("DNN", "BDTG", "--engine keras"):
        assert alternative in message


# --- checks before any work (they need ROOT, not TMVA) -----------------------------------


def test_missing_branch_is_found_before_tmva_runs(training_config):
    from htt_tmva.errors import MissingBranchError
    from htt_tmva.tmva.factory import check_inputs

    config = load_training_config(training_config())
    record = check_inputs(booking_plan(config, 0), config)  # every tree and branch there
    assert (record["fold"], record["folds"]) == (0, 2)
    bad = load_training_config(training_config(variables=["x", "yy"]))
    with pytest.raises(MissingBranchError, match=r"branch 'yy' not found.*did you mean 'y'"):
        check_inputs(booking_plan(bad, 0), bad)


def test_swapped_fold_files_are_refused_before_tmva_runs(training_config, fold_dir):
    """The never-seen-fold guarantee: entry i of 'datasets' must hold fold i."""
    from htt_tmva.errors import FoldMismatchError
    from htt_tmva.tmva.factory import check_inputs

    swapped = [
        str(fold_dir / "fold1_training_dataset.root"),
        str(fold_dir / "fold0_training_dataset.root"),
    ]
    config = load_training_config(training_config(datasets=swapped))
    with pytest.raises(
        FoldMismatchError, match="fold1_training_dataset.root.* is used as fold 0 of 2"
    ):
        check_inputs(booking_plan(config, 0), config)


def test_existing_outputs_are_refused_without_overwrite(tmp_path):
    from htt_tmva.errors import OutputError
    from htt_tmva.tmva.factory import check_outputs

    plan = plan_of(tmp_path)
    check_outputs(plan, overwrite=False)
    plan.methods[1].weight_file.parent.mkdir(parents=True)
    plan.methods[1].weight_file.write_text("<MethodSetup/>")
    with pytest.raises(OutputError, match="TMVAMulticlass_DNN.weights.xml exists.*--overwrite"):
        check_outputs(plan, overwrite=False)
    check_outputs(plan, overwrite=True)


def test_reader_tmva_leaves_models_of_other_engines_alone(trained_models, tmp_path, caplog):
    """--reader tmva concerns TMVA weight files only: a BDT is scored as before, with a warning."""
    import logging

    from conftest import write_yaml

    from htt_tmva.evaluation.testing import run_testing

    info = trained_models["bdt"]
    aucs = {}
    for reader in (None, "tmva"):
        prefix = f"reader_{reader or 'default'}_"
        testing = write_yaml(
            tmp_path / f"{prefix}testing.yaml",
            {
                "model": [p.name for p in info["models"]],
                "weight_branch": "training_weight",
                "output_prefix": prefix,
            },
        )
        caplog.clear()
        with caplog.at_level(logging.WARNING):
            aucs[reader] = run_testing(info["training_config"], testing, 0, reader=reader)["auc"]
        assert ("applies to TMVA weight files only" in caplog.text) == (reader == "tmva")
    assert aucs[None] == aucs["tmva"]


def test_pykeras_model_is_saved_untrained_where_the_plan_says(tmp_path):
    """The file TMVA's PyKeras loads: the zoo model, compiled, untrained, HDF5."""
    from htt_tmva.engines.keras import import_keras
    from htt_tmva.tmva.factory import save_untrained_keras_models

    config = load_training_config(write_config(tmp_path, tmva={"methods": ["BDTG", "PyKeras"]}))
    plan = booking_plan(config, 1)
    save_untrained_keras_models(plan, config)
    path = tmp_path / "models/fold1_training/PyKeras_fold1_untrained.h5"
    assert plan.methods[1].keras_model == path
    model = import_keras().saving.load_model(path)
    assert model.input_shape == (None, 2) and model.output_shape == (None, 3)
    assert [layer.units for layer in model.layers] == [10, 3]
    assert model.optimizer is not None  # compiled, as PyKeras expects


def test_reader_tmva_without_tmva_says_so(tmp_path):
    """--reader tmva on a ROOT without TMVA stops with a clear message (the weight file is
    never parsed: TMVA::Reader is what is missing)."""
    from htt_tmva.engines.manifest import Manifest, manifest_path
    from htt_tmva.errors import EngineError
    from htt_tmva.tmva.reader import load_with_tmva_reader

    if _tmva_here():
        pytest.skip("this ROOT has TMVA")
    weights = tmp_path / "fold0_training/weights/TMVAMulticlass_DNN.weights.xml"
    weights.parent.mkdir(parents=True)
    weights.write_text('<?xml version="1.0"?>\n<MethodSetup Method="DL::DNN"/>\n')
    Manifest(
        engine="tmva",
        model_file=weights.name,
        variables=["x", "y"],
        classes=CLASSES,
        fold=0,
        n_folds=2,
        trained_on=[0],
        scores_fold=1,
        config_hash="",
        training_config="",
        details={"title": "DNN"},
    ).write(manifest_path(weights))
    with pytest.raises(EngineError, match="--reader tmva needs ROOT with TMVA.*leave out --reader"):
        load_with_tmva_reader(weights)


def test_plan_keeps_root_urls_of_datasets_as_written(tmp_path):
    url = "root://eos.example.org//store/user/fold1_training_dataset.root"
    plan = plan_of(tmp_path, fold=1, datasets=["fold0_training_dataset.root", url])
    assert str(plan.dataset) == url
    assert f'auto input = TFile::Open("{url}");' in plan.describe()


# --- a real multiclass TMVA weight file as an engine model (no TMVA) ---------------------

TMVA_DATA = Path(
    os.environ.get("HTT_TMVA_TMVA_DATA")
    or Path(__file__).resolve().parents[1].parent / "shared" / "data" / "tmva"
)
DL_PAIR = "nasufsonmez__machine_learning_tmva/b8f78534d604/roottmva_example_folder"


def test_tmva_weight_file_with_manifest_loads_through_the_engine_registry(tmp_path):
    """TMVAMulticlass DL_CPU (ROOT 6.33): with an htt-tmva manifest, load_model gives the
    tmva engine's model (our reader, no TMVA), which reproduces TMVA's TestTree."""
    uproot = pytest.importorskip("uproot")
    from htt_tmva.engines.base import load_model
    from htt_tmva.engines.manifest import Manifest, manifest_path
    from htt_tmva.tmva.weightfile import WeightFileModel

    source = TMVA_DATA / DL_PAIR / "dataset/weights/TMVAMulticlass_DL_CPU.weights.xml"
    if not source.is_file():
        pytest.skip(f"real TMVA files not present at {TMVA_DATA} (set HTT_TMVA_TMVA_DATA)")
    weights = tmp_path / "fold0_training/weights" / source.name
    weights.parent.mkdir(parents=True)
    weights.write_bytes(source.read_bytes())
    classes, variables = ["Signal", "bg0", "bg1", "bg2"], ["var1", "var2", "var3", "var4"]
    Manifest(
        engine="tmva",
        model_file=weights.name,
        variables=variables,
        classes=classes,
        fold=0,
        n_folds=2,
        trained_on=[0],
        scores_fold=1,
        config_hash="",
        training_config="",
        details={"title": "DL_CPU"},
    ).write(manifest_path(weights))
    model = load_model(weights, engine="tmva")
    assert isinstance(model, WeightFileModel)
    with uproot.open(TMVA_DATA / DL_PAIR / "TMVAMulticlass.root") as f:
        tree = f["dataset/TestTree"].arrays([*variables, "DL_CPU"], library="np")
    x = np.column_stack([tree[v] for v in variables])
    expected = np.column_stack([tree["DL_CPU"][c] for c in classes])
    np.testing.assert_allclose(model.predict(x), expected, atol=1e-5, rtol=0)
