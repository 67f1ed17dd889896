"""The paper's successive convex approximation (SCA) of (P1), Section V-B, eqs. (45)-(50), in JAX.

Problem (P2) introduces ρ' and ρ̃' (ρ ≤ 1/ρ', ρ̃ ≤ 1/ρ̃', (45c)-(45d)) so that the delay (45a) is
jointly convex; the SCA replaces the upload energy pθ/r(p) of (45b) by its tangent ζ^(k)(p) (46)-(47)
and 1/ρ', 1/ρ̃' by their tangents (48)-(49) at the local point (p^(k), ρ'^(k), ρ̃'^(k)). The
resulting convex problem (P3.k) is solved, its solution becomes the next local point, and the loop
stops when log2 D̂ decreases by less than ε. Each tangent upper-bounds a concave function, so every
(P3.k) is an inner approximation of (P2): a feasible local point stays feasible and the objective
never increases (the paper's monotonicity claim).

Corrections used here (docs/theory.md#corrections-to-the-paper):
slip 1, the third term of (45a) is Ñ_FLOP/(ρ̃' f̃ c̃) (the paper
prints N_FLOP); slip 2, D̂ is that of (41) with √π·e (the paper's (P3.k) prints √(πe)). Neither
changes the minimiser's form: D̂ of (41) is strictly decreasing in ρq + ρ̃s, so minimising D̂ is
equivalent to maximising the retained fraction (ρq + ρ̃s)/(q + s), which is the (linear) objective
minimised here (its negative); D̂ is evaluated only to report log2 D̂.

Solving (P3.k). Variables are scaled to O(1): z = ρ'/ρ'^(k) and z̃ = ρ̃'/ρ̃'^(k) (so (50b)-(50c)
read ρ ≤ (2 - z)/ρ'^(k), ρ̃ ≤ (2 - z̃)/ρ̃'^(k)), a = f/f_max, ã = f̃/f̃_max, π = p/P_max; delays are
divided by T0, energies by E0, the objective by q + s. Two exact reductions:

* ρ enters (P3.k) only through the objective, (50b) and 0 ≤ ρ ≤ 1, so at an optimum
  ρ = min(1, (2 - z)/ρ'^(k)); restricting z ≥ 2 - ρ'^(k) loses nothing (a smaller z gives the same
  ρ = 1 with a larger delay and energy), so ρ = (2 - z)/ρ'^(k) exactly and (50b), (44c) become the
  box max(2 - ρ'^(k), z_min) ≤ z ≤ 2 - ρ_min ρ'^(k). Likewise ρ̃.
* The minimisation runs over the logarithms of (z, z̃, a, ã, π): every term of (45a), (50a) is then
  an exponential of an affine function or θ/r(P_max e^x) (convex in x), and the objective
  -(2 - e^x)/ρ'^(k) is convex, so (P3.k) stays convex, the box is a box, and iterates never touch the
  singular boundaries f = 0, p = 0, ρ' = 0 (lower bounds 1e-12 of a, π and 1e-3 of z).

The two remaining constraints (45a) and (50a) are handled by an augmented-Lagrangian method
(Powell-Hestenes-Rockafellar): each subproblem min_x f_0(x) + Σ_j (max(0, λ_j + μ f_j(x))² - λ_j²)/(2μ)
over the box is solved by a projected Newton method (Bertsekas) with exact derivatives (every term
is c·exp(w·x), so gradients and Hessians are closed-form), then λ_j <- max(0, λ_j + μ f_j); μ starts
at ``al_penalty0`` and grows tenfold (up to ``al_penalty_max``) whenever ALGENCAN's residual
max_j |max(f_j, -λ_j/μ)| did not shrink by the factor ``al_decrease``; the AL ends when that residual
is below ``al_tol`` (or after ``al_iters`` updates). These constants, the Newton solver's and the start
rule's are the fields of :class:`SCAOptions` (defaults 1e3, 1e8, 0.01, 1e-12, 30). Multipliers and iterates are
warm-started across SCA iterations. The three nested loops (SCA, AL, Newton) run as one flat
``lax.while_loop`` doing one Newton step per pass, so a vmapped batch costs its largest
per-instance number of Newton steps, not the product of per-loop maxima (nested solver loops, e.g.
jaxopt's LBFGSB inside the AL, compile many times slower).

Feasibility restoration. An AL solution may violate (45a) or (50a) by its tolerance. Each SCA
iterate is mapped to a (P1) point (ρ, f, p, ρ̃, f̃), evaluated with the original delay (10) and
energy (11), and, if it is not 64 machine epsilons inside T0 and E0, the free parts of ρ and ρ̃
(above the scheme's lower bounds) are scaled down by the one factor that meets both budgets (T and
E are affine in ρ, ρ̃ at fixed f, p, f̃). The returned point therefore satisfies T ≤ T0, E ≤ E0
and every box (up to rounding of the final evaluation, far below 1e-9 relative). An iterate that
cannot be restored (its upload or pinned parts alone exceed a budget) is not accepted: the previous
feasible point is kept.

Starting point (default). For each energy price ν on a log grid (``SCAOptions.price_points`` values spanning every price at
which a clock leaves its maximum, plus the grid's best price at κ = 0 refined by golden section),
each processor runs at the clock that minimises delay + ν·energy (f = f_max/max(1, (ν/ν_d)^(1/3)),
ν_d = 1/(2ηφ f_max³); f̃ likewise), the ratios are ρ = ρ_min + κ(1 - ρ_min) and
ρ̃ = ρ̃_min + κ(1 - ρ̃_min), and the transmit power is the least that meets T0 (P_max for
``fixed-power``); the largest feasible κ is found by bisection (feasibility is monotone in κ) and
the largest κ over the prices wins. The SCA then starts at (p^(1), ρ'^(1), ρ̃'^(1)) = (p, 1/ρ, 1/ρ̃)
(ρ floored at 1e-9 when the start is at κ = 0). A user's ``start`` replaces it when it is feasible
after projection onto the boxes and restoration.

Infeasibility. The paper's SCA needs a feasible start (an infeasible local point may give an empty
(P3.1), and the inner approximation then has nothing to improve), so the verdict comes from the
start rule at κ = 0: an instance is reported INFEASIBLE when no price makes the pruning lower bounds
meet both budgets. For every scheme without a pinned ratio this test is exact: at ρ = ρ̃ = 0 only
the upload remains, whose energy grows with p, so the least power meeting T0 decides. For
``device-pruning-only`` / ``server-pruning-only`` it is exact up to the golden-section refinement of
the pinned part's clock. No verdict of :func:`~laimco_jax.solvers.exact.solve_exact` is used
(tests cross-check the two).

The returned :class:`~laimco_jax.solvers.solution.Solution` has: status OPTIMAL when the stopping
rule (decrease of log2 D̂ below ε, the last AL converged) was met — a stationary point of (P2),
*not* a certified global optimum — NOT_CONVERGED when ``max_iters`` ran out first or the last AL did
not converge, INFEASIBLE as above, UNRESOLVED if the returned point misses a budget when re-evaluated
by :func:`~laimco_jax.system.evaluate` (the restored points keep 64 ulps of room, so this flags a
numerical failure) or if the infeasible verdict's point meets both; ``certificate`` = the last
decrease of log2 D̂ [bits] (the stopping quantity), and for INFEASIBLE and UNRESOLVED the returned
point's relative budget excess (a measure, not a proof: use ``solve_exact`` for one); ``upper_bound`` = q + s (the SCA proves no tighter bound; use ``solve_exact``
for one); the multipliers of (45a) and (50a) of the last (P3.k) in the units of Solution
(parameters per second / per joule; at a converged SCA they are those of (P1)); ``iterations`` =
outer SCA iterations; ``objective_history`` = log2 D̂ at the start (index 0) and after each
iteration (index k), padded with the last value to ``max_iters + 1`` entries. When a part's optimal
ratio is 0, ρ' -> ∞ and the SCA approaches it only gradually (ρ' at most doubles per iteration,
and in practice far less): such instances often end NOT_CONVERGED slightly below the optimum.
"""

