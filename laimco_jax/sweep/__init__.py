"""Sweeps of (P1) over grids of configurations: chunked, jitted, sharded over devices and hosts, resumable.

A sweep solves (P1) exactly (:func:`~laimco_jax.solvers.solve_exact`) at every point of a Cartesian
product of *axes*:

* a grid axis per swept configuration field, named by the field (``delay_s``, ``energy_j``,
  ``distance_m``, ``bandwidth_hz``, ``p_max_w``, ``f_max_device_hz``, ``embedding_bits``, ... any
  field of :data:`~laimco_jax.params.FIELD_SECTION`), in the order given (the last varies fastest);
* optionally one explicit point list (dim ``point``): rows of values of several fields at once;
* optionally the split point (dim ``split``, number of layers on the device, 0 = on-server ...
  L = on-device). The split-dependent profile fields (:data:`SPLIT_FIELDS`: q, s, N, Ñ, θ) then come
  from the preset model's profile at each split (:func:`~laimco_jax.params.model_preset_fields` of
  ``split_model``, the ``--model`` preset, also when ``--config`` gives the rest of the
  configuration); the other model fields (b, h(w), input bits) stay those of the configuration;
* the scheme (dim ``scheme``, always present, see :data:`~laimco_jax.solvers.SCHEMES`).

Grid values (``--grid FIELD=SPEC`` or ``FIELD = "SPEC"`` in a spec file):

* ``START:STOP:NUM``      NUM linearly spaced values, STOP included (``numpy.linspace``);
* ``START:STOP:NUM:log``  NUM geometrically spaced values, STOP included, START and STOP > 0;
* ``V1,V2,...`` or ``V``  explicit distinct values (a TOML array of numbers works too).

Splits (``--split``): ``all`` (0 ... L of the model), ``FIRST:LAST`` (inclusive) or ``S1,S2,...``.
Schemes (``--scheme``): ``all`` or a comma list (default ``proposed``).
Gradients (``--gradient OUTPUT/FIELD``, repeatable; spec file ``gradient = [...]``): the implicit
derivative of an optimum output (:data:`~laimco_jax.sensitivity.OUTPUTS`) w.r.t. a configuration
field, stored per instance as ``d_OUTPUT_d_FIELD`` (:func:`~laimco_jax.sensitivity.field_derivatives`).

Spec file (``laimco sweep --spec sweep.toml``); relative paths are relative to the spec file, and
options given on the command line as well override the file's (``--grid`` per field)::

    preset = "paper"              # system preset (ignored when config is set)
    model = "bert-base"           # model preset: the base profile and the per-split profiles
    config = "base.toml"          # optional TOML configuration replacing the presets
    split = "0:12"                # or "all", or [0, 4, 12]; omit for no split axis
    scheme = "all"                # or "proposed,fixed-power", or ["proposed", "fixed-power"]
    out = "sweep.zarr"
    chunk_size = 65536            # most (P1) instances per chunk

    [set]                         # overrides of the base configuration (as --set)
    distance_m = 300.0

    [grid]                        # one axis per field, outermost first
    delay_s = "0.1:0.6:51"
    energy_j = "0.005:0.03:26"
    bandwidth_hz = "1e6:1e8:9:log"
    p_max_w = [0.1, 0.2, 0.5]

    [[points]]                    # explicit point list: same fields in every row;
    noise_psd_w_per_hz = 2e-19    # or  points = "points.csv"  (header row: field names)
    f_max_server_hz = 4e9
    [[points]]
    noise_psd_w_per_hz = 4e-19
    f_max_server_hz = 2e9

Evaluation. The grid is never materialised. It is cut into hyper-rectangular chunks (:class:`ChunkLayout`)
of at most ``chunk_size`` solver instances (the product of the chunk's grid points, schemes and
splits), so every chunk holds all schemes and splits of its grid points. One jitted function per
scheme computes its part of a chunk from the chunk's origin (compile time linear in the schemes; the
persistent compilation cache of ``laimco`` serves every later sweep of the same structure that
includes the scheme): the flat in-chunk index is unravelled on the device into indices of each
axis, the field values gathered, and the instances solved with the solver's own broadcasting. The chunk axis is sharded over all local devices (a 1-D :class:`jax.sharding.Mesh`,
:class:`~jax.sharding.NamedSharding` along it; the chunk is padded to a multiple of the device count).
Memory is flat in the grid size: at most three chunks are in flight (one computing, one being
written by a writer thread, one waiting for it).

Hosts. Under :mod:`jax.distributed`, every process takes every ``process_count``-th chunk still to do
and writes it into the same store (chunks are disjoint Zarr chunks, so the writes never overlap);
process 0 creates the store, and the processes meet at barriers (around creating the store, after
reading the progress markers, at the end). The store must be on a
file system every process sees. Under SLURM, with the store on a shared file system::

    #SBATCH --nodes=4 --ntasks-per-node=1 --gpus-per-task=1
    srun laimco sweep --distributed --spec sweep.toml --resume

``--distributed`` calls ``jax.distributed.initialize()``, which reads the coordinator, the process
count and the process id from SLURM's environment (elsewhere pass them as
``jax.distributed.initialize(coordinator_address="host:port", num_processes=P, process_id=i)`` before
calling :func:`run_sweep`). ``--resume`` makes a re-queued job continue where it stopped.

Results. A Zarr (format 2) store, opened with :func:`open_sweep` as an :class:`xarray.Dataset`:
coordinates named by the swept fields (a point list's fields are coordinates along ``point``),
``scheme`` and ``split``; every :class:`~laimco_jax.solvers.Solution` field as a variable of dims
(grid dims..., scheme[, split]) with units and a description in attrs (``Solution.delay_s`` and
``.energy_j`` are stored as ``total_delay_s`` and ``total_energy_j``: ``delay_s`` and ``energy_j``
name the budgets T0, E0); attrs hold the base configuration as TOML (``config_toml``), the sweep
spec as JSON (``sweep_spec``; a range axis as its start, stop and count) and ``complete`` (false until
the last chunk is written). Points not yet computed read as NaN (floats) and -1 (integers).
An output named ``NAME.nc`` is netCDF-3 instead (:data:`OUT_SUFFIXES`): the sweep runs in the Zarr
work store ``NAME.nc.zarr``, converted and removed once complete; no other suffix is accepted.

Resume. Each chunk is written, then marked done in ``_progress/done`` (one Zarr chunk per sweep
chunk). An interrupted sweep continued with ``resume=True`` recomputes exactly the chunks not marked
done and overwrites them whole, so it loses and duplicates nothing; the chunk layout is the stored one.
A Ctrl-C raises :class:`Interrupted`, whose message says how many chunks were written and how to
resume. The store is created under a temporary name and renamed into place, so a sweep killed while
creating it leaves no half store. While a sweep writes, the lock file ``STORE.lock`` beside the store
names its process and host and refuses a second sweep into the same store (a dead holder's lock is
taken over). Before computing, the sweep refuses (ConfigError) when its uncompressed size exceeds the
free disk space, unless ``force``; a failed write (disk full, read-only) is a ConfigError that says
what was written and how to resume.

Best split (with a split axis). For each grid point and scheme, ``best_split`` is the split whose
solution retains the most parameters ρq + ρ̃s among the splits solved OPTIMAL (so it minimises D̂,
strictly decreasing in ρq + ρ̃s at the fixed total q + s of a preset model; splits within a relative
:data:`BEST_SPLIT_RTOL` of the most tie, and ties go to the smallest split), or -1 when no split is solved OPTIMAL; ``best_log10_distortion_bound`` is log10 D̂ there (NaN
for -1). It is a reduction inside the jitted chunk function, so it costs no second pass.
"""

from __future__ import annotations

