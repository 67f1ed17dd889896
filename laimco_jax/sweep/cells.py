"""Cell sweeps: :func:`~laimco_jax.solvers.multiuser.solve_cell` over a grid of cells, into the sweep store.

A cell sweep starts from a cell file (:func:`~laimco_jax.cell.load_cell`) and varies it along grid axes:

* a grid axis per swept field (``--grid FIELD=SPEC``, the forms of :mod:`laimco_jax.sweep`): a field of
  the whole cell (``bandwidth_hz``, ``f_max_server_hz``), or any per-user field, which then takes the
  axis' value for every user of the cell (as given: a user at split 0 keeps its upload θ when
  ``input_bits`` is swept);
* optionally the number of users K (dim ``num_users``, ``--num-users 2,4,8`` or ``FIRST:LAST``) with
  ``draws`` random cells per K (dim ``draw``, ``--draws N``, default 1): the users are copies of the
  file's first user (of its ``[defaults]`` if it has no ``[[user]]``; its weight for all), at distances
  drawn uniformly over the annulus ``MIN <= d <= MAX`` around the server (``--distance-range MIN:MAX``
  [m]; density proportional to d). Draw ``d`` holds the first K users of one sequence of Kmax
  distances drawn from the seed ``(seed, d)`` (``--seed``, default 0), so a cell depends only on the
  seed, its draw and K: not on the chunking, the other K values or the number of draws, and the cells
  of one draw are nested (the K-user cell is the first K users of the K+1-user one);
* the objective (dim ``objective``, always present: ``--objective`` ``sum-log``, ``sum``, ``max``, a
  comma list or ``all``; default the file's).

Cells of different K are padded to Kmax = max K with absent users (as :func:`~laimco_jax.cell.stack_cells`),
so one compiled program per objective serves the whole sweep. Everything else (chunks, sharding, the
store, its lock, resume, interrupts, netCDF output) is the sweep machinery of :mod:`laimco_jax.sweep`;
the chunk size counts user problems (cells x objectives x Kmax).

Results (open with :func:`~laimco_jax.sweep.open_sweep`), dims ``(grid dims..., [num_users, draw,]
objective[, user])``:

* per cell: ``cell_status``, ``cell_infeasible_reason`` (none/user/band), ``cell_objective``,
  ``cell_lower_bound``, ``cell_certificate`` (the fields of
  :class:`~laimco_jax.solvers.multiuser.CellSolution`);
* per user (dim ``user``, numbered 1 ... Kmax in file order): ``band_share_hz`` (b_k), ``server_share_hz``
  (the server clock user k may use) and every :class:`~laimco_jax.solvers.Solution` field under the
  single-user sweep's names (``status``, ``rho``, ``p_w``, ``f_device_hz``, ``rho_server``,
  ``f_server_hz``, ``total_delay_s``, ``log2_distortion_bound``, ...). Absent users read NaN / -1;
* coordinates: the swept fields, ``num_users``, ``draw``, ``objective``, ``user``, ``present``
  ((num_users,) user), ``weight`` (user) and ``distance_m`` per user (draw, user with the K axis; user
  for the file's users when not swept);
* attrs: the cell as a cell file (``cell_toml``: with the K axis, its one template user), the spec
  (``sweep_spec``), ``server_sharing``, ``complete``.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import math
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import tomli_w
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from laimco_jax.cell import OBJECTIVES, SHARED_FIELDS, Cell, check_objective, load_cell
from laimco_jax.fading import annulus_distance
from laimco_jax.params import (
    FIELD_SECTION,
    ConfigError,
    SystemParams,
    check_range,
    field_name,
    problem_to_dict,
    read_toml_file,
    read_user_text,
)
from laimco_jax.solvers.multiuser import CellInfeasibleReason, solve_cell
from laimco_jax.sweep.compute import (
    ChunkEvaluator,
    ChunkLayout,
    chunk_origin,
    grid_indices,
    padded_points,
    replicate,
)
from laimco_jax.sweep.schema import _INT_FIELDS, _STATUS_FLAGS, SOLUTION_VARIABLES
from laimco_jax.sweep.spec import (
    Axis,
    _decode_values,
    _encode_values,
    configuration,
    parse_grid_values,
    parse_names,
)
from laimco_jax.units import FIELD_UNITS, SOLUTION_UNITS

NUM_USERS_DIM = "num_users"
DRAW_DIM = "draw"
OBJECTIVE_DIM = "objective"
USER_DIM = "user"
_RANDOM_DIMS = (NUM_USERS_DIM, DRAW_DIM)
_REASON_FLAGS = {
    "flag_values": [int(r) for r in CellInfeasibleReason],
    "flag_meanings": " ".join(r.name.lower() for r in CellInfeasibleReason),
}
_OBJECTIVE_UNITS = "bit (sum-log, max), 1 (sum)"
#: Per-cell stored variable -> (CellSolution field, units, description).
CELL_VARIABLES: dict[str, tuple[str, str, str]] = {
    "cell_status": ("status", "1", "the cell's solve status (-1: not computed)"),
    "cell_infeasible_reason": ("infeasible_reason", "1", "why the cell is infeasible"),
    "cell_objective": ("objective", _OBJECTIVE_UNITS, "objective: Σ w log2 D̂ (sum-log), Σ w D̂ (sum), max log2 D̂ (max)"),
    "cell_lower_bound": ("lower_bound", _OBJECTIVE_UNITS, "proven lower bound on the optimal objective"),
    "cell_certificate": ("certificate", "bit per unit weight (sum-log), bit (max), 1 (sum)",
                         "gap between objective and lower bound (CellSolution.certificate)"),
}
#: Per-user stored variables beyond the Solution's -> (CellSolution field, description).
SHARE_VARIABLES: dict[str, tuple[str, str]] = {
    "band_share_hz": ("bandwidth_hz", "the user's uplink band share b_k"),
    "server_share_hz": ("server_share_hz", "the server clock the user may use"),
}


def _number_list(where: str, items: Sequence[Any]) -> list[float]:
    try:
        return [float(v) for v in items]
    except (TypeError, ValueError):
        raise ConfigError(f"{where}: expected numbers") from None


def parse_num_users(spec: str | int | Sequence[int]) -> tuple[int, ...]:
    """User counts from ``K1,K2,...``, ``FIRST:LAST`` (inclusive), an integer or a list; each >= 1, distinct."""
    forms = "expected K1,K2,... or FIRST:LAST (inclusive) with distinct integers >= 1"
    items = list(spec) if isinstance(spec, (list, tuple)) else [spec]
    if not all(isinstance(k, str) or (isinstance(k, int) and not isinstance(k, bool)) for k in items):
        raise ConfigError(f"--num-users {spec!r}: {forms}")
    try:
        if isinstance(spec, str) and ":" in spec:
            first, last = spec.split(":")
            counts = list(range(int(first), int(last) + 1))
        elif isinstance(spec, str):
            counts = [int(k) for k in spec.split(",")]
        else:
            counts = [int(k) for k in items]
    except ValueError:
        raise ConfigError(f"--num-users {spec!r}: {forms}") from None
    if not counts or min(counts) < 1 or len(set(counts)) != len(counts):
        raise ConfigError(f"--num-users {spec!r}: {forms}")
    return tuple(counts)


def parse_distance_range(spec: str | Sequence[float]) -> tuple[float, float]:
    """``MIN:MAX`` [m] (or a pair) with 0 < MIN <= MAX."""
    where = f"--distance-range {spec!r}"
    parts = spec.split(":") if isinstance(spec, str) else list(spec)
    low, high = _number_list(where, parts) if len(parts) == 2 else (math.nan, math.nan)
    if not (math.isfinite(low) and math.isfinite(high) and 0 < low <= high):
        raise ConfigError(f"{where}: expected MIN:MAX in metres with 0 < MIN <= MAX")
    return low, high


def parse_objectives(spec: str | Sequence[str] | None, default: str) -> tuple[str, ...]:
    """Objectives from ``all``, a comma list or a list (None: ``default``)."""
    return parse_names(spec, OBJECTIVES, check_objective(default), "objective")


def draw_distances(seed: int, draws: int, users: int, distance_range: tuple[float, float]) -> np.ndarray:
    """Distances [m] of ``users`` users in each of ``draws`` draws, shape (draws, users): uniform over the
    annulus ``distance_range`` (density ∝ d, :func:`~laimco_jax.fading.annulus_distance`). Draw ``d`` comes
    from the seed ``(seed, d)`` alone, and its first k distances are the same for every ``users`` >= k."""
    low, high = distance_range
    out = np.empty((draws, users))
    for d in range(draws):
        out[d] = annulus_distance(np.random.default_rng([seed, d]).random(users), low, high)
    return out


def _bare(user: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    """A user's configuration as the ``[[user]]`` table of a cell file (bare field names, no cell fields)."""
    return {name: value for section in user.values() for name, value in section.items() if name not in SHARED_FIELDS}


