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
* The bounds 1e-12 ≤ a, ã, π and 1e-3 ≤ z keep every iterate off the singular boundaries
  f = 0, p = 0, ρ' = 0.

(P3.k) is solved exactly through its dual. Its Lagrangian with multipliers λ_T of (45a) and λ_E of
(50a) separates: with energy price ν = λ_E/λ_T [scaled s/J] and s = √λ_T,

* each clock minimises delay + ν·energy of its processor: a = min(1, (ν_d/ν)^(1/3)), clipped to its
  box, with ν_d = 1/(2 η φ f_max³) [s/J] (times E0/T0) the price above which it slows down;
* the link's spectral efficiency y = ln(1 + g p/(B N0)) minimises θ ln2/(B T0 y) + ν u(p^(k)) π(y), so
  y² e^y = (θ ln2/(B T0))·snr_max/(ν u(p^(k))) (Newton steps in ln y), clipped to its box;
* z minimises (q/(q+s)) z/ρ'^(k) + s²(D/a + ν E a²)/(z ρ'^(k)), D = N/(c f_max T0) and
  E = η φ N f_max²/(c E0) the device's terms of (45a), (50a): z = clip(s √((D/a + ν E a²)(q+s)/q)),
  likewise z̃.

At a given ν, (45a) is nonincreasing in s and, between the four breakpoints where z or z̃ reaches
its bounds, of the form c₁ + c₂/s, so the least s meeting it is found exactly (s = 0 when (45a) is
slack at the largest ratios). (50a) at that s, g(ν), is continuous and nonincreasing in ν (a higher
price slows the clocks and the link, and (45a) then prunes more; where (45a) cannot hold, z = z_high
extends g), so the dual optimum is ν = 0 if g(0) ≤ 0 and otherwise the root of g: its bracket in
ln ν starts at the previous (P3.k)'s ln ν ± 0.05, triples towards the sign change, then shrinks by
the Illinois method (regula falsi that halves the stale end's value), ``SCAOptions.price_steps``
evaluations of g in all (24: on 6,000 random instances the same points as 60 bisection steps). The
point returned is the bracket's end where (50a) holds, so it meets both constraints of (P3.k) up to
rounding; the (P3.k) is *settled* when (50a) is also within 1e-12 (64 ulps in float32) of tight, or
ν = 0. An unsettled (P3.k) (its search ran out of evaluations) leaves the point and the local point
unchanged and the next SCA iteration resumes the search from where it stopped; it does not count
towards the stopping rule.

Batches. The instances of a batch are served from a queue, ``min(n, max(8, n/16), SCAOptions.lanes)``
at a time: each pass does one SCA iteration on every lane, and a lane whose instance stopped takes
the next one. A batch then costs about its total number of SCA iterations, not its longest run
times its size (a vmapped loop's cost); each instance's arithmetic is that of a lone solve.

Feasibility restoration. A (P3.k) solution may violate (45a) or (50a) by rounding. Each SCA
iterate is mapped to a (P1) point (ρ, f, p, ρ̃, f̃), evaluated with the original delay (10) and
energy (11), and, if it is not 64 machine epsilons inside T0 and E0, the free parts of ρ and ρ̃
(above the scheme's lower bounds) are scaled down by the one factor that meets both budgets (T and
E are affine in ρ, ρ̃ at fixed f, p, f̃). The returned point therefore satisfies T ≤ T0, E ≤ E0
and every box (up to rounding of the final evaluation, far below 1e-9 relative). An iterate that
cannot be restored (its upload or pinned parts alone exceed a budget) is not accepted: the previous
feasible point is kept.

Starting point (default). For every third energy price ν of a log grid (``SCAOptions.price_points``
values spanning every price at which a clock leaves its maximum), plus the grid's best price at
κ = 0 and that price refined by golden section,
each processor runs at the clock that minimises delay + ν·energy (f = f_max/max(1, (ν/ν_d)^(1/3)),
ν_d = 1/(2ηφ f_max³); f̃ likewise), the ratios are ρ = ρ_min + κ(1 - ρ_min) and
ρ̃ = ρ̃_min + κ(1 - ρ̃_min), and the transmit power is the least that meets T0 (P_max for
``fixed-power``); the largest feasible κ is found by ``SCAOptions.bisection_steps`` bisection steps
(feasibility is monotone in κ; the start's quality barely matters: the SCA's iterations moved from
12.63 to 12.68 on average on 3,000 instances when the grid was cut from 48 to 16 prices) and
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
rule (decrease of log2 D̂ below ε, the last (P3.k) settled) was met — a stationary point of (P2),
*not* a certified global optimum — NOT_CONVERGED when ``max_iters`` ran out first or the last
(P3.k) did not settle, INFEASIBLE as above, UNRESOLVED if the returned point misses a budget when re-evaluated
by :func:`~laimco_jax.system.evaluate` (the restored points keep 64 ulps of room, so this flags a
numerical failure). Where the start rule finds no start but the infeasible verdict's point (the pruning
lower bounds at full clocks and power) meets both budgets when re-evaluated, the budgets leave no room
for the rule's margins (T0 on the least possible delay, as ``laimco system`` prints it): that point is
returned as found, NOT_CONVERGED with no iteration; ``certificate`` = the last
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

from laimco_jax import distortion
from laimco_jax.params import Problem
from laimco_jax.solvers.convex_form import ConvexForm, convex_form, slowdown
from laimco_jax.solvers.exact import infeasible_reason
from laimco_jax.solvers.numerics import (
    broadcast_leaves, cbrt, expm1_nonnegative, golden_section, inv_cbrt, safe_div, tolerance,
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
_EFFICIENCY_STEPS = 6  # Newton steps for the link's efficiency at a price
_PRICE_SPAN = (-46.0, 69.0)  # ln ν searched, around the least price at which a clock or the link slows
_START_STRIDE = 3  # the start rule bisects κ at every third price of its grid (and the refined one)
_MIN_LANES = 8  # fewest instances iterated side by side (when the batch has as many)
_DUAL_TOL = 1e-12  # |(50a)| at which a (P3.k) counts as solved (64 ulps where the dtype cannot reach it)
_GUESS_WIDTH = 0.05  # half-width of the first bracket of ln ν around the previous (P3.k)'s


class SCAOptions(NamedTuple):
    """Tuning constants of :func:`solve_sca`'s start rule and inner solvers (module docstring).

    Passed as ``solve_sca(..., options=SCAOptions(...))``; static under ``jit`` (hashable: another
    value compiles another program). The defaults are those of every test and figure.
    """

    price_points: int = 48  # energy prices ν on the start rule's log grid
    bisection_steps: int = 30  # bisection steps on κ
    golden_steps: int = 60  # golden-section steps on ν at κ = 0 (they decide the infeasibility verdict)
    price_steps: int = 24  # evaluations of the dual price ln(λ_E/λ_T)'s equation per (P3.k)
    lanes: int = 256  # most instances iterated side by side (a batch of n uses min(n, max(8, n/16), lanes))


def _check_options(options: SCAOptions) -> None:
    """Raise ValueError unless ``options`` is an SCAOptions of integer counts >= 1."""
    if not isinstance(options, SCAOptions):
        raise ValueError(f"options = {options!r} must be an SCAOptions")
    for name, value in options._asdict().items():
        if not (isinstance(value, int) and value >= 1):
            raise ValueError(f"options.{name} = {value!r} must be an integer >= 1")


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


class _Subproblem(NamedTuple):
    """(P3.k) in the scaled variables, per processor i (index 0 the device, 1 the server; arrays (2,))
    and the uplink's spectral efficiency y = ln(1 + snr_max π):

        minimise Σ_i value_i z_i  subject to
        (45a)  Σ_i delay_i/(z_i a_i) + upload_delay/y ≤ 1,
        (50a)  Σ_i energy_i a_i²/z_i + slope·π + offset ≤ 0,   π = (e^y - 1)/snr_max,

    and the box z_i ∈ [z_low_i, z_high_i], a_i ∈ [a_low, 1], y ∈ [y_low, y_high].
    """

    value: Any  # (q/(q+s))/ρ'^(k), (s/(q+s))/ρ̃'^(k): the objective -ρ q/(q+s) = value·z - 2 value
    delay: Any  # N/(c f_max T0 ρ'^(k)), Ñ/(c̃ f̃_max T0 ρ̃'^(k))
    energy: Any  # η φ N f_max²/(c E0 ρ'^(k)), likewise for the server
    free_price: Any  # scaled prices above which a clock leaves its maximum
    z_low: Any
    z_high: Any
    slope: Any  # u(p^(k)) of (47), scaled
    offset: Any  # ζ^(k)(0)/E0 - 1: the tangent (46) at π = 0, less the budget
    upload_delay: Any
    snr_max: Any
    y_low: Any
    y_high: Any


def _subproblem(inst: _Instance, local: _Local) -> _Subproblem:
    """Coefficients of (P3.k) at the local point; the box encodes (50b)-(50c), (44c)-(44f), (1)."""
    aux = jnp.stack([local.rho_aux, local.rho_server_aux])
    rho_min = jnp.stack([inst.rho_min, inst.rho_server_min])
    z_low = jnp.maximum(2.0 - aux, _Z_FLOOR)  # ρ ≤ 1 (see the module docstring)
    slope = _upload_energy_slope(inst, local.power)
    return _Subproblem(
        value=jnp.stack([inst.value_device, inst.value_server]) / aux,
        delay=jnp.stack([inst.delay_device, inst.delay_server]) / aux,
        energy=jnp.stack([inst.energy_device, inst.energy_server]) / aux,
        free_price=jnp.stack([inst.free_price_device, inst.free_price_server]),
        z_low=z_low,
        z_high=jnp.maximum(2.0 - rho_min * aux, z_low),  # ρ ≥ ρ_min
        slope=slope,
        offset=_upload_energy(inst, local.power) - slope * local.power - 1.0,
        upload_delay=inst.upload_delay,
        snr_max=inst.snr_max,
        y_low=jnp.log1p(inst.snr_max * math.exp(_LOG_FLOOR)),
        y_high=jnp.log1p(inst.snr_max),
    )


class _Response(NamedTuple):
    """The minimiser of (P3.k)'s Lagrangian at multipliers (λ_T, λ_E) = (s², s² ν), with s the least
    scale at which (45a) holds, and (50a) there."""

    z: Any  # (2,)
    clock: Any  # (2,) a = f/f_max, ã = f̃/f̃_max
    power: Any  # π
    scale: Any  # s (inf where (45a) cannot hold at this price)
    energy: Any  # (50a) left-hand side


def _efficiency(sub: _Subproblem, price, steps: int):
    """The y minimising upload_delay/y + ν·slope·π(y) over [y_low, y_high]: y² e^y = K with
    K = upload_delay·snr_max/(ν·slope) (y_high at ν = 0; y_high where there is no upload).

    Solved for w = ln y, where e^w + 2w = ln K is convex and increasing: Newton steps from the upper
    end descend monotonically onto the root.
    """
    w_low, w_high = jnp.log(sub.y_low), jnp.log(sub.y_high)
    target = jnp.log(sub.upload_delay * sub.snr_max) - jnp.log(price * sub.slope)
    target = jnp.clip(target, sub.y_low + 2.0 * w_low, sub.y_high + 2.0 * w_high)
    w = w_high
    for _ in range(steps):
        ew = jnp.exp(w)
        w = w - (ew + 2.0 * w - target) / (ew + 2.0)
    return jnp.where(sub.upload_delay > 0, jnp.clip(jnp.exp(w), sub.y_low, sub.y_high), sub.y_high)


def _response(sub: _Subproblem, price, spec: SchemeSpec) -> _Response:
    """The Lagrangian minimiser of (P3.k) at energy price ν = λ_E/λ_T (module docstring).

    Each clock minimises delay + ν·energy: a³ = ν_free/ν (clipped to the box); the efficiency y
    comes from :func:`_efficiency`. Each z then minimises value·z + s²(delay/a + ν energy a²)/z, so
    z = clip(s c) with c = sqrt((delay/a + ν energy a²)/value); (45a) is nonincreasing in s, and
    between the breakpoints z_low/c, z_high/c it is (constant) + (constant)/s, so its least root is
    found exactly from its values at the four breakpoints.
    """
    floor = math.exp(_LOG_FLOOR)
    if spec.fixed_frequency:
        clock = jnp.ones_like(sub.delay)
    else:
        clock = jnp.clip(inv_cbrt(price / sub.free_price), floor, 1.0)
    if spec.fixed_power:
        efficiency, power = sub.y_high, jnp.ones_like(sub.y_high)
    else:
        efficiency = _efficiency(sub, price, _EFFICIENCY_STEPS)
        power = jnp.clip(jnp.expm1(efficiency) / sub.snr_max, floor, 1.0)
    delay_terms = sub.delay / clock  # (45a) term i is delay_terms_i/z_i
    energy_terms = sub.energy * clock**2
    upload = safe_div(sub.upload_delay, efficiency, 0.0) - 1.0
    weight = delay_terms + price * energy_terms
    c = jnp.sqrt(safe_div(weight, sub.value, jnp.where(weight > 0, jnp.inf, 0.0)))
    low_break = safe_div(sub.z_low, c, jnp.inf)
    high_break = safe_div(sub.z_high, c, jnp.inf)

    def z_at(s):
        return jnp.where(s <= low_break, sub.z_low, jnp.where(s >= high_break, sub.z_high, c * s))

    def delay_at(s):
        return jnp.sum(delay_terms / z_at(s)) + upload

    breaks = jnp.concatenate([low_break, high_break])
    over = jax.vmap(delay_at)(breaks) > 0  # (45a) violated at these breakpoints
    lo = jnp.max(jnp.where(over, breaks, 0.0))
    hi = jnp.min(jnp.where(over, jnp.inf, breaks))
    free = (low_break <= lo) & (high_break >= hi)  # z_i = c_i s on (lo, hi)
    pinned = jnp.where(high_break <= lo, sub.z_high, sub.z_low)
    rest = jnp.sum(jnp.where(free, 0.0, delay_terms / pinned)) + upload
    root = safe_div(jnp.sum(jnp.where(free, safe_div(delay_terms, c, 0.0), 0.0)), -rest, jnp.inf)
    scale = jnp.where(delay_at(0.0) <= 0, 0.0, jnp.where(hi < jnp.inf, jnp.clip(root, lo, hi), jnp.inf))
    z = z_at(scale)
    return _Response(
        z=z, clock=clock, power=power, scale=scale,
        energy=jnp.sum(energy_terms / z) + sub.slope * power + sub.offset,
    )


def _solve_subproblem(sub: _Subproblem, spec: SchemeSpec, steps: int, guess):
    """(P3.k) solved through its dual: the price ν = λ_E/λ_T at which (50a) turns from violated to
    met, with (45a) tight (or slack at s = 0).

    g(u) = (50a) at ν = e^u is continuous and nonincreasing in u (a larger price slows the clocks and
    the link and, to keep (45a), prunes more; where (45a) cannot hold, z = z_high extends it), so its
    root is bracketed from ``guess`` ± _GUESS_WIDTH (the previous (P3.k)'s ln ν) by tripling the
    bracket towards the sign change (within ln ν_ref + _PRICE_SPAN), then refined by the Illinois
    method (regula falsi that halves the stale end's value), ``steps`` evaluations of g in all. ν = 0
    when (50a) holds there.

    Returns the response at the bracket's end where (50a) holds, the multipliers (λ_T, λ_E), ln ν (the
    next (P3.k)'s guess) and whether the (P3.k) settled: ν = 0, or (50a) within _DUAL_TOL of tight.
    """
    log_ref = jnp.log(jnp.minimum(jnp.min(sub.free_price), _efficiency_price(sub)))
    span = (log_ref + _PRICE_SPAN[0], log_ref + _PRICE_SPAN[1])
    guess = jnp.clip(jnp.where(jnp.isfinite(guess), guess, log_ref), span[0] + _GUESS_WIDTH, span[1] - _GUESS_WIDTH)

    def g(u):
        return _response(sub, jnp.exp(u), spec).energy

    def step(_, state):
        lo, hi, g_lo, g_hi, side = state
        bracketed = (g_lo > 0) & (g_hi <= 0)
        width = hi - lo
        down = g_lo <= 0  # (50a) already met at lo: the root lies below
        outward = jnp.where(down, jnp.maximum(span[0], lo - 2.0 * width), jnp.minimum(span[1], hi + 2.0 * width))
        inward = lo + width * (g_lo / (g_lo - jnp.where(bracketed, g_hi, -1.0)))
        u = jnp.where(bracketed, inward, outward)
        g_u = g(u)
        up = g_u > 0  # the new point replaces lo
        expanded = (jnp.where(down, u, hi), jnp.where(down, lo, u), jnp.where(down, g_u, g_hi), jnp.where(down, g_lo, g_u))
        illinois = (
            jnp.where(up, u, lo), jnp.where(up, hi, u),
            jnp.where(up, g_u, jnp.where(side < 0, 0.5 * g_lo, g_lo)),
            jnp.where(up, jnp.where(side > 0, 0.5 * g_hi, g_hi), g_u),
        )
        new = tuple(jnp.where(bracketed, i, e) for i, e in zip(illinois, expanded))
        return new + (jnp.where(bracketed, jnp.where(up, 1, -1), 0),)

    lo, hi = guess - _GUESS_WIDTH, guess + _GUESS_WIDTH
    hi = jax.lax.fori_loop(0, steps - 2, step, (lo, hi, g(lo), g(hi), jnp.asarray(0)))[1]
    at_zero = _response(sub, jnp.zeros_like(hi), spec)
    zero_ok = (at_zero.energy <= 0) & jnp.isfinite(at_zero.scale)
    price = jnp.where(zero_ok, 0.0, jnp.exp(hi))
    r = jax.tree_util.tree_map(lambda u, v: jnp.where(zero_ok, u, v), at_zero, _response(sub, price, spec))
    square = jnp.where(jnp.isfinite(r.scale), r.scale**2, 0.0)
    settled = zero_ok | ((r.energy <= 0) & (r.energy >= -tolerance(_DUAL_TOL, hi.dtype)) & jnp.isfinite(r.scale))
    return r, jnp.stack([square, square * price]), jnp.where(zero_ok, guess, hi), settled


def _efficiency_price(sub: _Subproblem):
    """The price ν below which the link transmits at P_max: y_high² e^y_high = K (inf without upload)."""
    return safe_div(sub.upload_delay * sub.snr_max, sub.slope * sub.y_high**2 * jnp.exp(sub.y_high), jnp.inf)


def _ratios(local: _Local, z):
    """ρ = (2 - z)/ρ'^(k) and ρ̃ = (2 - z̃)/ρ̃'^(k): (50b)-(50c) held with equality."""
    return (2.0 - z[0]) / local.rho_aux, (2.0 - z[1]) / local.rho_server_aux

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


def _start_clocks(inst: _Instance, price, spec: SchemeSpec):
    """The start rule's clocks at energy price ν (scaled): each minimises delay + ν·energy per FLOP."""

    def clock(free_price):
        return 1.0 / slowdown(cbrt(price / free_price), 1.0, spec.fixed_frequency)

    return clock(inst.free_price_device), clock(inst.free_price_server)


def _start_at_price(inst: _Instance, price, kappa, spec: SchemeSpec, clocks=None):
    """The start rule at energy price ν (scaled) and common pruning fraction κ: point and feasibility.

    Clocks as :func:`_start_clocks` (``clocks``, if given, are those at ``price``); the transmit power
    is the least that meets T0 (P_max for ``fixed-power``).
    """
    a, a_server = _start_clocks(inst, price, spec) if clocks is None else clocks
    rho = inst.rho_min + kappa * (1.0 - inst.rho_min)
    rho_server = inst.rho_server_min + kappa * (1.0 - inst.rho_server_min)
    keep = 1.0 - budget_margin(price.dtype)
    # Aim one margin below the test, so that rounding cannot push the delay above it.
    left = keep - budget_margin(price.dtype) - rho * inst.delay_device / a - rho_server * inst.delay_server / a_server
    if spec.fixed_power:
        power = jnp.ones_like(price)
    else:
        # ln(1 + snr_max π) ≥ θ ln2/(B T0) / left; the exponent is capped where π > 1 anyway.
        exponent = jnp.minimum(inst.upload_delay / jnp.where(left > 0, left, 1.0), 80.0)
        needed = expm1_nonnegative(exponent) / inst.snr_max
        power = jnp.where(inst.upload_delay > 0, jnp.clip(needed, math.exp(_LOG_FLOOR), 1.0), 1.0)
    pt = _Point(rho, rho_server, a, a_server, power)
    delay, energy = _delay_energy(inst, pt, rho, rho_server)
    violation = jnp.maximum(delay, energy) - keep
    feasible = (left > 0) & (violation <= 0)
    return pt, feasible, jnp.where(left > 0, violation, jnp.inf)


def _default_start(inst: _Instance, spec: SchemeSpec, options: SCAOptions):
    """The start rule of the module docstring: the point and whether it is feasible.

    Every third price of a log grid, plus the grid's least-violating price at κ = 0 and that price
    refined by golden section (they matter only when a ratio is pinned: with ρ_min = ρ̃_min = 0 nothing
    is computed at κ = 0), gets its largest feasible κ by bisection; the largest κ wins. The start is
    feasible iff one of the grid's prices or the refined one is feasible at κ = 0.
    """
    low = 0.5 * jnp.minimum(inst.free_price_device, inst.free_price_server)
    high = 1e9 * jnp.maximum(inst.free_price_device, inst.free_price_server)
    grid = jnp.log(low) + jnp.linspace(0.0, 1.0, options.price_points, dtype=low.dtype) * (jnp.log(high) - jnp.log(low))

    def violation_at_zero(log_price):
        return _start_at_price(inst, jnp.exp(log_price), jnp.zeros_like(log_price), spec)[2]

    nearest = jnp.argmin(violation_at_zero(grid))
    refined = golden_section(
        violation_at_zero, grid[jnp.maximum(nearest - 1, 0)], grid[jnp.minimum(nearest + 1, options.price_points - 1)],
        options.golden_steps,
    )
    prices = jnp.exp(jnp.concatenate([grid[::_START_STRIDE], jnp.stack([grid[nearest], refined])]))
    zero, one = jnp.zeros_like(prices), jnp.ones_like(prices)
    clocks = _start_clocks(inst, prices, spec)

    def bisect(_, bracket):
        lo, hi = bracket
        mid = 0.5 * (lo + hi)
        ok = _start_at_price(inst, prices, mid, spec, clocks)[1]
        return jnp.where(ok, mid, lo), jnp.where(ok, hi, mid)

    all_in = _start_at_price(inst, prices, one, spec, clocks)[1]
    kappa = jnp.where(all_in, 1.0, jax.lax.fori_loop(0, options.bisection_steps, bisect, (zero, one))[0])
    feasible = _start_at_price(inst, prices, zero, spec, clocks)[1]
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
    """Where one instance's SCA stands after k iterations."""

    local: _Local  # local point of the next (P3.k)
    multipliers: Any  # λ of (45a), (50a) (scaled) of the last (P3.k)
    price: Any  # ln(λ_E/λ_T) of the last (P3.k) with λ_E > 0 (NaN before): the next one's first guess
    iteration: Any  # k, SCA iterations done
    point: _Point  # incumbent: the last restorable SCA iterate (or the start)
    decrease: Any  # last decrease of log2 D̂ [bits]
    settled: Any  # the last (P3.k) solve met both of its constraints
    history: Any  # log2 D̂ at the start and after each SCA iteration
    done: Any


def _log2_distortion(inst: _Instance, pt: _Point):
    """log2 D̂ of (41) at ``pt`` (affine in the retained fraction, slope -b)."""
    return inst.log2_distortion_pruned - inst.bits_per_weight * _retained(inst, pt)


def _initial_state(inst: _Instance, start: _Point, feasible, max_iters: int) -> _State:
    """The SCA at a start: local point (p, 1/ρ, 1/ρ̃) (ρ, ρ̃ floored at 1e-9); done if infeasible."""
    local = _Local(
        power=start.power,
        rho_aux=1.0 / jnp.maximum(start.rho, _RHO_START_FLOOR),
        rho_server_aux=1.0 / jnp.maximum(start.rho_server, _RHO_START_FLOOR),
    )
    zero = jnp.zeros_like(start.power)
    return _State(
        local=local,
        multipliers=jnp.zeros((2,), zero.dtype),
        price=jnp.full_like(zero, jnp.nan),
        iteration=jnp.asarray(0),
        point=start,
        decrease=jnp.full_like(zero, jnp.inf),
        settled=jnp.asarray(True),
        history=jnp.full((max_iters + 1,), _log2_distortion(inst, start)),
        done=~feasible,
    )


def _iterate(inst: _Instance, eps, spec: SchemeSpec, max_iters: int, options: SCAOptions, s: _State) -> _State:
    """SCA iteration k: solve (P3.k), restore its solution, accept it, move the local point.

    A (P3.k) whose dual search did not settle within its evaluations leaves the point and the local
    point as they are, and the next iteration resumes the search from where it stopped.
    """
    r, multipliers, price, settled = _solve_subproblem(_subproblem(inst, s.local), spec, options.price_steps, s.price)
    rho, rho_server = _ratios(s.local, r.z)
    candidate = _Point(
        rho=jnp.clip(rho, inst.rho_min, 1.0),
        rho_server=jnp.clip(rho_server, inst.rho_server_min, 1.0),
        clock=r.clock[0],
        clock_server=r.clock[1],
        power=r.power,
    )
    restored, ok = _restore(inst, candidate)
    keep = lambda cond, new, old: jax.tree_util.tree_map(lambda u, v: jnp.where(cond, u, v), new, old)  # noqa: E731
    point = keep(settled & ok, restored, s.point)
    value = _log2_distortion(inst, point)
    decrease = jnp.where(settled, s.history[s.iteration] - value, s.decrease)
    local = _Local(  # p^(k+1), ρ'^(k+1) = z ρ'^(k), ρ̃'^(k+1) = z̃ ρ̃'^(k)
        power=r.power,
        rho_aux=r.z[0] * s.local.rho_aux,
        rho_server_aux=r.z[1] * s.local.rho_server_aux,
    )
    return _State(
        local=keep(settled, local, s.local),
        multipliers=multipliers,
        price=price,
        iteration=s.iteration + 1,
        point=point,
        decrease=decrease,
        settled=settled,
        history=s.history.at[s.iteration + 1].set(value),
        done=(settled & (decrease < eps)) | (s.iteration + 1 >= max_iters),
    )


def _start(inst: _Instance, start: _Point | None, spec: SchemeSpec, max_iters: int, options: SCAOptions) -> _State:
    """The initial state of one instance (scalar fields): the user's start if it is feasible after
    projection and restoration, else the default start rule's point."""
    default, feasible = _default_start(inst, spec, options)
    if start is not None:
        start, user_ok = _restore(inst, _user_start(inst, start, spec))
        start = jax.tree_util.tree_map(lambda u, d: jnp.where(user_ok, u, d), start, default)
        feasible = feasible | user_ok
    else:
        start = default
    return _initial_state(inst, start, feasible, max_iters)


def _take(tree, index):
    return jax.tree_util.tree_map(lambda v: v[index], tree)


def _select(mask, new, old):
    """Per-lane choice between two batched pytrees (``mask`` of shape (lanes,))."""
    return jax.tree_util.tree_map(lambda u, v: jnp.where(mask.reshape(mask.shape + (1,) * (u.ndim - 1)), u, v), new, old)


def _run(inst: _Instance, states: _State, eps, spec: SchemeSpec, max_iters: int, options: SCAOptions,
         lanes: int) -> _State:
    """Every instance's SCA run to its end, ``lanes`` instances at a time (batched fields, (n,)).

    The pending instances form a queue; each pass does one SCA iteration on every lane, stores the
    lanes that just finished and hands them the next pending instances. A batch thus costs about its
    total number of SCA iterations over ``lanes`` passes (plus the longest run's), not its longest
    run times its size, as a vmapped loop would.
    """
    n = states.done.shape[0]
    iterate = jax.vmap(lambda one, state: _iterate(one, eps, spec, max_iters, options, state))
    order = jnp.argsort(states.done, stable=True)  # pending instances first
    pending = jnp.sum(~states.done)
    slot = jnp.arange(lanes)
    index = jnp.where(slot < pending, order[slot], n)  # n: an idle lane
    lane = _take(states, order[slot])
    lane = lane._replace(done=lane.done | (index == n))

    def body(carry):
        lane, index, queued, results = carry
        new = _select(lane.done, lane, iterate(_take(inst, jnp.minimum(index, n - 1)), lane))
        finished = new.done & ~lane.done
        results = jax.tree_util.tree_map(
            lambda r, v: r.at[jnp.where(finished, index, n)].set(v, mode="drop"), results, new)
        position = queued + jnp.cumsum(finished) - 1
        refill = finished & (position < pending)
        fetched = order[jnp.minimum(position, n - 1)]
        index = jnp.where(refill, fetched, jnp.where(finished, n, index))
        lane = _select(refill, _take(states, fetched), new)
        return lane, index, queued + jnp.sum(finished), results

    return jax.lax.while_loop(lambda c: ~jnp.all(c[0].done), body, (lane, index, jnp.asarray(lanes), states))[3]


class _Outcome(NamedTuple):
    point: _Point
    feasible: Any
    converged: Any
    multipliers: Any
    decrease: Any
    iterations: Any
    history: Any


def _outcome(state: _State, feasible, eps, max_iters: int) -> _Outcome:
    """What :func:`solve_sca` reports of one instance's final state (scalar fields)."""
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


def _solve(inst: _Instance, start: _Point | None, eps, spec: SchemeSpec, max_iters: int,
           options: SCAOptions) -> _Outcome:
    """The SCA for a flat batch of instances (fields of shape (n,))."""
    states = jax.vmap(functools.partial(_start, spec=spec, max_iters=max_iters, options=options))(inst, start)
    feasible = ~states.done
    n = feasible.shape[0]
    final = _run(inst, states, eps, spec, max_iters, options, min(n, max(_MIN_LANES, n // 16), options.lanes))
    return jax.vmap(functools.partial(_outcome, eps=eps, max_iters=max_iters))(final, feasible)


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
    out = _solve(flat(inst), flat(scaled_start), jnp.asarray(eps, dtype), spec, max_iters, options)
    out = jax.tree_util.tree_map(lambda v: v.reshape(shape + v.shape[1:]), out)

    no_start = ~out.feasible  # the start rule's verdict: the least-delay point is returned
    pt = out.point
    point = OperatingPoint(
        rho=jnp.where(no_start, inst.rho_min, pt.rho),
        f_device_hz=jnp.where(no_start, 1.0, pt.clock) * system.f_max_device_hz,
        p_w=jnp.where(no_start, 1.0, pt.power) * system.p_max_w,
        rho_server=jnp.where(no_start, inst.rho_server_min, pt.rho_server),
        f_server_hz=jnp.where(no_start, 1.0, pt.clock_server) * system.f_max_server_hz,
    )
    total = jnp.broadcast_to(jnp.asarray(model.params_device + model.params_server, dtype), shape)
    delay_multiplier = jnp.where(no_start, 0.0, out.multipliers[..., 0] * total / budget.delay_s)
    energy_multiplier = jnp.where(no_start, 0.0, out.multipliers[..., 1] * total / budget.energy_j)
    # Verdicts are checked on the returned point, re-evaluated in physical units: a feasible point must
    # meet both budgets, else the status is UNRESOLVED. The infeasible verdict's point (the least
    # workload at full clocks and power) must miss one; where it meets both, the budgets leave no room
    # for the start rule's margins (T0 on the least possible delay): it is returned as found, with no
    # SCA iteration (NOT_CONVERGED).
    terms = evaluate(problem.system, problem.model, point)
    excess = budget_excess(terms, problem.budget)
    infeasible = no_start & (excess > 0)
    status = jnp.where(
        excess <= 0,
        jnp.where(out.converged, Status.OPTIMAL, Status.NOT_CONVERGED),
        jnp.where(infeasible, Status.INFEASIBLE, Status.UNRESOLVED),
    )
    # An instance without a start reports log2 D̂ of its returned point throughout.
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
        objective_history=jnp.where(no_start[..., None], final[..., None], out.history),
        terms=terms,
    )
