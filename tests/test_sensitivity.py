"""Implicit derivatives of the optimum against central finite differences and the envelope theorem."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from laimco_jax import make_problem
from laimco_jax.sensitivity import OUTPUTS, sensitivities
from laimco_jax.solvers import Status, solve_exact

FIELDS = [
    ("budget", "delay_s"), ("budget", "energy_j"), ("system", "distance_m"), ("system", "bandwidth_hz"),
    ("system", "noise_psd_w_per_hz"), ("system", "f_max_device_hz"), ("system", "power_coeff_device"),
    ("system", "power_coeff_server"), ("system", "pue_server"), ("system", "flops_per_cycle_device"),
    ("model", "embedding_bits"), ("model", "flops_device"), ("model", "flops_server"),
    ("model", "params_device"), ("model", "params_server"),
]
CASES = [  # (model, scheme, overrides): interior optima away from kinks
    ("bert-base", "proposed", {}),
    ("bert-base", "proposed", {"delay_s": 0.3, "energy_j": 0.012, "distance_m": 300.0}),
    ("bert-base", "fixed-frequency", {}),
    ("bart-base", "fixed-power", {}),
    ("bert-base", "on-device", {}),
    ("bart-base", "proposed", {"delay_s": 0.12, "energy_j": 0.01}),
]


def perturbed_batch(problem, rel):
    """The problem with each FIELD moved by ±rel (2·len(FIELDS) instances, stacked)."""
    leaves = []
    for section, name in FIELDS:
        for sign in (1.0, -1.0):
            sec = getattr(problem, section)
            value = float(getattr(sec, name))
            leaves.append(problem.replace(**{section: sec.replace(**{name: value * (1 + sign * rel)})}))
    return jax.tree_util.tree_map(lambda *xs: jnp.stack([jnp.asarray(x, jnp.float64) for x in xs]), *leaves)


@pytest.mark.parametrize("model, scheme, overrides", CASES)
def test_gradients_match_central_differences(model, scheme, overrides):
    problem = make_problem("paper", model, overrides=overrides).astype(jnp.float64)
    base = solve_exact(problem, scheme)
    assert int(base.status) == Status.OPTIMAL
    rel = 1e-6
    batch = solve_exact(perturbed_batch(problem, rel), scheme)
    assert np.all(np.asarray(batch.status) == Status.OPTIMAL)
    grads = sensitivities(problem, scheme)
    for i, (section, name) in enumerate(FIELDS):
        h = float(getattr(getattr(problem, section), name)) * rel
        for out in OUTPUTS:
            solution_field = "p_w" if out == "p_w" else out
            up, down = (float(np.asarray(getattr(batch, solution_field))[2 * i + k]) for k in (0, 1))
            fd = (up - down) / (2 * h)
            implicit = float(getattr(getattr(grads[out], section), name))
            scale = abs(float(getattr(base, solution_field))) / abs(float(getattr(getattr(problem, section), name)))
            # 1e-4 relative, with an absolute floor for rounding noise in the differences
            assert implicit == pytest.approx(fd, rel=1e-4, abs=1e-7 * scale + 1e-12), (out, section, name)


@pytest.mark.parametrize("model, scheme, overrides", CASES)
def test_envelope_theorem(model, scheme, overrides):
    problem = make_problem("paper", model, overrides=overrides).astype(jnp.float64)
    solution = solve_exact(problem, scheme)
    grads = sensitivities(problem, scheme)["retained_params"]
    assert float(grads.budget.delay_s) == pytest.approx(float(solution.delay_multiplier), rel=1e-6)
    assert float(grads.budget.energy_j) == pytest.approx(float(solution.energy_multiplier), rel=1e-6)


def test_active_box_constraints_have_documented_derivatives():
    # paper BERT: ρ̃ = 1 (server unpruned) -> dρ̃ = 0 for every input
    problem = make_problem("paper", "bert-base").astype(jnp.float64)
    assert float(solve_exact(problem).rho_server) == 1.0
    grads = sensitivities(problem)
    assert all(float(g) == 0.0 for g in jax.tree_util.tree_leaves(grads["rho_server"]))
    # fixed frequency: f = f_max moves with f_max only
    grads = sensitivities(problem, "fixed-frequency")["f_device_hz"]
    for path, g in jax.tree_util.tree_leaves_with_path(grads):
        expected = 1.0 if jax.tree_util.keystr(path) == ".system.f_max_device_hz" else 0.0
        assert float(g) == expected, jax.tree_util.keystr(path)
    # fixed power: p = P_max moves with P_max only
    bart = make_problem("paper", "bart-base").astype(jnp.float64)
    grads = sensitivities(bart, "fixed-power")["p_w"]
    for path, g in jax.tree_util.tree_leaves_with_path(grads):
        expected = 1.0 if jax.tree_util.keystr(path) == ".system.p_max_w" else 0.0
        assert float(g) == pytest.approx(expected, abs=1e-12), jax.tree_util.keystr(path)


def test_batched_equals_pointwise_and_infeasible_is_zero():
    problem = make_problem("paper", "bert-base").astype(jnp.float64)
    delays = jnp.array([0.3, 0.35, 0.001])  # the last one is infeasible
    batch = problem.replace(budget=problem.budget.replace(delay_s=delays, energy_j=jnp.full(3, 0.015)))
    grads = sensitivities(batch)
    for i in range(2):
        one = sensitivities(problem.replace(budget=problem.budget.replace(delay_s=delays[i])))
        for out in OUTPUTS:
            np.testing.assert_allclose(
                [float(x[i]) for x in jax.tree_util.tree_leaves(grads[out])],
                [float(x) for x in jax.tree_util.tree_leaves(one[out])], rtol=1e-10, atol=0)
    for out in OUTPUTS:
        leaves = [np.asarray(x)[2] for x in jax.tree_util.tree_leaves(grads[out])]
        assert all(np.isfinite(v) and v == 0.0 for v in leaves), out