from __future__ import annotations

import functools
import math
from typing import Any, NamedTuple

import chex
import jax
import jax.numpy as jnp
import numpy as np

from laimco_jax import distortion
from laimco_jax.params import Problem
from laimco_jax.solvers.convex_form import ConvexForm, convex_form, slowdown
from laimco_jax.solvers.exact import infeasible_reason
from laimco_jax.solvers.numerics import (
    broadcast_leaves, cbrt, golden_section, projected_newton_step, safe_div, tolerance,
)
from laimco_jax.solvers.schemes import SchemeSpec, scheme_problem, scheme_spec
from laimco_jax.solvers.solution import (
    InfeasibleReason, Solution, Status, budget_excess, budget_margin, found_point, make_solution,
)
from laimco_jax.system import LN2, OperatingPoint, evaluate

__all__ = ["solve_sca", "SCAOptions", "DEFAULT_MAX_ITERS", "DEFAULT_EPS"]

DEFAULT_MAX_ITERS = 100  # outer SCA iterations
DEFAULT_EPS = 1e-9  # stopping threshold ε on the decrease of log2 D̂ [bits]

_LOG_FLOOR = math.log(1e-12)  # lower bound of log a, log ã, log π
_Z_FLOOR = 1e-3  # lower bound of z = ρ'/ρ'^(k)
_RHO_START_FLOOR = 1e-9  # smallest ρ, ρ̃ whose reciprocal starts the SCA
_NEAR_ACTIVE = 1e-4  # constraint value above which the penalty's curvature is kept


class SCAOptions(NamedTuple):
    """Tuning constants of :func:`solve_sca`'s start rule and inner solvers (module docstring).

    Passed as ``solve_sca(..., options=SCAOptions(...))``; static under ``jit`` (hashable: another
    value compiles another program). The defaults are those of every test and figure.
    """

    price_points: int = 48  # energy prices ν on the start rule's log grid
    bisection_steps: int = 60  # bisection steps on κ, and golden-section steps on ν at κ = 0
    al_iters: int = 30  # most augmented-Lagrangian (AL) multiplier updates per (P3.k)
    al_tol: float = 1e-12  # AL residual (fractions of T0, E0) that ends an AL; floored by the dtype
    al_decrease: float = 0.01  # μ grows tenfold when the residual did not shrink by this factor
    al_penalty0: float = 1e3  # μ at the start of each AL
    al_penalty_max: float = 1e8  # largest μ
    newton_iters: int = 60  # most projected Newton steps per AL subproblem
    newton_tol: float = 1e-12  # projected-gradient norm that ends a projected Newton solve
    newton_ridge: float = 1e-12  # relative ridge added to the reduced Hessian
    active_eps: float = 1e-6  # widest ε of Bertsekas' active set
    armijo: float = 1e-4  # Armijo sufficient-decrease fraction
    armijo_steps: int = 12  # Armijo trial steps 1, 1/4, ..., 4^-(armijo_steps - 1)


