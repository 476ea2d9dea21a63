"""TMVA weight files used as models without TMVA: ``htt-tmva apply`` with the classic TMVA
application config and ``htt-tmva confusion`` with weight files as ``model:``.

The weight files are our toy BDTs exported as TMVA BDTG files (real XGBoost training), so
their scores must equal the XGBoost models' own.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from conftest import CLASSES, dataset_document, write_yaml
from tmva_files import REAL_FILES, copy_bdt_models

from htt_tmva.application.apply import run_application
from htt_tmva.config import load_training_config
from htt_tmva.engines.base import load_model
from htt_tmva.errors import FoldLeakError, MissingBranchError, ModelError
from htt_tmva.evaluation.testing import run_testing
from htt_tmva.export.run import run_export

uproot = pytest.importorskip("uproot")

TREE = "ntuple"


def write_ntuple(path: Path, n: int, names=("x", "y"), seed: int = 11) -> Path:
    """Toy-like ntuple: the variables (float), weights, event (shuffled, unique, uint64)."""
    from htt_tmva._root import root

    rng = np.random.default_rng(seed)
    columns = {name: rng.normal(size=n).astype(np.float32) for name in names}
    columns["weights"] = rng.uniform(0.5, 1.5, size=n).astype(np.float32)
    columns["event"] = rng.permutation(rng.choice(10**9, size=n, replace=False)).astype(np.uint64)
    root().RDF.FromNumpy(columns).Snapshot(TREE, str(path), list(columns))
    return path


@pytest.fixture
def tmva_setup(trained_models, fold_dir, toy_dir, tmp_path):
    """Factory: the BDTs exported to TMVA files; (dataset, training, application) configs
    with the classic TMVA application config (weight files, first entry for even events)."""

    def make(manifests: bool = True, order=(1, 0), training_overrides=None, **app):
        training = copy_bdt_models(trained_models, fold_dir, tmp_path, **(training_overrides or {}))
        for fold in (0, 1):
            run_export(copy_bdt_models(trained_models, fold_dir, tmp_path / "export"), fold)
        models = tmp_path / "models"
        for path in (tmp_path / "export" / "models").glob("*.weights.*"):
            if manifests or path.suffix == ".xml":
                shutil.copy2(path, models / path.name)
        document = {
            "classifiers": [f"fold{f}_bdt_model.weights.xml" for f in order],
            "branch_prefix": "tmva_",
            **app,
        }
        dataset = write_yaml(tmp_path / "dataset.yaml", dataset_document(toy_dir, tmp_path / "d"))
        return dataset, training, write_yaml(tmp_path / "tmva_application.yaml", document)

    return make


def xgboost_scores(training_config: Path, x: np.ndarray, events: np.ndarray) -> np.ndarray:
    """The XGBoost models' probabilities, each event by the model that never saw its fold."""
    output = load_training_config(training_config).output_path
    expected = np.full((len(x), len(CLASSES)), np.nan)
    for fold in (0, 1):
        model = load_model(output / f"fold{1 - fold}_bdt_model.json", "bdt")
        mask = events % 2 == fold
        expected[mask] = model.predict(x[mask])
    return expected


def check_applied(path: Path, training_config: Path) -> None:
    with uproot.open(path) as f:
        data = f[TREE].arrays(library="np")
    x = np.column_stack([data["x"], data["y"]]).astype(np.float64)
    expected = xgboost_scores(training_config, x, data["event"].astype(np.int64))
    got = np.column_stack([data[f"tmva_{c}"] for c in CLASSES])
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-6)
    np.testing.assert_array_equal(data["tmva_max_score"], got.max(axis=1))
    np.testing.assert_array_equal(data["tmva_max_index"], got.argmax(axis=1).astype(np.float32))


def test_apply_with_tmva_application_config(tmva_setup, tmp_path):
    configs = tmva_setup()
    data_file = write_ntuple(tmp_path / "data.root", 2001)
    run_application(*configs, [str(data_file)], TREE, chunk_size=300)
    check_applied(data_file, configs[1])


