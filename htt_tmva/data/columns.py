"""Variable expressions (TMVA's, as TTreeFormula reads them) as float columns of an RDataFrame.

Used for the variables of training configs and of TMVA weight files alike.
"""

from __future__ import annotations

from collections.abc import Sequence


def define_inputs(
    node,
    expressions: Sequence[str],
    *,
    tree: str,
    file: str,
    columns: Sequence[str],
    prefix: str = "__tmva_input_",
):
    """Define one float column per expression on an RDataFrame node.

    Each expression goes through the grammar of :mod:`htt_tmva.expressions` (TTreeFormula's
    semantics: every value a double, so ``n/2`` of an integer ``n`` is 2.5 and ``1/2*x`` is
    ``0.5*x``); the result is stored as float. Returns ``(node, names)``: the new node and
    the column name of each expression, in order. What the grammar refuses raises
    ExpressionError (nothing is compiled); a branch that the tree lacks raises
    MissingBranchError with a did-you-mean.
    """
    from htt_tmva._root import compile_expression
    from htt_tmva.errors import branch_missing
    from htt_tmva.expressions import translate

    columns = list(columns)
    what = f"TMVA variable expression in tree '{tree}' of '{file}'"
    translated = [translate(e, what) for e in expressions]
    names = []
    for index, (expression, t) in enumerate(zip(expressions, translated)):
        missing = [b for b in t.branches if b not in columns]
        if missing:
            error = branch_missing(missing[0], tree, file, columns)
            raise type(error)(f"TMVA variable expression '{expression}': {error}")
        function = _declare_expression(t)
        name = f"{prefix}{index}"
        node = compile_expression(
            node,
            "Define",
            name,
            f"{function}({', '.join(t.branches)})",
            what=f"TMVA variable expression '{expression}'",
            columns=columns,
            tree=tree,
            file=file,
        )
        names.append(name)
    return node, names


def _declare_expression(translated) -> str:
    """JIT-declare ``float f(double b1, ...) { return (float)(C++); }`` once; its name."""
    import hashlib

    from htt_tmva._root import captured_stderr, jit_errors, root
    from htt_tmva.errors import ExpressionError

    used = translated.branches
    digest = hashlib.sha1(f"{translated.cpp}|{','.join(used)}".encode()).hexdigest()[:16]
    name = f"htt_tmva_expression_{digest}"
    ROOT = root()
    if hasattr(ROOT, name):
        return name
    parameters = ", ".join(f"double {b}" for b in used)
    source = f"float {name}({parameters}) {{ return static_cast<float>({translated.cpp}); }}"
    with captured_stderr() as out:
        ok = ROOT.gInterpreter.Declare(source)
    if not ok:  # pragma: no cover - the grammar lets only valid C++ through
        raise ExpressionError(
            f"TMVA variable expression '{translated.text}' does not compile; ROOT says: "
            + "; ".join(jit_errors(out[0]) or ["(no message)"])
        )
    return name