_COUNTS = ("price_points", "bisection_steps", "al_iters", "newton_iters", "armijo_steps")


def _check_options(options: SCAOptions) -> None:
    """Raise ValueError unless ``options`` is an SCAOptions of integer counts >= 1 and values > 0."""
    if not isinstance(options, SCAOptions):
        raise ValueError(f"options = {options!r} must be an SCAOptions")
    for name, value in options._asdict().items():
        count = name in _COUNTS
        if not (isinstance(value, int) and value >= 1 if count else value > 0):
            raise ValueError(f"options.{name} = {value!r} must be {'an integer >= 1' if count else '> 0'}")


# ----------------------------------------------------------------------------- scaled instance


class _Instance(NamedTuple):
    """One instance of (P1) in the scaled units of the module docstring (all entries scalars)."""

    value_device: Any  # q/(q+s)
    value_server: Any  # s/(q+s)
    delay_device: Any  # N/(c f_max T0): device delay at ρ = 1, f = f_max, over T0
    energy_device: Any  # η φ N f_max²/(c E0)
    delay_server: Any  # Ñ/(c̃ f̃_max T0)
    energy_server: Any  # η̃ φ̃ Ñ f̃_max²/(c̃ E0)
    upload_delay: Any  # θ ln2/(B T0): upload delay is this over ln(1 + snr)
    upload_energy: Any  # P_max θ ln2/(B E0): upload energy is this times π over ln(1 + snr)
    snr_max: Any  # g P_max/(B N0)
    free_price_device: Any  # ν_d E0/T0 = E0/(2 η φ f_max³ T0): price above which f < f_max
    free_price_server: Any
    rho_min: Any
    rho_server_min: Any
    log2_distortion_pruned: Any  # log2 D̂ of (41) at ρ = ρ̃ = 0
    bits_per_weight: Any  # b: log2 D̂ = log2_distortion_pruned - b (ρq + ρ̃s)/(q + s)


def _instance(form: ConvexForm, problem: Problem) -> _Instance:
    """Scaled coefficients of ``problem`` (already re-split for its scheme) from its convex form
    (:func:`~laimco_jax.solvers.convex_form.convex_form`), broadcast to one shape."""
    t0, e0 = form.delay_budget_s, form.energy_budget_j
    total = form.value_device + form.value_server
    p_max, model = problem.system.p_max_w, problem.model
    upload_delay = form.bits * LN2 / (form.bandwidth_hz * t0)
    return broadcast_leaves(_Instance(
        form.value_device / total, form.value_server / total,
        form.delay_device_s / t0, form.energy_device_j / e0, form.delay_server_s / t0, form.energy_server_j / e0,
        upload_delay, form.bits * LN2 * p_max / (form.bandwidth_hz * e0), p_max / form.link_power_w,
        form.free_price_device * e0 / t0, form.free_price_server * e0 / t0, form.rho_min, form.rho_server_min,
        distortion.log2_distortion_bound(0.0, 0.0, form.value_device, form.value_server,
                                         model.bits_per_weight, model.entropy_bits),
        model.bits_per_weight,
    ), promote=True)


def _upload_delay(inst: _Instance, power):
    """θ/(r(p) T0), eq. (6) scaled, at π = p/P_max."""
    return inst.upload_delay / jnp.log1p(inst.snr_max * power)


def _upload_energy(inst: _Instance, power):
    """pθ/(r(p) E0), eq. (7) scaled, at π = p/P_max > 0."""
    return inst.upload_energy * power / jnp.log1p(inst.snr_max * power)


def _upload_energy_slope(inst: _Instance, power):
    """u(p^(k)) of eq. (47) scaled: d/dπ of pθ/(r(p) E0), = θ/r - pθ g/(B log2²(1+snr)(BN0+gp) ln2)."""
    snr = inst.snr_max * power
    log_snr = jnp.log1p(snr)
    return inst.upload_energy * (1.0 / log_snr - snr / ((1.0 + snr) * log_snr**2))


# ----------------------------------------------------------------------------- (P3.k)


class _Local(NamedTuple):
    """The local point of iteration k: π^(k) = p^(k)/P_max, ρ'^(k), ρ̃'^(k)."""

    power: Any
    rho_aux: Any
    rho_server_aux: Any


# The variables of (P3.k) form one vector x of logs, in this order (indices below):
# z = ρ'/ρ'^(k), z̃ = ρ̃'/ρ̃'^(k), a = f/f_max, ã = f̃/f̃_max, π = p/P_max.
_Z, _Z_SERVER, _CLOCK, _CLOCK_SERVER, _POWER = range(5)

# Every term of (P3.k) except the upload delay is c·exp(w·x): its exponent rows w, and the function
# each term belongs to (0: objective, 1: (45a), 2: (50a)).
_EXPONENTS = np.array(
    [
        [1, 0, 0, 0, 0],  # objective: (q/(q+s)) z/ρ'^(k)          [ρ = (2 - z)/ρ'^(k)]
        [0, 1, 0, 0, 0],  # objective: (s/(q+s)) z̃/ρ̃'^(k)
        [-1, 0, -1, 0, 0],  # (45a): N/(ρ' f c T0)
        [0, -1, 0, -1, 0],  # (45a): Ñ/(ρ̃' f̃ c̃ T0)   (slip 1: Ñ_FLOP, not N_FLOP)
        [-1, 0, 2, 0, 0],  # (50a): η φ N f²/(ρ' c E0)
        [0, -1, 0, 2, 0],  # (50a): η̃ φ̃ Ñ f̃²/(ρ̃' c̃ E0)
        [0, 0, 0, 0, 1],  # (50a): u(p^(k)) p/E0, the slope part of ζ^(k)(p) (46)
    ],
    dtype=np.float64,
)
_MEMBERSHIP = np.array([[1, 1, 0, 0, 0, 0, 0], [0, 0, 1, 1, 0, 0, 0], [0, 0, 0, 0, 1, 1, 1]], np.float64)


