"""The size bound on the stored sweep programs (laimco_jax.sweep.executables: ``max_bytes``, ``evict``).

The references are independent of the eviction loop: the survivors are the newest files whose sizes, summed
from the newest down, stay within the bound (the longest such run), found by trying every run length.
"""

import os
import time
from pathlib import Path
from types import SimpleNamespace

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from laimco_jax.sweep import executables
from laimco_jax.sweep.executables import DEFAULT_MAX_BYTES, MAX_BYTES_VARIABLE, evict, max_bytes

SECOND = 10**9  # [ns]


def stored_files(directory: Path, sizes, mtimes_s) -> list[Path]:
    """``*.exe`` files of the given sizes [bytes] and modification times [s], named in the reverse order of
    their times (so that an order by name would evict the wrong ones)."""
    paths = []
    for i, (size, mtime) in enumerate(zip(sizes, mtimes_s, strict=True)):
        path = directory / f"{len(sizes) - i:03d}.exe"
        path.write_bytes(b"x" * size)
        os.utime(path, ns=(mtime * SECOND, mtime * SECOND))
        paths.append(path)
    return paths


def newest_run_within(paths, sizes, mtimes_s, limit) -> set[Path]:
    """The longest run of the newest files whose total size is at most ``limit``."""
    newest_first = [p for _, p in sorted(zip(mtimes_s, paths, strict=True), reverse=True)]
    size_of = dict(zip(paths, sizes, strict=True))
    for n in range(len(paths), -1, -1):
        if sum(size_of[p] for p in newest_first[:n]) <= limit:
            return set(newest_first[:n])
    raise AssertionError("unreachable: the empty run fits")


def exe_files(directory: Path) -> set[Path]:
    return set(directory.glob("*.exe"))


@pytest.mark.parametrize("limit", [0.3, 0.5, 0.9])
def test_least_recently_used_go_first(tmp_path, limit):
    """Random sizes and times: what is left is the newest run within the bound; other files are untouched."""
    rng = np.random.default_rng(7)
    sizes = [int(s) for s in rng.integers(100, 5000, 20)]
    mtimes = [int(t) for t in rng.permutation(20) + 1_000_000]
    paths = stored_files(tmp_path, sizes, mtimes)
    others = [tmp_path / "a.exe.123.partial", tmp_path / "notes.txt"]
    for path in others:
        path.write_bytes(b"y" * 10**5)
    bound = int(limit * sum(sizes))
    newest = paths[int(np.argmax(mtimes))]
    evict(tmp_path, newest, bound)
    assert exe_files(tmp_path) == newest_run_within(paths, sizes, mtimes, bound)
    assert sum(p.stat().st_size for p in exe_files(tmp_path)) <= bound
    assert newest in exe_files(tmp_path) and all(p.exists() for p in others)


def test_partials_left_by_a_killed_writer_go_once_stale(tmp_path):
    """A ``*.partial`` file (a program being written) older than the stale age is removed by the next
    eviction whatever the bound; a younger one (a write in progress) and the ``*.exe`` files within the
    bound stay."""
    now = int(time.time())
    old = tmp_path / "a.exe.41.partial"
    fresh = tmp_path / "b.exe.42.partial"
    for path, age in ((old, executables.STALE_PARTIAL_SECONDS + 60), (fresh, 5)):
        path.write_bytes(b"y" * 1000)
        os.utime(path, (now - age, now - age))
    paths = stored_files(tmp_path, [100, 100], [now - 10, now - 5])
    evict(tmp_path, paths[1], 0)
    assert not old.exists() and fresh.exists() and exe_files(tmp_path) == set(paths)


def test_the_program_just_stored_is_kept(tmp_path):
    """The kept file stays even when it is the oldest, or larger than the bound alone; the rest go."""
    paths = stored_files(tmp_path, [300, 200, 100], [1_000, 2_000, 3_000])
    evict(tmp_path, paths[0], 250)
    assert exe_files(tmp_path) == {paths[0]}


def test_zero_is_no_bound(tmp_path):
    paths = stored_files(tmp_path, [300, 200, 100], [1_000, 2_000, 3_000])
    evict(tmp_path, paths[-1], 0)
    assert exe_files(tmp_path) == set(paths)


