"""The application step end to end: scores per fold, safe output modes, errors.

Inputs are toy-like ntuples written here (shuffled, non-sequential event numbers, extra
branches and other objects in the file); models come from the ``trained_models`` fixture.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import yaml
from conftest import CLASSES, dataset_document, training_document, write_yaml

from htt_tmva.application.apply import run_application
from htt_tmva.errors import (
    ConfigError,
    FoldLeakError,
    InputFileError,
    InvalidEventNumberError,
    MissingBranchError,
    MissingTreeError,
    ModelError,
    NonFiniteError,
    OutputError,
)

uproot = pytest.importorskip("uproot")

ENGINES = ("keras", "bdt")
TREE = "ntuple"
ORIGINAL = ["x", "y", "weights", "event", "run", "mass"]


# ---------------------------------------------------------------- helpers and fixtures


def write_ntuple(
    path: Path,
    n: int,
    seed: int = 7,
    tree: str = TREE,
    event_dtype=np.uint64,
    nan_rows: int = 0,
    extras: bool = True,
    drop: tuple[str, ...] = (),
    nan_at: tuple[int, ...] = (),
) -> Path:
    """A toy-like ntuple: x, y, weights, event (unique, shuffled), run (int), mass (double);
    plus, with ``extras``, a histogram in two cycles, a folder with a TNamed and another tree."""
    from htt_tmva._root import root

    ROOT = root()
    rng = np.random.default_rng(seed)
    columns = {
        "x": rng.normal(size=n).astype(np.float32),
        "y": rng.normal(size=n).astype(np.float32),
        "weights": rng.uniform(0.5, 1.5, size=n).astype(np.float32),
        "event": rng.permutation(rng.choice(10**9, size=n, replace=False)).astype(event_dtype),
        "run": rng.integers(1, 5, size=n).astype(np.int32),
        "mass": rng.uniform(50, 150, size=n),
    }
    if nan_rows:
        columns["x"][rng.choice(n, size=nan_rows, replace=False)] = np.nan
    columns["x"][list(nan_at)] = np.nan
    columns = {k: v for k, v in columns.items() if k not in drop}
    frame = ROOT.RDF.FromNumpy({k: np.ascontiguousarray(v) for k, v in columns.items()})
    frame.Snapshot(tree, str(path), list(columns))
    if extras:
        add_extras(path, tree)
    return path


def add_extras(path: Path, tree: str = TREE) -> None:
    """Other objects next to the tree, and a tree title, as real ntuples have them."""
    from htt_tmva._root import root

    ROOT = root()
    f = ROOT.TFile.Open(str(path), "UPDATE")
    hist = ROOT.TH1F("cutflow", "cut flow", 3, 0, 3)
    hist.Fill(0.5, 10)
    hist.Write()
    hist.Fill(1.5, 5)
    hist.Write()  # a second cycle
    folder = f.mkdir("meta", "metadata")
    folder.WriteTObject(ROOT.TNamed("info", "toy production"), "info")
    folder.cd()
    other = ROOT.TNtuple("other", "another tree", "a:b")
    for i in range(5):
        other.Fill(i, 2 * i)
    other.Write()
    f.cd()
    t = f.Get(tree)
    t.SetTitle("toy ntuple")
    t.Write("", ROOT.TObject.kOverwrite)
    f.Close()


def arrays(path: Path, tree: str = TREE) -> dict[str, np.ndarray]:
    with uproot.open(path) as f:
        return f[tree].arrays(library="np")


def digest(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def app_config(trained: dict, engine: str, path: Path, swap: bool = False, **overrides) -> Path:
    """Application config for the fixture's models: entry j = model that scores fold j."""
    info = trained[engine]
    order = slice(None) if swap else slice(None, None, -1)  # fold1 model first, then fold0
    doc = {"classifiers": [p.name for p in info["models"]][order], "branch_prefix": f"{engine}_"}
    if info["preprocessing"]:
        doc["preprocessing"] = [p.name for p in info["preprocessing"]][order]
    doc.update(overrides)
    return write_yaml(path, doc)


@pytest.fixture
def setup(trained_models, toy_dir, tmp_path):
    """Factory: (dataset config, training config, application config) for an engine."""

    def make(engine: str = "keras", **app_overrides):
        dataset = write_yaml(
            tmp_path / "dataset.yaml", dataset_document(toy_dir, tmp_path / "folds")
        )
        application = app_config(
            trained_models, engine, tmp_path / f"{engine}_application.yaml", **app_overrides
        )
        return dataset, trained_models[engine]["training_config"], application

    return make


def independent_predict(trained: dict, engine: str, fold: int, x: np.ndarray) -> np.ndarray:
    """Predictions of the model of ``fold`` computed without htt_tmva's inference code: the
    Keras network with TensorFlow (``model.predict``) on inputs standardised with the
    preprocessing JSON, or the XGBoost Booster read from its file."""
    info = trained[engine]
    if engine == "keras":
        import keras

        pre = json.loads(Path(info["preprocessing"][fold]).read_text())
        assert pre["kind"] == "standard"
        scaled = ((x - np.asarray(pre["offset"])) / np.asarray(pre["scale"])).astype(np.float32)
        network = keras.saving.load_model(info["models"][fold], compile=False)
        return np.asarray(network.predict(scaled, verbose=0), dtype=np.float64)
    import xgboost

    booster = xgboost.Booster(model_file=str(info["models"][fold]))
    best = booster.attr("best_iteration")
    rounds = (0, int(best) + 1) if best is not None else (0, 0)
    matrix = xgboost.DMatrix(x.astype(np.float32))
    return booster.predict(matrix, iteration_range=rounds).reshape(len(x), -1)