class _Subproblem(NamedTuple):
    """(P3.k) in scaled log variables: f_i(x) = constant_i + Σ_{terms of i} coef·exp(w·x), plus the
    upload delay θ/(r(p) T0) in (45a). Minimise f_0 subject to f_1 ≤ 0, f_2 ≤ 0 and the box."""

    coefficients: Any  # (7,), one per row of _EXPONENTS
    constants: Any  # (3,)
    upload_delay: Any  # θ ln2/(B T0)
    snr_max: Any
    lower: Any  # (5,) box of x
    upper: Any


def _subproblem(inst: _Instance, local: _Local, spec: SchemeSpec) -> _Subproblem:
    """Coefficients of (P3.k) at the local point; the box encodes (50b)-(50c), (44c)-(44f), (1)."""
    inv_dev, inv_srv = 1.0 / local.rho_aux, 1.0 / local.rho_server_aux
    slope = _upload_energy_slope(inst, local.power)
    coefficients = jnp.stack([
        inst.value_device * inv_dev, inst.value_server * inv_srv,
        inst.delay_device * inv_dev, inst.delay_server * inv_srv,
        inst.energy_device * inv_dev, inst.energy_server * inv_srv, slope,
    ])
    constants = jnp.stack([
        -2.0 * (inst.value_device * inv_dev + inst.value_server * inv_srv),
        -jnp.ones_like(slope),
        _upload_energy(inst, local.power) - slope * local.power - 1.0,
    ])

    def z_bounds(rho_aux, rho_min):
        low = jnp.maximum(2.0 - rho_aux, _Z_FLOOR)  # ρ ≤ 1 (see the module docstring)
        return low, jnp.maximum(2.0 - rho_min * rho_aux, low)  # ρ ≥ ρ_min

    (zd_low, zd_high), (zs_low, zs_high) = (
        z_bounds(local.rho_aux, inst.rho_min), z_bounds(local.rho_server_aux, inst.rho_server_min)
    )
    floor = jnp.full_like(slope, math.exp(_LOG_FLOOR))
    one = jnp.ones_like(slope)
    clock_low = one if spec.fixed_frequency else floor
    power_low = one if spec.fixed_power else floor
    lower = jnp.log(jnp.stack([zd_low, zs_low, clock_low, clock_low, power_low]))
    upper = jnp.log(jnp.stack([zd_high, zs_high, one, one, one]))
    return _Subproblem(coefficients, constants, inst.upload_delay, inst.snr_max, lower, upper)


def _terms(sub: _Subproblem, x):
    """The exponential terms c·exp(w·x) (..., 7) and the upload delay U = θ/(r(p) T0) (...) at x
    (..., 5)."""
    terms = sub.coefficients * jnp.exp(x @ jnp.asarray(_EXPONENTS.T, x.dtype))
    return terms, sub.upload_delay / jnp.log1p(sub.snr_max * jnp.exp(x[..., _POWER]))


def _values(sub: _Subproblem, x):
    """f_0 (objective), f_1 ((45a)), f_2 ((50a)) at x (..., 5), shape (..., 3)."""
    terms, upload = _terms(sub, x)
    return (sub.constants + terms @ jnp.asarray(_MEMBERSHIP.T, x.dtype)
            + jnp.asarray([0.0, 1.0, 0.0], x.dtype) * upload[..., None])


def _augmented_lagrangian(sub: _Subproblem, multipliers, penalty, x):
    """PHR augmented Lagrangian f_0 + Σ_j (max(0, λ_j + μ f_j)² - λ_j²)/(2μ) at x (..., 5)."""
    values = _values(sub, x)
    shifted = jnp.maximum(0.0, multipliers + penalty * values[..., 1:])
    return values[..., 0] + jnp.sum(shifted**2 - multipliers**2, axis=-1) / (2.0 * penalty)


def _augmented_lagrangian_model(sub: _Subproblem, multipliers, penalty, x):
    """The augmented Lagrangian, its gradient and a generalised Hessian at x, in closed form.

    With term weights ω_t = 1 (objective) or max(0, λ_j + μ f_j) (constraint j), the gradient is
    Σ_t ω_t c_t e^(w_t·x) w_t and the Hessian Σ_t ω_t c_t e^(w_t·x) w_t w_tᵀ, plus μ ∇f_j ∇f_jᵀ for
    each constraint with λ_j + μ f_j > 0 -- or within _NEAR_ACTIVE of its bound, so that a Newton
    step from a point on the boundary (λ = 0) does not cross it blindly -- plus the upload delay's
    derivatives in log π: U' = -U σ/L, U'' = U σ (2σ/L - (1 - σ))/L (L = ln(1 + snr), σ = snr/(1 + snr)).
    (Small matrix products, not broadcasts: XLA on CPU runs them several times faster.)
    """
    dtype = x.dtype
    w = jnp.asarray(_EXPONENTS, dtype)
    member = jnp.asarray(_MEMBERSHIP, dtype)
    terms, upload = _terms(sub, x)
    values = sub.constants + member @ terms + jnp.asarray([0.0, 1.0, 0.0], dtype) * upload
    shifted = jnp.maximum(0.0, multipliers + penalty * values[1:])
    value = values[0] + jnp.sum(shifted**2 - multipliers**2) / (2.0 * penalty)
    snr = sub.snr_max * jnp.exp(x[_POWER])
    log_snr = jnp.log1p(snr)
    sigma = snr / (1.0 + snr)
    upload_slope = -upload * sigma / log_snr
    upload_curvature = upload * sigma * (2.0 * sigma / log_snr - (1.0 - sigma)) / log_snr
    power_axis = jnp.asarray(np.eye(5)[_POWER], dtype)
    grads = (member[1:] * terms) @ w + jnp.asarray([[1.0], [0.0]], dtype) * (upload_slope * power_axis)
    weights = (jnp.concatenate([jnp.ones((1,), dtype), shifted]) @ member) * terms
    grad = weights @ w + shifted[0] * upload_slope * power_axis
    on = ((shifted > 0) | (values[1:] > -_NEAR_ACTIVE)).astype(dtype) * penalty
    hessian = (
        (w * weights[:, None]).T @ w
        + jnp.outer(power_axis, power_axis) * (shifted[0] * upload_curvature)
        + (grads * on[:, None]).T @ grads
    )
    return value, grad, hessian


