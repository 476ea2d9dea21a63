"""k-fold training datasets: fold assignment, class merging, weights, event-number types,
atomic outputs and clear errors on bad inputs."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import uproot
from conftest import CLASSES, dataset_document, write_yaml

from htt_tmva.config import load_dataset_config
from htt_tmva.data.dataset import create_training_dataset
from htt_tmva.errors import (
    ConfigError,
    EmptySelectionError,
    HttTmvaError,
    InputFileError,
    InvalidEventNumberError,
    MissingBranchError,
    MissingTreeError,
    NonFiniteError,
    OutputError,
)

FILENAME = "training_dataset.root"
INPUT_BRANCHES = {"x", "y", "weights", "event"}


# --- helpers -----------------------------------------------------------------------------------


def read(path: Path, tree: str) -> dict[str, np.ndarray]:
    with uproot.open(path) as f:
        return f[tree].arrays(library="np")


def trees(path: Path) -> list[str]:
    with uproot.open(path) as f:
        return sorted(f.keys(cycle=False, filter_classname="TTree"))


def toy_input(toy_dir: Path, process: str) -> dict[str, np.ndarray]:
    return read(toy_dir / f"example_{process}.root", "ntuple")


def expected_files(folds: int = 2, filename: str = FILENAME) -> set[str]:
    stem = filename.rsplit(".", 1)[0]
    return {f"fold{i}_{filename}" for i in range(folds)} | {
        f"fold{i}_{stem}.config.yaml" for i in range(folds)
    }


def folder_listing(folder: Path) -> set[str]:
    """Every entry of a folder, hidden ones included."""
    return set(os.listdir(folder)) if folder.exists() else set()


def build(tmp_path: Path, toy_dir: Path, edit=None, **overrides) -> tuple[list[Path], Path]:
    """Write a dataset config for the toy (edited by ``edit``) and build the folds."""
    out = tmp_path / "out"
    doc = dataset_document(toy_dir, out, **overrides)
    if edit is not None:
        edit(doc)
    config = write_yaml(tmp_path / "dataset.yaml", doc)
    return create_training_dataset(load_dataset_config(config)), out


def _set(process: str, **values):
    """An edit setting keys of one process."""

    def edit(doc):
        doc["processes"][process].update(values)

    return edit


def write_ntuple(path: Path, columns: dict[str, np.ndarray], tree: str = "ntuple") -> Path:
    """A small ROOT file of our own, written with RDataFrame from numpy columns."""
    from htt_tmva._root import root

    ROOT = root()
    df = ROOT.RDF.FromNumpy({k: np.ascontiguousarray(v) for k, v in columns.items()})
    df.Snapshot(tree, str(path), list(columns))
    return path


def custom_columns(event: np.ndarray, seed: int = 3) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    n = len(event)
    return {
        "x": rng.normal(size=n).astype(np.float32),
        "y": rng.normal(size=n).astype(np.float32),
        "weights": np.full(n, 0.5, dtype=np.float32),
        "event": event,
    }


def custom_document(input_file: Path, out: Path, folds: int = 2) -> dict:
    return {
        "base_path": str(input_file.parent),
        "output_path": str(out),
        "output_filename": FILENAME,
        "tree_path": "ntuple",
        "event_branch": "event",
        "training_weight_branch": "training_weight",
        "folds": folds,
        "processes": {
            "sample": {"files": [input_file.name], "class": "sample", "weight_string": "weights"}
        },
    }


# --- the shared two-fold dataset of the toy ----------------------------------------------------


def test_fold_files_hold_one_tree_per_class(fold_dir):
    for fold in (0, 1):
        assert trees(fold_dir / f"fold{fold}_{FILENAME}") == sorted(CLASSES)


def test_fold_trees_keep_all_input_branches_and_add_the_weight(fold_dir, toy_dir):
    with uproot.open(toy_dir / "example_signal.root") as f:
        input_types = f["ntuple"].typenames()
    for fold in (0, 1):
        with uproot.open(fold_dir / f"fold{fold}_{FILENAME}") as f:
            for cls in CLASSES:
                types = f[cls].typenames()
                assert set(types) == INPUT_BRANCHES | {"training_weight"}
                for branch in INPUT_BRANCHES:
                    assert types[branch] == input_types[branch]


@pytest.mark.parametrize("process", CLASSES)
def test_every_selected_event_is_in_exactly_one_fold_given_by_event_mod_2(
    fold_dir, toy_dir, process
):
    source = toy_input(toy_dir, process)
    selected = np.sort(source["event"][source["x"] > -3.0])
    assert 0 < len(selected) <= len(source["event"])
    seen = []
    for fold in (0, 1):
        events = read(fold_dir / f"fold{fold}_{FILENAME}", process)["event"]
        assert len(events) > 0
        assert np.all(events % 2 == fold)
        seen.append(events)
    everything = np.sort(np.concatenate(seen))
    np.testing.assert_array_equal(everything, selected)  # no event lost, none twice


@pytest.mark.parametrize("process", CLASSES)
def test_branch_values_and_sum_of_weights_are_preserved(fold_dir, toy_dir, process):
    source = toy_input(toy_dir, process)
    by_event = {int(e): i for i, e in enumerate(source["event"])}
    total = 0.0
    for fold in (0, 1):
        a = read(fold_dir / f"fold{fold}_{FILENAME}", process)
        rows = np.array([by_event[int(e)] for e in a["event"]])
        for branch in ("x", "y", "weights"):
            np.testing.assert_array_equal(a[branch], source[branch][rows])
        np.testing.assert_allclose(a["training_weight"], source["weights"][rows], rtol=1e-7)
        assert np.all(a["x"] > -3.0)
        total += a["training_weight"].sum(dtype=np.float64)
    expected = source["weights"][source["x"] > -3.0].sum(dtype=np.float64)
    assert total == pytest.approx(expected, rel=1e-9)


def test_fold_outputs_are_readable_by_root(fold_dir):
    from htt_tmva._root import open_root_file

    for fold in (0, 1):
        tfile = open_root_file(fold_dir / f"fold{fold}_{FILENAME}")
        try:
            assert tfile.Get("signal").GetEntries() > 0
        finally:
            tfile.Close()


def test_fold_files_keep_the_input_compression_so_copies_need_no_recompression(fold_dir, toy_dir):
    """Trees written by other workers are copied basket by basket: with other settings
    every basket would be decompressed and recompressed (slow)."""
    from htt_tmva._root import open_root_file

    toy = open_root_file(toy_dir / "example_signal.root")
    expected = toy.GetCompressionSettings()
    toy.Close()
    for fold in (0, 1):
        tfile = open_root_file(fold_dir / f"fold{fold}_{FILENAME}")
        try:
            assert tfile.GetCompressionSettings() == expected
            assert tfile.Get("signal").GetBranch("x").GetCompressionSettings() == expected
        finally:
            tfile.Close()


# --- own builds --------------------------------------------------------------------------------


def test_output_folder_holds_only_the_fold_files_and_their_configs(tmp_path, toy_dir):
    finals, out = build(tmp_path, toy_dir)
    assert [p.name for p in finals] == [f"fold0_{FILENAME}", f"fold1_{FILENAME}"]
    assert all(p.is_file() for p in finals)
    # no hidden scratch folder, no .tmp file, nothing else
    assert folder_listing(out) == expected_files(2)


def test_resolved_config_is_written_next_to_each_fold_file(tmp_path, toy_dir):
    import yaml

    _, out = build(tmp_path, toy_dir)
    doc = yaml.safe_load((out / "fold0_training_dataset.config.yaml").read_text())
    assert doc["resolved"]["folds"] == 2
    assert doc["resolved"]["processes"]["signal"]["files"] == [str(toy_dir / "example_signal.root")]


def test_processes_of_the_same_class_are_merged_into_one_tree(tmp_path, toy_dir):
    def edit(doc):
        doc["processes"]["background_2"]["class"] = "background"
        doc["processes"]["background_1"]["class"] = "background"

    finals, _ = build(tmp_path, toy_dir, edit)
    b1, b2 = toy_input(toy_dir, "background_1"), toy_input(toy_dir, "background_2")
    for fold, path in enumerate(finals):
        assert trees(path) == ["background", "signal"]
        merged = read(path, "background")
        n1 = int(np.sum((b1["event"] % 2 == fold) & (b1["x"] > -3.0)))
        n2 = int(np.sum((b2["event"] % 2 == fold) & (b2["x"] > -3.0)))
        assert len(merged["event"]) == n1 + n2
        expected_sum = b1["weights"][(b1["event"] % 2 == fold) & (b1["x"] > -3.0)].sum(
            dtype=float
        ) + b2["weights"][(b2["event"] % 2 == fold) & (b2["x"] > -3.0)].sum(dtype=float)
        assert merged["training_weight"].sum(dtype=float) == pytest.approx(expected_sum, rel=1e-9)
        # both processes are there: background_1 weights are 0.6/N, background_2 0.3/N
        n = len(b1["x"])
        assert int(np.isclose(merged["weights"], 0.6 / n, rtol=1e-5).sum()) == n1
        assert int(np.isclose(merged["weights"], 0.3 / n, rtol=1e-5).sum()) == n2


def test_weight_string_is_evaluated_per_event(tmp_path, toy_dir):
    def edit(doc):
        doc["processes"]["signal"]["weight_string"] = "2*weights"
        doc["processes"]["background_1"]["weight_string"] = "weights*(x > 0 ? 3.0 : 1.0)"
        doc["processes"]["background_2"]["weight_string"] = "1"

    finals, _ = build(tmp_path, toy_dir, edit)
    for path in finals:
        s = read(path, "signal")
        np.testing.assert_allclose(s["training_weight"], 2 * s["weights"].astype(float), rtol=1e-7)
        b1 = read(path, "background_1")
        factor = np.where(b1["x"] > 0, 3.0, 1.0)
        np.testing.assert_allclose(b1["training_weight"], factor * b1["weights"], rtol=1e-7)
        b2 = read(path, "background_2")
        np.testing.assert_array_equal(b2["training_weight"], 1.0)
        assert b2["training_weight"].dtype == np.float32  # Float_t, as the classic scripts


def test_cut_string_selects_exactly_the_passing_events(tmp_path, toy_dir):
    def edit(doc):
        doc["processes"]["signal"]["cut_string"] = "x > 0 && y < 0.5"

    finals, _ = build(tmp_path, toy_dir, edit)
    source = toy_input(toy_dir, "signal")
    passing = (source["x"] > 0) & (source["y"] < 0.5)
    events = np.concatenate([read(p, "signal")["event"] for p in finals])
    np.testing.assert_array_equal(np.sort(events), np.sort(source["event"][passing]))


@pytest.mark.parametrize(
    ("cut", "select"),
    [
        ("1", lambda a: np.ones(len(a["x"]), dtype=bool)),
        ("(x > 0)*(y < 0.5)", lambda a: (a["x"] > 0) & (a["y"] < 0.5)),
        ("x", lambda a: a["x"] != 0),
    ],
)
def test_cut_string_of_any_numeric_type_passes_non_zero_values(tmp_path, toy_dir, cut, select):
    """TTree::Draw semantics: a cut need not be of type bool; non-zero passes."""
    finals, _ = build(tmp_path, toy_dir, _set("background_1", cut_string=cut))
    source = toy_input(toy_dir, "background_1")
    events = np.concatenate([read(p, "background_1")["event"] for p in finals])
    np.testing.assert_array_equal(np.sort(events), np.sort(source["event"][select(source)]))


def test_process_without_cut_keeps_every_event(tmp_path, toy_dir):
    def edit(doc):
        del doc["processes"]["signal"]["cut_string"]

    finals, _ = build(tmp_path, toy_dir, edit)
    total = sum(len(read(p, "signal")["event"]) for p in finals)
    assert total == len(toy_input(toy_dir, "signal")["event"])


def test_three_folds_assign_event_mod_3(tmp_path, toy_dir):
    finals, out = build(tmp_path, toy_dir, folds=3)
    assert [p.name for p in finals] == [f"fold{i}_{FILENAME}" for i in range(3)]
    assert folder_listing(out) == expected_files(3)
    for process in CLASSES:
        source = toy_input(toy_dir, process)
        parts = []
        for fold, path in enumerate(finals):
            events = read(path, process)["event"]
            assert len(events) > 0
            assert np.all(events % 3 == fold)
            parts.append(events)
        selected = source["event"][source["x"] > -3.0]
        np.testing.assert_array_equal(np.sort(np.concatenate(parts)), np.sort(selected))


def test_several_files_of_a_process_are_chained(tmp_path, toy_dir):
    def edit(doc):
        doc["processes"]["signal"]["files"] = ["example_signal.root", "example_background_1.root"]

    finals, _ = build(tmp_path, toy_dir, edit)
    s, b1 = toy_input(toy_dir, "signal"), toy_input(toy_dir, "background_1")
    n_expected = int(np.sum(s["x"] > -3.0) + np.sum(b1["x"] > -3.0))
    assert sum(len(read(p, "signal")["event"]) for p in finals) == n_expected


def test_rebuilding_replaces_existing_fold_files(tmp_path, toy_dir):
    finals, out = build(tmp_path, toy_dir)
    first = len(read(finals[0], "signal")["event"])

    def edit(doc):
        doc["processes"]["signal"]["cut_string"] = "x > 0"

    finals, out = build(tmp_path, toy_dir, edit)
    second = read(finals[0], "signal")
    assert np.all(second["x"] > 0) and len(second["event"]) < first
    assert folder_listing(out) == expected_files(2)


# --- event branch types ------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.int32, np.int64, np.uint64])
def test_event_branch_of_any_numeric_type_is_assigned_exactly(tmp_path, dtype):
    # Values near 2^24, the largest range where float32 still holds every integer.
    event = (2**24 - np.arange(4000)).astype(dtype)
    assert np.all(event.astype(np.int64) == 2**24 - np.arange(4000))
    source = write_ntuple(tmp_path / "custom.root", custom_columns(event))
    out = tmp_path / "out"
    config = write_yaml(tmp_path / "dataset.yaml", custom_document(source, out, folds=3))
    finals = create_training_dataset(load_dataset_config(config))
    seen = []
    for fold, path in enumerate(finals):
        events = read(path, "sample")["event"]
        assert events.dtype == np.dtype(dtype)
        assert np.all(events.astype(np.int64) % 3 == fold)
        seen.append(events.astype(np.int64))
    np.testing.assert_array_equal(np.sort(np.concatenate(seen)), np.sort(event.astype(np.int64)))
    assert folder_listing(out) == expected_files(3)


def test_float_event_numbers_above_2_to_the_24_are_refused(tmp_path):
    # even numbers above 2^24 are still exact float32 values, but odd ones are not
    event = (2**24 + 2 * np.arange(1000)).astype(np.float32)
    source = write_ntuple(tmp_path / "big.root", custom_columns(event))
    out = tmp_path / "out"
    config = write_yaml(tmp_path / "dataset.yaml", custom_document(source, out))
    with pytest.raises(InvalidEventNumberError) as info:
        create_training_dataset(load_dataset_config(config))
    message = str(info.value)
    assert "16777216" in message and "integer" in message and "'event'" in message
    assert folder_listing(out) == set()


def test_non_integer_float_event_numbers_are_refused(tmp_path):
    event = (np.arange(1000) + 0.5).astype(np.float64)
    source = write_ntuple(tmp_path / "frac.root", custom_columns(event))
    out = tmp_path / "out"
    config = write_yaml(tmp_path / "dataset.yaml", custom_document(source, out))
    with pytest.raises(InvalidEventNumberError):
        create_training_dataset(load_dataset_config(config))
    assert folder_listing(out) == set()


def test_large_integer_event_numbers_are_assigned_exactly(tmp_path):
    event = np.uint64(2**40) + np.arange(3000, dtype=np.uint64) * np.uint64(7)
    source = write_ntuple(tmp_path / "int.root", custom_columns(event))
    config = write_yaml(tmp_path / "dataset.yaml", custom_document(source, tmp_path / "out"))
    finals = create_training_dataset(load_dataset_config(config))
    for fold, path in enumerate(finals):
        events = read(path, "sample")["event"]
        assert len(events) > 0 and np.all(events % 2 == fold)


def test_fold_without_events_of_a_class_gets_an_empty_tree_and_a_warning(tmp_path, caplog):
    event = (2 * np.arange(500)).astype(np.int64)  # even numbers only: fold 1 stays empty
    source = write_ntuple(tmp_path / "even.root", custom_columns(event))
    config = write_yaml(tmp_path / "dataset.yaml", custom_document(source, tmp_path / "out"))
    with caplog.at_level("WARNING", logger="htt_tmva"):
        finals = create_training_dataset(load_dataset_config(config))
    assert len(read(finals[0], "sample")["event"]) == 500
    assert trees(finals[1]) == ["sample"]
    assert len(read(finals[1], "sample")["event"]) == 0
    assert "no events in fold 1" in caplog.text


# --- bad inputs: clear errors, no output -------------------------------------------------------


BAD_INPUTS = {
    "missing file": (
        _set("background_1", files=["example_background_1.root", "nope.root"]),
        {},
        InputFileError,
        ["nope.root", "does not exist"],
    ),
    "missing tree": (
        None,
        {"tree_path": "ntupel"},
        MissingTreeError,
        ["'ntupel'", "did you mean 'ntuple'?"],
    ),
    "missing event branch": (
        None,
        {"event_branch": "evnt"},
        MissingBranchError,
        ["'evnt'", "did you mean 'event'?"],
    ),
    "missing branch in cut": (
        _set("background_2", cut_string="(xx > 0)"),
        {},
        MissingBranchError,
        ["'xx'", "did you mean 'x'?"],
    ),
    "missing branch in weight": (
        _set("signal", weight_string="2*weight"),
        {},
        MissingBranchError,
        ["'weight'", "did you mean 'weights'?"],
    ),
    "unknown function in cut": (
        _set("signal", cut_string="absx(x) > 0"),
        {},
        ConfigError,
        ["processes.signal.cut_string", "'absx(x) > 0'", "did you mean 'abs'?"],
    ),
    "cut selects nothing": (
        _set("background_2", cut_string="x > 100"),
        {},
        EmptySelectionError,
        ["background_2", "x > 100", "no events"],
    ),
    "non-finite weights": (
        _set("background_1", weight_string="weights/(x - x)"),
        {},
        NonFiniteError,
        ["background_1", "non-finite"],
    ),
    "cut is not an expression": (
        _set("signal", cut_string="(x > )"),
        {},
        ConfigError,
        ["processes.signal.cut_string", "'(x > )'", "unexpected ')'"],
    ),
    "weight is not an expression": (
        _set("signal", weight_string="weights +* 2"),
        {},
        ConfigError,
        ["processes.signal.weight_string", "weights +* 2", "unexpected '*'"],
    ),
    "weight branch exists": (
        None,
        {"training_weight_branch": "weights"},
        OutputError,
        ["'weights'", "exists already"],
    ),
}


@pytest.mark.parametrize("case", list(BAD_INPUTS))
def test_bad_input_raises_its_error_and_leaves_no_output(tmp_path, toy_dir, case):
    edit, overrides, error, fragments = BAD_INPUTS[case]
    with pytest.raises(error) as info:
        build(tmp_path, toy_dir, edit, **overrides)
    assert isinstance(info.value, HttTmvaError)
    message = str(info.value)
    for fragment in fragments:
        assert fragment in message
    assert "\n" not in message
    assert folder_listing(tmp_path / "out") == set()


def test_failure_keeps_previous_outputs_untouched(tmp_path, toy_dir):
    finals, out = build(tmp_path, toy_dir)
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    with pytest.raises(EmptySelectionError):
        build(tmp_path, toy_dir, _set("signal", cut_string="y > 100"))
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    assert folder_listing(out) == expected_files(2)


# --- fold record, classic readers, determinism ---------------------------------------------------


def test_each_fold_file_says_which_fold_it_holds(fold_dir):
    """Contract with the loading side: TNamed 'htt_tmva_fold', title = compact JSON."""
    import json

    from htt_tmva._root import open_root_file

    for fold in (0, 1):
        tfile = open_root_file(fold_dir / f"fold{fold}_{FILENAME}")
        try:
            named = tfile.Get("htt_tmva_fold")
            assert named and named.ClassName() == "TNamed"
            title = str(named.GetTitle())
        finally:
            tfile.Close()
        assert title.startswith(f'{{"fold":{fold},"folds":2,"event_branch":"event",')
        record = json.loads(title)
        digest = record.pop("config_digest")
        assert record == {"fold": fold, "folds": 2, "event_branch": "event"}
        assert len(digest) == 64 and int(digest, 16) >= 0  # sha256 of the resolved config


def test_training_weight_is_float_and_a_float_bound_reader_reads_it(fold_dir, toy_dir):
    """Classic readers bind the weight to a float buffer; a Double_t branch reads -999."""
    from array import array

    from htt_tmva._root import open_root_file

    tfile = open_root_file(fold_dir / f"fold0_{FILENAME}")
    try:
        tree = tfile.Get("signal")
        type_name = tree.GetLeaf("training_weight").GetTypeName()
        value = array("f", [-999.0])
        tree.SetBranchAddress("training_weight", value)
        seen = []
        for entry in range(tree.GetEntries()):
            tree.GetEntry(entry)
            seen.append(value[0])
    finally:
        tfile.Close()
    expected = read(fold_dir / f"fold0_{FILENAME}", "signal")["weights"]
    assert len(seen) == len(expected) > 0
    np.testing.assert_array_equal(np.array(seen, dtype=np.float32), expected)
    assert type_name == "Float_t"


def fold_contents(paths: list[Path]) -> list[dict]:
    return [{cls: read(p, cls) for cls in trees(p)} for p in paths]


def assert_same_contents(a: list[dict], b: list[dict]) -> None:
    assert len(a) == len(b)
    for fold_a, fold_b in zip(a, b):
        assert list(fold_a) == list(fold_b)
        for cls in fold_a:
            assert list(fold_a[cls]) == list(fold_b[cls])
            for branch in fold_a[cls]:
                np.testing.assert_array_equal(fold_a[cls][branch], fold_b[cls][branch])


def test_dataset_command_imports_no_numpy(tmp_path, toy_dir):
    """numpy (about 20 MB resident) is not needed to write fold files: the command's peak
    memory stays below the classic script's, which does not load it either."""
    import subprocess
    import sys

    config = write_yaml(tmp_path / "dataset.yaml", dataset_document(toy_dir, tmp_path / "out"))
    code = (
        "import sys\nfrom htt_tmva.cli import main\n"
        f"assert not main(['-q', 'dataset', {str(config)!r}])\n"
        "print('NUMPY', 'numpy' in sys.modules)\n"
    )
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, env=env
    )
    assert result.returncode == 0, result.stderr
    assert "NUMPY False" in result.stdout
    assert (tmp_path / "out" / f"fold1_{FILENAME}").is_file()


