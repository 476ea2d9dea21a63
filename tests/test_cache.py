"""The cache of compiled libraries: nothing is loaded from a cache that someone else could
write; builds leave no scratch files or empty folders; the least recently used entries go."""

from __future__ import annotations

import ctypes
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import htt_tmva

from htt_tmva import _cache
from htt_tmva.errors import CacheError, ExportError

ANSWER = 'extern "C" int answer() { return 42; }\n'
#: a library that leaves a mark as soon as it is loaded (its constructor runs)
PLANTED = (
    "#include <cstdio>\n#include <cstdlib>\n"
    "__attribute__((constructor)) static void planted() {\n"
    '  if (FILE* f = std::fopen(std::getenv("HTT_TMVA_PLANTED_MARK"), "w")) std::fclose(f);\n'
    "}\n"
    'extern "C" int answer() { return 666; }\n'
)


@pytest.fixture
def cache(tmp_path, monkeypatch) -> Path:
    if _cache.compiler() is None:
        pytest.skip("no C++ compiler")
    monkeypatch.setenv("HTT_TMVA_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("HTT_TMVA_PLANTED_MARK", str(tmp_path / "mark"))
    return tmp_path / "cache"


def plant(library: Path) -> None:
    """A library that someone else put where ours would be."""
    source = library.with_name("planted.cxx")
    source.write_text(PLANTED)
    command = [_cache.compiler(), "-shared", "-fPIC", str(source), "-o", str(library)]
    subprocess.run(command, check=True)
    source.unlink()


def unsafe_variants(root: Path, library: Path):
    """Each way in which a library in the cache may not be trusted; yields its name, restoring
    the safe state after each."""
    for path, mode, name in [
        (root, 0o775, "cache folder writable by its group"),
        (library.parent, 0o777, "entry folder writable by anyone"),
        (library, 0o775, "library writable by its group"),
    ]:
        before = path.stat().st_mode
        path.chmod(mode)
        yield name
        path.chmod(before)
    if os.getuid() == 0:  # only root can give a file away
        os.chown(library, 65534, 65534)
        yield "library of another user"
        os.chown(library, 0, 0)
    target = library.with_name("elsewhere.so")
    library.rename(target)
    library.symlink_to(target)
    yield "library a symbolic link"
    library.unlink()
    target.rename(library)


def test_a_library_planted_in_an_unsafe_cache_is_never_loaded(cache, tmp_path):
    library = cache / "entry" / "htt_tmva_test_entry.so"
    assert ctypes.CDLL(str(_cache.build(ANSWER, library, _cache.compiler(), "a test"))).answer()
    plant(library)
    assert not (tmp_path / "mark").exists()
    for variant in unsafe_variants(cache, library):
        with pytest.raises(CacheError, match="nothing is loaded|not a regular file"):
            _cache.build(ANSWER, library, _cache.compiler(), "a test")
        assert not (tmp_path / "mark").exists(), variant
    # the safe state again: the library there is used as it is (the user's own)
    assert _cache.build(ANSWER, library, _cache.compiler(), "a test") == library


def test_the_bdt_kernel_is_not_loaded_from_an_unsafe_cache(cache, tmp_path, caplog):
    from htt_tmva.engines import _forest_kernel

    library = _forest_kernel.build_library()
    plant(library)
    cache.chmod(0o777)
    assert _forest_kernel.native_kernel() is None
    assert "writable by its group or by anyone" in caplog.text
    assert not (tmp_path / "mark").exists()


def test_new_cache_files_are_private_whatever_the_umask(cache):
    old = os.umask(0o002)
    try:
        library = _cache.build(ANSWER, cache / "entry" / "htt_tmva_test_umask.so", "c++", "a")
    finally:
        os.umask(old)
    for path in (cache, library.parent, library, library.with_suffix(".cxx")):
        assert not path.stat().st_mode & 0o022, path
    assert _cache.build(ANSWER, library, _cache.compiler(), "a test") == library


def test_a_failed_compile_leaves_no_file_and_no_folder(cache):
    with pytest.raises(ExportError, match="compiling a test failed"):
        _cache.build("not C++", cache / "entry" / "htt_tmva_bad.so", _cache.compiler(), "a test")
    assert list(cache.iterdir()) == []


def test_an_unwritable_cache_is_a_clear_error(tmp_path, monkeypatch):
    blocker = tmp_path / "a_file"
    blocker.write_text("")
    monkeypatch.setenv("HTT_TMVA_CACHE", str(blocker / "cache"))
    with pytest.raises(CacheError, match="cannot create the cache folder .*HTT_TMVA_CACHE"):
        _cache.entry_folder("entry")


def test_processes_building_the_kernel_at_once_with_one_pid_all_get_it(cache):
    """Batch jobs on different machines may have the same process id: the scratch files are
    unique anyway, and no truncated library is ever cached."""
    script = (
        "import os; os.getpid = lambda: 4242\n"
        "from htt_tmva.engines import _forest_kernel\n"
        "assert _forest_kernel.build_library() is not None\n"
    )
    processes = [
        subprocess.Popen([sys.executable, "-c", script], stderr=subprocess.PIPE) for _ in range(3)
    ]
    for process in processes:
        _, stderr = process.communicate(timeout=600)
        assert process.returncode == 0, stderr.decode()
    from htt_tmva.engines import _forest_kernel

    kernel = _forest_kernel.native_kernel()
    x = np.zeros((3, 1), dtype=np.float32)
    one_tree = [np.zeros((1, 1), np.int32), np.zeros((1, 1), np.float32), np.ones((1, 2))]
    sums = _forest_kernel.compiled_sums(x, 1, *one_tree, np.zeros(1, np.int32), 1, kernel)
    np.testing.assert_array_equal(sums, np.ones((3, 1)))
    files = [p.name for p in kernel.library_path.parent.iterdir()]
    assert sorted(Path(f).suffix for f in files) == [".cxx", ".so"], files


def test_least_recently_used_entries_are_pruned_beyond_the_limit(cache, monkeypatch):
    for i, name in enumerate(["old", "middle", "new"]):
        folder = _cache.entry_folder(name)
        (folder / "lib.so").write_bytes(b"x" * 400_000)
        os.utime(folder, (time.time() - 7200 + 100 * i,) * 2)
    monkeypatch.setenv("HTT_TMVA_CACHE_MAX_MB", "1")
    library = _cache.build(ANSWER, cache / "fresh" / "htt_tmva_fresh.so", "c++", "a test")
    assert sorted(p.name for p in cache.iterdir()) == ["fresh", "middle", "new"]
    assert library.is_file()


def test_cache_list_and_clean(cache, tmp_path):
    for name in ("a", "b"):
        (_cache.entry_folder(name) / "lib.so").write_bytes(b"x" * 1000)
    result = htt_tmva("cache", "list", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "in 2 entries" in result.stdout
    result = htt_tmva("cache", "clean", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "removed 2 entries" in result.stderr
    assert list(cache.iterdir()) == []


def test_a_bad_size_limit_names_the_variable(cache, monkeypatch):
    monkeypatch.setenv("HTT_TMVA_CACHE_MAX_MB", "lots")
    with pytest.raises(Exception, match="HTT_TMVA_CACHE_MAX_MB must be a number"):
        _cache.max_bytes()
