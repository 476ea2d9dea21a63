"""Text that goes into generated C++: string literals and comments, encoded so that no
input (a class name, a variable, a path, a model file's field) can end them early; number
literals; and the node-array forest that the C++ of XGBoost trees and of TMVA BDTs share.
"""

from __future__ import annotations

from collections.abc import Sequence

_PLAIN = frozenset(chr(c) for c in range(0x20, 0x7F)) - {"\\", '"'}


def cpp_string(text: object) -> str:
    """A C++ string literal holding ``text``'s UTF-8 bytes exactly: printable ASCII as it is,
    everything else (backslash, quote, newline, control and non-ASCII bytes, a ``?`` before
    ``?``: ROOT's interpreter reads trigraphs) as a three-digit octal escape (never more
    digits than those three, unlike ``\\x``)."""
    out = []
    text = str(text)
    for i, char in enumerate(text):
        if char in _PLAIN and not (char == "?" and text[i + 1 : i + 2] == "?"):
            out.append(char)
        else:
            out.extend(f"\\{byte:03o}" for byte in char.encode("utf-8", "surrogatepass"))
    return '"' + "".join(out) + '"'


def cpp_comment(text: object) -> str:
    """``text`` for a ``//`` or ``/* */`` comment: one line of printable ASCII that neither
    ends the comment (``*/``, a newline) nor continues it (a backslash or the trigraph
    ``??/`` before the line end); other characters are shown as ``\\xNN``/``\\uNNNN``."""
    out = []
    text = str(text)
    for i, char in enumerate(text):
        if (char in _PLAIN or char == '"') and not (char == "?" and text[i + 1 : i + 2] == "?"):
            out.append(char)
        elif ord(char) < 0x100:
            out.append(f"\\x{ord(char):02x}")
        else:
            out.append(f"\\u{ord(char):04x}" if ord(char) < 0x10000 else f"\\U{ord(char):08x}")
    return "".join(out).replace("*/", "*\\x2f")


def cpp_floats(values) -> str:
    """Float literals (``1.5f``); NaN and infinities as ``std::numeric_limits`` values."""
    return ", ".join(repr(float(v)) + "f" if _finite(v) else cpp_special(v) for v in values)


def cpp_doubles(values) -> str:
    """Double literals that round-trip (``repr``); NaN and infinities as ``cpp_special``."""
    return ", ".join(repr(float(v)) if _finite(v) else cpp_special(v) for v in values)


def _finite(v) -> bool:
    v = float(v)
    return v == v and v not in (float("inf"), float("-inf"))


def cpp_special(v) -> str:
    """NaN or an infinity as a C++ expression."""
    v = float(v)
    if v != v:
        return "std::numeric_limits<float>::quiet_NaN()"
    return ("" if v > 0 else "-") + "std::numeric_limits<float>::infinity()"


def cpp_strings(values: Sequence[str]) -> str:
    """String literals (:func:`cpp_string`), comma-separated."""
    return ", ".join(cpp_string(v) for v in values)


def cpp_ints(values) -> str:
    return ", ".join(str(int(v)) for v in values)


PREDICT = [
    "/// Class probabilities of one event; inputs in the order of `variables`. Thread-safe.",
    "inline std::array<float, n_classes> predict(",
    "    const std::array<double, n_variables>& input) {",
]


def tree_depth(tree: dict) -> int:
    """Levels below the root of a tree of node arrays (a leaf's ``left`` is -1)."""
    depth, level = 0, [0]
    while True:
        level = [c for n in level for c in (tree["left"][n], tree["right"][n]) if c >= 0]
        if not level:
            return depth
        depth += 1


def node_forest(trees: list, value_type: str = "float") -> list[str]:
    """The trees as one array of nodes (declarations for ``detail``): ``Node``,
    ``tree_start`` and the leaf ``value`` of every node (``float`` or ``double``). A leaf
    points to itself, so walking on from it stays there; its value is in ``threshold``."""
    starts, nodes, values = [], [], []
    for tree in trees:
        offset = len(nodes)
        starts.append(offset)
        for n, left in enumerate(tree["left"]):
            if left < 0:
                nodes.append(f"{{0.f, 0, {offset + n}, {offset + n}, false}}")
                values.append(tree["threshold"][n])
            else:
                default = "true" if tree["default_left"][n] else "false"
                nodes.append(
                    f"{{{cpp_floats([tree['threshold'][n]])}, {int(tree['feature'][n])}, "
                    f"{offset + left}, {offset + tree['right'][n]}, {default}}}"
                )
                values.append(0.0)
    text = cpp_floats if value_type == "float" else cpp_doubles
    nt, nn = len(starts), len(nodes)
    return [
        "struct Node { float threshold; int feature; int left; int right; bool default_left; };",
        f"inline constexpr int tree_start[{max(nt, 1)}] = {{{cpp_ints(starts) or '0'}}};",
        f"inline constexpr Node nodes[{max(nn, 1)}] = {{{', '.join(nodes) or '{}'}}};",
        f"inline constexpr {value_type} value[{max(nn, 1)}] = "
        f"{{{text(values) or ('0.f' if value_type == 'float' else '0.0')}}};",
    ]


def node_walk(inputs: str, sums: str) -> list[str]:
    """The walk of the trees of :func:`node_forest`, ``detail::depth`` levels, adding each
    tree's leaf value to ``sums[detail::tree_class[tree]]`` in tree order. ``x < cut`` goes
    left, NaN the node's default way."""
    return [
        "  // blocks of trees walked side by side: independent chains of loads overlap",
        "  constexpr std::size_t block = 8;",
        "  for (std::size_t first = 0; first < detail::n_trees; first += block) {",
        "    const std::size_t n = std::min(block, detail::n_trees - first);",
        "    int node[block];",
        "    for (std::size_t j = 0; j < n; ++j) node[j] = detail::tree_start[first + j];",
        "    for (int level = 0; level < detail::depth; ++level) {",
        "      for (std::size_t j = 0; j < n; ++j) {",
        "        const detail::Node& d = detail::nodes[node[j]];",
        f"        const float v = {inputs}[d.feature];",
        "        const bool go_left = (v < d.threshold) | ((v != v) & d.default_left);",
        "        node[j] = go_left ? d.left : d.right;",
        "      }",
        "    }",
        "    for (std::size_t j = 0; j < n; ++j)",
        f"      {sums}[detail::tree_class[first + j]] += detail::value[node[j]];",
        "  }",
    ]
