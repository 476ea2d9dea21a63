"""An XGBoost multiclass booster written as a TMVA BDTG weight file (TMVA 4.2.1 layout).

What ``TMVA::Reader::BookMVA`` reads, section by section as ``MethodBase::WriteStateToXML``
writes it: GeneralInfo, Options, Variables, Spectators, Classes, Transformations, MVAPdfs,
Weights. The Weights are TMVA's gradient-boost forest (``MethodBDT::AddWeightsXMLTo``):
regression trees (``AnalysisType="1"``, so ``DecisionTree::CheckEvent`` returns the leaf's
``res``), one tree per class per boosting round, taken in turn: tree ``i`` belongs to class
``i % n_classes``.

How the two models meet (MethodBDT::GetMulticlassValues, TMVA 4.2.1 / ROOT 6.40):

* TMVA sums, per class c, ``res`` of the leaves reached in trees c, c+K, c+2K, ... and returns
  ``1 / (1 + sum_{j != c} exp(F_j - F_c))`` = ``exp(F_c) / sum_j exp(F_j)``, the softmax.
  XGBoost's ``multi:softprob`` returns the softmax of ``base_margin_c + sum of leaves``. Its
  base margin differs per class (XGBoost >= 3.1 fits one intercept per class), so it cannot
  be dropped: it is written as one extra round of single-leaf trees, first, whose ``res`` is
  the base margin of their class. The softmax then sees the same margins.
* Leaf values are float32 in XGBoost and ``Float_t`` in TMVA (``DecisionTreeNode::fResponse``);
  they are written with 17 significant digits and read back bit-exact.
"""

from __future__ import annotations

import os
import platform
import time
from collections.abc import Sequence
from dataclasses import dataclass
from xml.sax.saxutils import quoteattr

import numpy as np

from htt_tmva.engines.xgboost_trees import XgbForest, XgbTree

TMVA_RELEASE = "4.2.1 [262657]"  # the layout written; TMVA 4.2.1 reads it (ROOT 6.x)
ROOT_RELEASE = "6.40/00 [403456]"
METHOD = "BDT::BDTG"


@dataclass
class VariableRange:
    """A variable's name (its TMVA expression) and the range TMVA records for it."""

    expression: str
    minimum: float
    maximum: float


def internal_name(expression: str) -> str:
    """TMVA's internal name of an expression (``Tools::ReplaceRegularExpressions(e, "_")``)."""
    name = expression
    for char in "$!%^&()'<>?= ":
        name = name.replace(char, "_")
    for old, new in (("::", "_"), ("*", "_T_"), ("/", "_D_"), ("+", "_P_"), ("-", "_M_")):
        name = name.replace(old, new)
    return name.replace("[", "_").replace("]", "_")


def _real(value: float) -> str:
    """A number as gTools().AddAttr writes it: scientific, 16 decimals."""
    return f"{float(value):.16e}"


def _attrs(pairs: Sequence[tuple[str, object]]) -> str:
    return " ".join(f"{k}={quoteattr(str(v))}" for k, v in pairs)


def _general_info(n_events: int, training_seconds: float) -> list[str]:
    info = [
        ("TMVA Release", TMVA_RELEASE),
        ("ROOT Release", ROOT_RELEASE),
        ("Creator", "htt-tmva export (from XGBoost)"),
        ("Date", time.strftime("%a %b %d %H:%M:%S %Y")),
        ("Host", " ".join(platform.uname())),
        ("Dir", os.getcwd()),
        ("Training events", n_events),
        ("TrainingTime", f"{training_seconds:.8e}"),
        ("AnalysisType", "Multiclass"),
    ]
    return [f"    <Info {_attrs([('name', k), ('value', v)])}/>" for k, v in info]


