"""The application on a real local Dask cluster (two workers, distributed RDataFrame): the same
output, event by event, as the local run with the same compiled models; the same refusals;
nothing left behind."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import dataset_document, write_yaml

from htt_tmva.application.apply import run_application
from htt_tmva.errors import ConfigError, NonFiniteError

pytest.importorskip("dask.distributed", reason="Dask is not installed")
uproot = pytest.importorskip("uproot")
TREE = "ntuple"


def ntuple(path, n=20000, nan_rows=0):
    from htt_tmva._root import root

    rng = np.random.default_rng(9)
    columns = {
        "x": rng.normal(size=n).astype(np.float32),
        "y": rng.normal(size=n).astype(np.float32),
        "event": rng.permutation(np.arange(n, dtype=np.uint64) * 7 + 2**63),
        "run": rng.integers(1, 4, size=n).astype(np.int32),
    }
    if nan_rows:
        columns["y"][rng.choice(n, nan_rows, replace=False)] = np.inf
    root().RDF.FromNumpy(columns).Snapshot(TREE, str(path), list(columns))
    return path


@pytest.fixture
def configs(trained_models, toy_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("HTT_TMVA_CACHE", str(tmp_path / "cache"))

    def make(engine):
        info = trained_models[engine]
        doc = {"classifiers": [p.name for p in info["models"]][::-1], "branch_prefix": "s_"}
        if info["preprocessing"]:
            doc["preprocessing"] = [p.name for p in info["preprocessing"]][::-1]
        dataset = write_yaml(tmp_path / "ds.yaml", dataset_document(toy_dir, tmp_path / "f"))
        return dataset, info["training_config"], write_yaml(tmp_path / f"{engine}.yaml", doc)

    return make


def arrays(path):
    with uproot.open(path) as f:
        return f[TREE].arrays(library="np")


@pytest.mark.parametrize("engine", ["bdt", "keras"])
def test_dask_output_equals_the_local_run(configs, engine, tmp_path):
    data = ntuple(tmp_path / "data.root")
    run_application(
        *configs(engine), [str(data)], TREE, output=str(tmp_path / "local.root"),
        compile_models=True,
    )  # fmt: skip
    run_application(
        *configs(engine), [str(data)], TREE, output=str(tmp_path / "dask.root"),
        executor="dask", workers=2,
    )  # fmt: skip
    local, dask = arrays(tmp_path / "local.root"), arrays(tmp_path / "dask.root")
    assert list(local) == list(dask)
    for name in local:
        np.testing.assert_array_equal(local[name], dask[name])
    leftovers = [p.name for p in tmp_path.iterdir() if p.name.startswith(".")]
    assert leftovers == []


def test_dask_refuses_nonfinite_inputs_and_leaves_nothing(configs, tmp_path):
    data = ntuple(tmp_path / "data.root", nan_rows=15)
    before = data.read_bytes()
    with pytest.raises(NonFiniteError, match="15 of 20000 events .*'y' in 15 events"):
        run_application(*configs("bdt"), [str(data)], TREE, executor="dask", workers=2)
    assert data.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_unknown_executor_is_refused(configs, tmp_path):
    data = ntuple(tmp_path / "data.root", n=10)
    with pytest.raises(ConfigError, match="unknown executor 'spark'; valid: 'local', 'dask'"):
        run_application(*configs("bdt"), [str(data)], TREE, executor="spark")


def test_dask_with_a_nan_default_and_quiet_prints_nothing(configs, tmp_path):
    """--nonfinite-default nan reaches the workers' C++ as a NaN (not 'nanf'); -q leaves
    stderr free of Dask's INFO lines."""
    import math

    from conftest import htt_tmva

    data = ntuple(tmp_path / "data.root", n=2000, nan_rows=5)
    result = htt_tmva(
        "-q", "apply", *map(str, configs("bdt")), str(data), TREE, "--executor", "dask",
        "--workers", "1", "--nonfinite-default", "nan", "--output", str(tmp_path / "o.root"),
        cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "INFO" not in result.stderr, result.stderr
    scores = arrays(tmp_path / "o.root")
    bad = ~np.isfinite(arrays(data)["y"])
    assert bad.sum() == 5
    assert all(math.isnan(v) for v in scores["s_max_score"][bad])
    assert np.isfinite(scores["s_max_score"][~bad]).all()
    assert (scores["s_max_index"][bad] == -1).all()
