"""``laimco sweep``: a sweep from a spec file and/or command-line options, run or resumed
(:mod:`laimco_jax.sweep`), optionally as one process of a multi-host run (:mod:`jax.distributed`);
with ``--users FILE.toml`` a sweep of cells of users (:mod:`laimco_jax.sweep.cells`)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from laimco_jax.params import ConfigError
from laimco_jax.sweep import (
    DEFAULT_CHUNK_SIZE,
    build_cell_spec,
    build_spec,
    parse_grid_option,
    read_spec_file,
    run_sweep,
    stored_spec,
)
from laimco_jax.sweep.phases import mark


def _grid_options(items: Sequence[str] | None) -> dict[str, np.ndarray]:
    """``--grid FIELD=SPEC`` items -> ``{field: values}``; ConfigError if a field is given twice."""
    grid: dict[str, np.ndarray] = {}
    for item in items or ():
        name, values = parse_grid_option(item)
        if name in grid:
            raise ConfigError(f"--grid {item!r}: field {name!r} already has an axis from an earlier --grid; "
                              "give each field once")
        grid[name] = values
    return grid


_CELL_FLAGS = {"num_users": "--num-users", "draws": "--draws", "seed": "--seed", "distance_range": "--distance-range",
               "objectives": "--objective"}
_SINGLE_FLAGS = {"preset": "--preset", "model": "--model", "config": "--config", "overrides": "--set",
                 "points": "--points", "splits": "--split", "schemes": "--scheme", "gradients": "--gradient",
                 "spec": "--spec", "fading": "--fading", "samples": "--samples", "reduce_only": "--reduce-only"}


def run_sweep_from_cli(
    *,
    preset: str | None = None,
    model: str | None = None,
    config: Path | None = None,
    overrides: Mapping[str, str] | None = None,
    grids: Sequence[str] | None = None,
    points: Path | None = None,
    splits: str | None = None,
    schemes: str | None = None,
    out: Path | None = None,
    spec: Path | None = None,
    resume: bool = False,
    chunk_size: int | None = None,
    distributed: bool = False,
    progress: bool = True,
    gradients: Sequence[str] | None = None,
    force: bool = False,
    users: Path | None = None,
    num_users: str | None = None,
    draws: int | None = None,
    seed: int | None = None,
    distance_range: str | None = None,
    objectives: str | None = None,
    fading: str | None = None,
    samples: int | None = None,
    reduce_only: bool = False,
) -> Path:
    """``laimco sweep``: build the spec from a spec file and/or options, then run or resume it.

    Options given (not None) override the spec file's (``grids`` per field, ``overrides`` per key);
    ``gradients`` are ``OUTPUT/FIELD`` items (spec file key ``gradient``, a list);
    ``preset`` and ``model`` default to the file's, else ``paper`` and ``bert-base``. ``resume`` with
    none of preset/model/config/overrides/grids/points/splits/schemes/spec continues the sweep stored
    in ``out`` as it was started. ``distributed`` calls ``jax.distributed.initialize()`` first (SLURM and other
    clusters: see :mod:`laimco_jax.sweep`). ``out`` defaults to ``sweep.zarr``; ``force`` skips the disk
    space check (see :func:`~laimco_jax.sweep.run_sweep`). Returns ``out``.

    ``users`` (a cell file) makes it a cell sweep (:func:`~laimco_jax.sweep.build_cell_spec`): ``grids``
    and ``num_users``, ``draws``, ``seed``, ``distance_range``, ``objectives`` (which need ``users``)
    build it; the single-user options and ``spec`` are refused with it.

    ``fading`` (a model of :func:`~laimco_jax.fading.parse_fading`), ``samples``, ``seed`` and
    ``reduce_only`` make a single-user sweep a fading sweep (:mod:`laimco_jax.sweep.fading`): N channel
    draws per grid point, their reductions, and unless ``reduce_only`` a ``sample`` dim; ``seed`` is
    then the draws' seed (with ``users``, the seed of the drawn distances).
    """
    mark("imports")
    if distributed:
        jax.distributed.initialize()
    options = read_spec_file(spec) if spec is not None else {}
    out = Path(out or options.pop("out", None) or "sweep.zarr")
    file_chunk_size = options.pop("chunk_size", DEFAULT_CHUNK_SIZE)
    chunk_size = file_chunk_size if chunk_size is None else chunk_size
    options.pop("out", None)
    given = {"preset": preset, "model": model, "config": config, "points": points, "splits": splits,
             "schemes": schemes, "gradients": gradients, "fading": fading, "samples": samples,
             "reduce_only": reduce_only or None}
    grid = _grid_options(grids)
    cell = {"num_users": num_users, "draws": draws, "seed": seed, "distance_range": distance_range,
            "objectives": objectives}
    fading_sweep = fading is not None or options.get("fading") is not None
    if users is None and any(v is not None for k, v in cell.items() if k != "seed" or not fading_sweep):
        flags = [_CELL_FLAGS[k] for k, v in cell.items() if v is not None]
        raise ConfigError(f"{', '.join(flags)}: only with --users FILE.toml (a sweep of cells of users)"
                          + (" or, for --seed, with --fading MODEL (the seed of the channel draws)" if seed is not None else ""))
    if users is None and seed is not None:
        given["seed"] = seed
    if users is not None:
        single = [_SINGLE_FLAGS[k] for k, v in {**given, "overrides": overrides, "spec": spec}.items() if v]
        if single:
            raise ConfigError(f"--users: a cell sweep takes --grid and {', '.join(_CELL_FLAGS.values())}, "
                              f"not {', '.join(single)}")
        sweep = build_cell_spec(users, grid=grid, **cell)
    elif resume and not options and not grid and not overrides and all(v is None for v in given.values()):
        sweep = stored_spec(out)
    else:
        options.update({k: v for k, v in given.items() if v is not None})
        options["overrides"] = {**options.get("overrides", {}), **(overrides or {})}
        options["grid"] = {**options.get("grid", {}), **grid}
        sweep = build_spec(**options)
    mark("spec")
    path = run_sweep(sweep, out, chunk_size=chunk_size, resume=resume, dtype=jnp.float64, progress=progress,
                     force=force)
    mark("sweep done")
    return path
