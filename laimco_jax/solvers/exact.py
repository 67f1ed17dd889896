"""Exact global solver of (P1) through its convex reformulation and a one-dimensional dual search.

The reformulation (docs/theory.md#convex-reformulation): with the device slow-down
ψ = f_max/f >= 1, the server slow-down ψ̃ = f̃_max/f̃ >= 1 and the uplink spectral efficiency
y = ln(1 + g p/(B N0)) in nats/s/Hz (so u = ln2/(B y) seconds per bit), the device part of a pruned
model with remaining fraction ρ takes ρ·T_d·ψ seconds and ρ·E_d/ψ² joules, where T_d = N/(c f_max) and
E_d = η φ N f_max²/c are its delay and energy at full clock (eqs. (4), (5)); the server likewise; the
upload takes θ u seconds and θ e(y) joules with e(y) = (B N0/g)(e^y - 1) ln2/(B y) (eqs. (6), (7)).
In the variables (ρ, ρ̃, τ = ρ T_d ψ, τ̃, u) the problem is convex and maximises ρq + ρ̃s (D̂ of (41)
is strictly decreasing in it).

Solver. For an energy price ν >= 0 [s/J], the Lagrangian relaxation with both budgets aggregated as
time + ν·energy <= T0 + ν E0 separates: each part picks its clock alone (ψ = max(1, (ν/ν_d)^(1/3)) with
ν_d = 1/(2 η φ f_max³)), the link its efficiency y (ν k (e^y (y - 1) + 1) = 1, k = B N0/g, capped at
y_max = ln(1 + g P_max/(B N0))), and ρ, ρ̃ solve a two-item fractional knapsack whose value h(ν) is an
upper bound on the optimum. h is quasiconvex in ν, and at any ν the knapsack's response violates
exactly the budget whose price is too low, so a bisection on ν (on the bit pattern of y: geometric)
brackets the optimal price. One secant step inside the bracket then polishes it: on the energy
excess of the knapsack's response where the item order is the same at both ends (h is smooth there,
so the bracket's ends are already second-order close), on the items' efficiency margin where the
order flips inside the bracket (the optimal price is that flip, a kink of h, which the bracket alone
would only locate to first order). At each candidate price (0 and the polished price; at fixed
clocks, where the knapsack's response is piecewise in the price and the secant step can miss, also
the bracket's ends) the rates are fixed and ρ, ρ̃ solve a two-variable linear programme exactly
(vertex enumeration, 64 ulps inside the budgets), which gives a primal point. That point, in physical
units, is re-evaluated with eqs. (10), (11): only if it meets both budgets is it reported feasible, and
the relative gap between the least h and its own ρq + ρ̃s is the certificate. A knapsack whose pruning
lower bounds alone exceed the aggregated budget, or a budget below its least possible value, certifies
infeasibility, unless those lower bounds at full clocks and power meet both budgets when re-evaluated
(then the proof came from rounding: T0 on the least delay); without a point or a proof the status is
UNRESOLVED (docs/solver.md).

Every operation is elementwise with a fixed iteration count, so the solver broadcasts over any batch
shape, runs under ``jit``/``vmap`` and uses memory linear in the batch size.
"""

from __future__ import annotations

import functools
from typing import Any, NamedTuple

import chex
import jax
import jax.numpy as jnp

from laimco_jax.params import Problem
from laimco_jax.solvers.convex_form import ConvexForm, convex_form, link_rates, link_stationarity, slowdown
from laimco_jax.solvers.numerics import cbrt, expm1_nonnegative, float_bits, inv_cbrt, safe_div
from laimco_jax.solvers.schemes import SchemeSpec, scheme_problem, scheme_spec
from laimco_jax.solvers.solution import InfeasibleReason, Solution, Status, budget_excess, budget_margin, make_solution
from laimco_jax.system import LN2, OperatingPoint, evaluate

__all__ = ["infeasible_reason", "solve_exact", "DEFAULT_ITERATIONS", "DEFAULT_GAP_TOL"]

DEFAULT_ITERATIONS = 28
DEFAULT_GAP_TOL = 1e-9
# Span of the price search beyond the largest price at which any rate still moves (a factor 1e30
# shrinks the remaining energy of the parts by 1e-20 relative).
_PRICE_SPAN = 1e30


# ----------------------------------------------------------------------------- rates at a price