def _ratios(local: _Local, x):
    """ρ = (2 - z)/ρ'^(k) and ρ̃ = (2 - z̃)/ρ̃'^(k): (50b)-(50c) held with equality."""
    return (2.0 - jnp.exp(x[_Z])) / local.rho_aux, (2.0 - jnp.exp(x[_Z_SERVER])) / local.rho_server_aux


# ----------------------------------------------------------------------------- (P1) points


class _Point(NamedTuple):
    """A (P1) point in scaled units: ρ, ρ̃, a = f/f_max, ã = f̃/f̃_max, π = p/P_max."""

    rho: Any
    rho_server: Any
    clock: Any
    clock_server: Any
    power: Any


def _delay_energy(inst: _Instance, pt: _Point, rho, rho_server):
    """T/T0 and E/E0 of eqs. (10), (11) at the clocks and power of ``pt`` and ratios (ρ, ρ̃)."""
    delay = (rho * inst.delay_device / pt.clock + _upload_delay(inst, pt.power)
             + rho_server * inst.delay_server / pt.clock_server)
    energy = (rho * inst.energy_device * pt.clock**2 + _upload_energy(inst, pt.power)
              + rho_server * inst.energy_server * pt.clock_server**2)
    return delay, energy


def _restore(inst: _Instance, pt: _Point):
    """Scale the free parts of ρ, ρ̃ down until T ≤ T0 and E ≤ E0 (affine in ρ, ρ̃ at fixed clocks).

    Returns the restored point and whether it is feasible (the pinned parts and the upload alone
    fit both budgets).
    """
    keep = 1.0 - budget_margin(pt.rho.dtype)
    fixed = _delay_energy(inst, pt, inst.rho_min, inst.rho_server_min)
    total = _delay_energy(inst, pt, pt.rho, pt.rho_server)

    def room(budget_fixed, budget_total):
        left = keep - budget_fixed
        return safe_div(left, jnp.maximum(budget_total - budget_fixed, 0.0), jnp.inf), left >= 0

    (scale_t, ok_t), (scale_e, ok_e) = room(fixed[0], total[0]), room(fixed[1], total[1])
    scale = jnp.clip(jnp.minimum(scale_t, scale_e), 0.0, 1.0)
    restored = pt._replace(
        rho=inst.rho_min + scale * (pt.rho - inst.rho_min),
        rho_server=inst.rho_server_min + scale * (pt.rho_server - inst.rho_server_min),
    )
    return restored, ok_t & ok_e


def _retained(inst: _Instance, pt: _Point):
    """(ρq + ρ̃s)/(q + s)."""
    return inst.value_device * pt.rho + inst.value_server * pt.rho_server


# ----------------------------------------------------------------------------- default start


def _start_at_price(inst: _Instance, price, kappa, spec: SchemeSpec):
    """The start rule at energy price ν (scaled) and common pruning fraction κ: point and feasibility.

    Clocks minimise delay + ν·energy per FLOP; the transmit power is the least that meets T0
    (P_max for ``fixed-power``).
    """

    def clock(free_price):
        return 1.0 / slowdown(cbrt(price / free_price), 1.0, spec.fixed_frequency)

    rho = inst.rho_min + kappa * (1.0 - inst.rho_min)
    rho_server = inst.rho_server_min + kappa * (1.0 - inst.rho_server_min)
    a, a_server = clock(inst.free_price_device), clock(inst.free_price_server)
    keep = 1.0 - budget_margin(price.dtype)
    # Aim one margin below the test, so that rounding cannot push the delay above it.
    left = keep - budget_margin(price.dtype) - rho * inst.delay_device / a - rho_server * inst.delay_server / a_server
    if spec.fixed_power:
        power = jnp.ones_like(price)
    else:
        # ln(1 + snr_max π) ≥ θ ln2/(B T0) / left; the exponent is capped where π > 1 anyway.
        exponent = jnp.minimum(inst.upload_delay / jnp.where(left > 0, left, 1.0), 80.0)
        needed = jnp.expm1(exponent) / inst.snr_max
        power = jnp.where(inst.upload_delay > 0, jnp.clip(needed, math.exp(_LOG_FLOOR), 1.0), 1.0)
    pt = _Point(rho, rho_server, a, a_server, power)
    delay, energy = _delay_energy(inst, pt, rho, rho_server)
    violation = jnp.maximum(delay, energy) - keep
    feasible = (left > 0) & (violation <= 0)
    return pt, feasible, jnp.where(left > 0, violation, jnp.inf)


