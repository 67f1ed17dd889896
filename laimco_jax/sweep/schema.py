"""What a sweep stores: every variable's name, dims, dtype, fill value and attrs (units from
:mod:`laimco_jax.units`), its coordinates and its attrs. The store and the driver reach these through
the spec (:meth:`SweepSpec.variables <laimco_jax.sweep.spec.SweepSpec.variables>` and its siblings), so
a cell sweep (:mod:`laimco_jax.sweep.cells`) stores its own."""

from __future__ import annotations

from typing import Any

import numpy as np

from laimco_jax.params import FIELD_SECTION, dump_toml, problem_from_dict
from laimco_jax.solvers import Status
from laimco_jax.sweep.spec import SAMPLE_DIM, SPLIT_FIELDS, SweepSpec
from laimco_jax.units import FIELD_UNITS, SOLUTION_UNITS

_STATUS_FLAGS = {"flag_values": [int(s) for s in Status], "flag_meanings": " ".join(s.name.lower() for s in Status)}
_REASON_FLAGS = {"flag_values": [0, 1, 2, 3], "flag_meanings": "none delay energy joint"}

#: Solution field -> (stored variable name, description, extra attrs); the units are SOLUTION_UNITS'.
SOLUTION_VARIABLES: dict[str, tuple[str, str, dict]] = {
    "status": ("status", "solve status (-1: not computed)", _STATUS_FLAGS),
    "infeasible_reason": ("infeasible_reason", "why an instance is infeasible", _REASON_FLAGS),
    "rho": ("rho", "device part's remaining fraction ρ", {}),
    "f_device_hz": ("f_device_hz", "device clock f", {}),
    "p_w": ("p_w", "transmit power p", {}),
    "rho_server": ("rho_server", "server part's remaining fraction ρ̃", {}),
    "f_server_hz": ("f_server_hz", "server clock f̃", {}),
    "delay_s": ("total_delay_s", "total delay T, eq. (10)", {}),
    "energy_j": ("total_energy_j", "total energy E, eq. (11)", {}),
    "delay_slack_s": ("delay_slack_s", "T0 - T", {}),
    "energy_slack_j": ("energy_slack_j", "E0 - E", {}),
    "f_device_slack_hz": ("f_device_slack_hz", "f_max - f", {}),
    "f_server_slack_hz": ("f_server_slack_hz", "f̃_max - f̃", {}),
    "p_slack_w": ("p_slack_w", "P_max - p", {}),
    "retained_params": ("retained_params", "ρq + ρ̃s", {}),
    "upper_bound": ("upper_bound", "dual upper bound on ρq + ρ̃s", {}),
    "certificate": ("certificate", "relative duality gap (infeasible: relative overload)", {}),
    "log2_distortion_bound": ("log2_distortion_bound", "log2 of the distortion bound D̂, eq. (41)", {}),
    "log10_distortion_bound": ("log10_distortion_bound", "log10 of the distortion bound D̂, eq. (41)", {}),
    "delay_multiplier": ("delay_multiplier", "d(ρq + ρ̃s)*/dT0", {}),
    "energy_multiplier": ("energy_multiplier", "d(ρq + ρ̃s)*/dE0", {}),
    "iterations": ("iterations", "solver iterations", {}),
}
_INT_FIELDS = ("status", "infeasible_reason", "iterations")
#: A fading sweep's stored gain g·|h|² of each draw at each grid point (laimco_jax.sweep.fading).
DRAWN_GAIN = "drawn_channel_gain"
_BEST_VARIABLES = {
    "best_split": ("layers", "split retaining the most parameters among OPTIMAL splits (-1: none)"),
    "best_log10_distortion_bound": ("log10", "log10 D̂ at best_split (NaN: none)"),
}


def gradient_variable(output: str, field: str) -> str:
    """Name of the stored derivative d output/d field."""
    return f"d_{output}_d_{field}"


