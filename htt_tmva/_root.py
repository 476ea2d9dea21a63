"""The one gateway to ROOT: lazy import, batch mode, no command-line parsing.

Every module that needs ROOT calls :func:`root` instead of ``import ROOT``, so that
importing htt_tmva stays cheap and ROOT never reads our command-line arguments.
"""

from __future__ import annotations

import contextlib
import fnmatch
import os
import re
import sys
import tempfile
import warnings
from functools import cache
from pathlib import Path

from htt_tmva.errors import HttTmvaError, InputFileError, MissingTreeError, did_you_mean


@cache
def root():
    """Import ROOT once, in batch mode, with its command-line parsing switched off."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r"\s*This distribution of ROOT is in alpha")
        try:
            import ROOT
        except ImportError as exc:  # pragma: no cover - depends on the environment
            raise HttTmvaError(
                "ROOT is not importable: install the pip wheel (`pip install ROOT`), "
                "conda-forge's `root`, or set up an LCG view"
            ) from exc
    ROOT.PyConfig.IgnoreCommandLineOptions = True
    ROOT.gROOT.SetBatch(True)
    ROOT.gErrorIgnoreLevel = max(ROOT.gErrorIgnoreLevel, ROOT.kWarning)
    # A root:// URL names a file in the server's namespace: never let ROOT swap it for a
    # local file of the same path when the host is this machine (it does so for TChain
    # and RDataFrame, whose open option is not plain "READ").
    ROOT.gEnv.SetValue("TFile.ForceRemote", 1)
    return ROOT


REMOTE_SCHEMES = ("root://", "roots://", "xroot://", "xroots://")


class RemoteUrl(str):
    """An XRootD URL (``root://host//path``), kept as text: pathlib would fold its ``//``."""

    @property
    def name(self) -> str:
        """The last component of the URL's path (without ``?options``)."""
        return self.split("?", 1)[0].rstrip("/").rsplit("/", 1)[-1]

    def joinpath(self, relative: str) -> RemoteUrl:
        """``relative`` appended to this URL (a folder) with one '/'."""
        return RemoteUrl(self.rstrip("/") + "/" + str(relative).lstrip("/"))


def is_remote(path) -> bool:
    """Whether ``path`` is an XRootD URL (root://, roots://, xroot://, xroots://)."""
    return str(path).lower().startswith(REMOTE_SCHEMES)


def input_path(path: str | os.PathLike) -> Path | RemoteUrl:
    """An input as the rest of the code keeps it: a Path, or a RemoteUrl left as written."""
    return RemoteUrl(str(path)) if is_remote(path) else Path(path)


def _load_quietly(library: str, cls: str) -> bool:
    """Load ``library`` if this ROOT has it and check that it provides class ``cls``.

    ``gSystem.DynamicPathName(name, quiet=True)`` looks the library up without ROOT's
    ``Error in <TUnixSystem::FindDynamicLibrary>`` line (``gSystem.Load`` of a missing
    library prints it), and the class is looked up without autoloading.
    """
    ROOT = root()
    try:
        path = ROOT.gSystem.DynamicPathName(library, True)
        if not path or ROOT.gSystem.Load(str(path)) < 0:
            return False
        return bool(ROOT.TClass.GetClass(cls, False, True))
    except Exception:  # noqa: BLE001 - any failure means: not there
        return False


REMOTE_WILDCARDS = set("*[")  # in a URL, '?' starts the options (root://host//f.root?opt)


def remote_glob(pattern: str) -> list[RemoteUrl]:
    """The files matching a root:// URL with wildcards (``*``, ``[...]``) in its file name,
    sorted, as XRootD lists its folder; wildcards in folder components are refused."""
    location, mark, options = pattern.partition("?")
    folder, _, name = location.rpartition("/")
    if REMOTE_WILDCARDS & set(folder.split("://", 1)[-1]):
        raise InputFileError(
            f"'{pattern}': wildcards are supported in the file name of a root:// URL only, "
            "not in its folders; list the folders one by one"
        )
    ROOT = root()
    handle = ROOT.gSystem.OpenDirectory(folder + "/")
    if not handle:
        raise InputFileError(
            f"cannot list remote folder '{folder}/' for '{pattern}' (it does not exist, the "
            "server cannot be reached, or refuses listing); name the files one by one"
        )
    entries = []
    try:
        while True:
            entry = ROOT.gSystem.GetDirEntry(handle)
            if not entry:
                break
            entries.append(str(entry))
    finally:
        ROOT.gSystem.FreeDirectory(handle)
    matches = sorted(fnmatch.filter(entries, name))
    return [RemoteUrl(f"{folder}/{m}{mark}{options}") for m in matches]


def file_size(path) -> int:
    """Size in bytes of a local file or of a root:// URL (asked from the server)."""
    if not is_remote(path):
        return os.stat(path).st_size
    ROOT = root()
    info = ROOT.FileStat_t()
    if ROOT.gSystem.GetPathInfo(str(path), info) != 0:
        raise InputFileError(f"remote file '{path}' cannot be found on its server")
    return int(info.fSize)


def has_tmva() -> bool:
    """Whether this ROOT build provides TMVA (the pip wheel does not); prints nothing."""
    return _load_quietly("libTMVA", "TMVA::Factory")


def has_pymva() -> bool:
    """Whether this ROOT build provides PyMVA (TMVA's Python methods, e.g. PyKeras)."""
    return has_tmva() and _load_quietly("libPyMVA", "TMVA::MethodPyKeras")


def open_root_file(path: str | os.PathLike, mode: str = "READ"):
    """Open a ROOT file for reading and refuse missing, zombie and recovered files."""
    ROOT = root()
    path = input_path(path)
    remote = isinstance(path, RemoteUrl)
    if remote and mode != "READ":
        raise InputFileError(f"'{path}' is remote: htt_tmva only reads root:// URLs")
    if mode == "READ" and not remote and not path.is_file():
        raise InputFileError(missing_input_message(path))
    try:
        tfile = ROOT.TFile.Open(str(path), mode)
    except OSError:  # the pythonization raises instead of returning a null pointer
        tfile = None
    if remote and (not tfile or tfile.IsZombie()):
        raise InputFileError(
            f"remote file '{path}' cannot be opened: it does not exist on the server, the "
            "server cannot be reached or refuses access (check with `xrdfs <host> stat <path>`"
            " and your token or grid proxy), or it is not a ROOT file"
        )
    if not tfile or tfile.IsZombie():
        raise InputFileError(f"file '{path}' cannot be opened as a ROOT file (zombie)")
    if tfile.TestBit(ROOT.TFile.kRecovered):
        tfile.Close()
        raise InputFileError(
            f"file '{path}' was not closed properly and had to be recovered by ROOT; "
            "refusing to use it (re-create it or check it with `rootls -l`)"
        )
    return tfile


def missing_input_message(path: Path) -> str:
    """``input file 'x' does not exist`` with where it looked and the ROOT files there."""
    from htt_tmva.errors import choices_text

    folder = path.absolute().parent
    if not folder.is_dir():
        return f"input file '{path}' does not exist (folder '{folder}' does not exist)"
    there = sorted(p.name for p in folder.iterdir() if p.suffix == ".root")
    return (
        f"input file '{path}' does not exist (looked in '{folder}'"
        f"{did_you_mean(path.name, there)}; ROOT files there: {choices_text(there[:20])}"
        + (" ...)" if len(there) > 20 else ")")
    )


def get_tree(tfile, tree_path: str):
    """Return the TTree ``tree_path`` of an open file, or a MissingTreeError listing trees."""
    ROOT = root()
    obj = tfile.Get(tree_path)
    if not obj or not isinstance(obj, ROOT.TTree):
        trees = list_trees(tfile)
        raise MissingTreeError(
            f"tree '{tree_path}' not found in file '{tfile.GetName()}'"
            f"{did_you_mean(tree_path, trees)}; trees there: "
            + (", ".join(f"'{t}'" for t in trees) or "(none)")
        )
    return obj


def list_trees(tdirectory, prefix: str = "") -> list[str]:
    """Paths of all TTrees in a directory, recursively (one name per tree, highest cycle)."""
    names = []
    for key in tdirectory.GetListOfKeys():
        cls = key.GetClassName()
        name = f"{prefix}{key.GetName()}"
        if name in names:
            continue
        if cls in ("TTree", "TNtuple", "TNtupleD"):
            names.append(name)
        elif cls.startswith("TDirectory"):
            names.extend(list_trees(key.ReadObj(), prefix=f"{name}/"))
    return names


def branch_names(tree) -> list[str]:
    """Names of the leaves of a tree (the columns RDataFrame sees)."""
    return [str(b.GetName()) for b in tree.GetListOfLeaves()]


@contextlib.contextmanager
def captured_stderr():
    """Capture what C++ (cling) writes to file descriptor 2; yields a list filled on exit."""
    captured: list[str] = []
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile(mode="w+b") as sink:
        os.dup2(sink.fileno(), 2)
        try:
            yield captured
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            sink.seek(0)
            captured.append(sink.read().decode(errors="replace"))


_UNDECLARED = re.compile(r"use of undeclared identifier '([A-Za-z_][A-Za-z0-9_]*)'")


def jit_errors(text: str) -> list[str]:
    """The 'error:' lines of cling's output, deduplicated, in order."""
    lines = [ln.split("error:", 1)[1].strip() for ln in text.splitlines() if "error:" in ln]
    return list(dict.fromkeys(lines))


def compile_expression(
    node, method: str, *args, what: str, columns: list[str], tree: str, file: str
):
    """Call ``node.Filter``/``node.Define`` with a string expression, turning JIT failures
    into clear errors: MissingBranchError for unknown identifiers, ExpressionError otherwise."""
    from htt_tmva.errors import ExpressionError, branch_missing

    with captured_stderr() as out:
        try:
            return getattr(node, method)(*args)
        except Exception as exc:  # cppyy raises a generic Exception subclass
            failure = exc
    messages = jit_errors(out[0]) or [str(failure).strip().splitlines()[-1]]
    unknown = [m.group(1) for m in map(_UNDECLARED.search, messages) if m]
    if unknown:
        error = branch_missing(unknown[0], tree, file, columns)
        raise type(error)(
            f"{what}: {error} (if '{unknown[0]}' is meant as a function, ROOT does not know it)"
        ) from None
    raise ExpressionError(f"{what} does not compile; ROOT says: " + "; ".join(messages)) from None
