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
hands out code for another CPU); a second run loads the library without compiling.
"""

from __future__ import annotations

import hashlib
import logging
import os
import platform
import shutil
import socket
import subprocess
from collections.abc import Sequence
from pathlib import Path
from typing import Optional

from htt_tmva._root import root
from htt_tmva.errors import ExportError

log = logging.getLogger(__name__)

# no fused multiply-adds: the per-event and the batched code give the same bits
FLAGS = ["-std=c++17", "-O3", "-ffp-contract=off", "-shared", "-fPIC"]
NATIVE = "-march=native"


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


def cache_folder() -> Path:
    if os.environ.get("HTT_TMVA_CACHE"):
        return Path(os.environ["HTT_TMVA_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "htt_tmva"


def compiler() -> Optional[str]:
    for name in (os.environ.get("CXX"), "c++", "g++", "clang++"):
        if name and shutil.which(name):
            return shutil.which(name)
    return None


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
    folder = cache_folder() / digest
    library = folder / f"htt_tmva_model_{digest}.so"
    built = build(header_text + "\n" + _entry_point(namespace, symbol), library, cxx, "the model")
    header = folder / "model.hxx"  # the header, for reading
    if not header.is_file():
        _write_atomically(header, header_text)
    return built


def build(source: str, library: Path, cxx: str, what: str, extra: Sequence[str] = ()) -> Path:
    """Compile ``source`` into ``library`` (kept when it exists: the cache) and return it.
    Libraries get names of their own: ROOT does not load a second library of a loaded name.
    Processes may build the same library at the same time (batch jobs sharing a home folder):
    each compiles its own copy of the source, and the library appears by an atomic rename."""
    if library.is_file():
        log.info("compiled %s found in the cache: %s", what, library)
        return library
    folder = library.parent
    folder.mkdir(parents=True, exist_ok=True)
    unique = f"{socket.gethostname()}.{os.getpid()}"
    cxx_file = folder / f".{library.stem}.{unique}.cxx"
    cxx_file.write_text(source)
    temporary = folder / f".{library.name}.{unique}"
    log.info("compiling %s with %s -O3 (once; cached in %s)", what, Path(cxx).name, folder)
    command = [cxx, *FLAGS, str(cxx_file), "-o", str(temporary), *extra]
    try:
        result = subprocess.run([*command, NATIVE], capture_output=True, text=True)
        if result.returncode != 0 and NATIVE in result.stderr:  # a compiler without it
            result = subprocess.run(command, capture_output=True, text=True)
        if result.returncode != 0:
            raise ExportError(f"compiling {what} failed ({cxx}):\n{result.stderr.strip()[-2000:]}")
        os.replace(temporary, library)
        os.replace(cxx_file, folder / f"{library.stem}.cxx")  # the source, for reading
    finally:
        temporary.unlink(missing_ok=True)
        cxx_file.unlink(missing_ok=True)
    return library


def _write_atomically(path: Path, text: str) -> None:
    temporary = path.with_name(f".{path.name}.{socket.gethostname()}.{os.getpid()}")
    temporary.write_text(text)
    os.replace(temporary, path)
