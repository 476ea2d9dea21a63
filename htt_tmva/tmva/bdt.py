"""MethodBDT: AdaBoost (YesNo or purity leaves) and gradient boosting (binary and multiclass).

TMVA sends an event right at a node when ``x >= Cut`` (``cType="1"``) and left otherwise; a node
with ``cType="0"`` inverts that (so NaN, for which ``x >= Cut`` is false, goes left at cType=1
and right at cType=0 nodes). Event values are floats (Float_t), so the comparison is made on
float32 inputs against the float cut. A node whose ``nType`` is not 0 is a leaf.

The trees are flattened into complete (padded) trees in heap order; all events walk all trees
one level at a time -- with numpy (a block of events, all trees per step) or, for large batches,
with a small compiled kernel (:mod:`htt_tmva.tmva._forest_kernel`). No Python loop runs over
trees or events. Trees too deep to pad are walked on their node arrays with numpy. Every path
adds the leaf values of an event in tree order, in double, as TMVA does, so all give the same
sums to the last bit.
"""

from __future__ import annotations

import numpy as np

from htt_tmva.tmva import _forest_kernel
from htt_tmva.tmva._xml import Header, attr

_CHUNK = 2048  # events per numpy block: keeps the (events x trees) arrays in cache
_MAX_PADDED_LEAVES = 1 << 25  # beyond this many padded leaves, trees are walked unpadded


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
        self._padded = None
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
        if self.features.size and self.features.min() < 0:
            raise header.fail("a BDT node that is not a leaf has a negative IVar")
        if self.features.size and self.features.max() >= n_var:
            raise header.fail(
                f"a node cuts on variable {self.features.max()}, the file has {n_var}"
            )

    @classmethod
    def from_nodes(cls, features, cuts, left, right, values, roots) -> Forest:
        """Gradient-boosted trees (e.g. XGBoost's) from flat node arrays: every node sends
        ``x >= cut`` right, a leaf points to itself and holds its value in ``values``."""
        forest = cls.__new__(cls)
        forest.header, forest.boost_type, forest.grad = None, "Grad", True
        forest.yes_no_leaf, forest.weighted_trees = False, False
        forest.features = np.asarray(features, dtype=np.intp)
        forest.cuts = np.asarray(cuts, dtype=np.float32)
        forest.inverted = np.zeros(len(forest.features), dtype=bool)
        forest.left = np.asarray(left, dtype=np.intp)
        forest.right = np.asarray(right, dtype=np.intp)
        forest.values = np.asarray(values, dtype=np.float64)
        forest.roots = np.asarray(roots, dtype=np.intp)
        forest.boost_weights = np.ones(len(forest.roots))
        forest.max_depth, level = 0, forest.roots
        while True:  # all trees a level at a time
            inner = level[forest.left[level] != level]
            if not inner.size:
                break
            level = np.concatenate([forest.left[inner], forest.right[inner]])
            forest.max_depth += 1
        forest._padded = None
        return forest

    def _leaf_value(self, node) -> float:
        header = self.header
        if self.grad:
            return attr(node, "res", header, float)
        if self.yes_no_leaf:
            return float(attr(node, "nType", header, int))
        if node.get("purity") is None and node.get("nS") is not None:  # early TMVA 4 files
            signal = np.float32(attr(node, "nS", header, float))
            background = np.float32(attr(node, "nB", header, float))
            return float(signal / (signal + background))
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

    def padded(self, outputs: int) -> tuple:
        """Complete trees of depth ``max_depth`` in heap order (children of node k at 2k+1
        and 2k+2): a leaf above the bottom becomes a node that sends every event left (cut
        NaN) and its value fills the leaves below it; the daughters of cType=0 nodes are
        swapped. Leaf values are pre-multiplied by the boost weight for AdaBoost (as TMVA
        multiplies each tree's value)."""
        depth = max(self.max_depth, 1)
        n_inner, n_leaf = (1 << depth) - 1, 1 << depth
        n_trees = len(self.roots)
        feat = np.zeros((n_trees, n_inner), dtype=np.int32)
        cut = np.full((n_trees, n_inner), np.nan, dtype=np.float32)
        leaf = np.zeros((n_trees, n_leaf), dtype=np.float64)
        scale = np.ones(n_trees)
        if not self.grad and self.weighted_trees:
            scale = self.boost_weights
        for t, root in enumerate(self.roots):
            stack = [(int(root), 0)]
            while stack:
                node, slot = stack.pop()
                if self.left[node] == node:  # a leaf: fill every bottom slot below it
                    level = int(np.floor(np.log2(slot + 1)))
                    first = slot
                    for _ in range(depth - level):
                        first = 2 * first + 1
                    width = 1 << (depth - level)
                    with np.errstate(invalid="ignore"):
                        value = scale[t] * self.values[node]
                    leaf[t, first - n_inner : first - n_inner + width] = value
                    continue
                feat[t, slot] = self.features[node]
                cut[t, slot] = self.cuts[node]
                left, right = int(self.left[node]), int(self.right[node])
                if self.inverted[node]:
                    # cType=0 (right when NOT x >= cut): swap the daughters so that every
                    # node sends x >= cut right; NaN (x >= cut false) then still reaches
                    # TMVA's right daughter, as !false does in TMVA.
                    left, right = right, left
                stack.append((left, 2 * slot + 1))
                stack.append((right, 2 * slot + 2))
        tree_out = (np.arange(n_trees) % outputs).astype(np.int32)
        return depth, feat, cut, leaf, tree_out

    def sums(self, x: np.ndarray, outputs: int, compiled: bool | None = None) -> np.ndarray:
        """Per-event sums of (weighted) leaf values, trees assigned to the outputs in turn:
        shape (n_events, outputs)."""
        if len(self.roots) << max(self.max_depth, 1) > _MAX_PADDED_LEAVES:
            return self._general_sums(x, outputs)
        if self._padded is None or self._padded[0] != outputs:
            self._padded = (outputs, self.padded(outputs))
        depth, feat, cut, leaf, tree_out = self._padded[1]
        if compiled is None:
            compiled = len(x) >= _forest_kernel.MIN_EVENTS or _forest_kernel.ready()
        if compiled:
            out = _forest_kernel.compiled_sums(x, depth, feat, cut, leaf, tree_out, outputs)
            if out is not None:
                return out
        return _numpy_sums(x, depth, feat, cut, leaf, outputs)

    def _general_sums(self, x: np.ndarray, outputs: int) -> np.ndarray:
        """Deep trees that would not fit padded: walk the node arrays (leaves point to
        themselves), all trees and a block of events per numpy step."""
        n_trees = len(self.roots)
        scale = self.boost_weights if not self.grad and self.weighted_trees else np.ones(n_trees)
        out = np.empty((len(x), outputs), dtype=np.float64)
        n_var = x.shape[1]
        for start in range(0, len(x), _CHUNK):
            block = np.ascontiguousarray(x[start : start + _CHUNK], dtype=np.float32)
            rows = (np.arange(len(block), dtype=np.intp) * n_var)[:, None]
            flat = block.ravel()
            node = np.broadcast_to(self.roots, (len(block), n_trees)).copy()
            for _ in range(self.max_depth):
                value = flat[rows + self.features[node]]
                goes_right = (value >= self.cuts[node]) != self.inverted[node]
                node = np.where(goes_right, self.right[node], self.left[node])
            with np.errstate(invalid="ignore"):
                values = self.values[node] * scale
            out[start : start + len(block)] = _tree_order_sums(values, outputs)
        return out


