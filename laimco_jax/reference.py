"""CVXPY + Clarabel reference solvers of (P1): the exact convex form and the paper's SCA loop.

Install with ``pip install laimco_jax[baseline]``; CVXPY is imported lazily, inside the functions.
Each function solves ONE scalar :class:`~laimco_jax.params.Problem` (leaves: Python floats or arrays of
size 1) in float64 and returns a :class:`ReferenceResult`:

* ``solution``: a :class:`~laimco_jax.solvers.solution.Solution` assembled by
  :func:`~laimco_jax.solvers.solution.make_solution` (T, E, slacks and D̂ re-evaluated at the returned
  point, in float64: it is built inside ``jax.enable_x64(True)``; nothing global is changed);
* ``seconds``: wall time of the whole call (model building, CVXPY canonicalisation, every solve);
* ``solver_seconds``: Clarabel's own solve time, summed over the conic solves;
* ``solves``: how many conic problems were solved (1 for the exact form, up to 2 + ``max_iters`` for
  the SCA, whose starting point may need a phase-I solve).

Both use the schemes of :mod:`laimco_jax.solvers.schemes` (the re-split model of ``on-device`` /
``on-server`` from :func:`scheme_problem`, the pruning lower bounds and pinned clock / power of
:func:`scheme_spec`) and handle absent parts: a part with no FLOPs (N = 0 or Ñ = 0) costs no time or
energy at any clock and has no clock variable (its reported clock is 0, as in the exact solver), an
empty upload (θ = 0) has no power variable (reported p = 0), and a part with no parameters (q = 0 or
s = 0) contributes nothing to the objective (its reported ρ is 1 when it also has no FLOPs).

Multipliers are those of the delay budget (44a) and energy budget (44b) for the objective ρq + ρ̃s,
converted from Clarabel's duals of the scaled constraints: d(ρq + ρ̃s)*/dT0 in parameters per second
and d(ρq + ρ̃s)*/dE0 in parameters per joule (Solution's convention).
"""

from __future__ import annotations

import functools
import math
import time
import warnings
from dataclasses import dataclass
from typing import Any, NamedTuple

import jax
import numpy as np

from laimco_jax import distortion
from laimco_jax.params import ConfigError, MissingDependencyError, Problem
from laimco_jax.solvers.schemes import SchemeSpec, scheme_problem, scheme_spec
from laimco_jax.solvers.solution import InfeasibleReason, Solution, Status, budget_excess, make_solution
from laimco_jax.system import LN2, OperatingPoint, channel_gain, evaluate

__all__ = [
    "CLARABEL_SETTINGS",
    "CLARABEL_SCA_SETTINGS",
    "ReferenceResult",
    "solve_cvxpy_exact",
    "solve_cvxpy_sca",
    "DEFAULT_SCA_RHO0",
    "DEFAULT_SCA_EPS",
    "DEFAULT_SCA_MAX_ITERS",
]

DEFAULT_SCA_RHO0 = 1e-3
DEFAULT_SCA_EPS = 1e-6
DEFAULT_SCA_MAX_ITERS = 50
# Phase I of the SCA start divides ρ0 by this factor while no feasible start is found, down to _RHO0_FLOOR.
_RHO0_SHRINK = 1e-3
_RHO0_FLOOR = 1e-12
# An iterate that Clarabel solved only to reduced accuracy ("optimal_inaccurate", typically a duality
# gap stalled near 1e-8 with a primal residual of 1e-12) is kept when it meets (44a), (44b) within this.
_SCA_FEAS_TOL = 1e-8


class ReferenceResult(NamedTuple):
    """A reference solve: its Solution and what it cost (see the module docstring)."""

    solution: Solution
    seconds: float
    solver_seconds: float
    solves: int


#: Clarabel settings of the exact form (and the SCA's phase I): gap and feasibility tolerances 1e-10
#: (defaults 1e-8), so the scaled objective (ρq + ρ̃s)/(q+s) is accurate to ~1e-10, and more iterations.
CLARABEL_SETTINGS = dict(tol_gap_abs=1e-10, tol_gap_rel=1e-10, tol_feas=1e-10, max_iter=400)
#: Clarabel settings of each (P3.k): its default tolerances (1e-8; at 1e-10 the second-order-cone
#: forms of 1/(ρ' f) and f²/ρ' stall at "almost solved"), more iterations.
CLARABEL_SCA_SETTINGS = dict(max_iter=400)

_CLARABEL_OK: list = []


def _cvxpy():
    try:
        import cvxpy as cp
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise MissingDependencyError(
            "laimco_jax.reference needs CVXPY and Clarabel: pip install 'laimco_jax[baseline]'"
        ) from exc
    if not _CLARABEL_OK:
        if "CLARABEL" not in cp.installed_solvers():  # pragma: no cover
            raise MissingDependencyError(
                "laimco_jax.reference needs the Clarabel solver for CVXPY: pip install 'laimco_jax[baseline]'"
            )
        _CLARABEL_OK.append(True)
    return cp


# ----------------------------------------------------------------------------- coefficients


def _scalar(value, name: str) -> float:
    arr = np.asarray(value, dtype=np.float64)
    if arr.size != 1:
        raise ConfigError(
            f"laimco_jax.reference solves one scalar problem; {name} has shape {arr.shape} "
            "(loop over the batch, or use laimco_jax.solvers.solve_exact for batches)"
        )
    return float(arr.reshape(()))


