"""The dataset step in parts (one process and fold each) and their merge: the merged fold
files equal the direct command's event by event; missing, stale, damaged and inconsistent
parts are refused before anything is written."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import uproot
import yaml
from conftest import dataset_document, htt_tmva, write_yaml
from test_dataset import write_ntuple, write_rich_tree

from htt_tmva.config import load_dataset_config
from htt_tmva.data.dataset import create_training_dataset
from htt_tmva.data.parts import merge_parts, part_path, write_part
from htt_tmva.errors import ConfigError, DatasetPartError

FILENAME = "training_dataset.root"


def mixed_document(toy_dir: Path, rich: list[Path], out: Path, folds: int = 3) -> dict:
    """Toy processes (two of them in one class) and a class of two rich-tree processes
    whose files differ (the second lacks some branches)."""
    doc = dataset_document(toy_dir, out, folds=folds)
    doc["processes"]["background_1"]["class"] = "background"
    doc["processes"]["background_2"]["class"] = "background"
    doc["processes"]["background_2"]["weight_string"] = "weights * (1 + 0.5 * (y > 0))"
    for i, path in enumerate(rich):
        doc["processes"][f"rich_{i}"] = {
            "files": [str(path)],
            "cut_string": "x > -3",
            "weight_string": "weights * 2",
            "class": "rich",
        }
    return doc


def write_rich_inputs(folder: Path) -> list[Path]:
    """Two rich trees; the second lacks the leaf list, arrays and vector of the first."""
    return [
        write_rich_tree(folder / "rich0.root", np.arange(0, 300)),
        write_rich_tree(folder / "rich1.root", np.arange(1000, 1200), extra=False),
    ]


@pytest.fixture
def rich_inputs(tmp_path) -> list[Path]:
    return write_rich_inputs(tmp_path)


def describe(path: Path) -> dict:
    """Everything a reader sees in a fold file: keys, per tree its title, branches with
    their types, every value in entry order; the fold record."""
    out = {}
    with uproot.open(path) as f:
        out["keys"] = sorted(f.keys(cycle=False))
        out["record"] = f["htt_tmva_fold"].member("fTitle")
        for name in f.keys(cycle=False, filter_classname="TTree"):
            tree = f[name]
            arrays = tree.arrays(library="np")
            out[name] = {
                "title": tree.title,
                "entries": tree.num_entries,
                "branches": [(b.name, b.typename) for b in tree.branches],
                "values": {k: [np.asarray(v).tolist() for v in arrays[k]] for k in arrays},
            }
    return out


def assert_same_fold_files(direct: list[Path], merged: list[Path]) -> None:
    for a, b in zip(direct, merged):
        assert describe(a) == describe(b)
        ca = yaml.safe_load(a.with_suffix(".config.yaml").read_text())
        cb = yaml.safe_load(b.with_suffix(".config.yaml").read_text())
        for c in (ca, cb):
            del c["source"], c["config_hash"], c["resolved"]["output_path"]
        assert ca == cb


def write_all_parts(config, parts: Path) -> None:
    for name in config.processes:
        for fold in range(config.folds):
            write_part(config, name, fold, parts)


def test_merged_parts_equal_the_direct_command_event_by_event(tmp_path, toy_dir, rich_inputs):
    direct = load_dataset_config(
        write_yaml(tmp_path / "a.yaml", mixed_document(toy_dir, rich_inputs, tmp_path / "a"))
    )
    merged = load_dataset_config(
        write_yaml(tmp_path / "b.yaml", mixed_document(toy_dir, rich_inputs, tmp_path / "b"))
    )
    expected = create_training_dataset(direct)
    parts = tmp_path / "parts"
    write_all_parts(merged, parts)
    assert sorted(p.name for p in parts.iterdir()) == sorted(
        part_path(parts, n, f).name for n in merged.processes for f in range(3)
    )  # no temporary files left
    finals = merge_parts(merged, parts)
    assert finals == [tmp_path / "b" / f"fold{i}_{FILENAME}" for i in range(3)]
    assert_same_fold_files(expected, finals)
    written = yaml.safe_load(finals[0].with_suffix(".config.yaml").read_text())
    assert written == yaml.safe_load(yaml.safe_dump(merged.resolved()))
    with uproot.open(finals[1]) as f:  # the rich class: leaf lists, arrays and vectors kept,
        tree = f["rich"]  # branches that rich1.root lacks dropped, both processes in order
        assert [b.name for b in tree.branches] == ["event", "x", "weights", "training_weight"]
        events = tree["event"].array(library="np")
    assert events.tolist() == [e for e in [*range(300), *range(1000, 1200)]
                               if e % 3 == 1 and e % 7 != 0]  # fmt: skip


def test_merged_parts_equal_the_direct_command_when_a_cut_reads_a_branch_another_lacks(
    tmp_path,
):
    """The cut and weight of the first process of a class read ``n``, which the second
    process lacks: neither the direct fold files nor the merged ones have ``n``, and they
    are the same."""
    first = write_rich_tree(tmp_path / "r0.root", np.arange(0, 60))
    second = write_rich_tree(tmp_path / "r1.root", np.arange(100, 160), extra=False)

    def config(name: str):
        doc = {
            "base_path": str(tmp_path),
            "output_path": str(tmp_path / name),
            "output_filename": FILENAME,
            "tree_path": "ntuple",
            "event_branch": "event",
            "training_weight_branch": "training_weight",
            "folds": 3,
            "processes": {
                "a": {"files": [first.name], "cut_string": "n >= 1",
                      "weight_string": "weights * n", "class": "c"},
                "b": {"files": [second.name], "weight_string": "weights", "class": "c"},
            },
        }  # fmt: skip
        return load_dataset_config(write_yaml(tmp_path / f"{name}.yaml", doc))

    expected = create_training_dataset(config("direct"))
    merged = config("merged")
    write_all_parts(merged, tmp_path / "parts")
    finals = merge_parts(merged, tmp_path / "parts")
    assert_same_fold_files(expected, finals)
    for fold, final in enumerate(finals):
        with uproot.open(final) as f:
            tree = f["c"]
            assert tree.keys() == ["event", "x", "weights", "training_weight"]
            events = tree["event"].array(library="np").tolist()
        ours = [e for e in range(60) if e % 3 == fold and e % 4 >= 1]
        assert events == ours + [e for e in range(100, 160) if e % 3 == fold]


def test_a_missing_part_stops_the_merge_and_leaves_the_old_outputs(tmp_path, toy_dir):
    doc = dataset_document(toy_dir, tmp_path / "out")
    config = load_dataset_config(write_yaml(tmp_path / "d.yaml", doc))
    old = create_training_dataset(config)
    before = {p: p.read_bytes() for p in tmp_path.joinpath("out").iterdir()}
    parts = tmp_path / "parts"
    write_all_parts(config, parts)
    part_path(parts, "background_1", 1).unlink()
    with pytest.raises(DatasetPartError) as info:
        merge_parts(config, parts)
    message = str(info.value)
    assert "1 of 6 parts are missing or not valid" in message
    assert "process 'background_1', fold 1" in message
    assert f"--process background_1 --fold 1 --partial-output {parts}" in message
    assert {p: p.read_bytes() for p in tmp_path.joinpath("out").iterdir()} == before
    assert all(p.exists() for p in old)


def test_a_part_of_another_config_is_stale(tmp_path, toy_dir):
    doc = dataset_document(toy_dir, tmp_path / "out")
    first = load_dataset_config(write_yaml(tmp_path / "d.yaml", doc))
    parts = tmp_path / "parts"
    write_all_parts(first, parts)
    doc["processes"]["signal"]["cut_string"] = "(x > -2.0)"
    changed = load_dataset_config(write_yaml(tmp_path / "d.yaml", doc))
    write_part(changed, "background_2", 0, parts)  # only this one is up to date
    with pytest.raises(DatasetPartError) as info:
        merge_parts(changed, parts)
    assert "5 of 6 parts" in str(info.value) and "is stale" in str(info.value)
    assert not (tmp_path / "out").exists()


def test_a_damaged_part_is_refused(tmp_path, toy_dir):
    config = load_dataset_config(
        write_yaml(tmp_path / "d.yaml", dataset_document(toy_dir, tmp_path / "out"))
    )
    parts = tmp_path / "parts"
    write_all_parts(config, parts)
    damaged = part_path(parts, "signal", 0)
    damaged.write_bytes(damaged.read_bytes()[: damaged.stat().st_size // 2])
    with pytest.raises(DatasetPartError) as info:
        merge_parts(config, parts)
    assert "1 of 6 parts" in str(info.value) and str(damaged) in str(info.value)


def test_parts_made_from_changed_inputs_do_not_add_up(tmp_path):
    source = tmp_path / "in" / "sample.root"
    source.parent.mkdir()
    rng = np.random.default_rng(1)

    def inputs(n: int) -> None:
        write_ntuple(
            source,
            {
                "x": rng.normal(size=n).astype(np.float32),
                "weights": np.ones(n, dtype=np.float32),
                "event": np.arange(n, dtype=np.int64),
            },
        )

    doc = {
        "base_path": str(source.parent),
        "output_path": str(tmp_path / "out"),
        "output_filename": FILENAME,
        "tree_path": "ntuple",
        "event_branch": "event",
        "training_weight_branch": "training_weight",
        "processes": {"sample": {"files": ["sample.root"], "class": "sample"}},
    }
    config = load_dataset_config(write_yaml(tmp_path / "d.yaml", doc))
    parts = tmp_path / "parts"
    inputs(100)
    write_part(config, "sample", 0, parts)
    inputs(120)  # the input file is replaced between the two jobs
    write_part(config, "sample", 1, parts)
    with pytest.raises(DatasetPartError) as info:
        merge_parts(config, parts)
    assert "saw different inputs" in str(info.value)
    inputs(100)  # the same number of events (and selected ones), other values
    write_part(config, "sample", 1, parts)
    with pytest.raises(DatasetPartError) as info:
        merge_parts(config, parts)
    message = str(info.value)
    assert "saw different inputs" not in message
    assert f"read '{source}' in another version" in message and "write the parts again" in message
    assert not (tmp_path / "out").exists()
    write_part(config, "sample", 0, parts)  # both parts from the input as it is now
    assert len(merge_parts(config, parts)) == 2


def test_unknown_process_and_fold_are_refused(tmp_path, toy_dir):
    config = load_dataset_config(
        write_yaml(tmp_path / "d.yaml", dataset_document(toy_dir, tmp_path / "out"))
    )
    with pytest.raises(ConfigError, match="did you mean 'signal'"):
        write_part(config, "signall", 0, tmp_path / "parts")
    with pytest.raises(ConfigError, match="fold 2 does not exist"):
        write_part(config, "signal", 2, tmp_path / "parts")
    assert not (tmp_path / "parts").exists()


@pytest.mark.slow
def test_cli_writes_parts_and_merges_them(tmp_path, toy_dir):
    config = write_yaml(tmp_path / "d.yaml", dataset_document(toy_dir, tmp_path / "out"))
    parts = tmp_path / "parts"
    result = htt_tmva("dataset", str(config), "--process", "signal", "--fold", "0", cwd=tmp_path)
    assert result.returncode == 2 and "needs all three" in result.stderr
    result = htt_tmva(
        "dataset", str(config), "--merge", str(parts), "--fold", "0", cwd=tmp_path
    )  # fmt: skip
    assert result.returncode == 2
    result = htt_tmva("dataset", str(config), "--merge", str(parts), cwd=tmp_path)
    assert result.returncode == 1 and "6 of 6 parts are missing" in result.stderr
    assert "Traceback" not in result.stderr
    for name in ("signal", "background_1", "background_2"):
        for fold in ("0", "1"):
            result = htt_tmva(
                "dataset", str(config), "--process", name, "--fold", fold,
                "--partial-output", str(parts), cwd=tmp_path,
            )  # fmt: skip
            assert result.returncode == 0, result.stderr
    result = htt_tmva("dataset", str(config), "--merge", str(parts), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    reference = tmp_path / "reference"
    shutil.copytree(tmp_path / "out", reference)
    result = htt_tmva("dataset", str(config), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert_same_fold_files(
        sorted((tmp_path / "out").glob("*.root")), sorted(reference.glob("*.root"))
    )