def test_weight_files_without_manifest_warn_that_folds_are_unverified(tmva_setup, tmp_path, caplog):
    configs = tmva_setup(manifests=False)
    assert not list((tmp_path / "models").glob("*.weights.manifest.json"))
    data_file = write_ntuple(tmp_path / "data.root", 800)
    with caplog.at_level("WARNING"):
        run_application(*configs, [str(data_file)], TREE)
    check_applied(data_file, configs[1])
    for name in ("fold1_bdt_model.weights.xml", "fold0_bdt_model.weights.xml"):
        assert f"TMVA weight file {name} has no manifest" in caplog.text
    assert "the folds cannot be verified from the file" in caplog.text


def test_exported_manifest_still_guards_the_folds(tmva_setup, tmp_path):
    configs = tmva_setup(order=(0, 1))
    data_file = write_ntuple(tmp_path / "data.root", 100)
    with pytest.raises(FoldLeakError, match="must not score events of fold 0"):
        run_application(*configs, [str(data_file)], TREE)


def test_confusion_with_weight_files(tmva_setup, tmp_path):
    _, training, _ = tmva_setup()
    tmva = write_yaml(
        tmp_path / "tmva_testing.yaml",
        {
            "model": ["fold0_bdt_model.weights.xml", "fold1_bdt_model.weights.xml"],
            "weight_branch": "training_weight",
            "output_prefix": "tmva_",
        },
    )
    bdt = write_yaml(
        tmp_path / "bdt_testing.yaml",
        {
            "model": ["fold0_bdt_model.json", "fold1_bdt_model.json"],
            "weight_branch": "training_weight",
            "output_prefix": "bdt_",
        },
    )
    for fold in (0, 1):
        ours = run_testing(training, tmva, fold, compare=[bdt])
        theirs = run_testing(training, bdt, fold)
        assert ours["engine"] == "tmva-weights"
        assert ours["model"].endswith(f"fold{fold}_bdt_model.weights.xml")
        for name, matrix in theirs["matrices"].items():
            np.testing.assert_allclose(ours["matrices"][name], matrix, rtol=1e-6, err_msg=name)
        for c in CLASSES:
            assert ours["auc"][c] == pytest.approx(theirs["auc"][c], abs=1e-6)
            assert ours["compare"][0]["auc"][c] == pytest.approx(theirs["auc"][c], abs=1e-6)


# ---------------------------------------------------------------- bad input


def test_classes_not_matching_the_file(tmva_setup, tmp_path):
    reordered = [CLASSES[1], CLASSES[0], CLASSES[2]]
    configs = tmva_setup(training_overrides={"classes": reordered})
    data_file = write_ntuple(tmp_path / "data.root", 50)
    with pytest.raises(ModelError, match=r"has the classes \['signal', 'background_1'"):
        run_application(*configs, [str(data_file)], TREE)


def test_variables_not_matching_the_file(tmva_setup, tmp_path):
    configs = tmva_setup(training_overrides={"variables": ["x", "yy"]})
    data_file = write_ntuple(tmp_path / "data.root", 50, names=("x", "yy"))
    with pytest.raises(ModelError, match=r"#1: file 'y', config 'yy'"):
        run_application(*configs, [str(data_file)], TREE)


def test_variable_missing_in_the_tree(tmva_setup, tmp_path):
    configs = tmva_setup()
    data_file = write_ntuple(tmp_path / "data.root", 50, names=("x", "yy"))
    with pytest.raises(MissingBranchError, match="branch 'y' not found .*did you mean 'yy'"):
        run_application(*configs, [str(data_file)], TREE)


def test_missing_weight_file(tmva_setup, tmp_path):
    configs = tmva_setup()
    (tmp_path / "models" / "fold0_bdt_model.weights.xml").unlink()
    data_file = write_ntuple(tmp_path / "data.root", 50)
    with pytest.raises(ModelError, match="model file 'fold0_bdt_model.weights.xml' not found in"):
        run_application(*configs, [str(data_file)], TREE)


