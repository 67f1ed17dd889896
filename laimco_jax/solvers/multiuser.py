"""Multi-user co-inference in one cell: FDMA band shares by a price search over exact single-user solves.

K users share the uplink band B (user k gets b_k, Σ b_k ≤ B) and the server clock F (equal shares F/K).
v_k(b), the most parameters user k can retain with band b (its (P1) solved by
:func:`~laimco_jax.solvers.exact.solve_exact`), is concave and increasing in b: the upload energy per
bit (N0/g)·w(2^{1/w} − 1) with the time–bandwidth product per bit w = u·b is a perspective, so (P1)
stays jointly convex with b as a variable (docs/theory.md#multi-user-cell). Each objective is a
concave utility Φ = Σ_k U_k(R_k) of the retained parameters, or a level (``max``):

* ``sum-log``: minimise Σ w_k log2 D̂_k, i.e. U_k(R) = −w_k log2 D̂_k(R) (linear in R, eq. (41));
* ``sum``: minimise Σ w_k D̂_k, U_k(R) = −w_k D̂_k(R) (concave: D̂ is exponential in R);
* ``max``: minimise max_k log2 D̂_k.

For ``sum-log`` and ``sum`` a band price π [utility/Hz] decouples the users: each maximises
U_k(v_k(b)) − π b alone (a bisection on b of the marginal U_k'·v_k'(b), with v_k'(b) from the envelope
theorem: (λ + μ p) θ r_b/r², λ, μ the user's multipliers of (44a), (44b), r its rate and r_b = ∂r/∂b
at fixed power), and π follows from a monotone search on Σ_k b_k(π) = B. The certificate is the
duality gap: π B + Σ_k sup_b [U_k(v_k(b)) − π b] bounds Φ from above for any π ≥ 0, and each sup is
bounded through concavity by the chords of U_k(v_k(·)) at five bands around the user's share (values
taken from the exact solver's primal value and dual bound, so the bound is proven). For ``max`` the
level t is bisected: user k needs the least band with log2 D̂_k ≤ t, and t is achievable iff these
bands sum to at most B; a level is proven unachievable when the bands proven insufficient (by the
exact solver's dual bounds) already sum to B, which gives the lower bound.

Everything is elementwise over the batch and reduces over the user axis (the last), with fixed
iteration counts: jit/vmap work over any batch of cells, cells of different K padded with absent users.
"""

from __future__ import annotations

import enum
import functools
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from laimco_jax.cell import Cell, check_objective
from laimco_jax.params import Problem
from laimco_jax.solvers.exact import solve_exact
from laimco_jax.solvers.numerics import float_bits
from laimco_jax.solvers.solution import Solution, Status, found_point
from laimco_jax.system import LN2, channel_gain

__all__ = [
    "CellSolution",
    "CellInfeasibleReason",
    "CELL_INFEASIBLE_REASON_TEXT",
    "solve_cell",
    "solve_equal_split",
    "solve_alone",
    "DEFAULT_CELL_GAP_TOL",
]

#: Certificate below which a cell is OPTIMAL: bits per unit weight (sum-log), bits (max), relative (sum).
DEFAULT_CELL_GAP_TOL = 1e-6
_BAND_FLOOR = 2.0**-40  # the least band share searched, relative to B
_PRICE_FLOOR = 2.0**-60  # the least band price searched, relative to the highest
_FEASIBILITY_STEPS = 40
_OUTER_STEPS = 32
_INNER_STEPS = 16
_CHORD_STEP = 1e-4  # relative spacing of the five bands of the concavity bound


class CellInfeasibleReason(enum.IntEnum):
    """Why a cell is infeasible, stored as int32 in :attr:`CellSolution.infeasible_reason`."""

    NONE = 0
    USER = 1  # a user cannot meet its budgets even with the whole band and its server share
    BAND = 2  # every user can alone, but their least band shares add up to more than B


CELL_INFEASIBLE_REASON_TEXT = {
    CellInfeasibleReason.NONE: "",
    CellInfeasibleReason.USER: "a user cannot meet its budgets even with the whole band and its server share",
    CellInfeasibleReason.BAND: "each user can meet its budgets alone, but the least bands they need add up to "
    "more than the cell's bandwidth",
}


