"""The expression grammar: what reaches C++ from configs and model files, and how it counts.

Every cut, weight and variable expression is parsed and translated (htt_tmva.expressions);
the values must equal TTreeFormula's to the last bit (ROOT's own evaluation, which the
classic scripts used), and nothing else (code, strings, unknown functions) gets through.
"""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pytest

from htt_tmva.cpp_text import cpp_comment, cpp_string
from htt_tmva.errors import ExpressionError, ModelError
from htt_tmva.expressions import ExpressionEvaluator, input_branches, translate

# --- the grammar (no ROOT) ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "refused"),
    [
        ('x + std::system("touch pwned")', "(strings)"),
        ("std::system(1)", "the function 'std::system' is not allowed"),
        ("gSystem->Exec(1)", "unexpected '>'"),
        ("x; y", "the character ';'"),
        ("x[0] > 1", "array elements"),
        ("p.px > 1", "members"),
        ("x^2", "use pow(a, b)"),
        ("x**2", "use pow(a, b)"),
        ("x & y", "use && for 'and'"),
        ("x = 1", "use == to compare"),
        ("absx(x) > 0", "did you mean 'abs'?"),
        ("pow(x)", "pow() takes 2 argument(s), 1 given"),
        ("TMath::Pi", "needs arguments in parentheses"),
        ("new > 1", "'new' cannot be a branch name"),
        ("htt_tmva_row * 2", "cannot be a branch name"),
        ("1.5f * x", "is not a plain number"),
        ("0x10 * x", "is not a plain number"),
        ("1e999 * x", "beyond the double range"),
        ("(" * 60 + "x" + ")" * 60, "nested deeper than"),
        ("x >", "ends where an operand is expected"),
        ("(x > 1", "expected ')'"),
        ("", "the expression is empty"),
        ("event%2*x", "needs parentheses"),
        ("0 < x < 1", "are chained"),
    ],
)
def test_the_grammar_refuses_all_but_expressions_naming_what(text, refused):
    with pytest.raises(ExpressionError) as info:
        translate(text, "cut_string of process 'ztt'")
    message = str(info.value)
    assert refused in message and f"cut_string of process 'ztt' {text[:200]!r}" in message


def test_translation_is_double_arithmetic_of_the_named_branches():
    assert translate("1/2*x").cpp == "((1.0 / 2.0) * static_cast<double>(x))"
    assert translate("npartons/2").cpp == "(static_cast<double>(npartons) / 2.0)"
    assert translate("abs(eta_1) < 2.1").cpp.startswith("static_cast<double>((std::fabs(")
    assert translate("TMath::Abs(a) + sqrt(b*c) - 1.5e-3").branches == ("a", "b", "c")
    assert input_branches(["x", "x+y", "abs(z)", "(Ht>2500e3)?2500e3:Ht"]) == ["x", "y", "z", "Ht"]


# --- TTreeFormula, to the last bit -------------------------------------------------------------

N = 4000


@pytest.fixture(scope="module")
def ntuple(tmp_path_factory) -> Path:
    """float, double, int and long branches as analysis ntuples have them."""
    from htt_tmva._root import root

    rng = np.random.default_rng(5)
    columns = {
        "x": rng.normal(size=N).astype(np.float32),
        "y": rng.uniform(0.1, 3.0, size=N).astype(np.float32),
        "w": rng.uniform(0.5, 1.5, size=N).astype(np.float32),
        "d": rng.normal(size=N),
        "npartons": rng.integers(0, 5, size=N).astype(np.int32),
        "event": rng.integers(0, 10**9, size=N).astype(np.int64),
    }
    path = tmp_path_factory.mktemp("expressions") / "ntuple.root"
    root().RDF.FromNumpy(columns).Snapshot("t", str(path), list(columns))
    return path


def _chains() -> list[str]:
    """Every chain of four operands with + - (and * /): TTreeFormula groups them its way."""
    names = ["x", "y", "w", "d"]
    out = []
    for level in ("+-", "*/"):
        for ops in itertools.product(level, repeat=3):
            out.append(names[0] + "".join(o + n for o, n in zip(ops, names[1:])))
    return out


EXPRESSIONS = [
    "1/2*x",
    "npartons/2",
    "npartons*0.1*w",
    "x + y*w - d/3",
    "-x+y",
    "abs(x)*w",
    "TMath::Abs(x) < 0.5",
    "sqrt(y)*x + exp(x)*w - log(y)/3",
    "pow(y, 2.5)*x + TMath::Power(x, 2)",
    "(x>0.5)?0.5:x",
    "x > 0 && y < 2 || !(npartons == 2)",
    "event%3 + (event%7)*2",
    "min(x, y) + max(x, y)*w + atan2(x, y)",
    "1e-3*event*w",
    "TMath::Pi()*x",
    *_chains(),
]


def test_values_equal_ttreeformula_to_the_last_bit(ntuple):
    """The classic scripts' cuts and weights were TTreeFormula's: same doubles, bit for bit
    (sums and products grouped as ROOT groups them, integers divided as doubles)."""
    from htt_tmva._root import root

    ROOT = root()
    tfile = ROOT.TFile.Open(str(ntuple))
    tree = tfile.Get("t")
    tree.SetEstimate(N + 1)
    frame = ROOT.RDataFrame(tree)
    differ = {}
    for text in EXPRESSIONS:
        assert tree.Draw(text, "", "goff") == N, text
        reference = np.frombuffer(tree.GetV1(), dtype=np.float64, count=N).copy()
        ours = frame.Define("v", translate(text).cpp).AsNumpy(["v"])["v"]
        if not np.array_equal(ours, reference):
            differ[text] = int(np.count_nonzero(ours != reference))
    tfile.Close()
    assert differ == {}