def test_outputs_are_identical_on_every_run_and_for_any_number_of_workers(tmp_path, toy_dir):
    """Same config and inputs: the same entries in the same order (the training split and
    the fold files must reproduce), with one worker or one per fold."""

    def edit(doc):
        doc["processes"]["background_2"]["class"] = "background"
        doc["processes"]["background_1"]["class"] = "background"
        doc["processes"]["signal"]["files"] = ["example_signal.root", "example_data.root"]

    doc = dataset_document(toy_dir, tmp_path / "out", folds=3)
    edit(doc)
    config = load_dataset_config(write_yaml(tmp_path / "dataset.yaml", doc))
    runs = []
    for workers in (1, 3, 2, 3):
        runs.append(fold_contents(create_training_dataset(config, workers=workers)))
    for other in runs[1:]:
        assert_same_contents(runs[0], other)
    # the order is the input order: process by process, entry by entry
    b1, b2 = toy_input(toy_dir, "background_1"), toy_input(toy_dir, "background_2")
    for fold, contents in enumerate(runs[0]):
        expected = np.concatenate(
            [s["event"][(s["event"] % 3 == fold) & (s["x"] > -3.0)] for s in (b1, b2)]
        )
        np.testing.assert_array_equal(contents["background"]["event"], expected)


# --- branches of every kind, files that differ -------------------------------------------------


