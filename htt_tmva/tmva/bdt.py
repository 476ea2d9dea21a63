"""MethodBDT: AdaBoost (YesNo or purity leaves) and gradient boosting (binary and multiclass).

TMVA sends an event right at a node when ``x >= Cut`` (``cType="1"``) and left otherwise; a node
with ``cType="0"`` inverts that. Event values are floats (Float_t), so the comparison is made on
float32 inputs against the float cut. A node whose ``nType`` is not 0 is a leaf.

All trees are flattened into one set of node arrays (leaves point to themselves), and all events
walk all trees together, one level per numpy step: no Python loop over trees or events.
"""

from __future__ import annotations

import numpy as np

from htt_tmva.tmva._xml import Header, attr

_CHUNK = 4096  # events per block: keeps the (events x trees) index arrays in cache


class Forest:
    """All trees of a BDT as flat node arrays."""

    def __init__(self, header: Header):
        self.header = header
        trees = header.weights.findall("BinaryTree")
        if not trees:
            raise header.fail("BDT <Weights> holds no <BinaryTree>")
        self.boost_type = (header.option("BoostType") or "AdaBoost").strip()
        self.yes_no_leaf = (header.option("UseYesNoLeaf", "True") or "True").lower() == "true"
        weighted = header.option("UseWeightedTrees", "True") or "True"
        self.weighted_trees = weighted.lower() == "true"
        self.grad = self.boost_type == "Grad"
        features, cuts, inverted, left, right, values = [], [], [], [], [], []
        roots, boost_weights = [], []
        self.max_depth = 0
        for tree in trees:
            boost_weights.append(float(tree.get("boostWeight", "1")))
            root = tree.find("Node")
            if root is None:
                raise header.fail(f"tree {tree.get('itree', '?')} has no <Node>")
            roots.append(len(features))
            self._add_node(root, 0, features, cuts, inverted, left, right, values)
        self.features = np.asarray(features, dtype=np.intp)
        self.cuts = np.asarray(cuts, dtype=np.float32)
        self.inverted = np.asarray(inverted, dtype=bool)
        self.left = np.asarray(left, dtype=np.intp)
        self.right = np.asarray(right, dtype=np.intp)
        self.values = np.asarray(values, dtype=np.float64)
        self.roots = np.asarray(roots, dtype=np.intp)
        self.boost_weights = np.asarray(boost_weights, dtype=np.float64)
        n_var = len(header.variables)
        if self.features.size and self.features.max() >= n_var:
            raise header.fail(
                f"a node cuts on variable {self.features.max()}, the file has {n_var}"
            )

    def _leaf_value(self, node) -> float:
        header = self.header
        if self.grad:
            return attr(node, "res", header, float)
        if self.yes_no_leaf:
            return float(attr(node, "nType", header, int))
        return attr(node, "purity", header, float)

    def _add_node(self, node, depth, features, cuts, inverted, left, right, values) -> int:
        """Append a node and its subtree (iteratively) and return its index."""
        header = self.header
        stack = [(node, depth, None, None)]
        first = len(features)
        while stack:
            element, level, parent, side = stack.pop()
            index = len(features)
            if parent is not None:
                (left if side == "l" else right)[parent] = index
            self.max_depth = max(self.max_depth, level)
            children = {child.get("pos"): child for child in element.findall("Node")}
            node_type = int(float(element.get("nType", "0")))
            is_leaf = node_type != 0 or not children
            if is_leaf:
                features.append(0)
                cuts.append(np.nan)  # x >= NaN is False: a leaf keeps every event
                inverted.append(False)
                left.append(index)
                right.append(index)
                values.append(self._leaf_value(element))
                continue
            if int(float(element.get("NCoef", "0"))) > 0:
                raise header.fail(
                    "BDT nodes with Fisher cuts (UseFisherCuts=True) are not supported"
                )
            if "l" not in children or "r" not in children:
                raise header.fail(f"a BDT node at depth {level} lacks a left or right daughter")
            features.append(attr(element, "IVar", header, int))
            cuts.append(attr(element, "Cut", header, float))
            inverted.append(int(float(element.get("cType", "1"))) == 0)
            left.append(-1)
            right.append(-1)
            values.append(0.0)
            stack.append((children["r"], level + 1, index, "r"))
            stack.append((children["l"], level + 1, index, "l"))
        return first

    def leaf_values(self, x: np.ndarray) -> np.ndarray:
        """The leaf value of every tree for every event: shape (n_events, n_trees)."""
        n = len(x)
        out = np.empty((n, len(self.roots)), dtype=np.float64)
        n_var = x.shape[1]
        for start in range(0, n, _CHUNK):
            block = np.ascontiguousarray(x[start : start + _CHUNK], dtype=np.float32)
            rows = (np.arange(len(block), dtype=np.intp) * n_var)[:, None]
            flat = block.ravel()
            node = np.broadcast_to(self.roots, (len(block), len(self.roots))).copy()
            for _ in range(self.max_depth):
                value = flat[rows + self.features[node]]
                goes_right = (value >= self.cuts[node]) != self.inverted[node]
                node = np.where(goes_right, self.right[node], self.left[node])
            out[start : start + len(block)] = self.values[node]
        return out


class BdtMethod:
    """TMVA's MethodBDT response for classification and multiclass."""

    def __init__(self, header: Header):
        self.forest = Forest(header)
        self.n_classes = len(header.classes)
        self.multiclass = header.analysis_type.lower() == "multiclass"
        if self.multiclass and not self.forest.grad:
            raise header.fail(
                f"multiclass BDT with BoostType={self.forest.boost_type}: TMVA "
                "supports multiclass BDTs only with BoostType=Grad"
            )

    def evaluate(self, x: np.ndarray) -> np.ndarray:
        forest = self.forest
        leaves = forest.leaf_values(x)
        if self.multiclass:
            k = self.n_classes
            n_trees = leaves.shape[1]
            sums = np.stack([leaves[:, c:n_trees:k].sum(axis=1) for c in range(k)], axis=1)
            return multiclass_softmax(sums)
        if forest.grad:
            total = leaves.sum(axis=1)
            return 2.0 / (1.0 + np.exp(-2.0 * total)) - 1.0
        weights = forest.boost_weights if forest.weighted_trees else np.ones(leaves.shape[1])
        norm = weights.sum()
        with np.errstate(invalid="ignore"):
            total = leaves @ weights if np.all(np.isfinite(weights)) else (leaves * weights).sum(1)
            if norm > np.finfo(np.float64).eps or not np.isfinite(norm):
                return total / norm
        return np.zeros(len(x))


def multiclass_softmax(outputs: np.ndarray) -> np.ndarray:
    """TMVA's multiclass normalisation: p_i = 1 / (1 + sum_{j != i} exp(o_j - o_i))."""
    with np.errstate(over="ignore"):
        diff = np.exp(outputs[:, None, :] - outputs[:, :, None])  # [n, i, j] = exp(o_j - o_i)
    k = outputs.shape[1]
    off_diagonal = ~np.eye(k, dtype=bool)
    norm = (diff * off_diagonal).sum(axis=2)
    return (1.0 / (1.0 + norm)).astype(np.float32).astype(np.float64)
