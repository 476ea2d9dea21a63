"""ONNX export: onnxruntime on the written file gives the Python predictions (1e-5) on every
event of the fold each model scores, for the built-in models (example, smhtt with quantile
preprocessing), a user model with BatchNormalization, the BDT, the real TMVA weight files and
hand-built ones of every transformation; what the writer cannot express is refused by name."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from conftest import training_document, write_yaml
from test_tmva_cpp import SYNTHETIC, synthetic_inputs
from tmva_files import REAL_FILES

onnx = pytest.importorskip("onnx", reason="the onnx package is not installed")
ort = pytest.importorskip("onnxruntime", reason="onnxruntime is not installed")

from htt_tmva import export  # noqa: E402
from htt_tmva.config import load_training_config  # noqa: E402
from htt_tmva.data.arrays import read_fold_file  # noqa: E402
from htt_tmva.data.folds import scored_fold  # noqa: E402
from htt_tmva.engines.base import load_model  # noqa: E402
from htt_tmva.engines.manifest import file_digest, manifest_path  # noqa: E402
from htt_tmva.errors import ExportError, HttTmvaError, ModelError  # noqa: E402
from htt_tmva.export.onnx_format import onnx_model, write_onnx_files  # noqa: E402
from htt_tmva.export.spec import model_spec  # noqa: E402
from htt_tmva.tmva import SUPPORTED_METHODS, read_weights  # noqa: E402

PAIRS = json.loads((REAL_FILES / "pairs.json").read_text()) if REAL_FILES.is_dir() else []
needs_data = pytest.mark.skipif(
    not REAL_FILES.is_dir(), reason=f"real TMVA files not present at {REAL_FILES}"
)


def run_onnx(path, x: np.ndarray) -> np.ndarray:
    source = path if isinstance(path, bytes) else str(path)
    session = ort.InferenceSession(source, providers=["CPUExecutionProvider"])
    (output,) = session.get_outputs()
    return session.run([output.name], {"variables": np.asarray(x, np.float32)})[0]


def scored_events(training_config, fold: int) -> np.ndarray:
    """Every event of the fold that the model of ``fold`` scores (its test events)."""
    config = load_training_config(training_config)
    tested = scored_fold(fold, config.folds)
    data = read_fold_file(
        config.datasets[tested], config.classes, config.variables, config.event_weights
    )
    return data.x


def copied_models(info: dict, fold_dir, tmp_path):
    """The session's trained models copied to tmp_path/models (they stay untouched there);
    returns a training config for the copies."""
    shutil.copytree(info["output_path"], tmp_path / "models")
    return write_yaml(tmp_path / "training.yaml", training_document(fold_dir, tmp_path / "models"))


def assert_export_matches_python(training_config, model_path, onnx_path, fold: int) -> None:
    model = load_model(model_path)
    x = scored_events(training_config, fold)
    assert len(x) > 1000
    got = run_onnx(onnx_path, x)
    np.testing.assert_allclose(got, model.predict(x), rtol=1e-5, atol=1e-6)
    onnx.checker.check_model(str(onnx_path), full_check=True)
    loaded = onnx.load(str(onnx_path))
    meta = {p.key: p.value for p in loaded.metadata_props}
    assert json.loads(meta["variables"]) == model.manifest.variables
    assert json.loads(meta["classes"]) == model.manifest.classes
    assert meta["fold"] == str(fold) and meta["source_sha256"] == file_digest(model_path)
    assert [i.name for i in loaded.graph.input] == ["variables"]
    assert [o.name for o in loaded.graph.output] == ["probabilities"]
    assert any(o.domain in ("", "ai.onnx") and o.version == 17 for o in loaded.opset_import)
    recorded = json.loads(manifest_path(model_path).read_text())["files"]["onnx"]
    assert recorded["file"] == onnx_path.name and recorded["sha256"] == file_digest(onnx_path)


@pytest.mark.parametrize("engine", ["keras", "bdt"])
def test_every_fold_exports_to_onnx_giving_the_python_predictions(
    trained_models, fold_dir, engine, tmp_path
):
    """example (keras, standard preprocessing folded in) and the XGBoost BDT, both folds."""
    info = trained_models[engine]
    config = copied_models(info, fold_dir, tmp_path)
    folder = tmp_path / "models"
    files = export(config, engine=engine, format="onnx")
    models = [folder / p.name for p in info["models"]]
    assert [f.name for f in files] == [f"{p.name.split('.')[0]}.onnx" for p in models]
    for fold, (model, path) in enumerate(zip(models, files)):
        assert_export_matches_python(config, model, path, fold)
    files[0].unlink()  # the model loads with its new manifest, with or without the export
    load_model(models[0]).predict(scored_events(config, 0)[:5])


def copied_special_model(info: dict, tmp_path):
    """A special Keras model copied to tmp_path/models; (training config, model path)."""
    shutil.copytree(info["output_path"], tmp_path / "models")
    document = dict(info["document"], output_path=str(tmp_path / "models"))
    return write_yaml(tmp_path / "training.yaml", document), tmp_path / "models" / info[
        "model"
    ].name


@pytest.mark.parametrize("name", ["smhtt", "user"])
def test_keras_model_exports_to_onnx_giving_the_python_predictions(
    special_keras_models, name, tmp_path
):
    config, model_path = copied_special_model(special_keras_models[name], tmp_path)
    if name == "user":
        assert load_model(model_path).dense is None  # BatchNormalization: the Keras layers
    (path,) = export(config, fold=0, format="onnx")
    assert_export_matches_python(config, model_path, path, 0)


def test_quantile_preprocessing_matches_at_the_edges(special_keras_models):
    """Below the first quantile, on quantiles, repeated quantiles, beyond the last, NaN, inf."""
    model = load_model(special_keras_models["smhtt"]["model"])
    q = np.asarray(model.preprocessing.params["quantiles"])
    x = np.stack([np.concatenate([c[:50], c[::97], c[-3:], [c[0] - 1, c[-1] + 1]]) for c in q], 1)
    x = np.concatenate([x, [[np.nan, 0.0], [np.inf, -np.inf]]]).astype(np.float32)
    spec = model_spec(model)
    got = run_onnx(onnx_model(spec, {}, "t").SerializeToString(), x)
    expected = model.predict(x.astype(np.float64))
    np.testing.assert_array_equal(np.isnan(got), np.isnan(expected))
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)


# ------------------------------------------------------------------------------ TMVA weight files


REAL = {f"pair{p['id']}": p for p in PAIRS if p["method"].split("::")[0] in SUPPORTED_METHODS}


def _tree_inputs(pair, model) -> np.ndarray:
    uproot = pytest.importorskip("uproot")
    tree = uproot.open(REAL_FILES / pair["root"])[pair["tree"]]
    columns = []
    for name in model.variables:
        values = tree[name].array(library="np")
        if values.dtype.names:  # a leaf list: the value is the first leaf
            values = values[values.dtype.names[0]]
        columns.append(np.asarray(values, dtype=np.float32))
    return np.stack(columns, axis=1)


@needs_data
@pytest.mark.parametrize("name", sorted(REAL))
def test_real_tmva_file_exports_to_onnx_giving_the_reader_response(name, tmp_path):
    """Every event of the pair's TestTree; the file read in place, the ONNX one in tmp_path."""
    pair = REAL[name]
    model = load_model(REAL_FILES / pair["xml"], "tmva")
    spec = model_spec(model)
    where = tmp_path / "fold0_method.weights.xml"  # no manifest there: nothing recorded
    (path,) = write_onnx_files([where], [onnx_model(spec, {"source": "t"}, name)])
    assert path.name == "fold0_method.onnx"
    x = _tree_inputs(pair, model.weights)
    got = run_onnx(path, x)
    expected = model.predict(x.astype(np.float64)).astype(np.float32)
    np.testing.assert_array_equal(np.isnan(got), np.isnan(expected))
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)
    output = "probabilities" if model.weights.multiclass else "response"
    assert onnx.load(str(path)).graph.output[0].name == output