@dataclass(frozen=True)
class _Coef:
    """Python-float coefficients of one (scheme-transformed) problem, as in convex_form.ConvexForm."""

    q: float
    s: float
    delay_device: float  # T_d = N/(c f_max): device delay at ρ = 1, full clock [s]
    energy_device: float  # E_d = η φ N f_max²/c [J]
    delay_server: float  # T̃_d
    energy_server: float  # Ẽ_d
    bits: float  # θ
    link_power: float  # k = B N0/g [W]
    bandwidth: float  # B
    max_efficiency: float  # y_max = ln(1 + g P_max/(B N0)) [nats/s/Hz]
    p_max: float
    f_max: float
    f_max_server: float
    T0: float
    E0: float
    rho_min: float
    rho_server_min: float
    fixed_frequency: bool
    fixed_power: bool

    @property
    def has_device(self) -> bool:
        return self.delay_device > 0.0

    @property
    def has_server(self) -> bool:
        return self.delay_server > 0.0

    @property
    def has_link(self) -> bool:
        return self.bits > 0.0

    @property
    def u_min(self) -> float:
        """Seconds per bit at P_max, 1/r(P_max)."""
        return LN2 / (self.bandwidth * self.max_efficiency)

    @property
    def snr_max(self) -> float:
        return math.expm1(self.max_efficiency)

    def link_seconds_per_bit(self, p: float) -> float:
        return LN2 / (self.bandwidth * math.log1p(p / self.link_power))

    def link_joules_per_bit(self, p: float) -> float:
        """p/r(p), with its limit k ln2/B at p = 0."""
        snr = p / self.link_power
        ratio = snr / math.log1p(snr) if snr > 0 else 1.0
        return self.link_power * LN2 / self.bandwidth * ratio

    def delay(self, rho, f, p, rho_s, f_s) -> float:
        """T of (10) at a physical point."""
        t = 0.0
        if self.has_device and rho > 0:
            t += rho * self.delay_device * self.f_max / f
        if self.has_link:
            t += self.bits * self.link_seconds_per_bit(p)
        if self.has_server and rho_s > 0:
            t += rho_s * self.delay_server * self.f_max_server / f_s
        return t

    def energy(self, rho, f, p, rho_s, f_s) -> float:
        """E of (11) at a physical point."""
        e = 0.0
        if self.has_device:
            e += rho * self.energy_device * (f / self.f_max) ** 2
        if self.has_link:
            e += self.bits * self.link_joules_per_bit(p)
        if self.has_server:
            e += rho_s * self.energy_server * (f_s / self.f_max_server) ** 2
        return e


def _coefficients(problem: Problem, spec: SchemeSpec) -> _Coef:
    system, model, budget = problem.system, problem.model, problem.budget
    f = lambda v, n: _scalar(v, n)  # noqa: E731
    gain = f(channel_gain(system), "channel gain")
    bandwidth = f(system.bandwidth_hz, "bandwidth_hz")
    link_power = bandwidth * f(system.noise_psd_w_per_hz, "noise_psd_w_per_hz") / gain
    p_max = f(system.p_max_w, "p_max_w")
    f_max, f_max_s = f(system.f_max_device_hz, "f_max_device_hz"), f(system.f_max_server_hz, "f_max_server_hz")
    c, c_s = f(system.flops_per_cycle_device, "c"), f(system.flops_per_cycle_server, "c_server")
    n_dev, n_srv = f(model.flops_device, "flops_device"), f(model.flops_server, "flops_server")
    return _Coef(
        q=f(model.params_device, "params_device"),
        s=f(model.params_server, "params_server"),
        delay_device=n_dev / (c * f_max),
        energy_device=f(system.pue_device, "pue_device") * f(system.power_coeff_device, "phi")
        * n_dev * f_max**2 / c,
        delay_server=n_srv / (c_s * f_max_s),
        energy_server=f(system.pue_server, "pue_server") * f(system.power_coeff_server, "phi_server")
        * n_srv * f_max_s**2 / c_s,
        bits=f(model.embedding_bits, "embedding_bits"),
        link_power=link_power,
        bandwidth=bandwidth,
        max_efficiency=math.log1p(p_max / link_power),
        p_max=p_max,
        f_max=f_max,
        f_max_server=f_max_s,
        T0=f(budget.delay_s, "delay_s"),
        E0=f(budget.energy_j, "energy_j"),
        rho_min=float(spec.rho_min),
        rho_server_min=float(spec.rho_server_min),
        fixed_frequency=bool(spec.fixed_frequency),
        fixed_power=bool(spec.fixed_power),
    )


def _infeasible_reason(c: _Coef) -> int:
    """Which budget fails at the pruning lower bounds (same definitions as InfeasibleReason)."""
    full_speed_delay = c.rho_min * c.delay_device + c.rho_server_min * c.delay_server
    least_energy = 0.0
    if c.has_link:
        full_speed_delay += c.bits * c.u_min
        least_energy += c.bits * (c.link_joules_per_bit(c.p_max) if c.fixed_power else c.link_power * LN2 / c.bandwidth)
    if c.fixed_frequency:
        least_energy += c.rho_min * c.energy_device + c.rho_server_min * c.energy_server
    if full_speed_delay > c.T0:
        return int(InfeasibleReason.DELAY)
    if least_energy > c.E0:
        return int(InfeasibleReason.ENERGY)
    return int(InfeasibleReason.JOINT)


def _finish(problem, c: _Coef, point, *, status, reason=InfeasibleReason.NONE, upper=0.0, certificate=0.0,
            delay_mult=0.0, energy_mult=0.0, iterations=1, history=None) -> Solution:
    rho, f, p, rho_s, f_s = (float(v) for v in point)
    point = OperatingPoint(*(np.float64(v) for v in (rho, f, p, rho_s, f_s)))
    with jax.enable_x64(True):
        sol = make_solution(
            problem,
            point,
            status=int(status),
            infeasible_reason=int(reason),
            upper_bound=np.float64(upper),
            certificate=np.float64(certificate),
            delay_multiplier=np.float64(delay_mult),
            energy_multiplier=np.float64(energy_mult),
            iterations=int(iterations),
            objective_history=history,
        )
    return sol


