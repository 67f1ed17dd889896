"""Sweep specs: the axes, schemes and splits of a sweep, parsed from options, spec files and point lists.

:func:`build_spec` validates a whole sweep before any compute; the forms of grid values, splits,
schemes, gradients and spec files are in the docstring of :mod:`laimco_jax.sweep`.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from laimco_jax.params import (
    FIELD_SECTION,
    MODEL_SPECS,
    RAW_INPUT_SPLIT,
    ConfigError,
    SystemParams,
    apply_overrides,
    field_name,
    make_problem,
    model_preset_fields,
    problem_from_dict,
    problem_to_dict,
    read_toml_file,
    split_upload_bits,
)
from laimco_jax.solvers import SCHEMES

#: Model fields that depend on the split point; a split axis sets them from the preset model profile.
SPLIT_FIELDS = ("params_device", "params_server", "flops_device", "flops_server", "embedding_bits")
#: The split axis' flag (not a field): 1 at split 0, where θ is ``input_bits`` (swept or not).
RAW_INPUT = "raw_input"
POINT_DIM = "point"
#: Output suffix -> format: ``.zarr`` is the resumable store itself; ``.nc`` is netCDF (3, 64-bit
#: offset, scipy's writer) converted at the end from the Zarr work store ``OUT.zarr`` next to it.
OUT_SUFFIXES = {".zarr": "Zarr store", ".nc": "netCDF file (written from the work store OUT.zarr when complete)"}


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


#: The dim of a fading sweep's channel draws (:class:`FadingSamples`).
SAMPLE_DIM = "sample"
#: Channel draws per grid point of a fading sweep when ``--samples`` is not given.
DEFAULT_FADING_SAMPLES = 1000


@dataclasses.dataclass(frozen=True)
class FadingSamples:
    """The channel draws of a fading sweep (:mod:`laimco_jax.sweep.fading`): the model (a
    :func:`~laimco_jax.fading.parse_fading` string, canonical), the draws N per grid point, their seed,
    and whether only the reductions over the draws are stored (``reduce_only``)."""

    model: str
    samples: int
    seed: int = 0
    reduce_only: bool = False

    @property
    def fading(self):
        from laimco_jax.fading import parse_fading

        return parse_fading(self.model)


def parse_fading_samples(model: str | None, samples: Any = None, seed: Any = None,
                         reduce_only: bool = False) -> FadingSamples | None:
    """The :class:`FadingSamples` of ``--fading MODEL --samples N --seed S [--reduce-only]`` (None without
    ``--fading``; ``samples`` default :data:`DEFAULT_FADING_SAMPLES`, ``seed`` 0). ConfigError (one line
    naming the option, the value and what is allowed) for an unknown model, N outside [1, 2^32], a seed
    that is not an integer in [0, 2^32), or --samples / --reduce-only without --fading."""
    from laimco_jax.fading import check_samples, check_seed, parse_fading

    if model is None:
        given = [flag for flag, v in ((f"--samples {samples!r}", samples), ("--reduce-only", reduce_only or None))
                 if v is not None]
        if given:
            raise ConfigError(f"{', '.join(given)}: only with --fading MODEL (the channel draws of a fading sweep)")
        return None
    name = parse_fading(model).name
    samples = check_samples("--samples", DEFAULT_FADING_SAMPLES if samples is None else samples)
    return FadingSamples(name, samples, check_seed("--seed", 0 if seed is None else seed), bool(reduce_only))


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
    fading: FadingSamples | None = None  # channel draws per grid point (laimco_jax.sweep.fading)

    @property
    def shape(self) -> tuple[int, ...]:
        """Sizes of the grid dims (schemes and splits excluded)."""
        return tuple(axis.size for axis in self.axes)

    @property
    def inner_shape(self) -> tuple[int, ...]:
        """Sizes of the dims every grid point carries: (schemes[, splits]) or, with fading, (schemes, samples)
        (also with ``reduce_only``: every draw is solved, so the chunk size counts them)."""
        if self.fading is not None:
            return (len(self.schemes), self.fading.samples)
        return (len(self.schemes),) + (() if self.splits is None else (len(self.splits),))

    @property
    def num_instances(self) -> int:
        """Number of (P1) instances the sweep solves."""
        return math.prod(self.shape) * math.prod(self.inner_shape)

    def split_values(self) -> dict[str, np.ndarray]:
        """The split-dependent model fields at each split, ``{field: array of len(splits)}``, and
        :data:`RAW_INPUT` (1 at split 0, where :func:`configuration` uploads ``input_bits``)."""
        if self.splits is None:
            return {}
        rows = [model_preset_fields(self.split_model, s) for s in self.splits]
        values = {name: np.array([row[name] for row in rows], np.float64) for name in SPLIT_FIELDS}
        return {**values, RAW_INPUT: np.array([s == RAW_INPUT_SPLIT for s in self.splits], np.float64)}

    # What the store and the driver ask of a spec (laimco_jax.sweep.store's docstring); the answers
    # live in schema.py and compute.py, imported here on use (they import this module).

    def variables(self, dtype) -> dict[str, tuple[tuple[str, ...], Any, Any, dict]]:
        """Stored variable -> (dims, dtype, fill value, attrs)."""
        from laimco_jax.sweep.schema import variables

        return variables(self, dtype)

    def dim_sizes(self) -> dict[str, int]:
        """Length of every dim of the stored variables."""
        from laimco_jax.sweep.schema import dim_sizes

        return dim_sizes(self)

    def coords(self) -> dict[str, Any]:
        from laimco_jax.sweep.schema import coords

        return coords(self)

    def store_attrs(self) -> dict[str, Any]:
        from laimco_jax.sweep.schema import store_attrs

        return store_attrs(self)

    def evaluator(self, layout, mesh, dtype):
        """The :class:`~laimco_jax.sweep.compute.ChunkEvaluator` of this sweep cut into ``layout``."""
        if self.fading is not None:
            from laimco_jax.sweep.fading import fading_evaluator

            return fading_evaluator(self, layout, mesh, dtype)
        from laimco_jax.sweep.compute import chunk_evaluator

        return chunk_evaluator(self, layout, mesh, dtype)

    def to_json(self) -> str:
        """Canonical JSON (exact float round trip), stored in the results and compared on resume (the key
        ``fading`` only in a fading sweep, so the stores of other sweeps keep their spec text)."""
        fading = {} if self.fading is None else {"fading": dataclasses.asdict(self.fading)}
        return json.dumps(
            {
                **fading,
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
        fading = FadingSamples(**data["fading"]) if "fading" in data else None
        return cls(data["base"], axes, tuple(data["schemes"]), splits, data["split_model"], gradients, fading)


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


def os_reason(exc: BaseException) -> str:
    """An OS error's reason without its repr (``Is a directory``), else the exception's text."""
    return getattr(exc, "strerror", None) or str(exc)


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
    """The values of one grid axis from its spec (see :mod:`laimco_jax.sweep`), as float64.

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
    name = field_name(key.strip(), f"--grid {item!r}")
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