def test_engine_of_another_kind_is_refused(tmva_setup, tmp_path):
    configs = tmva_setup(engine="bdt")
    data_file = write_ntuple(tmp_path / "data.root", 50)
    with pytest.raises(ModelError, match="is a TMVA weight file, read without TMVA"):
        run_application(*configs, [str(data_file)], TREE)


def test_two_class_weight_file_is_refused(fold_dir, tmp_path):
    real = REAL_FILES / "mjongerh__SharedFol/b7884a956f98/dataset/weights"
    if not real.is_dir():
        pytest.skip(f"no real TMVA files here ({REAL_FILES} is absent)")
    from conftest import training_document

    models = tmp_path / "models"
    models.mkdir()
    shutil.copy2(real / "TMVAClassification_BDT.weights.xml", models / "bdt.weights.xml")
    training = write_yaml(
        tmp_path / "training.yaml",
        training_document(
            fold_dir,
            models,
            classes=["Signal", "Background"],
            class_weights=None,
            variables=["var1", "var2", "var3", "var4"],
        ),
    )
    testing = write_yaml(
        tmp_path / "testing.yaml",
        {"model": ["bdt.weights.xml", "bdt.weights.xml"], "weight_branch": "training_weight"},
    )
    with pytest.raises(ModelError, match="is a two-class job"):
        run_testing(training, testing, 0)


# ---------------------------------------------------------------- variables that are expressions

EXPRESSIONS = ["x+y", "(y>0.5)?0.5:y"]


def with_expressions(xml: Path) -> None:
    """Make the exported file a TMVA file whose variables are expressions (as TMVA writes
    them: Expression, and Internal from TMVA's name rule)."""
    text = xml.read_text()
    text = text.replace(
        'Expression="x" Label="x" Title="x" Unit="" Internal="x"',
        'Expression="x+y" Label="x+y" Title="x+y" Unit="" Internal="x_P_y"',
    )
    text = text.replace(
        'Expression="y" Label="y" Title="y" Unit="" Internal="y"',
        'Expression="(y&gt;0.5)?0.5:y" Label="(y&gt;0.5)?0.5:y" Title="y" Unit="" '
        'Internal="_y_0.5__0.5:y"',
    )
    assert text.count("Expression=") == 2 and "x+y" in text
    xml.write_text(text)


def test_expressions_are_evaluated_on_the_ntuple(tmva_setup, tmp_path):
    from htt_tmva.tmva import read_weights

    dataset, training, application = tmva_setup(
        manifests=False, training_overrides={"variables": EXPRESSIONS}
    )
    for fold in (0, 1):
        with_expressions(tmp_path / "models" / f"fold{fold}_bdt_model.weights.xml")
    assert read_weights(tmp_path / "models" / "fold0_bdt_model.weights.xml").expressions == (
        EXPRESSIONS
    )
    data_file = write_ntuple(tmp_path / "data.root", 1500)
    run_application(dataset, training, application, [str(data_file)], TREE, chunk_size=400)
    with uproot.open(data_file) as f:
        data = f[TREE].arrays(library="np")
    x, y = data["x"].astype(np.float64), data["y"].astype(np.float64)
    inputs = np.column_stack([x + y, np.where(y > 0.5, 0.5, y)]).astype(np.float32)
    expected = np.full((len(x), len(CLASSES)), np.nan)
    models = tmp_path / "models"
    for fold in (0, 1):
        model = load_model(models / f"fold{1 - fold}_bdt_model.json", "bdt")
        mask = data["event"].astype(np.int64) % 2 == fold
        expected[mask] = model.predict(inputs[mask].astype(np.float64))
    got = np.column_stack([data[f"tmva_{c}"] for c in CLASSES])
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-6)


def test_expression_reading_a_missing_branch(tmva_setup, tmp_path):
    dataset, training, application = tmva_setup(
        manifests=False, training_overrides={"variables": EXPRESSIONS}
    )
    for fold in (0, 1):
        with_expressions(tmp_path / "models" / f"fold{fold}_bdt_model.weights.xml")
    data_file = write_ntuple(tmp_path / "data.root", 50, names=("x", "yy"))
    with pytest.raises(MissingBranchError, match="branch 'y' not found .*did you mean 'yy'"):
        run_application(dataset, training, application, [str(data_file)], TREE)