def _default_start(inst: _Instance, spec: SchemeSpec, options: SCAOptions):
    """The start rule of the module docstring: the point and whether it is feasible.

    Every price of a log grid, plus the grid's least-violating price at κ = 0 refined by golden
    section (it matters only when a ratio is pinned: with ρ_min = ρ̃_min = 0 nothing is computed at
    κ = 0), gets its largest feasible κ by bisection; the largest κ wins.
    """
    low = 0.5 * jnp.minimum(inst.free_price_device, inst.free_price_server)
    high = 1e9 * jnp.maximum(inst.free_price_device, inst.free_price_server)
    grid = jnp.log(low) + jnp.linspace(0.0, 1.0, options.price_points, dtype=low.dtype) * (jnp.log(high) - jnp.log(low))

    def violation_at_zero(log_price):
        return _start_at_price(inst, jnp.exp(log_price), jnp.zeros_like(log_price), spec)[2]

    nearest = jnp.argmin(violation_at_zero(grid))
    refined = golden_section(
        violation_at_zero, grid[jnp.maximum(nearest - 1, 0)], grid[jnp.minimum(nearest + 1, options.price_points - 1)],
        options.bisection_steps,
    )
    prices = jnp.exp(jnp.append(grid, refined))
    zero, one = jnp.zeros_like(prices), jnp.ones_like(prices)

    def bisect(_, bracket):
        lo, hi = bracket
        mid = 0.5 * (lo + hi)
        ok = _start_at_price(inst, prices, mid, spec)[1]
        return jnp.where(ok, mid, lo), jnp.where(ok, hi, mid)

    all_in = _start_at_price(inst, prices, one, spec)[1]
    kappa = jnp.where(all_in, 1.0, jax.lax.fori_loop(0, options.bisection_steps, bisect, (zero, one))[0])
    feasible = _start_at_price(inst, prices, zero, spec)[1]
    best = jnp.argmax(jnp.where(feasible, kappa, -1.0))
    return _start_at_price(inst, prices[best], kappa[best], spec)[0], feasible[best]


def _user_start(inst: _Instance, start: _Point, spec: SchemeSpec) -> _Point:
    """A user's start projected onto the scheme's box (pinned clocks or power set to their maximum)."""
    floor = math.exp(_LOG_FLOOR)
    clip = lambda v: jnp.clip(v, floor, 1.0)  # noqa: E731
    ones = jnp.ones_like(inst.snr_max)
    return _Point(
        rho=jnp.clip(start.rho, inst.rho_min, 1.0),
        rho_server=jnp.clip(start.rho_server, inst.rho_server_min, 1.0),
        clock=ones if spec.fixed_frequency else clip(start.clock),
        clock_server=ones if spec.fixed_frequency else clip(start.clock_server),
        power=ones if spec.fixed_power else clip(start.power),
    )


# ----------------------------------------------------------------------------- the SCA loop


class _State(NamedTuple):
    """Where one instance stands: SCA iteration k, AL update j of (P3.k), Newton step i of that AL.

    The three nested loops run as one flat loop (one Newton step per pass, then an AL update when the
    Newton solve ends, then an SCA update when the AL ends), so that a vmapped batch costs the
    largest per-instance *total* of Newton steps, not the product of the per-loop maxima.
    """

    local: _Local  # local point of the current (P3.k)
    x: Any  # (5,) current iterate of the AL subproblem
    multipliers: Any  # λ of (45a), (50a) (scaled), warm-started across SCA iterations
    penalty: Any  # μ
    residual: Any  # max_j |max(f_j, -λ_j/μ)| after the previous AL update (for the growth of μ)
    newton_steps: Any  # i
    al_updates: Any  # j
    iteration: Any  # k, SCA iterations done
    point: _Point  # incumbent: the last restorable SCA iterate (or the start)
    decrease: Any  # last decrease of log2 D̂ [bits]
    settled: Any  # the last AL met its tolerances (rather than running out of updates)
    history: Any  # log2 D̂ at the start and after each SCA iteration
    done: Any


def _log2_distortion(inst: _Instance, pt: _Point):
    """log2 D̂ of (41) at ``pt`` (affine in the retained fraction, slope -b)."""
    return inst.log2_distortion_pruned - inst.bits_per_weight * _retained(inst, pt)


def _initial_state(inst: _Instance, start: _Point, feasible, max_iters: int, options: SCAOptions) -> _State:
    """The SCA at a start: local point (p, 1/ρ, 1/ρ̃) (ρ, ρ̃ floored at 1e-9); done if infeasible."""
    local = _Local(
        power=start.power,
        rho_aux=1.0 / jnp.maximum(start.rho, _RHO_START_FLOOR),
        rho_server_aux=1.0 / jnp.maximum(start.rho_server, _RHO_START_FLOOR),
    )
    zero = jnp.zeros_like(start.power)
    value = _log2_distortion(inst, start)
    return _State(
        local=local,
        x=jnp.stack([zero, zero, jnp.log(start.clock), jnp.log(start.clock_server), jnp.log(start.power)]),
        multipliers=jnp.zeros((2,), zero.dtype),
        penalty=jnp.full_like(zero, options.al_penalty0),
        residual=jnp.full_like(zero, jnp.inf),
        newton_steps=jnp.asarray(0),
        al_updates=jnp.asarray(0),
        iteration=jnp.asarray(0),
        point=start,
        decrease=jnp.full_like(zero, jnp.inf),
        settled=jnp.asarray(True),
        history=jnp.full((max_iters + 1,), value),
        done=~feasible,
    )


