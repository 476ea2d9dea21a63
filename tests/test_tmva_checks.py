"""The TMVA engine's checks against TMVA's sources (issue 22), without TMVA: the booking plan,
option checks as TMVA reads options, the DNN's batches against the fold's events, PyKeras's
Keras detection, per-fold processes, and the files a training records in its manifests.

What needs TMVA itself is in test_tmva_training.py (marker ``tmva``).
"""

from __future__ import annotations

import os
import types
from pathlib import Path

import pytest
from conftest import training_document, write_yaml

from htt_tmva.config import load_training_config
from htt_tmva.errors import ConfigError, EngineError, ModelError
from htt_tmva.tmva.plan import booking_plan


def config_of(tmp_path: Path, **overrides):
    """A validated training config whose fold files need not exist (plans never read them)."""
    document = training_document(tmp_path, tmp_path / "models", **overrides)
    return load_training_config(write_yaml(tmp_path / "training.yaml", document))


def plan_of(tmp_path: Path, fold: int = 0, **overrides):
    return booking_plan(config_of(tmp_path, **overrides), fold)


def booked(tmp_path: Path, **overrides) -> dict:
    return {m.method: m for m in plan_of(tmp_path, **overrides).methods}


MODEL = {"name": "example", "batch_size": 256, "epochs": 8, "seed": 1}
ALL = {"methods": ["BDTG", "DNN", "PyKeras"]}


# --- 1: the validation slice of DNN and PyKeras is explicit and configurable ---------------


def test_dnn_and_pykeras_book_their_validation_size_explicitly(tmp_path):
    methods = booked(tmp_path, tmva=ALL)
    assert ":ValidationSize=20%" in methods["DNN"].options
    assert ":ValidationSize=20%:" in methods["PyKeras"].options
    assert "ValidationSize" not in methods["BDTG"].options
    tmva = {**ALL, "DNN": {"ValidationSize": 0.1}, "PyKeras": {"ValidationSize": "500"}}
    methods = booked(tmp_path, tmva=tmva)
    assert methods["DNN"].options.endswith(":ValidationSize=0.1")
    assert ":ValidationSize=500:" in methods["PyKeras"].options


@pytest.mark.parametrize("value", ["a fifth", 0, "0%", -0.2, "100%", "nan"])
def test_validation_size_that_tmva_cannot_use_is_a_config_error(tmp_path, value):
    with pytest.raises(ConfigError, match=r"tmva\.DNN\.ValidationSize' has value"):
        config_of(tmp_path, tmva={"DNN": {"ValidationSize": value}})


def test_validation_samples_follow_tmvas_three_forms():
    from htt_tmva.tmva.checks import validation_samples

    assert validation_samples("20%", 1000) == 200
    assert validation_samples("0.2", 1000) == 200
    assert validation_samples(0.25, 999) == 249  # truncated, as TMVA's Int_t
    assert validation_samples("100", 1000) == 100
    assert validation_samples("12.5%", 10) == 1


# --- 2: a compiled model keeps its compile settings on Keras 2 as on Keras 3 --------------


def test_is_compiled_reads_keras_3_and_keras_2_models():
    from htt_tmva.engines.keras import import_keras
    from htt_tmva.engines.models import is_compiled, smhtt

    keras = import_keras()
    compiled = smhtt(2, 3)
    assert is_compiled(compiled)
    assert compiled.loss == "mean_squared_error"
    bare = keras.Sequential([keras.Input((2,)), keras.layers.Dense(3)])
    assert not is_compiled(bare)
    # Keras 2 (PyKeras's) has no ``compiled`` but ``_is_compiled``; installing tf_keras here
    # would replace the shared environment's TensorFlow, so its attributes stand in for it
    keras2_compiled = types.SimpleNamespace(_is_compiled=True, optimizer=compiled.optimizer)
    keras2_bare = types.SimpleNamespace(_is_compiled=False, optimizer=None)
    assert is_compiled(keras2_compiled)
    assert not is_compiled(keras2_bare)


def test_user_model_compiled_with_mse_is_not_recompiled(tmp_path):
    from htt_tmva.engines.models import build_model

    (tmp_path / "mine.py").write_text(
        "import keras\n"
        "def build(n_inputs, n_outputs):\n"
        "    model = keras.Sequential([keras.Input((n_inputs,)), keras.layers.Dense(n_outputs,"
        " activation='softmax')])\n"
        "    model.compile(loss='mean_squared_error', optimizer=keras.optimizers.SGD(0.5))\n"
        "    return model\n"
    )
    model = build_model("mine.py:build", 2, 3, 1e-3, tmp_path)
    assert model.loss == "mean_squared_error"
    assert type(model.optimizer).__name__ == "SGD"


