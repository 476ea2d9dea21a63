"""Preprocessing: each kind fitted on known data, JSON round trip, classic pickles."""

from __future__ import annotations

import logging
import pickle

import numpy as np
import pytest

from htt_tmva.engines.dense import DenseNetwork
from htt_tmva.engines.preprocessing import Preprocessing, load_preprocessing
from htt_tmva.errors import ModelError

X = np.array([[1.0, 10.0], [2.0, 10.0], [3.0, 10.0], [4.0, 10.0], [5.0, 10.0]])


def test_standard_scaling_centres_and_scales_and_keeps_constant_columns():
    pre = Preprocessing.fit("standard", X, ["a", "b"])
    z = pre.transform(X)
    np.testing.assert_allclose(z[:, 0], (X[:, 0] - 3.0) / np.sqrt(2.0), rtol=1e-6)
    np.testing.assert_allclose(z[:, 1], 0.0)  # zero spread: scale 1, no division by zero
    assert z.dtype == np.float32


@pytest.mark.parametrize(
    ("kind", "expected"),
    [
        ("identity", X[:, 0]),
        ("minmax", [0.0, 0.25, 0.5, 0.75, 1.0]),
        ("robust", [-1.0, -0.5, 0.0, 0.5, 1.0]),
        ("quantile", [0.0, 0.25, 0.5, 0.75, 1.0]),
    ],
)
def test_each_kind_gives_the_known_transform(kind, expected):
    pre = Preprocessing.fit(kind, X, ["a", "b"])
    np.testing.assert_allclose(pre.transform(X)[:, 0], expected, atol=1e-6)


@pytest.mark.parametrize("kind", ["standard", "minmax", "robust", "quantile"])
def test_json_round_trip_gives_the_same_transform(kind, tmp_path):
    pre = Preprocessing.fit(kind, X, ["a", "b"])
    loaded = load_preprocessing(pre.to_json(tmp_path / "pre.json"), ["a", "b"])
    np.testing.assert_array_equal(loaded.transform(X), pre.transform(X))


def test_json_with_other_variable_order_is_refused(tmp_path):
    path = Preprocessing.fit("standard", X, ["a", "b"]).to_json(tmp_path / "pre.json")
    with pytest.raises(ModelError, match="fitted on variables \\['a', 'b'\\].*order"):
        load_preprocessing(path, ["b", "a"])


def test_classic_pickle_matches_and_loading_warns(tmp_path, caplog):
    pre = Preprocessing.fit("standard", X, ["a", "b"])
    path = pre.to_pickle(tmp_path / "fold0_keras_preprocessing.pickle")
    with open(path, "rb") as f:
        scaler = pickle.load(f)
    np.testing.assert_allclose(scaler.transform(X), pre.transform(X), rtol=1e-6)
    with caplog.at_level(logging.WARNING):
        loaded = load_preprocessing(path, ["a", "b"])
    assert "pickles run code" in caplog.text
    np.testing.assert_allclose(loaded.transform(X), pre.transform(X), rtol=1e-6)
    with pytest.raises(ModelError, match="expects 2 variables"):
        load_preprocessing(path, ["a", "b", "c"])


def test_dense_network_forward_pass_by_hand(tmp_path):
    w1, b1 = np.array([[1.0, -1.0]]), np.array([0.0, 0.5])
    w2, b2 = np.array([[1.0, 0.0], [0.0, 1.0]]), np.zeros(2)
    net = DenseNetwork([(w1, b1, "relu"), (w2, b2, "softmax")])
    out = DenseNetwork.load(net.save(tmp_path / "net.npz"))(np.array([[2.0], [-1.0]]))
    hidden = np.array([[2.0, 0.0], [0.0, 1.5]])
    expected = np.exp(hidden) / np.exp(hidden).sum(axis=1, keepdims=True)
    np.testing.assert_allclose(out, expected, rtol=1e-6)
    assert net.macs_per_event == 2 + 4
