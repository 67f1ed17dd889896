"""Sensitivity of the optimum of (P1): implicit differentiation of its optimality conditions.

At an optimum found by :func:`~laimco_jax.solvers.solve_exact`, the unknowns
z = (ρ, ρ̃, λ, μ, y) — the remaining fractions, the multipliers of the delay (44a) and energy (44b)
budgets for the objective ρq + ρ̃s, and the uplink spectral efficiency y = ln(1 + g p/(B N0)) — solve
a square system F(z, problem) = 0 on the active set (the convex form of docs/theory.md#convex-reformulation):

* ρ free: q - λ T_d ψ - μ E_d/ψ² = 0 (marginal value = marginal cost); ρ at a bound: ρ = bound.
  Likewise ρ̃. The clocks follow the price: ψ = f_max/f = max(1, (μ/(λ ν_d))^(1/3)).
* delay budget active: T = T0; inactive: λ = 0. Energy budget active: E = E0; inactive: μ = 0.
* link free: μ k Λ(y) = λ with Λ(y) = e^y (y - 1) + 1, k = B N0/g; at P_max (or pinned): y = y_max.

The implicit function theorem then gives dz/d(problem) (a ``jax.custom_jvp`` on the KKT system), and
the outputs (log2 D̂, ρ, ρ̃, f, p, f̃) are differentiable functions of z and the problem. Everything
works under ``jit``, ``vmap`` and ``grad``.

Where the derivative is defined. The optimum is piecewise smooth in the inputs; at a change of the
active set (a pruning ratio reaching 0 or 1, a clock reaching its maximum, the power reaching P_max,
a budget becoming slack) the one-sided derivatives differ and this module returns the derivative of
the piece the solution lies on. At an active box constraint the pinned variable has derivative 0
(ρ = 1 stays 1), f = f_max moves only with f_max, p = P_max only with P_max. Where both budgets are
slack (the unpruned model fits), the clocks and power are not unique and their derivatives are 0.
By the envelope theorem, d(ρq + ρ̃s)*/dT0 = λ and d(ρq + ρ̃s)*/dE0 = μ (tested).

Singular systems. Where ∂F/∂z is numerically singular at a found optimum (a degenerate active set,
e.g. both ratios interior on a tie of their values per second: a face of optima), the derivatives
are not known. They are reported as 0 (finite, so reverse mode through a masked batch stays free of
NaN) and the instance is flagged: every dict of derivatives carries a bool array under
:data:`SINGULAR` ("singular"), True exactly there.

Why a hand-written ``custom_jvp`` and not ``jaxopt.implicit_diff.custom_root``. ``custom_root``
attaches a ``custom_vjp``, so it supports reverse mode only: ``jax.jvp``/``jax.jacfwd`` through it
raise "can't apply forward-mode autodiff (jvp) to a custom_vjp function" (tried with jaxopt 0.8.5).
This module needs forward mode: a sweep stores d(output)/d(field) for a few fields (one JVP each,
:func:`field_derivatives`), and the full Jacobian has 7 outputs but 25 fields. Its linear solves
would also go through a matrix-free solver (normal-equation CG by default), where the 5 x 5 KKT
systems are solved exactly by :func:`~laimco_jax.solvers.numerics.solve_small` (no batched LAPACK,
which deadlocks on CPU, see there), whose pivots also give the singular flag.
"""

from __future__ import annotations

import functools
from typing import Any, NamedTuple

import chex
import jax
import jax.numpy as jnp
from jax.flatten_util import ravel_pytree

from laimco_jax import distortion
from laimco_jax.params import FIELD_SECTION, ConfigError, Problem
from laimco_jax.solvers.convex_form import ConvexForm, convex_form, link_rates, link_stationarity, slowdown
from laimco_jax.solvers.exact import solve_exact
from laimco_jax.solvers.numerics import broadcast_leaves, cbrt, safe_div, solve_small
from laimco_jax.solvers.schemes import SchemeSpec, scheme_problem, scheme_spec
from laimco_jax.solvers.solution import found_point
from laimco_jax.system import LN2

__all__ = [
    "OUTPUTS", "SINGULAR", "OptimumOutputs", "sensitivities", "sensitivities_at", "field_derivatives", "elasticities",
]

#: A bound is active when the variable is within this relative distance of it.
_ACTIVE_TOL = 1e-9


class OptimumOutputs(NamedTuple):
    """The optimum as differentiable functions of the problem."""

    log2_distortion_bound: Any
    rho: Any
    rho_server: Any
    f_device_hz: Any
    p_w: Any
    f_server_hz: Any
    retained_params: Any


