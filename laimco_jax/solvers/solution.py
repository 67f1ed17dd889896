"""The result of solving (P1): a :class:`Solution` pytree shared by every solver."""

from __future__ import annotations

import enum
from typing import Any, NamedTuple

import jax.numpy as jnp

from laimco_jax import distortion
from laimco_jax.params import Budget, Problem
from laimco_jax.system import OperatingPoint, SystemTerms, evaluate

__all__ = [
    "Status",
    "InfeasibleReason",
    "Solution",
    "make_solution",
    "budget_excess",
    "found_point",
    "budget_margin",
    "INFEASIBLE_REASON_TEXT",
]



class Status(enum.IntEnum):
    """Outcome of a solve, stored as int32 in :attr:`Solution.status`."""

    OPTIMAL = 0  # certificate (relative duality gap) within tolerance
    INFEASIBLE = 1  # no (ρ, f, p, ρ̃, f̃) meets both budgets; see InfeasibleReason
    NOT_CONVERGED = 2  # a point that meets both budgets, whose certificate exceeds the tolerance
    UNRESOLVED = 3  # neither a point that meets both budgets nor a proof of infeasibility was found


class InfeasibleReason(enum.IntEnum):
    """Why an instance is infeasible, stored as int32 in :attr:`Solution.infeasible_reason`."""

    NONE = 0
    DELAY = 1  # T0 is too short even at the pruning lower bounds, f = f_max, f̃ = f̃_max, p = P_max
    ENERGY = 2  # E0 is too small even at the pruning lower bounds and the least-energy clocks/power
    JOINT = 3  # each budget alone can be met, but not both at once


INFEASIBLE_REASON_TEXT = {
    InfeasibleReason.NONE: "",
    InfeasibleReason.DELAY: "the delay budget cannot be met even with the least pruning-bound workload "
    "at maximum clocks and maximum power",
    InfeasibleReason.ENERGY: "the energy budget cannot be met even with the least pruning-bound workload "
    "at the least-energy clocks and power",
    InfeasibleReason.JOINT: "each budget can be met alone but not both together",
}


class Solution(NamedTuple):
    """A solution of (P1) in physical units, with its certificate.

    ``retained_params`` is ρq + ρ̃s, the quantity whose maximisation is equivalent to minimising D̂;
    ``upper_bound`` is a proven upper bound on it (a dual value) and ``certificate`` the relative
    duality gap (upper_bound - retained_params) / (q + s). For an infeasible instance ``upper_bound``
    is 0 and ``certificate`` is the relative amount by which the pruning lower bounds exceed the
    aggregated budget T0 + ν E0 at the returned price (positive: a proof of infeasibility). For an
    UNRESOLVED instance (no point found that meets both budgets, no proof of infeasibility: the budgets
    lie within rounding of the feasible set's edge, or a coefficient overflows the dtype) it is the
    returned point's relative budget excess, :func:`budget_excess`. The multipliers belong to (44a) and (44b)
    for the objective ρq + ρ̃s: d(ρq + ρ̃s)*/dT0 [parameters/s] and d(ρq + ρ̃s)*/dE0 [parameters/J].
    Slacks are budget or limit minus value (non-negative when feasible).
    """

    status: Any
    infeasible_reason: Any
    rho: Any
    f_device_hz: Any
    p_w: Any
    rho_server: Any
    f_server_hz: Any
    delay_s: Any
    energy_j: Any
    delay_slack_s: Any
    energy_slack_j: Any
    f_device_slack_hz: Any
    f_server_slack_hz: Any
    p_slack_w: Any
    retained_params: Any
    upper_bound: Any
    certificate: Any
    log2_distortion_bound: Any
    log10_distortion_bound: Any
    delay_multiplier: Any
    energy_multiplier: Any
    iterations: Any
    objective_history: Any = None

    @property
    def point(self) -> OperatingPoint:
        return OperatingPoint(self.rho, self.f_device_hz, self.p_w, self.rho_server, self.f_server_hz)


def found_point(status):
    """Whether a solve returned a point that meets both budgets (OPTIMAL or NOT_CONVERGED)."""
    return (status == Status.OPTIMAL) | (status == Status.NOT_CONVERGED)


def budget_margin(dtype) -> float:
    """Relative room a solver keeps below T0 and E0 (64 machine epsilons of ``dtype``), so that its
    point still meets both budgets when T and E are re-evaluated by :func:`~laimco_jax.system.evaluate`."""
    return 64.0 * float(jnp.finfo(dtype).eps)


def budget_excess(terms: SystemTerms, budget: Budget):
    """max((T - T0)/T0, (E - E0)/E0) of ``terms`` (:func:`~laimco_jax.system.evaluate` at a point, eqs.
    (10), (11)): <= 0 iff both budgets are met.

    +inf where T or E is not finite (e.g. a coefficient overflowed the dtype), so a point is never
    called feasible on NaN.
    """
    excess = jnp.maximum(
        (terms.delay_s - budget.delay_s) / budget.delay_s,
        (terms.energy_j - budget.energy_j) / budget.energy_j,
    )
    return jnp.where(jnp.isnan(excess), jnp.inf, excess)


def make_solution(
    problem: Problem,
    point: OperatingPoint,
    *,
    status,
    infeasible_reason,
    upper_bound,
    certificate,
    delay_multiplier,
    energy_multiplier,
    iterations,
    objective_history=None,
    terms: SystemTerms | None = None,
) -> Solution:
    """Assemble a Solution: T, E (10)-(11), the slacks and D̂ (41) at ``point``; ``terms`` are
    :func:`~laimco_jax.system.evaluate` at ``point`` if the solver already computed them for its verdict."""
    system, model, budget = problem.system, problem.model, problem.budget
    terms = evaluate(system, model, point) if terms is None else terms
    retained = point.rho * model.params_device + point.rho_server * model.params_server
    log2_d = distortion.log2_distortion_bound(
        point.rho, point.rho_server, model.params_device, model.params_server,
        model.bits_per_weight, model.entropy_bits,
    )
    return Solution(
        status=jnp.asarray(status, jnp.int32),
        infeasible_reason=jnp.asarray(infeasible_reason, jnp.int32),
        rho=point.rho,
        f_device_hz=point.f_device_hz,
        p_w=point.p_w,
        rho_server=point.rho_server,
        f_server_hz=point.f_server_hz,
        delay_s=terms.delay_s,
        energy_j=terms.energy_j,
        delay_slack_s=budget.delay_s - terms.delay_s,
        energy_slack_j=budget.energy_j - terms.energy_j,
        f_device_slack_hz=system.f_max_device_hz - point.f_device_hz,
        f_server_slack_hz=system.f_max_server_hz - point.f_server_hz,
        p_slack_w=system.p_max_w - point.p_w,
        retained_params=retained,
        upper_bound=upper_bound,
        certificate=certificate,
        log2_distortion_bound=log2_d,
        log10_distortion_bound=log2_d * distortion.LOG10_2,
        delay_multiplier=delay_multiplier,
        energy_multiplier=energy_multiplier,
        iterations=jnp.broadcast_to(jnp.asarray(iterations, jnp.int32), jnp.shape(point.rho)),
        objective_history=objective_history,
    )