def parse_names(spec: str | Sequence[str] | None, allowed: Sequence[str], default: str, label: str) -> tuple[str, ...]:
    """Names from ``all``, a comma list or a list of names, each in ``allowed`` and given once (None:
    ``default``); a ConfigError naming ``label`` otherwise."""
    if spec is None:
        return (default,)
    names = list(spec) if isinstance(spec, (list, tuple)) else [s.strip() for s in str(spec).split(",")]
    if names == ["all"]:
        return tuple(allowed)
    for name in names:
        if name not in allowed:
            raise ConfigError(f"{label} = {spec!r}: {name!r} is not known; allowed: all, {', '.join(allowed)}")
    if not names or len(set(names)) != len(names):
        raise ConfigError(f"{label} = {spec!r}: give each {label} once")
    return tuple(names)


def parse_schemes(spec: str | Sequence[str] | None) -> tuple[str, ...]:
    """Schemes from ``all``, a comma list or a list of names (None: ``proposed``)."""
    return parse_names(spec, SCHEMES, "proposed", "scheme")


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
        raise ConfigError(f"points file {str(path)!r} cannot be read ({os_reason(exc)}); expected a CSV file") from exc
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
        name = field_name(key.strip(), f"points field {key!r}")
        if name in values:
            raise ConfigError(f"points field {key!r}: field {name!r} is given twice; give each field once")
        values[name] = np.array([_number(f"points {name}", v) for v in column], np.float64)
    return Axis(POINT_DIM, values)


