"""``htt-tmva export --format tmva``: our BDTs as TMVA BDTG weight files.

TMVA::Reader cannot run here (the pip ROOT wheel has no TMVA): the written file is read back
with htt-tmva's own TMVA reader and compared with XGBoost, and its XML structure is compared
with real TMVA BDT weight files.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET

import numpy as np
import pytest
from conftest import CLASSES
from tmva_files import copy_bdt_models, real_bdt_files

from htt_tmva.cli import main
from htt_tmva.config import load_training_config
from htt_tmva.data.arrays import read_fold_file
from htt_tmva.engines.base import load_model
from htt_tmva.errors import ConfigError, EngineError, ModelError, OutputError
from htt_tmva.export.run import run_export

SECTIONS = [
    "GeneralInfo",
    "Options",
    "Variables",
    "Spectators",
    "Classes",
    "Transformations",
    "MVAPdfs",
    "Weights",
]


@pytest.fixture
def exported(trained_models, fold_dir, tmp_path):
    """Both folds' BDTs exported; returns (training config, [xml fold0, xml fold1])."""
    config = copy_bdt_models(trained_models, fold_dir, tmp_path)
    return config, [run_export(config, fold) for fold in (0, 1)]


def toy_events(fold_dir) -> np.ndarray:
    """Toy events of both folds, plus wide and tiny values and the thresholds themselves."""
    xs = [
        read_fold_file(
            fold_dir / f"fold{f}_training_dataset.root", CLASSES, ["x", "y"], "weights"
        ).x
        for f in (0, 1)
    ]
    rng = np.random.default_rng(5)
    extra = rng.normal(scale=4.0, size=(2000, 2))
    extra[:4] = [[1e30, -1e30], [-1e30, 1e30], [0.0, -0.0], [1e-30, -1e-30]]
    return np.concatenate([*xs, extra])


def split_thresholds(xml_path) -> np.ndarray:
    """Events sitting exactly on every cut of the file (x and y both on cuts)."""
    cuts = [
        float(n.get("Cut"))
        for n in ET.parse(xml_path).getroot().iter("Node")
        if n.get("nType") == "0"
    ]
    cuts = np.asarray(cuts, dtype=np.float32)
    return np.column_stack([cuts, cuts[::-1]]).astype(np.float64)


def test_exported_file_gives_the_xgboost_probabilities(exported, fold_dir):
    from htt_tmva.tmva import read_weights

    config, files = exported
    training = load_training_config(config)
    for fold, path in enumerate(files):
        assert path.name == f"fold{fold}_bdt_model.weights.xml"
        model = load_model(training.output_path / f"fold{fold}_bdt_model.json", "bdt")
        weights = read_weights(path)
        assert weights.multiclass
        assert list(weights.classes) == CLASSES
        assert list(weights.variables) == ["x", "y"]
        assert list(weights.expressions) == ["x", "y"]
        x = np.concatenate([toy_events(fold_dir), split_thresholds(path)])
        expected = model.predict(x)
        got = np.asarray(weights.response(x))
        assert got.shape == (len(x), len(CLASSES))
        np.testing.assert_allclose(got, expected, rtol=0, atol=1e-6)
        # argmax agrees wherever the two best classes are not within rounding of each other
        top2 = np.sort(expected, axis=1)[:, -2:]
        clear = top2[:, 1] - top2[:, 0] > 1e-5
        np.testing.assert_array_equal(got[clear].argmax(1), expected[clear].argmax(1))


def test_exported_file_layout_is_tmva_bdtg(exported):
    config, files = exported
    training = load_training_config(config)
    root = ET.parse(files[0]).getroot()
    assert root.tag == "MethodSetup" and root.get("Method") == "BDT::BDTG"
    assert [c.tag for c in root] == SECTIONS
    info = {i.get("name"): i.get("value") for i in root.find("GeneralInfo")}
    assert info["AnalysisType"] == "Multiclass"
    options = {o.get("name"): o.text for o in root.find("Options")}
    assert options["BoostType"] == "Grad"
    assert options["Shrinkage"] == f"{training.bdt.Shrinkage:e}"
    assert int(options["NTrees"]) == training.bdt.NTrees + 1  # the base-margin round first
    weights = root.find("Weights")
    assert weights.get("AnalysisType") == "1"  # regression trees: CheckEvent returns res
    trees = weights.findall("BinaryTree")
    assert int(weights.get("NTrees")) == len(trees) == (training.bdt.NTrees + 1) * len(CLASSES)
    assert [int(t.get("itree")) for t in trees] == list(range(len(trees)))
    for tree in trees:
        for node in tree.iter("Node"):
            children = node.findall("Node")
            assert [c.get("pos") for c in children] in ([], ["l", "r"])
            assert (node.get("nType") == "0") == bool(children)
            assert node.get("cType") == "1"
            if children:
                assert 0 <= int(node.get("IVar")) < 2
                assert np.float32(float(node.get("Cut"))) == float(node.get("Cut"))
            assert all(int(c.get("depth")) == int(node.get("depth")) + 1 for c in children)


