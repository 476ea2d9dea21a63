"""Fold files say which fold they hold: a swapped or wrong `datasets` list is refused in
training and testing, by the `htt_tmva_fold` record or else by the event numbers."""

from __future__ import annotations

import json
import logging
import shutil

import numpy as np
import pytest
from conftest import CLASSES, write_yaml
from test_training import toy_class, write_fold_file

from htt_tmva.config import load_training_config
from htt_tmva.engines import get_engine
from htt_tmva.engines.manifest import read_manifest
from htt_tmva.errors import FoldMismatchError
from htt_tmva.evaluation.testing import run_testing
from htt_tmva.training import train_fold


def write_fold_record(path, fold: int, folds: int, event_branch: str = "event", title=None):
    """The record that `htt-tmva dataset` writes into each fold file (the agreed contract)."""
    from htt_tmva._root import root

    ROOT = root()
    if title is None:
        title = json.dumps(
            {"fold": fold, "folds": folds, "event_branch": event_branch}, separators=(",", ":")
        )
    tfile = ROOT.TFile.Open(str(path), "UPDATE")
    ROOT.TNamed("htt_tmva_fold", title).Write()
    tfile.Close()


@pytest.fixture
def recorded_folds(fold_dir, tmp_path):
    """Copies of the dataset step's fold files, each with its `htt_tmva_fold` record."""
    paths = []
    for fold in (0, 1):
        path = tmp_path / "data" / f"fold{fold}_training_dataset.root"
        path.parent.mkdir(exist_ok=True)
        shutil.copy(fold_dir / path.name, path)
        write_fold_record(path, fold, 2)
        paths.append(path)
    return paths


def event_folds(tmp_path, event_branch="event", rng=None):
    """Fold files without a record, whose events carry numbers of their fold (0: even)."""
    rng = rng or np.random.default_rng(1)
    paths = []
    for fold in (0, 1):
        classes = {}
        for i, cls in enumerate(CLASSES):
            columns = toy_class(60, 1.0 - i, rng)
            columns[event_branch] = np.arange(fold, 120, 2, dtype=np.int64) + 1000 * i
            classes[cls] = columns
        path = tmp_path / "plain" / f"fold{fold}.root"
        path.parent.mkdir(exist_ok=True)
        write_fold_file(path, classes)
        paths.append(str(path))
    return paths


def test_training_refuses_swapped_datasets_by_their_fold_record(recorded_folds, training_config):
    swapped = [str(p) for p in reversed(recorded_folds)]
    config = load_training_config(training_config(datasets=swapped))
    with pytest.raises(FoldMismatchError) as info:
        train_fold(config, 0, get_engine("bdt"))
    message = str(info.value)
    assert "fold1_training_dataset.root' holds fold 1 of 2" in message
    assert "used as fold 0 of 2 (entry 0 of 'datasets'" in message
    assert not list(config.output_path.glob("fold0_*"))


def test_fold_record_is_kept_in_the_manifest(recorded_folds, training_config):
    config = load_training_config(
        training_config(datasets=[str(p) for p in recorded_folds], bdt={"NTrees": 5})
    )
    model = train_fold(config, 1, get_engine("bdt"))
    manifest = read_manifest(config.output_path / model.manifest.model_file)
    assert manifest.fold_file == {
        "file": str(recorded_folds[1]),
        "fold": 1,
        "folds": 2,
        "verified_by": "metadata",
        "event_branch": "event",
    }


@pytest.mark.parametrize(
    "title, expected",
    [
        ('{"fold": 0, "folds": 3, "event_branch": "event"}', "holds fold 0 of 3"),
        ("fold 0", "record is not valid: 'fold 0'"),
        ('{"fold": 2, "folds": 2}', "record is not valid"),
    ],
)
def test_fold_record_of_another_split_or_unreadable_is_refused(
    fold_dir, tmp_path, training_config, title, expected
):
    paths = []
    for fold in (0, 1):
        path = tmp_path / f"fold{fold}.root"
        shutil.copy(fold_dir / f"fold{fold}_training_dataset.root", path)
        write_fold_record(path, fold, 2, title=title if fold == 0 else None)
        paths.append(str(path))
    config = load_training_config(training_config(datasets=paths))
    with pytest.raises(FoldMismatchError, match=expected):
        train_fold(config, 0, get_engine("bdt"))