def test_eviction_never_raises(tmp_path, monkeypatch):
    """A missing directory, a file that vanishes before its stat (a dangling link) or before its removal
    (another process evicting it: counted as gone), and one that cannot be removed (counted: the next oldest
    goes instead) raise nothing."""
    evict(tmp_path / "missing", tmp_path / "missing" / "k.exe", 1)
    denied, vanishing, older, newer, kept = stored_files(tmp_path, [100] * 5, [1_000, 2_000, 3_000, 4_000, 5_000])
    (tmp_path / "dangling.exe").symlink_to(tmp_path / "nothing")
    stale = tmp_path / "c.exe.43.partial"  # stale, and cannot be removed either
    stale.write_bytes(b"y")
    os.utime(stale, (1_000, 1_000))
    unlink = Path.unlink

    def flaky_unlink(path, missing_ok=False):
        if path in (denied, stale):
            raise PermissionError(13, "Permission denied", str(path))
        if path == vanishing:
            os.remove(path)
        return unlink(path, missing_ok=missing_ok)

    monkeypatch.setattr(Path, "unlink", flaky_unlink)
    evict(tmp_path, kept, 300)
    assert exe_files(tmp_path) == {denied, newer, kept, tmp_path / "dangling.exe"}
    assert not older.exists() and stale.exists()


def test_the_bound_comes_from_jax_else_the_variable_else_the_default(monkeypatch):
    assert hasattr(jax.config, "jax_compilation_cache_max_size")  # this JAX has the option read first
    monkeypatch.delenv(MAX_BYTES_VARIABLE, raising=False)
    assert max_bytes() == DEFAULT_MAX_BYTES == 2 * 2**30
    monkeypatch.setenv(MAX_BYTES_VARIABLE, " ")
    assert max_bytes() == DEFAULT_MAX_BYTES
    for text, value in [("12345", 12345), ("0", 0), (" 1_000 ", 1000)]:
        monkeypatch.setenv(MAX_BYTES_VARIABLE, text)
        assert max_bytes() == value
    before = jax.config.jax_compilation_cache_max_size
    try:
        jax.config.update("jax_compilation_cache_max_size", 0)  # JAX's "no cache": not a bound
        assert max_bytes() == 1000
        jax.config.update("jax_compilation_cache_max_size", 777)
        assert max_bytes() == 777
    finally:
        jax.config.update("jax_compilation_cache_max_size", before)


@pytest.mark.parametrize("text", ["lots", "-5", "1.5e9", "2GiB"])
def test_a_bad_variable_warns_once_and_gives_the_default(monkeypatch, text):
    monkeypatch.setenv(MAX_BYTES_VARIABLE, text)
    with pytest.warns(UserWarning) as record:
        assert max_bytes() == DEFAULT_MAX_BYTES
    (warning,) = record
    message = str(warning.message)
    assert MAX_BYTES_VARIABLE in message and repr(text) in message and str(DEFAULT_MAX_BYTES) in message
    assert "\n" not in message


def _affine(x):
    return 2.0 * x + 1.0


def test_a_real_round_trip_touches_on_load_and_evicts_the_least_recently_used(tmp_path, monkeypatch):
    """Programs A and B stored, A loaded (not traced: touched), C stored over a bound that holds two: B goes,
    A and C stay and still compute 2x + 1."""
    fn, devices = jax.jit(_affine), jax.devices()[:1]
    cache = tmp_path / "cache"
    directory = cache / executables.SUBDIR
    before = jax.config.jax_compilation_cache_dir
    jax.config.update("jax_compilation_cache_dir", str(cache))
    try:
        monkeypatch.delenv(MAX_BYTES_VARIABLE, raising=False)
        arg = {n: jnp.arange(n, dtype=jnp.float64) for n in (3, 4, 5)}
        executables.compile_cached(fn, (arg[3],), {}, devices)
        (a,) = exe_files(directory)
        executables.compile_cached(fn, (arg[4],), {}, devices)
        (b,) = exe_files(directory) - {a}
        os.utime(a, ns=(1_000 * SECOND,) * 2)  # A older than B, as if stored long ago
        os.utime(b, ns=(2_000 * SECOND,) * 2)

        def traced(*args, **kwargs):
            raise AssertionError("traced")

        untraceable = SimpleNamespace(__module__=fn.__module__, __qualname__=fn.__qualname__, lower=traced)
        loaded = executables.compile_cached(untraceable, (arg[3],), {}, devices)
        np.testing.assert_array_equal(loaded(arg[3]), 2.0 * np.arange(3) + 1.0)
        assert a.stat().st_mtime_ns > b.stat().st_mtime_ns  # loading is a use

        size_a, size_b = a.stat().st_size, b.stat().st_size
        monkeypatch.setenv(MAX_BYTES_VARIABLE, str(size_a + size_b + size_b // 2))
        executables.compile_cached(fn, (arg[5],), {}, devices)
        (c,) = exe_files(directory) - {a, b}
        assert exe_files(directory) == {a, c}
        assert a.stat().st_size + c.stat().st_size <= size_a + size_b + size_b // 2
        for n, path in ((3, a), (5, c)):
            again = executables.compile_cached(untraceable, (arg[n],), {}, devices)
            np.testing.assert_array_equal(again(arg[n]), 2.0 * np.arange(n) + 1.0)
            assert path.exists()
    finally:
        jax.config.update("jax_compilation_cache_dir", before)
