"""Models as data and as C++: one neutral description (:mod:`spec`, which every model gives of
itself), written as JSON, as a self-contained C++17 header (:mod:`cpp`) or as ONNX, for one
model or for the models of all folds; :mod:`run` is the export step.

``htt_tmva.export`` is also the API function :func:`htt_tmva.api.export`: calling this package
calls it, so that ``htt_tmva.export(config)`` works whether or not a module of the package was
imported before (which binds the name ``htt_tmva.export`` to the package).
"""

from __future__ import annotations

import sys
import types


class _CallablePackage(types.ModuleType):
    def __call__(self, training_config, fold=None, engine=None, format="cpp", overwrite=False):
        """:func:`htt_tmva.api.export`."""
        from htt_tmva.export.run import export_models

        return export_models(training_config, fold, engine, format, overwrite=overwrite)


sys.modules[__name__].__class__ = _CallablePackage
