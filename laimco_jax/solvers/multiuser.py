"""Multi-user co-inference in one cell: FDMA band shares by a price search over exact single-user solves.

K users share the uplink band B (user k gets b_k, Σ b_k ≤ B) and the server clock F (equal shares F/K, or
optimised shares S_k, Σ S_k ≤ F, below).
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

Optimised server shares (``server_sharing="optimized"``): user k's server part runs at f̃_k <= S_k with
Σ S_k <= F. v_k(b, S) is non-decreasing in S but not concave (it has S-shaped steps where offloading
layers to the server starts to pay), so the joint problem is not convex. A second price ν on server clock
still bounds it (weak duality needs no convexity): Φ <= π B + ν F + Σ_k sup_{b,S} [U_k − π b − ν S],
each sup bounded on a grid of server clocks through monotonicity in S and the concavity in b above.
Feasible points: equal shares, then the shares the bound's prices suggest, each with its optimal band
split; the best is returned with the gap to the least bound (docs/theory.md#optimised-server-shares).

Everything is elementwise over the batch and reduces over the user axis (the last), with fixed
iteration counts: jit/vmap work over any batch of cells, cells of different K padded with absent users.
"""

from __future__ import annotations

import enum
import functools
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from laimco_jax.cell import Cell, check_objective, check_server_sharing
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
    "cell_objective",
    "solve_equal_split",
    "solve_alone",
    "DEFAULT_CELL_GAP_TOL",
]