def write_rich_tree(path: Path, events: np.ndarray, extra: bool = True) -> Path:
    """A tree with a leaf list, a fixed array, a variable array and a std::vector, written
    with TTree::Branch (the kinds of branches real ntuples have)."""
    from array import array

    from htt_tmva._root import root

    ROOT = root()
    tfile = ROOT.TFile(str(path), "RECREATE")
    tree = ROOT.TTree("ntuple", "ntuple")
    event, x, w = array("q", [0]), array("f", [0.0]), array("f", [0.0])
    pair, fixed = array("f", [0.0, 0.0]), array("d", [0.0] * 3)
    n, jets = array("i", [0]), array("f", [0.0] * 5)
    vec = ROOT.std.vector["float"]()
    tree.Branch("event", event, "event/L")
    tree.Branch("x", x, "x/F")
    tree.Branch("weights", w, "weights/F")
    if extra:
        tree.Branch("p", pair, "px/F:py/F")
        tree.Branch("fixed", fixed, "fixed[3]/D")
        tree.Branch("n", n, "n/I")
        tree.Branch("jets", jets, "jets[n]/F")
        tree.Branch("vec", vec)
    for e in events:
        event[0], x[0], w[0] = int(e), float(e % 7) - 3, 0.5
        pair[0], pair[1] = float(e), -float(e)
        fixed[0], fixed[1], fixed[2] = float(e), 2.0 * e, 3.0 * e
        n[0] = int(e % 4)
        vec.clear()
        for i in range(n[0]):
            jets[i] = float(e + i)
            vec.push_back(float(e - i))
        tree.Fill()
    tfile.Write()
    tfile.Close()
    return path


