"""The Laplace scale β behind h(w) = q_p log2(2eβ) (issue 13): it shifts log D̂ by a constant."""

import math

import jax.numpy as jnp
import numpy as np
import pandas as pd
import pytest

from laimco_jax import distortion, make_problem
from laimco_jax.experiments import paper
from laimco_jax.solvers import found_point, solve_exact


def test_beta_shifts_log2_distortion_bound_by_a_constant():
    """At random (ρ, ρ̃, q, s, b), eq. (41) with β' minus eq. (41) with β is log2(β'/β), whatever the point."""
    rng = np.random.default_rng(7)
    n = 2000
    rho, rho_server = rng.uniform(0, 1, n), rng.uniform(0, 1, n)
    q, s = 10 ** rng.uniform(0, 9, n), 10 ** rng.uniform(0, 9, n)
    b = rng.choice([4.0, 8.0, 16.0, 32.0], n)
    beta, beta_new = 10 ** rng.uniform(-3, 0, n), 10 ** rng.uniform(-3, 0, n)

    def bound(scale):
        return np.asarray(distortion.log2_distortion_bound(rho, rho_server, q, s, b, (q + s) * np.log2(2 * np.e * scale)))

    shift = bound(beta_new) - bound(beta)
    np.testing.assert_allclose(shift, np.log2(beta_new / beta), rtol=1e-9, atol=1e-9)


def test_laplace_scale_shift_matches_a_solve_with_the_other_entropy():
    """paper.laplace_scale_shift against solve_exact re-run with h(w) from β' = 0.045 (the MiniLM fit):
    the same optimum ρ, ρ̃ and log10 D̂ raised by log10(β'/β), at feasible and infeasible points."""
    points = pd.DataFrame(dict(model=["bert-base"] * 3 + ["bart-base-published"] * 2, split=[4, 0, 4, 6, 2],
                               budget_delay_s=[0.2, 0.35, 0.01, 0.35, 0.1], budget_energy_j=[0.015, 0.015, 0.015, 0.5, 0.05]))
    table = paper.solve_points(points, ("proposed",))
    shift = paper.laplace_scale_shift(table, 0.045)
    assert table.feasible.any() and not table.feasible.all()
    for row, delta in zip(table.itertuples(), shift):
        spec = paper.MODEL_SPECS[row.model]
        fields = spec.profile_fields(row.split)
        entropy = (fields["params_device"] + fields["params_server"]) * math.log2(2 * math.e * 0.045)
        solution = solve_exact(make_problem("paper", row.model, split=row.split, overrides={
            "delay_s": row.budget_delay_s, "energy_j": row.budget_energy_j, "entropy_bits": entropy}).astype(jnp.float64))
        assert bool(found_point(solution.status)) == row.feasible
        if row.feasible:
            assert delta == pytest.approx(math.log10(0.045 / spec.laplace_scale), abs=1e-9)
            assert float(solution.log10_distortion_bound) == pytest.approx(row.log10_distortion_bound + delta, abs=1e-7)
            assert float(solution.retained_params) == pytest.approx(row.retained_params, rel=1e-7)
        else:
            assert np.isnan(delta)