def _numpy_sums(x, depth, feat, cut, leaf, outputs) -> np.ndarray:
    """All trees for a block of events at once, one numpy step per tree level."""
    n_trees, n_inner = feat.shape
    n_leaf = leaf.shape[1]
    inner_base = (np.arange(n_trees) * n_inner)[None, :]
    leaf_base = (np.arange(n_trees) * n_leaf - n_inner)[None, :]
    feat, cut, leaf = feat.ravel(), cut.ravel(), leaf.ravel()
    out = np.empty((len(x), outputs), dtype=np.float64)
    for start in range(0, len(x), _CHUNK):
        block = np.ascontiguousarray(x[start : start + _CHUNK], dtype=np.float32)
        index = np.zeros((len(block), n_trees), dtype=np.intp)
        for _ in range(depth):
            node = index + inner_base
            value = np.take_along_axis(block, feat[node], axis=1)
            index = 2 * index + 1 + (value >= cut[node])
        out[start : start + len(block)] = _tree_order_sums(leaf[index + leaf_base], outputs)
    return out


def _tree_order_sums(values: np.ndarray, outputs: int) -> np.ndarray:
    """Per-event sums of the trees' values (events x trees), tree t adding to output
    t % outputs, in tree order as TMVA (and the compiled kernel) adds them; numpy's ``sum``
    adds pairwise, which rounds differently. ``values`` is overwritten (running sums)."""
    sums = np.zeros((len(values), outputs), dtype=np.float64)
    for o in range(min(outputs, values.shape[1])):
        trees = values[:, o::outputs]
        with np.errstate(invalid="ignore"):
            np.cumsum(trees, axis=1, out=trees)
        sums[:, o] = trees[:, -1]
    return sums


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

    def evaluate(self, x: np.ndarray, compiled: bool | None = None) -> np.ndarray:
        forest = self.forest
        if self.multiclass:
            return multiclass_softmax(forest.sums(x, self.n_classes, compiled))
        total = forest.sums(x, 1, compiled)[:, 0]
        if forest.grad:
            return 2.0 / (1.0 + np.exp(-2.0 * total)) - 1.0
        # summed in tree order, as TMVA adds the boost weights
        norm = np.cumsum(forest.boost_weights)[-1] if forest.weighted_trees else len(forest.roots)
        if norm > np.finfo(np.float64).eps or np.isnan(norm):
            with np.errstate(invalid="ignore"):
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
