"""The trees of a trained XGBoost booster as plain arrays, read from its JSON model.

Only what evaluation needs: per node its children, split feature, float32 threshold,
missing-value direction and value; per tree its class; per class the base margin.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Optional

import numpy as np

from htt_tmva.errors import ModelError


@dataclass
class XgbTree:
    """One regression tree; node 0 is the root, a leaf has ``left[i] == -1``."""

    klass: int
    left: np.ndarray
    right: np.ndarray
    feature: np.ndarray
    threshold: np.ndarray  # float32: the split condition of a node, the value of a leaf
    default_left: np.ndarray
    weight: np.ndarray  # float32: XGBoost's node weight (its value, had it been a leaf)

    def is_leaf(self, node: int) -> bool:
        return self.left[node] == -1


@dataclass
class XgbForest:
    """The trees of a multiclass softmax booster, in boosting order (round by round, class
    by class), and the base margin of each class."""

    trees: list[XgbTree]
    base_margin: np.ndarray  # float32, one per class
    n_classes: int
    n_features: int
    rounds: int


def _floats(text: str) -> list[float]:
    """``'5E-1'`` or ``'[-2E-2,2.6E-2]'`` (XGBoost >= 3.1 keeps one intercept per class)."""
    return [float(v) for v in str(text).strip("[]").split(",") if v.strip()]


def read_forest(booster, best_iteration: Optional[int] = None, source: str = "") -> XgbForest:
    """The trees a prediction uses (rounds up to ``best_iteration`` if early stopping kept
    fewer), refused unless the booster is a plain multiclass softmax gbtree."""
    from htt_tmva.engines.bdt import check_trees

    document = json.loads(bytes(booster.save_raw("json")))
    check_trees(document, source)
    learner = document["learner"]
    objective = learner["objective"]["name"]
    if objective not in ("multi:softprob", "multi:softmax"):
        raise ModelError(f"{source}: objective '{objective}' is not a multiclass softmax")
    booster_kind = learner["gradient_booster"]["name"]
    if booster_kind != "gbtree":
        raise ModelError(f"{source}: booster '{booster_kind}' is not gbtree")
    params = learner["learner_model_param"]
    n_classes = int(params["num_class"])
    base = _floats(params["base_score"])
    if len(base) not in (1, n_classes):
        raise ModelError(f"{source}: base_score {params['base_score']} fits no {n_classes} classes")
    base_margin = np.asarray(base * (n_classes if len(base) == 1 else 1), dtype=np.float32)
    model = learner["gradient_booster"]["model"]
    if int(model["gbtree_model_param"].get("num_parallel_tree", "1")) != 1:
        raise ModelError(f"{source}: forests of parallel trees (random forests) are not supported")
    trees = [_tree(t, c, source) for t, c in zip(model["trees"], model["tree_info"])]
    rounds = len(trees) // n_classes
    if best_iteration is not None:
        rounds = best_iteration + 1
        trees = trees[: rounds * n_classes]
    for i, tree in enumerate(trees):
        if tree.klass != i % n_classes:
            raise ModelError(
                f"{source}: tree {i} belongs to class {tree.klass}, not {i % n_classes}"
            )
    return XgbForest(trees, base_margin, n_classes, int(params["num_feature"]), rounds)


def _tree(doc: dict, klass: int, source: str) -> XgbTree:
    if any(int(t) != 0 for t in doc.get("split_type", [])):
        raise ModelError(f"{source}: categorical splits cannot be written as TMVA node cuts")
    return XgbTree(
        klass=int(klass),
        left=np.asarray(doc["left_children"], dtype=np.int64),
        right=np.asarray(doc["right_children"], dtype=np.int64),
        feature=np.asarray(doc["split_indices"], dtype=np.int64),
        threshold=np.asarray(doc["split_conditions"], dtype=np.float32),
        default_left=np.asarray(doc["default_left"], dtype=bool),
        weight=np.asarray(doc["base_weights"], dtype=np.float32),
    )