#: Certificate below which a cell is OPTIMAL: bits per unit weight (sum-log), bits (max), relative (sum).
DEFAULT_CELL_GAP_TOL = 1e-6
_GRID_POINTS = 16  # samples of each user's response from its least band to B
_ROUNDS = 3  # rounds of (balance the target, refine each user around its crossing)
_REFINE_STEPS = 8  # new samples per user and round
_CHORD_STEP = 1e-4  # relative spacing of the five bands of the concavity bound
_BAND_STEPS = 16  # samples of a user's best band at a price (optimised server shares)
_GUESS_SPREAD = 1e-3  # relative distance of the first samples of that search from the current band
_SERVER_ROUNDS = 3  # optimised server shares: primal points (equal shares, then suggested by a bound)
_SERVER_LADDER = tuple(1e-3 * 800.0 ** (i / 11) for i in range(12))  # relative steps around a user's share: 0.1 % … 80 %
_SERVER_COARSE = 6  # server grid points F/2^i, i < this
_SERVER_FLOOR = 2.0 ** -10  # the least server clock of the grid, relative to F


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
    (sum). With optimised server shares the lower bound is the two-price bound of :func:`_two_price_pass`:
    the problem is not convex, so the certificate also holds the duality gap that non-convexity leaves
    and is rarely below ``gap_tol`` (status NOT_CONVERGED: a point that meets every budget, within the
    certificate of the optimum). For an infeasible cell ``users`` are the users' solutions with the whole
    band and F/K (equal) or F (optimised) of the server, ``server_share_hz`` says which, their statuses say
    which users cannot meet their budgets, and the certificate is 0.
    """

    status: Any  # Status: OPTIMAL, INFEASIBLE, NOT_CONVERGED (point found, gap above tolerance), UNRESOLVED
    infeasible_reason: Any  # CellInfeasibleReason
    objective: Any
    lower_bound: Any
    certificate: Any
    bandwidth_hz: Any  # b_k [Hz], Σ_k b_k ≤ B (0 for absent users)
    server_share_hz: Any  # S_k, the server clock available to user k [cycles/s]: F/K, or optimised (Σ S_k <= F)
    users: Solution  # each user's solution at its band and server share


# ----------------------------------------------------------------------------- users at given bands


def _uploads(cell: Cell):
    """The users that share the band: present and with an embedding to upload (θ > 0)."""
    return cell.present & (cell.users.model.embedding_bits > 0)


def _users_at(cell: Cell, band, server) -> tuple[Problem, Solution]:
    """Every user's problem and exact solution at band ``band`` [Hz] and server clock ``server`` [Hz]
    (users that do not share the band are solved at B: their problem does not depend on it)."""
    band = jnp.where(_uploads(cell), band, cell.bandwidth_hz[..., None])
    system = cell.users.system.derive(bandwidth_hz=band, f_max_server_hz=server)
    problem = cell.users.derive(system=system)
    return problem, solve_exact(problem)


def _least_band_hz(cell: Cell):
    """The least band [Hz] at which each user can meet its budgets (+inf if none; 0 without upload).

    At the pruning lower bounds ρ = ρ̃ = 0 (scheme ``proposed``) only the upload costs, so the user is
    feasible iff some p <= P_max uploads θ bits within T0 and E0: at the power that just meets T0,
    p_T(b) = (b N0/g)(2^{θ/(T0 b)} − 1), which must be at most min(P_max, E0/T0). With x = θ ln2/(T0 b)
    that is (e^x − 1)/x <= m = min(P_max, E0/T0)·g·T0/(N0 θ ln2), and (e^x − 1)/x increases in x: the
    least band is θ ln2/(T0 x*) at the root x* (a bisection of its bit pattern), none if m <= 1.
    """
    system, model, budget = cell.users.system, cell.users.model, cell.users.budget
    power = jnp.minimum(system.p_max_w, budget.energy_j / budget.delay_s)
    bits = model.embedding_bits
    rate = bits / budget.delay_s  # [bit/s] the upload must reach
    level = jnp.log(power * channel_gain(system) / (system.noise_psd_w_per_hz * jnp.where(bits > 0, rate, 1.0) * LN2))
    top = 2.0 * jnp.maximum(level, 0.0) + 2.0  # (e^x − 1)/x >= e^x/x·(1 − e^-x) exceeds m there
    tiny = jnp.full_like(top, 1e-300)

    def step(_, bracket):
        lo, hi = bracket
        mid = _bits_mid(lo, hi)
        above = jnp.log(jnp.expm1(mid) / mid) > level
        return jnp.where(above, lo, mid), jnp.where(above, mid, hi)

    _, root = jax.lax.fori_loop(0, 64, step, (tiny, top))
    band = rate * LN2 / root
    return jnp.where(bits > 0, jnp.where(level > 0, band, jnp.inf), 0.0)


# ----------------------------------------------------------------------------- utilities of the objectives
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


# ----------------------------------------------------------------------------- the search over the band


def _falsi(x_lo, x_hi, f_lo, f_hi):
    """The regula falsi point of [x_lo, x_hi] for f_lo >= 0 >= f_hi; the midpoint where a value is not finite."""
    t = f_lo / (f_lo - f_hi)
    usable = jnp.isfinite(f_lo) & jnp.isfinite(f_hi) & (t >= 0) & (t <= 1)
    return jnp.where(usable, x_lo + t * (x_hi - x_lo), 0.5 * (x_lo + x_hi))


class _Samples(NamedTuple):
    """Each user's response y (non-increasing in the band) at bands b, sorted along the last axis: the
    first ``filled`` slots of a fixed buffer hold samples, the rest ln b = +inf, y = −inf (sorted last)."""

    log_band: Any  # ln b [ln Hz], batch + (K, S)
    y: Any
    filled: Any  # int32 scalar


def _samples(log_band, y, size: int) -> _Samples:
    """The samples ``(log_band, y)`` (last axis) in a buffer of ``size`` slots."""
    pad = [(0, 0)] * (log_band.ndim - 1) + [(0, size - log_band.shape[-1])]
    return _Samples(jnp.pad(log_band, pad, constant_values=jnp.inf), jnp.pad(y, pad, constant_values=-jnp.inf),
                    jnp.asarray(log_band.shape[-1], jnp.int32))


def _bracket(samples: _Samples, target):
    """For each user, the adjacent samples around the crossing y = ``target`` (batch + (K,)): the index j
    of the last sample with y >= target, clipped so that (j, j + 1) is a pair of filled samples."""
    count = jnp.sum(samples.y >= target[..., None], axis=-1)
    j = jnp.clip(count - 1, 0, samples.filled - 2)

    def at(a, i):
        return jnp.take_along_axis(a, i[..., None], axis=-1)[..., 0]

    return count, at(samples.log_band, j), at(samples.log_band, j + 1), at(samples.y, j), at(samples.y, j + 1)


def _crossing(samples: _Samples, target):
    """The band [Hz] where y crosses ``target``: linear in (ln b, y) between the adjacent samples, or the
    finite one of them where the other is infinite (y is −inf beyond a band at which the user keeps every
    parameter, +inf below its least band: where it jumps in between is unknown until refined, and the
    finite end keeps the sum of the bands continuous in the target); the first or last band where y lies
    on one side throughout."""
    count, x_lo, x_hi, y_lo, y_hi = _bracket(samples, target)
    inside = _falsi(x_lo, x_hi, y_lo - target, y_hi - target)
    inside = jnp.where(jnp.isfinite(y_lo) & ~jnp.isfinite(y_hi), x_lo,
                       jnp.where(~jnp.isfinite(y_lo) & jnp.isfinite(y_hi), x_hi, inside))
    return jnp.exp(jnp.where(count == 0, x_lo, jnp.where(count >= samples.filled, x_hi, inside)))


def _balanced_target(cell: Cell, samples: _Samples, target_lo, target_hi):
    """The target z with Σ_k b_k(z) = B on the users' interpolated responses (no solves: a bisection of
    z; the sum is non-increasing in z, at least B at ``target_lo`` and at most B at ``target_hi``)."""
    uploads = _uploads(cell)

    def step(_, bracket):
        lo, hi = bracket
        mid = 0.5 * (lo + hi)
        more = jnp.sum(jnp.where(uploads, _crossing(samples, mid[..., None]), 0.0), axis=-1) > cell.bandwidth_hz
        return jnp.where(more, mid, lo), jnp.where(more, hi, mid)

    lo, hi = jax.lax.fori_loop(0, 64, step, (target_lo, target_hi))
    return 0.5 * (lo + hi)


def _refine(samples: _Samples, target, respond, steps: int) -> _Samples:
    """``steps`` new samples per user inside its bracket around the crossing of ``target``, alternating
    regula falsi and bisection (in ln b), added to the samples."""
    _, x_lo, x_hi, y_lo, y_hi = _bracket(samples, target)

    def step(i, state):
        x_lo, x_hi, y_lo, y_hi, new_x, new_y = state
        x = jnp.where(i % 2 == 0, _falsi(x_lo, x_hi, y_lo - target, y_hi - target), 0.5 * (x_lo + x_hi))
        y = respond(jnp.exp(x))
        above = y >= target
        new_x = new_x.at[..., i].set(x)
        new_y = new_y.at[..., i].set(y)
        return (jnp.where(above, x, x_lo), jnp.where(above, x_hi, x), jnp.where(above, y, y_lo),
                jnp.where(above, y_hi, y), new_x, new_y)

    empty = jnp.zeros(x_lo.shape + (steps,), x_lo.dtype)
    *_, new_x, new_y = jax.lax.fori_loop(0, steps, step, (x_lo, x_hi, y_lo, y_hi, empty, empty))
    log_band = jax.lax.dynamic_update_slice_in_dim(samples.log_band, new_x, samples.filled, axis=-1)
    y = jax.lax.dynamic_update_slice_in_dim(samples.y, new_y, samples.filled, axis=-1)
    order = jnp.argsort(log_band, axis=-1)
    return _Samples(jnp.take_along_axis(log_band, order, axis=-1), jnp.take_along_axis(y, order, axis=-1),
                    samples.filled + steps)


class _Start(NamedTuple):
    """Each user alone with the whole band, the least bands, and the cell's verdict before any search."""

    alone: Solution
    least: Any  # least band [Hz] per user
    status: Any  # INFEASIBLE where proven, UNRESOLVED where a user alone is unresolved, else OPTIMAL
    reason: Any


