"""TMVA weight files exported to C++ and JSON: the compiled headers give what the Python
reader gives (float32-rounded, the header's return type) to 1e-5 relative, for every real TMVA
file of ../shared/data/tmva that the reader supports and for small hand-built files of each
transformation chain and method variant. All headers of a test module are compiled once,
into one program, and each model runs on a whole batch."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from tmva_files import REAL_FILES

from htt_tmva.errors import ExportError, ModelError
from htt_tmva.export.cpp import model_header
from htt_tmva.export.spec import model_spec
from htt_tmva.tmva import SUPPORTED_METHODS, read_weights

needs_gxx = pytest.mark.skipif(shutil.which("g++") is None, reason="no g++ on this machine")
PAIRS = json.loads((REAL_FILES / "pairs.json").read_text()) if REAL_FILES.is_dir() else []
needs_data = pytest.mark.skipif(
    not REAL_FILES.is_dir(), reason=f"real TMVA files not present at {REAL_FILES}"
)

DRIVER_HEAD = """#include <cstdio>
#include <cstring>
"""
DRIVER_CASE = """  if (std::strcmp(argv[1], "{ns}") == 0) {{
    std::array<double, {ns}::n_variables> x;
    while (std::fread(x.data(), sizeof(double), x.size(), stdin) == x.size()) {{
      const auto p = {ns}::predict(x);
      std::fwrite(p.data(), sizeof(float), p.size(), stdout);
    }}
    return 0;
  }}
"""


def compile_models(specs: dict, folder: Path) -> Path:
    """One header per model (namespace = key) and one program that runs the model named by
    its argument on doubles from stdin; compiled once with g++ -O2 -Wall -Wextra -Werror."""
    includes, cases = [], []
    for name, spec in specs.items():
        (folder / f"{name}.hxx").write_text(model_header(spec, name))
        includes.append(f'#include "{name}.hxx"')
        cases.append(DRIVER_CASE.format(ns=name))
    source = "\n".join(
        [DRIVER_HEAD, *includes, "int main(int argc, char** argv) {", "  if (argc < 2) return 2;"]
        + cases
        + ["  return 3;", "}"]
    )
    (folder / "main.cpp").write_text(source)
    subprocess.run(
        ["g++", "-std=c++17", "-O2", "-Wall", "-Wextra", "-Werror", "main.cpp", "-o", "main"],
        cwd=folder,
        check=True,
        capture_output=True,
        timeout=600,
    )
    return folder / "main"


def run_model(program: Path, name: str, x: np.ndarray, n_outputs: int) -> np.ndarray:
    x = np.ascontiguousarray(x, dtype=np.float64)
    result = subprocess.run([str(program), name], input=x.tobytes(), capture_output=True)
    assert result.returncode == 0, result.stderr
    return np.frombuffer(result.stdout, dtype=np.float32).reshape(len(x), n_outputs)


def assert_matches_reader(got: np.ndarray, model, x: np.ndarray) -> None:
    """The header returns floats: compare with the reader's response rounded to float32, to
    1e-5 relative; 1e-6 absolute covers outputs near 0 that come out of cancellations (a
    transformed float input one ulp apart: numpy's BLAS sums a matrix product in another
    order than the header's loop)."""
    expected = np.asarray(model.response(x), dtype=np.float64).reshape(len(x), -1)
    expected = expected.astype(np.float32).astype(np.float64)
    assert got.shape == expected.shape
    np.testing.assert_array_equal(np.isnan(got), np.isnan(expected))
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)


# --------------------------------------------------------------------------------------------
# Real TMVA files
# --------------------------------------------------------------------------------------------


def _supported(pair) -> bool:
    return pair["method"].split("::")[0] in SUPPORTED_METHODS


def _tree_inputs(pair, model) -> np.ndarray:
    uproot = pytest.importorskip("uproot")
    tree = uproot.open(REAL_FILES / pair["root"])[pair["tree"]]
    columns = []
    for name in model.variables:
        values = tree[name].array(library="np")
        if values.dtype.names:  # '_Ht_2500e3__2500e3:Ht': the value is the first leaf
            values = values[values.dtype.names[0]]
        columns.append(np.asarray(values, dtype=np.float32))
    return np.stack(columns, axis=1).astype(np.float64)