def _price_at(form: ConvexForm, y):
    """The energy price ν(y) = 1/(k Λ(y)) [s/J] at which the free link picks efficiency y (decreasing)."""
    return 1.0 / (form.link_power_w * link_stationarity(y, jnp.expm1(y)))


def _min_joules_per_bit(form: ConvexForm, fixed_power: bool):
    """The least energy per bit the link can spend: at P_max if pinned, else k ln2/B (y -> 0)."""
    if fixed_power:
        return link_rates(form, form.max_efficiency, jnp.expm1(form.max_efficiency))[1]
    return form.link_power_w * LN2 / form.bandwidth_hz


def _search_interval(form: ConvexForm):
    """Bracket [y_end, y_top] of the price parameter y, covering every price at which a rate moves.

    ν(y_top) is below half the lowest price at which a clock slows down or the link leaves P_max (so
    everything runs flat out there) and ν(y_end) is _PRICE_SPAN times above the highest.
    """
    free_prices = (form.free_price_device, form.free_price_server, _price_at(form, form.max_efficiency))
    lowest = functools.reduce(jnp.minimum, free_prices)
    highest = functools.reduce(jnp.maximum, free_prices)
    finfo = jnp.finfo(form.value_device.dtype)
    # Λ(y) >= e^y for y >= 2, so ν(y_top) <= lowest/2; Λ(y) <= y² for y <= 1, so ν(y_end) >= highest·span.
    y_top = jnp.clip(jnp.log(2.0 / (form.link_power_w * lowest)), 2.0, 0.9 * jnp.log(finfo.max))
    y_end = jnp.minimum(jnp.minimum(0.5 * form.max_efficiency, 1.0), jax.lax.rsqrt(form.link_power_w * highest * _PRICE_SPAN))
    # keep ν(y) = 1/(k Λ(y)) <= 2/(k y²) finite with room (float32 runs out of range first)
    y_floor = 1e3 * jnp.sqrt(2.0 / form.link_power_w) / jnp.sqrt(jnp.asarray(finfo.max, form.value_device.dtype))
    return jnp.maximum(y_end, y_floor), y_top


class _Rates(NamedTuple):
    """Clock and link choices at an energy price, and their per-unit delay and energy."""

    price: Any  # ν [s/J]
    slowdown_device: Any  # ψ = f_max/f
    slowdown_server: Any
    efficiency: Any  # y [nats/s/Hz]
    delay_device: Any  # per unit ρ [s]
    energy_device: Any  # per unit ρ [J]
    delay_server: Any
    energy_server: Any
    delay_link: Any  # θ u [s]
    energy_link: Any  # θ e(y) [J]


class _Fixed(NamedTuple):
    """Price-independent terms of the rates (computed once, outside the price search)."""

    inv_cbrt_free_device: Any  # ν_d^(-1/3)
    inv_cbrt_free_server: Any
    cbrt_sq_free_device: Any  # ν_d^(2/3)
    cbrt_sq_free_server: Any
    expm1_max_efficiency: Any


def _fixed_terms(form: ConvexForm) -> _Fixed:
    inv_dev, inv_srv = 1.0 / cbrt(form.free_price_device), 1.0 / cbrt(form.free_price_server)
    return _Fixed(
        inv_cbrt_free_device=inv_dev,
        inv_cbrt_free_server=inv_srv,
        cbrt_sq_free_device=form.free_price_device * inv_dev,
        cbrt_sq_free_server=form.free_price_server * inv_srv,
        expm1_max_efficiency=jnp.expm1(form.max_efficiency),
    )