import contextlib
import csv
import dataclasses
import functools
import json
import math
import os
import shutil
import socket
import threading
import time
import warnings
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from laimco_jax.params import (
    FIELD_SECTION,
    MODEL_SPECS,
    ConfigError,
    SystemParams,
    apply_overrides,
    dump_toml,
    make_problem,
    model_preset_fields,
    problem_from_dict,
    problem_to_dict,
    read_toml_file,
)
from laimco_jax.solvers import SCHEMES, Status, solve_exact

__all__ = [
    "BEST_SPLIT_RTOL",
    "DEFAULT_CHUNK_SIZE",
    "FIELD_UNITS",
    "OUT_SUFFIXES",
    "SOLUTION_VARIABLES",
    "SPLIT_FIELDS",
    "Axis",
    "ChunkLayout",
    "Interrupted",
    "SweepSpec",
    "best_split",
    "build_spec",
    "chunk_layout",
    "open_sweep",
    "parse_grid_option",
    "parse_grid_values",
    "parse_schemes",
    "parse_splits",
    "points_axis",
    "read_points_csv",
    "read_spec_file",
    "run_sweep",
    "run_sweep_from_cli",
    "stored_spec",
]

#: Model fields that depend on the split point; a split axis sets them from the preset model profile.
SPLIT_FIELDS = ("params_device", "params_server", "flops_device", "flops_server", "embedding_bits")
#: Default most (P1) instances per chunk (fits a CPU's caches reasonably; use ~1e6 on a GPU).
DEFAULT_CHUNK_SIZE = 65536
#: Relative tolerance within which splits tie on retained parameters (the solver's gap tolerance).
BEST_SPLIT_RTOL = 1e-9
POINT_DIM = "point"
_ZARR_FORMAT = 2
_PROGRESS = "_progress/done"
_WRITE_THREADS = 4  # variables written at once (file writes overlap)
#: Output suffix -> format: ``.zarr`` is the resumable store itself; ``.nc`` is netCDF (3, 64-bit
#: offset, scipy's writer) converted at the end from the Zarr work store ``OUT.zarr`` next to it.
OUT_SUFFIXES = {".zarr": "Zarr store", ".nc": "netCDF file (written from the work store OUT.zarr when complete)"}
_NETCDF3_MAX_VARIABLE_BYTES = 2**32 - 4  # netCDF-3 64-bit offset format: per variable [B]
#: A running sweep touches its lock file this often [s]; another host's lock untouched for
#: LOCK_STALE_S [s] is stale (its process was killed).
LOCK_HEARTBEAT_S = 30.0
LOCK_STALE_S = 600.0


class Interrupted(KeyboardInterrupt):
    """A Ctrl-C that stopped a sweep (or ``laimco reproduce``); ``message``: one line saying what was
    written and how to resume."""

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


#: Units of every configuration field (attrs of the coordinates).
FIELD_UNITS: dict[str, str] = {
    "bandwidth_hz": "Hz",
    "noise_psd_w_per_hz": "W/Hz",
    "p_max_w": "W",
    "f_max_device_hz": "Hz",
    "f_max_server_hz": "Hz",
    "flops_per_cycle_device": "FLOP/cycle",
    "flops_per_cycle_server": "FLOP/cycle",
    "pue_device": "1",
    "pue_server": "1",
    "power_coeff_device": "W/(cycle/s)^3",
    "power_coeff_server": "W/(cycle/s)^3",
    "channel_gain": "1",
    "ref_gain_db": "dB",
    "ref_distance_m": "m",
    "distance_m": "m",
    "pathloss_exponent": "1",
    "params_device": "parameters",
    "params_server": "parameters",
    "flops_device": "FLOP",
    "flops_server": "FLOP",
    "embedding_bits": "bit",
    "bits_per_weight": "bit",
    "entropy_bits": "bit",
    "input_bits": "bit",
    "delay_s": "s",
    "energy_j": "J",
}

_STATUS_FLAGS = {"flag_values": [int(s) for s in Status], "flag_meanings": " ".join(s.name.lower() for s in Status)}
_REASON_FLAGS = {"flag_values": [0, 1, 2, 3], "flag_meanings": "none delay energy joint"}

#: Solution field -> (stored variable name, units, description, extra attrs).
SOLUTION_VARIABLES: dict[str, tuple[str, str, str, dict]] = {
    "status": ("status", "1", "solve status (-1: not computed)", _STATUS_FLAGS),
    "infeasible_reason": ("infeasible_reason", "1", "why an instance is infeasible", _REASON_FLAGS),
    "rho": ("rho", "1", "device part's remaining fraction ρ", {}),
    "f_device_hz": ("f_device_hz", "Hz", "device clock f", {}),
    "p_w": ("p_w", "W", "transmit power p", {}),
    "rho_server": ("rho_server", "1", "server part's remaining fraction ρ̃", {}),
    "f_server_hz": ("f_server_hz", "Hz", "server clock f̃", {}),
    "delay_s": ("total_delay_s", "s", "total delay T, eq. (10)", {}),
    "energy_j": ("total_energy_j", "J", "total energy E, eq. (11)", {}),
    "delay_slack_s": ("delay_slack_s", "s", "T0 - T", {}),
    "energy_slack_j": ("energy_slack_j", "J", "E0 - E", {}),
    "f_device_slack_hz": ("f_device_slack_hz", "Hz", "f_max - f", {}),
    "f_server_slack_hz": ("f_server_slack_hz", "Hz", "f̃_max - f̃", {}),
    "p_slack_w": ("p_slack_w", "W", "P_max - p", {}),
    "retained_params": ("retained_params", "parameters", "ρq + ρ̃s", {}),
    "upper_bound": ("upper_bound", "parameters", "dual upper bound on ρq + ρ̃s", {}),
    "certificate": ("certificate", "1", "relative duality gap (infeasible: relative overload)", {}),
    "log2_distortion_bound": ("log2_distortion_bound", "log2", "log2 of the distortion bound D̂, eq. (41)", {}),
    "log10_distortion_bound": ("log10_distortion_bound", "log10", "log10 of the distortion bound D̂, eq. (41)", {}),
    "delay_multiplier": ("delay_multiplier", "parameters/s", "d(ρq + ρ̃s)*/dT0", {}),
    "energy_multiplier": ("energy_multiplier", "parameters/J", "d(ρq + ρ̃s)*/dE0", {}),
    "iterations": ("iterations", "1", "solver iterations", {}),
}
_INT_FIELDS = ("status", "infeasible_reason", "iterations")
_BEST_VARIABLES = {
    "best_split": ("layers", "split retaining the most parameters among OPTIMAL splits (-1: none)"),
    "best_log10_distortion_bound": ("log10", "log10 D̂ at best_split (NaN: none)"),
}

# ----------------------------------------------------------------------------- spec


@dataclasses.dataclass(frozen=True, eq=False)
class Axis:
    """One grid dimension: a swept field (``dim`` = its name) or a point list (``dim`` = ``point``).

    ``values`` maps each field of the axis to a 1-D float64 array; all have the axis' length.
    """

    dim: str
    values: Mapping[str, np.ndarray]

    @property
    def size(self) -> int:
        return len(next(iter(self.values.values())))


