"""The TMVA weight-file reader: real TMVA files against TMVA's own TestTree responses, and
small hand-built weight files for what the real files do not cover."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import numpy as np
import pytest

from htt_tmva.errors import MissingBranchError, TmvaModelFileError, TmvaWeightsError
from htt_tmva.tmva import SUPPORTED_METHODS, read_weights

# ../shared from the repository root; HTT_TMVA_TMVA_DATA points elsewhere (e.g. from a worktree)
TMVA_DATA = Path(
    os.environ.get("HTT_TMVA_TMVA_DATA")
    or Path(__file__).resolve().parents[1].parent / "shared" / "data" / "tmva"
)
PAIRS = json.loads((TMVA_DATA / "pairs.json").read_text()) if TMVA_DATA.is_dir() else []
needs_data = pytest.mark.skipif(
    not TMVA_DATA.is_dir(), reason=f"real TMVA files not present at {TMVA_DATA}"
)


# --------------------------------------------------------------------------------------------
# Real TMVA weight files against the TestTree of the same training
# --------------------------------------------------------------------------------------------


def _column(tree, name: str) -> np.ndarray:
    """A TestTree branch as numpy; a leaf-list branch gives its fields (first leaf for inputs)."""
    array = tree[name].array(library="np")
    return array


def _tree_inputs_and_response(pair, model):
    uproot = pytest.importorskip("uproot")
    tree = uproot.open(TMVA_DATA / pair["root"])[pair["tree"]]
    columns = []
    for name in model.variables:
        values = _column(tree, name)
        if values.dtype.names:  # e.g. '_Ht_2500e3__2500e3:Ht': the value is the first leaf
            values = values[values.dtype.names[0]]
        columns.append(np.asarray(values, dtype=np.float32))
    response = _column(tree, pair["branch"])
    if response.dtype.names:  # multiclass: one leaf per class, in class order
        assert list(response.dtype.names) == model.classes
        response = np.stack([response[n] for n in response.dtype.names], axis=1)
    return np.stack(columns, axis=1), response.astype(np.float64)


def _pair_id(pair) -> str:
    return f"{pair['id']}-{pair['method'].replace('::', '_')}"


@needs_data
@pytest.mark.parametrize("pair", PAIRS, ids=[_pair_id(p) for p in PAIRS])
def test_real_weight_file_reproduces_tmva_test_tree(pair):
    method = pair["method"].split("::")[0]
    if method not in SUPPORTED_METHODS:
        with pytest.raises(TmvaWeightsError, match=f"method '{method}'.*BDT, MLP"):
            read_weights(TMVA_DATA / pair["xml"])
        return
    model = read_weights(TMVA_DATA / pair["xml"])
    assert model.classes == pair["classes"]
    assert model.variables == [v["internal"] for v in pair["variables"]]
    x, expected = _tree_inputs_and_response(pair, model)
    got = model.response(x)
    assert got.shape == expected.shape
    np.testing.assert_array_equal(np.isnan(got), np.isnan(expected))
    finite = ~np.isnan(expected)
    diff = np.abs(got - expected)[finite]
    largest = float(diff.max()) if diff.size else float("nan")
    print(
        f"pair {pair['id']} {pair['method']}: {x.shape[0]} events, largest |diff| "
        f"{largest:.3g}, NaN in {int(np.isnan(expected).sum())} events (as in TMVA)"
    )
    tolerance = np.maximum(1e-5, 1e-5 * np.abs(expected[finite]))
    assert np.all(diff <= tolerance), f"largest difference {largest:.3g}"


@needs_data
def test_linear_discriminant_of_the_old_tmva_file_matches_its_test_tree():
    """The 4.1.2 job of pair #7 also trained LD (not one of the 16 pairs, same TestTree)."""
    pair = next(p for p in PAIRS if p["id"] == 7)
    model = read_weights(TMVA_DATA / Path(pair["xml"]).parent / "TMVAClassification_LD.weights.xml")
    x, expected = _tree_inputs_and_response({**pair, "branch": "LD"}, model)
    np.testing.assert_allclose(model.response(x), expected, atol=1e-5, rtol=1e-5)