class CellSolution(NamedTuple):
    """The solution of a cell (shared leaves of the batch's shape, per-user leaves with the user axis last).

    ``objective`` is minimised: Σ w_k log2 D̂_k [bits], Σ w_k D̂_k, or max_k log2 D̂_k [bits];
    ``lower_bound`` is a proven lower bound on its optimum; ``certificate`` the gap between them, in bits
    per unit weight (sum-log: (objective − lower_bound)/Σ w_k), bits (max) or relative to the objective
    (sum). For an infeasible cell ``users`` are the users' solutions with the whole band (their statuses
    say which cannot meet their budgets) and the certificate is 0.
    """

    status: Any  # Status: OPTIMAL, INFEASIBLE, NOT_CONVERGED (point found, gap above tolerance), UNRESOLVED
    infeasible_reason: Any  # CellInfeasibleReason
    objective: Any
    lower_bound: Any
    certificate: Any
    bandwidth_hz: Any  # b_k [Hz], Σ_k b_k ≤ B (0 for absent users)
    server_share_hz: Any  # the server clock available to user k [cycles/s]: F/K
    users: Solution  # each user's solution at its band and server share


# ----------------------------------------------------------------------------- users at given bands


def _users_at(cell: Cell, band, server) -> tuple[Problem, Solution]:
    """Every user's problem and exact solution at band ``band`` [Hz] and server clock ``server`` [Hz]."""
    band = jnp.where(cell.present, band, cell.bandwidth_hz[..., None])  # absent users: any valid value
    system = cell.users.system.derive(bandwidth_hz=band, f_max_server_hz=server)
    problem = cell.users.derive(system=system)
    return problem, solve_exact(problem)


def _band_marginal(problem: Problem, solution: Solution):
    """dv/db [parameters/Hz]: (λ + μ p) θ r_b / r², the envelope theorem at fixed power p (eqs. (2), (6), (7)).

    r_b = ∂r/∂b = (ln(1 + s) − s/(1 + s))/ln 2 at SNR s = g p/(b N0) (the series where it cancels);
    +inf where the user found no point (it needs more band).
    """
    system = problem.system
    snr = channel_gain(system) * solution.p_w / (system.bandwidth_hz * system.noise_psd_w_per_hz)
    log1p = jnp.log1p(snr)
    small = snr < 1e-3
    s = jnp.where(small, snr, 0.0)
    rate_slope = jnp.where(small, s * s * (0.5 - s * (2.0 / 3.0 - 0.75 * s)), log1p - snr / (1.0 + snr)) / LN2
    rate = system.bandwidth_hz * log1p / LN2
    bits = problem.model.embedding_bits
    per_second = solution.delay_multiplier + solution.energy_multiplier * solution.p_w
    marginal = jnp.where(bits > 0, per_second * bits * rate_slope / jnp.where(bits > 0, rate * rate, 1.0), 0.0)
    return jnp.where(found_point(solution.status), marginal, jnp.inf)


def _bits_per_param(cell: Cell):
    """−d log2 D̂_k / dR_k = b/(q + s) [bits per retained parameter], eq. (41)."""
    model = cell.users.model
    return model.bits_per_weight / (model.params_device + model.params_server)


def _utility(objective: str, cell: Cell, log2_bound):
    """U_k at log2 D̂_k: −w log2 D̂ (sum-log) or −w D̂ (sum)."""
    if objective == "sum-log":
        return -cell.weights * log2_bound
    return -cell.weights * jnp.exp2(log2_bound)


def _utility_slope(objective: str, cell: Cell, log2_bound):
    """dU_k/dR_k at log2 D̂_k [utility per retained parameter]."""
    slope = cell.weights * _bits_per_param(cell)
    if objective == "sum-log":
        return slope + 0.0 * log2_bound
    return slope * LN2 * jnp.exp2(log2_bound)


def _utility_bounds(objective: str, cell: Cell, solution: Solution):
    """(lower, upper) bounds on U_k(v_k(b)) from the exact solver's point and dual bound; −inf where
    infeasibility is proven, (−inf, +inf) where the solve is unresolved."""
    optimistic = solution.log2_distortion_bound - _bits_per_param(cell) * (solution.upper_bound - solution.retained_params)
    found = found_point(solution.status)
    proven_empty = solution.status == Status.INFEASIBLE
    lower = jnp.where(found, _utility(objective, cell, solution.log2_distortion_bound), -jnp.inf)
    upper = jnp.where(proven_empty, -jnp.inf, jnp.where(found, _utility(objective, cell, optimistic), jnp.inf))
    return lower, upper