def variables(spec: SweepSpec, dtype) -> dict[str, tuple[tuple[str, ...], Any, Any, dict]]:
    """Stored variable -> (dims, dtype, fill value, attrs)."""
    dims = tuple(a.dim for a in spec.axes) + ("scheme",)
    inner = dims + (() if spec.splits is None else ("split",))
    out = {}
    if spec.fading is not None:
        from laimco_jax.outage import REDUCTIONS

        for name, (units, text) in REDUCTIONS.items():
            out[name] = (dims, dtype, np.nan, {"units": units, "long_name": f"adaptive design: {text}"})
        if spec.fading.reduce_only:
            return out
        inner = dims + (SAMPLE_DIM,)
        out[DRAWN_GAIN] = (inner, dtype, np.nan, {"units": FIELD_UNITS["channel_gain"],
                                                  "long_name": "channel gain g·|h|² of the draw at the point"})
    for field, (stored, text, extra) in SOLUTION_VARIABLES.items():
        integer = field in _INT_FIELDS
        out[stored] = (inner, np.int32 if integer else dtype, -1 if integer else np.nan,
                       {"units": SOLUTION_UNITS[field], "long_name": text, **extra})
    for output, field in spec.gradients:
        out[gradient_variable(output, field)] = (
            inner, dtype, np.nan, {"long_name": f"implicit derivative d {output} / d {field} at the optimum"}
        )
    if spec.splits is not None:
        for name, (units, text) in _BEST_VARIABLES.items():
            integer = name == "best_split"
            out[name] = (dims, np.int32 if integer else dtype, -1 if integer else np.nan, {"units": units, "long_name": text})
    return out


def dim_sizes(spec: SweepSpec) -> dict[str, int]:
    """Length of every dim of the stored variables."""
    sizes = dict(zip((a.dim for a in spec.axes), spec.shape), scheme=len(spec.schemes), split=len(spec.splits or ()))
    return sizes | ({} if spec.fading is None else {SAMPLE_DIM: spec.fading.samples})


def coords(spec: SweepSpec) -> dict[str, Any]:
    """The coordinates of the stored Dataset: the swept fields, ``scheme`` and ``split``."""
    out: dict[str, Any] = {}
    for axis in spec.axes:
        for name, values in axis.values.items():
            out[name] = (axis.dim, values, {"units": FIELD_UNITS[name], "long_name": f"{FIELD_SECTION[name]}.{name}"})
    out["scheme"] = ("scheme", np.array(spec.schemes))
    if spec.splits is not None:
        out["split"] = ("split", np.array(spec.splits, np.int32), {"units": "layers", "long_name": "layers on the device"})
    if spec.fading is not None and not spec.fading.reduce_only:
        from laimco_jax.sweep.fading import gain_factors

        out[SAMPLE_DIM] = (SAMPLE_DIM, np.arange(spec.fading.samples, dtype=np.int64),
                           {"units": "1", "long_name": "channel draw (global index, keys the draw with the seed)"})
        out["gain_factor"] = (SAMPLE_DIM, gain_factors(spec.fading),
                              {"units": "1", "long_name": "drawn |h|^2: the draw's gain is channel_gain x gain_factor"})
    return out


def store_attrs(spec: SweepSpec) -> dict[str, Any]:
    """The Dataset's attrs that describe this kind of sweep (the store adds the spec, layout and progress)."""
    return {
        "title": "laimco_jax sweep of (P1), exact solver",
        "config_toml": dump_toml(problem_from_dict(spec.base)),
        "split_model": spec.split_model if spec.splits is not None else "",
        "split_fields": list(SPLIT_FIELDS) if spec.splits is not None else [],
    } | ({} if spec.fading is None else {
        "fading": spec.fading.model, "fading_samples": spec.fading.samples, "fading_seed": spec.fading.seed,
        "fading_reduce_only": spec.fading.reduce_only})