@pytest.mark.parametrize("name", sorted(SYNTHETIC))
def test_hand_built_tmva_file_exports_to_onnx_giving_the_reader_response(name, tmp_path):
    """Each transformation (Gauss with fine and histogram PDFs, Uniform, chains, subsets) and
    method variant, on inputs with NaN, +-inf and values beyond the PDFs' ranges."""
    path = tmp_path / f"{name}.weights.xml"
    path.write_text(SYNTHETIC[name]())
    model = read_weights(path)
    x = synthetic_inputs()
    got = run_onnx(onnx_model(model_spec(model), {}, name).SerializeToString(), x)
    expected = np.asarray(model.response(x)).reshape(len(x), -1).astype(np.float32)
    np.testing.assert_array_equal(np.isnan(got), np.isnan(expected))
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)


def test_unknown_activation_and_op_are_refused_by_name(trained_models):
    spec = model_spec(load_model(trained_models["keras"]["models"][0]))
    spec["ops"][0]["activation"] = "gelu"
    with pytest.raises(ExportError, match="activation 'gelu' cannot be written as ONNX"):
        onnx_model(spec, {}, "t")
    spec["ops"][0] = {"op": "conv"}
    with pytest.raises(HttTmvaError, match="network op 'conv' cannot be written as ONNX"):
        onnx_model(spec, {}, "t")