# --- 3, 4, 13: options as TMVA reads them --------------------------------------------------


@pytest.mark.parametrize("boost", ["AdaBoost", "Bagging", "RealAdaBoost"])
def test_multiclass_bdtg_refuses_boost_types_other_than_grad(tmp_path, boost):
    with pytest.raises(ConfigError, match=r"BoostType' has value .*needs BoostType=Grad"):
        config_of(tmp_path, tmva={"BDTG": {"BoostType": boost}})


def test_choices_match_ignoring_case_and_the_plan_uses_tmvas_spelling(tmp_path):
    tmva = {
        **ALL,
        "BDTG": {"BoostType": "grad", "SeparationType": "giniindex"},
        "DNN": {"ErrorStrategy": "mutualExclusive", "WeightInitialization": "gauss"},
        "DataLoader": {"SplitMode": "random", "MixMode": "sameassplitmode"},
        "Factory": {"VerboseLevel": "info"},
    }
    plan = plan_of(tmp_path, tmva=tmva)
    methods = {m.method: m for m in plan.methods}
    assert ":BoostType=Grad:" in methods["BDTG"].options
    assert ":SeparationType=GiniIndex" in methods["BDTG"].options
    assert ":ErrorStrategy=MUTUALEXCLUSIVE:WeightInitialization=GAUSS:" in methods["DNN"].options
    assert ":SplitMode=Random:" in plan.split_options
    assert ":MixMode=SameAsSplitMode:" in plan.split_options
    assert ":VerboseLevel=Info:" in plan.factory_options


@pytest.mark.parametrize(
    "value", ["XAVIER", "XAVIERUNIFORM", "GAUSS", "UNIFORM", "IDENTITY", "ZERO"]
)
def test_every_weight_initialization_of_methoddl_is_accepted(tmp_path, value):
    assert (
        f":WeightInitialization={value}:"
        in booked(tmp_path, tmva={"DNN": {"WeightInitialization": value}})["DNN"].options
    )


def test_architectures_as_methoddl_declares_them(tmp_path):
    assert (
        ":Architecture=GPU:"
        in booked(tmp_path, tmva={"DNN": {"Architecture": "gpu"}})["DNN"].options
    )
    with pytest.raises(ConfigError, match="OPENCL but stops with a FATAL"):
        config_of(tmp_path, tmva={"DNN": {"Architecture": "OpenCL"}})


def test_model_persistence_may_only_stay_true(tmp_path):
    with pytest.raises(ConfigError, match=r"Factory\.ModelPersistence.*must stay true"):
        config_of(tmp_path, tmva={"Factory": {"ModelPersistence": False}})
    plan = plan_of(tmp_path, tmva={"Factory": {"ModelPersistence": True}})
    assert ":ModelPersistence:" in plan.factory_options


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("n", r"no transformation 'n' \(did you mean 'N'\?\)"),
        ("N,deco", r"no transformation 'deco' \(did you mean 'Deco'\?\)"),
        ("none", r"no transformation 'none'"),
    ],
)
def test_var_transform_names_are_case_sensitive_as_in_tmva(tmp_path, value, expected):
    with pytest.raises(ConfigError, match=r"tmva\.DNN\.VarTransform' has value .*" + expected):
        config_of(tmp_path, tmva={"DNN": {"VarTransform": value}})


def test_var_transform_lists_classes_and_variable_selections(tmp_path):
    value = "D_signal,N(x)_AllClasses+G"
    assert (
        f":VarTransform={value}:"
        in booked(tmp_path, tmva={"DNN": {"VarTransform": value}})["DNN"].options
    )
    # TMVA splits 'N_background_1' at '_' and looks for a class 'background'
    with pytest.raises(ConfigError, match=r"splits 'N_background_1' at '_'"):
        plan_of(tmp_path, tmva={"BDTG": {"VarTransform": "N_background_1"}})


# --- 5: the validation slice is the tail of a randomly mixed training vector --------------


@pytest.mark.parametrize(
    "dataloader",
    [
        {"SplitMode": "Block"},
        {"MixMode": "Alternate"},
        {"SplitMode": "Alternate", "MixMode": "Random"},
    ],
)
def test_networks_need_random_split_and_mix(tmp_path, dataloader):
    for methods in (["DNN"], ["PyKeras"]):
        with pytest.raises(ConfigError, match="hold almost only the last class"):
            plan_of(tmp_path, tmva={"methods": methods, "DataLoader": dataloader})
    plan_of(tmp_path, tmva={"methods": ["BDTG"], "DataLoader": dataloader})  # no validation


