"""Expressions of cuts, weights and variables (``x > 0 && abs(eta) < 2.1``,
``(Ht>2500e3)?2500e3:Ht``, ``npartons/2``): parsed by a small grammar and translated to C++
as TTreeFormula evaluates them.

Every expression that reaches C++ (dataset cuts and weights, TMVA weight files' variable
``Expression``, variables of the application and exports) goes through :func:`translate`, so
that a config or a model file can never paste code into the interpreter or a header.

Grammar (lowest precedence first)::

    expr    := or ['?' expr ':' expr]
    or      := and {'||' and}            and := equal {'&&' equal}
    equal   := compare {('=='|'!=') compare}
    compare := sum {('<'|'<='|'>'|'>=') sum}
    sum     := product {('+'|'-') product}
    product := unary {('*'|'/'|'%') unary}
    unary   := ('-'|'+'|'!') unary | primary
    primary := number | branch | function '(' [expr {',' expr}] ')' | '(' expr ')'

Semantics (TTreeFormula's): every value is a double, whatever the branch type, so ``1/2*x``
is ``0.5*x`` and ``n/2`` of an integer ``n = 1`` is 0.5; comparisons and logic give 0 or 1;
``a % b`` is the remainder of the integer parts (NaN for ``b`` = 0, where ROOT crashes).
Sums and products are grouped as TTreeFormula groups them (:func:`_associate`), so that
they round to the same last bit. Where ROOT and C++ read a text differently, parentheses
are asked for: ``%`` next to ``*`` or ``/``, chained comparisons.
Functions come from the fixed table :data:`FUNCTIONS` (mapped to the standard library on
doubles, so ``abs`` is never C's ``int abs(int)``). Anything else (other functions,
namespaces, casts, strings, arrays, members, ``=``, ``&``, ``^``) is refused with an
:class:`~htt_tmva.errors.ExpressionError` naming the expression and what is not allowed.
"""

from __future__ import annotations

import hashlib
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Optional

from htt_tmva.errors import ExpressionError, did_you_mean

#: function name -> (C++ on doubles, number of arguments). min/max keep TMath's choice of
#: operand (``a <= b ? a : b``), NaN included: ``std::min(b, a)`` is ``a < b ? a : b``.
FUNCTIONS: dict[str, tuple[str, int]] = {}
for _names, _cpp, _arity in [
    (("abs", "fabs", "TMath::Abs", "std::abs", "std::fabs"), "std::fabs", 1),
    (("sqrt", "TMath::Sqrt", "std::sqrt"), "std::sqrt", 1),
    (("exp", "TMath::Exp", "std::exp"), "std::exp", 1),
    (("log", "TMath::Log", "std::log"), "std::log", 1),
    (("log10", "TMath::Log10", "std::log10"), "std::log10", 1),
    (("pow", "TMath::Power", "std::pow"), "std::pow", 2),
    (("min", "TMath::Min", "std::min"), "min", 2),
    (("max", "TMath::Max", "std::max"), "max", 2),
    (("sin", "TMath::Sin", "std::sin"), "std::sin", 1),
    (("cos", "TMath::Cos", "std::cos"), "std::cos", 1),
    (("tan", "TMath::Tan", "std::tan"), "std::tan", 1),
    (("asin", "TMath::ASin", "std::asin"), "std::asin", 1),
    (("acos", "TMath::ACos", "std::acos"), "std::acos", 1),
    (("atan", "TMath::ATan", "std::atan"), "std::atan", 1),
    (("atan2", "TMath::ATan2", "std::atan2"), "std::atan2", 2),
    (("sinh", "TMath::SinH", "std::sinh"), "std::sinh", 1),
    (("cosh", "TMath::CosH", "std::cosh"), "std::cosh", 1),
    (("tanh", "TMath::TanH", "std::tanh"), "std::tanh", 1),
    (("floor", "TMath::Floor", "std::floor"), "std::floor", 1),
    (("ceil", "TMath::Ceil", "std::ceil"), "std::ceil", 1),
    (("TMath::Erf", "std::erf"), "std::erf", 1),
    (("TMath::Pi",), "3.141592653589793", 0),
]:
    FUNCTIONS.update({name: (_cpp, _arity) for name in _names})