def _start(cell: Cell, server) -> _Start:
    full = jnp.broadcast_to(cell.bandwidth_hz[..., None], cell.present.shape)
    _, alone = _users_at(cell, full, server)
    absent = ~cell.present
    uploads = _uploads(cell)
    least = jnp.where(uploads, _least_band_hz(cell), 0.0)
    left = cell.bandwidth_hz - jnp.sum(least, axis=-1)
    user_infeasible = jnp.any((alone.status == Status.INFEASIBLE) & ~absent, axis=-1)
    user_unresolved = jnp.any(~found_point(alone.status) & ~absent, axis=-1)
    band_short = jnp.sum(least * (1.0 - 1e-9), axis=-1) >= cell.bandwidth_hz  # closed form, with room for rounding
    status = jnp.where(user_infeasible | band_short, Status.INFEASIBLE,
                       jnp.where(user_unresolved | (left <= 0), Status.UNRESOLVED, Status.OPTIMAL))
    reason = jnp.where(user_infeasible, CellInfeasibleReason.USER,
                       jnp.where(band_short, CellInfeasibleReason.BAND, CellInfeasibleReason.NONE))
    return _Start(alone, least, status, reason)


def _response(objective: str, cell: Cell, server):
    """y(b) of the search: log of the marginal utility of band (sum-log, sum; non-increasing: v_k and U_k
    are concave) or log2 D̂_k (max); +inf where the user finds no point (it needs more band)."""

    def respond(band):
        problem, solution = _users_at(cell, band, server)
        if objective == "max":
            y = solution.log2_distortion_bound
        else:
            y = jnp.log(_utility_slope(objective, cell, solution.log2_distortion_bound) * _band_marginal(problem, solution))
        return jnp.where(found_point(solution.status), y, jnp.inf)

    return respond