def _infeasible_point(c: _Coef):
    """The exact solver's convention: pruning lower bounds at full clocks and full power."""
    return (
        c.rho_min if (c.has_device or c.q > 0) else 1.0,
        c.f_max if c.has_device else 0.0,
        c.p_max if c.has_link else 0.0,
        c.rho_server_min if (c.has_server or c.s > 0) else 1.0,
        c.f_max_server if c.has_server else 0.0,
    )


def _solver_time(prob) -> float:
    stats = getattr(prob, "solver_stats", None)
    t = getattr(stats, "solve_time", None) if stats is not None else None
    return float(t) if t is not None else 0.0


def _solve(cp, prob, settings=None) -> str:
    """Solve with Clarabel; a solver failure is reported as the status 'solver_error'.

    ``warm_start=False``: CVXPY's default re-solve of a parametrised problem updates the cached
    Clarabel solver in place (``DefaultSolver.update``), and that path returned points violating the
    energy budget by 0.3% as "optimal" on instances that solve correctly from scratch (CVXPY 1.9.3,
    Clarabel 0.11.1); a fresh Clarabel solver per solve costs about a millisecond.
    """
    try:
        with warnings.catch_warnings():  # "Solution may be inaccurate": handled through the status
            warnings.filterwarnings("ignore", message="Solution may be inaccurate", category=UserWarning)
            prob.solve(solver=cp.CLARABEL, warm_start=False, **(CLARABEL_SETTINGS if settings is None else settings))
    except cp.error.SolverError:
        return "solver_error"
    return prob.status


# ----------------------------------------------------------------------------- exact convex form

# CVXPY problems with Parameters (DPP), keyed by structure (scheme, absent parts, phase I): built and
# canonicalised once, then re-solved with new parameter values — CVXPY's fast path for many instances.
_MODEL_CACHE: dict = {}


def _parameter(cp, params: dict, name: str, **kw):
    """The CVXPY Parameter ``name`` of a model under construction, created on first use."""
    if name not in params:
        params[name] = cp.Parameter(name=name, **kw)
    return params[name]


def _cached(key, build):
    model = _MODEL_CACHE.get(key)
    if model is None:
        model = _MODEL_CACHE[key] = build()
    return model


class _ExactKey(NamedTuple):
    phase1: bool
    device: bool  # the device part has FLOPs
    server: bool
    link: bool  # θ > 0
    fixed_frequency: bool
    fixed_power: bool
    rho_min: float  # lower bound of a free ρ (None when ρ is a constant: pinned or phase I)
    rho_server_min: float


def _exact_key(c: _Coef, phase1: bool) -> _ExactKey:
    free = lambda lower: None if (phase1 or lower >= 1.0) else lower  # noqa: E731
    return _ExactKey(phase1, c.has_device, c.has_server, c.has_link, c.fixed_frequency, c.fixed_power,
                     free(c.rho_min), free(c.rho_server_min))


class _ExactModel(NamedTuple):
    prob: Any
    params: dict  # name -> cp.Parameter
    rho: Any  # cp Variable (None when ρ is a constant: pinned, or phase I)
    rho_server: Any
    tau: Any  # device delay share τ/T0 (None when absent or pinned by fixed frequency)
    tau_server: Any
    v: Any  # link delay share θu/T0 (None when absent or pinned)
    delay_con: Any  # None when the budget has no variable term
    energy_con: Any


def _build_exact(cp, key: _ExactKey) -> _ExactModel:
    """The convex form (docs/theory.md#convex-reformulation) in budget-share variables,
    coefficients as Parameters.

    Every variable is a share of a budget, so the cone variables are O(1) where they matter whatever
    the magnitudes of the instance (with other scalings, instances whose full-clock energy is 1e12·E0
    came back "optimal" from Clarabel while violating (44b) by 5-600%):

    * ρ, ρ̃ in [ρ_min, 1];
    * device delay share τ_s = τ/T0 with f <= f_max ⇔ τ_s >= (T_d/T0)·ρ, and energy share w_s >= η φ N³
      ρ³/(c³ τ² E0) = A³ ρ³/τ_s², the power cone w_s^{1/3} τ_s^{2/3} >= |A ρ| with
      A = ((E_d/E0)(T_d/T0)²)^{1/3}, T_d = N/(c f_max), E_d = η φ N f_max²/c; the server likewise;
    * link delay share d = θu/T0 >= d_min = θ u_min/T0 (⇔ p <= P_max), and energy share
      (k T0/E0)·d·(e^{β/d} − 1) = θ k (u 2^{1/(Bu)} − u)/E0 with β = θ ln2/(B T0), k = B N0/g: the
      exponential cone (β + d·ln(kT0/E0), d, z) gives z >= (kT0/E0)·d·e^{β/d}, energy share z − (kT0/E0)·d;
    * delay (44a): τ_s + d + τ̃_s <= 1; energy (44b): w_s + (z − (kT0/E0) d) + w̃_s <= 1.

    ``fixed_frequency`` substitutes τ_s = (T_d/T0)ρ, w_s = (E_d/E0)ρ; ``fixed_power`` d = d_min;
    terms without a variable are folded into the right-hand sides. ``phase1``: ρ, ρ̃ are constants
    and the problem is min t s.t. delay share <= t, energy share <= t (the SCA's phase I), instead
    of max (ρq + ρ̃s)/(q+s).
    """
    cons, params = [], {}
    delay_terms, energy_terms = [], []

    P = functools.partial(_parameter, cp, params)

    def ratio(lower, name):
        if lower is None:
            return None
        x = cp.Variable(name=name)
        cons.extend([x >= lower, x <= 1.0])
        return x

    rho = ratio(key.rho_min, "rho")
    rho_s = ratio(key.rho_server_min, "rho_server")

    def compute_part(present, r, tag):
        if not present:
            return None
        if key.fixed_frequency:
            if r is not None:
                delay_terms.append(P(f"{tag}_d", nonneg=True) * r)
                energy_terms.append(P(f"{tag}_e", nonneg=True) * r)
            return None
        tau = cp.Variable(nonneg=True, name=f"{tag}_time")
        w = cp.Variable(nonneg=True, name=f"{tag}_energy")
        if r is None:  # ρ is a constant: the products are parameters
            cons.append(tau >= P(f"{tag}_d_rho", nonneg=True))
            cons.append(cp.constraints.PowCone3D(w, tau, P(f"{tag}_a_rho", nonneg=True), 1.0 / 3.0))
        else:
            cons.append(tau >= P(f"{tag}_d", nonneg=True) * r)
            cons.append(cp.constraints.PowCone3D(w, tau, P(f"{tag}_a", nonneg=True) * r, 1.0 / 3.0))
        delay_terms.append(tau)
        energy_terms.append(w)
        return tau

    tau = compute_part(key.device, rho, "device")
    tau_s = compute_part(key.server, rho_s, "server")

    d = None
    if key.link and not key.fixed_power:
        d = cp.Variable(name="link_time")
        z = cp.Variable(name="link_z")
        cons.append(d >= P("link_d_min", nonneg=True))
        cons.append(cp.constraints.ExpCone(P("link_beta", nonneg=True) + P("link_log_c") * d, d, z))
        delay_terms.append(d)
        energy_terms.append(z - P("link_c", nonneg=True) * d)

    def total(terms):
        return cp.sum(cp.hstack(terms)) if terms else None

    delay_sum, energy_sum = total(delay_terms), total(energy_terms)
    if key.phase1:
        t = cp.Variable(name="t")
        delay_con = (delay_sum + P("delay_const") if delay_sum is not None else P("delay_const")) <= t
        energy_con = (energy_sum + P("energy_const") if energy_sum is not None else P("energy_const")) <= t
        prob = cp.Problem(cp.Minimize(t), cons + [delay_con, energy_con])
    else:
        delay_con = delay_sum <= P("delay_rhs") if delay_sum is not None else None
        energy_con = energy_sum <= P("energy_rhs") if energy_sum is not None else None
        cons += [con for con in (delay_con, energy_con) if con is not None]
        objective = [P(f"{n}_weight", nonneg=True) * x for n, x in (("rho", rho), ("rho_server", rho_s)) if x is not None]
        prob = cp.Problem(cp.Maximize(cp.sum(cp.hstack(objective)) if objective else cp.Constant(0.0)), cons)
    return _ExactModel(prob, params, rho, rho_s, tau, tau_s, d, delay_con, energy_con)