def _options(options: dict) -> list[str]:
    """The options block of a TMVA 4.2.1 BDT, with the values of our booking."""
    e = "{:e}".format
    rows = [
        ("V", "False", False),
        ("VerbosityLevel", "Default", False),
        ("VarTransform", "None", False),
        ("H", "False", True),
        ("CreateMVAPdfs", "False", False),
        ("IgnoreNegWeightsInTraining", "False", False),
        ("NTrees", options["NTrees"], True),
        ("MaxDepth", options["MaxDepth"], True),
        ("MinNodeSize", "5%", False),
        ("nCuts", options["nCuts"], True),
        ("BoostType", "Grad", True),
        ("AdaBoostR2Loss", "quadratic", False),
        ("UseBaggedBoost", str(bool(options["UseBaggedBoost"])), True),
        ("Shrinkage", e(options["Shrinkage"]), True),
        ("AdaBoostBeta", e(0.5), False),
        ("UseRandomisedTrees", "False", False),
        ("UseNvars", 2, False),
        ("UsePoissonNvars", "True", False),
        ("BaggedSampleFraction", e(options["BaggedSampleFraction"]), True),
        ("UseYesNoLeaf", "True", False),
        # XGBoost takes no negative weights: the training gave them weight 0
        ("NegWeightTreatment", "ignorenegweightsintraining", True),
        ("Css", e(1), False),
        ("Cts_sb", e(1), False),
        ("Ctb_ss", e(1), False),
        ("Cbb", e(1), False),
        ("NodePurityLimit", e(0.5), False),
        ("SeparationType", "giniindex", False),
        ("RegressionLossFunctionBDTG", "huber", False),
        ("HuberQuantile", e(0.7), False),
        ("DoBoostMonitor", "False", False),
        ("UseFisherCuts", "False", False),
        ("MinLinCorrForFisher", e(0.8), False),
        ("UseExclusiveVars", "False", False),
        ("DoPreselection", "False", False),
        ("SigToBkgFraction", e(1), False),
        ("PruneMethod", "nopruning", False),
        ("PruneStrength", e(0), False),
        ("PruningValFraction", e(0.5), False),
        ("SkipNormalization", "False", False),
        ("nEventsMin", 0, False),
        ("UseBaggedGrad", "False", False),
        ("GradBaggingFraction", e(0.5), False),
        ("UseNTrainEvents", 0, False),
        ("NNodesMax", 0, False),
    ]
    return [
        f'    <Option name="{name}" modified="{"Yes" if modified else "No"}">{value}</Option>'
        for name, value, modified in rows
    ]


def _variables(variables: Sequence[VariableRange]) -> list[str]:
    lines = [f'  <Variables NVar="{len(variables)}">']
    for index, v in enumerate(variables):
        attrs = [
            ("VarIndex", index),
            ("Expression", v.expression),
            ("Label", v.expression),
            ("Title", v.expression),
            ("Unit", ""),
            ("Internal", internal_name(v.expression)),
            ("Type", "F"),
            ("Min", f"{v.minimum:.8e}"),
            ("Max", f"{v.maximum:.8e}"),
        ]
        lines.append(f"    <Variable {_attrs(attrs)}/>")
    lines.append("  </Variables>")
    return lines


def _classes(classes: Sequence[str]) -> list[str]:
    lines = [f'  <Classes NClass="{len(classes)}">']
    lines += [f"    <Class {_attrs([('Name', c), ('Index', i)])}/>" for i, c in enumerate(classes)]
    lines.append("  </Classes>")
    return lines


def _node(pos: str, depth: int, ivar: int, cut: float, response: float, leaf: bool) -> str:
    """One ``<Node>`` with DecisionTreeNode::AddAttributesToNode's attributes, in its order.

    ``purity`` and ``rms`` are training bookkeeping TMVA does not use to evaluate a Grad
    forest (CheckEvent of a regression tree returns ``res``); XGBoost keeps no class purity
    per node, so 0.5 and 0 are written. ``nType`` is 0 for a cut node and +-1 for a leaf
    (CheckEvent descends while nType == 0).
    """
    node_type = (1 if response >= 0 else -1) if leaf else 0
    attrs = [
        ("pos", pos),
        ("depth", depth),
        ("NCoef", 0),
        ("IVar", ivar),
        ("Cut", _real(cut)),
        ("cType", 1),
        ("res", _real(response)),
        ("rms", _real(0.0)),
        ("purity", _real(0.5)),
        ("nType", node_type),
    ]
    return f"<Node {_attrs(attrs)}"


