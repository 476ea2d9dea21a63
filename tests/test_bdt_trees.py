"""XGBoost loads tree models without checking them: htt_tmva refuses, naming the file, trees
whose children or features are out of range or that hold a cycle, before any walk."""

from __future__ import annotations

import json

import numpy as np
import pytest

from htt_tmva.engines.bdt import BdtModel
from htt_tmva.engines.manifest import Manifest
from htt_tmva.errors import ModelError

xgboost = pytest.importorskip("xgboost")


def _set(key, index, value):
    return lambda tree: tree[key].__setitem__(index, value)


DAMAGES = {
    "cycle": (
        lambda tree: (_set("left_children", 3, 1)(tree), _set("right_children", 3, 4)(tree)),
        "node 1 is reached twice",
    ),
    "root as a child": (_set("left_children", 1, 0), "children 0, 4 outside 1..6"),
    "child out of range": (_set("right_children", 2, 99), "children 5, 99 outside 1..6"),
    "negative child": (_set("left_children", 0, -7), "children -7, 2 outside"),
    "feature out of range": (_set("split_indices", 0, 7), "split feature 7 outside 0..1"),
    "short arrays": (lambda tree: tree["split_conditions"].pop(), "different lengths"),
}


@pytest.fixture(scope="module")
def model_document() -> dict:
    rng = np.random.default_rng(1)
    x, y = rng.normal(size=(300, 2)), rng.integers(0, 3, 300)
    params = {"objective": "multi:softprob", "num_class": 3, "max_depth": 2, "nthread": 1}
    booster = xgboost.train(params, xgboost.DMatrix(x, label=y), num_boost_round=2)
    return json.loads(bytes(booster.save_raw("json")))


def _model(path) -> BdtModel:
    manifest = Manifest("bdt", path.name, ["x", "y"], ["a", "b", "c"], 0, 2, [0], 1, "", "")
    return BdtModel(manifest, None, 1, path=path)


@pytest.mark.parametrize("damage", DAMAGES)
def test_damaged_trees_are_refused_naming_the_file(model_document, damage, tmp_path):
    from htt_tmva.export.spec import model_spec

    change, message = DAMAGES[damage]
    document = json.loads(json.dumps(model_document))
    tree = document["learner"]["gradient_booster"]["model"]["trees"][0]
    assert tree["left_children"] == [1, 3, 5, -1, -1, -1, -1]  # the layout the damages assume
    change(tree)
    path = tmp_path / "fold0_bdt_model.json"
    path.write_text(json.dumps(document))
    with pytest.raises(ModelError, match=f"{path}: not a valid XGBoost tree model .*{message}"):
        model_spec(_model(path))  # the compiled path (C++ export)
    with pytest.raises(ModelError, match="tree 0"):
        _model(path).predict(np.zeros((2, 2)))  # the Python path: XGBoost never reads it
    booster = xgboost.Booster()
    try:
        booster.load_model(str(path))
    except xgboost.core.XGBoostError:  # XGBoost's own check caught this one
        return
    from htt_tmva.engines.xgboost_trees import read_forest

    with pytest.raises(ModelError, match=message):  # the TMVA export
        read_forest(booster, None, str(path))


def test_a_sound_model_passes_and_predicts(model_document, tmp_path):
    path = tmp_path / "fold0_bdt_model.json"
    path.write_text(json.dumps(model_document))
    assert _model(path).predict(np.zeros((2, 2))).shape == (2, 3)


PREDICT = """
import sys
import numpy as np
from htt_tmva.engines.bdt import BdtModel
from htt_tmva.engines.manifest import Manifest
path, best = sys.argv[1], None if sys.argv[2] == "-" else int(sys.argv[2])
manifest = Manifest("bdt", "m.json", ["x", "y", "z"], ["a", "b", "c"], 0, 2, [0], 1, "", "")
manifest.details["best_iteration"] = best
x = np.load(sys.argv[3])
np.save(sys.argv[4], BdtModel(manifest, None, 1, path=path).predict(x))
print("xgboost imported" if "xgboost" in sys.modules else "no xgboost")
"""


@pytest.mark.parametrize("events, best", [(30000, None), (300, None), (300, 3)])
def test_predictions_walk_the_trees_without_xgboost_as_xgboost_predicts(tmp_path, events, best):
    """Finite inputs: the project's tree walk (compiled above 20 k events, numpy below), no
    XGBoost import, XGBoost's probabilities to float precision, best_iteration kept;
    NaN inputs: XGBoost itself (each node's default direction)."""
    import subprocess
    import sys

    rng = np.random.default_rng(5)
    x = rng.normal(size=(2000, 3))
    y = (x[:, 0] > 0).astype(int) + (x[:, 1] > 0.5)
    params = {"objective": "multi:softprob", "num_class": 3, "max_depth": 4, "nthread": 1}
    booster = xgboost.train(params, xgboost.DMatrix(x, label=y), num_boost_round=8)
    path = tmp_path / "m.json"
    booster.save_model(str(path))
    test = rng.normal(size=(events, 3)).astype(np.float32)
    rounds = (0, best + 1) if best is not None else (0, 0)
    for inputs, walked in ((test, True), (np.where(test > 1.5, np.nan, test), False)):
        np.save(tmp_path / "x.npy", inputs)
        command = [sys.executable, "-c", PREDICT, str(path), str(best) if best else "-"]
        command += [str(tmp_path / "x.npy"), str(tmp_path / "p.npy")]
        result = subprocess.run(command, capture_output=True, text=True)
        assert result.returncode == 0, result.stderr
        assert result.stdout.strip() == ("no xgboost" if walked else "xgboost imported")
        got = np.load(tmp_path / "p.npy")
        expected = booster.predict(xgboost.DMatrix(inputs), iteration_range=rounds)
        assert got.dtype == np.float32 and got.shape == (events, 3)
        np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)
        if not walked:
            np.testing.assert_array_equal(got, expected)