@dataclasses.dataclass(frozen=True, eq=False)
class SweepSpec:
    """A validated sweep: base configuration, grid axes, schemes and (optionally) split points.

    ``base`` is the full scalar configuration ``{section: {field: value}}`` the axes vary.
    """

    base: Mapping[str, Mapping[str, float]]
    axes: tuple[Axis, ...]
    schemes: tuple[str, ...]
    splits: tuple[int, ...] | None = None
    split_model: str = "bert-base"
    gradients: tuple[tuple[str, str], ...] = ()  # (output, field): d output/d field stored per point

    @property
    def shape(self) -> tuple[int, ...]:
        """Sizes of the grid dims (schemes and splits excluded)."""
        return tuple(axis.size for axis in self.axes)

    @property
    def inner_shape(self) -> tuple[int, ...]:
        """Sizes of the dims every grid point carries: (schemes[, splits])."""
        return (len(self.schemes),) + (() if self.splits is None else (len(self.splits),))

    @property
    def num_instances(self) -> int:
        """Number of (P1) instances the sweep solves."""
        return math.prod(self.shape) * math.prod(self.inner_shape)

    def split_values(self) -> dict[str, np.ndarray]:
        """The split-dependent model fields at each split, ``{field: array of len(splits)}``."""
        if self.splits is None:
            return {}
        rows = [model_preset_fields(self.split_model, s) for s in self.splits]
        return {name: np.array([row[name] for row in rows], np.float64) for name in SPLIT_FIELDS}

    def to_json(self) -> str:
        """Canonical JSON (exact float round trip), stored in the results and compared on resume."""
        return json.dumps(
            {
                "base": self.base,
                "axes": [{"dim": a.dim, "values": {k: _encode_values(v) for k, v in a.values.items()}} for a in self.axes],
                "schemes": list(self.schemes),
                "splits": None if self.splits is None else list(self.splits),
                "split_model": self.split_model,
                "gradients": [list(g) for g in self.gradients],
            },
            sort_keys=True,
        )

    @classmethod
    def from_json(cls, text: str) -> SweepSpec:
        data = json.loads(text)
        axes = tuple(
            Axis(a["dim"], {k: _decode_values(v) for k, v in a["values"].items()}) for a in data["axes"]
        )
        splits = None if data["splits"] is None else tuple(data["splits"])
        gradients = tuple(tuple(g) for g in data.get("gradients", ()))
        return cls(data["base"], axes, tuple(data["schemes"]), splits, data["split_model"], gradients)


_SPACINGS = {"linspace": np.linspace, "geomspace": np.geomspace}


def _encode_values(values: np.ndarray) -> list[float] | dict[str, list]:
    """Axis values for the spec JSON: ``{"linspace"|"geomspace": [start, stop, num]}`` when they are
    exactly that range (so a 10-million-value range costs bytes, not 200 MB), else the list."""
    if len(values) >= 3:
        start, stop, num = float(values[0]), float(values[-1]), len(values)
        geometric = start * stop > 0
        for name, spacing in _SPACINGS.items():
            if (name == "linspace" or geometric) and np.array_equal(spacing(start, stop, num), values):
                return {name: [start, stop, num]}
    return values.tolist()


def _decode_values(encoded: list[float] | dict[str, list]) -> np.ndarray:
    """Inverse of :func:`_encode_values` (float64)."""
    if isinstance(encoded, dict):
        ((name, (start, stop, num)),) = encoded.items()
        return _SPACINGS[name](start, stop, num).astype(np.float64)
    return np.asarray(encoded, np.float64)


_GRID_FORMS = (
    "START:STOP:NUM (NUM linear values, STOP included), START:STOP:NUM:log (geometric, START, STOP > 0) "
    "or distinct values V1,V2,..."
)


def _reason(exc: BaseException) -> str:
    """An OS error's reason without its repr (``Is a directory``), else the exception's text."""
    return getattr(exc, "strerror", None) or str(exc)


def _field_name(where: str, key: str) -> str:
    """The bare field name of ``key`` ("section.field" or "field"); ConfigError naming ``where``."""
    section, _, name = key.strip().rpartition(".")
    if name not in FIELD_SECTION:
        raise ConfigError(f"{where}: unknown field {name!r}; allowed: {', '.join(FIELD_SECTION)}")
    if section and section != FIELD_SECTION[name]:
        raise ConfigError(f"{where}: field {name!r} belongs to section [{FIELD_SECTION[name]}], not [{section}]")
    return name


def _number(where: str, text: Any) -> float:
    try:
        value = float(text)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{where}: {text!r} is not a number") from exc
    if not math.isfinite(value):
        raise ConfigError(f"{where}: {text!r} is not a finite number")
    return value


def _range_values(where: str, parts: list[str]) -> np.ndarray:
    """Values of START:STOP:NUM[:log]."""
    scale = parts[3].strip().lower() if len(parts) == 4 else "linear"
    if scale not in ("linear", "log"):
        raise ConfigError(f"{where}: the 4th part must be 'log', not {parts[3]!r}; expected {_GRID_FORMS}")
    start, stop = _number(where, parts[0]), _number(where, parts[1])
    try:
        num = int(parts[2])
    except ValueError:
        num = 0
    if num < 1 or str(num) != parts[2].strip():
        raise ConfigError(f"{where}: NUM = {parts[2]!r} must be an integer >= 1")
    if scale == "log":
        if start <= 0 or stop <= 0:
            raise ConfigError(f"{where}: a :log range needs START > 0 and STOP > 0")
        return np.geomspace(start, stop, num)
    return np.linspace(start, stop, num)


def parse_grid_values(field: str, spec: str | float | Sequence[float]) -> np.ndarray:
    """The values of one grid axis from its spec (see the module docstring), as float64.

    Raises ConfigError naming the field, the spec and the allowed forms.
    """
    where = f"grid {field}={spec!r}"
    if isinstance(spec, str):
        parts = spec.split(":")
        if len(parts) in (3, 4):
            values = _range_values(where, parts)
        elif len(parts) == 1 and spec.strip():
            values = np.array([_number(where, v) for v in spec.split(",")], np.float64)
        else:
            raise ConfigError(f"{where}: expected {_GRID_FORMS}")
    elif isinstance(spec, (int, float)) and not isinstance(spec, bool):
        values = np.array([_number(where, spec)], np.float64)
    elif isinstance(spec, (list, tuple, np.ndarray)) and len(spec):
        values = np.array([_number(where, v) for v in spec], np.float64)
    else:
        raise ConfigError(f"{where}: expected {_GRID_FORMS}")
    if len(np.unique(values)) != len(values):
        raise ConfigError(f"{where}: the values must be distinct")
    return values


def parse_grid_option(item: str) -> tuple[str, np.ndarray]:
    """``FIELD=SPEC`` (``--grid``) -> (bare field name, values)."""
    key, sep, spec = item.partition("=")
    if not sep or not key.strip() or not spec.strip():
        raise ConfigError(f"--grid {item!r}: expected FIELD=SPEC with SPEC one of {_GRID_FORMS}")
    name = _field_name(f"--grid {item!r}", key)
    return name, parse_grid_values(name, spec.strip())


def parse_splits(spec: str | int | Sequence[int] | None, model: str) -> tuple[int, ...] | None:
    """Split points from ``all``, ``FIRST:LAST`` (inclusive), ``S1,S2,...`` or a list; None: no axis."""
    if spec is None:
        return None
    if model not in MODEL_SPECS:
        raise ConfigError(f"split = {spec!r}: model {model!r} has no per-split profile; allowed: {', '.join(MODEL_SPECS)}")
    layers = MODEL_SPECS[model].num_layers
    forms = f"expected 'all', FIRST:LAST (inclusive) or S1,S2,... with integers in [0, {layers}]"
    items = list(spec) if isinstance(spec, (list, tuple)) else [spec]
    if not all(isinstance(s, str) or (isinstance(s, int) and not isinstance(s, bool)) for s in items):
        raise ConfigError(f"split = {spec!r}: {forms}")
    try:
        if not isinstance(spec, str):
            splits = [int(s) for s in items]
        elif spec.strip() == "all":
            splits = list(range(layers + 1))
        elif ":" in spec:
            first, last = spec.split(":")
            splits = list(range(int(first), int(last) + 1))
        else:
            splits = [int(s) for s in spec.split(",")]
    except ValueError as exc:
        raise ConfigError(f"split = {spec!r}: {forms}") from exc
    if not splits or len(set(splits)) != len(splits) or not all(0 <= s <= layers for s in splits):
        raise ConfigError(f"split = {spec!r} is empty, repeats a split or leaves [0, {layers}] of model {model}; {forms}")
    return tuple(splits)


