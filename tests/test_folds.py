"""The fold rule: which model scores which events, and the fold expression in C++."""

from __future__ import annotations

import numpy as np
import pytest

from htt_tmva.data.folds import check_never_seen, fold_expression, model_for_fold, scored_fold
from htt_tmva.errors import FoldLeakError


@pytest.mark.parametrize("k", [2, 3, 5])
def test_every_fold_is_scored_by_exactly_one_model_that_never_saw_it(k):
    scorers = {scored_fold(model, k): model for model in range(k)}
    assert sorted(scorers) == list(range(k))
    for fold, model in scorers.items():
        assert model != fold
        assert model_for_fold(fold, k) == model
        check_never_seen(f"model{model}", [model], fold, k)
        with pytest.raises(FoldLeakError, match=f"scored by the model of fold {model}"):
            check_never_seen(f"model{fold}", [fold], fold, k)


def test_classic_two_folds_even_model_scores_odd_events():
    assert scored_fold(0, 2) == 1 and scored_fold(1, 2) == 0


@pytest.mark.parametrize(
    ("column_type", "values"),
    [
        ("ULong64_t", [0, 1, 2**63 + 1, 2**64 - 1, 12345678901234567]),
        ("Long64_t", [0, 1, 7, -1, -5, 2**62 + 3]),
        ("Float_t", [0.0, 1.0, 2.0**24, 3.0]),
    ],
)
def test_fold_expression_matches_python_modulo(column_type, values):
    from htt_tmva._root import root

    ROOT = root()
    dtype = {"ULong64_t": np.uint64, "Long64_t": np.int64, "Float_t": np.float32}[column_type]
    events = np.array(values, dtype=dtype)
    df = ROOT.RDF.FromNumpy({"event": events})
    assert str(df.GetColumnType("event")) in (column_type, column_type.replace("_t", "").lower())
    folds = df.Define("fold", fold_expression("event", 3, column_type)).AsNumpy(["fold"])["fold"]
    expected = [int(v) % 3 for v in values]
    assert list(folds) == expected