def _structure(root: ET.Element) -> dict:
    """Element and attribute names of a BDT weight file, as sets and orders."""
    weights = root.find("Weights")
    tree = weights.find("BinaryTree")
    return {
        "root": (root.tag, sorted(root.attrib)),
        "sections": [c.tag for c in root],
        "info": [i.get("name") for i in root.find("GeneralInfo")],
        "option_attrs": {tuple(sorted(o.attrib)) for o in root.find("Options")},
        "variable": list(root.find("Variables").find("Variable").attrib),
        "variables": sorted(root.find("Variables").attrib),
        "spectators": sorted(root.find("Spectators").attrib),
        "class": list(root.find("Classes").find("Class").attrib),
        "classes": sorted(root.find("Classes").attrib),
        "transformations": sorted(root.find("Transformations").attrib),
        "weights": sorted(weights.attrib),
        "tree": list(tree.attrib),
        "node": {tuple(n.attrib) for n in weights.iter("Node")},
        "node_children": {tuple(c.tag for c in n) for n in weights.iter("Node")},
    }


def test_structure_matches_real_tmva_bdt_files(exported):
    real = real_bdt_files()
    ours = _structure(ET.parse(exported[1][0]).getroot())
    compared = 0
    for path in real:
        root = ET.parse(path).getroot()
        theirs = _structure(root)
        release = {i.get("name"): i.get("value") for i in root.find("GeneralInfo")}
        if not release.get("TMVA Release", "").startswith("4.2.1"):
            continue  # older layouts (TMVA 4.1) are read, but 4.2.1's is written
        for key in theirs:
            assert ours[key] == theirs[key], f"{key} differs from {path}"
        ours_options = [o.get("name") for o in ET.parse(exported[1][0]).getroot().find("Options")]
        assert ours_options == [o.get("name") for o in root.find("Options")], path
        compared += 1
    assert compared, "no TMVA 4.2.1 BDT file among the real files"


def test_cpp_and_json_formats_are_written_by_the_exporters(exported, caplog):
    config, _ = exported
    assert run_export(config, 0, fmt="json").name == "fold0_bdt_model.export.json"
    with caplog.at_level("INFO"):
        assert main(["export", str(config), "1", "--format", "cpp"]) == 0
    assert "fold1_bdt_model.hxx" in caplog.text
    with pytest.raises(ConfigError, match="unknown --format 'pmml'"):
        run_export(config, 0, fmt="pmml")


def test_export_refusals(exported, tmp_path):
    config, files = exported
    before = files[0].read_bytes()
    with pytest.raises(OutputError, match="exists already; give --overwrite"):
        run_export(config, 0)
    assert files[0].read_bytes() == before
    assert run_export(config, 0, overwrite=True) == files[0]
    with pytest.raises(EngineError, match="needs the engine 'bdt', not 'keras'"):
        run_export(config, 0, engine="keras")
    with pytest.raises(ConfigError, match="fold 2 does not exist"):
        run_export(config, 2)
    files[0].with_name("fold1_bdt_model.json").unlink()
    with pytest.raises(ModelError, match="model file 'fold1_bdt_model.json' not found in"):
        run_export(config, 1, overwrite=True)


def test_export_command_line_logs_the_file(trained_models, fold_dir, tmp_path, caplog):
    config = copy_bdt_models(trained_models, fold_dir, tmp_path)
    with caplog.at_level("INFO"):
        assert main(["export", str(config), "1", "--engine", "bdt", "--format", "tmva"]) == 0
    written = tmp_path / "models" / "fold1_bdt_model.weights.xml"
    assert written.is_file()
    assert (tmp_path / "models" / "fold1_bdt_model.weights.manifest.json").is_file()
    assert f"wrote {written}: TMVA BDTG" in caplog.text


def test_early_stopped_model_exports_the_rounds_it_predicts_with(fold_dir, tmp_path):
    from conftest import training_document, write_yaml

    from htt_tmva.config import load_training_config
    from htt_tmva.tmva import read_weights
    from htt_tmva.training import train_folds

    document = training_document(
        fold_dir,
        tmp_path / "models",
        engine="bdt",
        bdt={"NTrees": 400, "MaxDepth": 3, "Shrinkage": 0.5, "early_stopping": 2},
    )
    config = write_yaml(tmp_path / "training.yaml", document)
    (model,) = train_folds(load_training_config(config), [0])
    best = model.manifest.details["best_iteration"]
    assert best is not None and (best + 1) * 3 < model.booster.num_boosted_rounds() * 3
    path = run_export(config, 0)
    weights = ET.parse(path).getroot().find("Weights")
    assert int(weights.get("NTrees")) == (best + 2) * len(CLASSES)  # + the base-margin round
    x = toy_events(fold_dir)
    np.testing.assert_allclose(read_weights(path).response(x), model.predict(x), atol=1e-6)


def test_python_api_exports_tmva_weight_files_as_the_command_does(
    trained_models, fold_dir, tmp_path
):
    import htt_tmva

    config = copy_bdt_models(trained_models, fold_dir, tmp_path)
    written = htt_tmva.export(config, format="tmva", engine="bdt")
    assert [p.name for p in written] == [f"fold{f}_bdt_model.weights.xml" for f in (0, 1)]
    with pytest.raises(OutputError, match="exists already"):
        htt_tmva.export(config, 0, format="tmva", engine="bdt")
    assert htt_tmva.export(config, 0, format="tmva", engine="bdt", overwrite=True) == written[:1]