def _present_sum(cell: Cell, x):
    return jnp.sum(jnp.where(cell.present, x, 0.0), axis=-1)


def _present_count(cell: Cell):
    return jnp.sum(cell.present, axis=-1).astype(cell.bandwidth_hz.dtype)


def _bits_mid(lo, hi):
    """Geometric midpoint of positive floats ``lo`` <= ``hi`` through their bit patterns."""
    a, b = float_bits(lo), float_bits(hi)
    return jax.lax.bitcast_convert_type(a + (b - a) // 2, lo.dtype)


# ----------------------------------------------------------------------------- searches over the band


class _Bracket(NamedTuple):
    """Per-user band brackets [lo, hi] [Hz] and whether each end is proven (lo too little, hi enough)."""

    lo: Any
    hi: Any
    lo_proven: Any
    hi_proven: Any


def _least_band(cell: Cell, server, enough, bracket: _Bracket, steps: int) -> _Bracket:
    """Bisect each user's bracket for the least band b with ``enough(problem, solution)`` (monotone in b).

    ``enough`` returns (sufficient, proven_insufficient) arrays; the bracket's ends keep their flags.
    """

    def step(_, br: _Bracket) -> _Bracket:
        mid = _bits_mid(br.lo, br.hi)
        ok, short = enough(*_users_at(cell, mid, server))
        return _Bracket(
            lo=jnp.where(ok, br.lo, mid),
            hi=jnp.where(ok, mid, br.hi),
            lo_proven=jnp.where(ok, br.lo_proven, short),
            hi_proven=br.hi_proven | ok,
        )

    return jax.lax.fori_loop(0, steps, step, bracket)


def _feasible(problem: Problem, solution: Solution):
    return found_point(solution.status), solution.status == Status.INFEASIBLE


class _Start(NamedTuple):
    """What every objective starts from: each user alone with the whole band, its least band, and a
    feasible allocation (the least bands plus an equal share of the band left over)."""

    alone: Solution
    alone_problem: Problem
    least: _Bracket
    spread: Any  # b_k [Hz] of the feasible allocation
    status: Any  # INFEASIBLE / UNRESOLVED where no allocation is feasible, else OPTIMAL (provisional)
    reason: Any


def _start(cell: Cell, server) -> _Start:
    full = jnp.broadcast_to(cell.bandwidth_hz[..., None], cell.present.shape)
    alone_problem, alone = _users_at(cell, full, server)
    ok, proven = _feasible(alone_problem, alone)
    floor = full * _BAND_FLOOR
    least = _least_band(cell, server, _feasible, _Bracket(floor, full, jnp.zeros_like(ok), ok), _FEASIBILITY_STEPS)
    left = cell.bandwidth_hz - _present_sum(cell, least.hi)
    spread = least.hi + jnp.maximum(left, 0.0)[..., None] / _present_count(cell)[..., None]
    absent = ~cell.present
    user_infeasible = jnp.any(proven & ~absent, axis=-1)
    user_unresolved = jnp.any(~ok & ~proven & ~absent, axis=-1)
    band_short = _present_sum(cell, least.lo) >= cell.bandwidth_hz
    band_proven = band_short & jnp.all(least.lo_proven | absent, axis=-1)
    no_allocation = left < 0
    status = jnp.where(
        user_infeasible | band_proven,
        Status.INFEASIBLE,
        jnp.where(user_unresolved | no_allocation, Status.UNRESOLVED, Status.OPTIMAL),
    )
    reason = jnp.where(user_infeasible, CellInfeasibleReason.USER,
                       jnp.where(band_proven, CellInfeasibleReason.BAND, CellInfeasibleReason.NONE))
    return _Start(alone, alone_problem, least, spread, status, reason)


# ----------------------------------------------------------------------------- sum-log and sum: band price


def _marginal_utility(objective: str, cell: Cell, problem: Problem, solution: Solution):
    """d U_k(v_k(b))/db [utility/Hz] at the solved band."""
    return _utility_slope(objective, cell, solution.log2_distortion_bound) * _band_marginal(problem, solution)


def _price_search(objective: str, cell: Cell, server, start: _Start):
    """The band price π with Σ_k b_k(π) = B and each user's b_k(π) (the maximiser of U_k(v_k(b)) − πb)."""
    spread_problem, spread_solution = _users_at(cell, start.spread, server)
    at_full = _marginal_utility(objective, cell, start.alone_problem, start.alone)
    at_spread = _marginal_utility(objective, cell, spread_problem, spread_solution)
    price_hi = jnp.max(jnp.where(cell.present & jnp.isfinite(at_spread), at_spread, 0.0), axis=-1)
    price_hi = jnp.where(price_hi > 0, price_hi, jnp.finfo(price_hi.dtype).tiny)
    price_lo = jnp.min(jnp.where(cell.present, at_full, jnp.inf), axis=-1)
    price_lo = jnp.clip(price_lo, price_hi * _PRICE_FLOOR, price_hi)
    def outer(_, state):
        lo, hi, br = state
        price = _bits_mid(lo, hi)

        def wants_more(problem, solution):  # the maximiser lies above b: marginal utility > π
            more = _marginal_utility(objective, cell, problem, solution) > price[..., None]
            return ~more, more

        found = _least_band(cell, server, wants_more, br, _INNER_STEPS)
        too_cheap = _present_sum(cell, _bits_mid(found.lo, found.hi)) > cell.bandwidth_hz
        keep = too_cheap[..., None]
        br = _Bracket(jnp.where(keep, br.lo, found.lo), jnp.where(keep, found.hi, br.hi), br.lo_proven, br.hi_proven)
        return jnp.where(too_cheap, price, lo), jnp.where(too_cheap, hi, price), br

    lo, hi, br = jax.lax.fori_loop(0, _OUTER_STEPS, outer, (price_lo, price_hi, _full_bracket(cell, start)))
    return _bits_mid(lo, hi), _bits_mid(br.lo, br.hi)


def _chord_sup(bands, lower, upper, price):
    """An upper bound on sup_{b >= 0} [φ(b) − π b] for a concave increasing φ known at sorted ``bands``
    (leading axis) within [``lower``, ``upper``]: chords extended beyond their ends lie above φ.

    A band proven infeasible has φ = −inf there and below it (φ is increasing); a chord through two
    such bands says nothing to its right (+inf).
    """
    n = bands.shape[0]
    gap = bands[1:] - bands[:-1]
    rise_right = (upper[1:] - lower[:-1]) / gap  # chord (i-1, i) extended right of b_i: slope at most this
    rise_left = (lower[1:] - upper[:-1]) / gap  # chord (i, i+1) extended left of b_i: slope at least this

    def line(i, slope, b):
        value = jnp.where(b == bands[i], upper[i], upper[i] + slope * (b - bands[i]))
        return jnp.where(jnp.isnan(value), jnp.inf, value)

    def right_line(i, b):  # valid for b >= bands[i], i >= 1
        return line(i, rise_right[i - 1], b)

    def left_line(i, b):  # valid for b <= bands[i], i <= n - 2; −inf below a band proven infeasible
        return jnp.where(upper[i] == -jnp.inf, -jnp.inf, line(i, rise_left[i], b))

    candidates = []
    for i in range(n - 1):  # interval [b_i, b_{i+1}]
        lines = ([functools.partial(right_line, i)] if i >= 1 else []) + (
            [functools.partial(left_line, i + 1)] if i + 1 <= n - 2 else [])
        points = [bands[i], bands[i + 1]]
        if len(lines) == 2:
            slope_a, slope_b = rise_right[i - 1], rise_left[i + 1]
            cross = (upper[i + 1] - upper[i] + slope_a * bands[i] - slope_b * bands[i + 1]) / (slope_a - slope_b)
            points.append(jnp.clip(jnp.where(jnp.isfinite(cross), cross, bands[i]), bands[i], bands[i + 1]))
        for b in points:
            candidates.append(functools.reduce(jnp.minimum, [fn(b) for fn in lines]) - price * b)
    head_at_zero = rise_left[0] < price  # φ − πb rises towards b = 0 along the left chord
    head = jnp.where(head_at_zero, left_line(0, jnp.zeros_like(bands[0])), left_line(0, bands[0]) - price * bands[0])
    tail = jnp.where(rise_right[-1] <= price, upper[n - 1] - price * bands[n - 1], jnp.inf)
    best = functools.reduce(jnp.maximum, candidates + [head, tail])
    return jnp.where(jnp.isnan(best), jnp.inf, best)


def _price_bound(objective: str, cell: Cell, server, bands, price):
    """π B + Σ_k sup_b [U_k(v_k(b)) − π b] >= max Φ (weak duality of Σ b_k <= B), each sup bounded by
    :func:`_chord_sup` on five bands around b_k and by U_k at ρ = ρ̃ = 1."""
    offsets = jnp.asarray([-2.0, -1.0, 0.0, 1.0, 2.0], bands.dtype) * _CHORD_STEP
    around = bands * (1.0 + offsets.reshape((5,) + (1,) * bands.ndim))
    _, solutions = _users_at(cell, around, server)
    lower, upper = _utility_bounds(objective, cell, solutions)
    sup = _chord_sup(around, lower, upper, price[..., None])
    model = cell.users.model
    whole = solutions.log2_distortion_bound[2] - _bits_per_param(cell) * (
        model.params_device + model.params_server - solutions.retained_params[2])
    sup = jnp.minimum(sup, _utility(objective, cell, whole))
    return price * cell.bandwidth_hz + _present_sum(cell, sup)


# ----------------------------------------------------------------------------- max: level search


def _reaches(cell: Cell, level):
    """The test of :func:`_least_band` for "log2 D̂_k <= ``level``": (reached, proven out of reach)."""
    slope = _bits_per_param(cell)

    def test(problem: Problem, solution: Solution):
        need = solution.log2_distortion_bound - level[..., None]
        optimistic = need - slope * (solution.upper_bound - solution.retained_params)
        return found_point(solution.status) & (need <= 0), (solution.status == Status.INFEASIBLE) | (optimistic > 0)

    return test


def _full_bracket(cell: Cell, start: _Start) -> _Bracket:
    """From the least band (proven too little where the feasibility search proved it) to the whole band."""
    full = jnp.broadcast_to(cell.bandwidth_hz[..., None], start.spread.shape)
    return _Bracket(start.least.lo, full, start.least.lo_proven, jnp.zeros_like(start.least.hi_proven))


def _level_search(cell: Cell, server, start: _Start, gap_tol):
    """The least level t with Σ_k (least band with log2 D̂_k <= t) <= B: the allocation achieving it and
    a proven lower bound on t (a level whose proven-insufficient bands already sum to B)."""
    solution_spread = _users_at(cell, start.spread, server)[1]
    level_hi = jnp.max(jnp.where(cell.present, solution_spread.log2_distortion_bound, -jnp.inf), axis=-1)
    alone = start.alone
    best_alone = alone.log2_distortion_bound - _bits_per_param(cell) * (alone.upper_bound - alone.retained_params)
    level_lo = jnp.max(jnp.where(cell.present, best_alone, -jnp.inf), axis=-1)
    absent = ~cell.present

    def proven_out_of_reach(found: _Bracket):
        return jnp.all(found.lo_proven | absent, axis=-1) & (_present_sum(cell, found.lo) >= cell.bandwidth_hz)

    def outer(_, state):
        lo, hi, proven_lo, allocation, br = state
        level = 0.5 * (lo + hi)
        found = _least_band(cell, server, _reaches(cell, level), br, _INNER_STEPS)
        reached = jnp.all(found.hi_proven | absent, axis=-1) & (_present_sum(cell, found.hi) <= cell.bandwidth_hz)
        keep = reached[..., None]
        br = _Bracket(jnp.where(keep, found.lo, br.lo), jnp.where(keep, br.hi, found.hi),
                      jnp.where(keep, found.lo_proven, br.lo_proven), jnp.where(keep, br.hi_proven, found.hi_proven))
        return (
            jnp.where(reached, lo, level),
            jnp.where(reached, level, hi),
            jnp.where(proven_out_of_reach(found), jnp.maximum(proven_lo, level), proven_lo),
            jnp.where(keep, found.hi, allocation),
            br,
        )

    state = (level_lo, level_hi, level_lo, start.spread, _full_bracket(cell, start))
    _, level_hi, proven_lo, allocation, _ = jax.lax.fori_loop(0, _OUTER_STEPS, outer, state)
    # The bisection's own proofs lag behind its bracket: prove a level just below the one reached.
    proof_level = level_hi - 0.25 * gap_tol
    found = _least_band(cell, server, _reaches(cell, proof_level), _full_bracket(cell, start), _FEASIBILITY_STEPS)
    proven_lo = jnp.where(proven_out_of_reach(found), jnp.maximum(proven_lo, proof_level), proven_lo)
    left = jnp.maximum(cell.bandwidth_hz - _present_sum(cell, allocation), 0.0)
    return allocation + left[..., None] / _present_count(cell)[..., None], proven_lo


# ----------------------------------------------------------------------------- the solver


def _equal_server_share(cell: Cell):
    share = cell.f_max_server_hz / _present_count(cell)
    return jnp.broadcast_to(share[..., None], cell.present.shape)


def _normalised(cell: Cell, bands):
    """``bands`` scaled to sum to B over the present users (0 for absent users)."""
    bands = jnp.where(cell.present, bands, 0.0)
    return cell.bandwidth_hz[..., None] * (bands / jnp.sum(bands, axis=-1, keepdims=True))


def _cell_objective(objective: str, cell: Cell, log2_bounds):
    if objective == "max":
        return jnp.max(jnp.where(cell.present, log2_bounds, -jnp.inf), axis=-1)
    return -_present_sum(cell, _utility(objective, cell, log2_bounds))


@functools.partial(jax.jit, static_argnames=("objective",))
def solve_cell(cell: Cell, objective: str = "sum-log", *, gap_tol: float = DEFAULT_CELL_GAP_TOL) -> CellSolution:
    """Band shares and every user's (ρ, f, p, ρ̃, f̃) minimising ``objective`` over a cell (float64 advised).

    Args:
      cell: a :class:`~laimco_jax.cell.Cell` (any batch of cells; per-user leaves with the user axis last).
      objective: ``sum-log`` (Σ w_k log2 D̂_k), ``sum`` (Σ w_k D̂_k) or ``max`` (max_k log2 D̂_k).
      gap_tol: certificate below which the status is OPTIMAL (units in :class:`CellSolution`).

    Returns:
      A :class:`CellSolution`; the server is shared equally (F/K per present user).
    """
    check_objective(objective)
    cell = jax.tree_util.tree_map(jnp.asarray, cell)
    server = _equal_server_share(cell)
    start = _start(cell, server)
    if objective == "max":
        bands, lower_bound = _level_search(cell, server, start, gap_tol)
    else:
        price, bands = _price_search(objective, cell, server, start)
        bands = _normalised(cell, bands)
    bands = jnp.where(cell.present, bands, 0.0)
    _, users = _users_at(cell, bands, server)
    value = _cell_objective(objective, cell, users.log2_distortion_bound)
    if objective != "max":
        lower_bound = -_price_bound(objective, cell, server, bands, price)
    all_found = jnp.all(found_point(users.status) | ~cell.present, axis=-1)
    gap = jnp.maximum(value - lower_bound, 0.0)
    scale = {"sum-log": _present_sum(cell, cell.weights), "max": 1.0, "sum": value}[objective]
    certificate = gap / scale
    feasible = start.status == Status.OPTIMAL
    status = jnp.where(
        feasible,
        jnp.where(all_found, jnp.where(certificate <= gap_tol, Status.OPTIMAL, Status.NOT_CONVERGED), Status.UNRESOLVED),
        start.status,
    )
    infeasible = status == Status.INFEASIBLE
    keep = infeasible[..., None]
    users = jax.tree_util.tree_map(lambda a, b: jnp.where(keep, a, b), start.alone, users)
    return CellSolution(
        status=status.astype(jnp.int32),
        infeasible_reason=start.reason.astype(jnp.int32),
        objective=value,
        lower_bound=jnp.where(infeasible, value, lower_bound),
        certificate=jnp.where(infeasible, 0.0, certificate),
        bandwidth_hz=jnp.where(keep, jnp.where(cell.present, cell.bandwidth_hz[..., None], 0.0), bands),
        server_share_hz=server,
        users=users,
    )


@jax.jit
def solve_equal_split(cell: Cell) -> Solution:
    """Baseline: each present user solved exactly with B/K of the band and F/K of the server."""
    server = _equal_server_share(cell)
    share = cell.bandwidth_hz / _present_count(cell)
    return _users_at(cell, jnp.broadcast_to(share[..., None], cell.present.shape), server)[1]


@jax.jit
def solve_alone(cell: Cell) -> Solution:
    """Baseline (what sharing costs at most): each user solved exactly with the whole band and server."""
    full = jnp.broadcast_to(cell.bandwidth_hz[..., None], cell.present.shape)
    return _users_at(cell, full, jnp.broadcast_to(cell.f_max_server_hz[..., None], cell.present.shape))[1]
