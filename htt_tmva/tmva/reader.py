"""``--reader tmva``: TMVA weight files evaluated by ``TMVA::Reader`` itself (cross-checks).

``TMVA::Reader`` evaluates one event at a time; a small C++ helper, declared once through
the ROOT gateway, runs that loop over a whole batch (float32, row-major) so that Python is
not called per event. Needs ROOT with TMVA (and PyMVA and Keras 2 for PyKeras weight files).
The Reader is not made ``Silent``: that option silences TMVA's logger for the whole process
(``MsgLogger::InhibitOutput``), a later training included. A FATAL error of TMVA (cppyy
raises it as ``std::runtime_error``) becomes a ModelError naming the weight file.
"""

from __future__ import annotations

import logging
from functools import cache
from pathlib import Path

import numpy as np

from htt_tmva.engines.base import Model
from htt_tmva.engines.manifest import Manifest, read_manifest, verify_model_files
from htt_tmva.errors import EngineError, ModelError

log = logging.getLogger(__name__)

_HELPER = r"""
#include "TMVA/Reader.h"
#include "TString.h"
#include <string>
#include <vector>

namespace htt_tmva {
class BatchReader {
public:
   BatchReader(const std::vector<std::string> &variables, const std::string &weightFile,
               const std::string &method)
      : fValues(variables.size()), fReader("!Color:!Silent"), fMethod(method.c_str())
   {
      for (std::size_t i = 0; i < variables.size(); ++i)
         fReader.AddVariable(TString(variables[i].c_str()), &fValues[i]);
      fReader.BookMVA(fMethod, TString(weightFile.c_str()));
   }
   // x: n rows of nVariables floats; out: n rows of nClasses floats
   std::size_t Evaluate(const float *x, std::size_t n, float *out, std::size_t nClasses)
   {
      const std::size_t nVariables = fValues.size();
      for (std::size_t i = 0; i < n; ++i) {
         for (std::size_t j = 0; j < nVariables; ++j)
            fValues[j] = x[i * nVariables + j];
         const std::vector<float> &response = fReader.EvaluateMulticlass(fMethod);
         if (response.size() != nClasses)
            return response.size();
         for (std::size_t k = 0; k < nClasses; ++k)
            out[i * nClasses + k] = response[k];
      }
      return nClasses;
   }

private:
   std::vector<float> fValues;
   TMVA::Reader fReader;
   TString fMethod;
};
} // namespace htt_tmva
"""


@cache
def _declare_helper():
    from htt_tmva._root import has_pymva, has_tmva, root

    if not has_tmva():
        raise EngineError(
            "--reader tmva needs ROOT with TMVA, which this ROOT does not have (the pip wheel "
            "ships without it); leave out --reader to use htt-tmva's own weight-file reader"
        )
    ROOT = root()
    if has_pymva():
        ROOT.TMVA.PyMethodBase.PyInitialize()
    if not ROOT.gInterpreter.Declare(_HELPER):
        raise EngineError("could not compile the TMVA::Reader helper (see ROOT's messages)")
    return ROOT.htt_tmva.BatchReader


def check_tmva_reader() -> None:
    """Stop early (before any data is read) where TMVA::Reader cannot be used."""
    _declare_helper()


class TmvaReaderModel(Model):
    """A TMVA weight file evaluated with ``TMVA::Reader::EvaluateMulticlass``."""

    def __init__(self, manifest: Manifest, weight_file: Path):
        from htt_tmva._root import root

        helper = _declare_helper()
        ROOT = root()
        from htt_tmva.tmva.factory import working_directory

        self.manifest, self.weight_file = manifest, Path(weight_file).resolve()
        self.method = str(manifest.details.get("title") or "method")
        variables = ROOT.std.vector["std::string"]()
        for v in manifest.variables:
            variables.push_back(v)
        # PyKeras weight files name the trained Keras model relative to the directory TMVA
        # trained in (<output_path>, above <dataloader>/weights/); TMVA loads it at booking
        parents = self.weight_file.parents
        with working_directory(parents[2] if len(parents) > 2 else parents[0]):
            try:
                self._reader = helper(variables, str(self.weight_file), self.method)
            except Exception as exc:  # TMVA's FATAL errors, raised through cppyy
                raise ModelError(
                    f"TMVA::Reader cannot book '{self.weight_file}' (method '{self.method}'): "
                    f"{_first_line(exc)}"
                ) from None

    def predict(self, x: np.ndarray) -> np.ndarray:
        n_classes = len(self.manifest.classes)
        batch = np.ascontiguousarray(x, dtype=np.float32)
        out = np.empty((len(batch), n_classes), dtype=np.float32)
        if len(batch):
            try:
                got = self._reader.Evaluate(batch, len(batch), out, n_classes)
            except Exception as exc:  # TMVA's FATAL errors, raised through cppyy
                raise ModelError(
                    f"TMVA::Reader failed to evaluate '{self.weight_file}': {_first_line(exc)}"
                ) from None
            if got != n_classes:
                raise ModelError(
                    f"TMVA::Reader returned {got} values per event for '{self.weight_file}', "
                    f"expected {n_classes} (one per class)"
                )
        return out.astype(np.float64)

    def save(self, model_path: Path) -> list[Path]:
        raise ModelError("TMVA weight files are written by TMVA itself (htt-tmva train)")


def _first_line(exc: Exception) -> str:
    """cppyy's message of a C++ exception, without the call signature it puts first."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return lines[-1] if lines else type(exc).__name__


def is_pykeras(model_path: Path, manifest: Manifest) -> bool:
    """Whether a weight file is PyKeras's (its manifest, else the weight file's Method)."""
    method = manifest.details.get("method")
    if method is not None:
        return method == "PyKeras"
    with open(model_path, errors="replace") as f:
        return 'Method="PyKeras' in f.read(4096)


def load_with_tmva_reader(model_path: Path) -> Model:
    """The model of a TMVA weight file (with its manifest) evaluated by TMVA::Reader."""
    manifest = read_manifest(model_path)
    if manifest.engine != "tmva":
        raise ModelError(
            f"--reader tmva reads TMVA weight files, but '{model_path}' is a "
            f"'{manifest.engine}' model; leave out --reader for it"
        )
    if manifest.files:  # the weight file (and trained Keras model) written with it
        verify_model_files(manifest, Path(model_path))
    if is_pykeras(Path(model_path), manifest):
        from htt_tmva.tmva.factory import keras2_problem

        problem = keras2_problem()
        if problem:
            raise EngineError(
                f"--reader tmva cannot evaluate the PyKeras weight file '{model_path}': "
                f"{problem}; leave out --reader to use htt-tmva's own reader (which runs "
                "the trained Keras model without TMVA)"
            )
    log.info("evaluating %s with TMVA::Reader", Path(model_path).name)
    return TmvaReaderModel(manifest, Path(model_path))


def load_model_with(
    reader: str | None, model_path: Path, engine=None, preprocessing=None, manifest=None
):
    """``load_model`` with the ``--reader`` choice: ``tmva`` is TMVA::Reader, else ours."""
    if reader == "tmva":
        return load_with_tmva_reader(model_path)
    from htt_tmva.engines.base import load_model

    return load_model(model_path, engine, preprocessing, manifest)