_CPP_KEYWORDS = frozenset(  # C++ keywords and RDataFrame's own names
    re.split(
        r"\s+",
        """alignas alignof and and_eq asm auto bitand bitor bool break case catch char char8_t
    char16_t char32_t class compl concept const consteval constexpr constinit const_cast
    continue co_await co_return co_yield decltype default delete do double dynamic_cast else
    enum explicit export extern false float for friend goto if inline int long mutable
    namespace new noexcept not not_eq nullptr operator or or_eq private protected public
    register reinterpret_cast requires return short signed sizeof static static_assert
    static_cast struct switch template this thread_local throw true try typedef typeid
    typename union unsigned using virtual void volatile wchar_t while xor xor_eq
    rdfentry_ rdfslot_""",
    )
)
_MAX_LENGTH = 10000
_MAX_DEPTH = 50

_TOKEN = re.compile(
    r"(?P<space>[ \t\r\n]+)"
    r"|(?P<number>(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?)"
    r"|(?P<name>[A-Za-z_][A-Za-z0-9_]*(?:::[A-Za-z_][A-Za-z0-9_]*)*)"
    r"|(?P<op>&&|\|\||==|!=|<=|>=|[<>+\-*/%!?:(),])"
)
_REFUSED = {
    "**": "'**' (use pow(a, b))",
    "^": "'^' (use pow(a, b); C++ reads it as exclusive or)",
    "&": "'&' (use && for 'and')",
    "|": "'|' (use || for 'or')",
    "=": "'=' (use == to compare)",
    "[": "'[' (array elements; only scalar branches can be used)",
    ".": "'.' (members; only scalar branches can be used)",
    '"': "'\"' (strings)",
    "'": '"\'" (character literals)',
}

_DOUBLE, _BOOL = "d", "b"


@dataclass(frozen=True)
class Translated:
    """An expression and its C++ (a ``double`` expression of the branches it names)."""

    text: str
    cpp: str
    branches: tuple[str, ...]