def _rates_at(form: ConvexForm, y, spec: SchemeSpec, fixed: _Fixed) -> _Rates:
    """Each part's best response to the price ν(y) = 1/w [s/J], w = k Λ(y): one expm1, a cube root and
    two divisions (ν, and the link's seconds per bit); ``fixed`` = :func:`_fixed_terms` of ``form``."""
    expm1_y = jnp.expm1(y)
    price = 1.0 / (form.link_power_w * link_stationarity(y, expm1_y))
    cbrt_price = cbrt(price)

    if spec.fixed_power:
        efficiency = form.max_efficiency
        expm1_eff = fixed.expm1_max_efficiency
    else:
        efficiency = jnp.minimum(y, form.max_efficiency)
        expm1_eff = jnp.minimum(expm1_y, fixed.expm1_max_efficiency)
    psi_dev = slowdown(cbrt_price, fixed.inv_cbrt_free_device, spec.fixed_frequency)
    psi_srv = slowdown(cbrt_price, fixed.inv_cbrt_free_server, spec.fixed_frequency)
    energy_device, energy_server = form.energy_device_j / psi_dev**2, form.energy_server_j / psi_srv**2
    seconds_per_bit, joules_per_bit = link_rates(form, efficiency, expm1_eff)
    full = functools.partial(jnp.broadcast_to, shape=price.shape)  # every field of the batch's shape
    return _Rates(
        price=price,
        slowdown_device=full(psi_dev),
        slowdown_server=full(psi_srv),
        efficiency=full(efficiency),
        delay_device=full(form.delay_device_s * psi_dev),
        energy_device=full(energy_device),
        delay_server=full(form.delay_server_s * psi_srv),
        energy_server=full(energy_server),
        delay_link=full(form.bits * seconds_per_bit),
        energy_link=full(form.bits * joules_per_bit),
    )


def _flat_out_rates(form: ConvexForm, fixed: _Fixed) -> _Rates:
    """The rates at price 0 (y = inf): both clocks at full speed, the link at P_max; the same numbers
    as ``_rates_at(form, inf, spec, fixed)`` without its cube root and exponential."""
    seconds_per_bit, joules_per_bit = link_rates(form, form.max_efficiency, fixed.expm1_max_efficiency)
    one = jnp.ones_like(form.value_device)
    return _Rates(
        price=jnp.zeros_like(one),
        slowdown_device=one,
        slowdown_server=one,
        efficiency=form.max_efficiency,
        delay_device=form.delay_device_s,
        energy_device=form.energy_device_j,
        delay_server=form.delay_server_s,
        energy_server=form.energy_server_j,
        delay_link=form.bits * seconds_per_bit,
        energy_link=form.bits * joules_per_bit,
    )


# ----------------------------------------------------------------------------- knapsack (dual)


class _Knapsack(NamedTuple):
    feasible: Any  # the pruning lower bounds fit the aggregated budget
    overload: Any  # (lower-bound cost - aggregated budget) / aggregated budget, > 0 iff infeasible
    rho: Any
    rho_server: Any
    value: Any  # h(ν), an upper bound on max ρq + ρ̃s (-inf when infeasible)
    multiplier: Any  # value per aggregated second, λ
    energy_violated: Any  # the response exceeds E0: the price is too low
    energy_excess: Any  # (energy - E0)/E0 of the response: continuous in ν while the item order holds
    device_first: Any  # the item order (by value per aggregated second)
    order_margin: Any  # (q c̃ - s c)/(q c̃ + s c): smooth in ν, zero where the order flips


def _knapsack(form: ConvexForm, r: _Rates) -> _Knapsack:
    """Relaxation with time + ν·energy aggregated: a two-item fractional knapsack (greedy is exact)."""
    cost_dev = r.delay_device + r.price * r.energy_device
    cost_srv = r.delay_server + r.price * r.energy_server
    capacity = form.delay_budget_s + r.price * form.energy_budget_j - (r.delay_link + r.price * r.energy_link)
    left = capacity - form.rho_min * cost_dev - form.rho_server_min * cost_srv
    feasible = left >= 0
    eff_dev = safe_div(form.value_device, cost_dev, jnp.inf)
    eff_srv = safe_div(form.value_server, cost_srv, jnp.inf)
    device_first = eff_dev >= eff_srv

    def take(cost, room, budget):
        return jnp.clip(safe_div(budget, cost, jnp.inf), 0.0, room)

    room_dev, room_srv = 1.0 - form.rho_min, 1.0 - form.rho_server_min
    budget = jnp.maximum(left, 0.0)
    x_first = take(jnp.where(device_first, cost_dev, cost_srv), jnp.where(device_first, room_dev, room_srv), budget)
    budget_second = jnp.maximum(budget - x_first * jnp.where(device_first, cost_dev, cost_srv), 0.0)
    x_second = take(jnp.where(device_first, cost_srv, cost_dev), jnp.where(device_first, room_srv, room_dev), budget_second)
    x_dev = jnp.where(feasible, jnp.where(device_first, x_first, x_second), 0.0)
    x_srv = jnp.where(feasible, jnp.where(device_first, x_second, x_first), 0.0)
    rho, rho_srv = form.rho_min + x_dev, form.rho_server_min + x_srv
    energy = rho * r.energy_device + rho_srv * r.energy_server + r.energy_link
    value = rho * form.value_device + rho_srv * form.value_server
    # λ: the best efficiency among items that could still grow (0 if every item is full).
    multiplier = jnp.maximum(
        jnp.where(x_dev < room_dev, eff_dev, 0.0), jnp.where(x_srv < room_srv, eff_srv, 0.0)
    )
    return _Knapsack(
        feasible=feasible,
        overload=-left / (form.delay_budget_s + r.price * form.energy_budget_j),
        rho=rho,
        rho_server=rho_srv,
        value=jnp.where(feasible, value, -jnp.inf),
        multiplier=jnp.where(feasible & jnp.isfinite(multiplier), multiplier, 0.0),
        energy_violated=energy > form.energy_budget_j,
        energy_excess=energy / form.energy_budget_j - 1.0,
        device_first=device_first,
        order_margin=safe_div(form.value_device * cost_srv - form.value_server * cost_dev,
                               form.value_device * cost_srv + form.value_server * cost_dev, 0.0),
    )


