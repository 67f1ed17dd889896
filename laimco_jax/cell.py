"""A cell of K users sharing one uplink band and one edge server: the :class:`Cell` pytree and its file.

Each user k has its own single-user configuration (a :class:`~laimco_jax.params.Problem`: model profile
and split, channel, P_max, clocks, chip constants, budgets T0_k, E0_k) and a weight w_k > 0. Shared by
all users are the uplink band B [Hz], split by FDMA shares b_k (Σ b_k ≤ B), and the server clock F
[cycles/s] (docs/theory.md#multi-user-cell). A cell's per-user leaves have shape (K,); a batch of cells
stacks them to ``batch + (K,)`` and its shared leaves to ``batch``. Cells of different K batch together
by padding with absent users (``present`` False), whose values are ignored.

The cell file (``laimco multiuser --users FILE.toml``)::

    [cell]
    bandwidth_hz = 5e6
    f_max_server_hz = 4e9
    server_sharing = "equal"      # F/K to each user
    objective = "sum-log"         # or "sum", "max"
    [defaults]                    # optional: preset, model, split and any per-user field
    preset = "paper"
    model = "bert-base"
    [[user]]
    weight = 1.0
    distance_m = 300.0            # any [system]/[model]/[budget] field by its bare name
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping, NamedTuple, Sequence

import jax
import numpy as np

from laimco_jax.params import (
    FIELD_SECTION,
    ConfigError,
    Problem,
    Range,
    SystemParams,
    check_range,
    field_name,
    make_problem,
    read_toml_file,
)

__all__ = [
    "Cell",
    "CellOptions",
    "OBJECTIVES",
    "SERVER_SHARING",
    "SHARED_FIELDS",
    "make_cell",
    "stack_cells",
    "load_cell",
    "check_objective",
    "check_server_sharing",
]

#: Objectives over the users' distortion bounds D̂_k (eq. (41)): Σ w_k log2 D̂_k, Σ w_k D̂_k, max_k log2 D̂_k.
OBJECTIVES: tuple[str, ...] = ("sum-log", "sum", "max")
#: How the server clock F is shared: F/K to each user, or shares S_k with Σ S_k ≤ F chosen with the bands.
SERVER_SHARING: tuple[str, ...] = ("equal", "optimized")
#: Fields of the cell as a whole, not of a user.
SHARED_FIELDS: tuple[str, ...] = ("bandwidth_hz", "f_max_server_hz")
_WEIGHT_RANGE = Range(0.0, False, 1e6)
_DEFAULT_KEYS = ("preset", "model", "split")
#: What a [[user]] table may set: its weight, the preset names, and every per-user field of a Problem.
_USER_KEYS = ("weight",) + _DEFAULT_KEYS + tuple(name for name in FIELD_SECTION if name not in SHARED_FIELDS)


class Cell(NamedTuple):
    """K users in one cell (leaves as in the module docstring).

    ``users.system.bandwidth_hz`` and ``users.system.f_max_server_hz`` are ignored: the solver sets them
    to each user's band share and server clock share.
    """

    users: Problem  # per-user configurations, leaves batch + (K,)
    weights: Any  # w_k > 0 [-], batch + (K,)
    present: Any  # bool, batch + (K,): False marks padding
    bandwidth_hz: Any  # B [Hz], batch
    f_max_server_hz: Any  # F [cycles/s], batch


class CellOptions(NamedTuple):
    """What a cell file asks for besides the cell itself (the CLI's flags override them)."""

    objective: str = "sum-log"
    server_sharing: str = "equal"


def check_objective(objective: str) -> str:
    if objective not in OBJECTIVES:
        raise ConfigError(f"objective = {objective!r} is not known; allowed: {', '.join(OBJECTIVES)}")
    return objective


def check_server_sharing(sharing: str) -> str:
    if sharing not in SERVER_SHARING:
        raise ConfigError(f"server_sharing = {sharing!r} is not known; allowed: {', '.join(SERVER_SHARING)}")
    return sharing


def make_cell(users: Sequence[Problem], weights: Sequence[float], bandwidth_hz: float, f_max_server_hz: float) -> Cell:
    """A validated cell of ``len(users)`` >= 1 scalar problems (numpy float64 leaves)."""
    if len(users) == 0:
        raise ConfigError("the cell has no users (K = 0); give at least one [[user]]")
    if len(weights) != len(users):
        raise ConfigError(f"weights: {len(weights)} given for {len(users)} users")
    for k, w in enumerate(weights):
        check_range(f"user {k + 1}: weight", w, _WEIGHT_RANGE)
    check_range("cell.bandwidth_hz", bandwidth_hz, SystemParams._RULES["bandwidth_hz"])
    check_range("cell.f_max_server_hz", f_max_server_hz, SystemParams._RULES["f_max_server_hz"])
    forms = {jax.tree_util.tree_structure(u) for u in users}
    if len(forms) > 1:
        # one user gives channel_gain, another the path-loss fields: stack the gains instead
        raise ConfigError("every user must describe its channel the same way: all by channel_gain or all by "
                          "the path-loss fields (ref_gain_db, ref_distance_m, distance_m, pathloss_exponent)")
    stacked = jax.tree_util.tree_map(lambda *xs: np.asarray(xs, np.float64), *users)
    return Cell(
        users=stacked,
        weights=np.asarray(weights, np.float64),
        present=np.ones(len(users), bool),
        bandwidth_hz=np.float64(bandwidth_hz),
        f_max_server_hz=np.float64(f_max_server_hz),
    )


def stack_cells(cells: Sequence[Cell]) -> Cell:
    """One batch (leading axis) of cells with different K: each padded to the largest K with absent users
    (copies of its first user, ``present`` False)."""
    size = max(int(np.shape(c.present)[-1]) for c in cells)

    def pad(cell: Cell) -> Cell:
        extra = size - int(np.shape(cell.present)[-1])
        per_user = (cell.users, cell.weights)
        padded = jax.tree_util.tree_map(lambda x: np.concatenate([x, np.repeat(x[..., :1], extra, -1)], -1), per_user)
        present = np.concatenate([cell.present, np.zeros(extra, bool)])
        return Cell(padded[0], padded[1], present, cell.bandwidth_hz, cell.f_max_server_hz)

    return jax.tree_util.tree_map(lambda *xs: np.stack(xs), *[pad(c) for c in cells])


def _user_problem(index: int, fields: Mapping[str, Any], defaults: Mapping[str, Any]) -> tuple[Problem, float]:
    where = f"user {index}"
    fields = dict(fields)
    shared = [name for name in SHARED_FIELDS if name in fields or f"system.{name}" in fields]
    if shared:
        raise ConfigError(f"{where}: {shared[0]} is a field of the whole cell; set it in [cell], not in [[user]]")
    weight = fields.pop("weight", 1.0)
    options = {key: fields.pop(key, defaults.get(key)) for key in _DEFAULT_KEYS}
    overrides = {k: v for k, v in defaults.items() if k not in _DEFAULT_KEYS} | fields
    for key, value in overrides.items():
        if key.rpartition(".")[2] not in _USER_KEYS:
            raise ConfigError(f"{where}: unknown field {key!r}; allowed: {', '.join(_USER_KEYS)}")
        field_name(key, f"{where}: {key}")
        if not isinstance(value, (int, float)) or isinstance(value, bool):
            raise ConfigError(f"{where}: {key} = {value!r} must be a single number")
    try:
        problem = make_problem(options["preset"] or "paper", options["model"] or "bert-base",
                               split=options["split"], overrides=overrides)
    except ConfigError as exc:
        raise ConfigError(f"{where}: {exc}") from None
    return problem, weight


def load_cell(path: str | Path) -> tuple[Cell, CellOptions]:
    """The cell of a TOML file (module docstring) and its options; every ConfigError names the file."""
    name = f"users file {str(path)!r}"
    data = read_toml_file(path, "users file")
    try:
        unknown = set(data) - {"cell", "defaults", "user"}
        if unknown:
            raise ConfigError(f"unknown table(s) {', '.join(sorted(unknown))}; allowed: [cell], [defaults], [[user]]")
        cell = dict(data.get("cell", {}))
        missing = [f for f in SHARED_FIELDS if f not in cell]
        if missing:
            raise ConfigError(f"[cell] is missing {', '.join(missing)}")
        extra = set(cell) - set(SHARED_FIELDS) - set(CellOptions._fields)
        if extra:
            raise ConfigError(f"unknown field(s) {', '.join(sorted(extra))} in [cell]; allowed: "
                              f"{', '.join(SHARED_FIELDS + CellOptions._fields)}")
        options = CellOptions(check_objective(cell.get("objective", "sum-log")),
                              check_server_sharing(cell.get("server_sharing", "equal")))
        defaults = dict(data.get("defaults", {}))
        for key in defaults:
            if key not in _DEFAULT_KEYS and key.rpartition(".")[2] not in FIELD_SECTION:
                raise ConfigError(f"[defaults]: unknown field {key!r}; allowed: {', '.join(_DEFAULT_KEYS)} and the "
                                  "fields of [system], [model], [budget]")
        if any(name in defaults for name in SHARED_FIELDS):
            raise ConfigError("[defaults]: bandwidth_hz and f_max_server_hz are fields of the whole cell; set them in [cell]")
        users = data.get("user", [])
        if not isinstance(users, list):
            raise ConfigError("user must be an array of tables: write [[user]] for each user")
        solved = [_user_problem(k + 1, u, defaults) for k, u in enumerate(users)]
        result = make_cell([p for p, _ in solved], [w for _, w in solved], cell["bandwidth_hz"], cell["f_max_server_hz"])
    except ConfigError as exc:
        raise ConfigError(f"{name}: {exc}") from None
    return result, options