def _allocate(objective: str, cell: Cell, server, start: _Start):
    """The band split (Σ b_k = B over the users that upload) and the final target of the search.

    Each user's response y(b) is sampled on a geometric grid from its least band to B; then, in
    rounds, the target z balancing the interpolated bands is found (no solves) and every user's
    samples are refined around its crossing of z. The responses are only piecewise smooth (a kink of
    v_k where an active set changes makes y jump), which the bisection half of the refinement handles.
    """
    respond = _response(objective, cell, server)
    uploads = _uploads(cell)
    full = jnp.broadcast_to(cell.bandwidth_hz[..., None], start.least.shape)
    low = jnp.where(uploads, start.least * (1.0 + 1e-9), full)
    fraction = jnp.linspace(0.0, 1.0, _GRID_POINTS, dtype=full.dtype)
    log_band = jnp.log(low)[..., None] + fraction * (jnp.log(full) - jnp.log(low))[..., None]
    log_band = log_band.at[..., -1].set(jnp.log(full))
    y = jax.vmap(respond, in_axes=-1, out_axes=-1)(jnp.exp(log_band))
    samples = _samples(log_band, y, _GRID_POINTS + _ROUNDS * _REFINE_STEPS)
    # Σ b_k(z) >= B below the largest response at B (that user wants all of it) and <= B above every
    # response sampled; where every response at B is −inf (all users saturate below B: the band is not
    # scarce) the lower end sits below every finite response, at the users' saturation bands.
    finite = uploads[..., None] & jnp.isfinite(y)
    lowest = jnp.min(jnp.where(finite, y, jnp.inf), axis=(-2, -1))
    highest = jnp.max(jnp.where(finite, y, -jnp.inf), axis=(-2, -1))
    at_full = jnp.max(jnp.where(uploads, y[..., -1], -jnp.inf), axis=-1)
    target_lo = jnp.where(jnp.isfinite(at_full), at_full, lowest - 1.0)
    target_hi = jnp.maximum(highest + 1.0, target_lo)

    def round_(_, samples):
        target = _balanced_target(cell, samples, target_lo, target_hi)
        return _refine(samples, target[..., None], respond, _REFINE_STEPS)

    samples = jax.lax.fori_loop(0, _ROUNDS, round_, samples)
    target = _balanced_target(cell, samples, target_lo, target_hi)
    bands = jnp.where(uploads, _crossing(samples, target[..., None]), 0.0)
    total = jnp.sum(bands, axis=-1, keepdims=True)
    return jnp.where(uploads, cell.bandwidth_hz[..., None] * (bands / jnp.where(total > 0, total, 1.0)), 0.0), target


# ----------------------------------------------------------------------------- certificates