def _exact_values(c: _Coef, key: _ExactKey, fixed_rho=None):
    """Parameter values of :func:`_build_exact` for ``c``, and the budgets' constant parts (shares)."""
    total = c.q + c.s
    rho_val = fixed_rho[0] if fixed_rho is not None else 1.0
    rho_s_val = fixed_rho[1] if fixed_rho is not None else 1.0
    values = {"rho_weight": c.q / total, "rho_server_weight": c.s / total}
    delay_const = energy_const = 0.0
    for present, free, r, tag, t_full, e_full in (
        (c.has_device, key.rho_min is not None, rho_val, "device", c.delay_device, c.energy_device),
        (c.has_server, key.rho_server_min is not None, rho_s_val, "server", c.delay_server, c.energy_server),
    ):
        if not present:
            continue
        d, e = t_full / c.T0, e_full / c.E0
        a = (e * d * d) ** (1.0 / 3.0)
        values.update({f"{tag}_d": d, f"{tag}_e": e, f"{tag}_a": a, f"{tag}_d_rho": d * r, f"{tag}_a_rho": a * r})
        if c.fixed_frequency and not free:
            delay_const += d * r
            energy_const += e * r
    if c.has_link:
        d_min = c.bits * c.u_min / c.T0
        if c.fixed_power:
            delay_const += d_min
            energy_const += c.bits * c.link_joules_per_bit(c.p_max) / c.E0
        else:
            link_c = c.link_power * c.T0 / c.E0
            values.update(link_d_min=d_min, link_beta=c.max_efficiency * d_min, link_c=link_c, link_log_c=math.log(link_c))
    values.update(delay_const=delay_const, energy_const=energy_const,
                  delay_rhs=1.0 - delay_const, energy_rhs=1.0 - energy_const)
    return values, delay_const, energy_const


def _exact_model(cp, c: _Coef, *, fixed_rho=None, phase1=False):
    """The cached model for ``c``'s structure with its Parameters set; (model, delay_const, energy_const)."""
    key = _exact_key(c, phase1)
    model = _cached(key, lambda: _build_exact(cp, key))
    values, delay_const, energy_const = _exact_values(c, key, fixed_rho)
    for name, param in model.params.items():
        param.value = values[name]
    return model, delay_const, energy_const


def _exact_point(c: _Coef, m: _ExactModel, fixed_rho=None):
    """(ρ, f, p, ρ̃, f̃) in physical units from a solved exact model (clipped into the box)."""

    def ratio(expr, lower, present, value, fixed):
        if not (present or value > 0):
            return 1.0
        if expr is None:
            return fixed
        return float(np.clip(float(expr.value), lower, 1.0))

    fixed = fixed_rho if fixed_rho is not None else (1.0, 1.0)
    rho = ratio(m.rho, c.rho_min, c.has_device, c.q, fixed[0])
    rho_s = ratio(m.rho_server, c.rho_server_min, c.has_server, c.s, fixed[1])

    def clock(present, tau, r, delay_full, f_max):
        if not present:
            return 0.0
        if tau is None or r <= 0.0:
            return f_max
        t = float(tau.value) * c.T0  # seconds
        if t <= r * delay_full:
            return f_max
        return float(f_max * r * delay_full / t)

    f = clock(c.has_device, m.tau, rho, c.delay_device, c.f_max)
    f_s = clock(c.has_server, m.tau_server, rho_s, c.delay_server, c.f_max_server)
    if not c.has_link:
        p = 0.0
    elif m.v is None:
        p = c.p_max
    else:
        d_min = c.bits * c.u_min / c.T0
        d = max(d_min, float(m.v.value))
        p = float(min(c.p_max, c.link_power * math.expm1(c.max_efficiency * d_min / d)))
    return rho, f, p, rho_s, f_s