def expected_scores(trained: dict, engine: str, x: np.ndarray, events: np.ndarray) -> np.ndarray:
    """Independent predictions, each event by the model that never saw its fold."""
    expected = np.full((len(x), len(CLASSES)), np.nan)
    for fold in (0, 1):
        mask = events % 2 == fold
        expected[mask] = independent_predict(trained, engine, 1 - fold, x[mask])
    return expected


def check_scores(data: dict, trained: dict, engine: str, prefix: str) -> None:
    x = np.column_stack([data["x"], data["y"]]).astype(np.float64)
    expected = expected_scores(trained, engine, x, data["event"].astype(np.int64))
    got = np.column_stack([data[f"{prefix}{c}"] for c in CLASSES])
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=2e-6)
    assert data[f"{prefix}max_score"].dtype == np.float32
    assert data[f"{prefix}max_index"].dtype == np.float32
    np.testing.assert_array_equal(data[f"{prefix}max_score"], got.max(axis=1))
    np.testing.assert_array_equal(data[f"{prefix}max_index"], got.argmax(axis=1).astype(np.float32))


def check_originals(before: dict, after: dict) -> None:
    for name in ORIGINAL:
        assert after[name].dtype == before[name].dtype, name
        np.testing.assert_array_equal(after[name], before[name], err_msg=name)


def check_extras(path: Path) -> None:
    with uproot.open(path) as f:
        cycles = sorted(k for k in f.keys(cycle=True) if k.startswith("cutflow"))
        assert cycles == ["cutflow;1", "cutflow;2"]
        assert f["cutflow;1"].values().sum() == 10 and f["cutflow;2"].values().sum() == 15
        assert f["meta/info"].member("fTitle") == "toy production"
        assert f["meta/other"].num_entries == 5
        np.testing.assert_array_equal(f["meta/other"]["b"].array(library="np"), [0, 2, 4, 6, 8])
        assert f[TREE].title == "toy ntuple"


# ---------------------------------------------------------------- the modes


@pytest.mark.parametrize("engine", ENGINES)
def test_in_place_adds_scores_and_keeps_everything(trained_models, setup, tmp_path, engine):
    data_file = write_ntuple(tmp_path / "data.root", 3001)
    before = arrays(data_file)
    written = run_application(*setup(engine), [str(data_file)], TREE, chunk_size=700)

    assert written == [data_file.resolve()]
    after = arrays(data_file)
    new = [f"{engine}_{c}" for c in CLASSES] + [f"{engine}_max_score", f"{engine}_max_index"]
    with uproot.open(data_file) as f:
        assert list(f[TREE].keys()) == ORIGINAL + new
    check_originals(before, after)
    check_scores(after, trained_models, engine, f"{engine}_")
    check_extras(data_file)
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []


def test_classic_cut_on_max_index_works(setup, tmp_path):
    from htt_tmva._root import root

    data_file = write_ntuple(tmp_path / "data.root", 2000, extras=False)
    run_application(*setup("keras"), [str(data_file)], TREE)
    frame = root().RDataFrame(TREE, str(data_file))
    n_class0 = frame.Filter("keras_max_index==0").Count().GetValue()
    assert n_class0 == int((arrays(data_file)["keras_max_index"] == 0).sum()) > 0
    weighted = frame.Define("w", "weights*(keras_max_index==0)").Sum("w").GetValue()
    assert weighted > 0


def test_output_mode_writes_full_copy_and_leaves_input(trained_models, setup, tmp_path):
    data_file = write_ntuple(tmp_path / "data.root", 2500)
    before, digest_before = arrays(data_file), digest(data_file)
    out = tmp_path / "out" / "scored.root"
    written = run_application(*setup("bdt"), [str(data_file)], TREE, output=str(out))

    assert written == [out] and digest(data_file) == digest_before
    after = arrays(out)
    check_originals(before, after)
    check_scores(after, trained_models, "bdt", "bdt_")
    check_extras(out)


def test_friend_mode_lines_up_with_the_input(trained_models, setup, tmp_path):
    from htt_tmva._root import root

    ROOT = root()
    data_file = write_ntuple(tmp_path / "data.root", 2200)
    digest_before = digest(data_file)
    friend = tmp_path / "friends" / "data_keras.root"
    run_application(*setup("keras"), [str(data_file)], TREE, friend=str(friend), chunk_size=500)

    assert digest(data_file) == digest_before
    with uproot.open(friend) as f:
        assert list(f.keys(cycle=False)) == [TREE]
        assert list(f[TREE].keys()) == ["event"] + [f"keras_{c}" for c in CLASSES] + [
            "keras_max_score",
            "keras_max_index",
        ]
    # TTree::AddFriend
    tfile = ROOT.TFile.Open(str(data_file))
    tree = tfile.Get(TREE)
    tree.AddFriend(f"scores={TREE}", str(friend))
    assert tree.Draw("event-scores.event", "", "goff") == 2200
    assert all(tree.GetV1()[i] == 0 for i in range(2200))
    tfile.Close()
    # RDataFrame on the main tree with the friend
    main = ROOT.TChain(TREE)
    main.Add(str(data_file))
    friend_chain = ROOT.TChain(TREE)
    friend_chain.Add(str(friend))
    main.AddFriend(friend_chain, "scores")
    columns = ROOT.RDataFrame(main).AsNumpy(
        ["event", "scores.event", "x", "y", "keras_signal", "keras_max_index"]
    )
    np.testing.assert_array_equal(columns["event"], columns["scores.event"])
    merged = {"x": columns["x"], "y": columns["y"], "event": columns["event"]}
    merged.update({f"keras_{c}": arrays(friend)[f"keras_{c}"] for c in CLASSES})
    merged["keras_max_score"] = arrays(friend)["keras_max_score"]
    merged["keras_max_index"] = columns["keras_max_index"]
    check_scores(merged, trained_models, "keras", "keras_")