@dataclasses.dataclass(frozen=True, eq=False)
class CellSweepSpec:
    """A validated cell sweep (module docstring): the base cell, the grid axes and the objectives.

    ``users`` are the per-user configurations ``{section: {field: value}}`` in file order (with the K
    axis: the one template user), ``weights`` theirs; ``axes`` the grid dims, the K axis' ``num_users``
    and ``draw`` last when present.
    """

    KIND = "cell"

    users: tuple[Mapping[str, Mapping[str, float]], ...]
    weights: tuple[float, ...]
    bandwidth_hz: float
    f_max_server_hz: float
    axes: tuple[Axis, ...]
    objectives: tuple[str, ...]
    server_sharing: str = "equal"
    seed: int = 0
    distance_range: tuple[float, float] | None = None

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(axis.size for axis in self.axes)

    @property
    def num_users(self) -> tuple[int, ...] | None:
        """The K axis' user counts (None: the file's users in every cell)."""
        axis = next((a for a in self.axes if a.dim == NUM_USERS_DIM), None)
        return None if axis is None else tuple(int(k) for k in axis.values[NUM_USERS_DIM])

    @property
    def max_users(self) -> int:
        """Kmax: the length of the ``user`` dim."""
        return len(self.users) if self.num_users is None else max(self.num_users)

    @property
    def inner_shape(self) -> tuple[int, ...]:
        """(objectives, Kmax): the user problems every grid point carries (the chunk size counts them)."""
        return (len(self.objectives), self.max_users)

    @property
    def num_instances(self) -> int:
        """User problems solved (cells x objectives x Kmax, padding included)."""
        return math.prod(self.shape) * math.prod(self.inner_shape)

    def distances(self) -> np.ndarray | None:
        """The drawn distances [m], (draws, Kmax), with the K axis; else None."""
        if self.num_users is None:
            return None
        draws = next(a.size for a in self.axes if a.dim == DRAW_DIM)
        return draw_distances(self.seed, draws, self.max_users, self.distance_range)

    def present(self) -> np.ndarray:
        """Which user slots hold a user: (num_users, Kmax) with the K axis, else (Kmax,) all True."""
        if self.num_users is None:
            return np.ones(self.max_users, bool)
        return np.arange(self.max_users)[None, :] < np.array(self.num_users)[:, None]

    # -- the store's and the driver's interface (laimco_jax.sweep.store's docstring)

    def variables(self, dtype) -> dict[str, tuple[tuple[str, ...], Any, Any, dict]]:
        """Stored variable -> (dims, dtype, fill value, attrs)."""
        cell = tuple(a.dim for a in self.axes) + (OBJECTIVE_DIM,)
        user = cell + (USER_DIM,)
        out = {}
        for name, (field, units, text) in CELL_VARIABLES.items():
            integer = field in ("status", "infeasible_reason")
            flags = {} if not integer else _STATUS_FLAGS if field == "status" else _REASON_FLAGS
            out[name] = (cell, np.int32 if integer else dtype, -1 if integer else np.nan,
                         {"units": units, "long_name": text, **flags})
        for name, (_, text) in SHARE_VARIABLES.items():
            out[name] = (user, dtype, np.nan, {"units": "Hz", "long_name": text})
        for field, (stored, text, extra) in SOLUTION_VARIABLES.items():
            integer = field in _INT_FIELDS
            out[stored] = (user, np.int32 if integer else dtype, -1 if integer else np.nan,
                           {"units": SOLUTION_UNITS[field], "long_name": f"the user's {text}", **extra})
        return out

    def dim_sizes(self) -> dict[str, int]:
        return {**dict(zip((a.dim for a in self.axes), self.shape)), OBJECTIVE_DIM: len(self.objectives),
                USER_DIM: self.max_users}

    def coords(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for axis in self.axes:
            name = axis.dim
            if name == NUM_USERS_DIM:
                out[name] = (name, np.array(self.num_users, np.int32), {"units": "1", "long_name": "K, users in the cell"})
            elif name == DRAW_DIM:
                out[name] = (name, np.arange(axis.size, dtype=np.int32), {"units": "1", "long_name": "random cell per K"})
            else:
                text = f"cell.{name}" if name in SHARED_FIELDS else f"{FIELD_SECTION[name]}.{name} of every user"
                out[name] = (name, axis.values[name], {"units": FIELD_UNITS[name], "long_name": text})
        out[OBJECTIVE_DIM] = (OBJECTIVE_DIM, np.array(self.objectives))
        out[USER_DIM] = (USER_DIM, np.arange(1, self.max_users + 1, dtype=np.int32),
                         {"units": "1", "long_name": "user number (file order)"})
        random = self.num_users is not None
        out["present"] = ((NUM_USERS_DIM, USER_DIM) if random else (USER_DIM,), self.present(),
                          {"long_name": "whether the user slot holds a user (false: padding)"})
        weights = np.full(self.max_users, self.weights[0]) if random else np.array(self.weights)
        out["weight"] = (USER_DIM, weights, {"units": "1", "long_name": "user weight w_k"})
        swept = {name for axis in self.axes for name in axis.values}
        if random:
            out["distance_m"] = ((DRAW_DIM, USER_DIM), self.distances(),
                                 {"units": "m", "long_name": "system.distance_m of each user, drawn"})
        elif not swept & {"distance_m", "channel_gain"} and all("distance_m" in u["system"] for u in self.users):
            out["distance_m"] = (USER_DIM, np.array([u["system"]["distance_m"] for u in self.users]),
                                 {"units": "m", "long_name": "system.distance_m of each user"})
        return out

    def store_attrs(self) -> dict[str, Any]:
        cell = {"bandwidth_hz": self.bandwidth_hz, "f_max_server_hz": self.f_max_server_hz,
                "server_sharing": self.server_sharing, "objective": self.objectives[0]}
        users = [{"weight": w, **_bare(u)} for u, w in zip(self.users, self.weights)]
        return {
            "title": "laimco_jax sweep of cells of users, solve_cell",
            "cell_toml": tomli_w.dumps({"cell": cell, "user": users}),
            "server_sharing": self.server_sharing,
        }

    def evaluator(self, layout: ChunkLayout, mesh: Mesh, dtype) -> ChunkEvaluator:
        return _cell_evaluator(self, layout, mesh, dtype)

    def to_json(self) -> str:
        """Canonical JSON (exact float round trip), stored in the results and compared on resume."""
        return json.dumps(
            {
                "kind": self.KIND,
                "users": list(self.users),
                "weights": list(self.weights),
                "bandwidth_hz": self.bandwidth_hz,
                "f_max_server_hz": self.f_max_server_hz,
                "axes": [{"dim": a.dim, "values": {k: _encode_values(v) for k, v in a.values.items()}} for a in self.axes],
                "objectives": list(self.objectives),
                "server_sharing": self.server_sharing,
                "seed": self.seed,
                "distance_range": None if self.distance_range is None else list(self.distance_range),
            },
            sort_keys=True,
        )

    @classmethod
    def from_json(cls, text: str) -> CellSweepSpec:
        data = json.loads(text)
        axes = tuple(Axis(a["dim"], {k: _decode_values(v) for k, v in a["values"].items()}) for a in data["axes"])
        distance_range = None if data["distance_range"] is None else tuple(data["distance_range"])
        return cls(tuple(data["users"]), tuple(data["weights"]), data["bandwidth_hz"], data["f_max_server_hz"], axes,
                   tuple(data["objectives"]), data["server_sharing"], data["seed"], distance_range)


# ----------------------------------------------------------------------------- building a spec


def _load(path: Path, template: bool) -> tuple[Cell, Any]:
    """The file's cell and options. ``template``: a file without ``[[user]]`` yields one user of its [defaults]."""
    if not template or "user" in read_toml_file(path, "users file"):
        return load_cell(path)
    with tempfile.TemporaryDirectory(prefix="laimco-cell-") as tmp:  # one [[user]] of nothing but the defaults
        copy = Path(tmp) / path.name
        copy.write_text(read_user_text(path, f"users file {str(path)!r}") + "\n[[user]]\n", encoding="utf-8")
        try:
            return load_cell(copy)
        except ConfigError as exc:
            raise ConfigError(str(exc).replace(repr(str(copy)), repr(str(path)))) from None


def _per_user_mesh(axes: Sequence[Axis]) -> dict[str, np.ndarray]:
    """Every per-user swept field on its own broadcast dim (to check all axes together, not materialised)."""
    fields = [a for a in axes if a.dim not in SHARED_FIELDS and a.dim not in _RANDOM_DIMS]
    return {a.dim: a.values[a.dim].reshape([-1 if i == d else 1 for i in range(len(fields))])
            for d, a in enumerate(fields)}


def build_cell_spec(
    users: str | Path,
    *,
    grid: Mapping[str, Any] | None = None,
    num_users: str | int | Sequence[int] | None = None,
    draws: int | None = None,
    seed: int | None = None,
    distance_range: str | Sequence[float] | None = None,
    objectives: str | Sequence[str] | None = None,
) -> CellSweepSpec:
    """A validated :class:`CellSweepSpec`; every error (ConfigError, one line) is raised here, before any compute.

    Args:
      users: the cell file (:func:`~laimco_jax.cell.load_cell`).
      grid: ``{field: values}`` (a spec string or numbers, as :func:`~laimco_jax.sweep.parse_grid_values`),
        outermost first: ``bandwidth_hz``, ``f_max_server_hz`` or any per-user field (set for every user).
      num_users, draws, seed, distance_range: the K axis (module docstring); the last three need the first.
      objectives: ``all``, a comma list or a list (default: the file's objective).
    """
    path = Path(users)
    random = num_users is not None
    if not random:
        given = [opt for opt, v in (("--draws", draws), ("--seed", seed), ("--distance-range", distance_range)) if v is not None]
        if given:
            raise ConfigError(f"{', '.join(given)}: only with --num-users (the K axis of drawn users)")
    elif distance_range is None:
        raise ConfigError("--num-users needs --distance-range MIN:MAX [m]: the users are drawn at distances in it")
    cell, options = _load(path, template=random)
    base = [problem_to_dict(jax.tree_util.tree_map(functools.partial(np.take, indices=k), cell.users))
            for k in range(len(cell.weights))]
    weights = [float(w) for w in cell.weights]
    if random:
        base, weights = base[:1], weights[:1]
    axes = []
    for key, spec in (grid or {}).items():
        name = field_name(str(key).strip(), f"--grid {key}")
        if any(a.dim == name for a in axes):
            raise ConfigError(f"--grid {key}: field {name!r} already has an axis; give each field once")
        axes.append(Axis(name, {name: parse_grid_values(name, spec)}))
    for axis in axes:
        values = axis.values[axis.dim]
        if axis.dim in SHARED_FIELDS:
            check_range(f"grid {axis.dim}", values, SystemParams._RULES[axis.dim])
            continue
        if random and (axis.dim == "channel_gain" or axis.dim == "distance_m"):
            raise ConfigError(f"--grid {axis.dim}: --num-users draws each user's distance_m; sweep another field")
        for k, user in enumerate(base):
            try:
                configuration(user, {axis.dim: values})
            except ConfigError as exc:
                raise ConfigError(f"--grid {axis.dim} (user {k + 1}): {exc}") from None
    for user in base:  # all per-user axes together (e.g. both forms of the channel)
        configuration(user, _per_user_mesh(axes))
    spec_range = None
    if random:
        counts = parse_num_users(num_users)
        draws = 1 if draws is None else draws
        if not isinstance(draws, int) or isinstance(draws, bool) or draws < 1:
            raise ConfigError(f"--draws {draws!r}: must be an integer >= 1 (random cells per K)")
        seed = 0 if seed is None else seed
        if not isinstance(seed, int) or isinstance(seed, bool) or seed < 0:
            raise ConfigError(f"--seed {seed!r}: must be an integer >= 0")
        spec_range = parse_distance_range(distance_range)
        if "distance_m" not in base[0]["system"]:
            raise ConfigError(f"users file {str(path)!r}: its first user gives channel_gain; --num-users draws "
                              "distances, so describe the channel by the path-loss fields")
        try:
            configuration(base[0], {"distance_m": np.array(spec_range)})
        except ConfigError as exc:
            raise ConfigError(f"--distance-range {distance_range!r}: {exc}") from None
        axes.append(Axis(NUM_USERS_DIM, {NUM_USERS_DIM: np.array(counts, np.float64)}))
        axes.append(Axis(DRAW_DIM, {DRAW_DIM: np.arange(draws, dtype=np.float64)}))
    return CellSweepSpec(
        users=tuple(base), weights=tuple(weights), bandwidth_hz=float(cell.bandwidth_hz),
        f_max_server_hz=float(cell.f_max_server_hz), axes=tuple(axes),
        objectives=parse_objectives(objectives, options.objective), server_sharing=options.server_sharing,
        seed=0 if seed is None else seed, distance_range=spec_range,
    )


# ----------------------------------------------------------------------------- chunk evaluation


class _CellPlan(NamedTuple):
    """The static structure of a chunk's cells (the jit cache key, with the inputs' structure)."""

    shape: tuple[int, ...]  # grid shape
    block: tuple[int, ...]  # chunk shape
    dims: tuple[str, ...]  # the grid dims: swept fields, then num_users and draw (the K axis)
    users: int  # Kmax
    mesh: Mesh


@functools.partial(jax.jit, static_argnames=("plan",))
def _chunk_cells(origin, inputs: dict, plan: _CellPlan) -> Cell:
    """The cells at the points of the chunk at grid index ``origin``: a :class:`Cell` batch of shape
    (padded chunk,) with Kmax users, sharded along the chunk. Padding repeats the block's last point."""
    sharded = NamedSharding(plan.mesh, PartitionSpec("chunk"))
    points = padded_points(plan.block, plan.mesh)
    local = jnp.minimum(jax.lax.with_sharding_constraint(jnp.arange(points), sharded), math.prod(plan.block) - 1)
    shared = {"bandwidth_hz": inputs["bandwidth_hz"], "f_max_server_hz": inputs["f_max_server_hz"]}
    per_user, present = {}, jnp.ones((points, plan.users), bool)
    for dim, values, index in zip(plan.dims, inputs["axes"], grid_indices(origin, local, plan.shape, plan.block)):
        if dim == NUM_USERS_DIM:
            present = jnp.arange(plan.users) < values[index][:, None]
        elif dim == DRAW_DIM:
            per_user["distance_m"] = inputs["distances"][index]
        elif dim in SHARED_FIELDS:
            shared[dim] = values[index]
        else:
            per_user[dim] = values[index][:, None]
    users = jax.tree_util.tree_map(lambda x: jnp.broadcast_to(x, (points, plan.users)),
                                   configuration(inputs["users"], per_user))
    cell = Cell(
        users=users,
        weights=jnp.broadcast_to(inputs["weights"], (points, plan.users)),
        present=present,
        bandwidth_hz=jnp.broadcast_to(shared["bandwidth_hz"], (points,)),
        f_max_server_hz=jnp.broadcast_to(shared["f_max_server_hz"], (points,)),
    )
    return jax.lax.with_sharding_constraint(cell, sharded)


@functools.partial(jax.jit, static_argnames=("mesh",))
def _chunk_outputs(solution, present, mesh: Mesh) -> dict[str, jax.Array]:
    """Every stored variable of one objective from its CellSolution; absent users NaN / -1."""
    out = {name: getattr(solution, field) for name, (field, *_) in CELL_VARIABLES.items()}
    per_user = {name: getattr(solution, field) for name, (field, _) in SHARE_VARIABLES.items()}
    per_user.update({stored: getattr(solution.users, field) for field, (stored, *_) in SOLUTION_VARIABLES.items()})
    for name, value in per_user.items():
        value = jnp.broadcast_to(value, present.shape)
        out[name] = jnp.where(present, value, jnp.array(-1 if jnp.issubdtype(value.dtype, jnp.integer) else jnp.nan,
                                                         value.dtype))
    return jax.lax.with_sharding_constraint(out, NamedSharding(mesh, PartitionSpec("chunk")))


def _cell_evaluator(spec: CellSweepSpec, layout: ChunkLayout, mesh: Mesh, dtype) -> ChunkEvaluator:
    """The chunk evaluation of a cell sweep: the chunk's cells (one jitted gather), then :func:`solve_cell`
    per objective (its own compiled program, shared with any direct call on cells of the same shape and
    placement), then the stored variables."""
    random = spec.num_users is not None
    user = {section: {name: np.array([u[section][name] for u in spec.users]) for name in fields}
            for section, fields in spec.users[0].items()}
    inputs = replicate({
        "users": jax.tree_util.tree_map(lambda v: v[0], user) if random else user,
        "weights": np.array(spec.weights[0] if random else spec.weights),
        "bandwidth_hz": np.array(spec.bandwidth_hz),
        "f_max_server_hz": np.array(spec.f_max_server_hz),
        "axes": tuple(a.values[a.dim] for a in spec.axes),
        "distances": spec.distances() if random else np.zeros((1, spec.max_users)),
    }, mesh, dtype)
    plan = _CellPlan(layout.shape, layout.block, tuple(a.dim for a in spec.axes), spec.max_users, mesh)
    sharded = NamedSharding(mesh, PartitionSpec("chunk"))

    def evaluate(chunk: int) -> list[dict]:
        cells = _chunk_cells(chunk_origin(layout, chunk), inputs, plan=plan)
        return [_chunk_outputs(solve_cell(cells, objective, spec.server_sharing), cells.present, mesh=mesh)
                for objective in spec.objectives]

    x64 = jax.config.jax_enable_x64  # the caller's setting, per thread: carried into the compile pool

    def compile_job(objective: str):
        def compile_objective():
            with jax.enable_x64(x64):
                shapes = jax.eval_shape(functools.partial(_chunk_cells, plan=plan), chunk_origin(layout, 0), inputs)
                cells = jax.tree_util.tree_map(lambda s: jax.ShapeDtypeStruct(s.shape, s.dtype, sharding=sharded), shapes)
                return solve_cell.lower(cells, objective, spec.server_sharing).compile()

        return compile_objective

    return ChunkEvaluator(evaluate, tuple(map(compile_job, spec.objectives)))
