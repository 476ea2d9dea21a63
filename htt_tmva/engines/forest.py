"""A forest of binary trees as flat node arrays, walked without a Python loop over trees or
events: TMVA's BDTs (:mod:`htt_tmva.tmva.bdt`) and XGBoost's trees
(:mod:`htt_tmva.engines.xgboost_trees`).

The trees are flattened into complete (padded) trees in heap order; all events walk all trees
one level at a time -- with numpy (a block of events, all trees per step) or, for large batches,
with a small compiled kernel (:mod:`htt_tmva.engines._forest_kernel`). Trees too deep to pad are
walked on their node arrays with numpy. Every path adds the leaf values of an event in tree
order, in double, as TMVA does, so all give the same sums to the last bit. An event goes right
at a node when ``x >= cut`` (float32 inputs against the float cut), left otherwise; an
``inverted`` node swaps that (NaN, for which ``x >= cut`` is false, then goes right).
"""

from __future__ import annotations

import numpy as np

from htt_tmva.engines import _forest_kernel

_CHUNK = 2048  # events per numpy block: keeps the (events x trees) arrays in cache
_MAX_PADDED_LEAVES = 1 << 25  # beyond this many padded leaves, trees are walked unpadded


class Forest:
    """All trees of a forest as flat node arrays (a leaf points to itself)."""

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