@needs_data
def test_pykeras_model_file_is_found_relative_to_the_job_folder():
    pair = next(p for p in PAIRS if p["id"] == 14)  # FilenameTrainedModel is repo-root relative
    model = read_weights(TMVA_DATA / pair["xml"])
    assert model._method.path.resolve() == (TMVA_DATA / pair["model"]).resolve()
    assert model._method.backend == "numpy"


# --------------------------------------------------------------------------------------------
# Hand-built weight files
# --------------------------------------------------------------------------------------------


def _xml(
    method: str,
    weights: str,
    *,
    variables=("x", "y"),
    classes=("Signal", "Background"),
    analysis="Classification",
    options: dict | None = None,
    transformations: str = '<Transformations NTransformations="0"/>',
    tmva="4.2.1 [262657]",
    root="6.30/02 [401922]",
    expressions=None,
) -> str:
    expressions = expressions or variables
    opts = "\n".join(
        f'    <Option name="{k}" modified="Yes">{v}</Option>' for k, v in (options or {}).items()
    )
    var = "\n".join(
        f'    <Variable VarIndex="{i}" Expression="{e}" Label="{v}" Title="{v}" Unit="" '
        f'Internal="{v}" Type="F" Min="-1" Max="1"/>'
        for i, (v, e) in enumerate(zip(variables, expressions))
    )
    cls = "\n".join(f'    <Class Name="{c}" Index="{i}"/>' for i, c in enumerate(classes))
    return f"""<?xml version="1.0"?>
<MethodSetup Method="{method}">
  <GeneralInfo>
    <Info name="TMVA Release" value="{tmva}"/>
    <Info name="ROOT Release" value="{root}"/>
    <Info name="AnalysisType" value="{analysis}"/>
  </GeneralInfo>
  <Options>
{opts}
  </Options>
  <Variables NVar="{len(variables)}">
{var}
  </Variables>
  <Spectators NSpec="0"/>
  <Classes NClass="{len(classes)}">
{cls}
  </Classes>
  {transformations}
  <MVAPdfs/>
  {weights}
</MethodSetup>
"""


