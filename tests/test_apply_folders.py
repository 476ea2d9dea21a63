"""Several trees (systematic-shift folders) per file, friend files that collect folders,
and rewrites that keep every other tree, branch type and object of the file."""

from __future__ import annotations

import array
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import test_application
import yaml
from test_application import TREE, add_extras, arrays, check_scores, digest, write_ntuple

from htt_tmva.application.apply import run_application
from htt_tmva.application.trees import friend_nick, split_inputs_and_trees
from htt_tmva.errors import ConfigError, MissingTreeError, OutputError

uproot = pytest.importorskip("uproot")

NOMINAL, UP, DOWN = "mt_nominal/ntuple", "mt_tauEsOneProngUp/ntuple", "mt_tauEsOneProngDown/ntuple"
SCORES = ["bdt_max_score", "bdt_max_index"]


setup = test_application.setup  # the fixture: (dataset, training, application) configs


def write_folders(path: Path, n: int = 300, trees=(NOMINAL, UP, DOWN)) -> Path:
    """An Artus-like file: one tree per folder, plus a histogram and a metadata folder."""
    from htt_tmva._root import root

    ROOT = root()
    write_ntuple(path, n, tree=trees[0], extras=False)
    for seed, tree in enumerate([*trees[1:], TREE], start=11):
        rng = np.random.default_rng(seed)
        columns = {
            "x": rng.normal(size=n).astype(np.float32),
            "y": rng.normal(size=n).astype(np.float32),
            "event": rng.choice(10**9, size=n, replace=False).astype(np.uint64),
        }
        options = ROOT.RDF.RSnapshotOptions()
        options.fMode = "UPDATE"
        ROOT.RDF.FromNumpy(columns).Snapshot(tree, str(path), list(columns), options)
    add_extras(path, TREE)  # a top-level tree 'ntuple' too, and other objects
    f = ROOT.TFile.Open(str(path), "UPDATE")
    nominal = f.Get(trees[0])
    nominal.SetTitle("toy ntuple")
    nominal.GetDirectory().cd()
    nominal.Write("", ROOT.TObject.kOverwrite)
    f.Close()
    return path


def branches(path: Path, tree: str) -> list[str]:
    with uproot.open(path) as f:
        return list(f[tree].keys())


def runs(record: Path) -> list[dict]:
    return yaml.safe_load(record.read_text())["runs"]


# ---------------------------------------------------------------- several trees, one rewrite


def test_patterns_score_all_folders_in_one_rewrite(setup, trained_models, tmp_path):
    path = write_folders(tmp_path / "sample.root")
    down = arrays(path, DOWN)
    run_application(*setup("bdt"), [str(path)], [NOMINAL, "mt_*Up/ntuple"])
    for tree in (NOMINAL, UP):
        check_scores(arrays(path, tree), trained_models, "bdt", "bdt_")
    assert branches(path, DOWN) == ["x", "y", "event"]  # not asked for: untouched
    for name, values in down.items():
        np.testing.assert_array_equal(arrays(path, DOWN)[name], values)
    check_extras_in_folder(path)
    (run,) = runs(tmp_path / "sample.bdt_application.yaml")
    assert run["trees"] == [NOMINAL, UP] and run["mode"] == "inplace"


def check_extras_in_folder(path: Path) -> None:
    with uproot.open(path) as f:
        assert sorted(k for k in f.keys(cycle=True) if k.startswith("cutflow")) == [
            "cutflow;1",
            "cutflow;2",
        ]
        assert f["meta/other"].num_entries == 5
        assert f[NOMINAL].title == "toy ntuple"


def test_folder_after_folder_in_place_keeps_both_and_both_records(setup, tmp_path):
    path = write_folders(tmp_path / "sample.root")
    configs = setup("bdt")
    run_application(*configs, [str(path)], NOMINAL)
    run_application(*configs, [str(path)], UP)
    assert set(SCORES) <= set(branches(path, NOMINAL)) and set(SCORES) <= set(branches(path, UP))
    assert [r["trees"] for r in runs(tmp_path / "sample.bdt_application.yaml")] == [[NOMINAL], [UP]]