def test_several_inputs_and_globs(setup, tmp_path):
    folder = tmp_path / "ntuples"
    folder.mkdir()
    files = [
        write_ntuple(folder / f"sample_{i}.root", 500 + i, seed=i, extras=False) for i in range(3)
    ]
    friends = tmp_path / "friends"
    written = run_application(
        *setup("keras"),
        [str(folder / "sample_[01].root"), str(files[2])],
        TREE,
        friend=str(friends),
    )
    assert written == [friends / f.name for f in files]
    for f in files:
        np.testing.assert_array_equal(arrays(friends / f.name)["event"], arrays(f)["event"])


def test_tree_in_a_folder(trained_models, setup, tmp_path):
    data_file = write_ntuple(tmp_path / "data.root", 800, tree="sel/ntuple", extras=False)
    run_application(*setup("keras"), [str(data_file)], "sel/ntuple")
    check_scores(arrays(data_file, "sel/ntuple"), trained_models, "keras", "keras_")


def test_existing_branches_need_overwrite(trained_models, setup, tmp_path):
    data_file = write_ntuple(tmp_path / "data.root", 900, extras=False)
    configs = setup("keras")
    run_application(*configs, [str(data_file)], TREE)
    digest_before = digest(data_file)
    with pytest.raises(OutputError, match="--overwrite"):
        run_application(*configs, [str(data_file)], TREE)
    assert digest(data_file) == digest_before
    run_application(*configs, [str(data_file)], TREE, overwrite=True)
    with uproot.open(data_file) as f:
        names = list(f[TREE].keys())
    assert len(names) == len(set(names)) == len(ORIGINAL) + len(CLASSES) + 2
    check_scores(arrays(data_file), trained_models, "keras", "keras_")


def test_existing_output_file_is_extended_and_its_scores_need_overwrite(setup, tmp_path):
    data_file = write_ntuple(tmp_path / "data.root", 300, extras=False)
    out = tmp_path / "out.root"
    run_application(*setup("keras"), [str(data_file)], TREE, output=str(out))
    before = digest(out)
    with pytest.raises(OutputError, match="has branches .* already"):
        run_application(*setup("keras"), [str(data_file)], TREE, output=str(out))
    assert digest(out) == before
    run_application(*setup("bdt"), [str(data_file)], TREE, output=str(out))
    assert {"keras_max_index", "bdt_max_index"} <= set(arrays(out))
    run_application(*setup("keras"), [str(data_file)], TREE, output=str(out), overwrite=True)
    assert {"keras_max_index", "bdt_max_index"} <= set(arrays(out))


@pytest.mark.parametrize("compile_models", [False, True], ids=["python", "compiled"])
def test_nonfinite_default_writes_value_and_no_class(setup, tmp_path, compile_models):
    """With --nonfinite-default 0, the events without a valid score must not pass the
    classic ``max_index==0`` cut: their max_index is -1, which no class has."""
    from htt_tmva._root import root

    data_file = write_ntuple(tmp_path / "data.root", 1000, nan_rows=7, extras=False)
    run_application(
        *setup("keras"),
        [str(data_file)],
        TREE,
        nonfinite_default=0.0,
        chunk_size=300,
        compile_models=compile_models,
    )
    data = arrays(data_file)
    bad = ~np.isfinite(data["x"])
    assert bad.sum() == 7
    for name in [f"keras_{c}" for c in CLASSES] + ["keras_max_score"]:
        assert (data[name][bad] == 0.0).all()
        assert (data[name][~bad] > 0).all()
    assert (data["keras_max_index"][bad] == -1).all()
    assert set(np.unique(data["keras_max_index"][~bad])) <= {0.0, 1.0, 2.0}
    selected = root().RDataFrame(TREE, str(data_file)).Filter("keras_max_index==0")
    x_selected = selected.AsNumpy(["x"])["x"]
    assert len(x_selected) == int((data["keras_max_index"] == 0).sum()) > 0
    assert np.isfinite(x_selected).all()


def test_float_event_numbers_are_used_when_exact(trained_models, setup, tmp_path):
    data_file = write_ntuple(tmp_path / "data.root", 600, event_dtype=np.float64, extras=False)
    run_application(*setup("keras"), [str(data_file)], TREE)
    check_scores(arrays(data_file), trained_models, "keras", "keras_")


# ---------------------------------------------------------------- safety


@pytest.fixture(scope="module")
def big_ntuple(tmp_path_factory) -> Path:
    """1.5M events: the write takes seconds, long enough to be interrupted."""
    from htt_tmva._root import root

    path = tmp_path_factory.mktemp("big") / "big.root"
    frame = root().RDataFrame(1_500_000)
    frame = (
        frame.Define("x", "float(gRandom->Gaus())")
        .Define("y", "float(gRandom->Gaus())")
        .Define("weights", "1.f")
        .Define("event", "ULong64_t(rdfentry_)")
    )
    frame.Snapshot(TREE, str(path), ["x", "y", "weights", "event"])
    return path