def _real_files() -> dict:
    """name -> (weight file, pair or None); LD of pair #7's job is not a pair of its own."""
    files = {f"pair{p['id']}": (REAL_FILES / p["xml"], p) for p in PAIRS if _supported(p)}
    pair7 = next((p for p in PAIRS if p["id"] == 7), None)
    if pair7 is not None:
        ld = REAL_FILES / Path(pair7["xml"]).parent / "TMVAClassification_LD.weights.xml"
        files["pair7_LD"] = (ld, pair7)
    return files


REAL = _real_files()


@pytest.fixture(scope="module")
def real_program(tmp_path_factory):
    if not REAL_FILES.is_dir():
        pytest.skip(f"real TMVA files not present at {REAL_FILES}")
    if shutil.which("g++") is None:
        pytest.skip("no g++ on this machine")
    models = {name: read_weights(path) for name, (path, _) in REAL.items()}
    specs = {name: model_spec(m) for name, m in models.items()}
    return compile_models(specs, tmp_path_factory.mktemp("real_tmva")), models, specs


@needs_data
@needs_gxx
@pytest.mark.parametrize("name", sorted(REAL))
def test_real_tmva_file_exports_to_cpp_equal_to_the_reader(real_program, name):
    program, models, specs = real_program
    model, pair = models[name], REAL[name][1]
    x = _tree_inputs(pair, model)
    got = run_model(program, name, x, len(specs[name]["classes"]))
    assert_matches_reader(got, model, x)
    if model.multiclass:
        assert specs[name]["classes"] == model.classes
    else:  # two-class jobs: one output, EvaluateMVA's response
        assert specs[name]["classes"] == ["response"] and got.shape[1] == 1
    assert specs[name]["variables"] == model.expressions


@needs_data
def test_unsupported_real_method_is_refused_naming_it_and_the_supported_ones():
    unsupported = [p for p in PAIRS if not _supported(p)]
    assert unsupported, "pairs.json lists PDEFoam"
    for pair in unsupported:
        method = pair["method"].split("::")[0]
        with pytest.raises(ModelError, match=f"method '{method}'.*supported methods: BDT, MLP"):
            model_spec(read_weights(REAL_FILES / pair["xml"]))


@needs_data
@pytest.mark.parametrize("name", sorted(REAL))
def test_json_of_a_real_file_round_trips_to_the_same_header(name):
    spec = model_spec(read_weights(REAL[name][0]))
    again = json.loads(json.dumps(spec))
    assert again == spec or name == "pair6"  # pair 6 holds NaN (an infinite boost weight)
    assert model_header(again, "m") == model_header(spec, "m")


@needs_data
def test_header_records_expressions_internal_names_and_the_job_classes():
    path, _ = REAL["pair9"]  # (Ht>2500e3)?2500e3:Ht and an integer variable
    header = model_header(model_spec(read_weights(path)), "m")
    assert "//   0: (Ht>2500e3)?2500e3:Ht" in header
    assert 'variables[n_variables] = {"(Ht>2500e3)?2500e3:Ht", "n_btags_70"' in header
    assert 'tmva_internal_names[8] = {"_Ht_2500e3__2500e3:Ht"' in header
    assert 'tmva_classes[2] = {"Signal", "Background"}' in header
    assert "tmva_two_class = true" in header
    assert 'classes[n_classes] = {"response"}' in header


# --------------------------------------------------------------------------------------------
# Hand-built weight files: every transformation, chained, and the method variants
# --------------------------------------------------------------------------------------------

VARIABLES = ("x", "y", "z")


def _xml(method, weights, *, classes=("Signal", "Background"), options=None, transforms=()):
    analysis = "Multiclass" if len(classes) > 2 else "Classification"
    opts = "".join(f'<Option name="{k}">{v}</Option>' for k, v in (options or {}).items())
    var = "".join(
        f'<Variable VarIndex="{i}" Expression="{v}" Label="{v}" Title="{v}" Unit="" '
        f'Internal="{v}" Type="F" Min="-1" Max="1"/>'
        for i, v in enumerate(VARIABLES)
    )
    cls = "".join(f'<Class Name="{c}" Index="{i}"/>' for i, c in enumerate(classes))
    return f"""<?xml version="1.0"?>
<MethodSetup Method="{method}"><GeneralInfo>
<Info name="TMVA Release" value="4.2.1 [262657]"/>
<Info name="ROOT Release" value="6.24/04 [399364]"/>
<Info name="AnalysisType" value="{analysis}"/></GeneralInfo>
<Options>{opts}</Options><Variables NVar="3">{var}</Variables><Spectators NSpec="0"/>
<Classes NClass="{len(classes)}">{cls}</Classes>
<Transformations NTransformations="{len(transforms)}">{"".join(transforms)}</Transformations>
<MVAPdfs/>{weights}</MethodSetup>"""


