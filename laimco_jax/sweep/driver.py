"""The sweep driver, :func:`run_sweep`: checks, lock, store creation while compiling, the chunks of
this process computed and written in a pipeline, progress, interrupts and resume."""

from __future__ import annotations

import contextlib
import math
import os
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from laimco_jax.params import ConfigError
from laimco_jax.sweep.cells import CellSweepSpec
from laimco_jax.sweep.compute import (
    DEFAULT_CHUNK_SIZE,
    ChunkLayout,
    chunk_layout,
    local_mesh,
)
from laimco_jax.sweep.lock import store_lock
from laimco_jax.sweep.phases import mark
from laimco_jax.sweep.spec import SweepSpec, os_reason
from laimco_jax.sweep.store import (
    PROGRESS,
    check_same_sweep,
    check_size,
    chunks_written,
    create_store,
    finish_store,
    open_arrays,
    work_store,
    write_chunk,
)

_WRITE_THREADS = 4  # variables written at once (file writes overlap)


class Interrupted(KeyboardInterrupt):
    """A Ctrl-C that stopped a sweep (or ``laimco reproduce``); ``message``: one line saying what was
    written and how to resume."""

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


def _barrier(name: str) -> None:
    """Wait for every process (no-op in a single process)."""
    if jax.process_count() > 1:
        from jax.experimental import multihost_utils

        multihost_utils.sync_global_devices(name)


def _progress_bar(enabled: bool):
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        ProgressColumn,
        TaskProgressColumn,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )
    from rich.text import Text

    class RateColumn(ProgressColumn):
        def render(self, task):
            return Text(f"{task.speed:.3g} inst/s" if task.speed else "- inst/s")

    return Progress(
        TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TaskProgressColumn(),
        RateColumn(), TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn(), disable=not enabled,
    )


def _marked(job: Callable[[], object], phase: str) -> Callable[[], object]:
    def run():
        result = job()
        mark(phase)
        return result

    return run


def run_sweep(
    spec: SweepSpec | CellSweepSpec,
    out: str | Path,
    *,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
    resume: bool = False,
    dtype=None,
    progress: bool = False,
    on_chunk: Callable[[int, int], None] | None = None,
    force: bool = False,
) -> Path:
    """Solve every instance of ``spec`` and write the results chunk by chunk to the Zarr store ``out``.

    Args:
      spec: a validated sweep (:func:`build_spec`, or :func:`~laimco_jax.sweep.cells.build_cell_spec`
        for cells of users).
      out: ``NAME.zarr``, the store (a directory), or ``NAME.nc``, a netCDF file converted at the end
        from the work store ``NAME.nc.zarr`` (which is what is resumed and is removed once the netCDF
        file is written). Must not exist unless ``resume``.
      chunk_size: most (P1) instances per chunk (grid points x schemes x splits; a cell sweep: cells x
        objectives x users); ignored on resume (the stored layout is kept).
      resume: continue the sweep stored in ``out`` (which must hold this very spec), computing only
        the chunks not yet done; if ``out`` does not exist, start it.
      dtype: the float dtype of the computation and the results (default float64). The sweep runs
        inside ``jax.enable_x64(True)`` whatever the caller's setting (docs/architecture.md,
        precision policy), so float64 needs no global ``jax_enable_x64``.
      progress: show a progress bar (rate, ETA) on process 0.
      on_chunk: called as ``on_chunk(chunk, instances)`` after each chunk is written and marked done.
      force: skip the check that the rest of the sweep fits on the disk (its uncompressed size).

    Returns:
      ``out`` as a Path; open it with :func:`open_sweep`. Under :mod:`jax.distributed`, every process
      calls this with the same arguments and returns when all are done.

    Raises:
      ConfigError: bad arguments, ``out`` held by another sweep (lock file ``STORE.lock``), too little
        disk space, or a failed write (disk full, read-only), with what was written and how to resume.
      Interrupted: a KeyboardInterrupt, with what was written and how to resume. The store's attribute
        ``complete`` stays false until the last chunk is written.
    """
    out = Path(out)
    store = work_store(out)
    dtype = jnp.dtype(jnp.float64 if dtype is None else dtype)
    if not isinstance(chunk_size, int) or chunk_size < 1:
        raise ConfigError(f"chunk size (--chunk-size, chunk_size) = {chunk_size!r}: must be an integer >= 1 (instances)")
    if store != out and out.exists():  # the netCDF file of a finished sweep
        if not resume:
            raise ConfigError(f"{str(out)!r} exists; pass resume to continue it, or remove it")
        check_same_sweep(out, spec, dtype)
        return out
    resume_hint = f"resume with: laimco sweep --resume --out {out}"
    with jax.enable_x64(True), store_lock(store) if jax.process_index() == 0 else contextlib.nullcontext():
        try:
            _sweep_into(store, out, spec, chunk_size=chunk_size, resume=resume, dtype=dtype, progress=progress,
                        on_chunk=on_chunk, force=force)
        except KeyboardInterrupt as exc:
            raise Interrupted(f"interrupted: {chunks_written(store)}; {resume_hint}") from exc
        except OSError as exc:
            raise ConfigError(
                f"--out {str(out)!r}: writing {exc.filename or store} failed ({os_reason(exc)}); "
                f"{chunks_written(store)}; fix that and {resume_hint}"
            ) from exc
    return out


