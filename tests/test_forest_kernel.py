"""The compiled BDT kernels give exactly the numpy traversal's sums (tree order, in double)."""

from __future__ import annotations

import numpy as np
import pytest

from htt_tmva.engines import _forest_kernel
from htt_tmva.engines.forest import _numpy_sums


def _random_forest(depth: int, n_trees: int, n_var: int, outputs: int, rng):
    """Padded complete trees as Forest.padded gives them: some nodes are padding (cut NaN,
    every event left, the leaf value repeated below), some leaves NaN."""
    n_inner, n_leaf = (1 << depth) - 1, 1 << depth
    feat = rng.integers(0, n_var, (n_trees, n_inner)).astype(np.int32)
    cut = rng.normal(size=(n_trees, n_inner)).astype(np.float32)
    cut[rng.random(cut.shape) < 0.1] = 0.0  # exact ties with the inputs' zeros: x >= cut is right
    leaf = rng.normal(size=(n_trees, n_leaf))
    for t in range(0, n_trees, 3):  # a pruned subtree: its node sends all left, one value below
        level = int(rng.integers(0, depth))
        node = (1 << level) - 1 + int(rng.integers(0, 1 << level))
        first, width = node, 1
        while first < n_inner:
            cut[t, first : first + width] = np.nan
            first, width = 2 * first + 1, 2 * width
        leaf[t, first - n_inner : first - n_inner + width] = leaf[t, first - n_inner]
    leaf[rng.random(leaf.shape) < 0.002] = np.nan
    leaf[-1, -1] = np.nan  # reached by some events only
    cut[-1, :] = np.where(np.isnan(cut[-1, :]), 0.5, cut[-1, :])
    tree_out = (np.arange(n_trees) % outputs).astype(np.int32)
    return feat, cut, leaf, tree_out


def _inputs(n: int, n_var: int, rng) -> np.ndarray:
    x = rng.normal(size=(n, n_var)).astype(np.float32)
    x[rng.random(x.shape) < 0.03] = np.nan  # NaN goes left (false >= cut)
    x[rng.random(x.shape) < 0.05] = 0.0
    x[::50, 0] = np.inf
    x[1::50, 1] = -np.inf
    return x


@pytest.fixture(scope="module")
def kernels(tmp_path_factory) -> dict:
    """Every kernel this machine can build: native (-march=native), native without AVX-512
    (the portable vector selects where AVX2 is there), ROOT's interpreter (it walks)."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("HTT_TMVA_CACHE", str(tmp_path_factory.mktemp("cache")))
        built = {
            "native": _forest_kernel.native_kernel(),
            "no-avx512": _forest_kernel.native_kernel(["-mno-avx512f"]),  # as on AVX2 CPUs
            "cling": _forest_kernel.cling_kernel(),
        }
    built = {name: kernel for name, kernel in built.items() if kernel is not None}
    if not built:
        pytest.skip("no C++ compiler and no ROOT: no compiled kernel to check")
    return built


@pytest.mark.parametrize("depth", [1, 2, 3, 4, 5, 7])
def test_every_kernel_gives_exactly_the_numpy_tree_order_sums(kernels, depth):
    rng = np.random.default_rng(depth)
    n_var, outputs = 5, 3  # multiclass: tree t adds to output t % 3
    n_trees = 61 if depth < 7 else 13
    feat, cut, leaf, tree_out = _random_forest(depth, n_trees, n_var, outputs, rng)
    x = _inputs(1000 + 7, n_var, rng)  # blocks of 256 events and a partial one
    expected = _numpy_sums(x, depth, feat, cut, leaf, outputs)
    assert np.isnan(expected).any() and not np.isnan(expected).all()
    for kernel in kernels.values():
        for events in (x, x[:5]):  # fewer events than one vector
            got = _forest_kernel.compiled_sums(
                events, depth, feat, cut, leaf, tree_out, outputs, function=kernel
            )
            # bit for bit (NaN where numpy has NaN), whatever the kernel
            np.testing.assert_array_equal(got, expected[: len(events)], err_msg=kernel.name)


def test_numpy_sums_add_the_trees_in_order_as_tmva(tmp_path):
    """TMVA adds tree after tree in double; numpy's pairwise sum would round differently."""
    rng = np.random.default_rng(3)
    feat, cut, leaf, tree_out = _random_forest(3, 300, 2, 1, rng)
    leaf = leaf * 10.0 ** rng.integers(-8, 8, leaf.shape)  # magnitudes that make order matter
    leaf[np.isnan(leaf)] = 0.0
    x = _inputs(500, 2, rng)
    got = _numpy_sums(x, 3, feat, cut, leaf, 1)[:, 0]
    rows = np.arange(len(feat))
    index = np.zeros((len(x), len(feat)), dtype=np.intp)
    for _ in range(3):
        value = np.take_along_axis(x, feat[rows, index], axis=1)
        index = 2 * index + 1 + (value >= cut[rows, index])
    values = leaf[rows, index - 7]
    expected = np.zeros(len(x))
    for t in range(len(feat)):  # in tree order, one tree at a time
        expected += values[:, t]
    np.testing.assert_array_equal(got, expected)
    assert not np.array_equal(values.sum(axis=1), expected)  # the order does matter here


def test_kernel_is_built_once_and_cached_by_content(tmp_path, monkeypatch):
    monkeypatch.setenv("HTT_TMVA_CACHE", str(tmp_path / "cache"))
    library = _forest_kernel.build_library()
    if library is None:
        pytest.skip("no C++ compiler")
    built = library.stat().st_mtime_ns
    assert _forest_kernel.build_library() == library
    assert library.stat().st_mtime_ns == built
    assert library.parent.parent == tmp_path / "cache"
    other = _forest_kernel.build_library(("-DHTT_FOREST_SELECT_DEPTH=2",))
    assert other is not None and other != library


def test_a_compiler_that_fails_leaves_no_library_and_falls_back(tmp_path, monkeypatch, caplog):
    monkeypatch.setenv("HTT_TMVA_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("CXX", "false")  # a "compiler" that always fails
    assert _forest_kernel.native_kernel() is None
    assert "compiling the BDT kernel failed" in caplog.text
    assert not list((tmp_path / "cache").rglob("*.so"))