def test_leaf_lists_arrays_and_vectors_are_copied(tmp_path):
    events = np.arange(200)
    source = write_rich_tree(tmp_path / "rich.root", events)
    doc = custom_document(source, tmp_path / "out")
    doc["processes"]["sample"]["cut_string"] = "x > -3"  # drops e % 7 == 0
    finals = create_training_dataset(
        load_dataset_config(write_yaml(tmp_path / "dataset.yaml", doc))
    )
    with uproot.open(source) as f:
        original = f["ntuple"].arrays(library="np")
    for fold, path in enumerate(finals):
        with uproot.open(path) as f:
            tree = f["sample"]
            assert set(tree.keys(recursive=False)) >= {"p", "fixed", "n", "jets", "vec"}
            copied = tree.arrays(library="np")
        rows = np.flatnonzero((events % 2 == fold) & (events % 7 != 0))
        np.testing.assert_array_equal(copied["event"], events[rows])
        np.testing.assert_array_equal(copied["p"], original["p"][rows])  # leaf list px:py
        np.testing.assert_array_equal(copied["p"]["py"], -events[rows].astype(np.float32))
        np.testing.assert_array_equal(np.stack(copied["fixed"]), np.stack(original["fixed"][rows]))
        for name in ("jets", "vec"):
            assert [list(v) for v in copied[name]] == [list(original[name][r]) for r in rows]