def configuration(base: Mapping, values: Mapping[str, Any]):
    """The Problem of ``base`` with fields set to ``values`` (arrays or tracers; channel form switched).

    ``values`` may hold the split axis' :data:`RAW_INPUT` flag: where it is 1 (split 0) the upload θ is
    the (base or swept) ``input_bits``, as in :func:`~laimco_jax.params.make_problem`."""
    fields = {name: v for name, v in values.items() if name != RAW_INPUT}
    data = apply_overrides(base, fields)
    if any(n not in data[FIELD_SECTION[n]] for n in fields):
        channel = [n for n in fields if n == "channel_gain" or n in SystemParams.PATHLOSS_FIELDS]
        raise ConfigError(f"swept fields {', '.join(channel)} set both forms of the channel; sweep one form only")
    if RAW_INPUT in values:
        model = data["model"]
        model["embedding_bits"] = split_upload_bits(model["embedding_bits"], model["input_bits"], values[RAW_INPUT])
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
            configuration(spec.base, axis.values)
        except ConfigError as exc:
            raise ConfigError(f"{axis.dim} axis: {exc}") from exc
    configuration(spec.base, _open_mesh(spec))


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
    fading: str | None = None,
    samples: int | None = None,
    seed: int | None = None,
    reduce_only: bool = False,
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
      fading, samples, seed, reduce_only: channel draws per grid point (:func:`parse_fading_samples`,
        :mod:`laimco_jax.sweep.fading`); not with ``splits`` or ``gradients``.
    """
    draws = parse_fading_samples(fading, samples, seed, reduce_only)
    if draws is not None and (splits is not None or gradients):
        given = ", ".join(flag for flag, v in (("--split", splits), ("--gradient", gradients)) if v)
        raise ConfigError(f"--fading {fading!r} with {given}: a fading sweep has no split axis or stored gradients")
    base = problem_to_dict(make_problem(preset, model, config=config, overrides=overrides or {}))
    fixed = {key: field_name(key, f"--set {key}") for key in overrides or {}}  # key -> bare field name
    if fixed and splits is not None:
        clash = [key for key, name in fixed.items() if name in SPLIT_FIELDS]
        if clash:
            raise ConfigError(f"--set {', '.join(clash)}: the split axis sets {', '.join(SPLIT_FIELDS)}; drop one")
    axes = []
    if points is not None:
        axes.append(points_axis(read_points_csv(points) if isinstance(points, (str, Path)) else points))
    for key, values in (grid or {}).items():
        name = field_name(key.strip(), f"grid {key}")
        axes.append(Axis(name, {name: parse_grid_values(name, values)}))
    swept = {name for axis in axes for name in axis.values}
    fixed_and_swept = [key for key, name in fixed.items() if name in swept]
    if fixed_and_swept:
        raise ConfigError(f"--set {', '.join(fixed_and_swept)}: the field is also swept (--grid or points), "
                          "which would override it; give each field one value or one axis")
    spec = SweepSpec(
        base, tuple(axes), parse_schemes(schemes), parse_splits(splits, model), model, parse_gradients(gradients), draws
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
    "fading": ((str,), "a fading model (string), e.g. \"rayleigh\" or \"rician:5+lognormal:8\""),
    "samples": ((int,), "an integer >= 1 (channel draws per grid point, with fading)"),
    "seed": ((int,), "an integer >= 0 (seed of the channel draws, with fading)"),
    "reduce_only": ((bool,), "true or false (store only the reductions over the draws, with fading)"),
}


def read_spec_file(path: str | Path) -> dict[str, Any]:
    """The options of a TOML spec file (format in :mod:`laimco_jax.sweep`), paths resolved against it.

    Returns ``{"preset", "model", "config", "overrides", "grid", "points", "splits", "schemes",
    "gradients", "fading", "samples", "seed", "reduce_only", "out", "chunk_size"}`` (absent keys omitted): the keywords of :func:`build_spec` plus ``out``
    and ``chunk_size``. Raises ConfigError naming the file, the key, its value and what is allowed.
    """
    path = Path(path)
    data = read_toml_file(path, "spec file")
    unknown = sorted(set(data) - set(_SPEC_KEYS))
    if unknown:
        raise ConfigError(f"spec file {str(path)!r}: unknown key(s) {', '.join(unknown)}; allowed: {', '.join(_SPEC_KEYS)}")
    for key, value in data.items():
        types, allowed = _SPEC_KEYS[key]
        if not isinstance(value, types) or (isinstance(value, bool) and bool not in types) or (
                key == "chunk_size" and value < 1):
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