def _write(tmp_path: Path, text: str, name: str = "job.weights.xml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def _node(pos, depth, ivar=-1, cut=0.0, ctype=1, ntype=0, purity=0.5, res=0.0, children=""):
    return (
        f'<Node pos="{pos}" depth="{depth}" NCoef="0" IVar="{ivar}" Cut="{cut}" cType="{ctype}" '
        f'res="{res}" rms="0" purity="{purity}" nType="{ntype}">{children}</Node>'
    )


def _stump(ivar, cut, left, right, *, ctype=1, key="res", boost=1.0, itree=0):
    """A depth-1 tree: left leaf value ``left`` (x < cut for cType 1), right ``right``."""
    leaf = {
        "res": lambda v, p: _node(p, 1, ntype=1, res=v),
        "purity": lambda v, p: _node(p, 1, ntype=1 if v > 0.5 else -1, purity=v),
        "nType": lambda v, p: _node(p, 1, ntype=int(v)),
    }[key]
    return (
        f'<BinaryTree type="DecisionTree" boostWeight="{boost}" itree="{itree}">'
        + _node("s", 0, ivar, cut, ctype, children=leaf(left, "l") + leaf(right, "r"))
        + "</BinaryTree>"
    )


def _bdt(trees, boost_type, analysis="Classification", **kw) -> str:
    options = {"BoostType": boost_type, **kw.pop("options", {})}
    weights = f'<Weights NTrees="{len(trees)}" AnalysisType="0">{"".join(trees)}</Weights>'
    return _xml("BDT::BDT", weights, analysis=analysis, options=options, **kw)


def test_multiclass_bdtg_sums_trees_per_class_in_turn_then_softmax(tmp_path):
    classes = ("a", "b", "c")
    # two boosting rounds, one tree per class per round, taken in turn (tree i -> class i % 3)
    leaves = [(0.1, -0.2), (0.3, 0.05), (-0.4, 0.2), (0.2, 0.1), (-0.1, 0.4), (0.05, -0.3)]
    cuts = [(0, 0.0), (1, 0.5), (0, -0.5), (1, 0.0), (0, 0.25), (1, -0.25)]
    trees = [
        _stump(v, c, lo, hi, itree=i) for i, ((v, c), (lo, hi)) in enumerate(zip(cuts, leaves))
    ]
    path = _write(tmp_path, _bdt(trees, "Grad", analysis="Multiclass", classes=classes))
    model = read_weights(path)
    assert model.multiclass and model.classes == list(classes)
    x = np.array([[-1.0, -1.0], [0.0, 0.5], [0.3, -0.1], [1.0, 1.0]], dtype=np.float32)
    expected = []
    for event in x:
        sums = [0.0, 0.0, 0.0]
        for i, ((v, c), (lo, hi)) in enumerate(zip(cuts, leaves)):
            sums[i % 3] += hi if event[v] >= c else lo
        expected.append(
            [
                1 / (1 + sum(math.exp(sums[j] - sums[k]) for j in range(3) if j != k))
                for k in range(3)
            ]
        )
    np.testing.assert_allclose(model.response(x), expected, rtol=1e-6)


def test_binary_bdtg_maps_the_sum_through_tmvas_sigmoid(tmp_path):
    trees = [_stump(0, 0.0, -0.3, 0.4), _stump(1, 1.0, 0.1, -0.2, itree=1)]
    model = read_weights(_write(tmp_path, _bdt(trees, "Grad")))
    x = np.array([[-1, 0], [1, 2], [0, 1]], dtype=np.float32)
    total = np.array([-0.3 + 0.1, 0.4 - 0.2, 0.4 - 0.2])
    np.testing.assert_allclose(model.response(x), 2 / (1 + np.exp(-2 * total)) - 1, rtol=1e-12)


def test_adaboost_purity_leaves_and_inverted_cut_direction(tmp_path):
    trees = [
        _stump(0, 0.0, 0.2, 0.9, key="purity", boost=0.5),
        _stump(1, 0.0, 0.3, 0.7, key="purity", boost=1.5, ctype=0, itree=1),  # inverted
    ]
    model = read_weights(
        _write(tmp_path, _bdt(trees, "AdaBoost", options={"UseYesNoLeaf": "False"}))
    )
    x = np.array([[-1, -1], [1, 1], [0, 0], [np.nan, np.nan]], dtype=np.float32)
    # cType=0: x >= cut goes LEFT (x = cut too); NaN: `x >= cut` is false, so NaN goes left
    # at a cType=1 node and right at a cType=0 node, as in TMVA
    first = np.array([0.2, 0.9, 0.9, 0.2])
    second = np.array([0.7, 0.3, 0.3, 0.7])
    np.testing.assert_allclose(model.response(x), (0.5 * first + 1.5 * second) / 2.0)


def test_adaboost_infinite_boost_weight_gives_nan_like_tmva(tmp_path):
    trees = [
        _stump(0, 0.0, -1, 1, key="nType", boost=0.7),
        _stump(1, 0.0, -1, 1, key="nType", boost="inf", itree=1),
    ]
    model = read_weights(_write(tmp_path, _bdt(trees, "AdaBoost")))
    assert np.isnan(model.response(np.array([[1, 1], [-1, 1]], dtype=np.float32))).all()


def test_bdt_compares_on_float32_inputs_as_tmva(tmp_path):
    cut = float(np.float32(0.1))
    model = read_weights(_write(tmp_path, _bdt([_stump(0, cut, -1, 1, key="nType")], "AdaBoost")))
    x = np.array([[0.1, 0.0], [np.nextafter(np.float32(0.1), np.float32(0)), 0]], dtype=np.float64)
    np.testing.assert_array_equal(model.response(x), [1.0, -1.0])


def _fisher(coefficients) -> str:
    body = "".join(f'<Coefficient Index="{i}" Value="{c}"/>' for i, c in enumerate(coefficients))
    return f'<Weights NCoeff="{len(coefficients)}">{body}</Weights>'


def test_normalize_alone_uses_the_all_classes_block(tmp_path):
    transform = """<Transformations NTransformations="1"><Transform Name="Normalize">
      <Class ClassIndex="0"><Ranges><Range Index="0" Min="0" Max="1"/><Range Index="1" Min="0"
        Max="1"/></Ranges></Class>
      <Class ClassIndex="1"><Ranges><Range Index="0" Min="-5" Max="5"/><Range Index="1" Min="0"
        Max="2"/></Ranges></Class>
      <Class ClassIndex="2"><Ranges><Range Index="0" Min="-2" Max="6"/><Range Index="1" Min="1"
        Max="3"/></Ranges></Class></Transform></Transformations>"""
    path = _write(
        tmp_path, _xml("Fisher::Fisher", _fisher([0.5, 1.0, -2.0]), transformations=transform)
    )
    model = read_weights(path)
    assert model.transformations == ["Normalize"]
    x = np.array([[-2, 1], [6, 3], [2, 2]], dtype=np.float32)
    normed = np.stack([2 * (x[:, 0] + 2) / 8 - 1, 2 * (x[:, 1] - 1) / 2 - 1], axis=1)
    np.testing.assert_allclose(model.response(x), 0.5 + normed @ [1.0, -2.0], rtol=1e-6)


def test_pca_projects_on_the_eigenvectors_of_the_last_class_block(tmp_path):
    rotation = np.array([[0.6, -0.8], [0.8, 0.6]])
    mean = np.array([1.0, -1.0])
    transform = f"""<Transformations NTransformations="1"><Transform Name="PCA">
      <Statistics Class="Signal" ClassIndex="0" NRows="2">0 0</Statistics>
      <Statistics Class="Combined" ClassIndex="2" NRows="2">{mean[0]} {mean[1]}</Statistics>
      <Eigenvectors Class="Signal" ClassIndex="0" NRows="2" NCols="2">1 0 0 1</Eigenvectors>
      <Eigenvectors Class="Combined" ClassIndex="2" NRows="2" NCols="2">
        {" ".join(str(v) for v in rotation.ravel())}</Eigenvectors>
      </Transform></Transformations>"""
    path = _write(
        tmp_path, _xml("Fisher::Fisher", _fisher([0.0, 1.0, 10.0]), transformations=transform)
    )
    x = np.array([[1, -1], [2, 0], [-3, 4]], dtype=np.float32)
    pcs = (x - mean) @ rotation
    np.testing.assert_allclose(read_weights(path).response(x), pcs @ [1.0, 10.0], rtol=1e-6)


def test_ld_reads_its_indexed_coefficients(tmp_path):
    body = "".join(
        f'<Coefficient IndexOut="0" IndexCoeff="{i}" Value="{c}"/>'
        for i, c in enumerate([0.25, -1.0, 3.0])
    )
    path = _write(tmp_path, _xml("LD::LD", f'<Weights NOut="1" NCoeff="3">{body}</Weights>'))
    np.testing.assert_allclose(read_weights(path).response([[1.0, 2.0]]), [0.25 - 1.0 + 6.0])


def test_mlp_tanh_rule_follows_the_tmva_version():
    from htt_tmva.tmva.mlp import fast_tanh

    v = np.linspace(-6, 6, 1001)
    assert np.max(np.abs(fast_tanh(v) - np.tanh(v))) > 1e-6  # the two forms differ measurably
    assert np.max(np.abs(fast_tanh(v) - np.tanh(v))) < 1e-3
    assert fast_tanh(np.array([5.0]))[0] == 1.0


def test_unsupported_method_is_refused_naming_it_and_the_supported_ones(tmp_path):
    path = _write(tmp_path, _xml("Likelihood::Likelihood", "<Weights/>"))
    with pytest.raises(TmvaWeightsError) as info:
        read_weights(path)
    message = str(info.value)
    assert "'Likelihood'" in message and str(path) in message
    for method in ("BDT", "MLP", "DL", "PyKeras", "Fisher", "LD"):
        assert method in message


def test_malformed_xml_names_the_file(tmp_path):
    path = _write(tmp_path, _xml("Fisher::Fisher", _fisher([0, 1, 2]))[:-40])
    with pytest.raises(TmvaWeightsError, match="not well-formed XML") as info:
        read_weights(path)
    assert str(path) in str(info.value)


def test_other_xml_and_missing_file_are_refused(tmp_path):
    with pytest.raises(TmvaWeightsError, match="not a TMVA weight file"):
        read_weights(_write(tmp_path, "<?xml version='1.0'?><config/>"))
    with pytest.raises(TmvaWeightsError, match="does not exist"):
        read_weights(tmp_path / "absent.weights.xml")


def test_unknown_transformation_is_refused(tmp_path):
    transform = '<Transformations NTransformations="1"><Transform Name="Rarity"/></Transformations>'
    path = _write(tmp_path, _xml("Fisher::Fisher", _fisher([0, 1, 2]), transformations=transform))
    with pytest.raises(TmvaWeightsError, match="unknown variable transformation 'Rarity'"):
        read_weights(path)


def test_wrong_input_width_is_refused(tmp_path):
    model = read_weights(_write(tmp_path, _xml("Fisher::Fisher", _fisher([0, 1, 2]))))
    with pytest.raises(TmvaWeightsError, match=r"shape \(n, 2\)"):
        model.response(np.zeros((3, 3)))


def test_missing_keras_model_lists_the_paths_tried(tmp_path):
    job = tmp_path / "job" / "dataset" / "weights"
    job.mkdir(parents=True)
    text = _xml(
        "PyKeras::PyKeras",
        "",
        options={"FilenameTrainedModel": "dataset/weights/TrainedModel_PyKeras.h5"},
    )
    path = _write(job, text)
    with pytest.raises(TmvaModelFileError) as info:
        read_weights(path)
    message = str(info.value)
    assert str(path) in message
    assert str(tmp_path / "job" / "dataset" / "weights" / "TrainedModel_PyKeras.h5") in message


def test_keras3_h5_runs_with_numpy_node_0_for_two_classes_all_for_multiclass(tmp_path):
    keras = pytest.importorskip("keras")
    model = keras.Sequential(
        [
            keras.Input((2,)),
            keras.layers.Dense(8, activation="relu"),
            keras.layers.BatchNormalization(),
            keras.layers.Dense(4, activation="tanh"),
            keras.layers.Dropout(0.2),
            keras.layers.Dense(3, activation="softmax"),
        ]
    )
    (tmp_path / "dataset" / "weights").mkdir(parents=True)
    model.save(tmp_path / "TrainedModel.h5")
    x = np.random.default_rng(1).normal(size=(50, 2)).astype(np.float32)
    expected = model.predict(x, verbose=0)
    for analysis, classes, want in (
        ("Classification", ("Signal", "Background"), expected[:, 0]),
        ("Multiclass", ("a", "b", "c"), expected),
    ):
        text = _xml(
            "PyKeras::PyKeras",
            "",
            analysis=analysis,
            classes=classes,
            options={"FilenameTrainedModel": "TrainedModel.h5"},
        )
        reader = read_weights(_write(tmp_path / "dataset" / "weights", text))
        assert reader._method.backend == "numpy"
        np.testing.assert_allclose(reader.response(x), want, atol=1e-5)


def test_expressions_are_evaluated_on_a_root_tree_with_integer_branches(tmp_path):
    from htt_tmva._root import root
    from htt_tmva.tmva import read_inputs

    ROOT = root()
    data = tmp_path / "ntuple.root"
    frame = (
        ROOT.RDataFrame(20)
        .Define("a", "float(rdfentry_) * 0.5f")
        .Define("n", "int(rdfentry_ % 5)")
        .Define("b", "double(rdfentry_) - 3.0")
    )
    frame.Snapshot("events", str(data), ["a", "n", "b"])
    text = _xml(
        "Fisher::Fisher",
        _fisher([0, 1, 1, 1, 1, 1]),
        variables=("s", "c", "n", "half", "f"),
        expressions=("a+b", "(n&gt;2)?2:n", "n", "n/2", "TMath::Sqrt(b+3)*a"),
    )
    model = read_weights(_write(tmp_path, text))
    x = read_inputs(data, "events", model)
    entry = np.arange(20)
    a, n, b = entry * 0.5, entry % 5, entry - 3.0
    # as TTreeFormula: branches read as double (n/2 of an int n is 2.5), the result as float
    expected = np.stack([a + b, np.minimum(n, 2), n, n / 2, np.sqrt(b + 3) * a], 1)
    np.testing.assert_array_equal(x, expected.astype(np.float32))
    wrong = _xml("Fisher::Fisher", _fisher([0, 1]), variables=("nn",), expressions=("nn",))
    with pytest.raises(MissingBranchError, match="did you mean 'n'"):
        read_inputs(data, "events", read_weights(_write(tmp_path, wrong, "w2.weights.xml")))
    unknown = _xml("Fisher::Fisher", _fisher([0, 1]), variables=("q",), expressions=("a*bb",))
    with pytest.raises(MissingBranchError, match="'bb' not found.*did you mean 'b'"):
        read_inputs(data, "events", read_weights(_write(tmp_path, unknown, "w3.weights.xml")))


def _unbalanced_tree(depth: int, itree: int, rng) -> str:
    """A tree whose left spine is ``depth`` deep, random cuts and cut directions."""

    def node(pos, level):
        if level == depth:
            return _node(pos, level, ntype=1, res=float(rng.normal()))
        right = _node("r", level + 1, ntype=-1, res=float(rng.normal()))
        return _node(
            pos,
            level,
            int(rng.integers(2)),
            float(rng.normal()),
            int(rng.integers(2)),
            children=node("l", level + 1) + right,
        )

    tree = f'<BinaryTree type="DecisionTree" boostWeight="1" itree="{itree}">'
    return tree + node("s", 0) + "</BinaryTree>"


def test_bdt_traversals_agree_compiled_numpy_padded_and_unpadded(tmp_path):
    from htt_tmva.engines import _forest_kernel

    rng = np.random.default_rng(7)
    trees = [_unbalanced_tree(int(d), i, rng) for i, d in enumerate(rng.integers(1, 9, 12))]
    path = _write(tmp_path, _bdt(trees, "Grad", analysis="Multiclass", classes=("a", "b", "c")))
    forest = read_weights(path)._method.forest
    x = rng.normal(size=(3000, 2)).astype(np.float32)
    x[::97, 1] = np.nan  # NaN goes left at cType=1 nodes and right at cType=0 nodes, as in TMVA
    numpy_sums = forest.sums(x, 3, compiled=False)
    # all add the trees in tree order: the same sums to the last bit
    np.testing.assert_array_equal(forest._general_sums(x, 3), numpy_sums)
    if _forest_kernel.kernel() is None:
        pytest.skip("compiled kernel unavailable (no C++ compiler, no ROOT)")
    np.testing.assert_array_equal(forest.sums(x, 3, compiled=True), numpy_sums)
    shallow = [_unbalanced_tree(int(d), i, rng) for i, d in enumerate(rng.integers(1, 5, 12))]
    path = _write(tmp_path, _bdt(shallow, "Grad", analysis="Multiclass", classes=("a", "b", "c")))
    forest = read_weights(path)._method.forest  # padded to depth <= 4: contiguous selects
    np.testing.assert_array_equal(forest.sums(x, 3, compiled=True), forest.sums(x, 3, False))


@needs_data
def test_real_bdt_compiled_kernel_matches_tmva_test_tree():
    from htt_tmva.engines import _forest_kernel

    if _forest_kernel.kernel() is None:
        pytest.skip("compiled kernel unavailable (no C++ compiler, no ROOT)")
    pair = next(p for p in PAIRS if p["id"] == 4)
    model = read_weights(TMVA_DATA / pair["xml"])
    x, expected = _tree_inputs_and_response(pair, model)
    np.testing.assert_allclose(model._method.evaluate(x, compiled=True), expected, atol=1e-7)


def test_numbers_that_do_not_parse_are_a_weights_error_naming_the_file(tmp_path):
    body = '<Coefficient Index="0" Value="0"/><Coefficient Index="1" Value="one"/>'
    path = _write(tmp_path, _xml("Fisher::Fisher", f"<Weights>{body}</Weights>", variables=("x",)))
    with pytest.raises(TmvaWeightsError, match="Value='one'") as info:
        read_weights(path)
    assert str(path) in str(info.value)
    neurons = "".join(f'<Neuron NSynapses="1">{w}</Neuron>' for w in ("0.5", "x", "1"))
    layout = (
        f'<Weights><Layout NLayers="2"><Layer Index="0" NNeurons="3">{neurons}</Layer>'
        '<Layer Index="1" NNeurons="1"><Neuron NSynapses="0"/></Layer></Layout></Weights>'
    )
    with pytest.raises(TmvaWeightsError, match="malformed MLP"):
        read_weights(_write(tmp_path, _xml("MLP::MLP", layout), "mlp.weights.xml"))


def test_erfinv_without_scipy_matches_scipy(monkeypatch):
    import builtins
    import sys

    from htt_tmva.tmva.transforms import erfinv

    y = np.concatenate([np.linspace(-0.99999999, 0.99999999, 2001), [0.0, 1e-12, -0.5]])
    scipy_special = pytest.importorskip("scipy.special")
    expected = scipy_special.erfinv(y)
    real_import = builtins.__import__

    def no_scipy(name, *args, **kwargs):
        if name.startswith("scipy"):
            raise ImportError(name)
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_scipy)
    monkeypatch.delitem(sys.modules, "scipy.special", raising=False)
    np.testing.assert_allclose(erfinv(y), expected, rtol=1e-9, atol=1e-15)