def _response_exceeds_energy(form: ConvexForm, y, spec: SchemeSpec, fixed: _Fixed):
    """Whether the knapsack's response at the price ν(y) exceeds E0 where the clocks are free:
    ``_knapsack(form, _rates_at(form, y, spec, fixed)).energy_violated`` with two divisions instead of seven
    (the price search's step; tests/test_numerics.py checks its verdicts against the full knapsack's,
    and benchmarks/compare_exact.py found no answer changed on 10⁶ instances of each scheme and mix).

    The knapsack is scaled by 1/(1 + ν): with t = 1/(1 + w) = ν/(1 + ν) (w = 1/ν = k Λ(y)) an item's
    aggregated cost is (1 - t)·delay + t·energy, bounded by its own delay and energy, so no product
    below overflows. Greedy by value per cost compares q c̃ with s c; the items' spent costs
    S1 = min(budget, room1 c1), S2 = min(budget - S1, room2 c2) are ρ - ρ_min times their costs, and
    the test base + S1 e1/c1 + S2 e2/c2 > E0 is taken multiplied by c1 c2 > 0. e^y - 1 and
    ν^(1/3) = w^(-1/3) by multiplications (:func:`expm1_nonnegative`, :func:`inv_cbrt`) and
    1/ψ² = min(1, w ν^(1/3) ν_free^(2/3)), so that the step compiles to one vectorised loop on CPU
    (XLA emits exp/expm1 inside a large fusion as scalar code per lane).
    """
    expm1_y = expm1_nonnegative(y)
    w = form.link_power_w * link_stationarity(y, expm1_y)
    t = 1.0 / (1.0 + w)
    s = w * t  # 1 - t, without cancellation
    cbrt_price = inv_cbrt(w)
    energy_device = form.energy_device_j * jnp.minimum(1.0, w * cbrt_price * fixed.cbrt_sq_free_device)
    energy_server = form.energy_server_j * jnp.minimum(1.0, w * cbrt_price * fixed.cbrt_sq_free_server)
    delay_device = form.delay_device_s * slowdown(cbrt_price, fixed.inv_cbrt_free_device, False)
    delay_server = form.delay_server_s * slowdown(cbrt_price, fixed.inv_cbrt_free_server, False)
    if spec.fixed_power:
        efficiency, expm1_eff = form.max_efficiency, fixed.expm1_max_efficiency
    else:
        efficiency, expm1_eff = jnp.minimum(y, form.max_efficiency), jnp.minimum(expm1_y, fixed.expm1_max_efficiency)
    seconds_per_bit, joules_per_bit = link_rates(form, efficiency, expm1_eff)
    delay_link, energy_link = form.bits * seconds_per_bit, form.bits * joules_per_bit
    cost_dev = s * delay_device + t * energy_device
    cost_srv = s * delay_server + t * energy_server
    base = form.rho_min * energy_device + form.rho_server_min * energy_server + energy_link
    left = (s * (form.delay_budget_s - delay_link) + t * (form.energy_budget_j - energy_link)
            - form.rho_min * cost_dev - form.rho_server_min * cost_srv)
    budget = jnp.maximum(left, 0.0)
    device_first = form.value_device * cost_srv >= form.value_server * cost_dev
    c1, c2 = jnp.where(device_first, cost_dev, cost_srv), jnp.where(device_first, cost_srv, cost_dev)
    e1, e2 = jnp.where(device_first, energy_device, energy_server), jnp.where(device_first, energy_server, energy_device)
    room1 = jnp.where(device_first, 1.0 - form.rho_min, 1.0 - form.rho_server_min)
    room2 = jnp.where(device_first, 1.0 - form.rho_server_min, 1.0 - form.rho_min)
    spent1 = jnp.minimum(budget, room1 * c1)
    spent2 = jnp.minimum(budget - spent1, room2 * c2)
    scale1, scale2 = jnp.where(c1 == 0, 1.0, c1), jnp.where(c2 == 0, 1.0, c2)  # a free item spends no energy
    return (base - form.energy_budget_j) * scale1 * scale2 + spent1 * e1 * scale2 + spent2 * e2 * scale1 > 0