def _chord_sup(bands, lower, upper, price, ceiling):
    """An upper bound on sup_{0 <= b <= ceiling} [φ(b) − π b] for a concave increasing φ known at sorted
    ``bands`` (leading axis) within [``lower``, ``upper``]: chords extended beyond their ends lie above φ.

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
    end = jnp.maximum(ceiling, bands[n - 1])
    tail = jnp.where(rise_right[-1] <= price, upper[n - 1] - price * bands[n - 1], right_line(n - 1, end) - price * end)
    best = functools.reduce(jnp.maximum, candidates + [head, tail])
    return jnp.where(jnp.isnan(best), jnp.inf, best)


def _user_sups(objective: str, cell: Cell, server, bands, prices, more_bands=None):
    """Per user (batch + (K,)), for each band price π of ``prices``: an upper bound on
    sup_{0 <= b <= B} [U_k(v_k(b)) − π b] at server clock ``server``, the least of :func:`_chord_sup` on
    five bands around ``bands``, on the sorted distinct ``more_bands`` (leading axis) if given, and U_k at
    ρ = ρ̃ = 1 (one set of exact solves serves every price); and U_k(v_k(b_k)), the value the exact solver
    reaches at b_k itself."""
    offsets = jnp.asarray([-2.0, -1.0, 0.0, 1.0, 2.0], bands.dtype) * _CHORD_STEP
    around = bands * (1.0 + offsets.reshape((5,) + (1,) * bands.ndim))
    if more_bands is not None:
        around = jnp.concatenate([around, more_bands], axis=0)
    _, solutions = _users_at(cell, around, server)
    lower, upper = _utility_bounds(objective, cell, solutions)
    model = cell.users.model
    whole = solutions.log2_distortion_bound[2] - _bits_per_param(cell) * (
        model.params_device + model.params_server - solutions.retained_params[2])
    ceiling = cell.bandwidth_hz[..., None]

    def sup(price):
        bound = jnp.minimum(_chord_sup(around[:5], lower[:5], upper[:5], price[..., None], ceiling),
                            _utility(objective, cell, whole))
        if more_bands is not None:
            bound = jnp.minimum(bound, _chord_sup(around[5:], lower[5:], upper[5:], price[..., None], ceiling))
        return jnp.where(_uploads(cell), bound, upper[2])  # a user without upload: its value at any band

    return [sup(price) for price in prices], lower[2]


def _price_bound(lagrangian: _Lagrangian, server, bands):
    """min over π in {the Lagrangian's price, 0} of π B + Σ_k sup_b [U_k(v_k(b)) − π b] >= max Φ (weak
    duality of Σ b_k <= B holds at every π >= 0; π = 0 is the tighter one where the band is not scarce),
    each sup bounded by :func:`_user_sups`; +inf where the Lagrangian gives no bound."""
    cell, price = lagrangian.cell, lagrangian.price
    prices = (price, jnp.zeros_like(price))
    sups, _ = _user_sups(lagrangian.objective, cell, server, bands, prices)
    bound = jnp.minimum(*(p * cell.bandwidth_hz + _present_sum(cell, s) for p, s in zip(prices, sups)))
    return jnp.where(lagrangian.usable, bound, jnp.inf)


# ----------------------------------------------------------------------------- the solver


def _equal_server_share(cell: Cell):
    share = cell.f_max_server_hz / _present_count(cell)
    return jnp.broadcast_to(share[..., None], cell.present.shape)


def _whole_server(cell: Cell):
    return jnp.broadcast_to(cell.f_max_server_hz[..., None], cell.present.shape)


def cell_objective(objective: str, cell: Cell, log2_bounds):
    """The objective of ``cell`` at its users' log2 D̂_k: Σ w_k log2 D̂_k, Σ w_k D̂_k or max_k log2 D̂_k."""
    if objective == "max":
        return jnp.max(jnp.where(cell.present, log2_bounds, -jnp.inf), axis=-1)
    return -_present_sum(cell, _utility(objective, cell, log2_bounds))


class _Primal(NamedTuple):
    """A feasible allocation: server clocks and bands per user [Hz], the band search's final target, the
    users' problems and exact solutions there, and the objective."""

    server: Any
    bands: Any
    target: Any
    problem: Problem
    users: Solution
    value: Any


def _primal(objective: str, cell: Cell, server, start: _Start) -> _Primal:
    """The best band split at server clocks ``server`` (:func:`_allocate`) and the users there."""
    bands, target = _allocate(objective, cell, server, start)
    problem, users = _users_at(cell, bands, server)
    return _Primal(server, bands, target, problem, users, cell_objective(objective, cell, users.log2_distortion_bound))


class _Lagrangian(NamedTuple):
    """The concave utility a dual bound is taken of, and the band price π it is taken at: Σ_k U_k of
    ``objective`` with the weights of ``cell``; ``usable`` False where no bound follows."""

    cell: Cell
    objective: str
    price: Any
    usable: Any