def test_random_mix_mode_is_accepted_with_networks(tmp_path):
    plan = plan_of(tmp_path, tmva={**ALL, "DataLoader": {"MixMode": "Random"}})
    assert ":SplitMode=Random:" in plan.split_options and ":MixMode=Random:" in plan.split_options


# --- 6: PyKeras folds train in processes of their own --------------------------------------


def test_each_fold_runs_in_its_own_process_when_pykeras_is_booked(tmp_path):
    from htt_tmva.tmva.factory import needs_own_processes

    config = config_of(tmp_path, tmva=ALL)
    both = [booking_plan(config, f) for f in (0, 1)]
    assert needs_own_processes(both)
    assert not needs_own_processes(both[:1])
    bdtg = config_of(tmp_path, tmva={"methods": ["BDTG", "DNN"]})
    assert not needs_own_processes([booking_plan(bdtg, f) for f in (0, 1)])


def test_a_function_run_in_its_own_process_returns_its_result_or_its_error(tmp_path):
    from htt_tmva.tmva.factory import run_in_own_process

    assert run_in_own_process(os.getpid) != os.getpid()
    missing = tmp_path / "missing.yaml"
    with pytest.raises(ConfigError, match="missing.yaml"):
        run_in_own_process(load_training_config, missing)


def test_dry_run_says_that_pykeras_folds_run_in_their_own_processes(tmp_path, capsys):
    from htt_tmva.tmva.factory import train_tmva_folds

    train_tmva_folds(config_of(tmp_path, tmva=ALL), [0, 1], dry_run=True)
    assert "each fold trains in a process of its own" in capsys.readouterr().out
    train_tmva_folds(config_of(tmp_path, tmva=ALL), [0], dry_run=True)
    assert "process of its own" not in capsys.readouterr().out


# --- 7: the DNN's batches must fit what it trains and validates on -------------------------


def test_batch_larger_than_the_dnns_validation_slice_is_refused():
    from htt_tmva.tmva.checks import check_dnn_batches

    options = {"ValidationSize": "20%", "TrainingStrategy": "BatchSize=200,MaxEpochs=3"}
    assert check_dnn_batches(options, 1000, "fold 0", "t.yaml") == (800, 200)
    options["TrainingStrategy"] = "batchsize=201"  # keys ignoring case, as MethodDL reads them
    with pytest.raises(ConfigError, match="BatchSize 201 does not fit fold 0.*800 and .* 200"):
        check_dnn_batches(options, 1000, "fold 0", "t.yaml")
    # 20 validation events, and TMVA's default BatchSize of 30
    with pytest.raises(ConfigError, match="BatchSize 30"):
        check_dnn_batches({"ValidationSize": 20, "TrainingStrategy": "x=1"}, 1000, "f", "t")


def test_batch_size_is_checked_against_the_fold_file_before_tmva_runs(training_config):
    from htt_tmva.tmva.factory import check_inputs

    model = {**MODEL, "batch_size": 2000}
    config = load_training_config(training_config(model=model, tmva={"methods": ["DNN"]}))
    with pytest.raises(ConfigError, match="BatchSize 2000 does not fit fold 0"):
        check_inputs(booking_plan(config, 0), config)
    bdtg = load_training_config(training_config(model=model, tmva={"methods": ["BDTG"]}))
    check_inputs(booking_plan(bdtg, 0), bdtg)  # no DNN, no batches


# --- 8: a user DNN layout ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("layout", "expected"),
    [
        ("DENSE|64|relu,DENSE|3|LINEAR", r"read 'relu' as a width .*write 'RELU'"),
        ("dense|64|RELU,DENSE|3|LINEAR", r"layer types in upper case only; write 'DENSE'"),
        ("DENSE|64|RELU,DENSE|4|LINEAR", r"last layer has 4 nodes.*one node per class \(3\)"),
        ("DENSE|64|RELU", r"last layer has 64 nodes"),
        ("DENSE|64|SWISH,DENSE|3|LINEAR", r"'SWISH' is neither an activation"),
    ],
)
def test_user_dnn_layout_is_checked_as_tmva_parses_it(tmp_path, layout, expected):
    with pytest.raises(ConfigError, match=r"tmva\.DNN\.Layout.*" + expected):
        plan_of(tmp_path, tmva={"DNN": {"Layout": layout}})