def test_expression_on_a_branch_that_is_not_a_number_is_refused_clearly(tmp_path):
    source = write_rich_tree(tmp_path / "rich.root", np.arange(50))
    doc = custom_document(source, tmp_path / "out")
    doc["processes"]["sample"]["cut_string"] = "jets > 0"
    with pytest.raises(MissingBranchError) as info:
        create_training_dataset(load_dataset_config(write_yaml(tmp_path / "dataset.yaml", doc)))
    assert "'jets' is not a single number" in str(info.value)
    assert folder_listing(tmp_path / "out") == set()


def test_branches_missing_from_some_files_of_a_process_are_named_in_a_warning(tmp_path, caplog):
    full = write_rich_tree(tmp_path / "full.root", np.arange(100))
    plain = write_rich_tree(tmp_path / "plain.root", np.arange(100, 160), extra=False)
    doc = custom_document(full, tmp_path / "out")
    doc["processes"]["sample"]["files"] = [full.name, plain.name]
    with caplog.at_level("WARNING", logger="htt_tmva"):
        finals = create_training_dataset(
            load_dataset_config(write_yaml(tmp_path / "dataset.yaml", doc))
        )
    warning = caplog.text
    assert "p, fixed, n, jets, vec" in warning and "plain.root" in warning
    with uproot.open(finals[0]) as f:
        assert set(f["sample"].keys()) == {"event", "x", "weights", "training_weight"}
        assert f["sample"].num_entries == 80  # both files, even events