class _Parser:
    def __init__(self, text: str, what: str):
        self.text, self.what = text, what
        self.tokens: list[tuple[str, str, int]] = []  # (kind, text, position)
        self.branches: list[str] = []
        self.index = 0
        self.depth = 0
        self._tokenize()

    def fail(self, problem: str, position: Optional[int] = None) -> ExpressionError:
        if position is None:
            position = (
                self.tokens[self.index][2] if self.index < len(self.tokens) else len(self.text)
            )
        shown = self.text if len(self.text) <= 200 else self.text[:200] + "..."
        return ExpressionError(
            f"{self.what} {shown!r}: {problem} at character {position + 1}; expressions may "
            "use numbers, scalar branches, + - * / %, comparisons, && || !, ?: and the "
            "functions "
            + ", ".join(sorted(n for n in FUNCTIONS if "::" not in n))
            + " (also as TMath::/std:: names)"
        )

    def _tokenize(self) -> None:
        if len(self.text) > _MAX_LENGTH:
            raise self.fail(f"longer than {_MAX_LENGTH} characters", 0)
        position = 0
        while position < len(self.text):
            match = _TOKEN.match(self.text, position)
            if match is None or (match.lastgroup == "op" and self.text.startswith("**", position)):
                rest = self.text[position:]
                found = next((k for k in _REFUSED if rest.startswith(k)), None)
                what = _REFUSED[found] if found else f"the character {rest[0]!r}"
                raise self.fail(f"{what} is not allowed", position)
            kind = match.lastgroup
            if kind == "number":
                end = match.end()
                if end < len(self.text) and (self.text[end].isalnum() or self.text[end] in "_."):
                    raise self.fail(
                        f"the number {self.text[position : end + 1]!r}... is not a plain "
                        "number (no suffixes, hexadecimal or names starting with a digit)",
                        position,
                    )
            if kind != "space":
                self.tokens.append((kind, match.group(0), position))
            position = match.end()

    # --- helpers ---------------------------------------------------------------------------

    def peek(self) -> str:
        return self.tokens[self.index][1] if self.index < len(self.tokens) else ""

    def take(self) -> tuple[str, str, int]:
        if self.index >= len(self.tokens):
            raise self.fail("the expression ends where an operand is expected")
        token = self.tokens[self.index]
        self.index += 1
        return token

    def expect(self, text: str) -> None:
        if self.peek() != text:
            found = f"{self.peek()!r}" if self.peek() else "the end"
            raise self.fail(f"expected {text!r}, found {found}")
        self.index += 1

    # --- grammar ---------------------------------------------------------------------------

    def parse(self) -> str:
        if not self.tokens:
            raise self.fail("the expression is empty", 0)
        code = _as_double(self.expression())
        if self.index < len(self.tokens):
            raise self.fail(f"unexpected {self.peek()!r}")
        return code

    def expression(self) -> tuple[str, str]:
        self.depth += 1
        if self.depth > _MAX_DEPTH:
            raise self.fail(f"nested deeper than {_MAX_DEPTH} levels")
        condition = self.binary(0)
        if self.peek() == "?":
            self.index += 1
            yes = self.expression()
            self.expect(":")
            no = self.expression()
            condition = (
                f"({_as_bool(condition)} ? {_as_double(yes)} : {_as_double(no)})",
                _DOUBLE,
            )
        self.depth -= 1
        return condition

    _LEVELS = (("||",), ("&&",), ("==", "!="), ("<", "<=", ">", ">="), ("+", "-"), ("*", "/", "%"))

    def binary(self, level: int) -> tuple[str, str]:
        if level == len(self._LEVELS):
            return self.unary()
        operands, ops = [self.binary(level + 1)], []
        while self.peek() in self._LEVELS[level]:
            ops.append(self.take())
            operands.append(self.binary(level + 1))
        names = [op[1] for op in ops]
        if len(ops) > 1 and names[0] in ("==", "!=", "<", "<=", ">", ">="):
            raise self.fail(
                f"the comparisons {' and '.join(repr(n) for n in names)} are chained; write "
                "(a < b) && (b < c)",
                ops[1][2],
            )
        if "%" in names and len(set(names)) > 1:  # TTreeFormula: a%b*c is a%(b*c), C++: (a%b)*c
            raise self.fail(
                "'%' next to '*' or '/' needs parentheses (ROOT and C++ read it differently)",
                ops[names.index("%")][2],
            )
        return _associate(operands, names)

    def unary(self) -> tuple[str, str]:
        if self.peek() in ("-", "+", "!"):
            op = self.take()[1]
            self.depth += 1
            if self.depth > _MAX_DEPTH:
                raise self.fail(f"nested deeper than {_MAX_DEPTH} levels")
            operand = self.unary()
            self.depth -= 1
            if op == "!":
                return f"(!{_as_bool(operand)})", _BOOL
            return f"({op}{_as_double(operand)})", _DOUBLE
        return self.primary()

    def primary(self) -> tuple[str, str]:
        kind, text, position = self.take()
        if kind == "number":
            value = float(text)
            if not math.isfinite(value):
                raise self.fail(f"the number {text!r} is beyond the double range", position)
            return repr(value), _DOUBLE
        if kind == "name":
            if self.peek() == "(":
                return self.call(text, position)
            return self.branch(text, position), _DOUBLE
        if text == "(":
            inner = self.expression()
            self.expect(")")
            return inner
        raise self.fail(f"unexpected {text!r} where an operand is expected", position)

    def branch(self, name: str, position: int) -> str:
        if name in FUNCTIONS:
            raise self.fail(f"the function {name!r} needs arguments in parentheses", position)
        if "::" in name:
            raise self.fail(f"the name {name!r} is not allowed (no namespaces)", position)
        if name in _CPP_KEYWORDS or name.startswith("htt_tmva") or "__" in name:
            raise self.fail(f"{name!r} cannot be a branch name in an expression", position)
        if name not in self.branches:
            self.branches.append(name)
        return f"static_cast<double>({name})"

    def call(self, name: str, position: int) -> tuple[str, str]:
        if name not in FUNCTIONS:
            raise self.fail(
                f"the function {name!r} is not allowed{did_you_mean(name, FUNCTIONS)}", position
            )
        cpp, arity = FUNCTIONS[name]
        self.expect("(")
        arguments = []
        if self.peek() != ")":
            arguments.append(_as_double(self.expression()))
            while self.peek() == ",":
                self.index += 1
                arguments.append(_as_double(self.expression()))
        self.expect(")")
        if len(arguments) != arity:
            raise self.fail(f"{name}() takes {arity} argument(s), {len(arguments)} given", position)
        if arity == 0:
            return cpp, _DOUBLE
        if cpp in ("min", "max"):  # TMath's operand order, see FUNCTIONS
            return f"std::{cpp}({arguments[1]}, {arguments[0]})", _DOUBLE
        return f"{cpp}({', '.join(arguments)})", _DOUBLE


