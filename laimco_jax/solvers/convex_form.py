"""(P1) in the variables in which it is convex, shared by the exact solver, the SCA and the sensitivity.

With the device slow-down ψ = f_max/f >= 1, the server slow-down ψ̃ = f̃_max/f̃ >= 1 and the uplink
spectral efficiency y = ln(1 + g p/(B N0)) [nats/s/Hz], the device part of a pruned model with
remaining fraction ρ takes ρ·T_d·ψ seconds and ρ·E_d/ψ² joules (eqs. (4), (5)), the server likewise
(eqs. (8), (9)), and the upload θ·u seconds and θ·e(y) joules (eqs. (6), (7)), with the per-bit rates
of :func:`link_rates`. At an energy price ν [s/J] (time + ν·energy), each processor's best slow-down
is :func:`slowdown` and the free link's efficiency solves ν k Λ(y) = 1 (:func:`link_stationarity`).
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax.numpy as jnp

from laimco_jax.params import Problem
from laimco_jax.solvers.numerics import broadcast_leaves
from laimco_jax.solvers.schemes import SchemeSpec
from laimco_jax.system import LN2, channel_gain

__all__ = ["ConvexForm", "convex_form", "link_stationarity", "link_rates", "slowdown"]


class ConvexForm(NamedTuple):
    """(P1) in the normalised variables of the module docstring (all arrays of one batch shape)."""

    value_device: Any  # q
    value_server: Any  # s
    delay_device_s: Any  # T_d = N/(c f_max), ρ = 1 at full clock
    energy_device_j: Any  # E_d = η φ N f_max²/c
    free_price_device: Any  # ν_d = 1/(2 η φ f_max³) [s/J]: above it the device slows down
    delay_server_s: Any
    energy_server_j: Any
    free_price_server: Any
    bits: Any  # θ
    link_power_w: Any  # k = B N0/g
    bandwidth_hz: Any  # B
    max_efficiency: Any  # y_max = ln(1 + g P_max/(B N0)) [nats/s/Hz]
    rho_min: Any
    rho_server_min: Any
    delay_budget_s: Any  # T0
    energy_budget_j: Any  # E0


def convex_form(problem: Problem, spec: SchemeSpec) -> ConvexForm:
    """Normalised coefficients of ``problem`` (already re-split for its scheme), of one shape and dtype."""
    system, model, budget = problem.system, problem.model, problem.budget
    gain = channel_gain(system)
    noise = system.bandwidth_hz * system.noise_psd_w_per_hz
    # η φ f² and η φ f³ multiplied out from the left: f³ alone overflows float32 above 7e12 Hz
    chip_device = system.pue_device * system.power_coeff_device * system.f_max_device_hz * system.f_max_device_hz
    chip_server = system.pue_server * system.power_coeff_server * system.f_max_server_hz * system.f_max_server_hz
    form = ConvexForm(
        value_device=model.params_device,
        value_server=model.params_server,
        delay_device_s=model.flops_device / (system.flops_per_cycle_device * system.f_max_device_hz),
        energy_device_j=chip_device * model.flops_device / system.flops_per_cycle_device,
        free_price_device=0.5 / (chip_device * system.f_max_device_hz),
        delay_server_s=model.flops_server / (system.flops_per_cycle_server * system.f_max_server_hz),
        energy_server_j=chip_server * model.flops_server / system.flops_per_cycle_server,
        free_price_server=0.5 / (chip_server * system.f_max_server_hz),
        bits=model.embedding_bits,
        link_power_w=noise / gain,
        bandwidth_hz=system.bandwidth_hz,
        max_efficiency=jnp.log1p(gain * system.p_max_w / noise),
        rho_min=spec.rho_min,
        rho_server_min=spec.rho_server_min,
        delay_budget_s=budget.delay_s,
        energy_budget_j=budget.energy_j,
    )
    return broadcast_leaves(form, promote=True)


def link_stationarity(y, expm1_y):
    """Λ(y) = e^y (y - 1) + 1 = Σ_{n>=2} (n-1) y^n/n!, with the series where it cancels (small y).

    The free link's efficiency y at energy price ν solves ν k Λ(y) = 1 (d/dy of u + ν e per bit);
    ``expm1_y`` is e^y - 1, passed in because callers need it for the rates too.
    """
    small = y < 1e-3
    ys = jnp.where(small, y, 0.0)
    series = ys**2 * (0.5 + ys * (1 / 3 + ys * (1 / 8 + ys * (1 / 30 + ys / 144))))
    return jnp.where(small, series, y + (y - 1.0) * expm1_y)


def link_rates(form: ConvexForm, y, expm1_y):
    """Seconds per bit u = ln2/(B y) and joules per bit e = p u, p = k (e^y - 1), at efficiency y
    (eqs. (6), (7) per bit); ``expm1_y`` is e^y - 1."""
    seconds_per_bit = LN2 / (form.bandwidth_hz * y)
    return seconds_per_bit, form.link_power_w * expm1_y * seconds_per_bit


def slowdown(cbrt_price, inv_cbrt_free_price, fixed_frequency: bool):
    """A processor's slow-down ψ = f_max/f = max(1, (ν/ν_free)^(1/3)) at energy price ν [s/J].

    It minimises ψ·T + ν·E/ψ² over ψ >= 1 (delay ∝ ψ, energy ∝ 1/ψ², eqs. (4), (5)); ν_free =
    1/(2 η φ f_max³) is the price below which the clock stays at f_max. Taken as ν^(1/3) and
    ν_free^(-1/3), so that a price search finds the free prices' roots once; 1 where clocks are pinned.
    """
    if fixed_frequency:
        return jnp.ones_like(cbrt_price)
    return jnp.maximum(1.0, cbrt_price * inv_cbrt_free_price)