def test_modulo_by_zero_is_nan_not_a_crash(ntuple):
    from htt_tmva._root import root

    frame = root().RDataFrame("t", str(ntuple))
    values = frame.Define("v", translate("event % npartons").cpp).AsNumpy(["v"])["v"]
    n = frame.AsNumpy(["npartons"])["npartons"]
    assert np.isnan(values[n == 0]).all() and np.isfinite(values[n != 0]).all()


def test_evaluator_rounds_expressions_to_float_and_keeps_branches():
    """The Python path's inputs: integer division as double, abs on doubles, float storage."""
    variables = ["x", "1/2*x", "npartons/2", "abs(x)"]
    evaluator = ExpressionEvaluator(variables, ["x", "npartons"])
    rows = np.array([[-0.5, 1.0], [0.1, 3.0]])
    got = evaluator(rows)
    expected = [
        [-0.5, -0.25, 0.5, 0.5],
        [0.1, float(np.float32(0.05)), 1.5, float(np.float32(0.1))],
    ]
    np.testing.assert_array_equal(got, np.array(expected))


# --- TMVA weight files: an Expression cannot run code ----------------------------------------


def test_a_weight_file_expression_with_code_is_refused_and_nothing_runs(tmp_path, ntuple):
    from test_tmva_reader import _fisher, _write, _xml

    from htt_tmva.tmva import read_inputs, read_weights

    marker = tmp_path / "pwned"
    code = f"x+std::system(&quot;touch {marker}&quot;)"
    text = _xml("Fisher::Fisher", _fisher([0, 1, 1]), expressions=(code, "y"))
    model = read_weights(_write(tmp_path, text))
    with pytest.raises(ExpressionError, match=r"TMVA variable expression .*strings"):
        read_inputs(ntuple, "t", model)
    plain_call = f"x+std::system({len(str(marker))})"
    text = _xml("Fisher::Fisher", _fisher([0, 1, 1]), expressions=(plain_call, "y"))
    model = read_weights(_write(tmp_path, text, "w2.weights.xml"))
    with pytest.raises(ExpressionError, match="the function 'std::system' is not allowed"):
        read_inputs(ntuple, "t", model)
    assert not marker.exists()


def test_weight_file_expressions_are_evaluated_as_ttreeformula(tmp_path, ntuple):
    from test_tmva_reader import _fisher, _write, _xml

    from htt_tmva.tmva import read_inputs, read_weights

    text = _xml(
        "Fisher::Fisher",
        _fisher([0, 1, 1]),
        variables=("a", "b"),
        expressions=("1/2*x", "npartons/2"),
    )
    got = read_inputs(ntuple, "t", read_weights(_write(tmp_path, text)))
    import uproot

    with uproot.open(ntuple) as f:
        data = f["t"].arrays(["x", "npartons"], library="np")
    expected = np.stack([0.5 * data["x"].astype(np.float64), data["npartons"] / 2.0], axis=1)
    np.testing.assert_array_equal(got, expected.astype(np.float32))


# --- strings and comments in generated C++ ---------------------------------------------------

NASTY = ['a\\\n");int x = (', "b*/ #include <cstdlib>\n//", 'c"\\x41\\', "ü\t\r??/\\"]


def test_cpp_strings_hold_any_text_exactly_and_comments_never_end_early():
    from htt_tmva._root import root

    ROOT = root()
    for i, text in enumerate(NASTY):
        comment = cpp_comment(text)
        assert not any(end in comment for end in ("\n", "*/", "??")), comment
        assert not comment.endswith("\\")
        name = f"htt_tmva_test_string_{i}"
        source = f"// {comment}\nconst char* {name}() {{ return {cpp_string(text)}; }}\n"
        assert ROOT.gInterpreter.Declare(source), source
        assert str(getattr(ROOT, name)()) == text


def _network(classes, variables, activation="softmax") -> dict:
    identity = [[1.0, 0.0], [0.0, 1.0]]
    return {
        "kind": "network",
        "variables": variables,
        "classes": classes,
        "preprocessing": {"kind": "affine", "offset": [0.0, 0.0], "scale": [1.0, 1.0]},
        "ops": [{"op": "dense", "weights": identity, "bias": [0.0, 0.0], "activation": activation}],
    }


def test_exported_header_keeps_class_and_variable_names_exactly(tmp_path):
    """A backslash-newline in a class name used to close the string literal."""
    from htt_tmva._root import root
    from htt_tmva.export.cpp import model_header

    ROOT = root()
    classes = ['a\\\n");int x = (', "b*/x"]
    spec = _network(classes, ["v\\\n", "w"])
    header = model_header(spec, "nasty_names", title=classes[0])
    assert ROOT.gInterpreter.Declare(header)
    assert [str(c) for c in ROOT.nasty_names.classes] == classes
    assert [str(v) for v in ROOT.nasty_names.variables] == spec["variables"]


# --- activations from a model file --------------------------------------------------------------


def test_activation_names_come_from_a_fixed_set(tmp_path):
    from htt_tmva.engines.dense import DenseNetwork
    from htt_tmva.errors import ExportError
    from htt_tmva.export.cpp import model_header

    evil = 'relu); std::system("touch pwned"); (void(0'
    path = tmp_path / "m.dense.npz"
    layer = (np.eye(2, dtype=np.float32), np.zeros(2, np.float32), evil)
    DenseNetwork([layer]).save(path)
    with pytest.raises(ModelError, match="layer 0 has the activation .*not one of linear, relu"):
        DenseNetwork.load(path)
    spec = _network(["a", "b"], ["x", "y"], activation=evil)
    with pytest.raises(ExportError, match="activation .* cannot be exported"):
        model_header(spec, "m")
