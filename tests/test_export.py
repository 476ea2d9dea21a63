"""C++ export: headers compiled with g++ (standalone C++17) and with ROOT's interpreter give the
Python models' probabilities; the fold-aware header picks the never-seen model by event number."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from htt_tmva.engines.base import load_model
from htt_tmva.errors import ExportError
from htt_tmva.export.cpp import fold_header, model_header
from htt_tmva.export.spec import keras_ops, model_spec

RTOL = 1e-5

needs_gxx = pytest.mark.skipif(shutil.which("g++") is None, reason="no g++ on this machine")

DRIVER = """
#include <cstdio>
#include "{header}"
int main() {{
  std::array<double, {ns}::n_variables> x;
  while (true) {{
    long long event;
    if (std::scanf("%lld", &event) != 1) return 0;
    for (auto& v : x) std::scanf("%lf", &v);
    const auto p = {call};
    for (float v : p) std::printf("%.9g ", v);
    std::printf("\\n");
  }}
}}
"""


def compiled_predictions(
    header: str, namespace: str, x: np.ndarray, tmp_path: Path, events=None
) -> np.ndarray:
    """Compile ``header`` with a driver (g++ -std=c++17 -O2 -Wall -Werror) and run it on x."""
    (tmp_path / "model.hxx").write_text(header)
    call = f"{namespace}::predict(x)" if events is None else f"{namespace}::predict(event, x)"
    driver = DRIVER.format(header="model.hxx", ns=namespace, call=call)
    (tmp_path / "main.cpp").write_text(driver)
    subprocess.run(
        ["g++", "-std=c++17", "-O2", "-Wall", "-Wextra", "-Werror", "main.cpp", "-o", "main"],
        cwd=tmp_path,
        check=True,
        capture_output=True,
        timeout=300,
    )
    events = np.zeros(len(x), dtype=np.int64) if events is None else events
    lines = "".join(
        f"{int(e)} " + " ".join(repr(float(v)) for v in row) + "\n" for e, row in zip(events, x)
    )
    result = subprocess.run(
        [str(tmp_path / "main")], input=lines, capture_output=True, text=True, check=True
    )
    return np.array([[float(v) for v in line.split()] for line in result.stdout.splitlines()])


def inputs(n: int = 400, seed: int = 5) -> np.ndarray:
    x = np.random.default_rng(seed).normal(scale=1.5, size=(n, 2))
    return x.astype(np.float32).astype(np.float64)  # ntuple values are float32


def assert_close(ours: np.ndarray, expected: np.ndarray) -> None:
    np.testing.assert_allclose(ours, expected, rtol=RTOL, atol=1e-7)


@needs_gxx
@pytest.mark.parametrize("engine", ["keras", "bdt"])
def test_model_header_matches_python(trained_models, engine, tmp_path):
    model = load_model(trained_models[engine]["models"][0])
    x = inputs()
    header = model_header(model_spec(model), "toy_model")
    assert_close(compiled_predictions(header, "toy_model", x, tmp_path), model.predict(x))


def test_model_header_in_root_interpreter(trained_models):
    from htt_tmva._root import root

    ROOT = root()
    x = inputs(50)
    for engine in ("keras", "bdt"):
        model = load_model(trained_models[engine]["models"][1])
        namespace = f"interp_{engine}"
        assert ROOT.gInterpreter.Declare(model_header(model_spec(model), namespace))
        predict = getattr(ROOT, namespace).predict
        ours = np.array([list(predict(np.asarray(row, dtype=np.float64))) for row in x])
        assert_close(ours, model.predict(x))


@needs_gxx
def test_fold_header_scores_each_event_with_the_model_that_never_saw_it(trained_models, tmp_path):
    models = [load_model(p) for p in trained_models["bdt"]["models"]]
    header = fold_header([model_spec(m) for m in models], "toy_folds")
    x = inputs(6)
    events = np.array([0, 1, 2, 3, -3, -4], dtype=np.int64)
    ours = compiled_predictions(header, "toy_folds", x, tmp_path, events)
    # even events (fold 0) are scored by the model trained on fold 1, and vice versa
    expected = np.where((events % 2 == 0)[:, None], models[1].predict(x), models[0].predict(x))
    assert_close(ours, expected)


def test_fold_header_takes_unsigned_event_numbers_exactly(trained_models):
    from htt_tmva._root import root

    ROOT = root()
    models = [load_model(p) for p in trained_models["bdt"]["models"]]
    assert ROOT.gInterpreter.Declare(fold_header([model_spec(m) for m in models], "u64_folds"))
    ROOT.gInterpreter.Declare(
        "unsigned u64_fold_of(ULong64_t e) { return htt_tmva_export::fold_of(e, 2u); }"
        "unsigned u64_fold3_of(ULong64_t e) { return htt_tmva_export::fold_of(e, 3u); }"
    )
    for event in (2**63 - 1, 2**63, 2**63 + 1, 2**64 - 1, 2**64 - 2):
        assert ROOT.u64_fold_of(event) == event % 2
        assert ROOT.u64_fold3_of(event) == event % 3


@needs_gxx
@pytest.mark.parametrize("name", ["smhtt", "user"])
def test_special_models_match_python(special_keras_models, name, tmp_path):
    model = load_model(special_keras_models[name]["model"])
    if name == "user":
        assert model.dense is None  # goes through the Keras layers
    x = inputs(300)
    header = model_header(model_spec(model), f"{name}_model")
    assert_close(compiled_predictions(header, f"{name}_model", x, tmp_path), model.predict(x))


def test_unsupported_layer_is_refused_by_name():
    from htt_tmva.engines.keras import import_keras

    keras = import_keras()
    network = keras.Sequential(
        [keras.Input((2,)), keras.layers.LayerNormalization(name="ln"), keras.layers.Dense(3)]
    )
    with pytest.raises(ExportError, match="layer 'ln' of type LayerNormalization"):
        keras_ops(network)


def test_fold_header_refuses_models_of_different_classes(trained_models):
    specs = [model_spec(load_model(p)) for p in trained_models["bdt"]["models"]]
    specs[1] = dict(specs[1], classes=list(reversed(specs[1]["classes"])))
    with pytest.raises(ExportError, match="classes"):
        fold_header(specs, "mixed")
    with pytest.raises(ExportError, match="not a valid C\\+\\+ namespace"):
        model_header(specs[0], "bad-name")


def test_export_command_writes_header_and_json(trained_models):
    import json
    import sys

    info = trained_models["bdt"]
    config, output = str(info["training_config"]), info["output_path"]
    command = [sys.executable, "-m", "htt_tmva", "export", config]
    result = subprocess.run(
        [*command, "--all-folds", "--engine", "bdt"], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
    header = output / "htt_tmva_bdt_folds.hxx"
    assert f"wrote {header}" in result.stderr
    assert "inline constexpr bool fold_aware = true;" in header.read_text()
    result = subprocess.run(
        [*command, "1", "--engine", "bdt", "--format", "json"], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
    document = json.loads((output / "fold1_bdt_model.export.json").read_text())
    assert (document["format"], document["fold"], document["kind"]) == (
        "htt-tmva-model",
        1,
        "trees",
    )
    assert document["classes"] == load_model(info["models"][1]).manifest.classes
    result = subprocess.run(command, capture_output=True, text=True)
    assert result.returncode == 2 and "give FOLD or --all-folds" in result.stderr


def test_processes_building_the_same_library_at_once_all_get_it(tmp_path):
    """Batch jobs sharing a cache folder start together: each compiles its own copy of the
    source and the library appears by an atomic rename; no scratch file is left."""
    import ctypes

    library = tmp_path / "cache" / "abc" / "htt_tmva_test_abc.so"
    script = (
        "import sys; from pathlib import Path\n"
        "from htt_tmva.export.compile import build, compiler\n"
        "source = 'extern \"C\" int answer() { return 42; }\\n' + '// padding\\n' * 20000\n"
        "build(source, Path(sys.argv[1]), compiler(), 'a test library')\n"
    )
    processes = [
        subprocess.Popen([sys.executable, "-c", script, str(library)], stderr=subprocess.PIPE)
        for _ in range(4)
    ]
    for process in processes:
        _, stderr = process.communicate(timeout=300)
        assert process.returncode == 0, stderr.decode()
    assert ctypes.CDLL(str(library)).answer() == 42
    assert sorted(p.name for p in library.parent.iterdir()) == [
        "htt_tmva_test_abc.cxx",
        "htt_tmva_test_abc.so",
    ]


def test_every_model_describes_itself_and_others_are_refused_by_name(trained_models):
    """The export asks the model for its description (``Model.describe``): keras and bdt
    models give theirs; a model that has none (e.g. TMVA::Reader's) is refused naming its
    engine, and what is not a model naming its type."""
    from htt_tmva.engines.base import Model

    for engine in ("keras", "bdt"):
        model = load_model(trained_models[engine]["models"][0])
        assert model_spec(model) == model.describe()

    class ReaderModel(Model):
        manifest = SimpleNamespace(engine="tmva")

        def predict(self, x):
            return x

        def save(self, model_path):
            return []

    with pytest.raises(ExportError, match="models of engine 'tmva' cannot be exported"):
        model_spec(ReaderModel())
    with pytest.raises(ExportError, match="a dict is not a model that can be exported"):
        model_spec({"kind": "network"})