def _lagrangian(objective: str, cell: Cell, primal: _Primal) -> _Lagrangian:
    """The dual bound's utility at a primal point: the objective itself at the band price of the search
    (sum-log, sum), or for ``max`` the sum-log utility with weights λ_k >= 0, Σ λ_k = 1 (max_k log2 D̂_k
    >= Σ_k λ_k log2 D̂_k), λ_k ∝ 1/(marginal of −log2 D̂_k per Hz) over the users at the level, which gives
    them all the same band price."""
    if objective != "max":
        return _Lagrangian(cell, objective, jnp.exp(primal.target), True)
    users, level = primal.users, primal.value
    marginal = _utility_slope("sum-log", cell._replace(weights=jnp.ones_like(cell.weights)), users.log2_distortion_bound)
    marginal = marginal * _band_marginal(primal.problem, users)
    at_level = _uploads(cell) & (users.log2_distortion_bound >= level[..., None] - 1e-3) & (marginal > 0) & jnp.isfinite(marginal)
    inverse = jnp.where(at_level, 1.0 / jnp.where(at_level, marginal, 1.0), 0.0)
    total = jnp.sum(inverse, axis=-1)
    weights = inverse / jnp.where(total > 0, total, 1.0)[..., None]
    return _Lagrangian(cell._replace(weights=weights), "sum-log", 1.0 / jnp.where(total > 0, total, jnp.inf), total > 0)


# ----------------------------------------------------------------------------- optimised server shares


def _best_band(objective: str, cell: Cell, server, price, least, guess):
    """Each user's band maximising U_k(v_k(b)) − π b at server clock ``server`` (its response's crossing
    of ln π: sampled at its least band, at ``guess``·(1 ± :data:`_GUESS_SPREAD`) and at B, then refined as
    in :func:`_allocate`), and the bands bracketing the crossing with their neighbours at relative
    distance :data:`_CHORD_STEP` inside (leading axis of 4: where the response jumps over ln π, at a kink
    of v_k, the sup lies between them and their chords bound it)."""
    respond = _response(objective, cell, server)
    full = jnp.broadcast_to(cell.bandwidth_hz[..., None], least.shape)
    low = jnp.where(_uploads(cell), least * (1.0 + 1e-9), full)
    near = jnp.clip(guess[..., None] * jnp.asarray([1.0 - _GUESS_SPREAD, 1.0 + _GUESS_SPREAD], full.dtype),
                    low[..., None], full[..., None])
    log_band = jnp.log(jnp.concatenate([low[..., None], near, full[..., None]], axis=-1))
    samples = _samples(log_band, jax.vmap(respond, in_axes=-1, out_axes=-1)(jnp.exp(log_band)), 4 + _BAND_STEPS)
    target = jnp.log(price)[..., None]
    samples = _refine(samples, target, respond, _BAND_STEPS)
    _, x_lo, x_hi, _, _ = _bracket(samples, target)
    lo, hi = jnp.exp(x_lo), jnp.exp(x_hi)
    inside = jnp.minimum(_CHORD_STEP, 0.25 * (hi / lo - 1.0))  # four distinct sorted bands
    ends = jnp.stack([lo, lo * (1.0 + inside), hi * (1.0 - inside), hi])
    return jnp.where(_uploads(cell), _crossing(samples, target), full), ends


def _server_grid(cell: Cell, around):
    """Server clocks at which each user's Lagrangian is bounded, sorted along a new last axis: a ladder
    around ``around`` (relative steps :data:`_SERVER_LADDER`), F/2^i for i < :data:`_SERVER_COARSE`, and
    F·:data:`_SERVER_FLOOR`, all clipped to [F·floor, F]."""
    dtype = around.dtype
    whole = cell.f_max_server_hz[..., None, None]
    steps = jnp.asarray([0.0] + [x for step in _SERVER_LADDER for x in (-step, step)], dtype)
    coarse = 0.5 ** jnp.arange(_SERVER_COARSE, dtype=dtype)
    local = around[..., None] * (1.0 + steps)
    fixed = jnp.broadcast_to(whole * jnp.concatenate([coarse, jnp.asarray([_SERVER_FLOOR], dtype)]),
                             around.shape + (_SERVER_COARSE + 1,))
    grid = jnp.concatenate([local, fixed], axis=-1)
    return jnp.sort(jnp.clip(grid, whole * _SERVER_FLOOR, whole), axis=-1)