def test_a_pattern_matching_nothing_anywhere_is_refused(setup, tmp_path):
    path = write_folders(tmp_path / "sample.root")
    before = digest(path)
    with pytest.raises(MissingTreeError, match=r"'et_\*/ntuple'.*match no tree"):
        run_application(*setup("bdt"), [str(path)], [NOMINAL, "et_*/ntuple"])
    assert digest(path) == before


def test_inputs_and_trees_on_the_command_line(setup, tmp_path):
    path = write_folders(tmp_path / "sample.root")
    assert split_inputs_and_trees([str(path), "*/ntuple"]) == ([str(path)], ["*/ntuple"])
    assert split_inputs_and_trees([str(path), NOMINAL, "mt_*Up/ntuple"]) == (
        [str(path)],
        [NOMINAL, "mt_*Up/ntuple"],
    )
    with pytest.raises(ConfigError, match="no tree given"):
        split_inputs_and_trees([str(path)])
    command = [sys.executable, "-m", "htt_tmva.cli", "apply", *map(str, setup("bdt"))]
    result = subprocess.run(
        [*command, str(path), "*/ntuple"], capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr[-2000:]
    for tree in (NOMINAL, UP, DOWN):
        assert set(SCORES) <= set(branches(path, tree))


# ---------------------------------------------------------------- friends and --output


def test_friend_folders_one_after_another_are_all_kept(setup, trained_models, tmp_path):
    path = write_folders(tmp_path / "sample.root")
    friend = tmp_path / "friend.root"
    configs = setup("bdt")
    run_application(*configs, [str(path)], NOMINAL, friend=str(friend))
    nominal = arrays(friend, NOMINAL)
    run_application(*configs, [str(path)], UP, friend=str(friend))
    np.testing.assert_array_equal(
        arrays(friend, NOMINAL)["bdt_max_score"], nominal["bdt_max_score"]
    )
    assert branches(friend, UP)[0] == "event" and set(SCORES) <= set(branches(friend, UP))
    with pytest.raises(OutputError, match="has branches .* already"):
        run_application(*configs, [str(path)], NOMINAL, friend=str(friend))
    # --overwrite replaces only the tree written; a second model's branches join the first's
    run_application(*configs, [str(path)], NOMINAL, friend=str(friend), overwrite=True)
    run_application(*setup("keras"), [str(path)], UP, friend=str(friend))
    assert set(SCORES) <= set(branches(friend, NOMINAL))
    assert {"bdt_max_score", "keras_max_score", "event"} <= set(branches(friend, UP))
    up = {**arrays(path, UP), **arrays(friend, UP)}
    check_scores(up, trained_models, "bdt", "bdt_")
    check_scores(up, trained_models, "keras", "keras_")
    assert [r["trees"] for r in runs(tmp_path / "friend.bdt_application.yaml")] == [
        [NOMINAL],
        [UP],
        [NOMINAL],
    ]


def test_friend_tree_of_another_input_is_refused(setup, tmp_path):
    path = write_folders(tmp_path / "sample.root")
    other = write_folders(tmp_path / "other.root", n=200)
    friend = tmp_path / "friend.root"
    configs = setup("bdt")
    run_application(*configs, [str(other)], NOMINAL, friend=str(friend))
    before = digest(friend)
    with pytest.raises(OutputError, match="200 entries.*300"):
        run_application(*configs, [str(path)], NOMINAL, friend=str(friend), overwrite=True)
    assert digest(friend) == before


def test_friend_dir_has_the_classic_layout(setup, tmp_path):
    sample = tmp_path / "ntuples" / "DYJetsToLL"
    sample.mkdir(parents=True)
    path = write_folders(sample / "DYJetsToLL.root")
    flat = write_folders(tmp_path / "ntuples" / "WJets.root")
    assert friend_nick(path) == "DYJetsToLL" and friend_nick(flat) == "WJets"
    out = tmp_path / "friends"
    run_application(*setup("bdt"), [str(path), str(flat)], "*/ntuple", friend_dir=str(out))
    for nick in ("DYJetsToLL", "WJets"):
        with uproot.open(out / nick / f"{nick}.root") as f:
            assert {NOMINAL, UP, DOWN} <= {k.split(";")[0] for k in f.keys()}  # noqa: SIM118
    # the classic key output_directory of the application config: the same folder
    configs = setup("bdt", output_directory=str(tmp_path / "classic"))
    run_application(*configs, [str(path)], NOMINAL)
    assert "bdt_max_score" in branches(tmp_path / "classic/DYJetsToLL/DYJetsToLL.root", NOMINAL)
    assert "bdt_max_score" not in branches(path, NOMINAL)


def test_output_file_is_extended_not_replaced(setup, tmp_path):
    path = write_folders(tmp_path / "sample.root")
    out = tmp_path / "out.root"
    configs = setup("bdt")
    run_application(*configs, [str(path)], NOMINAL, output=str(out))
    run_application(*configs, [str(path)], UP, output=str(out))
    assert set(SCORES) <= set(branches(out, NOMINAL)) and set(SCORES) <= set(branches(out, UP))
    assert not set(SCORES) & set(branches(out, DOWN))
    check_extras_in_folder(out)
    with pytest.raises(OutputError, match="has branches .* already"):
        run_application(*configs, [str(path)], UP, output=str(out))
    run_application(*configs, [str(path)], UP, output=str(out), overwrite=True)
    assert set(SCORES) <= set(branches(out, NOMINAL))


def test_existing_output_that_is_no_root_file_is_left_alone(setup, tmp_path):
    data = write_ntuple(tmp_path / "data.root", 300, extras=False)
    out = tmp_path / "out.root"
    out.write_bytes(b"keep me")
    for overwrite in (False, True):
        with pytest.raises(OutputError, match="exists and cannot be extended"):
            run_application(*setup("bdt"), [str(data)], TREE, output=str(out), overwrite=overwrite)
    assert out.read_bytes() == b"keep me"


# ---------------------------------------------------------------- types and RNTuples kept


def write_typed(path: Path, kind: str, n: int = 200) -> Path:
    """A tree with x, y, event and one branch of ``kind``."""
    from htt_tmva._root import root

    ROOT = root()
    rng = np.random.default_rng(3)
    f = ROOT.TFile(str(path), "RECREATE")
    if kind == "ntuple":
        tree = ROOT.TNtuple(TREE, "t", "x:y:event")
        for i, event in enumerate(rng.choice(10**6, size=n, replace=False)):
            tree.Fill(float(rng.normal()), float(rng.normal()), float(event) + 0 * i)
        tree.Write()
        f.Close()
        return path
    tree = ROOT.TTree(TREE, "t")
    x, y, ev = array.array("f", [0]), array.array("f", [0]), array.array("L", [0])
    tree.Branch("x", x, "x/F")
    tree.Branch("y", y, "y/F")
    tree.Branch("event", ev, "event/l")
    extra = array.array("d", [0, 0])
    text = array.array("b", [0] * 8)
    vector = ROOT.std.vector["int"]()
    if kind == "string":
        tree.Branch("s", text, "s/C")
    elif kind == "double32":
        tree.Branch("d32", extra, "d32/d[0,10,16]")
    elif kind == "float16":
        tree.Branch("f16", extra, "f16/f[0,10,12]")
    elif kind == "leaflist":
        tree.Branch("pq", array.array("f", [0, 0]), "p/F:q/I")
    elif kind == "vector":
        tree.Branch("vec", vector)
    for event in rng.choice(10**6, size=n, replace=False):
        x[0], y[0], ev[0] = rng.normal(), rng.normal(), int(event)
        text[0:4] = array.array("b", b"ok!\0")
        vector.clear()
        vector.push_back(int(event) % 7)
        extra[0] = 1.5
        tree.Fill()
    tree.Write()
    f.Close()
    return path


@pytest.mark.parametrize(
    ("kind", "why"),
    [
        ("string", r"'s' \(Char_t"),
        ("double32", r"'d32' \(Double32_t"),
        ("float16", r"'f16' \(Float16_t"),
        ("leaflist", r"'pq' \(leaf list p/F:q/I\)"),
        ("ntuple", "TNtuple and would become a TTree"),
    ],
)
def test_in_place_refuses_what_a_copy_would_change_and_friends_work(setup, tmp_path, kind, why):
    path = write_typed(tmp_path / "typed.root", kind)
    before = digest(path)
    with pytest.raises(OutputError, match=f"without changing its types: .*{why}.*--friend-dir"):
        run_application(*setup("bdt"), [str(path)], TREE)
    assert digest(path) == before
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []
    run_application(*setup("bdt"), [str(path)], TREE, friend=str(tmp_path / "friend.root"))
    assert digest(path) == before
    assert "bdt_max_score" in branches(tmp_path / "friend.root", TREE)


def test_vector_branches_keep_their_type_in_place(setup, tmp_path):
    from htt_tmva._root import root

    path = write_typed(tmp_path / "typed.root", "vector")
    values = arrays(path)["vec"]
    run_application(*setup("bdt"), [str(path)], TREE)
    f = root().TFile.Open(str(path))
    assert f.Get(TREE).GetBranch("vec").GetClassName() == "vector<int>"
    f.Close()
    after = arrays(path)
    assert [list(v) for v in after["vec"]] == [list(v) for v in values]
    assert "bdt_max_score" in after


def test_verification_compares_types_not_only_names(setup, tmp_path, monkeypatch):
    """A copy whose branch type differs from the one planned (here the planning is made to
    see vector<long>) fails the verification, naming both types."""
    import htt_tmva.application.trees as trees

    path = write_typed(tmp_path / "typed.root", "vector")
    before = digest(path)
    real, calls = trees.branch_types, []

    def planned_as_long(tree, names):
        found = real(tree, names)
        if not calls and "vec" in found:
            found["vec"] = (found["vec"][0], "vector<long>", found["vec"][2])
        calls.append(names)
        return found

    monkeypatch.setattr(trees, "branch_types", planned_as_long)
    with pytest.raises(
        OutputError, match=r"branch types changed: vec .*vector<int>.* instead of .*vector<long>"
    ):
        run_application(*setup("bdt"), [str(path)], TREE)
    assert digest(path) == before


def test_a_file_with_an_rntuple_is_not_rewritten(setup, tmp_path):
    from htt_tmva._root import root

    ROOT = root()
    path = write_ntuple(tmp_path / "data.root", 200, extras=False)
    options = ROOT.RDF.RSnapshotOptions()
    options.fMode = "UPDATE"
    options.fOutputFormat = ROOT.RDF.ESnapshotOutputFormat.kRNTuple
    ROOT.RDataFrame(10).Define("pt", "float(rdfentry_)").Snapshot(
        "events", str(path), ["pt"], options
    )
    with uproot.open(path) as f:
        assert "RNTuple" in f.classnames()["events;1"]
    before = digest(path)
    with pytest.raises(OutputError, match=r"RNTuple\(s\) \['events'\].*--friend-dir"):
        run_application(*setup("bdt"), [str(path)], TREE)
    assert digest(path) == before
    run_application(*setup("bdt"), [str(path)], TREE, friend_dir=str(tmp_path / "friends"))
    assert digest(path) == before
