"""The cache of compiled libraries: where it is, whether it may be trusted, building, pruning.

A library from the cache is loaded into the process and run, so a file that someone else could
have put there must never be loaded. The cache (``$HTT_TMVA_CACHE``, else
``$XDG_CACHE_HOME/htt_tmva``, else ``~/.cache/htt_tmva``), each of its entries (one folder per
content digest) and each file loaded from it must belong to the current user and be writable by
nobody else (no group or world write bit; no symbolic link for a file); anything else is a
:class:`CacheError`, and callers fall back to code that loads nothing from the cache. New
folders are made ``0700``, new libraries ``0755`` whatever the umask.

Each use of an entry touches its folder (its time of last use); after a build, the least
recently used entries are removed while the cache is larger than ``$HTT_TMVA_CACHE_MAX_MB``
(default 2000; 0: no limit). ``htt-tmva cache list`` and ``htt-tmva cache clean`` show and
empty it.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import stat
import subprocess
import tempfile
import time
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from htt_tmva.errors import CacheError, ConfigError, ExportError

log = logging.getLogger(__name__)

#: no fused multiply-adds: the per-event and the batched code give the same bits
FLAGS = ("-std=c++17", "-O3", "-ffp-contract=off", "-shared", "-fPIC")
NATIVE = "-march=native"
DEFAULT_MAX_MB = 2000
#: entries used within this many seconds are never pruned automatically (another process
#: may be about to load them)
RECENT_S = 3600


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


def _advice() -> str:
    return (
        "set HTT_TMVA_CACHE to a folder of your own that only you can write (or fix the "
        "owner and permissions)"
    )


def check_trusted(path: Path, folder: bool) -> None:
    """Refuse (CacheError) a cache folder or file that another user owns, that the group or
    the world may write, or (a file) that is not a regular file."""
    try:
        info = os.stat(path) if folder else os.lstat(path)
    except OSError as exc:
        raise CacheError(f"cannot read the cache path '{path}' ({exc.strerror})") from None
    kind = "folder" if folder else "file"
    if folder and not stat.S_ISDIR(info.st_mode):
        raise CacheError(f"the cache folder '{path}' is not a folder; {_advice()}")
    if not folder and not stat.S_ISREG(info.st_mode):
        raise CacheError(f"the cache file '{path}' is not a regular file: not loaded; {_advice()}")
    if info.st_uid != os.getuid():
        raise CacheError(
            f"the cache {kind} '{path}' belongs to another user (uid {info.st_uid}): nothing is "
            f"loaded from it; {_advice()}"
        )
    if info.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        raise CacheError(
            f"the cache {kind} '{path}' is writable by its group or by anyone (mode "
            f"{stat.S_IMODE(info.st_mode):o}): nothing is loaded from it; {_advice()}"
        )


def entry_folder(name: str, create: bool = True) -> Path:
    """The trusted folder of cache entry ``name`` (made, with the cache, if missing)."""
    return trusted_folder(cache_folder() / name, create)


def trusted_folder(folder: Path, create: bool = True) -> Path:
    """``folder`` (an entry) after checking it and the cache folder holding it; made (0700)
    if missing and ``create``."""
    root = folder.parent
    if not create and not root.exists():
        return folder
    try:
        if create and not root.exists():
            root.parent.mkdir(parents=True, exist_ok=True)
            root.mkdir(mode=0o700, exist_ok=True)
        check_trusted(root, folder=True)
        if create:
            folder.mkdir(mode=0o700, exist_ok=True)
        if folder.exists():
            check_trusted(folder, folder=True)
    except OSError as exc:
        raise CacheError(
            f"cannot create the cache folder '{folder}' ({exc.strerror}); set HTT_TMVA_CACHE "
            "to a writable folder"
        ) from None
    return folder


def trusted_library(library: Path) -> Optional[Path]:
    """``library`` if it is in the cache and trusted (touched: used now), None if missing."""
    trusted_folder(library.parent, create=False)
    if not os.path.lexists(library):
        return None
    check_trusted(library, folder=False)
    touch(library.parent)
    return library


def touch(folder: Path) -> None:
    with contextlib.suppress(OSError):  # a read-only cache
        os.utime(folder)


def write_text(path: Path, text: str) -> None:
    """Write a text file of the cache atomically (a unique temporary name, then a rename)."""
    fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
        os.chmod(temporary, 0o644)
        os.replace(temporary, path)
    finally:
        if os.path.lexists(temporary):
            os.unlink(temporary)


def build(
    source: str,
    library: Path,
    cxx: str,
    what: str,
    extra: Sequence[str] = (),
    flags: Sequence[str] = FLAGS,
) -> Path:
    """Compile ``source`` into ``library`` (kept when it exists: the cache) and return it.

    ``library`` is ``<cache>/<entry>/<name>.so`` (both folders checked). Libraries get names
    of their own: ROOT does not load a second library of a loaded name. Processes may build
    the same library at the same time (batch jobs sharing a home folder): each compiles into
    unique temporary files of the entry folder, and the library appears by an atomic rename.
    A failed build leaves no file and no new empty folder (ExportError); an unusable cache
    is a CacheError."""
    library = Path(library)
    folder = trusted_folder(library.parent)
    found = trusted_library(library)
    if found is not None:
        log.info("compiled %s found in the cache: %s", what, library)
        return found
    log.info("compiling %s with %s -O3 (once; cached in %s)", what, Path(cxx).name, folder)
    try:
        fd, cxx_file = tempfile.mkstemp(dir=folder, prefix=f".{library.stem}.", suffix=".cxx")
        with os.fdopen(fd, "w") as f:
            f.write(source)
        fd, temporary = tempfile.mkstemp(dir=folder, prefix=f".{library.name}.")
        os.close(fd)
    except OSError as exc:
        _remove_if_empty(folder)
        raise CacheError(
            f"cannot write into the cache folder '{folder}' ({exc.strerror}); set "
            "HTT_TMVA_CACHE to a writable folder"
        ) from None
    command = [cxx, *flags, cxx_file, "-o", temporary, *extra]
    try:
        result = subprocess.run([*command, NATIVE], capture_output=True, text=True)
        if result.returncode != 0 and NATIVE in result.stderr:  # a compiler without it
            result = subprocess.run(command, capture_output=True, text=True)
        if result.returncode != 0:
            raise ExportError(f"compiling {what} failed ({cxx}):\n{result.stderr.strip()[-2000:]}")
        os.chmod(temporary, 0o755)
        os.chmod(cxx_file, 0o644)
        os.replace(temporary, library)
        os.replace(cxx_file, folder / f"{library.stem}.cxx")  # the source, for reading
    except OSError as exc:
        raise CacheError(f"cannot write the library '{library}' ({exc.strerror})") from None
    finally:
        for scratch in (temporary, cxx_file):
            if os.path.lexists(scratch):
                os.unlink(scratch)
        _remove_if_empty(folder)
    prune(keep={folder.name})
    return library


def _remove_if_empty(folder: Path) -> None:
    with contextlib.suppress(OSError):  # not empty (or gone)
        folder.rmdir()


@dataclass
class Entry:
    path: Path
    size: int  # bytes
    used: float  # time of last use (the folder's mtime)


def entries() -> list[Entry]:
    """The cache's entries, least recently used first."""
    root = cache_folder()
    if not root.is_dir():
        return []
    found = []
    for folder in root.iterdir():
        if folder.is_dir() and not folder.is_symlink():
            size = sum(f.stat().st_size for f in folder.rglob("*") if f.is_file())
            found.append(Entry(folder, size, folder.stat().st_mtime))
    return sorted(found, key=lambda e: e.used)