def _capacity_price(cell: Cell, values, points):
    """(ν_lo, ν_hi): a bracket of the least server price ν >= 0 at which the users' choices
    argmax_j (values_kj − ν points_kj) fit in F (Σ_k points_k,j* <= F; the choices shrink as ν grows)."""
    values = jnp.where(jnp.isnan(values), -jnp.inf, values)

    def used(nu):
        j = jnp.argmax(values - nu[..., None, None] * points, axis=-1)
        return _present_sum(cell, jnp.take_along_axis(points, j[..., None], axis=-1)[..., 0])

    zero = jnp.zeros_like(cell.f_max_server_hz)
    fits_free = used(zero) <= cell.f_max_server_hz

    def step(_, bracket):
        lo, hi = bracket
        mid = _bits_mid(lo, hi)
        fits = used(mid) <= cell.f_max_server_hz
        return jnp.where(fits, lo, mid), jnp.where(fits, mid, hi)

    huge = jnp.sqrt(jnp.finfo(zero.dtype).max)
    lo, hi = jax.lax.fori_loop(0, 64, step, (zero + jnp.finfo(zero.dtype).tiny, zero + huge))
    return jnp.where(fits_free, zero, lo), jnp.where(fits_free, zero, hi)


def _two_price_pass(lagrangian: _Lagrangian, start: _Start, around, guess):
    """A bound on Σ_k U_k with both the band and the server clock shared, and the server shares it suggests.

    Weak duality with band price π and server price ν >= 0: Φ <= π B + ν F + Σ_k h_k,
    h_k = sup_{b, S} [U_k(v_k(b, S)) − π b − ν S], for any allocation with Σ b_k <= B and Σ S_k <= F. v_k is
    non-decreasing in S (a higher cap on f̃ never hurts), so on each interval (S_{j−1}, S_j] of the grid
    (:func:`_server_grid` around the server clocks ``around``, S_0 = 0) h_k <= sup_b [U_k(v_k(b, S_j)) − π b]
    − ν S_{j−1}; each sup over b is bounded as in :func:`_user_sups` around the user's best band at S_j
    (searched from ``guess``, the bands at ``around``). ν minimises the bound
    (it is convex and piecewise linear in ν: a bisection of its slope). The suggested shares are the
    users' best grid clocks at the least ν at which they fit, scaled up to F.
    """
    cell, price = lagrangian.cell, lagrangian.price
    grid = _server_grid(cell, around)

    def at(server):
        bands, ends = _best_band(lagrangian.objective, cell, server, price, start.least, guess)
        (sup,), value = _user_sups(lagrangian.objective, cell, server, bands, (price,), ends)
        return sup, value - jnp.where(_uploads(cell), price[..., None] * bands, 0.0)

    sup, reached = jax.vmap(at, in_axes=-1, out_axes=-1)(grid)
    previous = jnp.concatenate([jnp.zeros_like(grid[..., :1]), grid[..., :-1]], axis=-1)

    def bound(nu):
        worth = jnp.max(sup - nu[..., None, None] * previous, axis=-1)
        return price * cell.bandwidth_hz + nu * cell.f_max_server_hz + _present_sum(cell, worth)

    lo, hi = _capacity_price(cell, sup, previous)
    upper = jnp.minimum(bound(lo), bound(hi))
    return jnp.where(lagrangian.usable, upper, jnp.inf), _suggested_shares(cell, reached, grid)


def _suggested_shares(cell: Cell, reached, grid):
    """Server shares summing to F from the users' reached Lagrangian values on their grids: at the
    bracket (ν_lo, ν_hi) of the least price at which their best grid clocks fit in F, the users whose
    choice differs between the two ends (the price makes them jump) share what is left in the same
    proportion; any room still left is shared in proportion to the shares."""
    reached = jnp.where(jnp.isnan(reached), -jnp.inf, reached)
    choice_fits, choice_over = (
        jnp.take_along_axis(grid, jnp.argmax(reached - nu[..., None, None] * grid, axis=-1)[..., None], axis=-1)[..., 0]
        for nu in _capacity_price(cell, reached, grid)[::-1])
    used_fits, used_over = _present_sum(cell, choice_fits), _present_sum(cell, choice_over)
    jump = jnp.clip((cell.f_max_server_hz - used_fits) / jnp.where(used_over > used_fits, used_over - used_fits, 1.0), 0.0, 1.0)
    shares = jnp.where(cell.present, choice_fits + jump[..., None] * (choice_over - choice_fits), 0.0)
    total = jnp.sum(shares, axis=-1, keepdims=True)
    return jnp.where(cell.present, shares * (cell.f_max_server_hz[..., None] / total), _equal_server_share(cell))