def parse_schemes(spec: str | Sequence[str] | None) -> tuple[str, ...]:
    """Schemes from ``all``, a comma list or a list of names (None: ``proposed``)."""
    if spec is None:
        return ("proposed",)
    names = list(spec) if isinstance(spec, (list, tuple)) else [s.strip() for s in str(spec).split(",")]
    if names == ["all"]:
        return SCHEMES
    for name in names:
        if name not in SCHEMES:
            raise ConfigError(f"scheme = {spec!r}: {name!r} is not known; allowed: all, {', '.join(SCHEMES)}")
    if not names or len(set(names)) != len(names):
        raise ConfigError(f"scheme = {spec!r}: give each scheme once")
    return tuple(names)


def parse_gradients(specs: Sequence[str] | None) -> tuple[tuple[str, str], ...]:
    """``OUTPUT/FIELD`` items (e.g. ``log2_distortion_bound/delay_s``) -> ((output, field), ...)."""
    from laimco_jax.sensitivity import OUTPUTS

    out = []
    for item in specs or ():
        output, sep, field = str(item).partition("/")
        if not sep or output not in OUTPUTS or field.rpartition(".")[2] not in FIELD_SECTION:
            raise ConfigError(
                f"gradient {item!r}: expected OUTPUT/FIELD with OUTPUT one of {', '.join(OUTPUTS)} "
                "and FIELD a configuration field, e.g. log2_distortion_bound/delay_s"
            )
        out.append((output, field.rpartition(".")[2]))
    return tuple(dict.fromkeys(out))


def read_points_csv(path: str | Path) -> dict[str, np.ndarray]:
    """An explicit point list from CSV: a header row of field names, one row of numbers per point."""
    path = Path(path)
    try:
        with path.open(newline="") as fh:
            rows = [row for row in csv.reader(fh) if row]
    except FileNotFoundError as exc:
        raise ConfigError(f"points file {str(path)!r} does not exist") from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"points file {str(path)!r} cannot be read ({_reason(exc)}); expected a CSV file") from exc
    if len(rows) < 2:
        raise ConfigError(f"points file {str(path)!r}: expected a header of field names and at least one row")
    header = [h.strip() for h in rows[0]]
    if len(set(header)) != len(header):
        raise ConfigError(f"points file {str(path)!r}: header {header} repeats a field; give each field once")
    columns: dict[str, list[float]] = {h: [] for h in header}
    for line, row in enumerate(rows[1:], start=2):
        if len(row) != len(header):
            raise ConfigError(f"points file {str(path)!r} line {line}: {len(row)} values for {len(header)} fields")
        for name, value in zip(columns, row):
            columns[name].append(_number(f"points file {str(path)!r} line {line}, {name}", value))
    return {name: np.array(v, np.float64) for name, v in columns.items()}


def points_axis(points: Sequence[Mapping[str, float]] | Mapping[str, Sequence[float]]) -> Axis:
    """The ``point`` axis from rows (``[{field: value}, ...]``) or columns (``{field: [values]}``)."""
    if isinstance(points, Mapping):
        columns = {k: list(np.atleast_1d(v)) for k, v in points.items()}
    else:
        keys = list(points[0]) if points else []
        for i, row in enumerate(points):
            if list(row) != keys:
                raise ConfigError(f"points: row {i} has fields {sorted(row)}; row 0 has {sorted(keys)}")
        columns = {k: [row[k] for row in points] for k in keys}
    lengths = {len(v) for v in columns.values()}
    if not columns or lengths == {0} or len(lengths) != 1:
        raise ConfigError("points: expected at least one point and the same number of values for every field")
    values = {}
    for key, column in columns.items():
        name = _field_name(f"points field {key!r}", key)
        if name in values:
            raise ConfigError(f"points field {key!r}: field {name!r} is given twice; give each field once")
        values[name] = np.array([_number(f"points {name}", v) for v in column], np.float64)
    return Axis(POINT_DIM, values)


def _configuration(base: Mapping, values: Mapping[str, Any]):
    """The Problem of ``base`` with fields set to ``values`` (arrays or tracers; channel form switched)."""
    data = apply_overrides(base, values)
    if any(n not in data[FIELD_SECTION[n]] for n in values):
        channel = [n for n in values if n == "channel_gain" or n in SystemParams.PATHLOSS_FIELDS]
        raise ConfigError(f"swept fields {', '.join(channel)} set both forms of the channel; sweep one form only")
    return problem_from_dict(data)


def _open_mesh(spec: SweepSpec) -> dict[str, np.ndarray]:
    """Every swept field (and split field) as an array broadcastable over all dims, never materialised."""
    ndim = len(spec.axes) + (spec.splits is not None)
    values = {}
    for d, axis in enumerate(spec.axes):
        shape = [1] * ndim
        shape[d] = axis.size
        values.update({name: v.reshape(shape) for name, v in axis.values.items()})
    values.update({name: v.reshape([1] * (ndim - 1) + [-1]) for name, v in spec.split_values().items()})
    return values


def _validate(spec: SweepSpec) -> None:
    """Check every axis (one at a time, for clear messages) and all of them together, before computing."""
    swept = [name for axis in spec.axes for name in axis.values]
    repeated = sorted({n for n in swept if swept.count(n) > 1})
    if repeated:
        raise ConfigError(f"field(s) {', '.join(repeated)} appear on more than one axis (--grid / points)")
    if spec.splits is not None:
        clash = [n for n in swept if n in SPLIT_FIELDS]
        if clash:
            raise ConfigError(
                f"grid field(s) {', '.join(clash)} conflict with the split axis, which sets {', '.join(SPLIT_FIELDS)}"
            )
    for axis in spec.axes:
        try:
            _configuration(spec.base, axis.values)
        except ConfigError as exc:
            raise ConfigError(f"{axis.dim} axis: {exc}") from exc
    _configuration(spec.base, _open_mesh(spec))


def build_spec(
    *,
    preset: str = "paper",
    model: str = "bert-base",
    config: str | Path | None = None,
    overrides: Mapping[str, Any] | None = None,
    grid: Mapping[str, Any] | None = None,
    points: Sequence[Mapping[str, float]] | Mapping[str, Sequence[float]] | str | Path | None = None,
    splits: str | int | Sequence[int] | None = None,
    schemes: str | Sequence[str] | None = None,
    gradients: Sequence[str] | None = None,
) -> SweepSpec:
    """A validated :class:`SweepSpec`; every error (ConfigError) is raised here, before any compute.

    Args:
      preset, model, config, overrides: the base configuration, as :func:`~laimco_jax.params.make_problem`.
      grid: ``{field: values}`` with values an array/list of numbers or a spec string; outermost first.
      points: an explicit point list: rows, columns or a CSV file path (see :func:`read_points_csv`).
      splits: split points (see :func:`parse_splits`); the per-split profile comes from ``model``.
      schemes: see :func:`parse_schemes`.
      gradients: ``OUTPUT/FIELD`` items (see :func:`parse_gradients`): the implicit derivative of an
        output of :class:`~laimco_jax.sensitivity.OptimumOutputs` w.r.t. a field, stored per instance.
    """
    base = problem_to_dict(make_problem(preset, model, config=config, overrides=overrides or {}))
    if overrides and splits is not None:
        clash = [k for k in overrides if k.rpartition(".")[2] in SPLIT_FIELDS]
        if clash:
            raise ConfigError(f"--set {', '.join(clash)}: the split axis sets {', '.join(SPLIT_FIELDS)}; drop one")
    axes = []
    if points is not None:
        axes.append(points_axis(read_points_csv(points) if isinstance(points, (str, Path)) else points))
    for key, values in (grid or {}).items():
        name = _field_name(f"grid {key}", key)
        axes.append(Axis(name, {name: parse_grid_values(name, values)}))
    swept = {name for axis in axes for name in axis.values}
    fixed_and_swept = [k for k in overrides or {} if k.rpartition(".")[2] in swept]
    if fixed_and_swept:
        raise ConfigError(f"--set {', '.join(fixed_and_swept)}: the field is also swept (--grid or points), "
                          "which would override it; give each field one value or one axis")
    spec = SweepSpec(
        base, tuple(axes), parse_schemes(schemes), parse_splits(splits, model), model, parse_gradients(gradients)
    )
    _validate(spec)
    return spec