def _as_double(node: tuple[str, str]) -> str:
    code, kind = node
    return f"static_cast<double>({code})" if kind == _BOOL else code


def _as_bool(node: tuple[str, str]) -> str:
    code, kind = node
    return code if kind == _BOOL else f"({code} != 0.0)"


def _associate(operands: list, ops: list[str]) -> tuple[str, str]:
    """Combine a chain of operands of one precedence level as TTreeFormula does, so that
    sums and products round exactly as in ROOT: ``a+b-c+d`` is ``(a+b-c) + d`` (split at
    the last '+'), ``a*b/c*d`` is ``a * (b/c*d)`` (split at the first '*'); chains of '-',
    '/' and the others from the left."""
    if not ops:
        return operands[0]
    if "+" in ops:
        split = len(ops) - 1 - ops[::-1].index("+")
    elif "*" in ops:
        split = ops.index("*")
    else:
        split = len(ops) - 1
    left = _associate(operands[: split + 1], ops[:split])
    right = _associate(operands[split + 1 :], ops[split + 1 :])
    return _combine(ops[split], left, right)


def _combine(op: str, left: tuple[str, str], right: tuple[str, str]) -> tuple[str, str]:
    if op in ("&&", "||"):
        return f"({_as_bool(left)} {op} {_as_bool(right)})", _BOOL
    a, b = _as_double(left), _as_double(right)
    if op in ("==", "!=", "<", "<=", ">", ">="):
        return f"({a} {op} {b})", _BOOL
    if op == "%":  # TTreeFormula: Long64_t(a) % Long64_t(b); NaN (not a crash) for b = 0
        return f"std::fmod(std::trunc({a}), std::trunc({b}))", _DOUBLE
    return f"({a} {op} {b})", _DOUBLE


def translate(text: str, what: str = "expression") -> Translated:
    """Parse ``text`` and translate it to C++ (``double``, TTreeFormula semantics).

    ``what`` names the expression in errors (e.g. ``"cut_string of process 'ztt'"``).
    The C++ reads each branch by its name: bind the names in ``branches`` before use."""
    text = str(text)
    parser = _Parser(text, what)
    code = parser.parse()
    return Translated(text, code, tuple(parser.branches))


def is_plain(variable: str) -> bool:
    """A plain branch name (read as it is), not an expression."""
    return re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", variable.strip()) is not None


def branches_of(expression: str, what: str = "expression") -> list[str]:
    """The branch names an expression reads, in first-seen order (checked by the grammar)."""
    return list(translate(expression, what).branches)


