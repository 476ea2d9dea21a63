"""MethodBDT: AdaBoost (YesNo or purity leaves) and gradient boosting (binary and multiclass).

TMVA sends an event right at a node when ``x >= Cut`` (``cType="1"``) and left otherwise; a node
with ``cType="0"`` inverts that (so NaN, for which ``x >= Cut`` is false, goes left at cType=1
and right at cType=0 nodes). Event values are floats (Float_t), so the comparison is made on
float32 inputs against the float cut. A node whose ``nType`` is not 0 is a leaf. The trees are
read into a :class:`htt_tmva.engines.forest.Forest`, which walks them.
"""

from __future__ import annotations

import numpy as np

from htt_tmva.engines.forest import Forest
from htt_tmva.tmva._xml import Header, attr


class TmvaForest(Forest):
    """All trees of a BDT weight file as flat node arrays."""

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


class BdtMethod:
    """TMVA's MethodBDT response for classification and multiclass."""

    def __init__(self, header: Header):
        self.forest = TmvaForest(header)
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