def _optimized(objective: str, cell: Cell, start: _Start) -> tuple[_Primal, Any]:
    """The best of :data:`_SERVER_ROUNDS` primal points — equal server shares, then the shares suggested
    by the two-price bound around the best point so far — and the least of those bounds."""

    def round_(carry, first):
        best, shares, upper = carry
        candidate = _primal(objective, cell, shares, start)
        take = first | (candidate.value < best.value)  # a NaN objective never replaces a point

        def pick(kept, new):
            return jnp.where(take.reshape(take.shape + (1,) * (kept.ndim - take.ndim)), new, kept)

        best = jax.tree_util.tree_map(pick, best, candidate)
        bound, suggested = _two_price_pass(_lagrangian(objective, cell, best), start, best.server, best.bands)
        return (best, suggested, jnp.minimum(upper, bound)), None

    shapes = jax.eval_shape(lambda: _primal(objective, cell, _equal_server_share(cell), start))
    placeholder = jax.tree_util.tree_map(lambda x: jnp.zeros(x.shape, x.dtype), shapes)  # replaced in round 1
    unbounded = jnp.full_like(cell.bandwidth_hz, jnp.inf)
    first = jnp.arange(_SERVER_ROUNDS) == 0
    (best, _, upper), _ = jax.lax.scan(round_, (placeholder, _equal_server_share(cell), unbounded), first)
    return best, upper


@functools.partial(jax.jit, static_argnames=("objective", "server_sharing"))
def solve_cell(cell: Cell, objective: str = "sum-log", server_sharing: str = "equal", *,
               gap_tol: float = DEFAULT_CELL_GAP_TOL) -> CellSolution:
    """Band shares, server shares and every user's (ρ, f, p, ρ̃, f̃) minimising ``objective`` over a cell
    (float64 advised).

    Args:
      cell: a :class:`~laimco_jax.cell.Cell` (any batch of cells; per-user leaves with the user axis last).
      objective: ``sum-log`` (Σ w_k log2 D̂_k), ``sum`` (Σ w_k D̂_k) or ``max`` (max_k log2 D̂_k).
      server_sharing: ``equal`` (F/K per present user: the band split is optimal, certified to
        ``gap_tol``) or ``optimized`` (shares S_k with Σ S_k <= F chosen too; not a convex problem: the
        certificate is the gap to the two-price bound of :func:`_two_price_pass`, see
        docs/theory.md#optimised-server-shares).
      gap_tol: certificate below which the status is OPTIMAL (units in :class:`CellSolution`).

    Returns:
      A :class:`CellSolution`.
    """
    check_objective(objective)
    check_server_sharing(server_sharing)
    cell = jax.tree_util.tree_map(jnp.asarray, cell)
    alone_server = _equal_server_share(cell) if server_sharing == "equal" else _whole_server(cell)
    start = _start(cell, alone_server)
    if server_sharing == "equal":
        primal = _primal(objective, cell, alone_server, start)
        upper = _price_bound(_lagrangian(objective, cell, primal), primal.server, primal.bands)
    else:
        primal, upper = _optimized(objective, cell, start)
    users, value = primal.users, primal.value
    lower_bound = -upper
    if objective == "max":  # no user beats its best alone
        alone = start.alone
        best_alone = alone.log2_distortion_bound - _bits_per_param(cell) * (alone.upper_bound - alone.retained_params)
        lower_bound = jnp.maximum(lower_bound, jnp.max(jnp.where(cell.present, best_alone, -jnp.inf), axis=-1))
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
        bandwidth_hz=jnp.where(keep, jnp.where(cell.present, cell.bandwidth_hz[..., None], 0.0), primal.bands),
        server_share_hz=jnp.where(cell.present, jnp.where(keep, alone_server, primal.server), 0.0),
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
