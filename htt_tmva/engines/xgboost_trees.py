"""The trees of a trained XGBoost booster as plain arrays, read from its JSON model.

Only what evaluation needs: per node its children, split feature, float32 threshold,
missing-value direction and value; per tree its class; per class the base margin.
:meth:`XgbForest.probabilities` evaluates them without XGBoost (the tree walk of
:mod:`htt_tmva.engines.forest`, compiled for large batches) for finite inputs.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Optional

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
    _walker: Any = field(default=None, repr=False, compare=False)

    def probabilities(self, x: np.ndarray) -> np.ndarray:
        """``multi:softprob``'s class probabilities (float32) of finite float32 inputs: the
        softmax of the base margin plus the leaf values of each class's trees (summed in
        double, in tree order; XGBoost sums in float, so the two agree to float precision).
        NaN, which XGBoost sends the way of each node's ``default_left``, is refused."""
        x = np.asarray(x, dtype=np.float32)
        if x.ndim != 2 or x.shape[1] != self.n_features:
            raise ModelError(
                f"the trees take {self.n_features} variables, got inputs of shape {x.shape}"
            )
        if not np.isfinite(x).all():
            raise ValueError("the tree walk takes finite inputs only")
        z = self.walker().sums(x, self.n_classes) + self.base_margin.astype(np.float64)
        z -= z.max(axis=1, keepdims=True)
        np.exp(z, out=z)
        z /= z.sum(axis=1, keepdims=True)
        return z.astype(np.float32)

    def walker(self):
        """The trees as one :class:`htt_tmva.engines.forest.Forest` (flat node arrays, a leaf
        pointing to itself), built once."""
        if self._walker is None:
            from htt_tmva.engines.forest import Forest

            sizes = np.array([len(t.left) for t in self.trees], dtype=np.intp)
            roots = np.concatenate([[0], np.cumsum(sizes)[:-1]]).astype(np.intp)
            parts: dict[str, list] = {k: [] for k in ("f", "c", "l", "r", "v")}
            for tree, root in zip(self.trees, roots):
                leaf = tree.left == -1
                own = np.arange(len(leaf)) + root
                parts["f"].append(np.where(leaf, 0, tree.feature))
                parts["c"].append(np.where(leaf, np.float32(np.nan), tree.threshold))
                parts["l"].append(np.where(leaf, own, tree.left + root))
                parts["r"].append(np.where(leaf, own, tree.right + root))
                parts["v"].append(np.where(leaf, tree.threshold.astype(np.float64), 0.0))
            arrays = [np.concatenate(parts[k]) for k in "fclrv"]
            self._walker = Forest.from_nodes(*arrays, roots)
        return self._walker


#: deeper trees are refused (XGBoost's depth-wise trees are far shallower)
MAX_TREE_DEPTH = 256


def check_trees(document: dict, source: str) -> None:
    """Refuse (ModelError naming ``source``) trees that XGBoost loads without a check but that
    would make a walk read out of bounds or loop: children outside the tree, a node reached
    twice (a cycle), a split feature the model does not have, a tree deeper than
    MAX_TREE_DEPTH, a tree of a class that does not exist."""
    try:
        learner = document["learner"]
        n_features = int(learner["learner_model_param"]["num_feature"])
        n_classes = max(int(learner["learner_model_param"]["num_class"]), 1)
        model = learner["gradient_booster"]["model"]
        trees, classes = model["trees"], model["tree_info"]
        if len(classes) != len(trees):
            raise ValueError(f"{len(trees)} trees but {len(classes)} tree_info entries")
        for index, (tree, klass) in enumerate(zip(trees, classes)):
            if not 0 <= int(klass) < n_classes:
                raise ValueError(f"tree {index} is of class {klass}, not one of {n_classes}")
            _check_tree(tree, n_features, index)
    except (KeyError, TypeError, ValueError) as exc:
        raise ModelError(f"{source}: not a valid XGBoost tree model ({exc})") from None


def _check_tree(tree: dict, n_features: int, index: int) -> None:
    left, right = tree["left_children"], tree["right_children"]
    feature = tree["split_indices"]
    n = len(left)
    lengths = {len(tree[k]) for k in ("right_children", "split_indices", "split_conditions")}
    lengths.add(len(tree["default_left"]))
    if n == 0 or lengths != {n}:
        raise ValueError(f"tree {index} has node arrays of different lengths or none")
    seen = [False] * n
    seen[0] = True
    level, depth = [0], 0
    while level:
        below = []
        for node in level:
            a, b = int(left[node]), int(right[node])
            if a == -1 and b == -1:
                continue
            if not (0 < a < n and 0 < b < n):
                raise ValueError(f"tree {index}, node {node}: children {a}, {b} outside 1..{n - 1}")
            if not 0 <= int(feature[node]) < n_features:
                raise ValueError(
                    f"tree {index}, node {node}: split feature {feature[node]} outside "
                    f"0..{n_features - 1}"
                )
            for child in (a, b):
                if seen[child]:
                    raise ValueError(f"tree {index}: node {child} is reached twice (a cycle)")
                seen[child] = True
            below += [a, b]
        level = below
        depth += 1 if below else 0
        if depth > MAX_TREE_DEPTH:
            raise ValueError(f"tree {index} is deeper than {MAX_TREE_DEPTH} levels")


def _floats(text: str) -> list[float]:
    """``'5E-1'`` or ``'[-2E-2,2.6E-2]'`` (XGBoost >= 3.1 keeps one intercept per class)."""
    return [float(v) for v in str(text).strip("[]").split(",") if v.strip()]


def read_forest(booster, best_iteration: Optional[int] = None, source: str = "") -> XgbForest:
    """The trees a prediction uses (rounds up to ``best_iteration`` if early stopping kept
    fewer), refused unless the booster is a plain multiclass softmax gbtree."""
    document = json.loads(bytes(booster.save_raw("json")))
    return forest_from_document(document, best_iteration, source)


def forest_from_document(
    document: dict, best_iteration: Optional[int] = None, source: str = ""
) -> XgbForest:
    """:func:`read_forest` of XGBoost's JSON model document (``save_raw("json")``)."""
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