def _sweep_into(store: Path, out: Path, spec: SweepSpec | CellSweepSpec, *, chunk_size: int, resume: bool, dtype, progress: bool,
                on_chunk: Callable[[int, int], None] | None, force: bool) -> None:
    """:func:`run_sweep` in the store ``store`` of the output ``out``, once it holds the store's lock."""
    _barrier("laimco-sweep-start")
    exists = store.exists()
    if exists and not resume:
        raise ConfigError(f"{str(store)!r} exists; pass resume to continue it, or remove it")
    if exists:
        layout = ChunkLayout(spec.shape, tuple(check_same_sweep(store, spec, dtype)["chunk_block"]))
        chunks_left = int(np.sum(open_arrays(store, spec)[PROGRESS][:] == 0))
    else:
        layout = chunk_layout(spec.shape, chunk_size // math.prod(spec.inner_shape))
        chunks_left = layout.num_chunks
    if not force:
        check_size(out, spec, layout, dtype, chunks_left)
    _compute(store, spec, layout, dtype, create=not exists, progress=progress, on_chunk=on_chunk)
    _barrier("laimco-sweep-done")
    mark("chunks done")
    if jax.process_index() == 0:
        finish_store(store, out)
        mark("store finished")
    _barrier("laimco-sweep-finished")


def _compute(store: Path, spec: SweepSpec | CellSweepSpec, layout: ChunkLayout, dtype, *, create: bool, progress: bool,
             on_chunk: Callable[[int, int], None] | None) -> None:
    """Create the store (if ``create``) while compiling, then compute and write this process's chunks not done.

    The writer thread's pool is left before the file-writing pool, so every chunk handed to it is
    written whole and marked done even when a KeyboardInterrupt unwinds this.
    """
    evaluator = spec.evaluator(layout, local_mesh(), dtype)
    mark("evaluator")
    per_point = math.prod(spec.inner_shape)
    who = f" (process {jax.process_index()} of {jax.process_count()})" if jax.process_count() > 1 else ""
    with (
        _progress_bar(progress and jax.process_index() == 0) as bar,
        ThreadPoolExecutor(min(len(evaluator.compile_jobs), os.cpu_count() or 1)) as compiler,
        ThreadPoolExecutor(_WRITE_THREADS) as io,
        ThreadPoolExecutor(1) as writer,
    ):
        task = bar.add_task(f"compiling {len(evaluator.compile_jobs)} program(s){who}", total=None)
        compiled = [compiler.submit(_marked(job, "compiled")) for job in evaluator.compile_jobs]  # while the store is prepared
        _barrier("laimco-sweep-checked")
        if create and jax.process_index() == 0:
            create_store(store, spec, layout, dtype)
            mark("store created")
        _barrier("laimco-sweep-created")
        arrays = open_arrays(store, spec)
        todo = np.flatnonzero(arrays[PROGRESS][:] == 0)
        mark("store opened")
        _barrier("laimco-sweep-progress-read")
        mine = todo[jax.process_index() :: jax.process_count()]
        total = per_point * sum(math.prod(r.stop - r.start for r in layout.region(int(c))) for c in mine)
        for job in compiled:
            job.result()
        mark("compile waited for")
        bar.reset(task, total=total, description=f"sweep{who}")  # rate and ETA count from here
        pending: deque = deque()

        def finish():
            chunk, future = pending.popleft()
            instances = future.result() * per_point
            bar.advance(task, instances)
            if on_chunk is not None:
                on_chunk(chunk, instances)
            mark("chunk written")

        for chunk in map(int, mine):
            outputs = evaluator.evaluate(chunk)  # dispatched; the writer thread waits for it
            pending.append((chunk, writer.submit(write_chunk, arrays, layout, chunk, outputs, io, evaluator.host)))
            if len(pending) > 1:
                finish()
        while pending:
            finish()
