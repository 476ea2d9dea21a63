"""root:// inputs, read through a real XRootD server on 127.0.0.1 (tests/xrootd_server.py).

The served files live where the server's ``oss.localroot`` puts them: the URL's path does
not exist on this machine, so each file below was read through the server (and its log says
so). Tests that need the server skip, with the reason, where it cannot run.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
from conftest import CLASSES, dataset_document, training_document, write_yaml
from xrootd_server import EXPORT, start_server

from htt_tmva.errors import ConfigError, InputFileError, OutputError

uproot = pytest.importorskip("uproot")

TREE = "ntuple"


@pytest.fixture(scope="session")
def xrootd():
    """A real xrootd on 127.0.0.1 serving a folder whose URL path is not a local path."""
    from htt_tmva._root import root

    if root().gSystem.Load("libNetxNG") < 0:
        pytest.skip("this ROOT build has no XRootD client (libNetxNG, TNetXNGFile)")
    server, why = start_server()
    if server is None:
        pytest.skip(why)
    assert not Path(EXPORT).exists()  # a local open of the URL's path would fail
    yield server
    server.stop()


def digest(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def tree_arrays(path, tree: str) -> dict[str, np.ndarray]:
    with uproot.open(path) as f:
        return f[tree].arrays(library="np")


def same_events(a: dict, b: dict) -> None:
    """Same branches and the same events (compared in event order)."""
    assert list(a) == list(b)
    order_a, order_b = np.argsort(a["event"], kind="stable"), np.argsort(b["event"], kind="stable")
    for name in a:
        np.testing.assert_array_equal(a[name][order_a], b[name][order_b], err_msg=name)


# ---------------------------------------------------------------- without a server


def test_root_urls_stay_urls_in_configs(tmp_path):
    from htt_tmva.config import load_dataset_config, load_training_config

    folder = "root://eosuser.cern.ch//eos/user/a/analyst/ntuples"
    doc = dataset_document(folder, tmp_path / "out")
    doc["processes"]["signal"]["files"] = ["root://other.host:1094//store/signal.root"]
    dataset = load_dataset_config(write_yaml(tmp_path / "dataset.yaml", doc))
    files = {name: [str(f) for f in p.files] for name, p in dataset.processes.items()}
    assert files == {
        "signal": ["root://other.host:1094//store/signal.root"],
        "background_1": [f"{folder}/example_background_1.root"],
        "background_2": [f"{folder}/example_background_2.root"],
    }
    assert dataset.processes["background_1"].files[0].name == "example_background_1.root"

    training = load_training_config(
        write_yaml(
            tmp_path / "training.yaml",
            training_document(tmp_path, tmp_path / "models", base_path=f"{folder}/folds/")
            | {"datasets": ["fold0.root", "root://h//f/fold1.root"]},
        )
    )
    assert [str(d) for d in training.datasets] == [
        f"{folder}/folds/fold0.root",
        "root://h//f/fold1.root",
    ]


def test_remote_output_path_is_refused(tmp_path):
    from htt_tmva.config import load_dataset_config

    doc = dataset_document(tmp_path, "root://eosuser.cern.ch//eos/user/a/out")
    with pytest.raises(ConfigError, match=r"'output_path' is a remote URL.*local folder"):
        load_dataset_config(write_yaml(tmp_path / "dataset.yaml", doc))


def test_wildcards_in_remote_folders_are_refused():
    from htt_tmva._root import remote_glob

    with pytest.raises(InputFileError, match="file name of a root:// URL only"):
        remote_glob("root://eosuser.cern.ch//eos/user/*/ntuples/data_*.root")


# ---------------------------------------------------------------- through the server


@pytest.fixture(scope="session")
def served_toy(xrootd, toy_dir) -> dict[str, str]:
    """The toy files on the server: name -> digest of the served copy."""
    for name in CLASSES:
        xrootd.publish(toy_dir / f"example_{name}.root", f"toy/example_{name}.root")
    return {n: digest(xrootd.local(f"toy/example_{n}.root")) for n in CLASSES}


def test_dataset_from_root_urls_equals_dataset_from_local_files(
    xrootd, served_toy, fold_dir, tmp_path
):
    from htt_tmva.config import load_dataset_config
    from htt_tmva.data.dataset import create_training_dataset

    doc = dataset_document(xrootd.url("toy"), tmp_path)
    written = create_training_dataset(load_dataset_config(write_yaml(tmp_path / "d.yaml", doc)))

    assert [p.name for p in written] == [
        "fold0_training_dataset.root",
        "fold1_training_dataset.root",
    ]
    for path in written:
        for cls in CLASSES:
            same_events(tree_arrays(path, cls), tree_arrays(fold_dir / path.name, cls))
    assert all(xrootd.opened(f"toy/example_{n}.root") for n in CLASSES)
    assert {n: digest(xrootd.local(f"toy/example_{n}.root")) for n in CLASSES} == served_toy


def test_confusion_on_a_root_dataset_equals_the_local_one(xrootd, trained_models, fold_dir):
    from htt_tmva.evaluation.testing import run_testing

    info = trained_models["bdt"]
    folder = Path(info["training_config"]).parent
    for fold in (0, 1):
        xrootd.publish(fold_dir / f"fold{fold}_training_dataset.root", f"folds/fold{fold}.root")
    summaries = {}
    for where, datasets in {
        "local": [str(fold_dir / f"fold{i}_training_dataset.root") for i in (0, 1)],
        "remote": [xrootd.url(f"folds/fold{i}.root") for i in (0, 1)],
    }.items():
        training = write_yaml(
            folder / f"xrootd_{where}_training.yaml",
            training_document(fold_dir, info["output_path"], datasets=datasets),
        )
        testing = write_yaml(
            folder / f"xrootd_{where}_testing.yaml",
            {
                "model": [p.name for p in info["models"]],
                "weight_branch": "training_weight",
                "output_prefix": f"xrootd_{where}_",
            },
        )
        summaries[where] = run_testing(training, testing, 0)

    assert xrootd.opened("folds/fold1.root")  # fold 0's model scores fold 1
    remote, local = summaries["remote"], summaries["local"]
    assert remote["dataset"] == xrootd.url("folds/fold1.root")
    assert remote["matrices"] == local["matrices"] and remote["classes"] == CLASSES
    saved = json.loads((info["output_path"] / "xrootd_remote_fold0_confusion.json").read_text())
    assert saved["matrices"] == local["matrices"]


def test_training_reads_root_datasets_like_local_ones(xrootd, trained_models, fold_dir, tmp_path):
    from htt_tmva.config import load_training_config
    from htt_tmva.training import load_training_data

    for fold in (0, 1):
        xrootd.publish(fold_dir / f"fold{fold}_training_dataset.root", f"train/fold{fold}.root")
    remote, local = (
        load_training_config(
            write_yaml(
                tmp_path / f"{where}.yaml",
                training_document(fold_dir, tmp_path / "models", datasets=datasets),
            )
        )
        for where, datasets in (
            ("remote", [xrootd.url(f"train/fold{i}.root") for i in (0, 1)]),
            ("local", [str(fold_dir / f"fold{i}_training_dataset.root") for i in (0, 1)]),
        )
    )
    got, expected = load_training_data(remote, 0), load_training_data(local, 0)
    assert xrootd.opened("train/fold0.root")
    for name in ("x", "y", "w"):
        np.testing.assert_array_equal(getattr(got, name), getattr(expected, name), err_msg=name)


# ---------------------------------------------------------------- application


def write_ntuple(path: Path, n: int, seed: int = 3) -> Path:
    """x, y, weights, event (unique, shuffled) and a histogram beside the tree."""
    from htt_tmva._root import root

    ROOT = root()
    rng = np.random.default_rng(seed)
    columns = {
        "x": rng.normal(size=n).astype(np.float32),
        "y": rng.normal(size=n).astype(np.float32),
        "weights": rng.uniform(0.5, 1.5, size=n).astype(np.float32),
        "event": rng.permutation(rng.choice(10**9, size=n, replace=False)).astype(np.uint64),
    }
    ROOT.RDF.FromNumpy(columns).Snapshot(TREE, str(path), list(columns))
    f = ROOT.TFile.Open(str(path), "UPDATE")
    hist = ROOT.TH1F("cutflow", "cut flow", 3, 0, 3)
    hist.Fill(0.5, 7)
    hist.Write()
    f.Close()
    return path


@pytest.fixture
def apply_configs(trained_models, toy_dir, tmp_path):
    """(dataset, training, application) configs of the BDT of ``trained_models``."""
    info = trained_models["bdt"]
    dataset = write_yaml(tmp_path / "dataset.yaml", dataset_document(toy_dir, tmp_path / "f"))
    application = write_yaml(
        tmp_path / "application.yaml",
        {"classifiers": [p.name for p in info["models"]][::-1], "branch_prefix": "bdt_"},
    )
    return dataset, info["training_config"], application


@pytest.fixture
def served_ntuple(xrootd, tmp_path, request):
    """One ntuple, local and on the server: (local path, URL, served copy, its digest)."""
    local = write_ntuple(tmp_path / "data.root", 2345)
    relative = f"apply/{request.node.name.replace('[', '_').replace(']', '')}/data.root"
    url = xrootd.publish(local, relative)
    served = xrootd.local(relative)
    return local, url, served, digest(served)


@pytest.mark.parametrize("mode", ["output", "friend"])
def test_apply_on_a_root_url_writes_what_a_local_input_gives(
    xrootd, served_ntuple, apply_configs, tmp_path, mode
):
    from htt_tmva.application.apply import run_application

    local, url, served, served_digest = served_ntuple
    outputs = {}
    for where, source in {"local": str(local), "remote": url}.items():
        target = tmp_path / where / "scored.root"
        written = run_application(*apply_configs, [source], TREE, **{mode: str(target)})
        assert written == [target]
        outputs[where] = tree_arrays(target, TREE)

    assert xrootd.opened(served.relative_to(xrootd.served).as_posix())
    expected_branches = ["event"] if mode == "friend" else ["x", "y", "weights", "event"]
    scores = [f"bdt_{c}" for c in CLASSES] + ["bdt_max_score", "bdt_max_index"]
    assert sorted(outputs["remote"]) == sorted(expected_branches + scores)
    same_events(outputs["remote"], outputs["local"])
    for name in outputs["local"]:  # and in the same entry order
        np.testing.assert_array_equal(outputs["remote"][name], outputs["local"][name])
    if mode == "output":
        with uproot.open(tmp_path / "remote" / "scored.root") as f:
            assert f["cutflow"].values().sum() == 7
    assert digest(served) == served_digest
    record = tmp_path / "remote" / "scored.bdt_application.yaml"
    assert f"input: {url}" in record.read_text()


def test_apply_in_place_on_a_root_url_is_refused(xrootd, served_ntuple, apply_configs):
    from htt_tmva.application.apply import run_application

    local, url, served, served_digest = served_ntuple
    before = sorted(p.name for p in served.parent.iterdir())
    with pytest.raises(OutputError, match=r"remote \(root://\).*in place.*--output.*--friend"):
        run_application(*apply_configs, [url], TREE)
    with pytest.raises(OutputError, match="written locally only"):
        run_application(*apply_configs, [url], TREE, output=url)
    assert digest(served) == served_digest
    assert sorted(p.name for p in served.parent.iterdir()) == before


def test_apply_expands_a_wildcard_in_a_root_url(xrootd, apply_configs, tmp_path):
    from htt_tmva.application.apply import run_application

    for i in (1, 2):
        xrootd.publish(write_ntuple(tmp_path / f"in{i}.root", 500 + i, seed=i), f"glob/d{i}.root")
    xrootd.publish(tmp_path / "in1.root", "glob/other.root")
    out = tmp_path / "out"
    written = run_application(*apply_configs, [xrootd.url("glob/d*.root")], TREE, friend=f"{out}/")
    assert written == [out / "d1.root", out / "d2.root"]
    assert [uproot.open(p)[TREE].num_entries for p in written] == [501, 502]

    with pytest.raises(InputFileError, match="no input file matches"):
        run_application(*apply_configs, [xrootd.url("glob/none*.root")], TREE, friend=str(out))


def test_missing_remote_file_is_a_clear_error(xrootd, apply_configs, tmp_path):
    from htt_tmva.application.apply import run_application

    url = xrootd.url("nowhere/data.root")
    with pytest.raises(InputFileError, match=r"remote file .*nowhere/data.root.* cannot be opened"):
        run_application(*apply_configs, [url], TREE, output=str(tmp_path / "o.root"))