def test_branches_read_by_expressions():
    from htt_tmva.expressions import branches_of, input_branches

    assert branches_of("(Ht>2500e3)?2500e3:Ht") == ["Ht"]
    assert branches_of("TMath::Abs(eta_1) + sqrt(pt_1*pt_2) - 1.5e-3") == ["eta_1", "pt_1", "pt_2"]
    assert input_branches(["x", "x+y", "abs(z)"]) == ["x", "y", "z"]


def test_confusion_evaluates_expressions_on_the_fold_dataset(tmva_setup, fold_dir, tmp_path):
    from htt_tmva.data.arrays import read_fold_file
    from htt_tmva.evaluation.confusion import confusion_matrix

    _, training, _ = tmva_setup(manifests=False, training_overrides={"variables": EXPRESSIONS})
    for fold in (0, 1):
        with_expressions(tmp_path / "models" / f"fold{fold}_bdt_model.weights.xml")
    testing = write_yaml(
        tmp_path / "tmva_testing.yaml",
        {
            "model": ["fold0_bdt_model.weights.xml", "fold1_bdt_model.weights.xml"],
            "weight_branch": "training_weight",
        },
    )
    summary = run_testing(training, testing, 0)
    data = read_fold_file(
        fold_dir / "fold1_training_dataset.root", CLASSES, ["x", "y"], "training_weight"
    )
    x, y = data.x[:, 0], data.x[:, 1]
    inputs = np.column_stack([x + y, np.where(y > 0.5, 0.5, y)]).astype(np.float32)
    model = load_model(tmp_path / "models" / "fold0_bdt_model.json", "bdt")
    predicted = model.predict(inputs.astype(np.float64)).argmax(axis=1)
    expected = confusion_matrix(data.y, predicted, data.w, len(CLASSES))
    np.testing.assert_allclose(summary["matrices"]["standard"], expected, rtol=1e-9)


# ---------------------------------------------------------------- one pass, compiled (--compile)


def _one_pass_equals_python(configs, data_file, tmp_path, caplog) -> dict:
    """Apply with the compiled models and with the Python path; the same branches."""
    import logging

    with caplog.at_level(logging.INFO, logger="htt_tmva"):
        run_application(
            *configs, [str(data_file)], TREE, output=str(tmp_path / "c.root"), compile_models=True
        )
    assert "scoring in one pass with the models compiled" in caplog.text
    run_application(*configs, [str(data_file)], TREE, output=str(tmp_path / "p.root"))
    with uproot.open(tmp_path / "c.root") as c, uproot.open(tmp_path / "p.root") as p:
        compiled, python = c[TREE].arrays(library="np"), p[TREE].arrays(library="np")
    assert list(compiled) == list(python)
    for name in [f"tmva_{c}" for c in CLASSES] + ["tmva_max_score"]:
        np.testing.assert_allclose(compiled[name], python[name], rtol=1e-5, atol=1e-7)
    np.testing.assert_array_equal(compiled["tmva_max_index"], python["tmva_max_index"])
    return compiled


def test_compiled_application_of_weight_files_equals_the_python_path(
    tmva_setup, tmp_path, caplog, monkeypatch
):
    monkeypatch.setenv("HTT_TMVA_CACHE", str(tmp_path / "cache"))
    configs = tmva_setup()
    data_file = write_ntuple(tmp_path / "data.root", 1500)
    _one_pass_equals_python(configs, data_file, tmp_path, caplog)
    check_applied(tmp_path / "c.root", configs[1])