# --- replacing a fold set ----------------------------------------------------------------------


def test_every_fold_file_is_fsynced_before_the_first_rename(tmp_path, toy_dir, monkeypatch):
    events = []
    real_fsync, real_replace = os.fsync, os.replace

    def fsync(fd):
        events.append(("fsync", os.path.basename(os.readlink(f"/proc/self/fd/{fd}"))))
        return real_fsync(fd)

    def replace(src, dst):
        events.append(("rename", os.path.basename(dst)))
        return real_replace(src, dst)

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "replace", replace)
    build(tmp_path, toy_dir, folds=3)
    renames = [i for i, e in enumerate(events) if e[0] == "rename"]
    synced = [e[1] for e in events[: renames[0]] if e[0] == "fsync"]
    assert len(renames) == 3
    assert sorted(synced) == sorted(
        f".fold{i}_training_dataset.tmp{os.getpid()}.root" for i in range(3)
    )


def test_a_crash_while_renaming_never_leaves_a_mixed_set_that_looks_complete(
    tmp_path, toy_dir, monkeypatch
):
    """Old files and configs go first, the new files are renamed in, the configs come last:
    stopped after the first rename, the folder shows an incomplete set, not old + new."""
    _, out = build(tmp_path, toy_dir)
    real_replace = os.replace
    calls = []

    def crash_after_first(src, dst):
        if calls:
            raise OSError("simulated crash")
        calls.append(dst)
        return real_replace(src, dst)

    monkeypatch.setattr(os, "replace", crash_after_first)
    with pytest.raises(OSError, match="simulated crash"):
        build(tmp_path, toy_dir, _set("signal", cut_string="x > 0"))
    left = folder_listing(out)
    assert left == {f"fold0_{FILENAME}"}  # the new fold 0 alone: visibly incomplete
    assert np.all(read(out / f"fold0_{FILENAME}", "signal")["x"] > 0)


