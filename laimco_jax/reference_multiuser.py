"""Independent reference for a multi-user cell (issue 15): the band split found by an outer search, each
user's (P1) solved by CVXPY + Clarabel.

This module shares no code with the cell solver (``laimco_jax.solvers.multiuser``): it uses the single-user CVXPY
form :func:`laimco_jax.reference.solve_cvxpy_exact`, SciPy, the system model (:mod:`laimco_jax.system`) and
the distortion bound (:mod:`laimco_jax.distortion`), nothing of ``laimco_jax.solvers``' search.

The cell: K users, each a scalar :class:`~laimco_jax.params.Problem` with a weight w_k > 0. User k gets
the uplink band b_k ≥ 0 [Hz] (its problem with ``system.bandwidth_hz = b_k``, noise power b_k N0), with
Σ b_k ≤ B, and a fixed server share, by default F/K [cycles/s] (``system.f_max_server_hz = F/K``). With
v_k(b) the optimal retained parameters ρq + ρ̃s of user k at band b (concave and non-decreasing in b) and
log2 D̂_k(b) its bound (41) (affine decreasing in v_k), the objectives over b = (b_1, ..., b_K) are

* ``sum-log``: minimise Σ w_k log2 D̂_k(b_k) [bits];
* ``sum``: minimise Σ w_k D̂_k(b_k), D̂ = 2^{log2 D̂} [D̂ units: E‖w − ŵ‖, in the units of the weights];
* ``max``: minimise max_k log2 D̂_k(b_k) [bits] (the weights are not used).

All three are convex in b. Since every v_k is non-decreasing, some optimum uses the whole band, so the
search is over splits with Σ b_k = B. Users with nothing to upload (θ = 0: on-device) need no band:
they get b_k = 0 and are solved once (at band B, which their problem does not depend on); only the
users with θ > 0 ("link users") take part in the search.

User k is feasible at band b iff b ≥ b_min,k, its least band (:func:`least_band_hz`, closed form: with the
``proposed`` scheme ρ = ρ̃ = 0 is allowed, so the user is feasible iff the upload alone fits both budgets).
The cell is infeasible when a user cannot meet its budgets with the whole band (b_min,k > B, or an
on-device user infeasible), or when Σ b_min,k > B.

Methods (``method``):

* ``cvxpy-search`` (``auto`` for at most :data:`SEARCH_MAX_USERS` link users): nested bounded 1-D
  searches (SciPy's bounded Brent, ``minimize_scalar(method="bounded")``) over the split: for the first
  link user, b_1 ∈ [b_min,1, B − Σ_{k>1} b_min,k], and for each b_1 the same search over the others with
  the band B − b_1; the last link user takes what is left. Each inner minimum is a convex function of
  the outer band (partial minimisation of a convex function), so each level is a 1-D convex search. The
  band tolerance is ``xatol`` = :data:`BAND_XATOL` · B (plus Brent's own 1.5e-8 relative floor, ~0.05 Hz
  at 5 MHz): for ``sum-log`` and ``sum`` the objective error is quadratic in the band error, for ``max``
  (a kink) linear. Observed: within 7e-8 relative of the ``scipy`` method on random K = 2 cells (splits
  0-8, weights e^±3), within 2e-8 at K = 3. Every per-user solve is cached on (user, band). The cost
  grows as (~30 evaluations)^(K−1): ~0.25 s a cell at K = 2, 2-5 s at K = 3 (~12 s for ``max``).
* ``scipy`` (``auto`` above): one SLSQP problem over the whole cell (:func:`_slsqp_cell`) in the
  convex form of docs/theory.md#convex-reformulation written in budget shares, with the band share of
  every link user as a variable and Σ b_k ≤ B; a joint NLP rather than a search over b with nested
  single-user solves, because a CVXPY solve per evaluation (plus finite differences) is too slow and
  too noisy for SLSQP's gradients. It starts from the equal split and :data:`SCIPY_STARTS` − 1 seeded
  Dirichlet splits. The band split of each start is projected onto {b ≥ b_min, Σ b = B}
  (:func:`_fill_band`) and re-evaluated by CVXPY per user; the best start is returned. So every
  reported value (and the objective) comes from CVXPY at a feasible split, and SLSQP only chooses the
  split. SLSQP runs with one BLAS thread (:func:`threadpoolctl.threadpool_limits`): its small dense
  factorisations were 20x slower with a thread pool. ~0.5 s a cell at K = 8.

Reported values: the per-user CVXPY solutions at the returned split. ``status``: ``"optimal"`` when
every one is certified OPTIMAL by Clarabel, ``"inaccurate"`` when one is not (typically a band within
~1e-6 of b_min,k, where Clarabel stops at reduced accuracy), ``"infeasible"`` for an infeasible cell.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, NamedTuple

import jax
import numpy as np
from scipy.optimize import brentq, minimize, minimize_scalar
from threadpoolctl import threadpool_limits

from laimco_jax import distortion
from laimco_jax.params import ConfigError, Problem
from laimco_jax.reference import solve_cvxpy_exact
from laimco_jax.system import LN2, channel_gain

__all__ = [
    "BAND_XATOL",
    "METHODS",
    "OBJECTIVES",
    "SCIPY_STARTS",
    "SEARCH_MAX_USERS",
    "CellReference",
    "least_band_hz",
    "solve_cell_reference",
]

OBJECTIVES = ("sum-log", "sum", "max")
METHODS = ("auto", "cvxpy-search", "scipy")
#: ``auto`` uses the nested search for at most this many link users (θ > 0), SLSQP above.
SEARCH_MAX_USERS = 3
#: Absolute band tolerance of each bounded Brent search, as a fraction of B.
BAND_XATOL = 1e-9
#: SLSQP starts of the ``scipy`` method: the equal split and seeded Dirichlet(1) splits.
SCIPY_STARTS = 6
SCIPY_SEED = 0
#: SLSQP's stopping tolerance on the (O(10) bits) objective, and its iteration limit.
SLSQP_FTOL = 1e-13
SLSQP_MAXITER = 2000
# Lower bound of the SLSQP time and band shares (keeps 2^{a/x} of the link energy finite).
_SHARE_FLOOR = 1e-12
# Exponent cap of 2^{a/x} in the SLSQP link energy (reached only far outside the feasible set).
_EXP2_CAP = 500.0
# Within this relative distance above b_min,k, a per-user solve that finds no point takes the limit
# value v_k(b_min,k) = 0 (the closed-form b_min,k and Clarabel's edge differ by rounding there).
_EDGE_RTOL = 1e-6
_OPTIMAL, _NOT_CONVERGED = 0, 2  # laimco_jax.solvers.Status values, as solve_cvxpy_exact reports them


class CellReference(NamedTuple):
    """The reference optimum of one cell (see the module docstring).

    ``objective_value``: the objective at the returned split, in bits for ``sum-log`` and ``max``, in D̂
    units for ``sum`` (inf when infeasible). Per user, in the input order (NaN when infeasible):
    ``bandwidth_hz`` b_k [Hz] (0 for users with θ = 0), ``retained`` ρq + ρ̃s [parameters],
    ``log2_distortion_bound`` log2 D̂ [bits]. ``status``: ``"optimal"``, ``"inaccurate"`` or
    ``"infeasible"``. ``solutions``: each user's :class:`~laimco_jax.solvers.solution.Solution` from
    :func:`~laimco_jax.reference.solve_cvxpy_exact` at its band and F/K (empty when infeasible).
    """

    objective_value: float
    bandwidth_hz: np.ndarray
    retained: np.ndarray
    log2_distortion_bound: np.ndarray
    status: str
    solutions: tuple


def _float(value) -> float:
    return float(np.asarray(value, np.float64).reshape(()))


def _increasing_root(f, x0: float) -> float:
    """The root of an increasing function ``f`` of x = ln b, bracketed by unit steps from ``x0``."""
    lo = hi = x0
    while f(lo) > 0.0:
        lo -= 1.0
    while f(hi) < 0.0:
        hi += 1.0
    return brentq(f, lo, hi, xtol=1e-15, rtol=1e-15)


def least_band_hz(problem: Problem) -> float:
    """b_min [Hz]: the least uplink band at which ``problem`` ("proposed" scheme) is feasible.

    At ρ = ρ̃ = 0 the whole delay budget goes to the upload, sent in time T0 at the least power, so the
    problem is feasible at band b iff (rate) b log2(1 + P_max g/(b N0)) ≥ θ/T0 and (energy)
    (N0 T0/g) b (2^{θ/(b T0)} − 1) ≤ E0; the first is increasing in b, the second's left side decreasing.
    0 when θ = 0; inf when even an unlimited band fails (θ/T0 ≥ P_max g/(N0 ln 2) or θ N0 ln 2/g ≥ E0).
    """
    bits = _float(problem.model.embedding_bits)
    if bits == 0.0:
        return 0.0
    system, budget = problem.system, problem.budget
    gain, noise = _float(channel_gain(system)), _float(system.noise_psd_w_per_hz)
    rate = bits / _float(budget.delay_s)  # required [bit/s]
    snr_hz = _float(system.p_max_w) * gain / noise  # P_max g/N0 [Hz]
    energy_hz = _float(budget.energy_j) * gain / (noise * _float(budget.delay_s))  # E0 g/(N0 T0) [Hz]
    if rate >= snr_hz / LN2 or rate * LN2 >= energy_hz:
        return math.inf
    x0 = math.log(rate)
    by_rate = _increasing_root(lambda x: math.exp(x) * math.log1p(snr_hz / math.exp(x)) / LN2 - rate, x0)
    by_energy = _increasing_root(lambda x: energy_hz - math.exp(x) * math.expm1(rate * LN2 / math.exp(x)), x0)
    return math.exp(max(by_rate, by_energy))


class _User:
    """One user of the cell at its server share: weight, least band and cached CVXPY solves."""

    def __init__(self, problem: Problem, weight: float, server_hz: float, cell_band_hz: float):
        self.problem = problem.replace(system=problem.system.derive(f_max_server_hz=server_hz))
        self.weight = weight
        self.has_link = _float(problem.model.embedding_bits) > 0.0
        self.least_band_hz = least_band_hz(self.problem)
        self._cell_band_hz = cell_band_hz
        self._solutions: dict[float, Any] = {}
        model = problem.model
        self.params = _float(model.params_device) + _float(model.params_server)
        # log2 D̂ of (41) is affine in ρq + ρ̃s: its value at 0 [bits] and slope [bits/parameter].
        self.log2_at_zero = self._library_log2_bound(0.0)
        self.log2_slope = (self._library_log2_bound(self.params) - self.log2_at_zero) / self.params

    def _library_log2_bound(self, retained: float) -> float:
        """log2 D̂ [bits] at ``retained`` = ρq + ρ̃s by laimco_jax.distortion (rate (ρq + ρ̃s) b)."""
        model = self.problem.model
        return _float(distortion.log2_distortion_rate_bound(
            retained * _float(model.bits_per_weight), self.params, _float(model.entropy_bits), dtype=np.float64))

    def solution(self, band_hz: float):
        """solve_cvxpy_exact at ``band_hz`` [Hz] (at the cell's band B when the user has no upload)."""
        band_hz = float(band_hz) if self.has_link else self._cell_band_hz
        if band_hz not in self._solutions:
            system = self.problem.system.derive(bandwidth_hz=band_hz)
            self._solutions[band_hz] = solve_cvxpy_exact(self.problem.replace(system=system), "proposed").solution
        return self._solutions[band_hz]

    def retained(self, band_hz: float) -> float:
        """v_k(b) [parameters]; 0 (the limit at b_min) for a failed solve within _EDGE_RTOL of b_min."""
        sol = self.solution(band_hz)
        if int(sol.status) in (_OPTIMAL, _NOT_CONVERGED):
            return _float(sol.retained_params)
        if self.has_link and band_hz <= self.least_band_hz * (1.0 + _EDGE_RTOL):
            return 0.0
        raise RuntimeError(f"solve_cvxpy_exact found no point at band {band_hz!r} Hz "
                           f"(least band {self.least_band_hz!r} Hz; status {int(sol.status)})")

    def log2_bound(self, band_hz: float) -> float:
        """log2 D̂_k(b) [bits], from v_k(b) by eq. (41)."""
        return self.log2_bound_of(self.retained(band_hz))

    def log2_bound_of(self, retained: float) -> float:
        """log2 D̂ [bits] of this user at ``retained`` = ρq + ρ̃s [parameters]."""
        return self.log2_at_zero + self.log2_slope * retained


def _objective(objective: str, weights: np.ndarray, log2_bounds: np.ndarray) -> float:
    """The cell objective of per-user log2 D̂ [bits] (see the module docstring for units)."""
    if objective == "sum-log":
        return float(np.dot(weights, log2_bounds))
    if objective == "sum":
        return float(np.dot(weights, np.exp2(log2_bounds)))
    return float(np.max(log2_bounds))


def _split_value(objective: str, users: Sequence[_User], bands_hz: np.ndarray) -> float:
    weights = np.array([u.weight for u in users])
    return _objective(objective, weights, np.array([u.log2_bound(b) for u, b in zip(users, bands_hz)]))


# ----------------------------------------------------------------------------- cvxpy-search


def _search(users: Sequence[_User], band_hz: float, objective: str, xatol: float) -> np.ndarray:
    """The best split [Hz] of ``band_hz`` among ``users`` (all with θ > 0) by nested bounded searches."""
    if len(users) == 1:
        return np.array([band_hz])
    first, rest = users[0], users[1:]
    lo, hi = first.least_band_hz, band_hz - sum(u.least_band_hz for u in rest)
    splits: dict[float, np.ndarray] = {}

    def value(b: float) -> float:
        splits[b] = np.concatenate([[b], _search(rest, band_hz - b, objective, xatol)])
        return _split_value(objective, users, splits[b])

    if hi - lo <= xatol:
        value(lo)
        return splits[lo]
    best = minimize_scalar(value, bounds=(lo, hi), method="bounded", options=dict(xatol=xatol, maxiter=500))
    return splits[float(best.x)]


def _search_split(users: Sequence[_User], band_hz: float, objective: str) -> np.ndarray:
    """The ``cvxpy-search`` split [Hz] of ``band_hz`` among link ``users``, to BAND_XATOL · B."""
    return _search(users, band_hz, objective, BAND_XATOL * band_hz)


# ----------------------------------------------------------------------------- scipy (SLSQP)


class _Shares(NamedTuple):
    """Per link user coefficients of the convex form in budget shares (arrays over link users).

    Variables: ρ, ρ̃; device / server time shares τ/T0, τ̃/T0; upload time share d = θu/T0; band share
    β = b/B. Delay: τ/T0 + d + τ̃/T0 ≤ 1. Energy: A ρ³/(τ/T0)² + c x (2^{a/x} − 1) + Ã ρ̃³/(τ̃/T0)² ≤ 1 with
    x = βd. Clocks: τ/T0 ≥ D ρ, τ̃/T0 ≥ D̃ ρ̃. Power: d β log2(1 + S/β) ≥ a.
    """

    q_share: np.ndarray  # q/(q+s)
    s_share: np.ndarray
    delay: np.ndarray  # D = T_d/T0, T_d = N/(c f_max) [-]
    energy: np.ndarray  # A = (E_d/E0) D², E_d = η φ N f_max²/c
    delay_server: np.ndarray  # D̃ at the user's server share
    energy_server: np.ndarray
    bits: np.ndarray  # a = θ/(B T0) [bit/(Hz s) over the cell band and the delay budget]
    link_energy: np.ndarray  # c = N0 B T0/(g E0)
    snr: np.ndarray  # S = P_max g/(B N0), the SNR over the whole cell band
    log2_at_zero: np.ndarray  # log2 D̂ at ρ = ρ̃ = 0 [bits]
    log2_slope: np.ndarray  # d log2 D̂ / d((ρq + ρ̃s)/(q+s)) [bits]
    weight: np.ndarray


def _compute_shares(budget, flops, cycles, clock, pue, phi) -> tuple[float, float]:
    """(D, A) of one compute part: D = T_d/T0 with T_d = N/(c f_max), A = (E_d/E0) D² with E_d = η φ N f_max²/c."""
    flops, cycles, clock, pue, phi = map(_float, (flops, cycles, clock, pue, phi))
    delay = flops / (cycles * clock) / _float(budget.delay_s)
    return delay, pue * phi * flops * clock**2 / cycles / _float(budget.energy_j) * delay**2


def _shares(users: Sequence[_User], band_hz: float) -> _Shares:
    rows = []
    for u in users:
        system, model, budget = u.problem.system, u.problem.model, u.problem.budget
        T0, E0 = _float(budget.delay_s), _float(budget.energy_j)
        q, s = _float(model.params_device), _float(model.params_server)
        gain, noise = _float(channel_gain(system)), _float(system.noise_psd_w_per_hz)
        device = _compute_shares(budget, model.flops_device, system.flops_per_cycle_device, system.f_max_device_hz,
                                 system.pue_device, system.power_coeff_device)
        server = _compute_shares(budget, model.flops_server, system.flops_per_cycle_server, system.f_max_server_hz,
                                 system.pue_server, system.power_coeff_server)
        rows.append((q / u.params, s / u.params, *device, *server, _float(model.embedding_bits) / (band_hz * T0),
                     noise * band_hz * T0 / (gain * E0), _float(system.p_max_w) * gain / (band_hz * noise),
                     u.log2_at_zero, u.log2_slope * u.params, u.weight))
    return _Shares(*(np.array(col) for col in zip(*rows)))


def _link_energy(c: _Shares, x: np.ndarray):
    """c x (2^{a/x} − 1) and its derivative in x = βd."""
    power = np.exp2(np.minimum(c.bits / x, _EXP2_CAP))
    return c.link_energy * x * (power - 1.0), c.link_energy * (power - 1.0 - c.bits * LN2 / x * power)


def _compute_energy(scale: np.ndarray, rho: np.ndarray, tau: np.ndarray):
    """A ρ³/τ² and its derivatives in ρ and τ (0 for an absent part, A = 0)."""
    present = scale > 0.0
    tau = np.where(present, tau, 1.0)
    ratio = np.where(present, rho / tau, 0.0)
    return scale * rho * ratio**2, 3.0 * scale * ratio**2, -2.0 * scale * ratio**3


def _slsqp_problem(c: _Shares, objective: str):
    """(fun, jac, constraints, bounds) of the joint SLSQP problem; x = [ρ, ρ̃, τ, τ̃, d, β (, t)]."""
    n = len(c.weight)
    rows = np.arange(n)
    cols = {name: slice(i * n, (i + 1) * n) for i, name in enumerate(("rho", "rho_s", "tau", "tau_s", "d", "beta"))}
    size = 6 * n + (objective == "max")

    def log2_bounds(x):
        return c.log2_at_zero + c.log2_slope * (c.q_share * x[cols["rho"]] + c.s_share * x[cols["rho_s"]])

    def spread(grad_log2):
        """The gradient in x of a function of log2 D̂ with gradient ``grad_log2``."""
        g = np.zeros(size)
        g[cols["rho"]] = grad_log2 * c.log2_slope * c.q_share
        g[cols["rho_s"]] = grad_log2 * c.log2_slope * c.s_share
        return g

    def fun(x):
        if objective == "sum-log":
            return float(np.dot(c.weight, log2_bounds(x))) / c.weight.sum()
        if objective == "sum":  # log2 Σ w 2^L: the same minimisers, O(10) values
            top = log2_bounds(x).max()
            return float(top + np.log2(np.dot(c.weight, np.exp2(log2_bounds(x) - top))))
        return float(x[-1])

    def jac(x):
        if objective == "sum-log":
            return spread(c.weight / c.weight.sum())
        if objective == "sum":
            terms = c.weight * np.exp2(log2_bounds(x) - log2_bounds(x).max())
            return spread(terms / terms.sum())
        g = np.zeros(size)
        g[-1] = 1.0
        return g

    def nonlinear(x):
        dev, _, _ = _compute_energy(c.energy, x[cols["rho"]], x[cols["tau"]])
        srv, _, _ = _compute_energy(c.energy_server, x[cols["rho_s"]], x[cols["tau_s"]])
        d, beta = x[cols["d"]], x[cols["beta"]]
        link, _ = _link_energy(c, beta * d)
        power = d * beta * np.log2(1.0 + c.snr / beta) - c.bits
        out = [1.0 - dev - link - srv, power]
        if objective == "max":
            out.append(x[-1] - log2_bounds(x))
        return np.concatenate(out)

    def nonlinear_jac(x):
        _, dev_rho, dev_tau = _compute_energy(c.energy, x[cols["rho"]], x[cols["tau"]])
        _, srv_rho, srv_tau = _compute_energy(c.energy_server, x[cols["rho_s"]], x[cols["tau_s"]])
        d, beta = x[cols["d"]], x[cols["beta"]]
        _, link_x = _link_energy(c, beta * d)
        capacity = np.log2(1.0 + c.snr / beta)
        energy, power = np.zeros((n, size)), np.zeros((n, size))
        for name, value in (("rho", -dev_rho), ("tau", -dev_tau), ("rho_s", -srv_rho), ("tau_s", -srv_tau),
                            ("d", -link_x * beta), ("beta", -link_x * d)):
            energy[rows, rows + cols[name].start] = value
        power[rows, rows + cols["d"].start] = beta * capacity
        power[rows, rows + cols["beta"].start] = d * (capacity - c.snr / ((beta + c.snr) * LN2))
        blocks = [energy, power]
        if objective == "max":
            epigraph = np.zeros((n, size))
            epigraph[rows, rows + cols["rho"].start] = -c.log2_slope * c.q_share
            epigraph[rows, rows + cols["rho_s"].start] = -c.log2_slope * c.s_share
            epigraph[:, -1] = 1.0
            blocks.append(epigraph)
        return np.vstack(blocks)

    linear = np.zeros((3 * n + 1, size))  # delay, device clock, server clock, band
    linear[rows, rows + cols["tau"].start] = -1.0
    linear[rows, rows + cols["d"].start] = -1.0
    linear[rows, rows + cols["tau_s"].start] = -1.0
    linear[n + rows, rows + cols["tau"].start] = 1.0
    linear[n + rows, rows + cols["rho"].start] = -c.delay
    linear[2 * n + rows, rows + cols["tau_s"].start] = 1.0
    linear[2 * n + rows, rows + cols["rho_s"].start] = -c.delay_server
    linear[3 * n, cols["beta"]] = -1.0
    offset = np.concatenate([np.ones(n), np.zeros(2 * n), [1.0]])
    constraints = [
        dict(type="ineq", fun=lambda x: linear @ x + offset, jac=lambda x: linear),
        dict(type="ineq", fun=nonlinear, jac=nonlinear_jac),
    ]
    time_bounds = [(_SHARE_FLOOR if v > 0.0 else 0.0, 1.0) for v in np.concatenate([c.delay, c.delay_server])]
    bounds = ([(0.0, 1.0)] * 2 * n + time_bounds + [(_SHARE_FLOOR, 1.0)] * 2 * n
              + [(None, None)] * (objective == "max"))
    return fun, jac, constraints, bounds


def _slsqp_start(c: _Shares, beta: np.ndarray, objective: str) -> np.ndarray:
    """A start for SLSQP at band shares ``beta``: a third of the delay budget per part, ρ at half its
    full-clock limit."""
    third = np.full_like(beta, 1.0 / 3.0)
    rho = [0.5 * np.minimum(1.0, third / np.where(delay > 0.0, delay, 1.0)) for delay in (c.delay, c.delay_server)]
    x = np.concatenate([*rho, third, third, third, beta])
    if objective == "max":
        x = np.append(x, np.max(c.log2_at_zero))
    return x


def _slsqp_cell(c: _Shares, objective: str, beta: np.ndarray) -> np.ndarray:
    """SLSQP on the joint problem from the split ``beta``; the band shares it ends at."""
    fun, jac, constraints, bounds = _slsqp_problem(c, objective)
    result = minimize(fun, _slsqp_start(c, beta, objective), jac=jac, method="SLSQP", bounds=bounds,
                      constraints=constraints, options=dict(ftol=SLSQP_FTOL, maxiter=SLSQP_MAXITER))
    n = len(c.weight)
    return result.x[5 * n:6 * n]


def _fill_band(bands_hz: np.ndarray, least_hz: np.ndarray, band_hz: float) -> np.ndarray:
    """``bands_hz`` moved onto {b ≥ b_min, Σ b = B}: the excess over b_min rescaled to fill B − Σ b_min."""
    excess = np.maximum(bands_hz - least_hz, 0.0)
    room = band_hz - least_hz.sum()
    if excess.sum() <= 0.0:
        return least_hz + room / len(least_hz)
    return least_hz + excess * (room / excess.sum())


def _scipy_split(users: Sequence[_User], band_hz: float, objective: str) -> np.ndarray:
    """The best split [Hz] of ``band_hz`` among link ``users`` over the SLSQP starts (by CVXPY value)."""
    n = len(users)
    c = _shares(users, band_hz)
    least = np.array([u.least_band_hz for u in users])
    rng = np.random.default_rng(SCIPY_SEED)
    starts = [np.full(n, 1.0 / n)] + [rng.dirichlet(np.ones(n)) for _ in range(SCIPY_STARTS - 1)]
    # One BLAS thread: SLSQP's small dense factorisations ran 20x slower with a thread pool.
    with np.errstate(over="ignore", divide="ignore", invalid="ignore"), threadpool_limits(1, user_api="blas"):
        splits = [_fill_band(_slsqp_cell(c, objective, beta) * band_hz, least, band_hz) for beta in starts]
    return min(splits, key=lambda split: _split_value(objective, users, split))


# ----------------------------------------------------------------------------- entry point


def _check(problems, bandwidth_hz, f_max_server_hz, weights, objective, method) -> np.ndarray:
    if len(problems) == 0:
        raise ConfigError("a cell needs at least one user (K = 0)")
    weights = np.asarray(weights, np.float64)
    if weights.shape != (len(problems),):
        raise ConfigError(f"weights has shape {weights.shape}; one weight per user ({len(problems)}) is needed")
    if not np.all(np.isfinite(weights) & (weights > 0.0)):
        raise ConfigError(f"weights = {weights.tolist()} must be finite and > 0")
    for name, value in (("bandwidth_hz", bandwidth_hz), ("f_max_server_hz", f_max_server_hz)):
        if not (math.isfinite(value) and value > 0.0):
            raise ConfigError(f"{name} = {value!r} must be finite and > 0")
    if objective not in OBJECTIVES:
        raise ConfigError(f"objective = {objective!r} is not known; allowed: {', '.join(OBJECTIVES)}")
    if method not in METHODS:
        raise ConfigError(f"method = {method!r} is not known; allowed: {', '.join(METHODS)}")
    return weights


def _infeasible_cell(users: Sequence[_User], band_hz: float) -> bool:
    """Whether the link users' least bands exceed B together, or an on-device user has no feasible point."""
    on_device = [u for u in users if not u.has_link]
    return (sum(u.least_band_hz for u in users if u.has_link) > band_hz
            or any(int(u.solution(band_hz).status) not in (_OPTIMAL, _NOT_CONVERGED) for u in on_device))


def _infeasible(k: int) -> CellReference:
    nan = np.full(k, np.nan)
    return CellReference(math.inf, nan, nan.copy(), nan.copy(), "infeasible", ())


def solve_cell_reference(
    problems: Sequence[Problem],
    bandwidth_hz: float,
    f_max_server_hz: float,
    weights: Sequence[float],
    objective: str,
    method: str = "auto",
    server_hz: Sequence[float] | None = None,
) -> CellReference:
    """The optimal band split of a cell at fixed server shares, by an outer search over the split and
    :func:`~laimco_jax.reference.solve_cvxpy_exact` per user (see the module docstring).

    ``problems``: K scalar single-user problems (their ``bandwidth_hz`` and ``f_max_server_hz`` are
    replaced by the cell's); ``bandwidth_hz`` B [Hz]; ``f_max_server_hz`` F [cycles/s]; ``weights``:
    w_k > 0; ``objective``: ``"sum-log"``, ``"sum"`` or ``"max"``; ``method``: ``"cvxpy-search"``,
    ``"scipy"`` or ``"auto"`` (the search for at most :data:`SEARCH_MAX_USERS` users with θ > 0, SciPy
    above); ``server_hz``: each user's server clock [cycles/s], > 0 and summing to at most F (default
    F/K each). ConfigError on malformed input.
    """
    weights = _check(problems, bandwidth_hz, f_max_server_hz, weights, objective, method)
    bandwidth_hz, k = float(bandwidth_hz), len(problems)
    shares = np.full(k, float(f_max_server_hz) / k) if server_hz is None else np.asarray(server_hz, np.float64)
    if shares.shape != (k,) or not np.all(np.isfinite(shares) & (shares > 0.0)) or shares.sum() > f_max_server_hz * (1 + 1e-12):
        raise ConfigError(f"server_hz = {shares.tolist()} must be {k} clocks > 0 summing to at most "
                          f"f_max_server_hz = {f_max_server_hz!r}")
    with jax.enable_x64(True):
        users = [_User(p, float(w), float(f), bandwidth_hz) for p, w, f in zip(problems, weights, shares)]
        if _infeasible_cell(users, bandwidth_hz):
            return _infeasible(k)
        link = [i for i, u in enumerate(users) if u.has_link]
        band = np.zeros(k)
        if link:
            search = method == "cvxpy-search" or (method == "auto" and len(link) <= SEARCH_MAX_USERS)
            band[link] = (_search_split if search else _scipy_split)([users[i] for i in link], bandwidth_hz, objective)
        retained = np.array([u.retained(b) for u, b in zip(users, band)])
        log2_bounds = np.array([u.log2_bound_of(r) for u, r in zip(users, retained)])
        solutions = tuple(u.solution(b) for u, b in zip(users, band))
    certified = all(int(s.status) == _OPTIMAL for s in solutions)
    return CellReference(_objective(objective, weights, log2_bounds), band, retained, log2_bounds,
                         "optimal" if certified else "inaccurate", solutions)