def _selection(columns) -> str:
    inputs = "".join(f'<Input Type="Variable" Label="{VARIABLES[c]}"/>' for c in columns)
    return f'<Selection><Input NInputs="{len(columns)}">{inputs}</Input></Selection>'


def _numbers(values) -> str:
    return " ".join(repr(float(v)) for v in np.ravel(values))


def normalize(columns=(0, 1, 2)) -> str:
    blocks = []
    for k, (lo, hi) in enumerate([(-1.0, 1.0), (-3.0, 2.5), (-2.5, 3.5)]):  # last: all classes
        ranges = "".join(
            f'<Range Index="{j}" Min="{lo + 0.1 * j}" Max="{hi - 0.2 * j}"/>'
            for j in range(len(columns))
        )
        blocks.append(f'<Class ClassIndex="{k}"><Ranges>{ranges}</Ranges></Class>')
    return f'<Transform Name="Normalize">{_selection(columns)}{"".join(blocks)}</Transform>'


def decorrelate(columns=(0, 1, 2)) -> str:
    n = len(columns)
    rng = np.random.default_rng(3)
    matrices = [np.eye(n), np.eye(n) + 0.3 * rng.normal(size=(n, n))]  # the last one is used
    body = "".join(f'<Matrix Rows="{n}" Columns="{n}">{_numbers(m)}</Matrix>' for m in matrices)
    return f'<Transform Name="Decorrelation">{_selection(columns)}{body}</Transform>'


def pca(columns=(0, 1, 2)) -> str:
    n = len(columns)
    q, _ = np.linalg.qr(np.random.default_rng(4).normal(size=(n, n)))
    mean = np.linspace(-0.5, 0.5, n)
    body = (
        f'<Statistics ClassIndex="0" NRows="{n}">{_numbers(np.zeros(n))}</Statistics>'
        f'<Statistics ClassIndex="2" NRows="{n}">{_numbers(mean)}</Statistics>'
        f'<Eigenvectors ClassIndex="0" NRows="{n}" NCols="{n}">{_numbers(np.eye(n))}'
        f'</Eigenvectors><Eigenvectors ClassIndex="2" NRows="{n}" NCols="{n}">{_numbers(q)}'
        "</Eigenvectors>"
    )
    return f'<Transform Name="PCA">{_selection(columns)}{body}</Transform>'


def gauss(columns=(0, 1, 2), flat=False, interpolation=1, equidistant=False) -> str:
    variables = []
    for j, _ in enumerate(columns):
        blocks = []
        for k in (0, 1):  # the last block (all classes) is used
            n = 40 + 7 * j + k
            if equidistant:
                binning, edges_xml = f'XMin="{-3.0 - j}" XMax="{3.0 + 0.5 * j}"', ""
            else:
                edges = np.sort(np.random.default_rng(10 * j + k).normal(size=n + 1))
                binning = f'XMin="{edges[0]}" XMax="{edges[-1]}"'
                edges_xml = (
                    f'<HistogramBinning NBins="{n + 1}">{_numbers(edges)}</HistogramBinning>'
                )
            contents = np.cumsum(np.random.default_rng(j + k).uniform(0.2, 1.0, n))
            contents = (contents / contents[-1]).astype(np.float32)
            blocks.append(
                f'<CumulativePDF_cls{k}><PDF Name="p" MinNSmooth="0" MaxNSmooth="0" '
                f'InterpolMethod="{interpolation}"><Histogram Name="h" NBins="{n}" {binning} '
                f'HasEquidistantBins="{int(equidistant)}">{_numbers(contents)}</Histogram>'
                f"{edges_xml}</PDF></CumulativePDF_cls{k}>"
            )
        variables.append(f'<Variable VarIndex="{j}">{"".join(blocks)}</Variable>')
    kind = "Flat" if flat else "Gauss"
    return (
        f'<Transform Name="{"Uniform" if flat else "Gauss"}" FlatOrGauss="{kind}">'
        f"{_selection(columns)}{''.join(variables)}</Transform>"
    )