#: Spec file key -> (allowed TOML types, what it must be).
_SPEC_KEYS: dict[str, tuple[tuple[type, ...], str]] = {
    "preset": ((str,), "a preset name (string)"),
    "model": ((str,), "a model preset name (string)"),
    "config": ((str,), "a TOML file path (string)"),
    "split": ((str, int, list), '"all", "FIRST:LAST", "S1,S2,..." or a list of integers'),
    "scheme": ((str, list), '"all", a comma list or a list of scheme names'),
    "out": ((str,), f"a path (string) ending in {' or '.join(OUT_SUFFIXES)}"),
    "chunk_size": ((int,), "an integer >= 1"),
    "set": ((dict,), "a table of FIELD = value"),
    "grid": ((dict,), 'a table of FIELD = "SPEC" or FIELD = [values]'),
    "points": ((str, list), "a CSV file path (string) or an array of tables [[points]]"),
    "gradient": ((list,), 'a list of "OUTPUT/FIELD" strings'),
}


def read_spec_file(path: str | Path) -> dict[str, Any]:
    """The options of a TOML spec file (format in the module docstring), paths resolved against it.

    Returns ``{"preset", "model", "config", "overrides", "grid", "points", "splits", "schemes",
    "out", "chunk_size"}`` (absent keys omitted): the keywords of :func:`build_spec` plus ``out``
    and ``chunk_size``. Raises ConfigError naming the file, the key, its value and what is allowed.
    """
    path = Path(path)
    data = read_toml_file(path, "spec file")
    unknown = sorted(set(data) - set(_SPEC_KEYS))
    if unknown:
        raise ConfigError(f"spec file {str(path)!r}: unknown key(s) {', '.join(unknown)}; allowed: {', '.join(_SPEC_KEYS)}")
    for key, value in data.items():
        types, allowed = _SPEC_KEYS[key]
        if not isinstance(value, types) or isinstance(value, bool) or (key == "chunk_size" and value < 1):
            raise ConfigError(f"spec file {str(path)!r}: {key} = {value!r}; expected {allowed}")
    here = path.parent
    renames = {"set": "overrides", "split": "splits", "scheme": "schemes", "gradient": "gradients"}
    options = {renames.get(k, k): v for k, v in data.items()}
    for key in ("config", "out"):
        if key in options:
            options[key] = here / options[key]
    if isinstance(options.get("points"), str):
        options["points"] = here / options["points"]
    return options


# ----------------------------------------------------------------------------- chunks


