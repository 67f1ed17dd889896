"""The few Zarr (format 2) operations of a sweep, written straight to the files, byte for byte as
zarr-python 3 writes them: the store's skeleton (groups, coordinates, empty variables, progress markers,
consolidated metadata), whole-chunk writes of uncompressed variables, the progress markers, and the
``complete`` attribute at the end.

Why: zarr-python spends its time around the bytes (an event loop round trip per operation, 0.15 s to
import, 0.15 s to create a 10⁶-point sweep's store, 0.6 to 1 s of CPU to write its 160 MB), which is
a third of a warm ``laimco sweep`` of 10⁶ points. The format is simple and fixed (JSON metadata files
``.zgroup``, ``.zarray``, ``.zattrs``, ``.zmetadata``; one file per chunk, named by its chunk indices
joined by the dimension separator; a chunk that is all fill value is not stored). Every store is still
read with zarr (and xarray); ``tests/test_sweep.py`` checks that these stores are byte-identical to
zarr's, and every operation here falls back to zarr for anything it does not handle.
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

#: The compressor zarr gives (format 2) coordinates and the progress markers (numcodecs' defaults).
BLOSC = {"id": "blosc", "cname": "lz4", "clevel": 5, "shuffle": 1, "blocksize": 0}
_INDENT = 2  # zarr's config "json_indent"


def _json(value: Any, indent: int | None = _INDENT) -> bytes:
    return json.dumps(value, indent=indent, allow_nan=True).encode()


def _fill_json(fill: Any, dtype: np.dtype) -> Any:
    """A fill value as zarr writes it in ``.zarray``: null, an integer, a float, or "NaN" / "Infinity" / "-Infinity"."""
    if fill is None:
        return None
    if dtype.kind == "f":
        fill = float(fill)
        if np.isnan(fill):
            return "NaN"
        if np.isinf(fill):
            return "Infinity" if fill > 0 else "-Infinity"
        return fill
    if dtype.kind == "b":
        return bool(fill)
    return int(fill)


def _fill_value(text: Any) -> Any:
    return {"NaN": np.nan, "Infinity": np.inf, "-Infinity": -np.inf}.get(text, text) if isinstance(text, str) else text


def array_meta(shape, chunks, dtype, fill: Any, compressor: Mapping | None) -> dict[str, Any]:
    """``.zarray`` of an array (keys in zarr's order)."""
    dtype = np.dtype(dtype)
    return {"shape": list(shape), "chunks": list(chunks), "dtype": dtype.str, "fill_value": _fill_json(fill, dtype),
            "order": "C", "filters": None, "dimension_separator": ".",
            "compressor": None if compressor is None else dict(compressor), "zarr_format": 2}


def _blosc():
    from numcodecs import Blosc

    return Blosc(cname=BLOSC["cname"], clevel=BLOSC["clevel"], shuffle=BLOSC["shuffle"], blocksize=BLOSC["blocksize"])


def write_file(path: Path, data) -> None:
    """``data`` (bytes or a C-contiguous array) as the file ``path``, written under a temporary name and
    renamed into place (as zarr)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f"{path.name}.{os.getpid()}.{threading.get_ident()}.partial")
    try:
        with open(partial, "wb") as f:
            f.write(data if isinstance(data, bytes) else memoryview(data).cast("B"))
        os.replace(partial, path)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise


class Node:
    """One group or array of a new store: ``attrs``; for an array ``meta`` (``.zarray``) and optionally
    ``data`` (its only chunk, an array compressed with :data:`BLOSC`)."""

    def __init__(self, attrs: Mapping[str, Any], meta: dict[str, Any] | None = None, data: np.ndarray | None = None):
        self.attrs, self.meta, self.data = dict(attrs), meta, data


def _consolidated(root_attrs: Mapping[str, Any], nodes: Mapping[str, Node]) -> bytes:
    """``.zmetadata`` as zarr's ``consolidate_metadata`` writes it: the root, then the members by depth,
    each depth in name order; a member group carries zarr's empty inline consolidated metadata."""
    entries: dict[str, Any] = {".zgroup": {"zarr_format": 2}, ".zattrs": dict(root_attrs)}
    for name in sorted(nodes, key=lambda n: (n.count("/"), n)):
        node = nodes[name]
        entries[f"{name}/.zattrs"] = node.attrs
        if node.meta is not None:
            entries[f"{name}/.zarray"] = node.meta
        else:
            entries[f"{name}/.zgroup"] = {"zarr_format": 2, "consolidated_metadata": {
                "metadata": {}, "must_understand": False, "kind": "inline"}}
    return _json({"metadata": entries, "zarr_consolidated_format": 1}, indent=None)


def create(path: Path, root_attrs: Mapping[str, Any], nodes: Mapping[str, Node]) -> None:
    """A new store at ``path`` (which must not exist) holding ``nodes`` ({"name" or "group/name": Node}, a
    group before its members), its metadata consolidated."""
    path.mkdir(parents=True)
    (path / ".zgroup").write_bytes(_json({"zarr_format": 2}))
    (path / ".zattrs").write_bytes(_json(dict(root_attrs)))
    for name, node in nodes.items():
        write_node(path / name, node)
    (path / ".zmetadata").write_bytes(_consolidated(root_attrs, nodes))


def write_node(where: Path, node: Node) -> None:
    """One group or array of :func:`create` at ``where``."""
    where.mkdir()
    if node.meta is None:
        (where / ".zgroup").write_bytes(_json({"zarr_format": 2}))
    else:
        (where / ".zarray").write_bytes(_json(node.meta))
    (where / ".zattrs").write_bytes(_json(node.attrs))
    if node.data is not None:
        (where / "0").write_bytes(_blosc().encode(np.ascontiguousarray(node.data)))


def set_complete(path: Path) -> bool:
    """Set the root attribute ``complete`` and the consolidated metadata's copy of it, as zarr would
    (nothing to do if set already): True, or False (nothing changed) unless the store's root attrs and
    ``.zmetadata`` are as :func:`create` writes them."""
    try:
        attrs = json.loads((path / ".zattrs").read_bytes())
        consolidated = json.loads((path / ".zmetadata").read_bytes())
        if consolidated["metadata"][".zattrs"] != attrs or consolidated.get("zarr_consolidated_format") != 1:
            return False
    except (OSError, ValueError, KeyError, TypeError):
        return False
    if attrs.get("complete") is True:
        return True
    attrs["complete"] = True
    consolidated["metadata"][".zattrs"] = attrs
    write_file(path / ".zattrs", _json(attrs))
    write_file(path / ".zmetadata", _json(consolidated, indent=None))
    return True


def _read_meta(path: Path) -> dict[str, Any] | None:
    try:
        meta = json.loads((path / ".zarray").read_bytes())
    except (OSError, ValueError):
        return None
    ok = (isinstance(meta, dict) and meta.get("zarr_format") == 2 and not meta.get("filters") and meta.get("order") == "C"
          and meta.get("dimension_separator", ".") in (".", "/") and isinstance(meta.get("dtype"), str)
          and np.dtype(meta["dtype"]).kind in "fiub" and meta.get("fill_value") is not None)
    return meta if ok else None


class ChunkArray:
    """Whole-chunk writes of an uncompressed array straight to its chunk files (zarr's bytes, names and
    empty-chunk rule). :meth:`open` gives None for an array it does not handle (then use zarr)."""

    def __init__(self, path: Path, meta: dict[str, Any]):
        self.path = path
        self.shape, self.chunks = tuple(meta["shape"]), tuple(meta["chunks"])
        self.dtype = np.dtype(meta["dtype"])
        self.fill = _fill_value(meta["fill_value"])
        self.separator = meta.get("dimension_separator") or "."

    @classmethod
    def open(cls, path: Path) -> ChunkArray | None:
        meta = _read_meta(path)
        return cls(path, meta) if meta is not None and meta.get("compressor") is None else None

    def __setitem__(self, region: tuple[slice, ...], values) -> None:
        """Write ``values`` at ``region``: one whole chunk (cut at the array's end) of the leading dims,
        spanning the trailing dims whole."""
        values = np.asarray(values, dtype=self.dtype)
        region = tuple(region) + tuple(slice(0, n) for n in self.shape[len(region):])
        index = []
        for r, c, n in zip(region, self.chunks, self.shape):
            if r.start % c or r.stop != min(r.start + c, n):
                raise ValueError(f"{self.path}: region {region} is not one chunk of {self.chunks}")
            index.append(r.start // c)
        if values.shape == self.chunks:
            data = np.ascontiguousarray(values)
        else:  # an edge chunk: stored whole, the rest the fill value (as zarr does)
            data = np.full(self.chunks, self.fill, self.dtype)
            data[tuple(slice(0, s) for s in values.shape)] = values
        path = self.path / self.separator.join(map(str, index))
        if np.array_equal(data, np.asarray(self.fill, self.dtype), equal_nan=self.dtype.kind == "f"):
            path.unlink(missing_ok=True)  # zarr's write_empty_chunks=False
            return
        write_chunk_file(path, data)


def write_chunk_file(path: Path, data: np.ndarray) -> None:
    """A variable's chunk file (a hook for tests that make writes fail)."""
    write_file(path, data)


class ProgressMarkers:
    """The progress markers ``_progress/done`` (uint8, one chunk per sweep chunk, blosc): ``[:]`` reads
    them all, ``[chunk] = 1`` marks one. :meth:`open` gives None for markers it does not handle."""

    def __init__(self, path: Path, size: int):
        self.path, self.size = path, size
        self._one = None

    @classmethod
    def open(cls, path: Path) -> ProgressMarkers | None:
        meta = _read_meta(path)
        plain = (meta is not None and meta["compressor"] == BLOSC and meta["dtype"] == "|u1" and meta["fill_value"] == 0
                 and len(meta["shape"]) == 1 and meta["chunks"] == [1] and meta.get("dimension_separator", ".") == ".")
        return cls(path, meta["shape"][0]) if plain else None

    def __getitem__(self, index) -> np.ndarray:
        if index != slice(None):
            raise IndexError("progress markers: only [:]")
        done = np.zeros(self.size, np.uint8)
        codec = None
        for name in os.listdir(self.path):
            if name.isdigit() and int(name) < self.size:
                codec = codec or _blosc()
                done[int(name)] = np.frombuffer(codec.decode((self.path / name).read_bytes()), np.uint8)[0]
        return done

    def __setitem__(self, chunk: int, value: int) -> None:
        if value != 1:
            raise ValueError("progress markers: only [chunk] = 1")
        if self._one is None:
            self._one = bytes(_blosc().encode(np.ones(1, np.uint8)))
        write_file(self.path / str(int(chunk)), self._one)
