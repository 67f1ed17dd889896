"""Tables and figures of the multi-user cell study (beyond the paper, docs/theory.md#multi-user-cell).

K = 1 … 16 users drawn at seeded distances share one uplink band B and one edge server F (the paper's
5 MHz and 4 GHz, fixed, so sharing tightens with K). Each K forms a cell of the first K users (the
cells are nested: user k is the same user in every cell it belongs to), every cell of every budget
setting is solved in one batched :func:`~laimco_jax.solvers.multiuser.solve_cell` call per objective
(:func:`~laimco_jax.cell.stack_cells` pads the smaller cells with absent users), and beside it the
two baselines: the equal split (B/K and F/K each) and each user alone with the whole cell.

* :func:`multiuser_tables`: one row per (budgets, objective, server sharing, K, user) and one per
  (budgets, objective, server sharing, K); every objective with equal server shares (F/K), and
  ``sum-log`` with optimised shares too (docs/theory.md#optimised-server-shares);
* :func:`plot_users`: log10 D̂ and the band share of every user against K, one row of panels per objective;
* :func:`plot_gain`: the joint allocation's gain over the equal split and its certificate against K;
* :func:`plot_server`: optimised against equal server shares (``sum-log``): the gain, each user's share
  and the certificate (the duality gap the non-convex server split leaves) against K.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import jax
import numpy as np
import pandas as pd

from laimco_jax.cell import OBJECTIVES, make_cell, stack_cells
from laimco_jax.params import make_problem
from laimco_jax.solvers import Status, found_point

__all__ = ["BUDGETS", "MAIN_BUDGETS", "OPTIMIZED_OBJECTIVE", "MultiuserGrid", "user_distances", "multiuser_tables",
           "plot_users", "plot_gain", "plot_server"]

#: Budget settings (name, T0 [s], E0 [J]) every user of a cell gets: ``relaxed`` is what the user figure
#: shows (every cell up to K = 16 has a feasible allocation), ``paper`` the paper's BERT-base budgets
#: (the band runs out as K grows).
BUDGETS: tuple[tuple[str, float, float], ...] = (("relaxed", 0.5, 0.02), ("paper", 0.35, 0.015))
MAIN_BUDGETS = "relaxed"
#: The objective also solved with optimised server shares (one more compilation of the cell solver).
OPTIMIZED_OBJECTIVE = "sum-log"
#: Units of each objective's value and of the gain over the equal split.
OBJECTIVE_UNITS = {"sum-log": "bits (Σ_k log2 D̂_k)", "sum": "- (Σ_k D̂_k)", "max": "bits (max_k log2 D̂_k)"}


@dataclasses.dataclass(frozen=True)
class MultiuserGrid:
    """The cells of the study: K in ``users``, user k at a distance drawn uniformly in
    [``distance_min_m``, ``distance_max_m``] from ``seed``, weight 1, the paper's B and F, each cell
    under every budget setting of ``budgets``."""

    users: tuple[int, ...] = tuple(range(1, 17))
    seed: int = 0
    distance_min_m: float = 100.0
    distance_max_m: float = 600.0
    bandwidth_hz: float = 5e6
    f_max_server_hz: float = 4e9
    model: str = "bert-base"
    budgets: tuple[tuple[str, float, float], ...] = BUDGETS

    @classmethod
    def quick(cls) -> MultiuserGrid:
        return cls(users=(1, 2, 4, 8))


def user_distances(grid: MultiuserGrid) -> np.ndarray:
    """The distances [m] of users 1 … max K (seeded; the first K form the cell of K users)."""
    rng = np.random.default_rng(grid.seed)
    return rng.uniform(grid.distance_min_m, grid.distance_max_m, max(grid.users))


def _status_names(status) -> list[str]:
    return [Status(int(s)).name.lower() for s in np.ravel(status)]


def multiuser_tables(grid: MultiuserGrid = MultiuserGrid(), preset: str = "paper") -> tuple[pd.DataFrame, pd.DataFrame]:
    """(users, cells): every cell of ``grid`` under each of its budget settings solved for every objective
    with equal server shares, and for :data:`OPTIMIZED_OBJECTIVE` with optimised ones (column
    ``server_sharing``: ``equal`` or ``optimized``).

    ``users`` has one row per (budgets, objective, server_sharing, K, user): ``distance_m``, ``weight``, the cell's
    ``cell_status``, ``user_status`` (for a cell without a feasible allocation: the user alone with the
    whole band), ``bandwidth_hz``, ``band_share`` (b_k/B), ``server_share_hz``, ``server_share`` (S_k/F), the
    user's design ``rho``,
    ``f_device_hz``, ``p_w``, ``rho_server``, ``f_server_hz``, its ``log10_distortion_bound`` (empty where the cell has no feasible allocation) and the user's log10 D̂
    under the equal split and alone (+inf: no point meets its budgets).
    ``cells`` has one row per (budgets, objective, server_sharing, K): ``status``, ``infeasible_reason``, ``value`` (the
    objective, +inf without a point), ``lower_bound``, ``certificate``, ``equal_split_value``,
    ``equal_split_infeasible_users``, ``alone_value`` and ``gain`` = equal_split_value − value (objective
    units, ``unit``; +inf where only the equal split is infeasible).
    """
    from laimco_jax.solvers.multiuser import (
        CellInfeasibleReason, cell_objective, solve_alone, solve_cell, solve_equal_split,
    )

    distances = user_distances(grid)
    cells, index = [], []
    for name, delay_s, energy_j in grid.budgets:
        users = [make_problem(preset, grid.model, overrides=dict(distance_m=float(d), delay_s=delay_s,
                                                                 energy_j=energy_j)) for d in distances]
        for k in grid.users:
            cells.append(make_cell(users[:k], [1.0] * k, grid.bandwidth_hz, grid.f_max_server_hz))
            index.append((name, delay_s, energy_j, k))
    batch = stack_cells(cells)
    present, weights = np.asarray(batch.present), np.asarray(batch.weights)
    size = present.shape[-1]
    with jax.enable_x64(True):
        equal = jax.tree_util.tree_map(np.asarray, solve_equal_split(batch))
        alone = jax.tree_util.tree_map(np.asarray, solve_alone(batch))
        solved = {(o, "equal"): jax.tree_util.tree_map(np.asarray, solve_cell(batch, o)) for o in OBJECTIVES}
        solved[OPTIMIZED_OBJECTIVE, "optimized"] = jax.tree_util.tree_map(
            np.asarray, solve_cell(batch, OPTIMIZED_OBJECTIVE, "optimized"))

    def log10_or_inf(solution):
        return np.where(found_point(solution.status), solution.log10_distortion_bound, np.inf)

    def objective_value(objective, users):
        """The cell objective at per-user solutions ``users``; +inf where a present user has no point."""
        with jax.enable_x64(True):
            value = np.asarray(cell_objective(objective, batch, users.log2_distortion_bound))
        return np.where(np.all(found_point(users.status) | ~present, axis=-1), value, np.inf)

    equal_found = found_point(equal.status)
    user_rows, cell_rows = [], []
    for (objective, sharing), sol in solved.items():
        cell_found = found_point(sol.status)
        equal_value, alone_value = objective_value(objective, equal), objective_value(objective, alone)
        value = np.where(cell_found, sol.objective, np.inf)
        for i, (name, delay_s, energy_j, k) in enumerate(index):
            common = dict(budgets=name, delay_s=delay_s, energy_j=energy_j, objective=objective, server_sharing=sharing,
                          users=k)
            status = Status(int(sol.status[i])).name.lower()
            gain = equal_value[i] - value[i] if np.isfinite(value[i]) else np.nan
            cell_rows.append(dict(
                common, status=status,
                infeasible_reason=CellInfeasibleReason(int(sol.infeasible_reason[i])).name.lower(),
                value=value[i], lower_bound=float(sol.lower_bound[i]), certificate=float(sol.certificate[i]),
                equal_split_value=equal_value[i],
                equal_split_infeasible_users=int(np.sum(~equal_found[i] & present[i])),
                alone_value=alone_value[i], gain=gain, unit=OBJECTIVE_UNITS[objective]))
            ok = bool(cell_found[i])
            for u in range(size):
                if not present[i, u]:
                    continue
                blank = (lambda x: float(x)) if ok else (lambda x: np.nan)
                user_rows.append(dict(
                    common, user=u + 1, distance_m=float(distances[u]), weight=float(weights[i, u]),
                    cell_status=status, user_status=Status(int(sol.users.status[i, u])).name.lower(),
                    bandwidth_hz=blank(sol.bandwidth_hz[i, u]),
                    band_share=blank(sol.bandwidth_hz[i, u] / grid.bandwidth_hz),
                    server_share_hz=float(sol.server_share_hz[i, u]),
                    server_share=float(sol.server_share_hz[i, u] / grid.f_max_server_hz),
                    rho=blank(sol.users.rho[i, u]), f_device_hz=blank(sol.users.f_device_hz[i, u]),
                    p_w=blank(sol.users.p_w[i, u]), rho_server=blank(sol.users.rho_server[i, u]),
                    f_server_hz=blank(sol.users.f_server_hz[i, u]),
                    log10_distortion_bound=blank(sol.users.log10_distortion_bound[i, u]),
                    equal_split_log10_distortion_bound=float(log10_or_inf(equal)[i, u]),
                    alone_log10_distortion_bound=float(log10_or_inf(alone)[i, u])))
    return pd.DataFrame(user_rows), pd.DataFrame(cell_rows)


# ----------------------------------------------------------------------------- figures


def _bottom_crosses(ax, xs, label: str | None = None, color: str = "red") -> None:
    if len(xs):
        ax.scatter(list(xs), np.full(len(xs), 0.03), marker="x", color=color, transform=ax.get_xaxis_transform(),
                   clip_on=False, zorder=3, label=label)


def plot_users(users: pd.DataFrame, path: str | os.PathLike, budgets: str = MAIN_BUDGETS) -> Path:
    """Per objective (a row of two panels): each user's log10 D̂ (left) and band share b_k/B (right)
    against K, one line per user coloured by its distance, the equal split's 1/K dashed; cells where no
    allocation was found (proven infeasible, or unresolved) are red crosses along the bottom."""
    from matplotlib import colormaps
    from matplotlib.cm import ScalarMappable
    from matplotlib.colors import Normalize

    from laimco_jax.experiments.plots import figure_grid, save_figure

    users = users[(users.budgets == budgets) & (users.server_sharing == "equal")]
    fig, axes = figure_grid(2 * len(OBJECTIVES), width=5.2, height=3.4)
    norm = Normalize(users.distance_m.min(), users.distance_m.max())
    cmap = colormaps["viridis"]
    ks = np.sort(users.users.unique())
    for row, objective in enumerate(OBJECTIVES):
        ax_d, ax_b = axes[2 * row], axes[2 * row + 1]
        rows = users[users.objective == objective]
        for user, line in rows.groupby("user"):
            line = line.sort_values("users")
            color = cmap(norm(line.distance_m.iloc[0]))
            ax_d.plot(line.users, line.log10_distortion_bound, marker="o", ms=3, color=color, lw=1)
            ax_b.plot(line.users, line.band_share, marker="o", ms=3, color=color, lw=1)
        ax_b.plot(ks, 1.0 / ks, "k--", lw=1, label="equal split 1/K")
        bad = rows[rows.log10_distortion_bound.isna()].users.unique()
        for ax in (ax_d, ax_b):
            _bottom_crosses(ax, bad, "no allocation found" if len(bad) else None)
            ax.set_xlim(ks[0] - 0.5, ks[-1] + 0.5)
            ax.set_xlabel("users in the cell K")
            ax.grid(alpha=0.3)
        ax_d.set_ylabel("log10 D̂_k")
        ax_d.set_title(f"{objective}: each user's distortion bound")
        ax_b.set_yscale("log")
        ax_b.set_ylabel("band share b_k / B")
        ax_b.set_title(f"{objective}: each user's band share")
        ax_b.legend(fontsize=7)
    fig.colorbar(ScalarMappable(norm, cmap), ax=list(axes), label="user distance [m]", shrink=0.6)
    return save_figure(fig, path)


def _display_gain(objective: str, frame: pd.DataFrame) -> tuple[np.ndarray, str]:
    """The gain as plotted: per user [bits] for sum-log, relative for sum, [bits] for max."""
    if objective == "sum-log":
        return frame.gain.to_numpy() / frame.users.to_numpy(), "gain per user [bits of log2 D̂]"
    if objective == "sum":
        with np.errstate(invalid="ignore"):  # inf/inf where the equal split is infeasible
            return frame.gain.to_numpy() / frame.equal_split_value.to_numpy(), "relative gain in Σ D̂"
    return frame.gain.to_numpy(), "gain in max log2 D̂ [bits]"


def plot_gain(cells: pd.DataFrame, path: str | os.PathLike) -> Path:
    """The joint allocation against the equal split, one panel per objective (a line per budget
    setting; a triangle at the top where only the equal split is infeasible, a cross at the bottom where
    no allocation was found: proven infeasible or unresolved), and the certificate of every solve with a
    point (last panel)."""
    from laimco_jax.experiments.plots import figure_grid, save_figure

    cells = cells[cells.server_sharing == "equal"]
    fig, axes = figure_grid(len(OBJECTIVES) + 1, width=5.2, height=3.4)
    styles = dict(zip(cells.budgets.unique(), ("-", "--", ":", "-.")))
    for ax, objective in zip(axes, OBJECTIVES):
        for j, (name, frame) in enumerate(cells[cells.objective == objective].groupby("budgets", sort=False)):
            frame = frame.sort_values("users")
            gain, label = _display_gain(objective, frame)
            both = np.isfinite(gain)
            budget = f"{name}: T0 = {frame.delay_s.iloc[0]:g} s, E0 = {frame.energy_j.iloc[0]:g} J"
            (line,) = ax.plot(frame.users[both], gain[both], marker="o", ms=4, linestyle=styles[name], label=budget)
            only_joint = frame[np.isinf(frame.gain)].users
            if len(only_joint):
                ax.scatter(only_joint, np.full(len(only_joint), 0.95 - 0.05 * j), marker="^", color=line.get_color(),
                           transform=ax.get_xaxis_transform(), clip_on=False, zorder=3,
                           label=f"{name}: only the equal split infeasible")
            none = frame[~np.isfinite(frame.value)].users
            if len(none):
                ax.scatter(none, np.full(len(none), 0.03 + 0.05 * j), marker="x", color=line.get_color(),
                           transform=ax.get_xaxis_transform(), clip_on=False, zorder=3,
                           label=f"{name}: no allocation found")
        ax.axhline(0.0, color="black", lw=0.5)
        ax.set_ylabel(label)
        ax.set_title(f"{objective}: joint allocation against the equal split")
    ax = axes[-1]
    for objective in OBJECTIVES:
        for name, frame in cells[cells.objective == objective].groupby("budgets", sort=False):
            frame = frame[np.isfinite(frame.value)].sort_values("users")
            ax.plot(frame.users, np.maximum(frame.certificate, 1e-16), marker="o", ms=3, linestyle=styles[name],
                    label=f"{objective} ({name})")
    ax.set_yscale("log")
    ax.set_ylabel("certificate (floored at 1e-16)")
    ax.set_title("gap between the objective and its proven lower bound")
    ks = np.sort(cells.users.unique())
    for ax in axes:
        ax.set_xlim(ks[0] - 0.5, ks[-1] + 0.5)
        ax.set_xlabel("users in the cell K")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=6)
    return save_figure(fig, path)


def server_comparison(cells: pd.DataFrame) -> pd.DataFrame:
    """One row per (budgets, K) where both server sharings of :data:`OPTIMIZED_OBJECTIVE` found a point:
    ``equal_value``, ``optimized_value``, ``gain_per_user`` = (equal − optimized)/K [bits per user] and the
    optimised solve's ``certificate`` and ``status``."""
    rows = cells[cells.objective == OPTIMIZED_OBJECTIVE]
    equal = rows[rows.server_sharing == "equal"].set_index(["budgets", "users"])
    optimized = rows[rows.server_sharing == "optimized"].set_index(["budgets", "users"])
    both = equal.merge(optimized, left_index=True, right_index=True, suffixes=("_equal", "_optimized"))
    both = both[np.isfinite(both.value_equal) & np.isfinite(both.value_optimized)].reset_index()
    return pd.DataFrame(dict(
        budgets=both.budgets, users=both.users, equal_value=both.value_equal, optimized_value=both.value_optimized,
        gain_per_user=(both.value_equal - both.value_optimized) / both.users,
        certificate=both.certificate_optimized, status=both.status_optimized))