def test_empty_and_integer_inputs(tmp_path):
    from htt_tmva.engines import _forest_kernel

    trees = [_stump(0, 0.5, -0.3, 0.4), _stump(1, 1.0, 0.1, -0.2, itree=1)]
    model = read_weights(_write(tmp_path, _bdt(trees, "Grad")))
    assert model.response(np.zeros((0, 2))).shape == (0,)
    if _forest_kernel.kernel() is not None:
        assert model._method.evaluate(np.zeros((0, 2)), compiled=True).shape == (0,)
    np.testing.assert_allclose(
        model.response(np.array([[1, 2]], dtype=np.int64)), 2 / (1 + np.exp(-2 * 0.2)) - 1
    )


@needs_data
def test_keras2_h5_also_loads_with_keras3_and_agrees_with_numpy():
    pytest.importorskip("keras")
    from htt_tmva.tmva.keras import _KerasModel, _NumpyStack

    pair = next(p for p in PAIRS if p["id"] == 11)  # Keras 2.13 file, Dense(64 relu) -> softmax
    path = TMVA_DATA / pair["model"]
    x = np.random.default_rng(3).normal(size=(200, 4)).astype(np.float32)
    np.testing.assert_allclose(_KerasModel(path)(x), _NumpyStack(path)(x), atol=1e-6)


