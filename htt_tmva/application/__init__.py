"""Application: fold-crossed classifier scores appended to ntuples (``htt-tmva apply``).

Modules: ``apply`` (the step), ``inputs`` (globs and input checks), ``models`` (one model
per event fold, checked), ``scores`` (pass 1: chunked inference), ``stream`` (the score
stream between the passes), ``writer`` (pass 2 and the safe output modes).
"""

from __future__ import annotations

__all__ = ["run_application"]


def __getattr__(name: str):
    if name == "run_application":
        from htt_tmva.application.apply import run_application

        return run_application
    raise AttributeError(name)