def _budget_multipliers(c: _Coef, delay_con, energy_con):
    total = c.q + c.s
    y_t = float(delay_con.dual_value) if delay_con is not None and delay_con.dual_value is not None else 0.0
    y_e = float(energy_con.dual_value) if energy_con is not None and energy_con.dual_value is not None else 0.0
    return total * max(y_t, 0.0) / c.T0, total * max(y_e, 0.0) / c.E0


def _certificate(prob) -> float:
    """Clarabel's relative duality gap |primal − dual| / max(1, |primal|) (0 if not reported)."""
    extra = getattr(getattr(prob, "solver_stats", None), "extra_stats", None)
    primal = getattr(extra, "obj_val", None)
    dual = getattr(extra, "obj_val_dual", None)
    if primal is None or dual is None:
        return 0.0
    return float(abs(primal - dual) / max(1.0, abs(primal)))


def solve_cvxpy_exact(problem: Problem, scheme: str = "proposed") -> ReferenceResult:
    """Global optimum of (P1) for ``scheme`` by CVXPY + Clarabel on its convex form
    (docs/theory.md#convex-reformulation).

    The variables are ρ, ρ̃, the compute times τ, τ̃ and the uplink seconds per bit u, scaled as
    budget shares: τ/T0, τ̃/T0 and θu/T0 (= (θ u_min/T0)·u/u_min, u_min = 1/r(P_max)), with the energies
    divided by E0 and represented by power and exponential cones whose variables are energy shares
    (see :func:`_build_exact`); unscaled — and even scaled by u_min and the full-clock times — Clarabel
    returned "optimal" points violating the energy budget by up to 600% on wide-range instances. The
    objective is
    max (ρq + ρ̃s)/(q+s), equivalent to min D̂ of (41) since D̂ is strictly decreasing in ρq + ρ̃s.
    The CVXPY problem of each structure (scheme, absent parts) is built once with Parameters and
    re-solved (DPP), so ``seconds`` is CVXPY's per-instance cost on its fast path.

    Status: OPTIMAL when Clarabel reports optimal, INFEASIBLE when it reports (primal) infeasibility —
    the reason code is then computed in closed form with the exact solver's definitions — and
    NOT_CONVERGED for an inaccurate solve, UNRESOLVED (with the pruning lower bounds at full clocks and
    power, and their relative budget excess as ``certificate``) when Clarabel returns no point. ``upper_bound`` is ρq + ρ̃s at the returned
    point, ``certificate`` Clarabel's relative duality gap, the multipliers as in the module docstring.
    """
    cp = _cvxpy()
    start = time.perf_counter()
    spec = scheme_spec(scheme)
    problem = scheme_problem(problem, scheme)
    c = _coefficients(problem, spec)
    m, delay_const, energy_const = _exact_model(cp, c)
    if (m.delay_con is None and delay_const > 1.0) or (m.energy_con is None and energy_const > 1.0):
        sol = _finish(problem, c, _infeasible_point(c), status=Status.INFEASIBLE, reason=_infeasible_reason(c))
        return ReferenceResult(sol, time.perf_counter() - start, 0.0, 0)
    status = _solve(cp, m.prob)
    solver_seconds = _solver_time(m.prob)
    free = [x for x in (m.rho, m.rho_server) if x is not None]
    if status in ("infeasible", "infeasible_inaccurate"):
        sol = _finish(problem, c, _infeasible_point(c), status=Status.INFEASIBLE, reason=_infeasible_reason(c))
    elif any(x.value is None for x in free) or status not in ("optimal", "optimal_inaccurate"):
        point = _infeasible_point(c)
        with jax.enable_x64(True):
            wide = problem.astype(np.float64)
            terms = evaluate(wide.system, wide.model, OperatingPoint(*map(np.float64, point)))
            excess = float(budget_excess(terms, wide.budget))
        sol = _finish(problem, c, point, status=Status.UNRESOLVED, certificate=excess)
    else:
        point = _exact_point(c, m)
        delay_mult, energy_mult = _budget_multipliers(c, m.delay_con, m.energy_con)
        sol = _finish(
            problem,
            c,
            point,
            status=Status.OPTIMAL if status == "optimal" else Status.NOT_CONVERGED,
            upper=point[0] * c.q + point[3] * c.s,
            certificate=_certificate(m.prob),
            delay_mult=delay_mult,
            energy_mult=energy_mult,
        )
    return ReferenceResult(sol, time.perf_counter() - start, solver_seconds, 1)


# ----------------------------------------------------------------------------- the paper's SCA


def _sca_start(cp, c: _Coef, rho0: float):
    """A point feasible for (P1) with ρ, ρ̃ > 0, hence for (P3.1); None when none is found.

    1. The simple start: ρ = max(ρ_min, ρ0), ρ̃ = max(ρ̃_min, ρ0), f = f_max, f̃ = f̃_max, p = P_max.
    2. If it violates a budget: phase I at those ρ, ρ̃ — the clocks and power minimising
       max(T/T0, E/E0) (a convex problem in the variables of :func:`_build_exact`); accepted when the
       point meets both budgets.
    3. Otherwise ρ0 is divided by 1e3 and 1-2 repeated, down to 1e-12.

    Returns (start point, phase-I solves, Clarabel seconds).
    """
    solves, seconds = 0, 0.0
    r0 = rho0
    while r0 >= _RHO0_FLOOR:
        rho = max(c.rho_min, r0) if (c.has_device or c.q > 0) else 1.0
        rho_s = max(c.rho_server_min, r0) if (c.has_server or c.s > 0) else 1.0
        simple = (rho, c.f_max if c.has_device else 0.0, c.p_max if c.has_link else 0.0,
                  rho_s, c.f_max_server if c.has_server else 0.0)
        if c.delay(*simple) <= c.T0 and c.energy(*simple) <= c.E0:
            return simple, solves, seconds
        m, _, _ = _exact_model(cp, c, fixed_rho=(rho, rho_s), phase1=True)
        status = _solve(cp, m.prob)
        solves += 1
        seconds += _solver_time(m.prob)
        if status in ("optimal", "optimal_inaccurate") and m.prob.value is not None and m.prob.value < 1.0:
            point = _exact_point(c, m, fixed_rho=(rho, rho_s))
            if c.delay(*point) <= c.T0 and c.energy(*point) <= c.E0:
                return point, solves, seconds
        if rho <= c.rho_min and rho_s <= c.rho_server_min:
            break  # the ratios are at their lower bounds: nothing left to shrink
        r0 *= _RHO0_SHRINK
    return None, solves, seconds