def _sca_update(inst: _Instance, eps, max_iters: int, options: SCAOptions, s: _State, x, settled) -> _State:
    """End of SCA iteration k at the solution x of (P3.k): restore, accept, move the local point."""
    rho, rho_server = _ratios(s.local, x)
    candidate = _Point(
        rho=jnp.clip(rho, inst.rho_min, 1.0),
        rho_server=jnp.clip(rho_server, inst.rho_server_min, 1.0),
        clock=jnp.exp(x[_CLOCK]),
        clock_server=jnp.exp(x[_CLOCK_SERVER]),
        power=jnp.exp(x[_POWER]),
    )
    restored, ok = _restore(inst, candidate)
    point = jax.tree_util.tree_map(lambda new, old: jnp.where(ok, new, old), restored, s.point)
    value = _log2_distortion(inst, point)
    decrease = s.history[s.iteration] - value
    return s._replace(
        local=_Local(  # p^(k+1), ρ'^(k+1) = z ρ'^(k), ρ̃'^(k+1) = z̃ ρ̃'^(k)
            power=jnp.exp(x[_POWER]),
            rho_aux=jnp.exp(x[_Z]) * s.local.rho_aux,
            rho_server_aux=jnp.exp(x[_Z_SERVER]) * s.local.rho_server_aux,
        ),
        x=x.at[_Z].set(0.0).at[_Z_SERVER].set(0.0),  # z = 1: the solution itself
        penalty=jnp.full_like(s.penalty, options.al_penalty0),
        residual=jnp.full_like(s.residual, jnp.inf),
        newton_steps=jnp.zeros_like(s.newton_steps),
        al_updates=jnp.zeros_like(s.al_updates),
        iteration=s.iteration + 1,
        point=point,
        decrease=decrease,
        settled=settled,
        history=s.history.at[s.iteration + 1].set(value),
        done=(decrease < eps) | (s.iteration + 1 >= max_iters),
    )


def _step(inst: _Instance, eps, spec: SchemeSpec, max_iters: int, options: SCAOptions, s: _State) -> _State:
    """One pass: a Newton step on the AL of (P3.k); an AL update if the Newton solve ended; an SCA
    update if the AL ended (residual within tolerance, or out of updates)."""
    sub = _subproblem(inst, s.local, spec)
    x, newton_over = projected_newton_step(
        functools.partial(_augmented_lagrangian, sub, s.multipliers, s.penalty),
        functools.partial(_augmented_lagrangian_model, sub, s.multipliers, s.penalty),
        s.x, sub.lower, sub.upper,
        tol=options.newton_tol, ridge=options.newton_ridge, active_eps=options.active_eps, armijo=options.armijo,
        steps=options.armijo_steps,
    )
    newton_over = newton_over | (s.newton_steps + 1 >= options.newton_iters)
    c = _values(sub, x)[1:]
    # ALGENCAN's residual max_j |max(f_j, -λ_j/μ)|: feasibility and complementarity at once.
    residual = jnp.max(jnp.abs(jnp.maximum(c, -s.multipliers / s.penalty)))
    grow = residual > options.al_decrease * s.residual
    after_al = s._replace(
        x=x,
        multipliers=jnp.maximum(0.0, s.multipliers + s.penalty * c),
        penalty=jnp.where(grow, jnp.minimum(10.0 * s.penalty, options.al_penalty_max), s.penalty),
        residual=residual,
        newton_steps=jnp.zeros_like(s.newton_steps),
        al_updates=s.al_updates + 1,
    )
    settled = residual <= tolerance(options.al_tol, c.dtype)
    al_over = newton_over & (settled | (s.al_updates + 1 >= options.al_iters))
    after_sca = _sca_update(inst, eps, max_iters, options, after_al, x, settled)
    after_newton = s._replace(x=x, newton_steps=s.newton_steps + 1)
    pick = lambda cond, a, b: jax.tree_util.tree_map(lambda u, v: jnp.where(cond, u, v), a, b)  # noqa: E731
    return pick(al_over, after_sca, pick(newton_over, after_al, after_newton))


class _Outcome(NamedTuple):
    point: _Point
    feasible: Any
    converged: Any
    multipliers: Any
    decrease: Any
    iterations: Any
    history: Any


def _solve_one(inst: _Instance, start: _Point | None, eps, spec: SchemeSpec, max_iters: int,
               options: SCAOptions) -> _Outcome:
    """The SCA for one instance (scalar fields); vmapped by :func:`solve_sca`."""
    default, feasible = _default_start(inst, spec, options)
    if start is not None:
        start, user_ok = _restore(inst, _user_start(inst, start, spec))
        start = jax.tree_util.tree_map(lambda u, d: jnp.where(user_ok, u, d), start, default)
        feasible = feasible | user_ok
    else:
        start = default
    state = jax.lax.while_loop(
        lambda s: ~s.done,
        functools.partial(_step, inst, eps, spec, max_iters, options),
        _initial_state(inst, start, feasible, max_iters, options),
    )
    last = state.history[state.iteration]
    history = jnp.where(jnp.arange(max_iters + 1) > state.iteration, last, state.history)
    return _Outcome(
        point=state.point,
        feasible=feasible,
        converged=feasible & (state.decrease < eps) & state.settled,
        multipliers=state.multipliers,
        decrease=jnp.where(jnp.isfinite(state.decrease), state.decrease, 0.0),
        iterations=state.iteration,
        history=history,
    )


