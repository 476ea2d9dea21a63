"""Atomic output files: write to a temporary name, verify, then rename.

A failure (or a kill) at any moment leaves either no output or the previous one,
never a file that looks complete but is not. Each file reaches the disk (fsync) before
its rename, and the files are renamed in the order given: list a manifest last, so that
it never describes files that are not in place yet.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from htt_tmva.errors import OutputError


def temporary_name(final: Path) -> Path:
    """Hidden temporary sibling of ``final`` (same folder, so the rename is atomic); it keeps
    the suffix, which some writers (Keras, ROOT) need."""
    return final.with_name(f".{final.stem}.tmp{os.getpid()}{final.suffix}")


def ensure_writable_folder(folder: Path) -> None:
    """Create ``folder`` if needed; refuse clearly if it cannot be written."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(f"cannot create output folder '{folder}': {exc.strerror}") from None
    if not os.access(folder, os.W_OK):
        raise OutputError(f"output folder '{folder}' is not writable")


def fsync_file(path: Path) -> None:
    """Flush a new file to disk before it replaces anything; a failure is an OutputError (and
    stops the commit: only a folder's fsync may be best-effort)."""
    try:
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    except OSError as exc:
        raise OutputError(
            f"cannot flush the new file '{path}' to disk ({exc.strerror}); nothing was replaced"
        ) from None


def fsync_folder(folder: Path) -> None:
    """Make renames in ``folder`` durable; best effort (not every filesystem allows it)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


@contextmanager
def atomic_outputs(finals: Sequence[Path]) -> Iterator[list[Path]]:
    """Yield temporary paths for ``finals``; if the block succeeds, flush each to the disk and
    rename them in the order given (put a manifest last)."""
    finals = [Path(f) for f in finals]
    for folder in {f.parent for f in finals}:
        ensure_writable_folder(folder)
    temps = [temporary_name(f) for f in finals]
    try:
        yield temps
        for tmp in temps:
            fsync_file(tmp)
        for done, (tmp, final) in enumerate(zip(temps, finals)):
            try:
                os.replace(tmp, final)
            except OSError as exc:
                raise OutputError(
                    f"cannot move '{tmp.name}' to '{final}': {exc.strerror}; "
                    + (
                        f"already in place: {', '.join(f.name for f in finals[:done])}"
                        if done
                        else "nothing was replaced"
                    )
                ) from None
        for folder in dict.fromkeys(f.parent for f in finals):
            fsync_folder(folder)
    finally:
        for tmp in temps:
            if tmp.exists():
                tmp.unlink()
