"""The Zarr store of a sweep: creation (atomic), its arrays, chunk writes and progress markers, the
``complete`` attribute, reading it back (:func:`open_sweep`, :func:`stored_spec`), the netCDF
conversion and the disk-size check.

It serves every kind of sweep spec: a :class:`~laimco_jax.sweep.spec.SweepSpec` (single-user (P1)
instances) and a :class:`~laimco_jax.sweep.cells.CellSweepSpec` (cells of users). A spec provides
``axes`` (the grid dims, outermost first), ``shape``, ``inner_shape``, ``num_instances``, ``to_json()``
and the methods ``variables(dtype)``, ``dim_sizes()``, ``coords()``, ``store_attrs()`` and
``evaluator(layout, mesh, dtype)``; every stored variable's dims start with the grid dims.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import warnings
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import jax
import numpy as np

from laimco_jax.params import ConfigError
from laimco_jax.sweep.cells import CellSweepSpec
from laimco_jax.sweep.compute import ChunkLayout
from laimco_jax.sweep.spec import OUT_SUFFIXES, POINT_DIM, SweepSpec

_ZARR_FORMAT = 2
PROGRESS = "_progress/done"  # progress markers: 1 once a sweep chunk is written (one Zarr chunk each)
_NETCDF3_MAX_VARIABLE_BYTES = 2**32 - 4  # netCDF-3 64-bit offset format: per variable [B]


def variable_bytes(spec: SweepSpec | CellSweepSpec, layout: ChunkLayout, dtype) -> dict[str, tuple[int, int]]:
    """Stored variable -> (bytes of one Zarr chunk as stored, bytes of the whole variable) [B], uncompressed
    (the store is: edge chunks are stored whole, so chunks x chunk bytes bounds the store from above)."""
    sizes, grid = spec.dim_sizes(), len(spec.axes)
    out = {}
    for name, (dims, vtype, _, _) in spec.variables(dtype).items():
        per_point = math.prod(sizes[d] for d in dims[grid:]) * np.dtype(vtype).itemsize
        out[name] = (layout.block_points * per_point, math.prod(spec.shape) * per_point)
    return out


def _store_attrs(spec: SweepSpec | CellSweepSpec, layout: ChunkLayout, dtype) -> dict[str, Any]:
    from laimco_jax import __version__

    return {
        **spec.store_attrs(),
        "sweep_spec": spec.to_json(),
        "chunk_block": list(layout.block),
        "dtype": np.dtype(dtype).name,
        "laimco_jax_version": __version__,
        "complete": False,  # set true when the last chunk is written
    }


def work_store(out: Path) -> Path:
    """The Zarr store a sweep into ``out`` writes: ``out`` itself (``.zarr``) or ``OUT.zarr`` next to a
    ``.nc`` output. ConfigError for any other suffix."""
    if out.suffix not in OUT_SUFFIXES:
        allowed = "; ".join(f"{suffix} ({what})" for suffix, what in OUT_SUFFIXES.items())
        raise ConfigError(f"--out {str(out)!r}: the suffix {out.suffix!r} is not supported; allowed: {allowed}")
    return out if out.suffix == ".zarr" else out.with_name(out.name + ".zarr")


def _results(out: Path) -> Path:
    """Where the results of the sweep into ``out`` are now: its finished netCDF file, else its Zarr store."""
    store = work_store(out)
    return out if store != out and out.exists() else store


def create_store(out: Path, spec: SweepSpec | CellSweepSpec, layout: ChunkLayout, dtype) -> None:
    """The empty store, built under the temporary sibling name ``.NAME.partial`` and renamed into
    place, so a store that exists is whole (a sweep killed while creating it leaves only the
    temporary, which the next attempt removes; the caller holds the store's lock).
    """
    partial = out.with_name(f".{out.name}.partial")
    shutil.rmtree(partial, ignore_errors=True)
    try:
        _write_skeleton(partial, spec, layout, dtype)
        os.rename(partial, out)
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise


def _write_skeleton(out: Path, spec: SweepSpec | CellSweepSpec, layout: ChunkLayout, dtype) -> None:
    """Coordinates, attrs, empty variables (chunked like the sweep) and the progress markers."""
    import xarray as xr
    import zarr

    xr.Dataset(coords=spec.coords(), attrs=_store_attrs(spec, layout, dtype)).to_zarr(
        out, mode="w-", zarr_format=_ZARR_FORMAT, consolidated=False
    )
    root = zarr.open_group(out, mode="r+", zarr_format=_ZARR_FORMAT)
    point_fields = [n for a in spec.axes if a.dim == POINT_DIM for n in a.values]
    sizes = spec.dim_sizes()
    grid_dims = len(layout.block)
    for name, (dims, vtype, fill, attrs) in spec.variables(dtype).items():
        if point_fields:
            attrs = {**attrs, "coordinates": " ".join(point_fields)}
        root.create_array(
            name,
            shape=tuple(sizes[d] for d in dims),
            chunks=layout.block + tuple(sizes[d] for d in dims[grid_dims:]),
            dtype=vtype,
            fill_value=fill,
            compressors=None,
            attributes={**attrs, "_ARRAY_DIMENSIONS": list(dims)},
        )
    root.create_group("_progress").create_array("done", shape=(layout.num_chunks,), chunks=(1,), dtype="u1", fill_value=0)
    zarr.consolidate_metadata(out)


def open_arrays(out: Path, spec: SweepSpec | CellSweepSpec) -> dict[str, Any]:
    """The store's result arrays by variable name, and its progress markers under ``PROGRESS``."""
    import zarr

    root = zarr.open_group(out, mode="r+", zarr_format=_ZARR_FORMAT)
    try:
        return {name: root[name] for name in [*spec.variables(np.float64), PROGRESS]}
    except KeyError as exc:
        raise ConfigError(f"{str(out)!r} lacks the array {exc}: an incomplete store; remove it and start again") from exc


def write_chunk(arrays: Mapping[str, Any], layout: ChunkLayout, chunk: int, outputs: Sequence[Mapping[str, jax.Array]],
                 io: ThreadPoolExecutor, host: Callable[[dict], dict] | None = None) -> int:
    """Write one evaluated chunk (a dict per scheme, each passed through ``host`` first if given) into its
    region, then mark it done; the number of grid points.

    The variables are written concurrently on ``io`` (each is its own Zarr chunk file).
    """
    if host is not None:
        outputs = [host(scheme) for scheme in outputs]
    region = layout.region(chunk)
    extent = tuple(slice(0, r.stop - r.start) for r in region)

    def write(name: str) -> None:
        parts = [np.asarray(scheme[name])[: layout.block_points] for scheme in outputs]
        host = parts[0][:, None] if len(parts) == 1 else np.stack(parts, axis=1)  # one scheme: a view, no copy
        arrays[name][region] = host.reshape(layout.block + host.shape[1:])[extent]

    list(io.map(write, outputs[0]))
    arrays[PROGRESS][chunk] = 1
    return math.prod(r.stop - r.start for r in region)


def chunks_written(store: Path) -> str:
    """``K of N chunks written to STORE`` (from its progress markers), or ``nothing written to STORE``."""
    import zarr

    try:
        done = zarr.open_array(store / PROGRESS, mode="r", zarr_format=_ZARR_FORMAT)[:]
    except FileNotFoundError:
        return f"nothing written to {store}"
    return f"{int(done.sum())} of {done.size} chunks written to {store}"


def _sweep_attrs(path: Path) -> dict[str, Any]:
    """The attrs of the sweep stored at ``path`` (a Zarr store or a finished netCDF file)."""
    import xarray as xr
    import zarr

    try:
        if path.suffix == ".nc":
            with xr.open_dataset(path, engine="scipy") as ds:
                attrs = dict(ds.attrs)
        else:
            attrs = dict(zarr.open_group(path, mode="r", zarr_format=_ZARR_FORMAT).attrs)
    except (FileNotFoundError, zarr.errors.GroupNotFoundError) as exc:
        raise ConfigError(f"{str(path)!r} holds no sweep to resume") from exc
    if "sweep_spec" not in attrs:
        raise ConfigError(f"{str(path)!r} holds no sweep (its creation was interrupted?); remove it and start again")
    return attrs


def check_same_sweep(path: Path, spec: SweepSpec | CellSweepSpec, dtype) -> dict[str, Any]:
    """The attrs of the sweep at ``path``, after checking that it is this very sweep (ConfigError if not)."""
    attrs = _sweep_attrs(path)
    if attrs["sweep_spec"] != spec.to_json() or attrs["dtype"] != np.dtype(dtype).name:
        raise ConfigError(
            f"{str(path)!r} holds a different sweep (grid, configuration, schemes, splits or dtype); "
            "use another output, or resume it with no sweep options"
        )
    return attrs


def stored_spec(out: str | Path) -> SweepSpec | CellSweepSpec:
    """The spec of the sweep stored for ``out`` (to resume it without repeating the options)."""
    text = _sweep_attrs(_results(Path(out)))["sweep_spec"]
    kind = CellSweepSpec if json.loads(text).get("kind") == CellSweepSpec.KIND else SweepSpec
    return kind.from_json(text)


def open_sweep(out: str | Path):
    """The results as an :class:`xarray.Dataset` (lazy; integers stay integers, -1 = not computed).

    ``out`` is a ``.zarr`` store or a ``.nc`` output (its netCDF file once finished, else its work
    store ``OUT.zarr``). The attribute ``complete`` is false until the sweep's last chunk is written;
    opening an incomplete sweep warns (UserWarning) how far it got and how to resume it.
    """
    import xarray as xr

    path = _results(Path(out))
    if path.suffix == ".nc":
        ds = xr.open_dataset(path, engine="scipy", mask_and_scale=False)
    else:
        ds = xr.open_zarr(path, mask_and_scale=False, zarr_format=_ZARR_FORMAT)
    for variable in ds.variables.values():  # the fill value is storage detail: attrs -> encoding
        if "_FillValue" in variable.attrs:
            variable.encoding["_FillValue"] = variable.attrs.pop("_FillValue")
    if not ds.attrs.get("complete", True):
        warnings.warn(f"incomplete sweep: {chunks_written(path)}; resume with: laimco sweep --resume --out {out}",
                      stacklevel=2)
    return ds


def _netcdf_attr(value: Any) -> Any:
    """An attribute value netCDF-3 can store: booleans as 0/1, lists of strings space-separated."""
    if isinstance(value, (bool, np.bool_)):
        return int(value)
    if isinstance(value, (list, tuple)) and value and all(isinstance(v, str) for v in value):
        return " ".join(value)
    return value


def _write_netcdf(store: Path, out: Path) -> None:
    """The finished Zarr ``store`` as the netCDF-3 file ``out`` (64-bit offsets; scipy's writer holds the
    whole result in memory until the file is closed), written under ``.NAME.partial`` and renamed into place."""
    ds = open_sweep(store)
    for item in [ds, *ds.variables.values()]:
        item.attrs = {key: _netcdf_attr(value) for key, value in item.attrs.items()}
    partial = out.with_name(f".{out.name}.partial")
    try:
        ds.to_netcdf(partial, engine="scipy", format="NETCDF3_64BIT")
        os.replace(partial, out)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise


def finish_store(store: Path, out: Path) -> None:
    """Mark the store complete (attribute ``complete``) if every chunk is marked done; a complete
    ``.nc`` output is then converted from it and the work store removed."""
    import zarr

    root = zarr.open_group(store, mode="r+", zarr_format=_ZARR_FORMAT)
    complete = bool(np.all(root[PROGRESS][:] == 1))
    if complete and not root.attrs.get("complete"):
        root.attrs["complete"] = True
        zarr.consolidate_metadata(store)
    if complete and out != store:
        _write_netcdf(store, out)
        shutil.rmtree(store)


def _free_bytes(path: Path) -> tuple[Path, int]:
    """The nearest existing directory at or above ``path`` and the bytes free there [B]."""
    where = path.absolute()
    while not where.is_dir():
        where = where.parent
    return where, shutil.disk_usage(where).free


def check_size(out: Path, spec: SweepSpec | CellSweepSpec, layout: ChunkLayout, dtype, chunks_left: int) -> None:
    """ConfigError unless the rest of the sweep fits on the disk of ``out``: ``chunks_left`` chunks of
    every variable (uncompressed, an upper bound), plus the whole netCDF file for a ``.nc`` output,
    which must also keep each variable under netCDF-3's 4 GiB."""
    sizes = variable_bytes(spec, layout, dtype)
    needed = chunks_left * sum(chunk for chunk, _ in sizes.values())
    if out.suffix == ".nc":
        name, largest = max(((n, whole) for n, (_, whole) in sizes.items()), key=lambda item: item[1])
        if largest > _NETCDF3_MAX_VARIABLE_BYTES:
            raise ConfigError(
                f"--out {str(out)!r}: variable {name} would take {largest / 2**30:.3g} GiB, over netCDF-3's "
                f"4 GiB per variable; use a .zarr output"
            )
        needed += sum(whole for _, whole in sizes.values())
    where, free = _free_bytes(out)
    if needed > free:
        raise ConfigError(
            f"--out {str(out)!r}: the sweep needs up to {needed / 1e9:.3g} GB ({spec.num_instances} instances, "
            f"{chunks_left} chunks to write) but {where} has {free / 1e9:.3g} GB free; "
            "shrink the grid, free space, or pass --force"
        )