# ----------------------------------------------------------------------------- primal LP at fixed rates


class _Primal(NamedTuple):
    feasible: Any
    rho: Any
    rho_server: Any
    value: Any


def _vertices(form: ConvexForm, r: _Rates, margin) -> list[_Primal]:
    """Candidate optima of max ρq + ρ̃s over the box with the delay and energy budgets at fixed rates
    (an exact 2-D LP), each with its feasibility and value (-inf where infeasible).

    The objective is non-decreasing in both variables, so the optimum is a vertex of the upper-right
    frontier: a bound of one variable with the other as large as feasible, or the intersection of the
    two budget lines. The vertices are computed and checked for budgets shrunk by the relative
    ``margin`` and accepted up to half of it, so that the returned point still meets T0 and E0 when
    its delay and energy are re-evaluated in physical units (eqs. (10), (11)), and no rounding of the
    vertices (which differs between XLA fusions) flips a check; only the pruning lower bounds, which
    cannot shrink, are accepted up to the full budgets (T0 equal to the least possible delay).
    """
    keep, half = 1.0 - margin, 0.5 * margin
    delay_left = keep * form.delay_budget_s - r.delay_link
    energy_left = keep * form.energy_budget_j - r.energy_link

    def largest(t_fixed, e_fixed, x, t_free, e_free):
        by_delay = safe_div(delay_left - t_fixed * x, t_free, jnp.inf)
        by_energy = safe_div(energy_left - e_fixed * x, e_free, jnp.inf)
        return jnp.minimum(1.0, jnp.minimum(by_delay, by_energy))

    td, ed, ts, es = r.delay_device, r.energy_device, r.delay_server, r.energy_server
    det = td * es - ts * ed
    cross_rho = safe_div(delay_left * es - ts * energy_left, det, -jnp.inf)
    cross_srv = safe_div(td * energy_left - ed * delay_left, det, -jnp.inf)
    candidates = [  # (ρ, ρ̃, relative allowance beyond the shrunk budgets)
        (form.rho_min, form.rho_server_min, margin),
        (form.rho_min, largest(td, ed, form.rho_min, ts, es), half),
        (jnp.ones_like(td), largest(td, ed, 1.0, ts, es), half),
        (largest(ts, es, form.rho_server_min, td, ed), form.rho_server_min, half),
        (largest(ts, es, 1.0, td, ed), jnp.ones_like(td), half),
        (cross_rho, cross_srv, half),
    ]
    vertices = []
    for rho, rho_srv, allowance in candidates:
        rho = jnp.broadcast_to(rho, td.shape)
        rho_srv = jnp.broadcast_to(rho_srv, td.shape)
        ok = (
            (rho >= form.rho_min)
            & (rho <= 1.0)
            & (rho_srv >= form.rho_server_min)
            & (rho_srv <= 1.0)
            & (rho * td + rho_srv * ts <= delay_left + allowance * form.delay_budget_s)
            & (rho * ed + rho_srv * es <= energy_left + allowance * form.energy_budget_j)
        )
        value = jnp.where(ok, rho * form.value_device + rho_srv * form.value_server, -jnp.inf)
        vertices.append(_Primal(ok, rho, rho_srv, value))
    return vertices