def max_bytes() -> int:
    """The size limit of ``$HTT_TMVA_CACHE_MAX_MB`` in bytes (0: none)."""
    value = os.environ.get("HTT_TMVA_CACHE_MAX_MB", "").strip() or str(DEFAULT_MAX_MB)
    try:
        megabytes = float(value)
    except ValueError:
        raise ConfigError(
            f"HTT_TMVA_CACHE_MAX_MB must be a number of megabytes (0: no limit), got '{value}'"
        ) from None
    return int(max(megabytes, 0) * 1e6)


def clean(limit: int = 0, keep: Collection[str] = (), older_than: float = 0) -> list[Entry]:
    """Remove the least recently used entries until the cache holds at most ``limit`` bytes,
    sparing ``keep`` (entry names) and entries used within ``older_than`` seconds; return the
    removed entries."""
    found = entries()
    total = sum(e.size for e in found)
    removed = []
    now = time.time()
    for entry in found:
        if total <= limit:
            break
        if entry.path.name in keep or now - entry.used < older_than:
            continue
        shutil.rmtree(entry.path, ignore_errors=True)
        total -= entry.size
        removed.append(entry)
    return removed


def prune(keep: Collection[str]) -> None:
    """After a build: the least recently used entries beyond ``$HTT_TMVA_CACHE_MAX_MB``."""
    limit = max_bytes()
    if limit <= 0:
        return
    removed = clean(limit, keep=keep, older_than=RECENT_S)
    if removed:
        log.info(
            "removed %d least recently used compiled libraries (%.0f MB) from the cache %s "
            "(HTT_TMVA_CACHE_MAX_MB=%.0f)",
            len(removed),
            sum(e.size for e in removed) / 1e6,
            cache_folder(),
            limit / 1e6,
        )