OUTPUTS = OptimumOutputs._fields
#: Key of the flag, in the dicts of derivatives, of optima whose KKT system is singular.
SINGULAR = "singular"


class _ActiveSet(NamedTuple):
    """Float masks (1 = active) and pinned values; not differentiated."""

    rho_free: Any
    rho_server_free: Any
    rho_pinned: Any
    rho_server_pinned: Any
    delay_active: Any
    energy_active: Any
    link_free: Any
    link_at_max: Any  # p = P_max
    efficiency: Any  # the solver's y
    slowdown_device: Any  # the solver's f_max/f
    slowdown_server: Any


def _slowdown(free_price, lam, mu, pinned, fixed_frequency: bool):
    """f_max/f of :func:`~laimco_jax.solvers.convex_form.slowdown` at the price ν = μ/λ; the solver's
    value where λ = 0."""
    ratio = safe_div(mu, lam, 0.0) / free_price
    return jnp.where(lam > 0, slowdown(cbrt(ratio), 1.0, fixed_frequency), pinned)


def _optimality(z, problem: Problem, active: _ActiveSet, spec: SchemeSpec):
    """F(z, problem), zero at the optimum (see the module docstring); each row scaled to O(1)."""
    rho, rho_srv, lam, mu, y = z
    form = convex_form(problem, spec)
    psi_dev = _slowdown(form.free_price_device, lam, mu, active.slowdown_device, spec.fixed_frequency)
    psi_srv = _slowdown(form.free_price_server, lam, mu, active.slowdown_server, spec.fixed_frequency)
    total = form.value_device + form.value_server
    expm1_y = jnp.expm1(y)
    seconds_per_bit, joules_per_bit = link_rates(form, y, expm1_y)
    delay = rho * form.delay_device_s * psi_dev + rho_srv * form.delay_server_s * psi_srv + form.bits * seconds_per_bit
    energy = rho * form.energy_device_j / psi_dev**2 + rho_srv * form.energy_server_j / psi_srv**2 + form.bits * joules_per_bit
    marginal_dev = form.value_device - lam * form.delay_device_s * psi_dev - mu * form.energy_device_j / psi_dev**2
    marginal_srv = form.value_server - lam * form.delay_server_s * psi_srv - mu * form.energy_server_j / psi_srv**2
    link_balance = mu * form.link_power_w * link_stationarity(y, expm1_y) - lam
    lam_scale = total / form.delay_budget_s
    return jnp.stack([
        jnp.where(active.rho_free > 0, marginal_dev / total, rho - active.rho_pinned),
        jnp.where(active.rho_server_free > 0, marginal_srv / total, rho_srv - active.rho_server_pinned),
        jnp.where(active.delay_active > 0, delay / form.delay_budget_s - 1.0, lam / lam_scale),
        jnp.where(active.energy_active > 0, energy / form.energy_budget_j - 1.0, mu * form.energy_budget_j / total),
        jnp.where(
            active.link_free > 0,
            link_balance / lam_scale,
            y - jnp.where(active.link_at_max > 0, form.max_efficiency, active.efficiency),
        ),
    ])


@functools.lru_cache(maxsize=None)
def _kkt_point(scheme: str):
    """z* as a function of the problem, differentiated by the implicit function theorem.

    Returns ``z0`` (the solver's optimum, passed in); its tangent is -(∂F/∂z)^-1 (∂F/∂problem)·dproblem,
    a linear map, so forward and reverse mode both work. Where ∂F/∂z is singular the tangent is 0
    (finite in both modes) and :func:`_kkt_singular` flags the instance.
    """
    spec = scheme_spec(scheme)

    @jax.custom_jvp
    def kkt_point(z0, problem, active):
        del problem, active
        return z0

    @kkt_point.defjvp
    def kkt_point_jvp(primals, tangents):
        z0, problem, active = primals
        _, d_problem, _ = tangents
        _, d_residual = jax.jvp(lambda p: _optimality(z0, p, active, spec), (problem,), (d_problem,))
        solved = solve_small(jax.jacfwd(lambda z: _optimality(z, problem, active, spec))(z0), d_residual)
        return z0, jnp.where(solved.singular, 0.0, -solved.x)

    return kkt_point


