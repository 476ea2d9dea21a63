"""A C++ header compiled once into a shared library, cached by content.

The library exports ``void <symbol>(unsigned fold, const double* inputs, float* out)``: the
class probabilities of an event of event fold ``fold`` from the fold-aware header, and
``void <symbol>_batch(const unsigned* folds, const double* inputs, size_t n, float* out)``
for n events at once (the header's ``predict_batch_in_folds``). It is built with the
system's C++ compiler (``$CXX``, else ``c++``/``g++``) at ``-O3`` for this machine's CPU
(``-march=native``, without it where the compiler refuses it); where no compiler exists,
ROOT's interpreter compiles the header instead (slower code, logged). The cache
(``$HTT_TMVA_CACHE``, else ``$XDG_CACHE_HOME/htt_tmva``, else ``~/.cache/htt_tmva``)
holds one folder per header content and CPU (a cache shared by different machines never
hands out code for another CPU); a second run loads the library without compiling. Only a
cache that the user owns and nobody else may write is used (:mod:`htt_tmva._cache`).
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import platform
from pathlib import Path

from htt_tmva._cache import FLAGS, NATIVE, build, cache_folder, compiler, entry_folder, write_text
from htt_tmva._root import root
from htt_tmva.errors import ExportError

__all__ = ["build", "cache_folder", "compiler", "cpu_signature", "load_compiled"]

log = logging.getLogger(__name__)


def cpu_signature() -> str:
    """What identifies this machine's instruction set: the architecture and CPU flags."""
    flags = ""
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            for line in cpuinfo:
                if line.startswith(("flags", "Features", "model name")):
                    flags += line
                if line.strip() == "":
                    break
    except OSError:  # not Linux
        flags = platform.processor()
    return f"{platform.machine()} {flags}"


def _entry_point(namespace: str, symbol: str) -> str:
    return (
        f'extern "C" void {symbol}(unsigned fold, const double* in, float* out) {{\n'
        f"  std::array<double, {namespace}::n_variables> x;\n"
        "  std::copy(in, in + x.size(), x.begin());\n"
        f"  const auto p = {namespace}::predict_in_fold(fold, x);\n"
        "  std::copy(p.begin(), p.end(), out);\n"
        "}\n"
        f'extern "C" void {symbol}_batch(const unsigned* fold, const double* in, '
        "std::size_t n, float* out) {\n"
        f"  {namespace}::predict_batch_in_folds(fold, in, n, out);\n"
        "}\n"
    )


def load_compiled(header_text: str, namespace: str) -> str:
    """Make ``<symbol>(fold, inputs, out)`` callable from ROOT's interpreter; return its name."""
    ROOT = root()
    key = header_text + " ".join([*FLAGS, NATIVE]) + cpu_signature()
    digest = hashlib.sha256(key.encode()).hexdigest()[:20]
    symbol = f"htt_tmva_predict_{digest}"
    if hasattr(ROOT, symbol):
        return symbol
    cxx = compiler()
    if cxx is None:
        log.warning("no C++ compiler found ($CXX, c++, g++): ROOT's interpreter compiles the model")
        _declare(header_text + "\n" + _entry_point(namespace, symbol))
        return symbol
    library = _library(header_text, namespace, symbol, digest, cxx)
    if ROOT.gSystem.Load(str(library)) < 0 or not ROOT.gSystem.DynFindSymbol(str(library), symbol):
        raise ExportError(f"ROOT could not load '{symbol}' from the compiled model '{library}'")
    _declare(
        f'extern "C" void {symbol}(unsigned fold, const double* in, float* out);\n'
        f'extern "C" void {symbol}_batch(const unsigned* fold, const double* in, '
        "std::size_t n, float* out);"
    )
    return symbol


def _declare(code: str) -> None:
    if not root().gInterpreter.Declare(code):
        raise ExportError("ROOT's interpreter could not compile the exported model")


def _library(header_text: str, namespace: str, symbol: str, digest: str, cxx: str) -> Path:
    folder = entry_folder(digest)
    library = folder / f"htt_tmva_model_{digest}.so"
    built = build(header_text + "\n" + _entry_point(namespace, symbol), library, cxx, "the model")
    header = folder / "model.hxx"  # the header, for reading
    if not header.is_file():
        with contextlib.suppress(OSError):  # a read-only cache
            write_text(header, header_text)
    return built