def test_compiled_application_evaluates_the_weight_files_expressions(
    tmva_setup, tmp_path, caplog, monkeypatch
):
    monkeypatch.setenv("HTT_TMVA_CACHE", str(tmp_path / "cache"))
    configs = tmva_setup(manifests=False, training_overrides={"variables": EXPRESSIONS})
    for fold in (0, 1):
        with_expressions(tmp_path / "models" / f"fold{fold}_bdt_model.weights.xml")
    data_file = write_ntuple(tmp_path / "data.root", 1500)
    compiled = _one_pass_equals_python(configs, data_file, tmp_path, caplog)
    header = next((tmp_path / "cache").glob("*/model.hxx")).read_text()
    # the expressions are evaluated ahead (checked for NaN there); the header takes their values
    assert '"(y>0.5)?0.5:y"' in header and "static_cast<double>(y)" not in header
    assert sorted(compiled) == sorted(
        ["x", "y", "weights", "event"] + [f"tmva_{c}" for c in [*CLASSES, "max_score", "max_index"]]
    )


# ---------------------------------------------------------------- export --engine tmva


def _tmva_training(tmva_setup, fold_dir, tmp_path, methods=("BDTG",)) -> Path:
    """A training config of the tmva engine whose weight files (where TMVA writes them) are
    the BDTs exported as TMVA BDTG files, with their manifests."""
    from conftest import training_document

    _, training, _ = tmva_setup()
    output = tmp_path / "tmva_models"
    for fold in (0, 1):
        weights = output / f"fold{fold}_training" / "weights"
        weights.mkdir(parents=True)
        source = tmp_path / "models" / f"fold{fold}_bdt_model.weights"
        for method in methods:
            target = weights / f"TMVAMulticlass_{method}.weights"
            for suffix in (".xml", ".manifest.json"):
                shutil.copy2(f"{source}{suffix}", f"{target}{suffix}")
    document = training_document(fold_dir, output, engine="tmva", tmva={"methods": list(methods)})
    return write_yaml(tmp_path / "tmva_training.yaml", document)