def _active_set(form: ConvexForm, system, solution, spec: SchemeSpec) -> _ActiveSet:
    def free(rho, lower):
        return ((rho > lower + _ACTIVE_TOL) & (rho < 1.0 - _ACTIVE_TOL)).astype(rho.dtype)

    def pinned(rho, lower):
        return jnp.where(rho <= lower + _ACTIVE_TOL, lower, 1.0)

    y = jnp.where(solution.p_w > 0, jnp.log1p(solution.p_w / form.link_power_w), form.max_efficiency)
    at_max = spec.fixed_power | (y >= form.max_efficiency * (1.0 - _ACTIVE_TOL))
    link_free = (form.bits > 0) & (solution.delay_multiplier > 0) & ~at_max
    dtype = form.value_device.dtype

    return _ActiveSet(
        rho_free=free(solution.rho, form.rho_min) * (form.value_device > 0),
        rho_server_free=free(solution.rho_server, form.rho_server_min) * (form.value_server > 0),
        rho_pinned=pinned(solution.rho, form.rho_min),
        rho_server_pinned=pinned(solution.rho_server, form.rho_server_min),
        delay_active=(solution.delay_multiplier > 0).astype(dtype),
        energy_active=(solution.energy_multiplier > 0).astype(dtype),
        link_free=link_free.astype(dtype),
        link_at_max=at_max.astype(dtype),
        efficiency=y,
        slowdown_device=safe_div(system.f_max_device_hz, solution.f_device_hz, 1.0),
        slowdown_server=safe_div(system.f_max_server_hz, solution.f_server_hz, 1.0),
    )


class _Kkt(NamedTuple):
    """The KKT system at a solution of one instance (see :func:`_kkt`)."""

    spec: SchemeSpec
    problem: Problem  # re-split for the scheme
    form: ConvexForm
    active: _ActiveSet
    z0: Any  # the solver's (ρ, ρ̃, λ, μ, y)


def _kkt(problem: Problem, solution, scheme: str) -> _Kkt:
    """The scheme's problem, its convex form, and the active set and unknowns at ``solution``
    (solve_exact's, not differentiated)."""
    spec = scheme_spec(scheme)
    solved = scheme_problem(problem, scheme)
    form = convex_form(solved, spec)
    solution = jax.lax.stop_gradient(solution)
    active = _active_set(jax.lax.stop_gradient(form), jax.lax.stop_gradient(solved.system), solution, spec)
    z0 = jnp.stack([solution.rho, solution.rho_server, solution.delay_multiplier, solution.energy_multiplier, active.efficiency])
    return _Kkt(spec, solved, form, active, z0)


def _kkt_singular(problem: Problem, solution, scheme: str):
    """Whether ``solution`` is a point whose KKT Jacobian ∂F/∂z is (numerically) singular: its
    derivatives are then reported as 0 though they are not known (a degenerate active set)."""
    kkt = _kkt(jax.lax.stop_gradient(problem), solution, scheme)
    jac_z = jax.jacfwd(lambda z: _optimality(z, kkt.problem, kkt.active, kkt.spec))(kkt.z0)
    return found_point(solution.status) & solve_small(jac_z, jnp.zeros_like(kkt.z0)).singular


def _outputs_at(problem: Problem, solution, scheme: str) -> OptimumOutputs:
    """The outputs at ``solution`` (solve_exact's, not differentiated), differentiable in ``problem``."""
    spec, solved, form, active, z0 = _kkt(problem, solution, scheme)
    rho, rho_srv, lam, mu, y = _kkt_point(scheme)(z0, solved, active)
    psi_dev = _slowdown(form.free_price_device, lam, mu, active.slowdown_device, spec.fixed_frequency)
    psi_srv = _slowdown(form.free_price_server, lam, mu, active.slowdown_server, spec.fixed_frequency)
    system, model = solved.system, solved.model
    p_w = jnp.where(active.link_at_max > 0, system.p_max_w, form.link_power_w * jnp.expm1(y))
    outputs = OptimumOutputs(
        log2_distortion_bound=distortion.log2_distortion_bound(
            rho, rho_srv, model.params_device, model.params_server, model.bits_per_weight, model.entropy_bits
        ),
        rho=rho,
        rho_server=rho_srv,
        f_device_hz=jnp.where(form.delay_device_s > 0, system.f_max_device_hz / psi_dev, 0.0),
        p_w=jnp.where(form.bits > 0, p_w, 0.0),
        f_server_hz=jnp.where(form.delay_server_s > 0, system.f_max_server_hz / psi_srv, 0.0),
        retained_params=rho * model.params_device + rho_srv * model.params_server,
    )
    feasible = found_point(solution.status)
    return jax.tree_util.tree_map(lambda x: jnp.where(feasible, x, jax.lax.stop_gradient(x)), outputs)


def _per_instance(fn, problem: Problem, solution):
    """``fn(problem, solution)`` for one scalar instance, vmapped over the (broadcast) batch.

    The KKT Jacobian of :func:`_kkt_point` is per instance; without the vmap it would couple the batch.
    """
    problem = broadcast_leaves(problem)
    for _ in range(jnp.ndim(solution.rho)):
        fn = jax.vmap(fn)
    return fn(problem, solution)