def test_purity_of_early_tmva4_nodes_comes_from_ns_and_nb(tmp_path):
    leaves = (
        '<Node pos="l" depth="1" IVar="-1" Cut="0" cType="1" nS="3" nB="1" nType="1"/>'
        '<Node pos="r" depth="1" IVar="-1" Cut="0" cType="1" nS="1" nB="4" nType="-1"/>'
    )
    tree = (
        '<BinaryTree type="DecisionTree" boostWeight="1" itree="0">'
        f'<Node pos="s" depth="0" IVar="0" Cut="0.5" cType="1" nS="4" nB="5" nType="0">{leaves}'
        "</Node></BinaryTree>"
    )
    text = _bdt([tree], "AdaBoost", options={"UseYesNoLeaf": "False"}, tmva="4.1.0 [262400]")
    model = read_weights(_write(tmp_path, text))
    np.testing.assert_allclose(model.response(np.array([[0.0, 0], [1.0, 0]])), [0.75, 0.2])


def test_importing_the_reader_loads_neither_root_nor_tensorflow():
    import subprocess
    import sys

    code = (
        "import sys, htt_tmva.tmva, htt_tmva.tmva.bdt, htt_tmva.tmva.keras, htt_tmva.tmva.mlp; "
        "print(sorted({'ROOT', 'tensorflow', 'keras', 'cppyy'} & set(sys.modules)))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_keras_functional_chain_runs_with_numpy_and_a_branching_model_with_keras(tmp_path):
    keras = pytest.importorskip("keras")
    from htt_tmva.tmva.keras import PyKerasMethod

    inputs = keras.Input((2,))
    hidden = keras.layers.Dense(5, activation="tanh")(inputs)
    chain = keras.Model(inputs, keras.layers.Dense(2, activation="softmax")(hidden))
    skip = keras.layers.Concatenate()([hidden, inputs])
    branching = keras.Model(inputs, keras.layers.Dense(2, activation="softmax")(skip))
    x = np.random.default_rng(5).normal(size=(20, 2)).astype(np.float32)
    for name, model, backend in (("chain", chain, "numpy"), ("branch", branching, "keras")):
        model.save(tmp_path / f"{name}.h5")
        text = _xml("PyKeras::PyKeras", "", options={"FilenameTrainedModel": f"{name}.h5"})
        reader = read_weights(_write(tmp_path, text, f"{name}.weights.xml"))
        assert isinstance(reader._method, PyKerasMethod) and reader._method.backend == backend
        np.testing.assert_allclose(reader.response(x), model.predict(x, verbose=0)[:, 0], atol=1e-5)
