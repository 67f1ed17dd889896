"""Units of the named quantities: configuration fields, :class:`~laimco_jax.solvers.Solution` fields
and the terms of the system model. The sweep stores them as ``units`` attrs and the CLI shows them in
its tables. ``"1"`` marks a dimensionless quantity (CF convention).
"""

from __future__ import annotations

__all__ = ["FIELD_UNITS", "SOLUTION_UNITS", "TERM_UNITS", "UNITS"]

#: Units of every configuration field (every name of :data:`~laimco_jax.params.FIELD_SECTION`).
FIELD_UNITS: dict[str, str] = {
    "bandwidth_hz": "Hz",
    "noise_psd_w_per_hz": "W/Hz",
    "p_max_w": "W",
    "f_max_device_hz": "Hz",
    "f_max_server_hz": "Hz",
    "flops_per_cycle_device": "FLOP/cycle",
    "flops_per_cycle_server": "FLOP/cycle",
    "pue_device": "1",
    "pue_server": "1",
    "power_coeff_device": "W/(cycle/s)^3",
    "power_coeff_server": "W/(cycle/s)^3",
    "channel_gain": "1",
    "ref_gain_db": "dB",
    "ref_distance_m": "m",
    "distance_m": "m",
    "pathloss_exponent": "1",
    "params_device": "parameters",
    "params_server": "parameters",
    "flops_device": "FLOP",
    "flops_server": "FLOP",
    "embedding_bits": "bit",
    "bits_per_weight": "bit",
    "entropy_bits": "bit",
    "input_bits": "bit",
    "delay_s": "s",
    "energy_j": "J",
}

#: Units of every :class:`~laimco_jax.solvers.Solution` field (``delay_s`` and ``energy_j``: the totals T, E).
SOLUTION_UNITS: dict[str, str] = {
    "status": "1",
    "infeasible_reason": "1",
    "rho": "1",
    "f_device_hz": "Hz",
    "p_w": "W",
    "rho_server": "1",
    "f_server_hz": "Hz",
    "delay_s": "s",
    "energy_j": "J",
    "delay_slack_s": "s",
    "energy_slack_j": "J",
    "f_device_slack_hz": "Hz",
    "f_server_slack_hz": "Hz",
    "p_slack_w": "W",
    "retained_params": "parameters",
    "upper_bound": "parameters",
    "certificate": "1",
    "log2_distortion_bound": "log2",
    "log10_distortion_bound": "log10",
    "delay_multiplier": "parameters/s",
    "energy_multiplier": "parameters/J",
    "iterations": "1",
}

#: Units of the delay and energy terms of :func:`~laimco_jax.system.evaluate`, eqs. (2), (4)-(11).
TERM_UNITS: dict[str, str] = {
    "rate_bps": "bit/s",
    "device_delay_s": "s",
    "device_energy_j": "J",
    "upload_delay_s": "s",
    "upload_energy_j": "J",
    "server_delay_s": "s",
    "server_energy_j": "J",
    "delay_s": "s",
    "energy_j": "J",
}

#: Every quantity above by name (a name in several tables, e.g. ``delay_s``, has one unit in all).
UNITS: dict[str, str] = {**FIELD_UNITS, **SOLUTION_UNITS, **TERM_UNITS}