@functools.partial(jax.jit, static_argnames=("scheme",))
def _jacobians_at(problem: Problem, solution, scheme: str):
    """The outputs, their Jacobian and the singular flag at a (batched) solution, vmapped over the batch."""

    def one(p, sol):
        # Forward mode over the raveled fields: one vmapped JVP.
        flat, unravel = ravel_pytree(p)
        columns = jax.jacfwd(lambda v: _outputs_at(unravel(v), sol, scheme))(flat)
        return jax.tree_util.tree_map(unravel, columns), _outputs_at(p, sol, scheme), _kkt_singular(p, sol, scheme)

    return _per_instance(one, problem, solution)


@functools.partial(jax.jit, static_argnames=("scheme", "fields"))
def field_derivatives(problem: Problem, solution, scheme: str, fields: tuple[str, ...]) -> dict[str, Any]:
    """d(output)/d(field) of every output at a known ``solve_exact(problem, scheme)``, for a few fields.

    One forward-mode JVP per field (a sweep storing a few derivatives needs no full Jacobian).
    Returns ``{field: OptimumOutputs of derivatives}``, in the field's units as :func:`sensitivities`,
    and ``{"singular": flag}`` (bool, batch shape; see :func:`sensitivities`).
    Raises ConfigError for a name that is not a configuration field (it would differentiate nothing).
    """
    unknown = [field for field in fields if field not in FIELD_SECTION]
    if unknown:
        raise ConfigError(f"fields = {unknown!r}: not configuration fields; allowed: {', '.join(FIELD_SECTION)}")

    def one(p, sol):
        def along(field):
            tangent = jax.tree_util.tree_map_with_path(
                lambda path, x: jnp.full_like(x, path[-1].name == field), p
            )
            return jax.jvp(lambda q: _outputs_at(q, sol, scheme), (p,), (tangent,))[1]

        return {**{field: along(field) for field in fields}, SINGULAR: _kkt_singular(p, sol, scheme)}

    return _per_instance(one, problem, solution)


def sensitivities_at(problem: Problem, solution, scheme: str = "proposed") -> dict[str, Any]:
    """:func:`sensitivities` at a known ``solve_exact(problem, scheme)`` (e.g. inside a sweep)."""
    jacobian, _, singular = _jacobians_at(problem, solution, scheme)
    return {**{name: getattr(jacobian, name) for name in OUTPUTS}, SINGULAR: singular}


def _checked(problem: Problem) -> Problem:
    """``problem`` with every leaf broadcast to the batch shape; asserts floating leaves."""
    problem = broadcast_leaves(problem)
    chex.assert_type(jax.tree_util.tree_leaves(problem), float)
    return problem


def sensitivities(problem: Problem, scheme: str = "proposed") -> dict[str, Any]:
    """d(output)/d(field) for every output of :class:`OptimumOutputs` and every problem field.

    Returns ``{output name: Problem-shaped pytree of derivatives}`` in the problem's units (e.g.
    ``result["rho"].budget.delay_s`` is dρ*/dT0 in 1/s), and under ``"singular"`` a bool array of the
    batch shape: True where the optimum was found but its KKT system is singular, so that the
    derivatives reported there (0) are not known. Leaves may carry a batch shape: the problem is
    solved once for the whole batch and the implicit Jacobian vmapped over it.
    """
    problem = _checked(problem)
    return sensitivities_at(problem, solve_exact(problem, scheme), scheme)


def elasticities(problem: Problem, scheme: str = "proposed") -> dict[str, Any]:
    """d ln(output)/d ln(field) = (field/output)·d(output)/d(field), dimensionless.

    For ``log2_distortion_bound`` the elasticity of D̂ itself is returned: ln2·field·d log2 D̂/d field.
    Where the output is 0 the elasticity is reported as 0. ``"singular"`` as in :func:`sensitivities`.
    """
    problem = _checked(problem)
    jacobian, values, singular = _jacobians_at(problem, solve_exact(problem, scheme), scheme)
    chex.assert_trees_all_equal_shapes(jacobian.rho, problem)
    out = {
        "log2_distortion_bound": jax.tree_util.tree_map(
            lambda g, x: LN2 * g * x, jacobian.log2_distortion_bound, problem
        )
    }
    for name in OUTPUTS[1:]:
        value = getattr(values, name)
        out[name] = jax.tree_util.tree_map(lambda g, x: safe_div(g * x, value, 0.0), getattr(jacobian, name), problem)
    out[SINGULAR] = singular
    return out