def ctrl_c_as_in_a_terminal() -> None:
    """``preexec_fn``: SIGINT with its default action in the child, as in a terminal, even
    when the tests run as a background job (which inherits SIGINT ignored)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def start_and_wait_for_write(configs, data_file: Path, *options: str) -> subprocess.Popen:
    """Run the apply command; return once its temporary output holds more than 1 MB."""
    command = [sys.executable, "-m", "htt_tmva.cli", "apply", *map(str, configs)]
    process = subprocess.Popen(
        [*command, str(data_file), TREE, *options],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        preexec_fn=ctrl_c_as_in_a_terminal,
    )
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and process.poll() is None:
        temps = [
            p
            for p in data_file.parent.glob(f".{data_file.stem}*")
            if "scores" not in p.name and p.stat().st_size > 1_000_000
        ]
        if temps:
            return process
        time.sleep(0.02)
    raise AssertionError(process.stderr.read().decode()[-2000:])


def test_kill_during_write_leaves_input_untouched(setup, big_ntuple, tmp_path):
    data_file = tmp_path / "big.root"
    shutil.copyfile(big_ntuple, data_file)
    configs = setup("keras")
    digest_before, listing = digest(data_file), sorted(os.listdir(tmp_path))
    process = start_and_wait_for_write(configs, data_file)
    process.send_signal(signal.SIGKILL)
    process.wait()
    process.stderr.close()
    assert process.returncode == -signal.SIGKILL
    assert digest(data_file) == digest_before
    visible = sorted(p for p in os.listdir(tmp_path) if not p.startswith("."))
    assert visible == [p for p in listing if not p.startswith(".")]
    # the next run removes what the killed one left behind, and completes
    assert [p for p in os.listdir(tmp_path) if p.startswith(".big")]
    run_application(*configs, [str(data_file)], TREE)
    assert not [p for p in os.listdir(tmp_path) if p.startswith(".")]
    assert "keras_max_index" in arrays(data_file)


def interrupt(process: subprocess.Popen, tries: int = 40) -> bytes:
    """Ctrl-C, repeated every 0.3 s until the run reports it: ROOT ignores SIGINT during
    each file write (TFile::WriteBuffer), so a single one can be lost, as in a terminal."""
    os.set_blocking(process.stderr.fileno(), False)
    stderr = b""
    for _ in range(tries):
        stderr += process.stderr.read() or b""
        if b"interrupted" in stderr or process.poll() is not None:
            break
        process.send_signal(signal.SIGINT)
        deadline = time.monotonic() + 0.3
        while time.monotonic() < deadline and process.poll() is None:
            stderr += process.stderr.read() or b""
            if b"interrupted" in stderr:
                break
            time.sleep(0.02)
    process.wait(timeout=120)
    os.set_blocking(process.stderr.fileno(), True)
    return stderr + process.stderr.read()


def test_interrupt_cleans_up_and_leaves_input_untouched(setup, big_ntuple, tmp_path):
    """Ctrl-C while the new file is written: the run stops with 130, removes its scratch
    files and leaves the input as it was (a run that ignored SIGINT would end with 0)."""
    data_file = tmp_path / "big.root"
    shutil.copyfile(big_ntuple, data_file)
    configs = setup("keras")
    digest_before = digest(data_file)
    # the two-pass path: its Python loop sees Ctrl-C at once (the compiled one-pass path
    # runs its event loop in one C++ call, so Ctrl-C takes effect when that loop ends)
    process = start_and_wait_for_write(configs, data_file)
    stderr = interrupt(process)
    assert process.returncode == 130, stderr.decode()[-2000:]
    assert b"interrupted" in stderr
    assert digest(data_file) == digest_before
    assert not [p for p in os.listdir(tmp_path) if p.startswith(".")]


def test_command_line(setup, tmp_path):
    data_file = write_ntuple(tmp_path / "data.root", 400, extras=False)
    command = [
        sys.executable,
        "-m",
        "htt_tmva.cli",
        "apply",
        *map(str, setup("keras")),
        str(data_file),
        TREE,
        "--chunk-size",
        "100",
    ]
    result = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "keras_max_index" in arrays(data_file)
    (record,) = yaml.safe_load((tmp_path / "data.keras_application.yaml").read_text())["runs"]
    assert [c["source"] for c in record["configs"]] == [str(p) for p in setup("keras")]
    assert record["mode"] == "inplace" and record["trees"] == [TREE]
    missing = subprocess.run(
        [*command[:-4], str(tmp_path / "nope.root"), TREE],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert missing.returncode == 1
    assert "nope.root' does not exist" in missing.stderr and "Traceback" not in missing.stderr


# ---------------------------------------------------------------- errors, input untouched


@pytest.fixture
def data_file(tmp_path):
    return write_ntuple(tmp_path / "data.root", 500)


def refused(configs, data_file, error, match, **kwargs):
    digest_before = digest(data_file)
    with pytest.raises(error, match=match):
        run_application(*configs, [str(data_file)], kwargs.pop("tree", TREE), **kwargs)
    assert digest(data_file) == digest_before
    assert not [p for p in data_file.parent.iterdir() if p.name.startswith(".")]


def test_missing_input_file(setup, tmp_path):
    with pytest.raises(InputFileError, match="does not exist"):
        run_application(*setup(), [str(tmp_path / "missing.root")], TREE)
    with pytest.raises(InputFileError, match="no input file matches"):
        run_application(*setup(), [str(tmp_path / "missing_*.root")], TREE)


def test_missing_tree(setup, data_file):
    refused(setup(), data_file, MissingTreeError, "did you mean 'ntuple'", tree="ntupel")


def test_missing_variable(setup, tmp_path):
    data_file = write_ntuple(tmp_path / "data.root", 300, drop=("y",), extras=False)
    refused(setup(), data_file, MissingBranchError, "branch 'y' not found")


def test_missing_event_branch(setup, trained_models, toy_dir, tmp_path):
    data_file = write_ntuple(tmp_path / "data.root", 300, extras=False)
    dataset = write_yaml(
        tmp_path / "dataset_evt.yaml", dataset_document(toy_dir, tmp_path, event_branch="evnt")
    )
    _, training, application = setup()
    refused(
        (dataset, training, application),
        data_file,
        MissingBranchError,
        "branch 'evnt' not found.*did you mean 'event'",
    )


def test_an_event_branch_other_than_the_models_is_refused(setup, toy_dir, tmp_path):
    """Folds made from another branch would hand events to the models trained on them."""
    from htt_tmva.errors import FoldLeakError

    data_file = write_ntuple(tmp_path / "data.root", 300, extras=False)
    dataset = write_yaml(
        tmp_path / "dataset_run.yaml", dataset_document(toy_dir, tmp_path, event_branch="run")
    )
    _, training, application = setup("bdt")
    refused(
        (dataset, training, application),
        data_file,
        FoldLeakError,
        "trained on folds of the event branch 'event', but the dataset config gives "
        "'event_branch: run'",
    )


def test_non_scalar_variable(setup, tmp_path):
    from htt_tmva._root import root

    ROOT = root()
    path = tmp_path / "data.root"
    frame = ROOT.RDataFrame(10).Define("x", "ROOT::RVecF{1.f, 2.f}").Define("y", "1.f")
    frame.Define("event", "ULong64_t(rdfentry_)").Snapshot(TREE, str(path), ["x", "y", "event"])
    refused(setup(), path, InputFileError, "branch 'x'.*not a scalar")


def test_nonfinite_inputs_are_counted(setup, tmp_path):
    data_file = write_ntuple(tmp_path / "data.root", 2000, nan_rows=13, extras=False)
    refused(
        setup(),
        data_file,
        NonFiniteError,
        r"13 of 2000 events.*'x' in 13 events.*--nonfinite-default",
        chunk_size=300,
    )


def test_inexact_float_event_numbers(setup, tmp_path):
    from htt_tmva._root import root

    path = tmp_path / "data.root"
    frame = (
        root()
        .RDataFrame(100)
        .Define("x", "1.f")
        .Define("y", "2.f")
        .Define("event", "rdfentry_ + 0.5f")
    )
    frame.Snapshot(TREE, str(path), ["x", "y", "event"])
    refused(setup(), path, InvalidEventNumberError, "not integers")


def test_missing_model_file(setup, data_file):
    refused(
        setup(classifiers=["fold1_keras_model_example.keras", "nope.keras"]),
        data_file,
        ModelError,
        r"model file 'nope.keras' not found in '.*'; model files there: .*"
        r"'fold0_keras_model_example.keras'.*relative to the training config's output_path",
    )


def test_model_disagreeing_with_training_config(
    setup, trained_models, fold_dir, tmp_path, data_file
):
    dataset, _, application = setup()
    output = trained_models["keras"]["output_path"]
    for overrides, match in (
        ({"variables": ["y", "x"]}, "variables"),
        ({"classes": CLASSES[::-1]}, "classes"),
    ):
        doc = training_document(fold_dir, output, **overrides)
        if "classes" in overrides:
            doc["class_weights"] = {c: 1.0 for c in CLASSES}
        training = write_yaml(tmp_path / "training_bad.yaml", doc)
        refused((dataset, training, application), data_file, ModelError, f"{match}.*order matters")


def test_models_in_the_wrong_fold_order(setup, data_file):
    refused(setup(swap=True), data_file, FoldLeakError, "trained on fold")


def test_classifier_count_must_match_folds(setup, data_file):
    refused(
        setup(
            classifiers=["fold1_keras_model_example.keras"],
            preprocessing=["fold1_keras_preprocessing_example.json"],
        ),
        data_file,
        ConfigError,
        "one model per event fold",
    )


def test_zombie_input(setup, tmp_path):
    path = tmp_path / "zombie.root"
    path.write_bytes(b"this is not a ROOT file" * 100)
    refused(setup(), path, InputFileError, "zombie")


def test_recovered_input(setup, tmp_path):
    path = tmp_path / "recovered.root"
    script = (
        "import os, ROOT\n"
        f"f = ROOT.TFile.Open({str(path)!r}, 'RECREATE')\n"
        "t = ROOT.TNtuple('ntuple', '', 'x:y:event')\n"
        "[t.Fill(i, i, i) for i in range(100)]\n"
        "t.Write(); f.Flush(); os._exit(0)\n"
    )
    subprocess.run([sys.executable, "-c", script], check=True, timeout=120)
    refused(setup(), path, InputFileError, "recovered")


def test_unwritable_output_location(setup, data_file, tmp_path):
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    refused(
        setup(),
        data_file,
        OutputError,
        "cannot create output folder",
        output=str(blocker / "sub" / "out.root"),
    )
    refused(
        setup(),
        data_file,
        OutputError,
        "cannot create output folder",
        friend=str(blocker / "friend.root" / "x.root"),
    )


def test_friend_cannot_be_the_input(setup, data_file):
    refused(setup(), data_file, OutputError, "is the input file itself", friend=str(data_file))


def without_permission_override() -> None:
    """``preexec_fn``: drop CAP_DAC_OVERRIDE and CAP_DAC_READ_SEARCH from the capability
    bounding set, so that the child, even as root (as CI runs), obeys file permissions."""
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    pr_capbset_drop, cap_dac_override, cap_dac_read_search = 24, 1, 2
    for capability in (cap_dac_override, cap_dac_read_search):
        if libc.prctl(pr_capbset_drop, capability, 0, 0, 0) != 0:
            raise OSError(ctypes.get_errno(), "prctl(PR_CAPBSET_DROP) failed")


def test_read_only_input_in_place(setup, data_file):
    data_file.chmod(0o444)
    digest_before = digest(data_file)
    command = [sys.executable, "-m", "htt_tmva.cli", "apply", *map(str, setup()), str(data_file)]
    probe = "open(__import__('sys').argv[1], 'ab')"
    denied = subprocess.run(
        [sys.executable, "-c", probe, str(data_file)],
        preexec_fn=without_permission_override if os.geteuid() == 0 else None,
        capture_output=True,
    )
    assert denied.returncode != 0 and b"PermissionError" in denied.stderr  # really read-only
    result = subprocess.run(
        [*command, TREE],
        preexec_fn=without_permission_override if os.geteuid() == 0 else None,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 1, result.stderr[-2000:]
    assert "is not writable" in result.stderr and "Traceback" not in result.stderr
    assert digest(data_file) == digest_before
    assert stat.S_IMODE(data_file.stat().st_mode) == 0o444
    assert not [p for p in data_file.parent.iterdir() if p.name.startswith(".")]


def test_bad_branch_prefix(setup, data_file):
    refused(setup(branch_prefix="my-"), data_file, ConfigError, "not valid identifiers")


def test_input_untouched_when_copy_is_unverifiable(setup, data_file, monkeypatch):
    from htt_tmva.application import writer

    monkeypatch.setattr(writer, "output_hash", lambda *args, **kwargs: 12345)
    refused(setup(), data_file, OutputError, "order of the 'event' column differs")


def test_scratch_files_are_removed_after_failure(setup, tmp_path):
    data_file = write_ntuple(tmp_path / "data.root", 300, nan_rows=1, extras=False)
    with pytest.raises(NonFiniteError):
        run_application(*setup(), [str(data_file)], TREE)
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


# ---------------------------------------------------------------- scores that must not be written


@pytest.mark.parametrize("compile_models", [False, True], ids=["python", "compiled"])
def test_nonfinite_inputs_are_counted_over_the_whole_tree(setup, tmp_path, compile_models):
    """The count covers every chunk, not only those read before the writing stopped: the
    first bad value comes when pass 2 is already writing, which then stops at once."""
    n = 200_000
    data_file = write_ntuple(tmp_path / "data.root", n, nan_at=(n // 2, n - 1), extras=False)
    refused(
        setup(),
        data_file,
        NonFiniteError,
        rf"2 of {n} events.*'x' in 2 events",
        chunk_size=1000,
        compile_models=compile_models,
    )


@pytest.mark.parametrize("compile_models", [False, True], ids=["python", "compiled"])
def test_nonfinite_scores_are_refused_with_their_count(setup, tmp_path, compile_models):
    """Finite inputs beyond the float32 range make the network return NaN: refused with
    the count, nothing written."""
    from htt_tmva._root import root

    rng = np.random.default_rng(3)
    n = 1000
    x = rng.normal(size=n)
    x[[5, 500, 999]] = [1e300, -1e300, 3e299]
    columns = {
        "x": x,
        "y": rng.normal(size=n),
        "event": rng.permutation(n).astype(np.uint64),
    }
    path = tmp_path / "data.root"
    root().RDF.FromNumpy(columns).Snapshot(TREE, str(path), list(columns))
    refused(
        setup("keras"),
        path,
        ModelError,
        r"(3 of 1000 events.*non-finite scores)|(NaN scores for 3 of 1000 events)",
        chunk_size=300,
        compile_models=compile_models,
    )


# ---------------------------------------------------------------- folds of unsigned event numbers


def write_process_files(folder: Path, n: int = 300) -> dict[str, Path]:
    """One file per class with ULong64_t event numbers around 2^63 and up to 2^64-1 (and
    small ones), shuffled; x, y, weights."""
    from htt_tmva._root import root

    folder.mkdir()
    files = {}
    for c, name in enumerate(CLASSES):
        rng = np.random.default_rng(c)
        third = n // 3
        events = np.concatenate(
            [
                np.uint64(2**63 - 50 + 100 * c) + np.arange(third, dtype=np.uint64),
                np.uint64(2**64 - 1 - 100 * c) - np.arange(third, dtype=np.uint64),
                rng.choice(10**6, size=n - 2 * third, replace=False).astype(np.uint64),
            ]
        )
        columns = {
            "x": (rng.normal(size=n) + c).astype(np.float32),
            "y": rng.normal(size=n).astype(np.float32),
            "weights": np.ones(n, dtype=np.float32),
            "event": rng.permutation(events),
        }
        files[name] = folder / f"example_{name}.root"
        root().RDF.FromNumpy(columns).Snapshot(TREE, str(files[name]), list(columns))
    return files


@pytest.mark.parametrize("compile_models", [False, True], ids=["python", "compiled"])
def test_unsigned_event_numbers_get_the_same_fold_in_dataset_and_application(
    tmp_path, compile_models
):
    """Three folds (2^64 is not a multiple of 3, so a signed read would move every event
    above 2^63 to another fold): the dataset step puts each event in fold e % 3, and the
    application scores it with the model that never saw that fold."""
    from htt_tmva.config import load_dataset_config, load_training_config
    from htt_tmva.data.dataset import create_training_dataset
    from htt_tmva.training import train_folds

    files = write_process_files(tmp_path / "ntuples")
    dataset_doc = dataset_document(tmp_path / "ntuples", tmp_path / "folds", folds=3)
    for process in dataset_doc["processes"].values():
        process["cut_string"] = "(x > -100)"
    dataset = write_yaml(tmp_path / "dataset.yaml", dataset_doc)
    fold_files = create_training_dataset(load_dataset_config(dataset))
    dataset_fold = {}
    for fold in range(3):
        with uproot.open(tmp_path / "folds" / f"fold{fold}_training_dataset.root") as f:
            for name in CLASSES:
                for event in f[name]["event"].array(library="np"):
                    assert int(event) not in dataset_fold
                    dataset_fold[int(event)] = fold
    assert len(fold_files) == 3 and len(dataset_fold) == 3 * 300
    assert all(fold == event % 3 for event, fold in dataset_fold.items())
    assert sum(event >= 2**63 for event in dataset_fold) == 3 * 200 - 50

    training_doc = training_document(tmp_path / "folds", tmp_path / "models")
    training_doc["datasets"] = [
        str(tmp_path / "folds" / f"fold{i}_training_dataset.root") for i in range(3)
    ]
    training_doc["bdt"] = {"NTrees": 15, "MaxDepth": 2}
    training = write_yaml(tmp_path / "training.yaml", training_doc)
    train_folds(load_training_config(training), range(3), engine="bdt")
    models = [tmp_path / "models" / f"fold{i}_bdt_model.json" for i in range(3)]
    # classifiers[j] scores fold j: the model trained on fold (j - 1) % 3
    application = write_yaml(
        tmp_path / "application.yaml",
        {"classifiers": [models[(j - 1) % 3].name for j in range(3)], "branch_prefix": "bdt_"},
    )
    friends = tmp_path / "friends"
    run_application(
        dataset,
        training,
        application,
        [str(f) for f in files.values()],
        TREE,
        friend=str(friends),
        chunk_size=128,
        compile_models=compile_models,
    )
    trained = {"bdt": {"models": models}}
    for path in files.values():
        data, scored = arrays(path), arrays(friends / path.name)
        np.testing.assert_array_equal(scored["event"], data["event"])
        x = np.column_stack([data["x"], data["y"]]).astype(np.float64)
        got = np.column_stack([scored[f"bdt_{c}"] for c in CLASSES])
        distance = np.stack(
            [np.abs(independent_predict(trained, "bdt", m, x) - got).max(axis=1) for m in range(3)]
        )
        scorer = distance.argmin(axis=0)
        assert (distance.min(axis=0) < 1e-5).all()
        application_fold = (scorer + 1) % 3  # the model of fold m scores fold m + 1
        assert [dataset_fold[int(e)] for e in data["event"]] == list(application_fold)


# ---------------------------------------------------------------- concurrent runs, scratch, commit


def apply_command(configs, data_file: Path) -> list[str]:
    return [sys.executable, "-m", "htt_tmva.cli", "apply", *map(str, configs), str(data_file), TREE]


def start_and_stop_while_scoring(configs, data_file: Path) -> subprocess.Popen:
    """Start an in-place application and freeze it (SIGSTOP) once it writes its new file,
    i.e. after it inspected (and, with locking, locked) its input and before it commits."""
    process = subprocess.Popen(
        apply_command(configs, data_file), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and process.poll() is None:
        if list(data_file.parent.glob(f".{data_file.stem}.tmp.*")):
            process.send_signal(signal.SIGSTOP)
            return process
        time.sleep(0.005)
    raise AssertionError(process.stderr.read().decode()[-2000:])


def branch_names(path: Path) -> list[str]:
    with uproot.open(path) as f:
        return list(f[TREE].keys())


def test_two_concurrent_in_place_applications_lose_no_branches(setup, big_ntuple, tmp_path):
    """The Keras and the BDT scores applied to the same file at the same time, by two real
    processes: the second is refused clearly while the first holds the file; whatever
    a process reports as done is in the file at the end."""
    data_file = tmp_path / "big.root"
    shutil.copyfile(big_ntuple, data_file)
    first = start_and_stop_while_scoring(setup("keras"), data_file)
    try:
        second = subprocess.run(
            apply_command(setup("bdt"), data_file), capture_output=True, text=True, timeout=300
        )
    finally:
        first.send_signal(signal.SIGCONT)
    _, first_stderr = first.communicate(timeout=300)
    names = branch_names(data_file)
    for prefix, returncode in (("keras_", first.returncode), ("bdt_", second.returncode)):
        if returncode == 0:
            assert f"{prefix}max_index" in names, f"{prefix} scores reported written but lost"
    assert first.returncode == 0, first_stderr.decode()[-2000:]
    assert second.returncode == 1
    assert "being written by another htt-tmva apply" in second.stderr
    assert "Traceback" not in second.stderr
    assert not [p for p in os.listdir(tmp_path) if p.startswith(".")]


def test_input_rewritten_meanwhile_is_not_overwritten(setup, big_ntuple, tmp_path):
    """Another program replaces the input (here with a version that has one more branch)
    while the application runs: the application must fail, not drop that change."""
    from htt_tmva._root import root

    data_file = tmp_path / "big.root"
    shutil.copyfile(big_ntuple, data_file)
    process = start_and_stop_while_scoring(setup("keras"), data_file)
    try:
        other = tmp_path / "other_version.root"
        frame = root().RDataFrame(TREE, str(data_file)).Define("z", "x + y")
        frame.Snapshot(TREE, str(other), ["x", "y", "weights", "event", "z"])
        os.replace(other, data_file)
    finally:
        process.send_signal(signal.SIGCONT)
    _, stderr = process.communicate(timeout=300)
    assert process.returncode == 1, stderr.decode()[-2000:]
    assert b"changed since it was read" in stderr
    assert branch_names(data_file) == ["x", "y", "weights", "event", "z"]
    assert not [p for p in os.listdir(tmp_path) if p.startswith(".")]


def dead_pid() -> int:
    process = subprocess.Popen(["true"])
    process.wait()
    return process.pid


def test_stale_scratch_files_only_of_this_host_and_dead_processes_are_removed(tmp_path):
    from htt_tmva.application.writer import OutputPlan, host_name, remove_stale, scratch_names

    final = tmp_path / "data.root"
    sleeper = subprocess.Popen(["sleep", "60"])
    try:
        own_dead = scratch_names(final, host_name(), dead_pid())
        own_running = scratch_names(final, host_name(), sleeper.pid)
        other_host = scratch_names(final, "another-node", dead_pid())
        for path in (*own_dead, *own_running, *other_host):
            path.write_bytes(b"scratch")
        plan = OutputPlan("inplace", final, final, *scratch_names(final))
        removed = remove_stale(plan)
    finally:
        sleeper.kill()
        sleeper.wait()
    assert sorted(removed) == sorted(own_dead)
    assert all(p.exists() for p in (*own_running, *other_host))


def test_fsync_failure_of_the_new_file_stops_the_commit(tmp_path):
    """A file whose fsync fails (procfs refuses it) never replaces the output."""
    from htt_tmva.application.writer import OutputPlan, commit_all

    final = tmp_path / "out.root"
    final.write_bytes(b"previous output")
    plan = OutputPlan(
        "output", tmp_path / "in.root", final, Path("/proc/self/status"), tmp_path / ".s"
    )
    with pytest.raises(OutputError, match="cannot flush the new file '/proc/self/status'"):
        commit_all([plan])
    assert final.read_bytes() == b"previous output"


def test_several_inputs_all_or_nothing(setup, tmp_path):
    """A failure on the third input leaves the first two untouched (nothing committed)."""
    files = [
        write_ntuple(tmp_path / f"sample_{i}.root", 600, seed=i, nan_rows=5 if i == 2 else 0)
        for i in range(3)
    ]
    digests = [digest(f) for f in files]
    with pytest.raises(NonFiniteError, match="sample_2.root"):
        run_application(*setup("keras"), [str(f) for f in files], TREE)
    assert [digest(f) for f in files] == digests
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]
    assert not list(tmp_path.glob("sample_*application.yaml"))


# ---------------------------------------------------------------- tree metadata


def add_tree_metadata(path: Path) -> None:
    """Aliases, two friends (one in the same file, one in another), a TTreeIndex, UserInfo
    and a tree weight, as analysis ntuples may carry them."""
    from htt_tmva._root import root

    ROOT = root()
    calib = path.with_name("calib.root")
    n = int(len(arrays(path)["event"]))
    ROOT.RDataFrame(n).Define("c", "float(rdfentry_)").Snapshot("calib", str(calib), ["c"])
    tfile = ROOT.TFile.Open(str(path), "UPDATE")
    shift = ROOT.TNtuple("shift", "", "s")
    for i in range(n):
        shift.Fill(2.0 * i)
    shift.Write()
    tree = tfile.Get(TREE)
    tree.SetAlias("r", "sqrt(x*x + y*y)")
    tree.SetAlias("x2", "2*x")
    tree.AddFriend("shift")
    tree.AddFriend("cal=calib", str(calib))
    tree.BuildIndex("run", "event")
    for item in (ROOT.TNamed("production", "toy v1"), ROOT.TParameter("double")("lumi", 41.5)):
        ROOT.SetOwnership(item, False)
        tree.GetUserInfo().Add(item)
    tree.SetWeight(0.25)
    tree.Write("", ROOT.TObject.kOverwrite)
    tfile.Close()


def test_in_place_keeps_tree_metadata(trained_models, setup, tmp_path):
    from htt_tmva._root import root

    ROOT = root()
    data_file = write_ntuple(tmp_path / "data.root", 1500)
    add_tree_metadata(data_file)
    before = arrays(data_file)
    run_application(*setup("bdt"), [str(data_file)], TREE)
    check_scores(arrays(data_file), trained_models, "bdt", "bdt_")
    check_extras(data_file)

    tfile = ROOT.TFile.Open(str(data_file))
    tree = tfile.Get(TREE)
    aliases = {str(a.GetName()): str(a.GetTitle()) for a in tree.GetListOfAliases()}
    assert aliases == {"r": "sqrt(x*x + y*y)", "x2": "2*x"}
    friends = [(str(f.GetName()), str(f.GetTreeName())) for f in tree.GetListOfFriends()]
    assert friends == [("shift", "shift"), ("cal", "calib")]
    index = tree.GetTreeIndex()
    assert index.ClassName() == "TTreeIndex"
    assert (str(index.GetMajorName()), str(index.GetMinorName())) == ("run", "event")
    for entry in (0, 7, 1499):
        run, event = int(before["run"][entry]), int(before["event"][entry])
        assert tree.GetEntryNumberWithIndex(run, event) == entry
    info = {str(o.GetName()): o for o in tree.GetUserInfo()}
    assert sorted(info) == ["lumi", "production"]
    assert info["production"].GetTitle() == "toy v1" and info["lumi"].GetVal() == 41.5
    assert tree.GetWeight() == 0.25
    # the aliases and friends work
    assert tree.Draw("x2 - 2*x", "", "goff") == 1500
    assert all(abs(tree.GetV1()[i]) < 1e-6 for i in range(1500))
    assert tree.Draw("shift.s - 2*Entry$ + cal.c - Entry$", "", "goff") == 1500
    assert all(tree.GetV1()[i] == 0 for i in range(1500))
    tfile.Close()
