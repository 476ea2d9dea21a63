"""A TMVA weight file as a model: header, transformation chain and method response."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from htt_tmva.errors import TmvaWeightsError
from htt_tmva.tmva._xml import read_header
from htt_tmva.tmva.transforms import apply_chain, read_transformations

SUPPORTED_METHODS = ("BDT", "MLP", "DL", "PyKeras", "Fisher", "LD")


def _method(header, **options):
    kind = header.method_type
    if kind == "BDT":
        from htt_tmva.tmva.bdt import BdtMethod

        return BdtMethod(header)
    if kind == "MLP":
        from htt_tmva.tmva.mlp import MlpMethod

        return MlpMethod(header, exact_tanh=options.get("exact_tanh"))
    if kind == "DL":
        from htt_tmva.tmva.dl import DlMethod

        return DlMethod(header)
    if kind == "PyKeras":
        from htt_tmva.tmva.keras import PyKerasMethod

        return PyKerasMethod(header)
    if kind in ("Fisher", "LD"):
        from htt_tmva.tmva.linear import LinearMethod

        return LinearMethod(header)
    raise header.fail(
        f"method '{kind}' ({header.method_type}::{header.method_name}) is not "
        f"supported; supported methods: {', '.join(SUPPORTED_METHODS)}"
    )


class TmvaModel:
    """What ``TMVA::Reader`` computes from one weight file, without TMVA.

    ``response(x)`` takes the variables in the file's order (float array (n, n_variables)) and
    returns EvaluateMVA's value (shape (n,)) for two-class jobs or EvaluateMulticlass' values
    (shape (n, n_classes)) for multiclass jobs. Inputs are rounded to float32 first, as TMVA's
    events hold Float_t.
    """

    def __init__(self, path: str | Path, *, exact_tanh: bool | None = None):
        header = read_header(path)
        self.path = header.path
        self.method = header.method_type
        self.name = header.method_name
        self.variables = [v.internal for v in header.variables]
        self.expressions = [v.expression for v in header.variables]
        self.variable_types = [v.type for v in header.variables]
        self.spectators = [v.expression for v in header.spectators]
        self.classes = list(header.classes)
        self.analysis_type = header.analysis_type
        self.multiclass = header.analysis_type.lower() == "multiclass"
        self.tmva_version = header.tmva_version
        self.root_version = header.root_version
        if header.analysis_type.lower() == "regression":
            raise header.fail(
                "regression weight files are not supported (classification and multiclass are)"
            )
        try:
            self._method = _method(header, exact_tanh=exact_tanh)
            self._transformations = read_transformations(header)
        except (ValueError, KeyError, IndexError) as exc:  # numbers or indices that do not parse
            raise header.fail(f"malformed {self.method} weights: {exc}") from exc

    @property
    def transformations(self) -> list:
        """Names of the input transformations, in the order TMVA applies them."""
        return [type(t).__name__ for t in self._transformations]

    def response(self, x) -> np.ndarray:
        x = np.asarray(x)
        if x.ndim != 2 or x.shape[1] != len(self.variables):
            raise TmvaWeightsError(
                f"TMVA weight file '{self.path}' expects an array of shape (n, "
                f"{len(self.variables)}) with the variables {self.variables}; got shape {x.shape}"
            )
        values = apply_chain(self._transformations, x.astype(np.float32))
        return self._method.evaluate(values)

    def describe(self) -> dict:
        """The neutral description that the C++, JSON and ONNX exports write
        (:mod:`htt_tmva.export.spec`; TMVA's parts in :mod:`htt_tmva.tmva.spec`)."""
        from htt_tmva.tmva.spec import weights_spec

        return weights_spec(self)

    def __repr__(self) -> str:
        return (
            f"TmvaModel({str(self.path)!r}, method={self.method!r}, "
            f"classes={self.classes}, variables={self.variables})"
        )


def read_weights(path: str | Path, *, exact_tanh: bool | None = None) -> TmvaModel:
    """Read a TMVA weight file (``*.weights.xml``) into a :class:`TmvaModel`.

    ``exact_tanh`` overrides which tanh an MLP uses (None: TMVA's rule for the file's version).
    """
    return TmvaModel(path, exact_tanh=exact_tanh)