def test_a_branch_read_by_a_cut_but_missing_from_another_process_of_the_class_is_dropped(
    tmp_path,
):
    """The cut of the class's first process reads ``n``, which the second process lacks: the
    class tree must not get ``n`` (it would hold stale values for the second process)."""
    first = write_rich_tree(tmp_path / "r0.root", np.arange(0, 40))
    second = write_rich_tree(tmp_path / "r1.root", np.arange(100, 140), extra=False)
    doc = custom_document(first, tmp_path / "out")
    doc["processes"] = {
        "a": {"files": [first.name], "cut_string": "n >= 1", "class": "c"},
        "b": {"files": [second.name], "class": "c"},
    }
    finals = create_training_dataset(
        load_dataset_config(write_yaml(tmp_path / "dataset.yaml", doc))
    )
    with uproot.open(finals[0]) as f:
        tree = f["c"]
        assert tree.keys() == ["event", "x", "weights", "training_weight"]
        events = tree["event"].array(library="np")
    expected = [e for e in range(40) if e % 2 == 0 and e % 4 >= 1] + list(range(100, 140, 2))
    assert events.tolist() == expected


def class_c(final):
    """Branch names, event numbers and training weights of the class tree ``c``."""
    with uproot.open(final) as f:
        tree = f["c"]
        return (
            tree.keys(),
            tree["event"].array(library="np").tolist(),
            tree["training_weight"].array(library="np").tolist(),
        )


