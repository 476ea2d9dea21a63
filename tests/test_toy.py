"""The toy dataset: four ROOT files with the documented distributions, weights and events."""

from __future__ import annotations

import math

import numpy as np
import pytest
import uproot

from htt_tmva.data.toy import PROCESSES, write_toy_dataset
from htt_tmva.errors import HttTmvaError

N = 3000  # events per process in the session toy_dir fixture
EXPECTED = {
    "signal": {"mean": (0.0, 0.0), "corr": 0.0, "norm": 0.1},
    "background_1": {"mean": (0.5, 0.5), "corr": -0.7, "norm": 0.6},
    "background_2": {"mean": (-0.5, -0.5), "corr": 0.7, "norm": 0.3},
}
FILES = [f"example_{name}.root" for name in (*EXPECTED, "data")]


def read(path, tree="ntuple"):
    with uproot.open(path) as f:
        return f[tree].arrays(library="np")


def test_toy_writes_four_files_with_tree_ntuple_and_branches(toy_dir):
    assert sorted(p.name for p in toy_dir.iterdir()) == sorted(FILES)
    for name in FILES:
        with uproot.open(toy_dir / name) as f:
            assert [k.split(";")[0] for k in f.keys(cycle=False)] == ["ntuple"]
            tree = f["ntuple"]
            assert set(tree.keys()) == {"x", "y", "weights", "event"}
            assert tree.typenames()["x"] == "float"
            assert tree.typenames()["y"] == "float"


def test_toy_files_are_readable_by_root(toy_dir):
    from htt_tmva._root import root

    ROOT = root()
    for name in FILES:
        tfile = ROOT.TFile.Open(str(toy_dir / name))
        assert tfile and not tfile.IsZombie()
        assert not tfile.TestBit(ROOT.TFile.kRecovered)
        tree = tfile.Get("ntuple")
        assert tree.GetEntries() == N
        assert tree.GetLeaf("x").GetTypeName() == "Float_t"
        assert ROOT.RDataFrame("ntuple", str(toy_dir / name)).Count().GetValue() == N
        tfile.Close()


@pytest.mark.parametrize("name", list(EXPECTED))
def test_toy_process_has_documented_means_and_correlation(toy_dir, name):
    a = read(toy_dir / f"example_{name}.root")
    expected = EXPECTED[name]
    assert len(a["x"]) == N
    # Standard error of a mean of N unit normals: 1/sqrt(N) ~ 0.018; allow 5 sigma.
    tol_mean = 5 / math.sqrt(N)
    assert a["x"].mean() == pytest.approx(expected["mean"][0], abs=tol_mean)
    assert a["y"].mean() == pytest.approx(expected["mean"][1], abs=tol_mean)
    assert a["x"].std() == pytest.approx(1.0, abs=5 * math.sqrt(2 / N))
    assert a["y"].std() == pytest.approx(1.0, abs=5 * math.sqrt(2 / N))
    corr = np.corrcoef(a["x"], a["y"])[0, 1]
    assert corr == pytest.approx(expected["corr"], abs=5 / math.sqrt(N))


@pytest.mark.parametrize("name", list(EXPECTED))
def test_toy_process_weights_are_norm_over_n(toy_dir, name):
    a = read(toy_dir / f"example_{name}.root")
    norm = EXPECTED[name]["norm"]
    np.testing.assert_allclose(a["weights"], norm / N, rtol=1e-6)
    assert a["weights"].sum(dtype=np.float64) == pytest.approx(norm, rel=1e-5)


@pytest.mark.parametrize("name", FILES)
def test_toy_event_numbers_are_unique_integers(toy_dir, name):
    event = read(toy_dir / name)["event"]
    assert np.issubdtype(event.dtype, np.integer)
    assert len(np.unique(event)) == len(event) == N
    # both folds of a 2-fold split are populated roughly equally
    assert abs(int((event % 2 == 0).sum()) - N // 2) <= 1


def test_toy_data_holds_n_times_norm_events_of_each_process_with_weight_one(toy_dir):
    a = read(toy_dir / "example_data.root")
    expected_total = sum(round(N * p.norm) for p in PROCESSES)
    assert len(a["x"]) == expected_total
    np.testing.assert_array_equal(a["weights"], 1.0)
    # Mixture mean: sum of norm_i * mean_i = 0.1*0 + 0.6*0.5 - 0.3*0.5 = 0.15.
    mix_mean = sum(v["norm"] * v["mean"][0] for v in EXPECTED.values())
    assert mix_mean == pytest.approx(0.15)
    assert a["x"].mean() == pytest.approx(mix_mean, abs=5 * 1.1 / math.sqrt(expected_total))
    assert a["y"].mean() == pytest.approx(mix_mean, abs=5 * 1.1 / math.sqrt(expected_total))


def _phi(z: float) -> float:
    return 0.5 * (1 + math.erf(z / math.sqrt(2)))


def test_toy_data_distribution_matches_the_weighted_mixture(toy_dir):
    """Chi2 of data binned along x+y (where signal and backgrounds differ most) against
    the analytic mixture 0.1 S + 0.6 B1 + 0.3 B2; a data file of one process fails."""
    a = read(toy_dir / "example_data.root")
    u = (a["x"].astype(np.float64) + a["y"]) / math.sqrt(2)
    edges = np.linspace(-3, 3, 13)
    counts, _ = np.histogram(u, bins=edges)
    n = len(u)
    expected = np.zeros(len(edges) - 1)
    for v in EXPECTED.values():
        mu = (v["mean"][0] + v["mean"][1]) / math.sqrt(2)
        sigma = math.sqrt(1 + v["corr"])  # var((x+y)/sqrt2) = 1 + corr
        cdf = np.array([_phi((e - mu) / sigma) for e in edges])
        expected += n * v["norm"] * np.diff(cdf)
    chi2 = float((((counts - expected) ** 2) / expected).sum())
    assert chi2 < 45, f"chi2 {chi2:.1f} for {len(counts)} bins"


def test_toy_with_same_seed_is_reproducible_and_other_seed_differs(tmp_path):
    first = write_toy_dataset(tmp_path / "a", events=200, seed=7)
    second = write_toy_dataset(tmp_path / "b", events=200, seed=7)
    third = write_toy_dataset(tmp_path / "c", events=200, seed=8)
    for p1, p2, p3 in zip(first, second, third):
        a1, a2, a3 = read(p1), read(p2), read(p3)
        for branch in ("x", "y", "weights", "event"):
            np.testing.assert_array_equal(a1[branch], a2[branch])
        assert not np.array_equal(a1["x"], a3["x"])


def test_toy_events_option_sets_events_per_process(tmp_path):
    paths = write_toy_dataset(tmp_path, events=500, seed=1)
    sizes = {p.name: len(read(p)["x"]) for p in paths}
    assert sizes == {name: 500 for name in FILES}
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(FILES)


def test_toy_refuses_non_positive_events_and_writes_nothing(tmp_path):
    with pytest.raises(HttTmvaError, match="positive"):
        write_toy_dataset(tmp_path / "toy", events=0)
    assert not (tmp_path / "toy").exists()
