"""Implicit derivatives of the optimum against central finite differences and the envelope theorem."""

import functools

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
CASES = [  # (model, scheme, overrides): optima away from kinks, different active sets
    ("bert-base", "proposed", {}),  # ρ interior, ρ̃ = 1, link free
    ("bart-base", "proposed", {"delay_s": 0.12, "energy_j": 0.01}),
    ("bert-base", "fixed-frequency", {}),  # ρ interior, ρ̃ = 0
    ("bart-base", "fixed-power", {}),  # p = P_max
    ("bert-base", "on-device", {}),  # no link
]
# Typical magnitude of each output, for the absolute floor of finite-difference noise.
SCALES = {"rho": 1.0, "rho_server": 1.0, "f_device_hz": 1e9, "p_w": 0.5, "f_server_hz": 4e9,
          "retained_params": 1e8, "log2_distortion_bound": 32.0}  # d log2 D̂/dρ ~ b


@functools.lru_cache(maxsize=None)
def case(index):
    model, scheme, overrides = CASES[index]
    problem = make_problem("paper", model, overrides=overrides).astype(jnp.float64)
    return problem, scheme, solve_exact(problem, scheme), sensitivities(problem, scheme)


def perturbed_batch(problem, rel):
    """The problem with each FIELD moved by ±rel (2·len(FIELDS) instances, stacked)."""
    leaves = []
    for section, name in FIELDS:
        for sign in (1.0, -1.0):
            sec = getattr(problem, section)
            value = float(getattr(sec, name))
            leaves.append(problem.replace(**{section: sec.replace(**{name: value * (1 + sign * rel)})}))
    return jax.tree_util.tree_map(lambda *xs: jnp.stack([jnp.asarray(x, jnp.float64) for x in xs]), *leaves)


@pytest.mark.parametrize("index", range(len(CASES)))
def test_gradients_match_central_differences(index):
    problem, scheme, base, grads = case(index)
    assert int(base.status) == Status.OPTIMAL
    rel = 1e-6
    batch = solve_exact(perturbed_batch(problem, rel), scheme)
    assert np.all(np.asarray(batch.status) == Status.OPTIMAL)
    for i, (section, name) in enumerate(FIELDS):
        h = float(getattr(getattr(problem, section), name)) * rel
        for out in OUTPUTS:
            up, down = (float(np.asarray(getattr(batch, out))[2 * i + k]) for k in (0, 1))
            fd = (up - down) / (2 * h)
            implicit = float(getattr(getattr(grads[out], section), name))
            # 1e-4 relative, with an absolute floor for the solver's ~1e-11 relative noise in the differences
            assert implicit == pytest.approx(fd, rel=1e-4, abs=1e-10 * SCALES[out] / h), (out, section, name)


@pytest.mark.parametrize("index", range(len(CASES)))
def test_envelope_theorem(index):
    _, _, solution, grads = case(index)
    assert float(grads["retained_params"].budget.delay_s) == pytest.approx(float(solution.delay_multiplier), rel=1e-6)
    assert float(grads["retained_params"].budget.energy_j) == pytest.approx(float(solution.energy_multiplier), rel=1e-6)


def test_active_box_constraints_have_documented_derivatives():
    # paper BERT: ρ̃ = 1 (server unpruned) -> dρ̃ = 0 for every input
    problem, _, solution, grads = case(0)
    assert float(solution.rho_server) == 1.0
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
    fields = np.array([float(x) for x in jax.tree_util.tree_leaves(problem)])
    for i in range(2):
        one = sensitivities(problem.replace(budget=problem.budget.replace(delay_s=delays[i])))
        fields_i = fields.copy()
        fields_i[-2] = float(delays[i])  # the budget's delay_s leaf
        for out in OUTPUTS:
            # compare x·d(out)/dx (output units), so that exact zeros carried as rounding noise compare equal
            batched = np.array([float(x[i]) for x in jax.tree_util.tree_leaves(grads[out])]) * fields_i
            single = np.array([float(x) for x in jax.tree_util.tree_leaves(one[out])]) * fields_i
            np.testing.assert_allclose(batched, single, rtol=1e-9, atol=1e-12 * SCALES[out])
    for out in OUTPUTS:
        leaves = [np.asarray(x)[2] for x in jax.tree_util.tree_leaves(grads[out])]
        assert all(np.isfinite(v) and v == 0.0 for v in leaves), out


def test_regular_optima_are_not_flagged():
    for index in range(len(CASES)):
        assert not bool(case(index)[3]["singular"]), CASES[index]


def test_singular_kkt_system_is_flagged_not_silent():
    """Both parts interior on a tie of their values per second (an LP with a face of optima): the KKT
    system is singular, the derivatives are reported as 0 and the instance is flagged."""
    from laimco_jax.sensitivity import SINGULAR, field_derivatives, sensitivities_at
    from laimco_jax.solvers.convex_form import convex_form
    from laimco_jax.solvers.schemes import scheme_spec

    scheme = "fixed-frequency"
    problem = make_problem("paper", "bert-base", overrides={"energy_j": 1e3}).astype(jnp.float64)
    form = convex_form(problem, scheme_spec(scheme))
    # Ñ such that s/T̃_d = q/T_d: any split of the delay budget between the parts is optimal.
    t_server = float(form.delay_device_s) * float(form.value_server) / float(form.value_device)
    system = problem.system
    flops_server = t_server * float(system.flops_per_cycle_server) * float(system.f_max_server_hz)
    problem = problem.replace(model=problem.model.replace(flops_server=flops_server))
    form = convex_form(problem, scheme_spec(scheme))
    solution = solve_exact(problem, scheme)
    assert int(solution.status) == Status.OPTIMAL and float(solution.energy_multiplier) == 0.0
    # Move along the face ρ T_d + ρ̃ T̃_d = const to a point with both ratios interior.
    td, ts = float(form.delay_device_s), float(form.delay_server_s)
    load = float(solution.rho) * td + float(solution.rho_server) * ts
    rho = 0.5 * load / td if load / td < 1.0 else 0.5
    rho_server = (load - rho * td) / ts
    assert 0.0 < rho < 1.0 and 0.0 < rho_server < 1.0
    face = solution._replace(rho=jnp.asarray(rho), rho_server=jnp.asarray(rho_server))
    grads = sensitivities_at(problem, face, scheme)
    assert bool(grads[SINGULAR])
    for out in OUTPUTS:
        assert all(np.isfinite(np.asarray(x)).all() for x in jax.tree_util.tree_leaves(grads[out]))
    assert float(grads["rho"].budget.delay_s) == 0.0
    assert bool(field_derivatives(problem, face, scheme, ("delay_s",))[SINGULAR])
    assert not bool(sensitivities_at(problem, solution, scheme)[SINGULAR])


def test_field_derivatives_reject_unknown_fields():
    from laimco_jax.params import ConfigError
    from laimco_jax.sensitivity import field_derivatives

    problem, scheme, solution, _ = case(0)
    with pytest.raises(ConfigError, match=r"fields = \['delay'\]: not configuration fields; allowed: .*delay_s"):
        field_derivatives(problem, solution, scheme, ("delay_s", "delay"))