def test_a_branch_read_by_a_weight_but_missing_from_another_process_of_the_class_is_dropped(
    tmp_path,
):
    """The weight of the class's first process reads ``n``, which the second process lacks:
    the weight uses it, the class tree does not get it."""
    first = write_rich_tree(tmp_path / "r0.root", np.arange(0, 40))
    second = write_rich_tree(tmp_path / "r1.root", np.arange(100, 140), extra=False)
    doc = custom_document(first, tmp_path / "out")
    doc["processes"] = {
        "a": {"files": [first.name], "weight_string": "weights * (1 + n)", "class": "c"},
        "b": {"files": [second.name], "weight_string": "weights", "class": "c"},
    }
    finals = create_training_dataset(
        load_dataset_config(write_yaml(tmp_path / "dataset.yaml", doc))
    )
    for fold, final in enumerate(finals):
        keys, events, weights = class_c(final)
        assert keys == ["event", "x", "weights", "training_weight"]
        ours = [e for e in range(40) if e % 2 == fold]
        assert events == ours + list(range(100 + fold, 140, 2))
        assert weights == [0.5 * (1 + e % 4) for e in ours] + [0.5] * 20


def test_a_branch_read_by_a_later_process_but_missing_from_another_is_dropped(tmp_path):
    """The first and second process of a class have ``n``, the third lacks it; the cut and
    weight of the second read it (the first's do not): it is read for the second process
    and is not in the class tree."""
    first = write_rich_tree(tmp_path / "r0.root", np.arange(0, 40))
    second = write_rich_tree(tmp_path / "r1.root", np.arange(200, 240))
    third = write_rich_tree(tmp_path / "r2.root", np.arange(100, 140), extra=False)
    doc = custom_document(first, tmp_path / "out")
    doc["processes"] = {
        "a": {"files": [first.name], "weight_string": "weights", "class": "c"},
        "b": {
            "files": [second.name],
            "cut_string": "n >= 1",
            "weight_string": "weights * n",
            "class": "c",
        },
        "c": {"files": [third.name], "weight_string": "weights", "class": "c"},
    }
    finals = create_training_dataset(
        load_dataset_config(write_yaml(tmp_path / "dataset.yaml", doc))
    )
    for fold, final in enumerate(finals):
        keys, events, weights = class_c(final)
        assert keys == ["event", "x", "weights", "training_weight"]
        b = [e for e in range(200, 240) if e % 2 == fold and e % 4 >= 1]
        assert events == [*range(fold, 40, 2), *b, *range(100 + fold, 140, 2)]
        assert weights == [0.5] * 20 + [0.5 * (e % 4) for e in b] + [0.5] * 20


def test_integer_division_in_cuts_and_weights_is_double_division(tmp_path):
    """As TTreeFormula (the classic scripts): n/2 of an integer n = 1 is 0.5, not 0."""
    source = write_rich_tree(tmp_path / "r.root", np.arange(0, 80))
    doc = custom_document(source, tmp_path / "out")
    doc["processes"]["sample"].update(cut_string="n/2 > 0.2", weight_string="weights*(1+n/2)*1/2")
    finals = create_training_dataset(
        load_dataset_config(write_yaml(tmp_path / "dataset.yaml", doc))
    )
    for fold, final in enumerate(finals):
        with uproot.open(final) as f:
            data = f["sample"].arrays(["event", "n", "training_weight"], library="np")
        ours = np.array([e for e in range(80) if e % 2 == fold and e % 4 >= 1])
        np.testing.assert_array_equal(data["event"], ours)
        n = ours % 4
        np.testing.assert_array_equal(data["training_weight"], 0.5 * (1 + n / 2) * 0.5)