def test_export_engine_tmva_writes_cpp_and_json_of_the_weight_files(tmva_setup, fold_dir, tmp_path):
    import json
    import subprocess
    import sys

    from test_export import compiled_predictions

    from htt_tmva.export.run import export_models

    config = _tmva_training(tmva_setup, fold_dir, tmp_path)
    output = tmp_path / "tmva_models"
    command = [sys.executable, "-m", "htt_tmva", "export", str(config), "--all-folds"]
    result = subprocess.run([*command, "--engine", "tmva"], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    header = output / "htt_tmva_tmva_BDTG_folds.hxx"
    assert f"wrote {header}" in result.stderr
    rng = np.random.default_rng(2)
    x = rng.normal(size=(600, 2)).astype(np.float32).astype(np.float64)
    events = rng.integers(0, 10**6, size=600)
    got = compiled_predictions(header.read_text(), "htt_tmva_tmva_BDTG", x, tmp_path, events)
    np.testing.assert_allclose(
        got, xgboost_scores(tmp_path / "training.yaml", x, events), atol=1e-6
    )

    (document,) = export_models(config, 1, "tmva", "json")
    assert document == output / "fold1_training/weights/TMVAMulticlass_BDTG.export.json"
    data = json.loads(document.read_text())
    assert (data["kind"], data["output"], data["fold"], data["scores_fold"]) == (
        "trees", "tmva_multiclass", 1, 0
    )  # fmt: skip
    assert data["variables"] == ["x", "y"] and data["classes"] == list(CLASSES)
    assert data["tmva"]["method"] == "BDT" and data["preprocessing"]["transformations"] == []


def test_export_engine_tmva_refuses_an_unsupported_method_before_writing(
    tmva_setup, fold_dir, tmp_path
):
    from htt_tmva.export.run import export_models

    if not REAL_FILES.is_dir():
        pytest.skip(f"no real TMVA files here ({REAL_FILES} is absent)")
    config = _tmva_training(tmva_setup, fold_dir, tmp_path, methods=("BDTG", "DNN"))
    foam = next(REAL_FILES.rglob("TMVAMulticlass_PDEFoam.weights.xml"))
    dnn = tmp_path / "tmva_models/fold1_training/weights/TMVAMulticlass_DNN.weights.xml"
    shutil.copy2(foam, dnn)
    dnn.with_name("TMVAMulticlass_DNN.weights.manifest.json").unlink()
    with pytest.raises(ModelError, match="method 'PDEFoam'.*supported methods: BDT, MLP, DL"):
        export_models(config, None, "tmva", "cpp")
    assert not list((tmp_path / "tmva_models").glob("*.hxx"))


# ---------------------------------------------------------------- expressions: both paths alike


def set_expressions(xml: Path, expressions: list[str]) -> None:
    """Make the exported file's variables x, y the given expressions."""
    text = xml.read_text()
    for name, expression in zip(("x", "y"), expressions):
        e = expression.replace("&", "&amp;").replace(">", "&gt;").replace("<", "&lt;")
        text = text.replace(
            f'Expression="{name}" Label="{name}" Title="{name}" Unit="" Internal="{name}"',
            f'Expression="{e}" Label="{e}" Title="{name}" Unit="" Internal="{name}"',
        )
    assert text.count("Expression=") == 2
    xml.write_text(text)


def _expression_setup(tmva_setup, tmp_path, expressions):
    configs = tmva_setup(manifests=False, training_overrides={"variables": expressions})
    for fold in (0, 1):
        set_expressions(tmp_path / "models" / f"fold{fold}_bdt_model.weights.xml", expressions)
    return configs


def test_abs_in_an_expression_scores_alike_in_both_paths(tmva_setup, tmp_path, caplog, monkeypatch):
    """``abs`` is the double one in every path (it was C's int abs(int) in the compiled one)."""
    monkeypatch.setenv("HTT_TMVA_CACHE", str(tmp_path / "cache"))
    configs = _expression_setup(tmva_setup, tmp_path, ["abs(x)", "1/2*y"])
    data_file = write_ntuple(tmp_path / "data.root", 1500)
    compiled = _one_pass_equals_python(configs, data_file, tmp_path, caplog)
    x, y = compiled["x"].astype(np.float64), compiled["y"].astype(np.float64)
    inputs = np.column_stack([np.abs(x), 0.5 * y]).astype(np.float32).astype(np.float64)
    expected = np.full((len(x), len(CLASSES)), np.nan)
    for fold in (0, 1):
        model = load_model(tmp_path / "models" / f"fold{1 - fold}_bdt_model.json", "bdt")
        mask = compiled["event"].astype(np.int64) % 2 == fold
        expected[mask] = model.predict(inputs[mask])
    got = np.column_stack([compiled[f"tmva_{c}"] for c in CLASSES])
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-6)


@pytest.mark.parametrize(
    ("compile_models", "threads"), [(False, None), (True, None), (True, 0)], ids=str
)
def test_nan_from_an_expression_is_caught_as_a_nan_input(
    tmva_setup, tmp_path, monkeypatch, compile_models, threads
):
    """log(x) of x <= 0 is NaN: refused like a NaN branch, or scored with the default."""
    from htt_tmva.errors import NonFiniteError

    monkeypatch.setenv("HTT_TMVA_CACHE", str(tmp_path / "cache"))
    configs = _expression_setup(tmva_setup, tmp_path, ["log(x)", "y"])
    data_file = write_ntuple(tmp_path / "data.root", 600)
    with uproot.open(data_file) as f:
        x = f[TREE]["x"].array(library="np")
    options = {"compile_models": compile_models, "scoring_threads": threads}
    with pytest.raises(NonFiniteError, match=rf"'log\(x\)' in {int((x < 0).sum())} events"):
        run_application(*configs, [str(data_file)], TREE, **options)
    out = tmp_path / "out.root"
    run_application(
        *configs, [str(data_file)], TREE, output=str(out), nonfinite_default=-2.0, **options
    )
    with uproot.open(out) as f:
        data = f[TREE].arrays(library="np")
    bad = data["x"] < 0
    assert bad.any() and (~bad).any()
    assert (data["tmva_max_index"][bad] == -1).all() and (data["tmva_max_index"][~bad] >= 0).all()
    for c in CLASSES:
        assert (data[f"tmva_{c}"][bad] == -2.0).all() and (data[f"tmva_{c}"][~bad] >= 0).all()