class _ScaKey(NamedTuple):
    device: bool
    server: bool
    link: bool
    fixed_frequency: bool
    fixed_power: bool
    rho_min: float
    rho_server_min: float


class _ScaModel(NamedTuple):
    prob: Any
    params: dict
    rho: Any
    rho_server: Any
    rho_p: Any  # ρ' (None when the device part is absent)
    rho_server_p: Any
    f_s: Any  # f/f_max (None when absent or pinned)
    f_server_s: Any
    p_s: Any  # p/P_max (None when absent or pinned)
    delay_con: Any
    energy_con: Any


def _build_sca(cp, key: _ScaKey) -> _ScaModel:
    """(P3.k) as a DPP-parametrised CVXPY problem, re-solved with each new local point.

    Variables, scaled by the local point (p^(k), ρ'^(k), ρ̃'^(k)) and the previous clocks f_k, f̃_k so
    that each is 1 there (Clarabel failed on unscaled clocks of 0.1 f_max against energy coefficients
    of 70 E0): ρ, ρ̃; x = ρ'/ρ'_k, x̃ = ρ̃'/ρ̃'_k > 0 (ρ' doubles per iteration while ρ → 0; x stays in
    (0, 2]); φ = f/f_k <= f_max/f_k, φ̃ = f̃/f̃_k, π = p/p_k <= P_max/p_k. Constraints, delays divided by
    T0, energies by E0 (T_d = N/(c f_max), E_d = η φ N f_max²/c and the server's):

    * (45a), slip 1 corrected (Ñ_FLOP in its third term):
      (T_d f_max/(T0 ρ'_k f_k))/(x φ) + θ ln2/(B T0 ln(1 + snr_k π)) + (server alike) <= 1, snr_k = g p_k/(B N0);
    * (50a): (E_d f_k²/(E0 f_max² ρ'_k)) φ²/x + ζ^(k)(p)/E0 + (server alike) <= 1, with ζ^(k) of
      (46)-(47) affine in p: parameters ζ0 = [e(p_k) − e'(p_k) p_k]/E0, ζ1 = e'(p_k) p_k/E0, e(p) = pθ/r(p);
    * (50b): ρ + x/ρ'_k <= 2/ρ'_k (that is ρ − 1/ρ'_k + (ρ' − ρ'_k)/ρ'_k² <= 0), (50c) likewise;
    * (1), (44c)-(44f) and the scheme's pinned variables (f = f_max, f̃ = f̃_max, or p = P_max, folded
      into the coefficients and right-hand sides).

    The objective max (ρq + ρ̃s)/(q+s) has the same maximisers as (P3.k)'s min D̂.
    """
    cons, params = [], {}
    delay_terms, energy_terms = [], []

    P = functools.partial(_parameter, cp, params)

    def ratio(lower, name):
        x = cp.Variable(name=name)
        cons.extend([x >= lower, x <= 1.0])
        return x

    rho = ratio(key.rho_min, "rho")
    rho_s = ratio(key.rho_server_min, "rho_server")

    def part(present, r, tag):
        if not present:
            return None, None
        rp = cp.Variable(pos=True, name=f"{tag}_rho_prime")  # ρ'/ρ'_k
        cons.append(r + P(f"{tag}_inv", nonneg=True) * rp <= P(f"{tag}_two_inv", nonneg=True))  # (50b)/(50c)
        d, e = P(f"{tag}_d", nonneg=True), P(f"{tag}_e", nonneg=True)
        if key.fixed_frequency:
            delay_terms.append(d * cp.inv_pos(rp))
            energy_terms.append(e * cp.inv_pos(rp))
            return rp, None
        fs = cp.Variable(pos=True, name=f"{tag}_f")  # f/f_k
        cons.append(fs <= P(f"{tag}_f_max", nonneg=True))
        delay_terms.append(d * cp.inv_prod(cp.hstack([rp, fs])))
        energy_terms.append(e * cp.quad_over_lin(fs, rp))
        return rp, fs

    rp, fs = part(key.device, rho, "device")
    rtp, fts = part(key.server, rho_s, "server")

    ps = None
    if key.link and not key.fixed_power:
        ps = cp.Variable(pos=True, name="p")  # p/p_k
        cons.append(ps <= P("p_max", nonneg=True))
        # ln(1 + snr_k π) through its hypograph ℓ (keeps the problem DPP)
        ell = cp.Variable(pos=True, name="log_snr")
        cons.append(ell <= cp.log1p(P("snr", nonneg=True) * ps))
        delay_terms.append(P("link_d", nonneg=True) * cp.inv_pos(ell))
        energy_terms.append(P("zeta0") + P("zeta1", nonneg=True) * ps)

    delay_con = energy_con = None
    if delay_terms:
        delay_con = cp.sum(cp.hstack(delay_terms)) <= P("delay_rhs")
        cons.append(delay_con)
    if energy_terms:
        energy_con = cp.sum(cp.hstack(energy_terms)) <= P("energy_rhs")
        cons.append(energy_con)
    objective = P("rho_weight", nonneg=True) * rho + P("rho_server_weight", nonneg=True) * rho_s
    prob = cp.Problem(cp.Maximize(objective), cons)
    return _ScaModel(prob, params, rho, rho_s, rp, rtp, fs, fts, ps, delay_con, energy_con)


