"""The paper's system model, eqs. (1)-(11): uplink rate, delays and energies of co-inference.

Pure functions of :class:`~laimco_jax.params.SystemParams`, :class:`~laimco_jax.params.ModelProfile`
and the five decision variables; they broadcast over any batch shape, work under ``jit``/``vmap``/
``grad`` and keep the input dtype (float32 or float64). Units: seconds, joules, watts, hertz, bits.

Degenerate parts are handled without NaN: an absent device or server part (zero FLOPs) takes no time
and energy at any clock, and an empty upload (θ = 0) takes none at any power. An upload at p = 0
takes infinite time and the limiting energy θ·N0·ln2/g (the Shannon minimum energy per bit).
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax.numpy as jnp

from laimco_jax.params import ModelProfile, SystemParams

__all__ = [
    "OperatingPoint",
    "SystemTerms",
    "channel_gain",
    "rate_bps",
    "device_compute_delay_s",
    "device_compute_energy_j",
    "upload_delay_s",
    "upload_energy_j",
    "server_compute_delay_s",
    "server_compute_energy_j",
    "evaluate",
]

LN2 = 0.6931471805599453
LN10 = 2.302585092994046


class OperatingPoint(NamedTuple):
    """The decision variables of (P1): ρ, f, p, ρ̃, f̃ (ρ, ρ̃ are remaining fractions, footnote 1)."""

    rho: Any  # ρ, device part's remaining fraction [-]
    f_device_hz: Any  # f [cycles/s]
    p_w: Any  # p, transmit power [W]
    rho_server: Any  # ρ̃ [-]
    f_server_hz: Any  # f̃ [cycles/s]


class SystemTerms(NamedTuple):
    """Every term of (2), (4)-(11) at an operating point."""

    rate_bps: Any  # r(p), (2)
    device_delay_s: Any  # t^I, (4)
    device_energy_j: Any  # e^I, (5)
    upload_delay_s: Any  # t^U, (6)
    upload_energy_j: Any  # e^U, (7)
    server_delay_s: Any  # t̃^I, (8)
    server_energy_j: Any  # ẽ^I, (9)
    delay_s: Any  # T, (10)
    energy_j: Any  # E, (11)


def channel_gain(system: SystemParams):
    """Uplink channel power gain g [-]: ``channel_gain`` or K0 (d/d0)^-α (Section VI)."""
    if system.channel_gain is not None:
        return jnp.asarray(system.channel_gain)
    # K0 (d/d0)^-α as one exponential: XLA on CPU lowers ``**`` to a scalar libm call per element
    log_gain = (LN10 / 10.0) * jnp.asarray(system.ref_gain_db) - system.pathloss_exponent * jnp.log(
        jnp.asarray(system.distance_m) / system.ref_distance_m)
    return jnp.exp(log_gain)


def noise_power_w(system: SystemParams):
    """B·N0 [W], the receiver noise power over the band."""
    return system.bandwidth_hz * system.noise_psd_w_per_hz


def rate_bps(system: SystemParams, p_w):
    """Achievable uplink rate r(p) = B log2(1 + g p / (B N0)) [bit/s], eq. (2)."""
    snr = channel_gain(system) * p_w / noise_power_w(system)
    return system.bandwidth_hz * jnp.log1p(snr) / LN2


def _safe_ratio(numerator, denominator):
    """numerator/denominator, defined as 0 where the numerator is 0 (no work takes no time)."""
    zero = numerator == 0
    return jnp.where(zero, 0.0, numerator / jnp.where(zero, 1.0, denominator))


def device_compute_delay_s(system: SystemParams, model: ModelProfile, rho, f_device_hz):
    """On-device inference delay t^I = ρ N_FLOP / (f c) [s], eq. (4)."""
    return _safe_ratio(rho * model.flops_device, f_device_hz * system.flops_per_cycle_device)


def device_compute_energy_j(system: SystemParams, model: ModelProfile, rho, f_device_hz):
    """On-device inference energy e^I = η ρ N_FLOP φ f² / c [J], eq. (5)."""
    return (
        system.pue_device * rho * model.flops_device / system.flops_per_cycle_device
        * system.power_coeff_device * f_device_hz**2
    )


def upload_delay_s(system: SystemParams, model: ModelProfile, p_w):
    """Embedding upload delay t^U = θ / r(p) [s], eq. (6)."""
    return _safe_ratio(jnp.asarray(model.embedding_bits), rate_bps(system, p_w))


def upload_energy_j(system: SystemParams, model: ModelProfile, p_w):
    """Embedding upload energy e^U = p θ / r(p) [J], eq. (7); θ N0 ln2 / g in the limit p -> 0."""
    gain = channel_gain(system)
    snr = gain * p_w / noise_power_w(system)
    positive = snr > 0
    # p / r(p) = (B N0 / g) * snr / (B log2(1 + snr)); snr / log1p(snr) -> 1 as snr -> 0.
    snr_over_log = jnp.where(positive, snr / jnp.log1p(jnp.where(positive, snr, 1.0)), 1.0)
    joules_per_bit = system.noise_psd_w_per_hz / gain * LN2 * snr_over_log
    return model.embedding_bits * joules_per_bit


def server_compute_delay_s(system: SystemParams, model: ModelProfile, rho_server, f_server_hz):
    """On-server inference delay t̃^I = ρ̃ Ñ_FLOP / (f̃ c̃) [s], eq. (8)."""
    return _safe_ratio(rho_server * model.flops_server, f_server_hz * system.flops_per_cycle_server)


def server_compute_energy_j(system: SystemParams, model: ModelProfile, rho_server, f_server_hz):
    """On-server inference energy ẽ^I = η̃ ρ̃ Ñ_FLOP φ̃ f̃² / c̃ [J], eq. (9)."""
    return (
        system.pue_server * rho_server * model.flops_server / system.flops_per_cycle_server
        * system.power_coeff_server * f_server_hz**2
    )


def evaluate(system: SystemParams, model: ModelProfile, point: OperatingPoint) -> SystemTerms:
    """All terms of (2), (4)-(9) and the totals T (10), E (11) at ``point``."""
    t_dev = device_compute_delay_s(system, model, point.rho, point.f_device_hz)
    e_dev = device_compute_energy_j(system, model, point.rho, point.f_device_hz)
    t_up = upload_delay_s(system, model, point.p_w)
    e_up = upload_energy_j(system, model, point.p_w)
    t_srv = server_compute_delay_s(system, model, point.rho_server, point.f_server_hz)
    e_srv = server_compute_energy_j(system, model, point.rho_server, point.f_server_hz)
    return SystemTerms(
        rate_bps=rate_bps(system, point.p_w),
        device_delay_s=t_dev,
        device_energy_j=e_dev,
        upload_delay_s=t_up,
        upload_energy_j=e_up,
        server_delay_s=t_srv,
        server_energy_j=e_srv,
        delay_s=t_dev + t_up + t_srv,
        energy_j=e_dev + e_up + e_srv,
    )
