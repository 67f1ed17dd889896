"""Compiled chunk programs kept on disk, so that a later sweep of the same structure skips tracing and
lowering as well as compiling.

JAX's persistent compilation cache (``jax_compilation_cache_dir``, which ``laimco`` turns on) is keyed
by the lowered program, so a sweep that hits it still traces and lowers the solver first: about half a
second of Python (holding the GIL) before a 10⁶-point sweep can start. :func:`compile_cached` keys the
serialized executable instead by everything the lowering depends on, known before tracing: the source of
every ``laimco_jax`` module, the jitted function, its static arguments, the structure, shapes, dtypes,
weak types and shardings of its arguments, JAX's, jaxlib's and NumPy's versions, every JAX configuration value
(as seen from the calling thread), ``XLA_FLAGS`` and ``LIBTPU_INIT_ARGS``, the backend and the devices.
Anything else changes nothing: the stored program is the one ``jit(...).lower(...).compile()`` made, and
loading it (:func:`jax.experimental.serialize_executable.deserialize_and_load`) is what JAX's own cache
does on a hit. So results are bit-identical with and without it.

The files go to ``DIR/laimco-sweep-executables/`` under ``jax_compilation_cache_dir`` (JAX's cache
ignores subdirectories); there is no cache without that setting. A file that cannot be read, or whose
program cannot be loaded, is compiled again and replaced; a file that cannot be written is skipped.
A program is stored as soon as it is compiled, before it first runs (as JAX's cache does): one that a
thread serialized while the sweep ran it lacked kernels ("Function ... not found" once loaded).

The directory is bounded in size (:func:`max_bytes`): after a program is stored, while the ``*.exe`` files
together exceed the bound, the least recently used one goes (the oldest modification time: loading a
program touches its file, so "used" is loaded or stored), never the one just stored (:func:`evict`). The
bound [bytes] is JAX's ``jax_compilation_cache_max_size`` where that is positive (the same number as JAX's own
cache, counted apart from it), else ``$LAIMCO_SWEEP_EXECUTABLES_MAX_BYTES`` (a whole number of bytes; 0: no
bound), else :data:`DEFAULT_MAX_BYTES` (2 GiB); a value of the variable that is not a whole number >= 0 gives
one warning and the default. Eviction never fails a sweep: a file that vanishes meanwhile (another process
evicting too) or cannot be removed is passed over. A program is written to a ``*.partial`` file first and
renamed when complete; one that a killed process left behind is removed at the next eviction once it is
:data:`STALE_PARTIAL_SECONDS` old (a write takes seconds).
"""

from __future__ import annotations

import hashlib
import os
import pickle
import time
import warnings
import zlib
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import jax
import numpy as np

SUBDIR = "laimco-sweep-executables"
#: The bound [bytes] on the stored programs' total size where neither JAX's nor the variable sets one: 2 GiB.
DEFAULT_MAX_BYTES = 2 * 1024**3
MAX_BYTES_VARIABLE = "LAIMCO_SWEEP_EXECUTABLES_MAX_BYTES"
#: Age [s] after which a ``*.partial`` file (a program being written) is taken as left by a killed process.
STALE_PARTIAL_SECONDS = 3600
_FORMAT = "laimco-sweep-executable-1"
_source_digest: str | None = None


def _source() -> str:
    """SHA-256 of every module of the ``laimco_jax`` package (path and text), computed once per process;
    empty when no source is found (then nothing is cached)."""
    global _source_digest
    if _source_digest is None:
        root = Path(__file__).resolve().parents[1]
        digest, found = hashlib.sha256(), False
        for path in sorted(root.rglob("*.py")):
            digest.update(str(path.relative_to(root)).encode() + b"\0" + path.read_bytes() + b"\0")
            found = True
        _source_digest = digest.hexdigest() if found else ""
    return _source_digest


def _leaf(x: Any) -> tuple:
    sharding = getattr(x, "sharding", None)
    dtype = x.dtype if hasattr(x, "dtype") else np.asarray(x).dtype
    return (tuple(np.shape(x)), str(dtype), bool(getattr(x, "weak_type", False)),
            repr(sharding), repr(getattr(sharding, "device_set", None) and sorted(d.id for d in sharding.device_set)))


def cache_key(fn: Callable, args: Sequence[Any], static: Mapping[str, Any], devices: Sequence[Any]) -> str:
    """The key of ``fn`` (a jitted function) lowered at ``args`` with the static arguments ``static`` for ``devices``."""
    import jaxlib

    from laimco_jax import __version__

    leaves, tree = jax.tree_util.tree_flatten(tuple(args))
    backend = devices[0].client
    config = {name: repr(getattr(jax.config, name, value)) for name, value in jax.config.values.items()
              if not name.startswith(("jax_compilation_cache", "jax_persistent_cache", "jax_log", "jax_explain"))}
    parts = [
        _FORMAT, _source(), __version__, jax.__version__, jaxlib.__version__, np.__version__,
        f"{getattr(fn, '__module__', '')}.{getattr(fn, '__qualname__', repr(fn))}",
        repr(sorted(static.items())), str(tree), repr([_leaf(x) for x in leaves]), repr(sorted(config.items())),
        os.environ.get("XLA_FLAGS", ""), os.environ.get("LIBTPU_INIT_ARGS", ""),
        backend.platform, backend.platform_version, str(jax.process_count()),
        repr([(d.id, d.device_kind, d.process_index) for d in devices]),
    ]
    return hashlib.sha256("\0".join(parts).encode()).hexdigest()