def test_refused_export_writes_nothing(trained_models, fold_dir, tmp_path):
    """A model ONNX cannot express stops the export before any file or manifest is written."""
    info = trained_models["keras"]
    config = copied_models(info, fold_dir, tmp_path)
    folder = tmp_path / "models"
    manifest = manifest_path(folder / info["models"][1].name)
    document = json.loads(manifest.read_text())
    dense = folder / document["files"]["dense"]["file"]
    with np.load(dense) as data:
        arrays = dict(data)
    arrays["a0"] = np.array("hard_sigmoid")  # a fold whose network ONNX cannot express
    with open(dense, "wb") as f:
        np.savez(f, **arrays)
    document["files"]["dense"]["sha256"] = file_digest(dense)
    manifest.write_text(json.dumps(document))
    before = manifest.read_text()
    # refused by name when the network is read (activations come from a fixed set)
    with pytest.raises((ExportError, ModelError), match="activation 'hard_sigmoid'"):
        export(config, engine="keras", format="onnx")
    assert not list(folder.glob("*.onnx")) and manifest.read_text() == before


@needs_data
def test_tmva_engine_exports_its_weight_files_per_fold(fold_dir, tmp_path):
    """``--engine tmva``: each fold's weight file of the booked method (a real BDT here) as
    ONNX next to it; the fold with a manifest gets the digest recorded."""
    from htt_tmva.tmva.plan import book_method
    from htt_tmva.tmva.weightfile import weights_manifest

    pair = REAL["pair4"]
    doc = training_document(fold_dir, tmp_path / "models", engine="tmva")
    doc["tmva"] = {"methods": ["BDTG"]}
    config = write_yaml(tmp_path / "training.yaml", doc)
    loaded = load_training_config(config)
    weight_files = []
    for fold in (0, 1):
        target = book_method(loaded, "BDTG", fold, f"fold{fold}_training").weight_file
        target.parent.mkdir(parents=True)
        weight_files.append(shutil.copy(REAL_FILES / pair["xml"], target))
    weights = read_weights(weight_files[0])
    weights_manifest(weight_files[0], weights, 0, 2, verified=True).write(
        manifest_path(weight_files[0])
    )
    files = export(config, format="onnx")
    assert [f.parent for f in files] == [w.parent for w in weight_files]
    x = _tree_inputs(pair, weights)
    expected = load_model(weight_files[1], "tmva").predict(x.astype(np.float64))
    for path in files:
        np.testing.assert_allclose(run_onnx(path, x), expected, rtol=1e-5, atol=1e-6)
    recorded = json.loads(manifest_path(weight_files[0]).read_text())["files"]["onnx"]
    assert recorded["sha256"] == file_digest(files[0])
    assert "ai.onnx.ml 3" in recorded["opset"]


def test_export_command_writes_onnx(trained_models, fold_dir, tmp_path):
    from conftest import htt_tmva

    config = copied_models(trained_models["bdt"], fold_dir, tmp_path)
    result = htt_tmva(
        "export", str(config), "1", "--engine", "bdt", "--format", "onnx", cwd=tmp_path
    )
    assert result.returncode == 0, result.stderr
    path = tmp_path / "models" / "fold1_bdt_model.onnx"
    assert f"wrote {path}" in result.stderr
    assert not (tmp_path / "models" / "fold0_bdt_model.onnx").exists()


def test_missing_onnx_package_says_how_to_install_it(trained_models, monkeypatch):
    import sys

    from htt_tmva.errors import EngineError

    spec = model_spec(load_model(trained_models["bdt"]["models"][0]))
    monkeypatch.setitem(sys.modules, "onnx", None)  # as if not installed
    with pytest.raises(EngineError, match=r"pip install onnx"):
        onnx_model(spec, {}, "t")


def test_manifest_without_digests_still_warns_after_an_export(
    trained_models, fold_dir, tmp_path, caplog
):
    """A manifest of an older htt-tmva (no digests) gets only ``files.onnx``: loading still
    says that it cannot check the model's files."""
    config = copied_models(trained_models["bdt"], fold_dir, tmp_path)
    model = tmp_path / "models" / trained_models["bdt"]["models"][0].name
    document = json.loads(manifest_path(model).read_text())
    document["files"] = {}
    manifest_path(model).write_text(json.dumps(document))
    export(config, fold=0, engine="bdt", format="onnx")
    assert set(json.loads(manifest_path(model).read_text())["files"]) == {"onnx"}
    with caplog.at_level("WARNING"):
        load_model(model)
    assert "records no digests" in caplog.text
