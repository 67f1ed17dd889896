"""``laimco multiuser``: a cell file solved by :func:`~laimco_jax.solvers.multiuser.solve_cell`, as one
record (the cell) holding one record per user in file order, with the equal-split and alone baselines."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from laimco_jax.cell import Cell, check_objective, check_server_sharing, load_cell
from laimco_jax.solvers import INFEASIBLE_REASON_TEXT, InfeasibleReason, Status, found_point
from laimco_jax.solvers.multiuser import (
    CELL_INFEASIBLE_REASON_TEXT,
    CellInfeasibleReason,
    cell_objective,
    solve_alone,
    solve_cell,
    solve_equal_split,
)


def _user(tree, k: int):
    return jax.tree_util.tree_map(lambda x: np.asarray(x)[..., k], tree)


def _baseline(objective: str, cell: Cell, solution) -> float | None:
    """The objective of a baseline's users (None if a user found no point there)."""
    if not bool(np.all(found_point(np.asarray(solution.status)))):
        return None
    return float(cell_objective(objective, cell, solution.log2_distortion_bound))


def multiuser_record(path: Path, objective: str | None, server_sharing: str | None,
                     user_record) -> dict[str, Any]:
    """The cell's JSON-able record: status, objective, lower bound, certificate, baselines and ``users``
    (each ``user_record(solution)`` plus ``bandwidth_hz``, ``server_share_hz`` and ``weight``)."""
    cell, options = load_cell(path)
    objective = check_objective(objective or options.objective)
    sharing = check_server_sharing(server_sharing or options.server_sharing)
    cell = jax.tree_util.tree_map(lambda x: jnp.asarray(x, jnp.float64) if np.asarray(x).dtype != bool else x, cell)
    solution = solve_cell(cell, objective, sharing)
    status = Status(int(solution.status))
    reason = CellInfeasibleReason(int(solution.infeasible_reason))
    users = []
    for k in range(int(np.shape(cell.present)[-1])):
        user = _user(solution.users, k)
        record = user_record(user) | {
            "bandwidth_hz": float(np.asarray(solution.bandwidth_hz)[k]),
            "server_share_hz": float(np.asarray(solution.server_share_hz)[k]),
            "weight": float(np.asarray(cell.weights)[k]),
        }
        users.append(record)
    infeasible_users = [k + 1 for k, u in enumerate(users) if u["status"] == "infeasible"]
    reason_text = CELL_INFEASIBLE_REASON_TEXT[reason] if status == Status.INFEASIBLE else ""
    if reason == CellInfeasibleReason.USER:
        first = _user(solution.users, infeasible_users[0] - 1)
        detail = INFEASIBLE_REASON_TEXT[InfeasibleReason(int(first.infeasible_reason))]
        reason_text = f"user(s) {', '.join(map(str, infeasible_users))}: {reason_text} ({detail})"
    return {
        "status": status.name.lower(),
        "infeasible_reason": reason_text,
        "objective_name": objective,
        "server_sharing": sharing,
        "objective": float(solution.objective),
        "lower_bound": float(solution.lower_bound),
        "certificate": float(solution.certificate),
        "bandwidth_hz": float(cell.bandwidth_hz),
        "f_max_server_hz": float(cell.f_max_server_hz),
        "equal_split_objective": _baseline(objective, cell, solve_equal_split(cell)),
        "alone_objective": _baseline(objective, cell, solve_alone(cell)),
        "users": users,
    }