def _tree_nodes(tree: XgbTree, node: int, pos: str, depth: int, lines: list[str]) -> None:
    indent = "      " + "  " * depth
    if tree.is_leaf(node):
        value = tree.threshold[node]  # a leaf's split_condition is its value
        lines.append(f"{indent}{_node(pos, depth, -1, 0.0, value, True)}/>")
        return
    # The split rule. XGBoost sends x to its left ("yes") child when x < threshold, else to
    # its right ("no") child, both as float32. TMVA's DecisionTreeNode::GoesRight is
    # `Float_t value >= Float_t cut` for cType=1 (the Reader hands the method Float_t values,
    # and Cut is read into a Float_t). With Cut = the float32 threshold written bit-exact,
    # cType=1, left = XGBoost's "yes" child and right = its "no" child, every finite input
    # takes the same path in both (XGBoost refuses infinite inputs; TMVA sends +inf right and
    # -inf left, as the comparison says).
    # Missing values (NaN) do not map: XGBoost sends them to its default child, which is the
    # right one wherever the training data had no missing values (default_left = 0); TMVA's
    # `NaN >= cut` is false, so TMVA always sends NaN left. htt-tmva never scores NaN inputs
    # (testing and application refuse them), and the export logs how many nodes differ.
    feature, cut = int(tree.feature[node]), tree.threshold[node]
    lines.append(f"{indent}{_node(pos, depth, feature, cut, tree.weight[node], False)}>")
    _tree_nodes(tree, int(tree.left[node]), "l", depth + 1, lines)
    _tree_nodes(tree, int(tree.right[node]), "r", depth + 1, lines)
    lines.append(f"{indent}</Node>")


def _binary_tree(itree: int, body: list[str]) -> list[str]:
    # Grad trees all carry boost weight 1 (MethodBDT::GradBoost); the multiclass response
    # does not use it.
    head = f'    <BinaryTree type="DecisionTree" boostWeight="{_real(1.0)}" itree="{itree}">'
    return [head, *body, "    </BinaryTree>"]


def _weights(forest: XgbForest) -> list[str]:
    n_trees = (forest.rounds + 1) * forest.n_classes
    lines = [f'  <Weights NTrees="{n_trees}" AnalysisType="1">']
    itree = 0
    for klass in range(forest.n_classes):  # round 0: the base margin of each class
        base = forest.base_margin[klass]
        body = [f"      {_node('s', 0, -1, 0.0, base, True)}/>"]
        lines += _binary_tree(itree, body)
        itree += 1
    for tree in forest.trees:
        body: list[str] = []
        _tree_nodes(tree, 0, "s", 0, body)
        lines += _binary_tree(itree, body)
        itree += 1
    lines.append("  </Weights>")
    return lines


def nan_path_differences(forest: XgbForest) -> int:
    """Cut nodes where XGBoost sends missing values right (TMVA sends NaN left)."""
    return sum(int((~t.default_left[t.left != -1]).sum()) for t in forest.trees)


def bdtg_weights_xml(
    forest: XgbForest,
    variables: Sequence[VariableRange],
    classes: Sequence[str],
    options: dict,
    n_events: int = -1,
    training_seconds: float = 0.0,
) -> str:
    """The text of the weight file; ``options`` are the bdt section (TMVA option names) with
    ``NTrees`` the number of boosting rounds written (the base-margin round included)."""
    lines = ['<?xml version="1.0"?>', f'<MethodSetup Method="{METHOD}">', "  <GeneralInfo>"]
    lines += _general_info(n_events, training_seconds)
    lines += ["  </GeneralInfo>", "  <Options>", *_options(options), "  </Options>"]
    lines += _variables(variables)
    lines += ['  <Spectators NSpec="0"/>']
    lines += _classes(classes)
    lines += ['  <Transformations NTransformations="0"/>', "  <MVAPdfs/>"]
    lines += _weights(forest)
    lines += ["</MethodSetup>", ""]
    return "\n".join(lines)


def threshold_ranges(forest: XgbForest, n_features: int) -> list[tuple[float, float]]:
    """Per feature, the range of its split thresholds (a stand-in for the data range)."""
    ranges = []
    for feature in range(n_features):
        cuts = [t.threshold[(t.left != -1) & (t.feature == feature)] for t in forest.trees]
        values = np.concatenate(cuts) if cuts else np.empty(0)
        ranges.append((float(values.min()), float(values.max())) if len(values) else (0.0, 0.0))
    return ranges