def input_branches(variables: Sequence[str], what: str = "variable") -> list[str]:
    """The branches to read for ``variables``: plain ones as they are, then those read by
    the expressions, without repeats, in first-seen order."""
    branches: list[str] = []
    for variable in variables:
        names = [variable.strip()] if is_plain(variable) else branches_of(variable, what)
        for name in names:
            if name not in branches:
                branches.append(name)
    return branches


def value_cpp(variable: str, what: str = "variable") -> str:
    """C++ (double) of the value that a model receives for ``variable``, its branches bound
    by name: a branch as it is, an expression as TMVA stores it (rounded to float)."""
    cpp = translate(variable, what).cpp
    return cpp if is_plain(variable) else f"static_cast<double>(static_cast<float>({cpp}))"


def inputs_source(
    name: str, variables: Sequence[str], what: str = "variable"
) -> tuple[str, list[str]]:
    """C++ of ``void name(const double* in, std::size_t n, double* out)``: the values of
    ``variables`` (out [n][len(variables)]) from rows of their branches (in [n][len(branches)],
    as double). Plain variables are copied; expressions are evaluated as TMVA does (double
    arithmetic, the result stored as float). Returns the source and the branches."""
    branches = input_branches(variables, what)
    index = {b: i for i, b in enumerate(branches)}
    body = [f"    htt_tmva_out[{j}] = {value_cpp(v, what)};" for j, v in enumerate(variables)]
    binds = [f"    const double {b} = htt_tmva_row[{i}];" for b, i in index.items()]
    source = (
        f"void {name}(const double* htt_tmva_in, std::size_t htt_tmva_n, double* htt_tmva_all) {{\n"
        "  for (std::size_t htt_tmva_i = 0; htt_tmva_i < htt_tmva_n; ++htt_tmva_i) {\n"
        f"    const double* htt_tmva_row = htt_tmva_in + htt_tmva_i * {max(len(branches), 1)};\n"
        f"    double* htt_tmva_out = htt_tmva_all + htt_tmva_i * {len(variables)};\n"
        + "\n".join(binds + body)
        + "\n  }\n}\n"
    )
    return source, branches


def declare_inputs_function(
    variables: Sequence[str], what: str = "variable"
) -> tuple[str, list[str]]:
    """Declare (once) the function of :func:`inputs_source` with ROOT; its name and branches."""
    from htt_tmva._root import captured_stderr, jit_errors, root

    key = hashlib.sha1(repr(list(variables)).encode()).hexdigest()[:16]
    name = f"htt_tmva_inputs_{key}"
    source, branches = inputs_source(name, variables, what)
    ROOT = root()
    if not hasattr(ROOT, name):
        with captured_stderr() as out:
            ok = ROOT.gInterpreter.Declare("#pragma cling optimize(3)\n" + source)
        if not ok:  # pragma: no cover - the grammar lets only valid C++ through
            raise ExpressionError(
                f"the variables {list(variables)} (on the branches {branches}, read as "
                "double) do not compile; ROOT says: "
                + "; ".join(jit_errors(out[0]) or ["unknown error"])
            )
    return name, branches


class ExpressionEvaluator:
    """The values of ``variables`` (expressions or branches) from rows of ``columns``
    (their branches, as read: :func:`input_branches`), in C++: float64 (n, len(variables)),
    each expression's value rounded to float as TMVA stores it."""

    def __init__(self, variables: Sequence[str], columns: Sequence[str], what: str = "variable"):
        self.variables, self.columns = list(variables), list(columns)
        name, branches = declare_inputs_function(self.variables, what)
        if branches != self.columns:
            raise ExpressionError(
                f"the variables {self.variables} read the branches {branches}, not {self.columns}"
            )
        from htt_tmva._root import root

        self._function = getattr(root(), name)

    def __call__(self, x):
        import numpy as np

        x = np.ascontiguousarray(x, dtype=np.float64)
        out = np.empty((len(x), len(self.variables)), dtype=np.float64)
        if len(x):
            self._function(x, len(x), out)
        return out