def _directory() -> Path | None:
    root = jax.config.jax_compilation_cache_dir
    return Path(root) / SUBDIR if root else None


def compile_cached(fn, args: Sequence[Any], static: Mapping[str, Any], devices: Sequence[Any]):
    """``fn.lower(*args, **static).compile()``, or the same program loaded from the cache (see the module)."""
    directory = _directory()
    if directory is None or not _source():
        return fn.lower(*args, **static).compile()
    path = directory / f"{cache_key(fn, args, static, devices)}.exe"
    loaded = _load(path, devices)
    if loaded is not None:
        return loaded
    compiled = fn.lower(*args, **static).compile()
    _save(compiled, path)  # before the program first runs (as JAX's cache: one serialized while it ran lacked kernels)
    return compiled


def _load(path: Path, devices: Sequence[Any]):
    """The program stored at ``path``, or None: none yet, or an unreadable or stale file (compile it again)."""
    from jax.experimental.serialize_executable import deserialize_and_load

    try:
        payload, in_tree, out_tree = pickle.loads(zlib.decompress(path.read_bytes()))
        loaded = deserialize_and_load(payload, in_tree, out_tree, backend=devices[0].client, execution_devices=devices)
    except Exception:  # noqa: BLE001 (whatever a bad file raises, it is compiled again)
        return None
    try:
        os.utime(path)  # used now: the last to be evicted
    except OSError:
        pass
    return loaded


def _save(compiled, path: Path) -> None:
    """Store ``compiled`` at ``path`` (written aside, then renamed), then bound the directory (:func:`evict`)."""
    partial = path.with_name(f"{path.name}.{os.getpid()}.partial")
    try:
        from jax.experimental.serialize_executable import serialize

        data = zlib.compress(pickle.dumps(serialize(compiled)), 1)
        path.parent.mkdir(parents=True, exist_ok=True)
        partial.write_bytes(data)
        os.replace(partial, path)
    except Exception:  # noqa: BLE001 (no room, read-only, a program that cannot be serialized: just not cached)
        partial.unlink(missing_ok=True)
        return
    evict(path.parent, path, max_bytes())


def max_bytes() -> int:
    """The bound [bytes] on the total size of the stored programs, 0 for none (the module docstring): JAX's
    ``jax_compilation_cache_max_size`` if positive, else :data:`MAX_BYTES_VARIABLE` if set (empty: unset),
    else :data:`DEFAULT_MAX_BYTES`. A value of the variable that is not a whole number >= 0: a warning
    naming the variable, the value and the default, then the default."""
    jax_bound = getattr(jax.config, "jax_compilation_cache_max_size", -1)
    if isinstance(jax_bound, int) and jax_bound > 0:
        return jax_bound
    text = os.environ.get(MAX_BYTES_VARIABLE, "").strip()
    if not text:
        return DEFAULT_MAX_BYTES
    try:
        value = int(text)
    except ValueError:
        value = -1
    if value < 0:
        default = f"{DEFAULT_MAX_BYTES} ({DEFAULT_MAX_BYTES / 2**30:g} GiB)"
        warnings.warn(f"{MAX_BYTES_VARIABLE}={text!r} is not a whole number of bytes >= 0 (0: no bound); "
                      f"bounding the stored sweep programs by the default, {default}", stacklevel=2)
        return DEFAULT_MAX_BYTES
    return value


def _stored(directory: Path) -> list[tuple[int, int, Path]]:
    """(modification time [ns], size [bytes], path) of each ``*.exe`` file of ``directory``, least recently
    used first; those that vanish while listed are left out, and none where the directory cannot be read."""
    entries = []
    try:
        for path in directory.glob("*.exe"):
            try:
                stat = path.stat()
            except OSError:
                continue
            entries.append((stat.st_mtime_ns, stat.st_size, path))
    except OSError:
        return []
    return sorted(entries, key=lambda entry: (entry[0], entry[2].name))


def _remove_stale_partials(directory: Path) -> None:
    """Remove the ``*.partial`` files of ``directory`` last modified :data:`STALE_PARTIAL_SECONDS` or more
    ago (left by a process killed while writing); never raises."""
    try:
        partials = list(directory.glob("*.partial"))
    except OSError:
        return
    cutoff = time.time() - STALE_PARTIAL_SECONDS
    for path in partials:
        try:
            if path.stat().st_mtime <= cutoff:
                path.unlink(missing_ok=True)
        except OSError:
            continue


def evict(directory: Path, keep: Path, limit: int) -> None:
    """Remove the least recently used ``*.exe`` files of ``directory`` (oldest modification time first) until
    they total at most ``limit`` [bytes] (0: no bound), never ``keep`` (the program just stored), and stale
    ``*.partial`` files (:func:`_remove_stale_partials`). Never raises: a file that vanishes meanwhile
    (another process evicting) counts as removed, one that cannot be removed stays counted and the next
    goes instead."""
    _remove_stale_partials(directory)
    entries = _stored(directory)
    total = sum(size for _, size, _ in entries)
    for _, size, path in entries:
        if not limit or total <= limit:
            return
        if path == keep:
            continue
        try:
            path.unlink(missing_ok=True)
        except OSError:
            continue
        total -= size