def test_layouts_tmva_reads_as_meant_are_accepted(tmp_path):
    for layout in (
        "DENSE|N*2+1|TANH,BNORM,DENSE|3|LINEAR",
        "RELU|100,LINEAR|3",  # the old syntax: no layer type, activation and width any order
        "DENSE|(N+1)|SOFTSIGN,DENSE|3",
    ):
        assert (
            f":Layout={layout}:"
            in booked(tmp_path, tmva={"DNN": {"Layout": layout}})["DNN"].options
        )


# --- 9: PyKeras needs Keras 2 on TensorFlow ------------------------------------------------


def test_pykeras_needs_tensorflow_and_keras_2():
    from htt_tmva.tmva.factory import keras2_problem

    none = {}
    assert "TensorFlow is not installed" in keras2_problem({"keras": (2, 15)}, none)
    assert keras2_problem({"tensorflow": (2, 15), "keras": (2, 15)}, none) is None
    assert "Keras 3.15" in keras2_problem({"tensorflow": (2, 15), "keras": (3, 15)}, none)
    keras3 = {"tensorflow-cpu": (2, 21), "keras": (3, 15)}
    assert "TensorFlow 2.21" in keras2_problem(keras3, none)
    legacy = {**keras3, "tf-keras": (2, 21)}
    assert keras2_problem(legacy, {"TF_USE_LEGACY_KERAS": "1"}) is None
    assert keras2_problem(legacy, none) is not None  # tf_keras alone is not used
    assert keras2_problem(legacy, {"TF_USE_LEGACY_KERAS": "1"}, tf_keras=False) is not None


def test_reader_tmva_refuses_a_pykeras_weight_file_without_keras_2(tmp_path):
    from htt_tmva.engines.manifest import Manifest, manifest_path
    from htt_tmva.tmva.factory import keras2_problem
    from htt_tmva.tmva.reader import load_with_tmva_reader

    if keras2_problem() is None:
        pytest.skip("Keras 2 is installed here: PyKeras weight files can be read by TMVA")
    weights = tmp_path / "fold0_training/weights/TMVAMulticlass_PyKeras_fold0.weights.xml"
    weights.parent.mkdir(parents=True)
    weights.write_text('<?xml version="1.0"?>\n<MethodSetup Method="PyKeras::PyKeras_fold0"/>\n')
    Manifest(
        engine="tmva",
        model_file=weights.name,
        variables=["x", "y"],
        classes=["signal", "background_1", "background_2"],
        fold=0,
        n_folds=2,
        trained_on=[0],
        scores_fold=1,
        config_hash="",
        training_config="",
        details={"title": "PyKeras_fold0"},  # no 'method': read from the weight file
    ).write(manifest_path(weights))
    with pytest.raises(EngineError, match="cannot evaluate the PyKeras weight file .*Keras 2"):
        load_with_tmva_reader(weights)


# --- 11: early stopping as Keras counts it ---------------------------------------------------


def test_dnn_convergence_steps_stop_after_patience_epochs_like_keras(tmp_path):
    model = {**MODEL, "epochs": 50, "early_stopping": 5}
    methods = booked(tmp_path, model=model, tmva=ALL)
    # MethodDL stops when more than ConvergenceSteps epochs passed without improvement
    assert ",ConvergenceSteps=4," in methods["DNN"].options
    assert ":TriesEarlyStopping=5" in methods["PyKeras"].options  # Keras's own patience
    assert ",ConvergenceSteps=50," in booked(tmp_path, model={**MODEL, "epochs": 50})["DNN"].options


@pytest.mark.parametrize("patience", [0, -3])
def test_early_stopping_must_be_positive_for_tmva(tmp_path, patience):
    for methods in (["DNN"], ["PyKeras"]):
        with pytest.raises(ConfigError, match="model.early_stopping' is .*positive patience"):
            plan_of(
                tmp_path,
                model={**MODEL, "early_stopping": patience},
                tmva={"methods": methods},
            )


# --- 12: class names TMVA's option strings can carry ---------------------------------------


def test_classes_differing_only_by_case_are_refused(tmp_path):
    classes = ["signal", "Signal", "background"]
    weights = {c: 1.0 for c in classes}
    with pytest.raises(ConfigError, match="'signal' and 'Signal' differ only by case"):
        plan_of(tmp_path, classes=classes, class_weights=weights)