def plot_server(cells: pd.DataFrame, users: pd.DataFrame, path: str | os.PathLike, budgets: str = MAIN_BUDGETS) -> Path:
    """Optimised against equal server shares (:data:`OPTIMIZED_OBJECTIVE`): the gain per user against K
    (a line per budget setting), each user's server share S_k/F against K at ``budgets`` (the equal 1/K
    dashed), and the optimised solve's certificate against K."""
    from matplotlib import colormaps
    from matplotlib.colors import Normalize

    from laimco_jax.experiments.plots import figure_grid, save_figure

    comparison = server_comparison(cells)
    fig, (ax_gain, ax_share, ax_cert) = figure_grid(3, width=5.2, height=3.4)
    for name, frame in comparison.groupby("budgets", sort=False):
        frame = frame.sort_values("users")
        ax_gain.plot(frame.users, frame.gain_per_user, marker="o", ms=4, label=f"{name} budgets")
        ax_cert.plot(frame.users, np.maximum(frame.certificate, 1e-16), marker="o", ms=4, label=f"{name} budgets")
    ax_gain.axhline(0.0, color="black", lw=0.5)
    ax_gain.set_ylabel("gain per user [bits of log2 D̂]")
    ax_gain.set_title(f"{OPTIMIZED_OBJECTIVE}: optimised against equal server shares")
    ax_cert.set_yscale("log")
    ax_cert.set_ylabel("certificate [bits per unit weight]")
    ax_cert.set_title("optimised shares: gap to the two-price bound")
    rows = users[(users.budgets == budgets) & (users.objective == OPTIMIZED_OBJECTIVE)
                 & (users.server_sharing == "optimized") & np.isfinite(users.log10_distortion_bound)]
    norm = Normalize(users.distance_m.min(), users.distance_m.max())
    for _, line in rows.groupby("user"):
        line = line.sort_values("users")
        ax_share.plot(line.users, line.server_share, marker="o", ms=3, lw=1,
                      color=colormaps["viridis"](norm(line.distance_m.iloc[0])))
    ks = np.sort(cells.users.unique())
    ax_share.plot(ks, 1.0 / ks, "k--", lw=1, label="equal 1/K")
    ax_share.set_yscale("log")
    ax_share.set_ylabel("server share S_k / F")
    ax_share.set_title(f"each user's optimised server share ({budgets} budgets)")
    for ax in (ax_gain, ax_share, ax_cert):
        ax.set_xlim(ks[0] - 0.5, ks[-1] + 0.5)
        ax.set_xlabel("users in the cell K")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    return save_figure(fig, path)
