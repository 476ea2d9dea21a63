"""One-pass application with the models compiled to C++ (``--compile``): the same output as
the Python path, compiled once (cached by content), and the same refusals."""

from __future__ import annotations

import logging
import os
import pickle
import shutil
import subprocess
import sys

import numpy as np
import pytest
from conftest import CLASSES, dataset_document, htt_tmva, write_yaml

from htt_tmva.application.apply import run_application
from htt_tmva.errors import NonFiniteError

uproot = pytest.importorskip("uproot")
TREE = "ntuple"


def ntuple(path, n=3000, nan_rows=0, seed=3):
    from htt_tmva._root import root

    rng = np.random.default_rng(seed)
    columns = {
        "x": rng.normal(size=n).astype(np.float32),
        "y": rng.normal(size=n).astype(np.float32),
        "event": rng.permutation(np.arange(5 * n, dtype=np.int64))[:n],
        "run": rng.integers(1, 4, size=n).astype(np.int32),
    }
    if nan_rows:
        columns["x"][rng.choice(n, nan_rows, replace=False)] = np.nan
    root().RDF.FromNumpy(columns).Snapshot(TREE, str(path), list(columns))
    return path


@pytest.fixture
def configs(trained_models, toy_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("HTT_TMVA_CACHE", str(tmp_path / "cache"))

    def make(engine, **extra):
        info = trained_models[engine]
        doc = {"classifiers": [p.name for p in info["models"]][::-1], "branch_prefix": "s_"}
        if info["preprocessing"]:
            doc["preprocessing"] = [p.name for p in info["preprocessing"]][::-1]
        doc.update(extra)
        dataset = write_yaml(tmp_path / "dataset.yaml", dataset_document(toy_dir, tmp_path / "f"))
        application = write_yaml(tmp_path / f"{engine}_app.yaml", doc)
        return dataset, info["training_config"], application

    return make


def branches(path):
    with uproot.open(path) as f:
        return f[TREE].arrays(library="np")


@pytest.mark.parametrize("engine", ["keras", "bdt"])
def test_one_pass_equals_the_python_path(configs, engine, tmp_path, caplog):
    data = ntuple(tmp_path / "data.root")
    with caplog.at_level(logging.INFO, logger="htt_tmva"):
        run_application(
            *configs(engine), [str(data)], TREE, output=str(tmp_path / "c.root"),
            compile_models=True,
        )  # fmt: skip
    assert "scoring in one pass" in caplog.text
    run_application(
        *configs(engine), [str(data)], TREE, output=str(tmp_path / "p.root"), compile_models=False
    )
    compiled, python = branches(tmp_path / "c.root"), branches(tmp_path / "p.root")
    assert list(compiled) == list(python)
    for name in ("x", "y", "event", "run"):
        np.testing.assert_array_equal(compiled[name], python[name])
    for name in [f"s_{c}" for c in CLASSES] + ["s_max_score"]:
        np.testing.assert_allclose(compiled[name], python[name], rtol=1e-5, atol=1e-7)
    np.testing.assert_array_equal(compiled["s_max_index"], python["s_max_index"])


def test_compiled_library_is_reused_by_a_new_process(configs, tmp_path):
    data = ntuple(tmp_path / "data.root")
    command = [
        sys.executable, "-m", "htt_tmva", "apply", "--compile", *map(str, configs("bdt")), str(data)
    ]  # fmt: skip
    env = {**os.environ, "HTT_TMVA_CACHE": str(tmp_path / "cache")}
    first = subprocess.run(
        [*command, TREE, "--friend", str(tmp_path / "a.root")], env=env, capture_output=True,
        text=True, timeout=600,
    )  # fmt: skip
    assert first.returncode == 0, first.stderr
    assert "compiling the model" in first.stderr
    (library,) = (tmp_path / "cache").glob("*/htt_tmva_model_*.so")
    stamp = library.stat().st_mtime_ns
    second = subprocess.run(
        [*command, TREE, "--friend", str(tmp_path / "b.root")], env=env, capture_output=True,
        text=True, timeout=600,
    )  # fmt: skip
    assert second.returncode == 0, second.stderr
    assert "compiling the model" not in second.stderr
    assert "found in the cache" in second.stderr
    assert library.stat().st_mtime_ns == stamp
    with uproot.open(tmp_path / "a.root") as a, uproot.open(tmp_path / "b.root") as b:
        np.testing.assert_array_equal(
            a[TREE]["s_max_score"].array(library="np"), b[TREE]["s_max_score"].array(library="np")
        )


def test_nonfinite_inputs_counted_over_the_whole_tree(configs, tmp_path):
    data = ntuple(tmp_path / "data.root", n=3000, nan_rows=40)
    before = data.read_bytes()
    with pytest.raises(NonFiniteError, match="40 of 3000 events .*'x' in 40 events"):
        run_application(*configs("bdt"), [str(data)], TREE, compile_models=True)
    assert data.read_bytes() == before
    run_application(*configs("bdt"), [str(data)], TREE, nonfinite_default=-2.0, compile_models=True)
    out = branches(data)
    bad = ~np.isfinite(out["x"])
    assert bad.sum() == 40
    assert (out["s_max_index"][bad] == -1).all()
    assert (out["s_max_score"][bad] == -2.0).all()
    assert (out["s_max_index"][~bad] >= 0).all()


def test_a_model_that_cannot_be_exported_runs_in_python(configs, trained_models, tmp_path, caplog):
    import keras
    from sklearn.preprocessing import MinMaxScaler

    # models of the classic scripts (.h5, no manifest) with a MinMaxScaler pickle: a
    # preprocessing pickle is accepted only for them (htt-tmva models must get their own)
    scaler = MinMaxScaler().fit(np.random.default_rng(1).normal(size=(100, 2)))
    output = trained_models["keras"]["output_path"]
    for fold, model in enumerate(trained_models["keras"]["models"]):
        keras.saving.load_model(model, compile=False).save(output / f"mm{fold}.h5")
        with open(tmp_path / f"mm{fold}.pickle", "wb") as f:
            pickle.dump(scaler, f)
        shutil.copy(tmp_path / f"mm{fold}.pickle", output / f"mm{fold}.pickle")
    data = ntuple(tmp_path / "data.root")
    with caplog.at_level(logging.INFO, logger="htt_tmva"):
        run_application(
            *configs(
                "keras",
                classifiers=["mm1.h5", "mm0.h5"],
                preprocessing=["mm1.pickle", "mm0.pickle"],
            ),
            [str(data)],
            TREE,
            friend=str(tmp_path / "f.root"),
            compile_models=True,
        )
    assert "MinMaxScaler preprocessing pickle cannot be exported" in caplog.text
    assert "scoring runs in Python" in caplog.text
    assert len(branches(tmp_path / "f.root")["s_max_score"]) == 3000


@pytest.mark.parametrize("engine", ["keras", "bdt"])
def test_scoring_threads_and_blocks_give_the_same_output(configs, engine, tmp_path, monkeypatch):
    """Blocks that do not divide the entries, one or two scoring threads, or none (the loop
    scores each entry itself): the same bits, in entry order, as one block per tree; NaN
    inputs with a default land on their entries."""
    from htt_tmva.application import compiled

    data = ntuple(tmp_path / "data.root", n=2500, nan_rows=30)
    outputs = []
    for block, threads in ((100_000, "1"), (333, "1"), (333, "2"), (64, "2"), (333, "0")):
        monkeypatch.setattr(compiled, "BLOCK", block)
        monkeypatch.setenv("HTT_TMVA_SCORING_THREADS", threads)
        out = tmp_path / f"out_{block}_{threads}.root"
        run_application(
            *configs(engine), [str(data)], TREE, output=str(out), compile_models=True,
            nonfinite_default=-1.0,
        )  # fmt: skip
        outputs.append(branches(out))
    first = outputs[0]
    assert (first["s_max_index"] == -1).sum() == 30
    for other in outputs[1:]:
        assert list(other) == list(first)
        for name in first:
            np.testing.assert_array_equal(other[name], first[name])


def test_batched_code_gives_the_per_event_bits(trained_models, tmp_path):
    """The header's predict_batch_in_folds (what the application runs) equals predict_in_fold
    event by event, bit for bit, for the networks and the trees, with NaN inputs (trees take
    their default ways) and event numbers of every fold."""
    from htt_tmva.api import load_model
    from htt_tmva.export.cpp import fold_header
    from htt_tmva.export.spec import model_spec

    rng = np.random.default_rng(5)
    x = rng.normal(size=(1000, 2)) * 2
    x[rng.choice(1000, 10, replace=False), 1] = np.nan
    folds = rng.integers(0, 2, size=1000).astype(np.uint32)
    for engine, info in trained_models.items():
        if engine not in ("keras", "bdt"):
            continue
        specs = [model_spec(load_model(p)) for p in info["models"]]
        namespace = f"batch_{engine}"
        driver = tmp_path / f"{engine}.cpp"
        (tmp_path / f"{engine}.hxx").write_text(fold_header(specs, namespace))
        driver.write_text(BATCH_DRIVER.format(header=f"{engine}.hxx", ns=namespace))
        binary = tmp_path / engine
        subprocess.run(
            ["g++", "-std=c++17", "-O3", "-march=native", "-ffp-contract=off", str(driver),
             "-o", str(binary)], check=True, capture_output=True,
        )  # fmt: skip
        rows = "\n".join(
            f"{f} " + " ".join(repr(float(v)) for v in row) for f, row in zip(folds, x)
        )
        result = subprocess.run(
            [str(binary)], input=rows, capture_output=True, text=True, check=True
        )
        per_event, batched = result.stdout.split("batch\n")
        assert per_event.split() == batched.split(), engine
        assert len(per_event.split()) == 1000 * len(CLASSES)


BATCH_DRIVER = """
#include "{header}"
#include <cstdio>
#include <iostream>
#include <vector>
int main() {{
  using namespace {ns};
  std::vector<unsigned> folds;
  std::vector<double> x;
  unsigned f;
  while (std::cin >> f) {{
    folds.push_back(f);
    for (std::size_t v = 0; v < n_variables; ++v) {{
      std::string s;
      std::cin >> s;
      x.push_back(std::stod(s));
    }}
  }}
  const std::size_t n = folds.size();
  for (std::size_t i = 0; i < n; ++i) {{
    std::array<double, n_variables> row;
    std::copy(&x[i * n_variables], &x[(i + 1) * n_variables], row.begin());
    for (float p : predict_in_fold(folds[i], row)) std::printf("%.9g\\n", p);
  }}
  std::printf("batch\\n");
  std::vector<float> out(n * n_classes);
  predict_batch_in_folds(folds.data(), x.data(), n, out.data());
  for (float p : out) std::printf("%.9g\\n", p);
}}
"""


def test_a_failing_scoring_thread_stops_the_loop_and_writes_nothing(configs, tmp_path):
    """A scoring thread that cannot read (here: the input's tree disappears between the checks
    and the loop, simulated by a pipeline pointed at a missing tree) fails the run with the
    thread's message; the loop does not hang."""
    from htt_tmva._root import root
    from htt_tmva.application import compiled

    data = ntuple(tmp_path / "data.root", n=500)
    run_application(
        *configs("bdt"), [str(data)], TREE, output=str(tmp_path / "ok.root"), compile_models=True
    )
    ROOT = root()
    settings = ROOT.htt_tmva_onepass.Settings()
    settings.file, settings.tree, settings.event = str(data), "missing_tree", "event"
    settings.nv, settings.nc, settings.entries = 2, 3, 500
    with pytest.raises(Exception, match="incomplete settings"):
        ROOT.htt_tmva_onepass.Pipeline(settings)
    ROOT.gInterpreter.Declare(
        "void test_inputs(const double*, std::size_t, double*) {}"
        "void test_batch(const unsigned*, const double*, std::size_t, float*) {}"
        "void test_functions(htt_tmva_onepass::Settings& s) "
        "{ s.inputs = &test_inputs; s.batch = &test_batch; }"
    )
    ROOT.test_functions(settings)
    pipeline = ROOT.htt_tmva_onepass.Pipeline(settings)
    pipeline.Start()
    with pytest.raises(Exception, match="no tree 'missing_tree'"):
        pipeline.Row(0, 0)
    assert "no tree 'missing_tree'" in str(pipeline.Finish())
    assert compiled.BLOCK > 0


def test_without_a_compiler_the_interpreter_compiles_the_same_scores(configs, tmp_path):
    """No C++ compiler on the PATH: ROOT's interpreter compiles the header (vector extensions
    included) and the one-pass output equals the compiled one."""
    data = ntuple(tmp_path / "data.root", n=1000)
    run_application(
        *configs("keras"), [str(data)], TREE, output=str(tmp_path / "c.root"), compile_models=True
    )
    env = {
        **os.environ,
        "PATH": os.path.dirname(sys.executable),
        "HTT_TMVA_CACHE": str(tmp_path / "other_cache"),
    }
    env.pop("CXX", None)
    result = subprocess.run(
        [sys.executable, "-m", "htt_tmva", "apply", "--compile", *map(str, configs("keras")),
         str(data), TREE, "--output", str(tmp_path / "i.root")],
        env=env, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "ROOT's interpreter compiles the model" in result.stderr
    compiled, interpreted = branches(tmp_path / "c.root"), branches(tmp_path / "i.root")
    for name in [f"s_{c}" for c in CLASSES] + ["s_max_score"]:
        np.testing.assert_allclose(interpreted[name], compiled[name], rtol=1e-6)
    np.testing.assert_array_equal(interpreted["s_max_index"], compiled["s_max_index"])


def test_negative_scoring_threads_are_refused_before_any_work(configs, tmp_path):
    from htt_tmva.errors import ConfigError

    data = ntuple(tmp_path / "data.root", n=100)
    before = data.read_bytes()
    with pytest.raises(ConfigError, match="--scoring-threads must be 0 or more, got -1"):
        run_application(*configs("bdt"), [str(data)], TREE, scoring_threads=-1)
    assert data.read_bytes() == before
    assert not (tmp_path / "cache").exists()  # nothing compiled


def test_the_writing_loop_refuses_scores_of_another_event(configs, tmp_path, monkeypatch):
    """The scoring threads and the writing loop read the same entries; were they ever to
    read different events (here the scoring thread is pointed at a copy of the input with
    its entries in another order), the loop stops at the first such entry, naming both
    event numbers, and nothing is written."""
    from htt_tmva._root import root
    from htt_tmva.application import pipeline

    data = ntuple(tmp_path / "data.root", n=400, seed=3)
    shuffled = tmp_path / "shuffled.root"
    columns = branches(data)
    order = np.random.default_rng(9).permutation(400)
    root().RDF.FromNumpy({k: np.ascontiguousarray(v[order]) for k, v in columns.items()}).Snapshot(
        TREE, str(shuffled), list(columns)
    )
    namespace = pipeline.declare()
    original = namespace.Pipeline

    def elsewhere(settings):
        settings.file = str(shuffled)
        return original(settings)

    monkeypatch.setattr(namespace, "Pipeline", elsewhere)
    before = data.read_bytes()
    from htt_tmva.errors import InputFileError

    with pytest.raises(InputFileError, match=r"failed: entry \d+: the event loop read event \d+, "):
        run_application(*configs("bdt"), [str(data)], TREE)
    assert data.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_apply_loads_nothing_from_an_unsafe_cache_and_scores_in_python(
    configs, tmp_path, monkeypatch
):
    """A library planted at the cached model's path in a cache folder that others may write is
    never loaded: apply warns in one line and scores in Python, with the same scores."""
    from test_cache import plant

    data = ntuple(tmp_path / "data.root", n=500)
    arguments = ["apply", *map(str, configs("bdt")), str(data), TREE]
    result = htt_tmva(*arguments, "--output", str(tmp_path / "c.root"), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    [library] = (tmp_path / "cache").glob("*/htt_tmva_model_*.so")
    plant(library)
    library.parent.chmod(0o777)
    monkeypatch.setenv("HTT_TMVA_PLANTED_MARK", str(tmp_path / "mark"))
    result = htt_tmva(*arguments, "--output", str(tmp_path / "p.root"), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert not (tmp_path / "mark").exists()
    warnings = [line for line in result.stderr.splitlines() if line.startswith("WARNING")]
    assert len(warnings) == 1 and "writable by its group or by anyone" in warnings[0]
    assert "scoring runs in Python" in warnings[0]
    compiled, python = branches(tmp_path / "c.root"), branches(tmp_path / "p.root")
    for name in [f"s_{c}" for c in CLASSES] + ["s_max_score"]:
        np.testing.assert_allclose(python[name], compiled[name], rtol=1e-5, atol=1e-7)


def test_apply_with_an_unwritable_cache_scores_in_python(configs, tmp_path, monkeypatch):
    blocker = tmp_path / "a_file"
    blocker.write_text("")
    arguments = ["apply", *map(str, configs("bdt")), str(ntuple(tmp_path / "d.root", n=300))]
    monkeypatch.setenv("HTT_TMVA_CACHE", str(blocker / "cache"))
    result = htt_tmva(*arguments, TREE, "--output", str(tmp_path / "o.root"), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    warnings = [line for line in result.stderr.splitlines() if line.startswith("WARNING")]
    assert len(warnings) == 1 and "cannot create the cache folder" in warnings[0], warnings
    assert "Traceback" not in result.stderr
    assert len(branches(tmp_path / "o.root")["s_max_score"]) == 300


def test_a_non_integer_scoring_threads_variable_is_named(configs, tmp_path, monkeypatch):
    from htt_tmva.errors import ConfigError

    monkeypatch.setenv("HTT_TMVA_SCORING_THREADS", "two")
    data = ntuple(tmp_path / "data.root", n=100)
    with pytest.raises(ConfigError, match="HTT_TMVA_SCORING_THREADS must be a whole number"):
        run_application(*configs("bdt"), [str(data)], TREE, output=str(tmp_path / "o.root"))
