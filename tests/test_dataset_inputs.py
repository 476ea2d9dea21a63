"""The dataset step's inputs: files shared by processes (read once, same output as reading
them per process), friend trees, branch types that differ between files, the output lock,
fold files of different configs, and configs in the style of sm-htt-analysis."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import uproot
from conftest import write_yaml

from htt_tmva.config import load_dataset_config
from htt_tmva.data import segments
from htt_tmva.data.dataset import create_training_dataset, output_lock
from htt_tmva.errors import ConfigError, FoldMismatchError, InputFileError, OutputError

FILENAME = "training_dataset.root"


def write_ntuple(path: Path, columns: dict[str, np.ndarray], tree: str = "ntuple") -> Path:
    from htt_tmva._root import root

    ROOT = root()
    path.parent.mkdir(parents=True, exist_ok=True)
    df = ROOT.RDF.FromNumpy({k: np.ascontiguousarray(v) for k, v in columns.items()})
    df.Snapshot(tree, str(path), list(columns))
    return path


def columns(events: np.ndarray, seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    n = len(events)
    return {
        "event": events.astype(np.uint64),
        "x": rng.normal(size=n).astype(np.float32),
        "njets": rng.integers(0, 4, size=n).astype(np.int32),
        "weight": rng.uniform(0.5, 1.5, size=n).astype(np.float32),
    }


def document(base: Path, out: Path, processes: dict, **extra) -> dict:
    return {
        "base_path": str(base),
        "output_path": str(out),
        "output_filename": FILENAME,
        "tree_path": "ntuple",
        "event_branch": "event",
        "training_weight_branch": "training_weight",
        **extra,
        "processes": processes,
    }


def contents(paths: list[Path]) -> list[dict]:
    out = []
    for path in paths:
        with uproot.open(path) as f:
            out.append(
                {
                    name: f[name].arrays(library="np")
                    for name in sorted(f.keys(cycle=False, filter_classname="TTree"))
                }
            )
    return out


def assert_same(a: list[dict], b: list[dict]) -> None:
    assert len(a) == len(b)
    for fa, fb in zip(a, b):
        assert list(fa) == list(fb)
        for tree in fa:
            assert list(fa[tree]) == list(fb[tree])
            for branch in fa[tree]:
                np.testing.assert_array_equal(fa[tree][branch], fb[tree][branch])


def build(tmp_path: Path, name: str, doc: dict) -> list[Path]:
    return create_training_dataset(load_dataset_config(write_yaml(tmp_path / f"{name}.yaml", doc)))


# --- files shared by processes -----------------------------------------------------------------

SHARED = {  # analysis style: ZTT/ZL/ZJ from the DY files (ZL and ZJ one class), ggH split
    "ZTT": ("dy", "njets == 0", "ztt"),
    "ZL": ("dy", "njets == 1", "zll"),
    "ZJ": ("dy", "njets >= 2", "zll"),
    "ggH_0j": ("ggh", "njets == 0", "ggh_0j"),
    "ggH_1j": ("ggh", "njets >= 1 && x > -1", "ggh_1j"),
    "W": ("w", "x > -2", "w"),
}


@pytest.fixture(scope="module")
def shared_inputs(tmp_path_factory) -> Path:
    base = tmp_path_factory.mktemp("shared")
    for seed, sample in enumerate(("dy", "ggh", "w")):
        for part in (0, 1):
            events = np.arange(1000 * part, 1000 * part + 700 + 50 * seed, dtype=np.uint64)
            write_ntuple(base / sample / f"{sample}_{part}.root", columns(events, 10 * seed + part))
    return base


def shared_processes(files_of) -> dict:
    return {
        name: {
            "files": files_of(name, sample),
            "cut_string": cut,
            "weight_string": "weight * 2",
            "class": cls,
        }
        for name, (sample, cut, cls) in SHARED.items()
    }


def test_processes_sharing_files_read_each_file_once_with_the_per_process_result(
    tmp_path, shared_inputs, monkeypatch
):
    def own_copies(name, sample):  # every process its own copies: read once per process
        names = []
        for part in (0, 1):
            copy = tmp_path / "copies" / name / f"{sample}_{part}.root"
            copy.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(shared_inputs / sample / f"{sample}_{part}.root", copy)
            names.append(str(copy))
        return names

    def shared(name, sample):
        return [f"{sample}/{sample}_{part}.root" for part in (0, 1)]

    read = []
    prepare = segments._prepare
    monkeypatch.setattr(
        segments, "_prepare", lambda *a, **k: read.append(str(a[2].path)) or prepare(*a, **k)
    )
    doc = document(shared_inputs, tmp_path / "a", shared_processes(shared))
    together = build(tmp_path, "a", doc)
    assert sorted(read) == sorted(str(p) for p in shared_inputs.glob("*/*.root"))  # once each
    apart = build(
        tmp_path, "b", document(shared_inputs, tmp_path / "b", shared_processes(own_copies))
    )
    assert_same(contents(together), contents(apart))
    fold0 = contents(together)[0]
    assert len(fold0["zll"]["event"]) > 0 and set(fold0) == {c for _, _, c in SHARED.values()}


def test_reading_allocates_no_read_caches_for_local_files(tmp_path, shared_inputs):
    """Memory: the class templates (cloned, never read) get no read cache, which every
    CloneTree would otherwise create at the input's cluster size; local inputs are read
    without one, remote ones with INPUT_CACHE_BYTES."""
    from htt_tmva.data import _copy
    from htt_tmva.data.dataset import make_plans

    def shared(name, sample):
        return [f"{sample}/{sample}_{part}.root" for part in (1, 0)]

    config = load_dataset_config(
        write_yaml(
            tmp_path / "d.yaml",
            document(shared_inputs, tmp_path / "out", shared_processes(shared)),
        )
    )
    plans = make_plans(config)
    ROOT = _copy.declare_helper()
    templates = segments._Templates(ROOT, config, plans)
    try:
        for tree in templates.trees.values():
            clone = tree.CloneTree(0)
            assert tree.GetCacheSize() == 0
            del clone
    finally:
        templates.close()
    assert segments.input_cache_bytes(shared_inputs / "dy" / "dy_0.root") == 0
    remote = "root://eos.example//store/dy_0.root"
    assert segments.input_cache_bytes(remote) == segments.INPUT_CACHE_BYTES


def test_shared_files_give_the_same_output_for_any_number_of_workers(tmp_path, shared_inputs):
    def shared(name, sample):
        return [f"{sample}/{sample}_{part}.root" for part in (1, 0)]

    config = load_dataset_config(
        write_yaml(
            tmp_path / "d.yaml",
            document(shared_inputs, tmp_path / "out", shared_processes(shared)),
        )
    )
    one = contents(create_training_dataset(config, workers=1))
    three = contents(create_training_dataset(config, workers=3))
    assert_same(one, three)
    # class zll: ZL's events (both files, in the listed order) before ZJ's
    njets = one[0]["zll"]["njets"]
    first_zj = int(np.argmax(njets >= 2))
    assert np.all(njets[:first_zj] == 1) and np.all(njets[first_zj:] >= 2)


# --- friend trees ------------------------------------------------------------------------------


@pytest.fixture
def with_friends(tmp_path) -> tuple[Path, Path]:
    base, friends = tmp_path / "ntuples", tmp_path / "msv_friends"
    for part in (0, 1):
        events = np.arange(500 * part, 500 * part + 400, dtype=np.uint64)
        write_ntuple(base / "dy" / f"dy_{part}.root", columns(events, part))
        rng = np.random.default_rng(100 + part)
        write_ntuple(
            friends / "dy" / f"dy_{part}.root",
            {"event": events, "m_sv": rng.uniform(50, 150, len(events)).astype(np.float32)},
        )
    return base, friends


def friend_document(base: Path, friends: Path, out: Path) -> dict:
    files = ["dy/dy_0.root", "dy/dy_1.root"]
    return document(
        base,
        out,
        {
            "ZTT": {
                "files": files,
                "cut_string": "m_sv > 90",
                "weight_string": "weight",
                "class": "ztt",
            },  # fmt: skip
            "ZL": {"files": files, "cut_string": "m_sv <= 90", "class": "zll"},
        },
        friend_paths=[str(friends)],
    )


def test_friend_branches_are_read_by_cuts_and_copied_into_the_class_trees(tmp_path, with_friends):
    base, friends = with_friends
    finals = build(tmp_path, "d", friend_document(base, friends, tmp_path / "out"))
    main = {k: np.concatenate([uproot.open(base / "dy" / f"dy_{p}.root")["ntuple"]
                               .arrays(library="np")[k] for p in (0, 1)])
            for k in ("event", "x")}  # fmt: skip
    m_sv = np.concatenate(
        [
            uproot.open(friends / "dy" / f"dy_{p}.root")["ntuple"]["m_sv"].array(library="np")
            for p in (0, 1)
        ]  # fmt: skip
    )
    for fold, tree in enumerate(contents(finals)):
        rows = (main["event"] % 2 == fold) & (m_sv > 90)
        np.testing.assert_array_equal(tree["ztt"]["event"], main["event"][rows])
        np.testing.assert_array_equal(tree["ztt"]["m_sv"], m_sv[rows])
        np.testing.assert_array_equal(tree["ztt"]["x"], main["x"][rows])
        assert np.all(tree["zll"]["m_sv"] <= 90)


def test_a_friend_with_other_events_is_refused_naming_both_files(tmp_path, with_friends):
    base, friends = with_friends
    shuffled = np.arange(400, dtype=np.uint64)[::-1].copy()
    write_ntuple(
        friends / "dy" / "dy_0.root",
        {"event": shuffled, "m_sv": np.full(400, 100.0, dtype=np.float32)},
    )
    with pytest.raises(InputFileError) as info:
        build(tmp_path, "d", friend_document(base, friends, tmp_path / "out"))
    message = str(info.value)
    assert str(friends / "dy" / "dy_0.root") in message
    assert str(base / "dy" / "dy_0.root") in message
    assert "differs in" in message and not list((tmp_path / "out").glob("fold*"))


def test_a_friend_with_other_entries_or_missing_is_refused(tmp_path, with_friends):
    base, friends = with_friends
    write_ntuple(
        friends / "dy" / "dy_1.root",
        {"event": np.arange(10, dtype=np.uint64), "m_sv": np.ones(10, dtype=np.float32)},
    )
    with pytest.raises(InputFileError, match="has 10 entries there and 400 in the main file"):
        build(tmp_path, "d", friend_document(base, friends, tmp_path / "out"))
    (friends / "dy" / "dy_1.root").unlink()
    with pytest.raises(InputFileError, match="dy_1.root"):
        build(tmp_path, "d", friend_document(base, friends, tmp_path / "out"))


# --- branch types that differ between files ----------------------------------------------------


def write_typed(path: Path, events, kind: str) -> Path:
    """A tree with an array branch ``a[2]`` of float or double, or a vector of one of them."""
    from array import array

    from htt_tmva._root import root

    ROOT = root()
    path.parent.mkdir(parents=True, exist_ok=True)
    tfile = ROOT.TFile(str(path), "RECREATE")
    tree = ROOT.TTree("ntuple", "ntuple")
    event = array("q", [0])
    tree.Branch("event", event, "event/L")
    if kind in ("F", "D"):
        a = array("f" if kind == "F" else "d", [0.0, 0.0])
        tree.Branch("a", a, f"a[2]/{kind}")
    else:
        vec = ROOT.std.vector[kind]()
        tree.Branch("a", vec)
    for e in events:
        event[0] = int(e)
        if kind in ("F", "D"):
            a[0], a[1] = float(e), -float(e)
        else:
            vec.clear()
            vec.push_back(float(e))
        tree.Fill()
    tfile.Write()
    tfile.Close()
    return path


@pytest.mark.parametrize("kinds", [("F", "D"), ("float", "double")])
@pytest.mark.parametrize("where", ["files of a process", "processes of a class"])
def test_array_and_vector_branches_of_another_type_are_refused(tmp_path, kinds, where):
    write_typed(tmp_path / "in" / "one.root", range(20), kinds[0])
    write_typed(tmp_path / "in" / "two.root", range(20, 40), kinds[1])
    if where == "files of a process":
        processes = {"p": {"files": ["one.root", "two.root"], "class": "c"}}
    else:
        processes = {"p": {"files": ["one.root"], "class": "c"},
                     "q": {"files": ["two.root"], "class": "c"}}  # fmt: skip
    with pytest.raises(InputFileError) as info:
        build(tmp_path, "d", document(tmp_path / "in", tmp_path / "out", processes))
    message = str(info.value)
    assert "branch 'a'" in message and "same branch types" in message
    assert ("double" in message or "/Double_t" in message) and not (tmp_path / "out").exists()


# --- concurrent runs and mixed fold sets -------------------------------------------------------


def test_a_second_run_into_the_same_folder_is_refused_while_one_runs(tmp_path, shared_inputs):
    def shared(name, sample):
        return [f"{sample}/{sample}_0.root"]

    doc = document(shared_inputs, tmp_path / "out", shared_processes(shared))
    with output_lock(tmp_path / "out", "a test holding the lock"):
        with pytest.raises(OutputError, match="another run is writing into .*a test holding"):
            build(tmp_path, "d", doc)
        assert not list((tmp_path / "out").glob("fold*"))
    build(tmp_path, "d", doc)  # free again; the lock file is gone afterwards
    assert sorted(p.name for p in (tmp_path / "out").iterdir() if p.suffix == ".lock") == []


def test_training_refuses_fold_files_of_different_dataset_configs(tmp_path, shared_inputs):
    from htt_tmva.config import load_training_config
    from htt_tmva.training import load_training_data

    def shared(name, sample):
        return [f"{sample}/{sample}_0.root"]

    a = build(tmp_path, "a", document(shared_inputs, tmp_path / "a", shared_processes(shared)))
    processes = shared_processes(shared)
    processes["W"]["cut_string"] = "x > -1"
    b = build(tmp_path, "b", document(shared_inputs, tmp_path / "b", processes))
    training = {
        "datasets": [str(a[0]), str(b[1])],
        "output_path": str(tmp_path / "train"),
        "classes": ["ztt", "zll", "w"],
        "event_weights": "training_weight",
        "variables": ["x"],
        "model": {"name": "example", "batch_size": 10, "epochs": 1},
    }
    config = load_training_config(write_yaml(tmp_path / "t.yaml", training))
    with pytest.raises(FoldMismatchError) as info:
        load_training_data(config, 0)
    assert str(a[0]) in str(info.value) and str(b[1]) in str(info.value)
    training["datasets"] = [str(a[0]), str(a[1])]
    config = load_training_config(write_yaml(tmp_path / "t.yaml", training))
    assert len(load_training_data(config, 0)) > 0


# --- configs as sm-htt-analysis wrote them -----------------------------------------------------


def test_the_merged_dataset_and_training_config_of_sm_htt_analysis_is_understood(
    tmp_path, shared_inputs, monkeypatch
):
    from htt_tmva.config import load_training_config

    def shared(name, sample):
        return [f"{sample}/{sample}_0.root"]

    monkeypatch.chdir(tmp_path)
    merged = document(shared_inputs, "output/ml/2018_mt", shared_processes(shared))
    merged.update(  # as ml/sum_training_weights.py merged its training template in
        classes=["ztt", "zll", "ggh_0j", "ggh_1j", "w"],
        datasets=[f"output/ml/2018_mt/fold{i}_{FILENAME}" for i in (0, 1)],
        class_weights={c: 1.0 for c in ("ztt", "zll", "ggh_0j", "ggh_1j", "w")},
        variables=["x", "njets"],
        event_weights="training_weight",
        model={"name": "example", "batch_size": 10, "epochs": 1},
    )
    path = write_yaml(tmp_path / "dataset_config.yaml", merged)
    finals = create_training_dataset(load_dataset_config(path))
    training = load_training_config(path)
    assert training.datasets == [f.resolve() for f in finals]  # from the working directory
    assert training.classes[0] == "ztt"


def test_a_training_config_given_to_the_dataset_step_says_what_to_give(tmp_path):
    path = write_yaml(tmp_path / "t.yaml", {"datasets": ["a.root", "b.root"], "classes": ["a"]})
    with pytest.raises(ConfigError) as info:
        load_dataset_config(path)
    message = str(info.value)
    assert "is a training config" in message and "'processes'" in message
    assert "did you mean" not in message


def test_a_dataset_config_given_to_training_says_what_to_do(tmp_path, shared_inputs):
    from htt_tmva.config import load_training_config

    doc = document(shared_inputs, tmp_path / "out", shared_processes(lambda n, s: ["x.root"]))
    path = write_yaml(tmp_path / "d.yaml", doc)
    with pytest.raises(ConfigError) as info:
        load_training_config(path)
    message = str(info.value)
    assert "is a dataset config" in message and "htt-tmva dataset" in message
    assert "did you mean" not in message


# --- memory: units read at once, shared functions, no std containers --------------------------


def test_units_read_at_once_stay_within_the_memory_budget_one_always_runs():
    budget = segments.READ_BYTES_PER_WORKER
    heavy, light = int(1.1 * budget), int(0.8 * budget)
    costs = [heavy, heavy, light, 5 * budget]
    # two heavy units are never read together; a heavy and a light one are
    assert segments.next_unit([1, 2], [0], costs, workers=2) == 2
    assert segments.next_unit([1], [0], costs, workers=2) is None
    # a unit over any budget runs, alone; nothing runs beside it
    assert segments.next_unit([3], [], costs, workers=2) == 3
    assert segments.next_unit([2], [3], costs, workers=2) is None
    assert segments.next_unit([2], [0, 1], costs, workers=2) is None  # at most `workers`
    # a file read by many processes is estimated heavier than one read by one process
    plans = [segments.Plan(None, None, [f"b{i}" for i in range(100)]) for _ in range(16)]
    many = segments._Unit("f", None, plans)
    one = segments._Unit("f", None, plans[:1])
    assert segments.unit_memory(many, 2) > segments.unit_memory(one, 2)


def test_processes_with_the_same_weight_share_one_compiled_function(tmp_path, shared_inputs):
    from htt_tmva.data.dataset import make_plans

    def shared(name, sample):
        return [f"{sample}/{sample}_{part}.root" for part in (1, 0)]

    config = load_dataset_config(
        write_yaml(
            tmp_path / "d.yaml",
            document(shared_inputs, tmp_path / "out", shared_processes(shared)),
        )
    )
    plans = make_plans(config)
    weights = {plan.expressions.weight.namespace for plan in plans}
    cuts = {plan.expressions.cut.namespace for plan in plans}
    # one weight_string; ZTT and ggH_0j have the same cut_string
    assert len(weights) == 1 and len(cuts) == len({c for _, c, _ in SHARED.values()}) == 5
    assert plans[0].expressions.weight.inputs == ["weight"]


CONTAINERS_CHECK = """
import sys
from htt_tmva.config import load_dataset_config
from htt_tmva.data.dataset import create_training_dataset
from htt_tmva._root import root
create_training_dataset(load_dataset_config(sys.argv[1]), workers=1)
classes = root().gROOT.GetListOfClasses()
print(sorted(n for n in ("vector<void*>", "vector<TTree*>", "vector<double>", "vector<Long64_t>")
             if classes.FindObject(n)))
"""


def test_the_dataset_loop_instantiates_no_std_containers_for_python(tmp_path, shared_inputs):
    """Memory: binding std::vector for Python costs the interpreter about 15 MB; the loop's
    Python side passes plain pointers and numbers only (checked in a fresh process; ROOT
    itself makes vector<TBranch*>, vector<int> and vector<string>, the loop made these)."""
    import subprocess
    import sys

    def shared(name, sample):
        return [f"{sample}/{sample}_{part}.root" for part in (1, 0)]

    path = write_yaml(
        tmp_path / "d.yaml", document(shared_inputs, tmp_path / "out", shared_processes(shared))
    )
    script = tmp_path / "check.py"
    script.write_text(CONTAINERS_CHECK)
    result = subprocess.run(
        [sys.executable, str(script), str(path)], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip().splitlines()[-1] == "[]"
