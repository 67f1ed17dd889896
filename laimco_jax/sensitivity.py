"""Sensitivity of the optimum of (P1): implicit differentiation of its optimality conditions.

At an optimum found by :func:`~laimco_jax.solvers.solve_exact`, the unknowns
z = (ρ, ρ̃, λ, μ, y) — the remaining fractions, the multipliers of the delay (44a) and energy (44b)
budgets for the objective ρq + ρ̃s, and the uplink spectral efficiency y = ln(1 + g p/(B N0)) — solve
a square system F(z, problem) = 0 on the active set (the convex form of docs/theory.md#convex-reformulation):

* ρ free: q - λ T_d s - μ E_d/s² = 0 (marginal value = marginal cost); ρ at a bound: ρ = bound.
  Likewise ρ̃. The clocks follow the price: s = f_max/f = max(1, (μ/(λ ν_d))^(1/3)).
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
"""

from __future__ import annotations

import functools
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
from jax.flatten_util import ravel_pytree

from laimco_jax import distortion
from laimco_jax.params import FIELD_SECTION, ConfigError, Problem
from laimco_jax.solvers.exact import ConvexForm, convex_form, solve_exact
from laimco_jax.solvers.schemes import SchemeSpec, scheme_problem, scheme_spec
from laimco_jax.solvers.solution import found_point
from laimco_jax.system import LN2