def _best_vertex(form: ConvexForm, vertices: list[list[_Primal]]):
    """The best of the candidate prices' LP vertices: (the index of its price, the vertex).

    Among one price's vertices the later one wins ties (larger ρ, ρ̃ for absent parts), among prices
    the earlier one (price 0 first). Where no vertex is feasible: price 0 and the pruning lower bounds.
    The winner and its (ρ, ρ̃) come out of one reduction over the stacked candidates, whose results
    XLA keeps in memory: a chain of comparisons, and selections by its result, would be recomputed
    inside every fusion that reads them.
    """
    order = [(price, k) for price, per_price in enumerate(vertices) for k in reversed(range(len(per_price)))]
    stacked = [jnp.stack([getattr(vertices[price][k], name) for price, k in order]) for name in ("value", "rho", "rho_server")]
    positions = jax.lax.broadcasted_iota(jnp.int32, stacked[0].shape, 0)

    def first_max(a, b):
        take_b = (b[0] > a[0]) | ((b[0] == a[0]) & (b[3] < a[3]))
        return tuple(jnp.where(take_b, x_b, x_a) for x_a, x_b in zip(a, b))

    dtype = stacked[0].dtype
    start = (jnp.asarray(-jnp.inf, dtype), jnp.asarray(0.0, dtype), jnp.asarray(0.0, dtype), jnp.int32(len(order)))
    best_value, rho, rho_srv, winner = jax.lax.reduce((*stacked, positions), start, first_max, (0,))
    found = best_value > -jnp.inf
    price = jnp.where(found, winner // len(vertices[0]), 0)  # every price has the same vertices
    vertex = _Primal(found, jnp.where(found, rho, form.rho_min), jnp.where(found, rho_srv, form.rho_server_min), best_value)
    return price, vertex


# ----------------------------------------------------------------------------- the solver


def _least_delay_energy(form: ConvexForm, spec: SchemeSpec):
    """Lower bounds on T and E over every point of the scheme: T at the pruning lower bounds, full clocks
    and full power; E of the upload alone at p -> 0 (or at P_max if pinned), plus the parts' energy at
    the pruning lower bounds where the clocks are pinned. Either above its budget proves infeasibility."""
    least_delay = (
        form.rho_min * form.delay_device_s
        + form.rho_server_min * form.delay_server_s
        + LN2 / (form.bandwidth_hz * form.max_efficiency) * form.bits
    )
    least_energy = form.bits * _min_joules_per_bit(form, spec.fixed_power)
    if spec.fixed_frequency:
        least_energy = least_energy + form.rho_min * form.energy_device_j + form.rho_server_min * form.energy_server_j
    return least_delay, least_energy


def infeasible_reason(form: ConvexForm, spec: SchemeSpec):
    """DELAY if T0 is missed at the pruning lower bounds, full clocks and full power; else ENERGY if E0 is
    exceeded by the least energy (upload at p -> 0, or at P_max if pinned; compute parts only at
    pinned clocks); else JOINT (each budget alone can be met, not both): :class:`InfeasibleReason`."""
    least_delay, least_energy = _least_delay_energy(form, spec)
    return jnp.where(
        least_delay > form.delay_budget_s,
        InfeasibleReason.DELAY,
        jnp.where(least_energy > form.energy_budget_j, InfeasibleReason.ENERGY, InfeasibleReason.JOINT),
    )


def _solve_form(form: ConvexForm, spec: SchemeSpec, iterations: int):
    y_end, y_top = _search_interval(form)
    dtype = form.value_device.dtype
    fixed = _fixed_terms(form)

    # Bisection on the bit pattern of y, bracket [lo, lo + width]. The width does not depend on the
    # answers (ceil(width/2) after each step: when the lower half is chosen the bracket is kept one ulp
    # wider), so it is a function of the step's index and the loop carries the lower end alone: a
    # step compiles to a single pass that updates one array.
    lo0 = float_bits(y_end)
    width0 = float_bits(y_top) - lo0

    def width(step):  # ceil(width0 / 2^step), without overflow
        return (width0 >> step) + ((width0 & ((jnp.ones_like(width0) << step) - 1)) != 0)

    def bisect(step, lo):
        mid = lo + (width(step) - width(step + 1))
        y = jax.lax.bitcast_convert_type(mid, dtype)
        if spec.fixed_frequency:
            # At fixed clocks with T0 slack the response's energy equals E0 to rounding over a range
            # of prices, so the rounding of the test decides where the search ends: the full
            # knapsack's, which the solver's status tests were set against (the division-free test
            # moved about 2% of the wide test mix's fixed-frequency instances between OPTIMAL and
            # NOT_CONVERGED, mostly to NOT_CONVERGED).
            too_cheap = _knapsack(form, _rates_at(form, y, spec, fixed)).energy_violated
        else:
            too_cheap = _response_exceeds_energy(form, y, spec, fixed)
        return jnp.where(too_cheap, lo, mid)

    lo = jax.lax.fori_loop(0, iterations, bisect, lo0)
    hi = lo + width(iterations)
    low, high = (jax.lax.bitcast_convert_type(b, dtype) for b in (lo, hi))
    # One secant step inside the bracket: on the order margin where the item order flips inside it
    # (then the optimal price is that flip, where h has a kink, and the bracket's ends bound h only to
    # first order in its width), else on the energy excess (h is smooth there: the ends are already
    # second-order close). Always inside [low, high].
    inner = [_rates_at(form, y, spec, fixed) for y in (low, high)]
    k_low, k_high = (_knapsack(form, r) for r in inner)
    flip = k_low.device_first != k_high.device_first
    f_low = jnp.where(flip, k_low.order_margin, k_low.energy_excess)
    f_high = jnp.where(flip, k_high.order_margin, k_high.energy_excess)
    t = jnp.clip(safe_div(f_low, f_low - f_high, 0.5), 0.0, 1.0)
    polished = low + t * (high - low)
    # Candidates: price 0 (y = inf: everything flat out; first, so it wins ties: μ = 0 where E0 is
    # slack) and the polished price, each with its dual bound and primal point. The bracket's ends
    # bound h as well; as primal candidates they win only at fixed clocks (on 1.4e6 random instances
    # of every other scheme they never changed a status and cost 30% of the solve).
    ends = [_flat_out_rates(form, fixed), _rates_at(form, polished, spec, fixed)]
    duals = [_knapsack(form, r) for r in ends]
    if spec.fixed_frequency:  # the response is piecewise in ν there: the secant step can miss the optimum
        ends, duals = ends + inner, duals + [k_low, k_high]
    price, primal = _best_vertex(form, [_vertices(form, r, budget_margin(dtype)) for r in ends])

    def pick(*candidates):
        return functools.reduce(lambda acc, k: jnp.where(price == k, candidates[k], acc), range(1, len(candidates)), candidates[0])

    rates = jax.tree_util.tree_map(pick, *ends)
    dual = jax.tree_util.tree_map(pick, *duals)
    every_dual = duals + [k_low, k_high]  # at fixed clocks the ends appear twice: min/max/and ignore it
    dual_bound = functools.reduce(jnp.minimum, [d.value for d in every_dual])
    # Infeasibility is proved by a knapsack whose lower bounds overflow its aggregated budget, or by a
    # budget below its least possible value (needed where the proving price lies beyond the search).
    least_delay, least_energy = _least_delay_energy(form, spec)
    overload = functools.reduce(
        jnp.maximum,
        [jnp.where(jnp.isfinite(o), o, -jnp.inf) for o in  # a non-finite overload (overflow) proves nothing
         [d.overload for d in every_dual]
         + [least_delay / form.delay_budget_s - 1.0, least_energy / form.energy_budget_j - 1.0]],
    )
    certified_infeasible = overload > 0
    return rates, primal, dual, dual_bound, certified_infeasible, overload


@functools.partial(jax.jit, static_argnames=("scheme", "iterations"))
def solve_exact(
    problem: Problem,
    scheme: str = "proposed",
    *,
    iterations: int = DEFAULT_ITERATIONS,
    gap_tol: float | None = None,
) -> Solution:
    """Globally optimal (ρ, f, p, ρ̃, f̃) of (P1) for ``scheme``, with a duality-gap certificate.

    Args:
      problem: a Problem whose leaves may carry any common batch shape (float64 recommended).
      scheme: one of :data:`~laimco_jax.solvers.schemes.SCHEMES`.
      iterations: bisection steps on the bit pattern of the price parameter y before the one secant
        step (each halves the interval of float64 bit patterns; tests/test_solver_reliability.py
        checks the certified gap on random instances of every scheme).
      gap_tol: relative duality gap below which the status is OPTIMAL; default 1e-9 in float64 and
        1000 machine epsilons in lower precision (1.2e-4 in float32).

    Returns:
      A :class:`~laimco_jax.solvers.solution.Solution`. Infeasible instances get status INFEASIBLE, a
      reason code, and the pruning lower bounds at full clocks and power as their (violating) point;
      no field is NaN.

    A batch of more than a few thousand instances is faster in blocks over every core
    (:func:`~laimco_jax.solvers.batching.map_devices` inside a top-level ``jax.jit`` compiled with
    :data:`~laimco_jax.solvers.numerics.VECTOR_COMPILER_OPTIONS`): on this project's VM one call on
    6.5·10⁴ instances, whose intermediates no longer fit in cache, takes 0.65 µs per instance, blocks
    of 4,096 0.50 µs on one core and 0.34 µs over two (docs/performance.md).
    """
    spec = scheme_spec(scheme)
    problem = scheme_problem(problem, scheme)
    form = convex_form(problem, spec)
    chex.assert_type(list(form), float)  # trace-time checks: every coefficient floating, one shape
    chex.assert_equal_shape(list(form))
    if gap_tol is None:
        gap_tol = max(DEFAULT_GAP_TOL, 1e3 * float(jnp.finfo(form.value_device.dtype).eps))
    rates, primal, dual, dual_bound, certified_infeasible, overload = _solve_form(form, spec, iterations)
    system = problem.system
    floor = ~primal.feasible  # no point found: the pruning lower bounds at full clocks and power
    rho = jnp.where(floor, form.rho_min, primal.rho)
    rho_srv = jnp.where(floor, form.rho_server_min, primal.rho_server)
    slow_dev = jnp.where(floor, 1.0, rates.slowdown_device)
    slow_srv = jnp.where(floor, 1.0, rates.slowdown_server)
    y = jnp.where(floor, form.max_efficiency, rates.efficiency)
    point = OperatingPoint(
        rho=rho,
        f_device_hz=jnp.where(form.delay_device_s > 0, system.f_max_device_hz / slow_dev, 0.0),
        # At the largest efficiency the power is P_max itself, not k·expm1(log1p(P_max/k)) an ulp below it
        # (which would put a point on the least delay an ulp over its budget).
        p_w=jnp.where(form.bits > 0, jnp.where(y >= form.max_efficiency, system.p_max_w,
                                               jnp.minimum(form.link_power_w * jnp.expm1(y), system.p_max_w)), 0.0),
        rho_server=rho_srv,
        f_server_hz=jnp.where(form.delay_server_s > 0, system.f_max_server_hz / slow_srv, 0.0),
    )
    # The verdict is computed on the returned point itself, re-evaluated in physical units: it meets
    # both budgets (eqs. (10), (11)) or it is not called feasible, and its gap is measured against
    # its own ρq + ρ̃s (weak duality: the dual bound is never below it, up to rounding).
    terms = evaluate(problem.system, problem.model, point)
    excess = budget_excess(terms, problem.budget)
    meets_budgets = excess <= 0
    # A point meeting both budgets refutes a proof of infeasibility: only rounding gives both (an overload
    # of an ulp where T0 is the least possible delay, computed in other arithmetic than eq. (10)).
    infeasible = ~primal.feasible & certified_infeasible & ~meets_budgets
    retained = rho * form.value_device + rho_srv * form.value_server
    upper = jnp.where(infeasible, 0.0, jnp.maximum(dual_bound, retained))
    gap = (upper - retained) / (form.value_device + form.value_server)
    status = jnp.where(
        infeasible,
        Status.INFEASIBLE,
        jnp.where(meets_budgets, jnp.where(gap <= gap_tol, Status.OPTIMAL, Status.NOT_CONVERGED), Status.UNRESOLVED),
    )
    certificate = jnp.where(infeasible, overload, jnp.where(meets_budgets, gap, excess))
    delay_mult = jnp.where(infeasible, 0.0, dual.multiplier)
    return make_solution(
        problem,
        point,
        status=status,
        infeasible_reason=jnp.where(infeasible, infeasible_reason(form, spec), InfeasibleReason.NONE),
        upper_bound=upper,
        certificate=certificate,
        delay_multiplier=delay_mult,
        energy_multiplier=delay_mult * rates.price,
        iterations=iterations,
        terms=terms,
    )