def fisher(transforms=()) -> str:
    body = "".join(
        f'<Coefficient Index="{i}" Value="{c}"/>' for i, c in enumerate([0.3, 1.0, -0.7, 0.4])
    )
    return _xml("Fisher::Fisher", f'<Weights NCoeff="4">{body}</Weights>', transforms=transforms)


def mlp(classes=("Signal", "Background"), neuron="tanh", estimator="MSE", transforms=()) -> str:
    rng = np.random.default_rng(7)
    n_out = len(classes) if len(classes) > 2 else 1
    sizes = [4, 6, n_out]  # with the bias neurons of the input and hidden layers
    layers = []
    for index, size in enumerate(sizes):
        if index == len(sizes) - 1:
            neurons = "".join('<Neuron NSynapses="0"/>' for _ in range(size))
        else:
            n_next = sizes[index + 1] - (1 if index + 1 < len(sizes) - 1 else 0)
            neurons = "".join(
                f'<Neuron NSynapses="{n_next}">{_numbers(rng.normal(size=n_next))}</Neuron>'
                for _ in range(size)
            )
        layers.append(f'<Layer Index="{index}" NNeurons="{size}">{neurons}</Layer>')
    weights = f'<Weights><Layout NLayers="3">{"".join(layers)}</Layout></Weights>'
    options = {"NeuronType": neuron, "EstimatorType": estimator, "NeuronInputType": "sum"}
    return _xml("MLP::MLP", weights, classes=classes, options=options, transforms=transforms)


def dl(classes=("Signal", "Background"), output="S", codes=(3, 1), transforms=()) -> str:
    rng = np.random.default_rng(8)
    widths = [3, 5, 4, len(classes) if len(classes) > 2 else 1]
    layers = []
    for i, code in enumerate([*codes, 0]):
        n_in, n_out = widths[i], widths[i + 1]
        layers.append(
            f'<DenseLayer Width="{n_out}" ActivationFunction="{code}">'
            f'<Weights Rows="{n_out}" Columns="{n_in}">{_numbers(rng.normal(size=(n_out, n_in)))}'
            f'</Weights><Biases Rows="{n_out}" Columns="1">{_numbers(rng.normal(size=n_out))}'
            "</Biases></DenseLayer>"
        )
    weights = f'<Weights OutputFunction="{output}">{"".join(layers)}</Weights>'
    return _xml("DL::DL_CPU", weights, classes=classes, transforms=transforms)


def _tree(rng, depth: int, leaf, level: int = 0, pos: str = "s", p_leaf: float = 0.2) -> str:
    """A random tree; some nodes have cType=0 (inverted), leaves from ``leaf(rng)``."""
    if level == depth or (level > 0 and rng.uniform() < p_leaf):
        ntype, value = leaf(rng)
        return (
            f'<Node pos="{pos}" depth="{level}" NCoef="0" IVar="-1" Cut="0" cType="1" '
            f'res="{value}" purity="{value}" nType="{ntype}"/>'
        )
    children = "".join(_tree(rng, depth, leaf, level + 1, side, p_leaf) for side in "lr")
    return (
        f'<Node pos="{pos}" depth="{level}" NCoef="0" IVar="{rng.integers(3)}" '
        f'Cut="{rng.normal(scale=0.8)}" cType="{int(rng.uniform() > 0.3)}" res="0" purity="0.5" '
        f'nType="0">{children}</Node>'
    )


def bdt(boost="Grad", classes=("Signal", "Background"), yes_no=True, transforms=(), deep=False):
    """12 trees per output of depth 3 (walked padded), or deep and unbalanced (node walk)."""
    rng = np.random.default_rng(9)
    if boost == "Grad":
        leaf = lambda r: (1, r.normal(scale=0.3))  # noqa: E731
    elif yes_no:
        leaf = lambda r: (int(r.choice([-1, 1])), 0.5)  # noqa: E731
    else:
        leaf = lambda r: (1, r.uniform())  # noqa: E731
    trees = "".join(
        f'<BinaryTree type="DecisionTree" boostWeight="{rng.uniform(0.2, 1.5)}" itree="{i}">'
        f"{_tree(rng, 16, leaf, p_leaf=0.45) if deep else _tree(rng, 3, leaf)}</BinaryTree>"
        for i in range(12 * (len(classes) if len(classes) > 2 else 1))
    )
    options = {"BoostType": boost, "UseYesNoLeaf": str(yes_no)}
    weights = f'<Weights NTrees="0" AnalysisType="0">{trees}</Weights>'
    return _xml("BDT::BDT", weights, classes=classes, options=options, transforms=transforms)