__all__ = [
    "OUTPUTS", "OptimumOutputs", "optimum_outputs", "sensitivities", "sensitivities_at", "field_derivatives", "elasticities",
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
    """f_max/f = max(1, (ν/ν_free)^(1/3)) at the price ν = μ/λ; the solver's value where λ = 0."""
    if fixed_frequency:
        return jnp.ones_like(lam)
    price = mu / jnp.where(lam > 0, lam, 1.0)
    return jnp.where(lam > 0, jnp.maximum(1.0, jnp.cbrt(price / free_price)), pinned)


def _link(form: ConvexForm, y):
    """Seconds per bit and joules per bit at efficiency y (eqs. (6), (7) per bit)."""
    seconds_per_bit = LN2 / (form.bandwidth_hz * y)
    return seconds_per_bit, form.link_power_w * jnp.expm1(y) * seconds_per_bit


def _optimality(z, problem: Problem, active: _ActiveSet, spec: SchemeSpec):
    """F(z, problem), zero at the optimum (see the module docstring); each row scaled to O(1)."""
    rho, rho_srv, lam, mu, y = z
    form = convex_form(problem, spec)
    s_dev = _slowdown(form.free_price_device, lam, mu, active.slowdown_device, spec.fixed_frequency)
    s_srv = _slowdown(form.free_price_server, lam, mu, active.slowdown_server, spec.fixed_frequency)
    total = form.value_device + form.value_server
    seconds_per_bit, joules_per_bit = _link(form, y)
    delay = rho * form.delay_device_s * s_dev + rho_srv * form.delay_server_s * s_srv + form.bits * seconds_per_bit
    energy = rho * form.energy_device_j / s_dev**2 + rho_srv * form.energy_server_j / s_srv**2 + form.bits * joules_per_bit
    marginal_dev = form.value_device - lam * form.delay_device_s * s_dev - mu * form.energy_device_j / s_dev**2
    marginal_srv = form.value_server - lam * form.delay_server_s * s_srv - mu * form.energy_server_j / s_srv**2
    expm1_y = jnp.expm1(y)
    link_stationarity = mu * form.link_power_w * (y + (y - 1.0) * expm1_y) - lam
    lam_scale = total / form.delay_budget_s
    return jnp.stack([
        jnp.where(active.rho_free > 0, marginal_dev / total, rho - active.rho_pinned),
        jnp.where(active.rho_server_free > 0, marginal_srv / total, rho_srv - active.rho_server_pinned),
        jnp.where(active.delay_active > 0, delay / form.delay_budget_s - 1.0, lam / lam_scale),
        jnp.where(active.energy_active > 0, energy / form.energy_budget_j - 1.0, mu * form.energy_budget_j / total),
        jnp.where(
            active.link_free > 0,
            link_stationarity / lam_scale,
            y - jnp.where(active.link_at_max > 0, form.max_efficiency, active.efficiency),
        ),
    ])


def _solve_small(a, b):
    """x with a x = b for one small square system (n = 5 here): Gaussian elimination with partial
    pivoting, unrolled into elementwise operations (vmapped over instances by the callers).

    Not ``jnp.linalg.solve``: on CPU (jaxlib 0.10.2) two batched LAPACK solves that XLA runs
    concurrently in one program deadlock its thread pool (two stored gradients in a sweep hung), and
    for 5 x 5 systems a batched LAPACK call is slower than these few vector operations anyway.
    A singular ``a`` gives non-finite entries (the caller maps them to 0).
    """
    n = a.shape[-1]
    m = jnp.concatenate([a, b.reshape(n, -1)], axis=1)
    for k in range(n):
        pivot = k + jnp.argmax(jnp.abs(m[k:, k]))
        row_k, row_pivot = m[k], m[pivot]
        m = m.at[pivot].set(row_k).at[k].set(row_pivot)
        m = m.at[k + 1 :].add(-(m[k + 1 :, k] / m[k, k])[:, None] * m[k])
    x = jnp.zeros_like(m[:, n:])
    for k in reversed(range(n)):
        x = x.at[k].set((m[k, n:] - m[k, k + 1 : n] @ x[k + 1 :]) / m[k, k])
    return x.reshape(b.shape)


@functools.lru_cache(maxsize=None)
def _kkt_point(scheme: str):
    """z* as a function of the problem, differentiated by the implicit function theorem.

    Returns ``z0`` (the solver's optimum, passed in); its tangent is -(∂F/∂z)^-1 (∂F/∂problem)·dproblem,
    a linear map, so forward and reverse mode both work.
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
        jac_z = jax.jacfwd(_optimality)(z0, problem, active, spec)
        _, d_residual = jax.jvp(lambda p: _optimality(z0, p, active, spec), (problem,), (d_problem,))
        d_z = -_solve_small(jac_z, d_residual)
        # A singular system (degenerate or infeasible instance) gives no derivative, never NaN.
        return z0, jnp.where(jnp.all(jnp.isfinite(d_z)), d_z, 0.0)

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

    def slowdown(f_max, f):
        return jnp.where(f > 0, f_max / jnp.where(f > 0, f, 1.0), 1.0)

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
        slowdown_device=slowdown(system.f_max_device_hz, solution.f_device_hz),
        slowdown_server=slowdown(system.f_max_server_hz, solution.f_server_hz),
    )


def _outputs_at(problem: Problem, solution, scheme: str) -> OptimumOutputs:
    """The outputs at ``solution`` (solve_exact's, not differentiated), differentiable in ``problem``."""
    spec = scheme_spec(scheme)
    solved = scheme_problem(problem, scheme)
    form = convex_form(solved, spec)
    solution = jax.lax.stop_gradient(solution)
    constant_form = jax.lax.stop_gradient(form)
    active = _active_set(constant_form, jax.lax.stop_gradient(solved.system), solution, spec)
    z0 = jnp.stack([solution.rho, solution.rho_server, solution.delay_multiplier, solution.energy_multiplier, active.efficiency])
    rho, rho_srv, lam, mu, y = _kkt_point(scheme)(z0, solved, active)
    s_dev = _slowdown(form.free_price_device, lam, mu, active.slowdown_device, spec.fixed_frequency)
    s_srv = _slowdown(form.free_price_server, lam, mu, active.slowdown_server, spec.fixed_frequency)
    system, model = solved.system, solved.model
    p_w = jnp.where(active.link_at_max > 0, system.p_max_w, form.link_power_w * jnp.expm1(y))
    outputs = OptimumOutputs(
        log2_distortion_bound=distortion.log2_distortion_bound(
            rho, rho_srv, model.params_device, model.params_server, model.bits_per_weight, model.entropy_bits
        ),
        rho=rho,
        rho_server=rho_srv,
        f_device_hz=jnp.where(form.delay_device_s > 0, system.f_max_device_hz / s_dev, 0.0),
        p_w=jnp.where(form.bits > 0, p_w, 0.0),
        f_server_hz=jnp.where(form.delay_server_s > 0, system.f_max_server_hz / s_srv, 0.0),
        retained_params=rho * model.params_device + rho_srv * model.params_server,
    )
    feasible = found_point(solution.status)
    return jax.tree_util.tree_map(lambda x: jnp.where(feasible, x, jax.lax.stop_gradient(x)), outputs)


def optimum_outputs(problem: Problem, scheme: str = "proposed") -> OptimumOutputs:
    """The optimum of (P1) for a scalar problem, differentiable with respect to every field.

    The values equal :func:`solve_exact`'s; their derivatives come from the implicit function
    theorem on the active optimality conditions. Infeasible instances give zero derivatives.
    """
    return _outputs_at(problem, solve_exact(problem, scheme), scheme)


def _broadcast(problem: Problem) -> Problem:
    """Every leaf as an array of the problem's common batch shape (so it can be vmapped)."""
    problem = jax.tree_util.tree_map(jnp.asarray, problem)
    batch_shape = jnp.broadcast_shapes(*(jnp.shape(x) for x in jax.tree_util.tree_leaves(problem)))
    return jax.tree_util.tree_map(lambda x: jnp.broadcast_to(x, batch_shape), problem)


def _per_instance(fn, problem: Problem, solution):
    """``fn(problem, solution)`` for one scalar instance, vmapped over the (broadcast) batch.

    The KKT Jacobian of :func:`_kkt_point` is per instance; without the vmap it would couple the batch.
    """
    problem = _broadcast(problem)
    for _ in range(jnp.ndim(solution.rho)):
        fn = jax.vmap(fn)
    return fn(problem, solution)


@functools.partial(jax.jit, static_argnames=("scheme",))
def _jacobians_at(problem: Problem, solution, scheme: str):
    """The outputs and their Jacobian at a (batched) solution, vmapped over the batch."""

    def one(p, sol):
        # Forward mode over the raveled fields: one vmapped JVP.
        flat, unravel = ravel_pytree(p)
        columns = jax.jacfwd(lambda v: _outputs_at(unravel(v), sol, scheme))(flat)
        return jax.tree_util.tree_map(unravel, columns), _outputs_at(p, sol, scheme)

    return _per_instance(one, problem, solution)


@functools.partial(jax.jit, static_argnames=("scheme", "fields"))
def field_derivatives(problem: Problem, solution, scheme: str, fields: tuple[str, ...]) -> dict[str, OptimumOutputs]:
    """d(output)/d(field) of every output at a known ``solve_exact(problem, scheme)``, for a few fields.

    One forward-mode JVP per field (a sweep storing a few derivatives needs no full Jacobian).
    Returns ``{field: OptimumOutputs of derivatives}``, in the field's units as :func:`sensitivities`.
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

        return {field: along(field) for field in fields}

    return _per_instance(one, problem, solution)


def sensitivities_at(problem: Problem, solution, scheme: str = "proposed") -> dict[str, Problem]:
    """:func:`sensitivities` at a known ``solve_exact(problem, scheme)`` (e.g. inside a sweep)."""
    jacobian, _ = _jacobians_at(problem, solution, scheme)
    return {name: getattr(jacobian, name) for name in OUTPUTS}


def sensitivities(problem: Problem, scheme: str = "proposed") -> dict[str, Problem]:
    """d(output)/d(field) for every output of :class:`OptimumOutputs` and every problem field.

    Returns ``{output name: Problem-shaped pytree of derivatives}`` in the problem's units (e.g.
    ``result["rho"].budget.delay_s`` is dρ*/dT0 in 1/s). Leaves may carry a batch shape: the
    problem is solved once for the whole batch and the implicit Jacobian vmapped over it.
    """
    problem = _broadcast(problem)
    return sensitivities_at(problem, solve_exact(problem, scheme), scheme)


def elasticities(problem: Problem, scheme: str = "proposed") -> dict[str, Problem]:
    """d ln(output)/d ln(field) = (field/output)·d(output)/d(field), dimensionless.

    For ``log2_distortion_bound`` the elasticity of D̂ itself is returned: ln2·field·d log2 D̂/d field.
    Where the output is 0 the elasticity is reported as 0.
    """
    problem = _broadcast(problem)
    jacobian, values = _jacobians_at(problem, solve_exact(problem, scheme), scheme)
    out = {
        "log2_distortion_bound": jax.tree_util.tree_map(
            lambda g, x: LN2 * g * x, jacobian.log2_distortion_bound, problem
        )
    }
    for name in OUTPUTS[1:]:
        value = getattr(values, name)
        safe = jnp.where(value != 0, value, 1.0)
        out[name] = jax.tree_util.tree_map(
            lambda g, x: jnp.where(value != 0, g * x / safe, 0.0), getattr(jacobian, name), problem
        )
    return out