def _link_energy_slope(c: _Coef, p: float) -> float:
    """u(p^(k)) of (47): d/dp [pθ/r(p)] = θ/r − pθ g/(B log2²(1 + gp/(BN0)) (BN0 + gp) ln2).

    (47) prints "B log2(1 + gp/(BN0))^2", read as B·[log2(1 + gp/(BN0))]², the derivative of (7).
    """
    snr = p / c.link_power
    log2_term = math.log1p(snr) / LN2
    rate = c.bandwidth * log2_term
    return c.bits / rate - p * c.bits / (c.bandwidth * log2_term**2 * c.link_power * (1.0 + snr) * LN2)


def _sca_model(cp, c: _Coef) -> _ScaModel:
    """The cached (P3.k) model of ``c``'s structure with its static Parameters set."""
    key = _ScaKey(c.has_device, c.has_server, c.has_link, c.fixed_frequency, c.fixed_power,
                  c.rho_min, c.rho_server_min)
    m = _cached(("sca",) + tuple(key), lambda: _build_sca(cp, key))
    total = c.q + c.s
    delay_const = energy_const = 0.0
    if c.has_link and c.fixed_power:
        delay_const = c.bits * c.u_min / c.T0
        energy_const = c.bits * c.link_joules_per_bit(c.p_max) / c.E0
    values = {
        "rho_weight": c.q / total,
        "rho_server_weight": c.s / total,
        "link_d": c.bits * LN2 / (c.bandwidth * c.T0),
        "delay_rhs": 1.0 - delay_const,
        "energy_rhs": 1.0 - energy_const,
    }
    for name, value in values.items():
        if name in m.params:
            m.params[name].value = value
    return m


def _set_local_point(c: _Coef, m: _ScaModel, rho_p, rho_server_p, p, f, f_s):
    """The Parameters of (P3.k) at the local point (p^(k), ρ'^(k), ρ̃'^(k)) and clocks f_k, f̃_k."""
    for tag, local, clock, present, delay_full, energy_full, f_max in (
        ("device", rho_p, f, m.rho_p is not None, c.delay_device, c.energy_device, c.f_max),
        ("server", rho_server_p, f_s, m.rho_server_p is not None, c.delay_server, c.energy_server, c.f_max_server),
    ):
        if present:
            ratio = 1.0 if c.fixed_frequency else clock / f_max  # f_k/f_max
            m.params[f"{tag}_inv"].value = 1.0 / local
            m.params[f"{tag}_two_inv"].value = 2.0 / local
            m.params[f"{tag}_d"].value = delay_full / (c.T0 * local * ratio)
            m.params[f"{tag}_e"].value = energy_full * ratio**2 / (c.E0 * local)
            if f"{tag}_f_max" in m.params:
                m.params[f"{tag}_f_max"].value = 1.0 / ratio
    if m.p_s is not None:
        slope = max(_link_energy_slope(c, p), 0.0)  # >= 0 mathematically; guard rounding
        value = c.bits * c.link_joules_per_bit(p)
        m.params["zeta1"].value = slope * p / c.E0
        m.params["zeta0"].value = (value - slope * p) / c.E0
        m.params["snr"].value = p / c.link_power
        m.params["p_max"].value = c.p_max / p