THREE = ("a", "b", "c")
SYNTHETIC = {
    "fisher_N": lambda: fisher([normalize()]),
    "fisher_D": lambda: fisher([decorrelate()]),
    "fisher_P": lambda: fisher([pca()]),
    "fisher_G": lambda: fisher([gauss()]),
    "fisher_G_histogram": lambda: fisher([gauss(interpolation=0)]),
    "fisher_G_equidistant": lambda: fisher([gauss(equidistant=True)]),
    "fisher_U": lambda: fisher([gauss(flat=True)]),
    "fisher_D_G": lambda: fisher([decorrelate(), gauss()]),
    "fisher_N_P_G_subsets": lambda: fisher([normalize((0, 2)), pca((1, 2)), gauss((2, 0))]),
    "mlp_fast_tanh_multiclass_N": lambda: mlp(THREE, transforms=[normalize()]),
    "mlp_ce_sigmoid_two_class_G": lambda: mlp(
        neuron="sigmoid", estimator="CE", transforms=[gauss()]
    ),
    "mlp_relu_D": lambda: mlp(neuron="ReLU", transforms=[decorrelate()]),
    "mlp_radial": lambda: mlp(neuron="radial"),
    "dl_softmax_multiclass_P": lambda: dl(THREE, output="M", codes=(5, 6), transforms=[pca()]),
    "dl_sigmoid_two_class_N_G": lambda: dl(codes=(4, 2), transforms=[normalize(), gauss()]),
    "bdt_grad_multiclass_D_G": lambda: bdt("Grad", THREE, transforms=[decorrelate(), gauss()]),
    "bdt_grad_two_class": lambda: bdt("Grad"),
    "bdt_grad_deep_unbalanced_multiclass": lambda: bdt("Grad", THREE, deep=True),
    "bdt_adaboost_yes_no_N": lambda: bdt("AdaBoost", transforms=[normalize()]),
    "bdt_adaboost_purity_U": lambda: bdt("AdaBoost", yes_no=False, transforms=[gauss(flat=True)]),
}


def synthetic_inputs(n: int = 3000) -> np.ndarray:
    """Normal inputs, wide enough to leave the PDFs' ranges, with NaN, +-inf and 0 rows."""
    x = np.random.default_rng(12).normal(scale=1.6, size=(n, 3)).astype(np.float32)
    x[:4] = [[np.nan, 0.1, 0.2], [np.inf, -np.inf, 0.0], [0.0, 0.0, 0.0], [0.5, np.nan, -9.0]]
    return x.astype(np.float64)


@pytest.fixture(scope="module")
def synthetic_program(tmp_path_factory):
    if shutil.which("g++") is None:
        pytest.skip("no g++ on this machine")
    folder = tmp_path_factory.mktemp("synthetic_tmva")
    models = {}
    for name, build in SYNTHETIC.items():
        path = folder / f"{name}.weights.xml"
        path.write_text(build())
        models[name] = read_weights(path)
    specs = {name: model_spec(m) for name, m in models.items()}
    return compile_models(specs, folder), models, specs


@needs_gxx
@pytest.mark.parametrize("name", sorted(SYNTHETIC))
def test_synthetic_weight_file_exports_to_cpp_equal_to_the_reader(synthetic_program, name):
    program, models, specs = synthetic_program
    x = synthetic_inputs()
    got = run_model(program, name, x, len(specs[name]["classes"]))
    with np.errstate(all="ignore"):
        assert_matches_reader(got, models[name], x)
    assert np.isfinite(got[4:]).all()  # the checks above are not all NaN


def test_synthetic_chains_are_the_reader_chains(tmp_path):
    """The specs keep TMVA's order and kinds of transformations, with their class blocks."""
    path = tmp_path / "chain.weights.xml"
    path.write_text(fisher([normalize((0, 2)), pca((1, 2)), gauss((2, 0))]))
    spec = model_spec(read_weights(path))
    chain = spec["preprocessing"]["transformations"]
    assert [t["op"] for t in chain] == ["normalize", "linear", "gauss"]
    assert [t["columns"] for t in chain] == [[0, 2], [1, 2], [2, 0]]
    assert chain[0]["class"] == 2 and chain[1]["class"] == 2 and chain[2]["classes"] == [1, 1]
    assert spec["precision"] == "float64" and spec["tmva"]["method"] == "Fisher"