# ----------------------------------------------------------------------------- public API


@functools.partial(jax.jit, static_argnames=("scheme", "max_iters", "options"))
def solve_sca(
    problem: Problem,
    scheme: str = "proposed",
    *,
    max_iters: int = DEFAULT_MAX_ITERS,
    eps=DEFAULT_EPS,
    start: OperatingPoint | None = None,
    options: SCAOptions = SCAOptions(),
) -> Solution:
    """The paper's SCA for (P1) under ``scheme``: a stationary point of (P2), feasible for (P1).

    Args:
      problem: a Problem whose leaves may carry any common batch shape (float64 recommended).
      scheme: one of :data:`~laimco_jax.solvers.schemes.SCHEMES` (static).
      max_iters: most outer SCA iterations (static; default :data:`DEFAULT_MAX_ITERS` = 100).
      eps: stopping threshold ε: stop when log2 D̂ decreases by less than ε bits in one iteration
        (default :data:`DEFAULT_EPS` = 1e-9; a relative decrease of D̂ of about 7e-10).
      start: optional (P1) point in physical units (ρ, f [Hz], p [W], ρ̃, f̃ [Hz]), broadcastable
        to the batch; projected onto the boxes and restored to the budgets. Only p, ρ, ρ̃ define
        the first local point (p, 1/ρ, 1/ρ̃); f, f̃ warm-start (P3.1). Default: the price-grid rule
        of the module docstring.
      options: the start rule's and the inner solvers' tuning constants (static; :class:`SCAOptions`).

    Returns:
      A :class:`~laimco_jax.solvers.solution.Solution` in physical units, fields as described in
      the module docstring (``objective_history`` has shape batch + (max_iters + 1,)). Infeasible
      instances get status INFEASIBLE, a reason code, and the pruning lower bounds at maximum clocks
      and power as their (violating) point; no field is NaN or infinite.
    """
    if max_iters < 1:
        raise ValueError(f"max_iters = {max_iters!r} must be at least 1")
    _check_options(options)
    spec = scheme_spec(scheme)
    problem = scheme_problem(problem, scheme)
    form = convex_form(problem, spec)
    inst = _instance(form, problem)
    chex.assert_type(list(inst), float)  # trace-time checks: every coefficient floating, one shape
    chex.assert_equal_shape(list(inst))
    shape, dtype = inst.snr_max.shape, inst.snr_max.dtype
    system, model, budget = problem.system, problem.model, problem.budget
    scaled_start = None
    if start is not None:
        scaled_start = _Point(
            start.rho, start.rho_server, start.f_device_hz / system.f_max_device_hz,
            start.f_server_hz / system.f_max_server_hz, start.p_w / system.p_max_w,
        )
    flat = lambda tree: jax.tree_util.tree_map(  # noqa: E731
        lambda v: jnp.broadcast_to(jnp.asarray(v, dtype), shape).reshape(-1), tree
    )
    solve = jax.vmap(functools.partial(_solve_one, spec=spec, max_iters=max_iters, options=options), in_axes=(0, 0, None))
    out = solve(flat(inst), flat(scaled_start), jnp.asarray(eps, dtype))
    out = jax.tree_util.tree_map(lambda v: v.reshape(shape + v.shape[1:]), out)

    infeasible = ~out.feasible
    pt = out.point
    point = OperatingPoint(
        rho=jnp.where(infeasible, inst.rho_min, pt.rho),
        f_device_hz=jnp.where(infeasible, 1.0, pt.clock) * system.f_max_device_hz,
        p_w=jnp.where(infeasible, 1.0, pt.power) * system.p_max_w,
        rho_server=jnp.where(infeasible, inst.rho_server_min, pt.rho_server),
        f_server_hz=jnp.where(infeasible, 1.0, pt.clock_server) * system.f_max_server_hz,
    )
    total = jnp.broadcast_to(jnp.asarray(model.params_device + model.params_server, dtype), shape)
    delay_multiplier = jnp.where(infeasible, 0.0, out.multipliers[..., 0] * total / budget.delay_s)
    energy_multiplier = jnp.where(infeasible, 0.0, out.multipliers[..., 1] * total / budget.energy_j)
    # Verdicts are checked on the returned point, re-evaluated in physical units: a feasible point must
    # meet both budgets, and the infeasible verdict's point (the least workload at full clocks and
    # power) must miss one; otherwise the status is UNRESOLVED.
    terms = evaluate(problem.system, problem.model, point)
    excess = budget_excess(terms, problem.budget)
    status = jnp.where(
        excess <= 0,
        jnp.where(infeasible, Status.UNRESOLVED, jnp.where(out.converged, Status.OPTIMAL, Status.NOT_CONVERGED)),
        jnp.where(infeasible, Status.INFEASIBLE, Status.UNRESOLVED),
    )
    # An infeasible instance reports log2 D̂ of its returned point throughout.
    final = _log2_distortion(inst, _Point(point.rho, point.rho_server, 1.0, 1.0, 1.0))
    return make_solution(
        problem,
        point,
        status=status,
        infeasible_reason=jnp.where(infeasible, infeasible_reason(form, spec), InfeasibleReason.NONE),
        upper_bound=total,
        certificate=jnp.where(found_point(status), out.decrease, excess),
        delay_multiplier=delay_multiplier,
        energy_multiplier=energy_multiplier,
        iterations=out.iterations,
        objective_history=jnp.where(infeasible[..., None], final[..., None], out.history),
        terms=terms,
    )
