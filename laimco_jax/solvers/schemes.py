"""The design schemes of Sections VI-B and VI-C as transformations of one problem (P1).

Every scheme is (P1) with some variables pinned, so each stays convex in the
variables of docs/theory.md#convex-reformulation
and is solved exactly by the same solver:

* ``proposed``: the joint design, nothing pinned.
* ``fixed-power``: p = P_max (the uplink seconds per bit pinned at u_min).
* ``fixed-frequency``: f = f_max and f̃ = f̃_max.
* ``device-pruning-only``: ρ̃ = 1 (the server part is not pruned).
* ``server-pruning-only``: ρ = 1 (the device part is not pruned).
* ``on-device``: split L, the whole model on the device: q <- q + s, N <- N + Ñ, s = Ñ = θ = 0.
* ``on-server``: split 0, the whole model on the server: s <- q + s, Ñ <- N + Ñ, q = N = 0 and the
  raw input (``model.input_bits``) is uploaded instead of an embedding.
"""

from __future__ import annotations

from typing import NamedTuple

from laimco_jax.params import ConfigError, Problem

__all__ = ["SCHEMES", "SchemeSpec", "scheme_spec", "scheme_problem"]


class SchemeSpec(NamedTuple):
    """Which variables a scheme pins (static: it selects code paths, not values)."""

    rho_min: float  # lower bound on ρ (1 pins ρ = 1)
    rho_server_min: float  # lower bound on ρ̃
    fixed_frequency: bool  # f = f_max, f̃ = f̃_max
    fixed_power: bool  # p = P_max


_SPECS = {
    "proposed": SchemeSpec(0.0, 0.0, False, False),
    "fixed-power": SchemeSpec(0.0, 0.0, False, True),
    "fixed-frequency": SchemeSpec(0.0, 0.0, True, False),
    "device-pruning-only": SchemeSpec(0.0, 1.0, False, False),
    "server-pruning-only": SchemeSpec(1.0, 0.0, False, False),
    "on-device": SchemeSpec(0.0, 0.0, False, False),
    "on-server": SchemeSpec(0.0, 0.0, False, False),
}
SCHEMES: tuple[str, ...] = tuple(_SPECS)


def scheme_spec(scheme: str) -> SchemeSpec:
    """The pinned variables of ``scheme``; ConfigError for an unknown name."""
    if scheme not in _SPECS:
        raise ConfigError(f"scheme = {scheme!r} is not known; allowed: {', '.join(SCHEMES)}")
    return _SPECS[scheme]


def scheme_problem(problem: Problem, scheme: str) -> Problem:
    """The problem a scheme solves: the model profile re-split for ``on-device``/``on-server``."""
    scheme_spec(scheme)
    model = problem.model
    if scheme == "on-device":
        model = model.derive(
            params_device=model.params_device + model.params_server,
            params_server=0.0 * model.params_server,
            flops_device=model.flops_device + model.flops_server,
            flops_server=0.0 * model.flops_server,
            embedding_bits=0.0 * model.embedding_bits,
        )
    elif scheme == "on-server":
        model = model.derive(
            params_device=0.0 * model.params_device,
            params_server=model.params_device + model.params_server,
            flops_device=0.0 * model.flops_device,
            flops_server=model.flops_device + model.flops_server,
            embedding_bits=model.input_bits,
        )
    return problem.replace(model=model)