def test_json_of_synthetic_files_round_trips(tmp_path):
    for name, build in SYNTHETIC.items():
        path = tmp_path / f"{name}.weights.xml"
        path.write_text(build())
        spec = model_spec(read_weights(path))
        again = json.loads(json.dumps(spec))
        assert again == spec, name
        assert model_header(again, "m") == model_header(spec, "m"), name


def test_unknown_activation_in_a_spec_is_refused_by_name(tmp_path):
    path = tmp_path / "m.weights.xml"
    path.write_text(mlp())
    spec = model_spec(read_weights(path))
    spec["ops"][0]["activation"] = "mish"
    with pytest.raises(ExportError, match="activation 'mish' cannot be exported; supported: "):
        model_header(spec, "m")


def test_application_header_refuses_a_two_class_response(tmp_path):
    """apply refuses two-class weight files when it loads them; the compiled path's header
    refuses them too (one response, not one probability per class)."""
    from htt_tmva.export.cpp import application_header

    path = tmp_path / "m.weights.xml"
    path.write_text(fisher())
    spec = model_spec(read_weights(path))
    with pytest.raises(ExportError, match=r"outputs \['response'\], the application needs"):
        application_header([spec, spec], "m", list(VARIABLES), ["Signal", "Background"])


def test_tmva_header_in_root_interpreter(tmp_path):
    """Without a C++ compiler the application lets ROOT's interpreter compile the header."""
    from htt_tmva._root import root

    ROOT = root()
    x = synthetic_inputs(60)
    for name in ("bdt_grad_multiclass_D_G", "mlp_fast_tanh_multiclass_N"):
        path = tmp_path / f"{name}.weights.xml"
        path.write_text(SYNTHETIC[name]())
        model = read_weights(path)
        assert ROOT.gInterpreter.Declare(model_header(model_spec(model), f"interp_{name}"))
        predict = getattr(ROOT, f"interp_{name}").predict
        got = np.array([list(predict(np.asarray(row, dtype=np.float64))) for row in x])
        with np.errstate(all="ignore"):
            assert_matches_reader(got, model, x)


@needs_gxx
def test_pykeras_activations_and_layers_export_to_cpp_equal_to_the_reader(tmp_path):
    """A PyKeras job (Keras model saved as .h5, run with numpy by the reader) with every
    activation and activation layer the reader runs, after N,G transformations."""
    keras = pytest.importorskip("keras")
    layers = keras.layers
    model = keras.Sequential(
        [
            keras.Input((3,)),
            layers.Dense(6, activation="selu"),
            layers.Dense(6, activation="softplus"),
            layers.Dense(6, activation="swish"),
            layers.LeakyReLU(negative_slope=0.1),  # swish gives negative values
            layers.BatchNormalization(),
            layers.Dense(5, activation="softsign"),
            layers.ELU(alpha=0.7),
            layers.Dense(5, activation="hard_sigmoid"),
            layers.Dense(5, activation="exponential"),
            layers.Dense(4, activation="elu"),
            layers.Activation("tanh"),
            layers.ReLU(),
            layers.Dense(4, activation="sigmoid"),
            layers.Dense(3),
            layers.Softmax(),
        ]
    )
    # moving statistics away from 0 and 1, so that BatchNormalization does something
    bn = next(layer for layer in model.layers if isinstance(layer, layers.BatchNormalization))
    rng = np.random.default_rng(5)
    bn.set_weights(
        [rng.uniform(0.5, 2, 6), rng.normal(size=6), rng.normal(size=6), np.full(6, 2.0)]
    )
    model.save(tmp_path / "TrainedModel.h5")
    specs, models = {}, {}
    for name, classes in (("pykeras_multiclass", THREE), ("pykeras_two_class", ("S", "B"))):
        text = _xml(
            "PyKeras::PyKeras",
            "<Weights/>",
            classes=classes,
            options={"FilenameTrainedModel": "TrainedModel.h5"},
            transforms=[normalize(), gauss()],
        )
        path = tmp_path / f"{name}.weights.xml"
        path.write_text(text)
        models[name] = read_weights(path)
        assert models[name]._method.backend == "numpy"
        specs[name] = model_spec(models[name])
    program = compile_models(specs, tmp_path)
    x = synthetic_inputs(2000)
    for name, model in models.items():
        got = run_model(program, name, x, len(specs[name]["classes"]))
        with np.errstate(all="ignore"):
            assert_matches_reader(got, model, x)