@pytest.mark.parametrize("name", ["ggH:125", "a=b"])
def test_class_names_with_option_separators_are_refused(tmp_path, name):
    classes = [name, "background"]
    with pytest.raises(ConfigError, match="TMVA's option strings use as separators"):
        plan_of(tmp_path, classes=classes, class_weights={c: 1.0 for c in classes})


# --- 14: what TMVA writes is tracked ---------------------------------------------------------


def test_plan_names_class_files_and_the_trained_keras_model_as_outputs(tmp_path):
    from htt_tmva.tmva.factory import check_outputs, planned_outputs

    plan = plan_of(tmp_path, tmva=ALL)
    weights = tmp_path / "models/fold0_training/weights"
    outputs = planned_outputs(plan)
    for name in (
        "TMVAMulticlass_BDTG.class.C",
        "TMVAMulticlass_DNN.class.C",
        "TrainedModel_PyKeras_fold0.h5",
    ):
        assert weights / name in outputs
    weights.mkdir(parents=True)
    (weights / "TrainedModel_PyKeras_fold0.h5").write_bytes(b"old")
    from htt_tmva.errors import OutputError

    with pytest.raises(OutputError, match="TrainedModel_PyKeras_fold0.h5 exists"):
        check_outputs(plan, overwrite=False)


def test_manifest_records_digests_of_what_tmva_wrote(tmp_path):
    from htt_tmva.tmva.factory import written_files

    plan = plan_of(tmp_path, tmva=ALL)
    methods = {m.method: m for m in plan.methods}
    weights = tmp_path / "models/fold0_training/weights"
    weights.mkdir(parents=True)
    for m in plan.methods:
        m.weight_file.write_text("<MethodSetup/>")
    methods["BDTG"].class_file.write_text("// class")
    assert set(written_files(methods["BDTG"])) == {"model", "class_file"}
    assert set(written_files(methods["DNN"])) == {"model"}  # no class file written
    with pytest.raises(EngineError, match="wrote no trained model"):
        written_files(methods["PyKeras"])
    methods["PyKeras"].trained_model.write_bytes(b"h5")
    assert set(written_files(methods["PyKeras"])) == {"model", "keras_model"}


TMVA_DATA = Path(
    os.environ.get("HTT_TMVA_TMVA_DATA")
    or Path(__file__).resolve().parents[1].parent / "shared" / "data" / "tmva"
)
DL_FILE = (
    "nasufsonmez__machine_learning_tmva/b8f78534d604/roottmva_example_folder/"
    "dataset/weights/TMVAMulticlass_DL_CPU.weights.xml"
)


def test_weight_file_replaced_after_training_is_refused(tmp_path):
    """A TMVA engine manifest records the weight file's digest: a replaced file is refused."""
    from htt_tmva.engines.manifest import Manifest, manifest_path, record_files
    from htt_tmva.tmva.weightfile import checked_weight_file, load_weight_file

    source = TMVA_DATA / DL_FILE
    if not source.is_file():
        pytest.skip(f"real TMVA files not present at {TMVA_DATA} (set HTT_TMVA_TMVA_DATA)")
    weights = tmp_path / "fold0_training/weights" / source.name
    weights.parent.mkdir(parents=True)
    weights.write_bytes(source.read_bytes())
    classes, variables = ["Signal", "bg0", "bg1", "bg2"], ["var1", "var2", "var3", "var4"]
    manifest = Manifest(
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
    )
    record_files(manifest, {"model": (weights, weights)})
    manifest.write(manifest_path(weights))
    load_weight_file(weights)
    checked_weight_file(weights, 1, 2, variables, classes)
    weights.write_bytes(source.read_bytes().replace(b"DL_CPU", b"DL_CPX", 1))
    for load in (
        lambda: load_weight_file(weights),
        lambda: checked_weight_file(weights, 1, 2, variables, classes),
    ):
        with pytest.raises(ModelError, match="is not the one saved with model"):
            load()


def test_tmva_output_file_that_cannot_be_created_is_an_output_error(tmp_path):
    """ROOT raises a bare OSError where TFile::Open fails; the engine names the file."""
    from htt_tmva._root import root
    from htt_tmva.errors import OutputError
    from htt_tmva.tmva.factory import TmvaTraining, _train_test_evaluate

    plan = plan_of(tmp_path)
    output = tmp_path / "missing" / ".fold0_training.root.tmp"
    with pytest.raises(OutputError, match="cannot create TMVA's output file .*fold0_training"):
        _train_test_evaluate(root(), plan, [], output, TmvaTraining(plan))
