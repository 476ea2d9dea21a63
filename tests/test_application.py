"""The application step end to end: scores per fold, safe output modes, errors.

Inputs are toy-like ntuples written here (shuffled, non-sequential event numbers, extra
branches and other objects in the file); models come from the ``trained_models`` fixture.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import yaml
from conftest import CLASSES, dataset_document, training_document, write_yaml

from htt_tmva.application.apply import run_application
from htt_tmva.engines.base import load_model
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


def expected_scores(trained: dict, engine: str, x: np.ndarray, events: np.ndarray) -> np.ndarray:
    """The engine's batch predictions, each event by the model that never saw its fold."""
    info = trained[engine]
    expected = np.full((len(x), len(CLASSES)), np.nan)
    for fold in (0, 1):
        other = 1 - fold  # the model of fold 1 - f scores events of fold f
        pre = info["preprocessing"][other] if info["preprocessing"] else None
        model = load_model(info["models"][other], engine, pre)
        mask = events % 2 == fold
        expected[mask] = model.predict(x[mask])
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


def test_output_file_exists_needs_overwrite(setup, tmp_path):
    data_file = write_ntuple(tmp_path / "data.root", 300, extras=False)
    out = tmp_path / "out.root"
    out.write_bytes(b"keep me")
    with pytest.raises(OutputError, match="exists already"):
        run_application(*setup("keras"), [str(data_file)], TREE, output=str(out))
    assert out.read_bytes() == b"keep me"
    run_application(*setup("keras"), [str(data_file)], TREE, output=str(out), overwrite=True)
    assert "keras_max_index" in arrays(out)


def test_nonfinite_default_writes_value(setup, tmp_path):
    data_file = write_ntuple(tmp_path / "data.root", 1000, nan_rows=7, extras=False)
    run_application(
        *setup("keras"), [str(data_file)], TREE, nonfinite_default=-999.0, chunk_size=300
    )
    data = arrays(data_file)
    bad = ~np.isfinite(data["x"])
    assert bad.sum() == 7
    for name in [f"keras_{c}" for c in CLASSES] + ["keras_max_score", "keras_max_index"]:
        assert (data[name][bad] == -999.0).all()
        assert (data[name][~bad] >= 0).all()


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


def start_and_wait_for_write(configs, data_file: Path) -> subprocess.Popen:
    """Run the apply command; return once its temporary output holds more than 1 MB."""
    command = [sys.executable, "-m", "htt_tmva.cli", "apply", *map(str, configs)]
    process = subprocess.Popen(
        [*command, str(data_file), TREE], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
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


def test_interrupt_cleans_up_and_leaves_input_untouched(setup, big_ntuple, tmp_path):
    data_file = tmp_path / "big.root"
    shutil.copyfile(big_ntuple, data_file)
    configs = setup("keras")
    digest_before = digest(data_file)
    process = start_and_wait_for_write(configs, data_file)
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=60)
    assert not [p for p in os.listdir(tmp_path) if p.startswith(".")]
    if process.returncode == 0:
        # the signal came while C++ code ran (ROOT defers it) and the run completed: then the
        # input must be fully updated, never half-written
        assert len(arrays(data_file)["keras_max_index"]) == len(arrays(big_ntuple)["event"])
        return
    assert process.returncode == 130, stderr.decode()[-2000:]
    assert b"interrupted" in stderr
    assert digest(data_file) == digest_before


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
    record = yaml.safe_load((tmp_path / "data.keras_application.yaml").read_text())
    assert [c["source"] for c in record["configs"]] == [str(p) for p in setup("keras")]
    assert record["mode"] == "inplace" and record["tree"] == TREE
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


def test_read_only_input_in_place(setup, data_file):
    if os.geteuid() == 0:
        pytest.skip("root can write read-only files")
    data_file.chmod(0o444)
    refused(setup(), data_file, OutputError, "not writable")


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