@dataclasses.dataclass(frozen=True)
class ChunkLayout:
    """The grid (``shape``) cut into hyper-rectangular chunks of ``block`` grid points (C order)."""

    shape: tuple[int, ...]
    block: tuple[int, ...]

    @property
    def chunk_grid(self) -> tuple[int, ...]:
        return tuple(-(-n // b) for n, b in zip(self.shape, self.block))

    @property
    def num_chunks(self) -> int:
        return math.prod(self.chunk_grid)

    @property
    def block_points(self) -> int:
        return math.prod(self.block)

    def region(self, chunk: int) -> tuple[slice, ...]:
        """The grid region of chunk number ``chunk`` (edge chunks are cut at the grid's end)."""
        index = np.unravel_index(chunk, self.chunk_grid) if self.shape else ()
        return tuple(slice(i * b, min((i + 1) * b, n)) for i, b, n in zip(index, self.block, self.shape))


def chunk_layout(shape: Sequence[int], max_points: int) -> ChunkLayout:
    """Chunks of at most ``max_points`` (at least one) grid points: whole along the innermost dims,
    then the next dim cut into equal pieces (so edge chunks waste little storage), then one.
    """
    block, room = [], max(1, int(max_points))
    for n in reversed(tuple(shape)):
        take = n if n <= room else -(-n // -(-n // room))
        block.append(take)
        room = room // n if take == n else 1
    return ChunkLayout(tuple(shape), tuple(reversed(block)))


def best_split(status, retained_params, log10_bound, splits, rtol=BEST_SPLIT_RTOL):
    """Best split over the last axis: ``(best_split, best_log10_distortion_bound)``.

    The first split (a value of ``splits``) among OPTIMAL statuses whose ``retained_params`` is
    within ``rtol`` (relative) of the largest OPTIMAL one; -1 and NaN where no split is OPTIMAL.
    The tolerance makes ties (e.g. several splits that need no pruning) go to the smallest split
    rather than to rounding noise.
    """
    optimal = status == Status.OPTIMAL
    score = jnp.where(optimal, retained_params, -jnp.inf)
    best_value = jnp.max(score, axis=-1, keepdims=True)
    index = jnp.argmax(optimal & (score >= best_value * (1.0 - rtol)), axis=-1)
    found = jnp.any(optimal, axis=-1)
    at_best = jnp.take_along_axis(log10_bound, index[..., None], axis=-1)[..., 0]
    return (
        jnp.where(found, jnp.asarray(splits, jnp.int32)[index], -1),
        jnp.where(found, at_best, jnp.nan),
    )


class _Plan(NamedTuple):
    """The static structure of one scheme's chunk computation (the jit cache key, with the inputs' structure).

    One compiled function per scheme: compile time grows linearly in the schemes swept, and a
    persistent compilation cache serves any later sweep that includes the scheme.
    """

    shape: tuple[int, ...]  # grid shape
    block: tuple[int, ...]  # chunk shape
    scheme: str
    splits: tuple[int, ...] | None
    mesh: Mesh  # local devices, one axis "chunk"
    gradients: tuple[tuple[str, str], ...] = ()

    @property
    def padded_points(self) -> int:
        """Grid points of a block rounded up to a multiple of the device count."""
        return -(-math.prod(self.block) // self.mesh.size) * self.mesh.size


def gradient_variable(output: str, field: str) -> str:
    """Name of the stored derivative d output/d field."""
    return f"d_{output}_d_{field}"


def _solve_scheme(problem, plan: _Plan) -> dict[str, jax.Array]:
    """Every stored variable for one scheme: Solution fields (chunk[, split]) and the best split (chunk).

    ``problem`` holds one instance per (grid point, split) pair, flat (the split fastest): one-dimensional
    arrays compile faster and run faster on CPU than (point, split) ones.
    """
    instances = plan.padded_points * len(plan.splits or (None,))
    shape = (plan.padded_points,) + (() if plan.splits is None else (len(plan.splits),))
    solution = solve_exact(problem, plan.scheme)
    values = {stored: getattr(solution, field) for field, (stored, *_) in SOLUTION_VARIABLES.items()}
    if plan.gradients:
        from laimco_jax.sensitivity import field_derivatives

        fields = tuple(dict.fromkeys(field for _, field in plan.gradients))
        derivatives = field_derivatives(problem, solution, plan.scheme, fields)
        for output, field in plan.gradients:
            values[gradient_variable(output, field)] = getattr(derivatives[field], output)
    out = {name: jnp.broadcast_to(v, (instances,)).reshape(shape) for name, v in values.items()}
    if plan.splits is None:
        return out
    best, best_log10 = best_split(out["status"], out["retained_params"], out["log10_distortion_bound"], plan.splits)
    return {**out, "best_split": best, "best_log10_distortion_bound": best_log10}


@functools.partial(jax.jit, static_argnames=("plan",))
def _evaluate_chunk(origin, base, axis_values, split_values, plan: _Plan) -> dict[str, jax.Array]:
    """All variables of one scheme at the chunk at grid index ``origin``, sharded along the (padded) chunk axis.

    ``base`` is the configuration dict with array leaves, ``axis_values`` a tuple (one per grid dim)
    of ``{field: values}``, ``split_values`` ``{field: values (splits,)}``. Padding repeats the last
    grid point of the block (and is dropped on writing); edge blocks are clamped to the grid likewise.
    """
    sharded = NamedSharding(plan.mesh, PartitionSpec("chunk"))
    n_block, n_splits = math.prod(plan.block), len(plan.splits or (None,))
    instance = jax.lax.with_sharding_constraint(jnp.arange(plan.padded_points * n_splits), sharded)
    local = jnp.minimum(instance // n_splits, n_block - 1)  # the grid point in the block
    swept = {name: v[instance % n_splits] for name, v in split_values.items()}
    for d, values in enumerate(axis_values):
        stride = math.prod(plan.block[d + 1 :])
        index = jnp.minimum(origin[d] + local // stride % plan.block[d], plan.shape[d] - 1)
        swept.update({name: v[index] for name, v in values.items()})
    return jax.lax.with_sharding_constraint(_solve_scheme(_configuration(base, swept), plan), sharded)


def _local_mesh() -> Mesh:
    return Mesh(np.array(jax.local_devices()), ("chunk",))


class _Evaluator(NamedTuple):
    """``evaluate(chunk)``: a dict of variables (padded chunk[, split]) per scheme, dispatched asynchronously;
    ``compile_jobs``: one callable per scheme that compiles its chunk function ahead of time (so that
    compiling can overlap preparing the store; a later ``evaluate`` reuses the compiled program).
    """

    evaluate: Callable[[int], list[dict]]
    compile_jobs: tuple[Callable[[], Any], ...]


def _chunk_evaluator(spec: SweepSpec, layout: ChunkLayout, mesh: Mesh, dtype) -> _Evaluator:
    """The chunk evaluation of ``spec``. All values (base configuration, axes, splits) are arguments,
    so sweeps of the same structure share one compilation per scheme.
    """
    replicated = NamedSharding(mesh, PartitionSpec())

    def cast(tree):
        return jax.device_put(jax.tree_util.tree_map(lambda v: np.asarray(v, dtype), tree), replicated)

    base = cast(spec.base)
    axis_values = cast(tuple(dict(axis.values) for axis in spec.axes))
    split_values = cast(spec.split_values())
    plans = [_Plan(layout.shape, layout.block, scheme, spec.splits, mesh, spec.gradients) for scheme in spec.schemes]

    def origin(chunk: int) -> np.ndarray:
        return np.array([r.start for r in layout.region(chunk)], np.int32)

    def evaluate(chunk: int) -> list[dict]:
        return [_evaluate_chunk(origin(chunk), base, axis_values, split_values, plan=plan) for plan in plans]

    def compile_job(plan: _Plan):
        return lambda: _evaluate_chunk.lower(origin(0), base, axis_values, split_values, plan=plan).compile()

    return _Evaluator(evaluate, tuple(map(compile_job, plans)))


# ----------------------------------------------------------------------------- storage


def _variables(spec: SweepSpec, dtype) -> dict[str, tuple[tuple[str, ...], Any, Any, dict]]:
    """Stored variable -> (dims, dtype, fill value, attrs)."""
    dims = tuple(a.dim for a in spec.axes) + ("scheme",)
    inner = dims + (() if spec.splits is None else ("split",))
    out = {}
    for field, (stored, units, text, extra) in SOLUTION_VARIABLES.items():
        integer = field in _INT_FIELDS
        out[stored] = (inner, np.int32 if integer else dtype, -1 if integer else np.nan,
                       {"units": units, "long_name": text, **extra})
    for output, field in spec.gradients:
        out[gradient_variable(output, field)] = (
            inner, dtype, np.nan, {"long_name": f"implicit derivative d {output} / d {field} at the optimum"}
        )
    if spec.splits is not None:
        for name, (units, text) in _BEST_VARIABLES.items():
            integer = name == "best_split"
            out[name] = (dims, np.int32 if integer else dtype, -1 if integer else np.nan, {"units": units, "long_name": text})
    return out


def _dim_sizes(spec: SweepSpec) -> dict[str, int]:
    """Length of every dim of the stored variables."""
    return dict(zip((a.dim for a in spec.axes), spec.shape), scheme=len(spec.schemes), split=len(spec.splits or ()))


def _variable_bytes(spec: SweepSpec, layout: ChunkLayout, dtype) -> dict[str, tuple[int, int]]:
    """Stored variable -> (bytes of one Zarr chunk as stored, bytes of the whole variable) [B], uncompressed
    (the store is: edge chunks are stored whole, so chunks x chunk bytes bounds the store from above)."""
    sizes, grid = _dim_sizes(spec), len(spec.axes)
    out = {}
    for name, (dims, vtype, _, _) in _variables(spec, dtype).items():
        per_point = math.prod(sizes[d] for d in dims[grid:]) * np.dtype(vtype).itemsize
        out[name] = (layout.block_points * per_point, math.prod(spec.shape) * per_point)
    return out


def _store_attrs(spec: SweepSpec, layout: ChunkLayout, dtype) -> dict[str, Any]:
    from laimco_jax import __version__

    return {
        "title": "laimco_jax sweep of (P1), exact solver",
        "config_toml": dump_toml(problem_from_dict(spec.base)),
        "sweep_spec": spec.to_json(),
        "chunk_block": list(layout.block),
        "dtype": np.dtype(dtype).name,
        "split_model": spec.split_model if spec.splits is not None else "",
        "split_fields": list(SPLIT_FIELDS) if spec.splits is not None else [],
        "laimco_jax_version": __version__,
        "complete": False,  # set true when the last chunk is written
    }


def _work_store(out: Path) -> Path:
    """The Zarr store a sweep into ``out`` writes: ``out`` itself (``.zarr``) or ``OUT.zarr`` next to a
    ``.nc`` output. ConfigError for any other suffix."""
    if out.suffix not in OUT_SUFFIXES:
        allowed = "; ".join(f"{suffix} ({what})" for suffix, what in OUT_SUFFIXES.items())
        raise ConfigError(f"--out {str(out)!r}: the suffix {out.suffix!r} is not supported; allowed: {allowed}")
    return out if out.suffix == ".zarr" else out.with_name(out.name + ".zarr")


def _results(out: Path) -> Path:
    """Where the results of the sweep into ``out`` are now: its finished netCDF file, else its Zarr store."""
    store = _work_store(out)
    return out if store != out and out.exists() else store


def _create_store(out: Path, spec: SweepSpec, layout: ChunkLayout, dtype) -> None:
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


def _write_skeleton(out: Path, spec: SweepSpec, layout: ChunkLayout, dtype) -> None:
    """Coordinates, attrs, empty variables (chunked like the sweep) and the progress markers."""
    import xarray as xr
    import zarr

    coords: dict[str, Any] = {}
    for axis in spec.axes:
        for name, values in axis.values.items():
            coords[name] = (axis.dim, values, {"units": FIELD_UNITS[name], "long_name": f"{FIELD_SECTION[name]}.{name}"})
    coords["scheme"] = ("scheme", np.array(spec.schemes))
    if spec.splits is not None:
        coords["split"] = ("split", np.array(spec.splits, np.int32), {"units": "layers", "long_name": "layers on the device"})
    xr.Dataset(coords=coords, attrs=_store_attrs(spec, layout, dtype)).to_zarr(
        out, mode="w-", zarr_format=_ZARR_FORMAT, consolidated=False
    )
    root = zarr.open_group(out, mode="r+", zarr_format=_ZARR_FORMAT)
    point_fields = [n for a in spec.axes if a.dim == POINT_DIM for n in a.values]
    sizes = _dim_sizes(spec)
    grid_dims = len(layout.block)
    for name, (dims, vtype, fill, attrs) in _variables(spec, dtype).items():
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


def _open_arrays(out: Path, spec: SweepSpec) -> dict[str, Any]:
    """The store's result arrays by variable name, and its progress markers under ``_PROGRESS``."""
    import zarr

    root = zarr.open_group(out, mode="r+", zarr_format=_ZARR_FORMAT)
    try:
        return {name: root[name] for name in [*_variables(spec, np.float64), _PROGRESS]}
    except KeyError as exc:
        raise ConfigError(f"{str(out)!r} lacks the array {exc}: an incomplete store; remove it and start again") from exc


def _write_chunk(arrays: Mapping[str, Any], layout: ChunkLayout, chunk: int, outputs: Sequence[Mapping[str, jax.Array]],
                 io: ThreadPoolExecutor) -> int:
    """Write one evaluated chunk (a dict per scheme) into its region, then mark it done; the number of grid points.

    The variables are written concurrently on ``io`` (each is its own Zarr chunk file).
    """
    region = layout.region(chunk)
    extent = tuple(slice(0, r.stop - r.start) for r in region)

    def write(name: str) -> None:
        host = np.stack([np.asarray(scheme[name])[: layout.block_points] for scheme in outputs], axis=1)
        arrays[name][region] = host.reshape(layout.block + host.shape[1:])[extent]

    list(io.map(write, outputs[0]))
    arrays[_PROGRESS][chunk] = 1
    return math.prod(r.stop - r.start for r in region)


def _written(store: Path) -> str:
    """``K of N chunks written to STORE`` (from its progress markers), or ``nothing written to STORE``."""
    import zarr

    try:
        done = zarr.open_array(store / _PROGRESS, mode="r", zarr_format=_ZARR_FORMAT)[:]
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


def _check_same_sweep(path: Path, spec: SweepSpec, dtype) -> dict[str, Any]:
    """The attrs of the sweep at ``path``, after checking that it is this very sweep (ConfigError if not)."""
    attrs = _sweep_attrs(path)
    if attrs["sweep_spec"] != spec.to_json() or attrs["dtype"] != np.dtype(dtype).name:
        raise ConfigError(
            f"{str(path)!r} holds a different sweep (grid, configuration, schemes, splits or dtype); "
            "use another output, or resume it with no sweep options"
        )
    return attrs


def stored_spec(out: str | Path) -> SweepSpec:
    """The spec of the sweep stored for ``out`` (to resume it without repeating the options)."""
    return SweepSpec.from_json(_sweep_attrs(_results(Path(out)))["sweep_spec"])


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
        warnings.warn(f"incomplete sweep: {_written(path)}; resume with: laimco sweep --resume --out {out}",
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


def _finish(store: Path, out: Path) -> None:
    """Mark the store complete (attribute ``complete``) if every chunk is marked done; a complete
    ``.nc`` output is then converted from it and the work store removed."""
    import zarr

    root = zarr.open_group(store, mode="r+", zarr_format=_ZARR_FORMAT)
    complete = bool(np.all(root[_PROGRESS][:] == 1))
    if complete and not root.attrs.get("complete"):
        root.attrs["complete"] = True
        zarr.consolidate_metadata(store)
    if complete and out != store:
        _write_netcdf(store, out)
        shutil.rmtree(store)


# ----------------------------------------------------------------------------- guards


def _free_bytes(path: Path) -> tuple[Path, int]:
    """The nearest existing directory at or above ``path`` and the bytes free there [B]."""
    where = path.absolute()
    while not where.is_dir():
        where = where.parent
    return where, shutil.disk_usage(where).free


def _check_size(out: Path, spec: SweepSpec, layout: ChunkLayout, dtype, chunks_left: int) -> None:
    """ConfigError unless the rest of the sweep fits on the disk of ``out``: ``chunks_left`` chunks of
    every variable (uncompressed, an upper bound), plus the whole netCDF file for a ``.nc`` output,
    which must also keep each variable under netCDF-3's 4 GiB."""
    sizes = _variable_bytes(spec, layout, dtype)
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


@contextlib.contextmanager
def _store_lock(store: Path):
    """Hold the lock file ``STORE.lock`` (next to the store: JSON of this process's pid and host) while
    writing ``store``, touching it every :data:`LOCK_HEARTBEAT_S`. Another live holder: ConfigError
    naming it. A dead holder left a stale lock, which is taken over: a process of this host that no
    longer runs, or one of another host whose lock went untouched for :data:`LOCK_STALE_S` (a job
    killed on one node and resumed on another).
    """
    lock = store.with_name(store.name + ".lock")
    _take_lock(lock, store)
    stop = threading.Event()
    heartbeat = threading.Thread(target=_touch_until, args=(lock, stop), daemon=True)
    heartbeat.start()
    try:
        yield
    finally:
        stop.set()
        heartbeat.join()
        lock.unlink(missing_ok=True)


def _touch_until(lock: Path, stop: threading.Event) -> None:
    """Refresh the lock's modification time every LOCK_HEARTBEAT_S until ``stop`` is set."""
    while not stop.wait(LOCK_HEARTBEAT_S):
        with contextlib.suppress(OSError):
            os.utime(lock)


def _take_lock(lock: Path, store: Path) -> None:
    """Create ``lock`` holding this process's pid and host, taking over a stale one (see :func:`_store_lock`)."""
    me = {"pid": os.getpid(), "host": socket.gethostname()}
    mine = lock.with_name(f"{lock.name}.{me['pid']}")
    try:
        lock.parent.mkdir(parents=True, exist_ok=True)
        mine.write_text(json.dumps(me))
        for _ in range(2):  # the second after removing a stale lock
            try:
                os.link(mine, lock)  # atomic, fails if the lock exists: the lock never lacks its holder
                return
            except FileExistsError:
                holder = _lock_holder(lock)
                if _holder_alive(holder, lock):
                    break
                lock.unlink(missing_ok=True)
    except OSError as exc:
        raise ConfigError(
            f"--out {str(store)!r}: cannot write in {str(lock.parent)!r} ({_reason(exc)}); choose a writable directory"
        ) from exc
    finally:
        with contextlib.suppress(OSError):
            mine.unlink(missing_ok=True)
    raise ConfigError(
        f"--out {str(store)!r} is being written by another sweep: process {holder.get('pid', '?')} on host "
        f"{holder.get('host', '?')} (lock file {lock}); wait for it, or remove the lock file if that process is gone"
    )


def _lock_holder(lock: Path) -> dict[str, Any]:
    """The ``{"pid", "host"}`` in a lock file ({} if unreadable)."""
    try:
        holder = json.loads(lock.read_text())
    except (OSError, ValueError):
        return {}
    return holder if isinstance(holder, dict) else {}


def _holder_alive(holder: Mapping[str, Any], lock: Path) -> bool:
    """False for an unreadable lock, a process of this host that no longer runs, and a process of
    another host (which cannot be asked) whose lock is older than LOCK_STALE_S."""
    pid = holder.get("pid")
    if not holder:
        return False  # unreadable (the lock is written whole, so never while being taken)
    if holder.get("host") != socket.gethostname() or not isinstance(pid, int) or pid <= 0:
        try:
            return time.time() - lock.stat().st_mtime < LOCK_STALE_S
        except FileNotFoundError:
            return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


# ----------------------------------------------------------------------------- driver


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


def run_sweep(
    spec: SweepSpec,
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
      spec: a validated sweep (:func:`build_spec`).
      out: ``NAME.zarr``, the store (a directory), or ``NAME.nc``, a netCDF file converted at the end
        from the work store ``NAME.nc.zarr`` (which is what is resumed and is removed once the netCDF
        file is written). Must not exist unless ``resume``.
      chunk_size: most (P1) instances per chunk (grid points x schemes x splits); ignored on resume
        (the stored layout is kept).
      resume: continue the sweep stored in ``out`` (which must hold this very spec), computing only
        the chunks not yet done; if ``out`` does not exist, start it.
      dtype: the float dtype of the computation and the results (default: float64 if
        ``jax_enable_x64`` is on, else float32).
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
    store = _work_store(out)
    dtype = jnp.dtype(dtype if dtype is not None else jax.dtypes.canonicalize_dtype(jnp.float64))
    if jax.dtypes.canonicalize_dtype(dtype) != dtype:
        raise ConfigError(f"dtype {dtype.name} needs jax_enable_x64 (jax.config.update('jax_enable_x64', True))")
    if not isinstance(chunk_size, int) or chunk_size < 1:
        raise ConfigError(f"chunk size (--chunk-size, chunk_size) = {chunk_size!r}: must be an integer >= 1 (instances)")
    if store != out and out.exists():  # the netCDF file of a finished sweep
        if not resume:
            raise ConfigError(f"{str(out)!r} exists; pass resume to continue it, or remove it")
        _check_same_sweep(out, spec, dtype)
        return out
    resume_hint = f"resume with: laimco sweep --resume --out {out}"
    with _store_lock(store) if jax.process_index() == 0 else contextlib.nullcontext():
        try:
            _sweep_into(store, out, spec, chunk_size=chunk_size, resume=resume, dtype=dtype, progress=progress,
                        on_chunk=on_chunk, force=force)
        except KeyboardInterrupt as exc:
            raise Interrupted(f"interrupted: {_written(store)}; {resume_hint}") from exc
        except OSError as exc:
            raise ConfigError(
                f"--out {str(out)!r}: writing {exc.filename or store} failed ({_reason(exc)}); {_written(store)}; "
                f"fix that and {resume_hint}"
            ) from exc
    return out


def _sweep_into(store: Path, out: Path, spec: SweepSpec, *, chunk_size: int, resume: bool, dtype, progress: bool,
                on_chunk: Callable[[int, int], None] | None, force: bool) -> None:
    """:func:`run_sweep` in the store ``store`` of the output ``out``, once it holds the store's lock."""
    _barrier("laimco-sweep-start")
    exists = store.exists()
    if exists and not resume:
        raise ConfigError(f"{str(store)!r} exists; pass resume to continue it, or remove it")
    if exists:
        layout = ChunkLayout(spec.shape, tuple(_check_same_sweep(store, spec, dtype)["chunk_block"]))
        chunks_left = int(np.sum(_open_arrays(store, spec)[_PROGRESS][:] == 0))
    else:
        layout = chunk_layout(spec.shape, chunk_size // math.prod(spec.inner_shape))
        chunks_left = layout.num_chunks
    if not force:
        _check_size(out, spec, layout, dtype, chunks_left)
    _compute(store, spec, layout, dtype, create=not exists, progress=progress, on_chunk=on_chunk)
    _barrier("laimco-sweep-done")
    if jax.process_index() == 0:
        _finish(store, out)
    _barrier("laimco-sweep-finished")


def _compute(store: Path, spec: SweepSpec, layout: ChunkLayout, dtype, *, create: bool, progress: bool,
             on_chunk: Callable[[int, int], None] | None) -> None:
    """Create the store (if ``create``) while compiling, then compute and write this process's chunks not done.

    The writer thread's pool is left before the file-writing pool, so every chunk handed to it is
    written whole and marked done even when a KeyboardInterrupt unwinds this.
    """
    evaluator = _chunk_evaluator(spec, layout, _local_mesh(), dtype)
    per_point = math.prod(spec.inner_shape)
    who = f" (process {jax.process_index()} of {jax.process_count()})" if jax.process_count() > 1 else ""
    with (
        _progress_bar(progress and jax.process_index() == 0) as bar,
        ThreadPoolExecutor(min(len(spec.schemes), os.cpu_count() or 1)) as compiler,
        ThreadPoolExecutor(_WRITE_THREADS) as io,
        ThreadPoolExecutor(1) as writer,
    ):
        task = bar.add_task(f"compiling {len(spec.schemes)} scheme(s){who}", total=None)
        compiled = [compiler.submit(job) for job in evaluator.compile_jobs]  # while the store is prepared
        _barrier("laimco-sweep-checked")
        if create and jax.process_index() == 0:
            _create_store(store, spec, layout, dtype)
        _barrier("laimco-sweep-created")
        arrays = _open_arrays(store, spec)
        todo = np.flatnonzero(arrays[_PROGRESS][:] == 0)
        _barrier("laimco-sweep-progress-read")
        mine = todo[jax.process_index() :: jax.process_count()]
        total = per_point * sum(math.prod(r.stop - r.start for r in layout.region(int(c))) for c in mine)
        for job in compiled:
            job.result()
        bar.reset(task, total=total, description=f"sweep{who}")  # rate and ETA count from here
        pending: deque = deque()

        def finish():
            chunk, future = pending.popleft()
            instances = future.result() * per_point
            bar.advance(task, instances)
            if on_chunk is not None:
                on_chunk(chunk, instances)

        for chunk in map(int, mine):
            outputs = evaluator.evaluate(chunk)  # dispatched; the writer thread waits for it
            pending.append((chunk, writer.submit(_write_chunk, arrays, layout, chunk, outputs, io)))
            if len(pending) > 1:
                finish()
        while pending:
            finish()


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
) -> Path:
    """``laimco sweep``: build the spec from a spec file and/or options, then run or resume it.

    Options given (not None) override the spec file's (``grids`` per field, ``overrides`` per key);
    ``gradients`` are ``OUTPUT/FIELD`` items (spec file key ``gradient``, a list);
    ``preset`` and ``model`` default to the file's, else ``paper`` and ``bert-base``. ``resume`` with
    none of preset/model/config/overrides/grids/points/splits/schemes/spec continues the sweep stored
    in ``out`` as it was started. ``distributed`` calls ``jax.distributed.initialize()`` first (SLURM and other
    clusters: see the module docstring). ``out`` defaults to ``sweep.zarr``; ``force`` skips the disk
    space check (see :func:`run_sweep`). Returns ``out``.
    """
    if distributed:
        jax.distributed.initialize()
    options = read_spec_file(spec) if spec is not None else {}
    out = Path(out or options.pop("out", None) or "sweep.zarr")
    file_chunk_size = options.pop("chunk_size", DEFAULT_CHUNK_SIZE)
    chunk_size = file_chunk_size if chunk_size is None else chunk_size
    options.pop("out", None)
    given = dict(preset=preset, model=model, config=config, points=points, splits=splits, schemes=schemes,
                 gradients=gradients)
    grid = _grid_options(grids)
    if resume and not options and not grid and not overrides and all(v is None for v in given.values()):
        sweep = stored_spec(out)
    else:
        options.update({k: v for k, v in given.items() if v is not None})
        options["overrides"] = {**options.get("overrides", {}), **(overrides or {})}
        options["grid"] = {**options.get("grid", {}), **grid}
        sweep = build_spec(**options)
    return run_sweep(sweep, out, chunk_size=chunk_size, resume=resume, dtype=jnp.float64, progress=progress,
                     force=force)
