"""Application: fold-crossed classifier scores appended to ntuples (``htt-tmva apply``).

Modules: ``apply`` (the step and its options), ``inputs`` (globs and input checks),
``trees`` (tree patterns), ``models`` (one model per event fold, checked), ``fill`` (the one
pipeline: trees copied raw, score branches filled), ``compiled`` and ``pipeline`` (the
compiled scoring back-end and the C++), ``scores`` (the Python back-end: chunked
inference), ``writer`` (the safe output modes), ``distributed`` (the Dask executor).
"""

from __future__ import annotations

__all__ = ["ApplyOptions", "run_application"]


def __getattr__(name: str):
    if name in __all__:
        from htt_tmva.application import apply

        return getattr(apply, name)
    raise AttributeError(name)