def solve_cvxpy_sca(
    problem: Problem,
    scheme: str = "proposed",
    *,
    rho0: float = DEFAULT_SCA_RHO0,
    start: OperatingPoint | None = None,
    eps: float = DEFAULT_SCA_EPS,
    max_iters: int = DEFAULT_SCA_MAX_ITERS,
) -> ReferenceResult:
    """The paper's SCA for (P1) (Section V-B), each (P3.k) solved by CVXPY + Clarabel, as printed.

    (P1) becomes (P2) with ρ' and ρ̃' ((45a)-(45d)); iteration k solves the convex (P3.k) built at the
    previous solution's local point (p^(k), ρ'^(k), ρ̃'^(k)): (45a) with slip 1 (docs/theory.md#slip-1) corrected
    (its third term is Ñ_FLOP/(ρ̃' f̃ c̃)), (50a) with the tangent ζ^(k)(p) of (46)-(47), the linearised
    (50b)-(50c), (1) and (44c)-(44f); see :func:`_build_sca` for the scaled form. D̂ is strictly
    decreasing in ρq + ρ̃s (log2 D̂ is affine in it with slope −b/(q+s)), so each (P3.k) maximises
    (ρq + ρ̃s)/(q+s), which has the same maximisers as (P3.k)'s objective.

    Starting point (documented default): ``start`` if given (feasible for (P1), with ρ, ρ̃ > 0 and
    p > 0 where those parts are present), else ρ = max(ρ_min, ``rho0``), ρ̃ = max(ρ̃_min, ``rho0``),
    f = f_max, f̃ = f̃_max, p = P_max; then ρ'^(0) = 1/ρ, ρ̃'^(0) = 1/ρ̃. Because that point is feasible
    for (P1), it is feasible for (P3.1) (the tangent (46) is exact at p^(0), (50b) holds with equality
    at ρ' = ρ'^(0) = 1/ρ), and every later (P3.k) contains the previous solution. When the simple
    point violates a budget, a phase-I convex problem picks the clocks and power minimising
    max(T/T0, E/E0) at those ρ, ρ̃; if that fails too, ρ0 shrinks by 1e3 (down to 1e-12) — see
    :func:`_sca_start`. No start found: status INFEASIBLE with the closed-form reason code.

    Stopping: when log2 D̂ decreases by less than ``eps`` over one iteration (D̂'s relative decrease
    below about ``eps``·ln 2), or after ``max_iters`` iterations (status NOT_CONVERGED). A failed
    (P3.k) solve stops the loop with status NOT_CONVERGED and the last good iterate; a solve that
    Clarabel reports as inaccurate is kept only when its point meets (44a) and (44b) within 1e-8
    relative and is no worse than the previous iterate. The returned point is the best iterate (the
    last one, up to solver noise). Every iterate is feasible for (P1) up to Clarabel's tolerance (the approximations are
    conservative), so the SCA can approach but never beat the global optimum (beyond that
    tolerance). Where the optimum has ρ = 0 (or ρ̃ = 0) the loop converges only geometrically — (50b)
    with ρ >= 0 lets ρ' at most double per iteration — and may need more than 50 iterations.

    The Solution's ``objective_history`` is a float64 NumPy array of log2 D̂ at the start and after each
    iteration (length ``iterations`` + 1); ``certificate`` is the last decrease of log2 D̂;
    ``upper_bound`` is ρq + ρ̃s at the returned point (not a bound: the SCA proves none); the
    multipliers are the duals of (45a) and (50a) in the last (P3.k), converted as in the module
    docstring.
    """
    cp = _cvxpy()
    t_start = time.perf_counter()
    spec = scheme_spec(scheme)
    problem = scheme_problem(problem, scheme)
    c = _coefficients(problem, spec)
    b = _scalar(problem.model.bits_per_weight, "bits_per_weight")
    h = _scalar(problem.model.entropy_bits, "entropy_bits")
    solves, solver_seconds = 0, 0.0

    if start is None:
        point, solves, solver_seconds = _sca_start(cp, c, rho0)
    else:
        point = tuple(_scalar(v, n) for v, n in zip(start, OperatingPoint._fields))
        if c.fixed_frequency:
            point = (point[0], c.f_max, point[2], point[3], c.f_max_server)
        if c.fixed_power:
            point = (point[0], point[1], c.p_max, point[3], point[4])
    if point is None:
        sol = _finish(problem, c, _infeasible_point(c), status=Status.INFEASIBLE, reason=_infeasible_reason(c),
                      iterations=0, history=np.zeros(0))
        return ReferenceResult(sol, time.perf_counter() - t_start, solver_seconds, solves)

    rho, f, p, rho_s, f_s = point
    if (c.has_device and rho <= 0) or (c.has_server and rho_s <= 0) or (c.has_link and p <= 0):
        raise ConfigError("the SCA start needs ρ > 0, ρ̃ > 0 and p > 0 where those parts are present")
    total = c.q + c.s
    rho_p = 1.0 / rho if c.has_device else None
    rho_s_p = 1.0 / rho_s if c.has_server else None
    values = [(rho * c.q + rho_s * c.s) / total]
    points = [point]
    m = _sca_model(cp, c)
    status = Status.NOT_CONVERGED
    delay_mult = energy_mult = 0.0
    decrease = math.inf
    for _ in range(max_iters):
        _set_local_point(c, m, rho_p, rho_s_p, p, f, f_s)
        result = _solve(cp, m.prob, CLARABEL_SCA_SETTINGS)
        solves += 1
        solver_seconds += _solver_time(m.prob)
        if result not in ("optimal", "optimal_inaccurate") or m.rho.value is None:
            break
        rho = float(np.clip(m.rho.value, c.rho_min, 1.0))
        rho_s = float(np.clip(m.rho_server.value, c.rho_server_min, 1.0))
        if m.rho_p is not None:
            rho_p *= float(m.rho_p.value)
        if m.rho_server_p is not None:
            rho_s_p *= float(m.rho_server_p.value)
        if m.f_s is not None:
            f = min(c.f_max, float(m.f_s.value) * f)
        if m.f_server_s is not None:
            f_s = min(c.f_max_server, float(m.f_server_s.value) * f_s)
        if m.p_s is not None:
            p = min(c.p_max, float(m.p_s.value) * p)
        if result != "optimal" and not (
            c.delay(rho, f, p, rho_s, f_s) <= c.T0 * (1 + _SCA_FEAS_TOL)
            and c.energy(rho, f, p, rho_s, f_s) <= c.E0 * (1 + _SCA_FEAS_TOL)
            and (rho * c.q + rho_s * c.s) / total >= values[-1]
        ):
            break  # an inaccurate solve that is infeasible for (P1) or worse than the previous iterate
        points.append((
            rho if (c.has_device or c.q > 0) else 1.0,
            f if c.has_device else 0.0,
            p if c.has_link else 0.0,
            rho_s if (c.has_server or c.s > 0) else 1.0,
            f_s if c.has_server else 0.0,
        ))
        values.append((rho * c.q + rho_s * c.s) / total)
        delay_mult, energy_mult = _budget_multipliers(c, m.delay_con, m.energy_con)
        decrease = b * (values[-1] - values[-2])  # the decrease of log2 D̂ over this iteration
        if decrease < eps:
            status = Status.OPTIMAL
            break
    final = points[int(np.argmax(values))]  # the last iterate, up to solver noise in the last digits
    with jax.enable_x64(True):
        history = np.asarray(
            distortion.log2_distortion_bound(
                np.array([pt[0] for pt in points]), np.array([pt[3] for pt in points]), c.q, c.s, b, h
            ),
            dtype=np.float64,
        )
    sol = _finish(
        problem,
        c,
        final,
        status=status,
        upper=final[0] * c.q + final[3] * c.s,
        certificate=max(decrease, 0.0) if math.isfinite(decrease) else 1.0,
        delay_mult=delay_mult,
        energy_mult=energy_mult,
        iterations=len(points) - 1,
        history=history,
    )
    return ReferenceResult(sol, time.perf_counter() - t_start, solver_seconds, solves)