def test_testing_refuses_a_tested_file_of_another_fold(
    trained_models, recorded_folds, tmp_path, fold_dir
):
    """The model of fold 0 is tested on entry 1 of 'datasets', which must hold fold 1."""
    info = trained_models["bdt"]
    doc = load_training_config(info["training_config"]).raw
    doc = {**doc, "datasets": [str(recorded_folds[0]), str(recorded_folds[0])]}
    doc["output_path"] = str(tmp_path / "out")
    training = write_yaml(tmp_path / "training.yaml", doc)
    testing = write_yaml(
        tmp_path / "testing.yaml",
        {"model": [str(p) for p in info["models"]], "weight_branch": "training_weight"},
    )
    with pytest.raises(FoldMismatchError) as error:
        run_testing(training, testing, 0)
    assert "fold0_training_dataset.root' holds fold 0 of 2" in str(error.value)
    assert "the model of fold 0 is tested on: entry 1 of 'datasets'" in str(error.value)
    assert not (tmp_path / "out").exists()


def test_training_without_record_checks_event_numbers(tmp_path, training_config):
    even, odd = event_folds(tmp_path)
    config = load_training_config(training_config(datasets=[odd, even]))
    with pytest.raises(FoldMismatchError) as info:
        train_fold(config, 0, get_engine("bdt"))
    message = str(info.value)
    assert f"'{odd}' is used as fold 0 of 2" in message
    assert "60 of 60 events of tree 'signal'" in message
    assert "'event' % 2 is [1]" in message

    config = load_training_config(training_config(datasets=[even, odd], bdt={"NTrees": 5}))
    model = train_fold(config, 0, get_engine("bdt"))
    assert model.manifest.fold_file["verified_by"] == "event numbers"
    assert model.manifest.fold_file["event_branch"] == "event"


def test_event_branch_key_names_the_event_number(tmp_path, training_config):
    even, odd = event_folds(tmp_path, event_branch="evt")
    config = load_training_config(training_config(datasets=[odd, even], event_branch="evt"))
    with pytest.raises(FoldMismatchError, match="'evt' % 2 is \\[1\\]"):
        train_fold(config, 0, get_engine("bdt"))


def test_a_single_event_of_another_fold_is_found(tmp_path, training_config):
    rng = np.random.default_rng(3)
    _, odd = event_folds(tmp_path, rng=rng)
    classes = {}
    for i, cls in enumerate(CLASSES):
        columns = toy_class(60, 1.0 - i, rng)
        columns["event"] = np.arange(0, 120, 2, dtype=np.int64)
        classes[cls] = columns
    classes["background_2"]["event"][17] = 7
    write_fold_file(tmp_path / "mixed.root", classes)
    config = load_training_config(training_config(datasets=[str(tmp_path / "mixed.root"), odd]))
    with pytest.raises(FoldMismatchError, match="1 of 60 events of tree 'background_2'"):
        train_fold(config, 0, get_engine("bdt"))


def test_fold_without_record_or_event_numbers_trains_with_a_warning(
    tmp_path, training_config, caplog
):
    rng = np.random.default_rng(0)
    paths = []
    for fold in (0, 1):
        path = tmp_path / f"fold{fold}.root"
        write_fold_file(path, {c: toy_class(50, 1.0 - i, rng) for i, c in enumerate(CLASSES)})
        paths.append(str(path))
    config = load_training_config(training_config(datasets=paths, bdt={"NTrees": 5}))
    with caplog.at_level(logging.WARNING):
        model = train_fold(config, 1, get_engine("bdt"))
    assert f"cannot verify that '{paths[1]}' holds fold 1 of 2" in caplog.text
    assert "no event-number branch 'event'" in caplog.text
    assert model.manifest.fold_file["verified_by"] == "not verified"
    assert model.manifest.fold_file["unverified_trees"] == CLASSES
