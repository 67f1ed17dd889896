"""The paper's SCA in JAX against the exact global solver on random instances (same batch, one call each)."""

import functools

import numpy as np
import pytest

from laimco_jax.solvers import Status, solve_exact
from laimco_jax.solvers.instances import random_problems
from laimco_jax.solvers.sca import solve_sca
from laimco_jax.system import evaluate

N = 48


@functools.lru_cache(maxsize=None)
def solved():
    problem = random_problems(N, seed=7, spread=1 / 0.2)
    return problem, solve_sca(problem), solve_exact(problem)


def test_sca_never_beats_the_global_optimum():
    problem, sca, exact = solved()
    total = np.asarray(problem.model.params_device + problem.model.params_server)
    both = (np.asarray(sca.status) != Status.INFEASIBLE) & (np.asarray(exact.status) == Status.OPTIMAL)
    assert both.sum() > N // 3
    excess = (np.asarray(sca.retained_params) - np.asarray(exact.retained_params))[both] / total[both]
    assert np.all(excess <= 1e-9), excess.max()


def test_sca_points_meet_the_original_constraints():
    problem, sca, _ = solved()
    feasible = np.asarray(sca.status) != Status.INFEASIBLE
    terms = evaluate(problem.system, problem.model, sca.point)
    rel = 1e-9
    assert np.all((np.asarray(terms.delay_s) <= np.asarray(problem.budget.delay_s) * (1 + rel))[feasible])
    assert np.all((np.asarray(terms.energy_j) <= np.asarray(problem.budget.energy_j) * (1 + rel))[feasible])
    for value, upper in ((sca.rho, 1.0), (sca.rho_server, 1.0), (sca.f_device_hz, problem.system.f_max_device_hz),
                         (sca.f_server_hz, problem.system.f_max_server_hz), (sca.p_w, problem.system.p_max_w)):
        value = np.asarray(value)[feasible]
        assert np.all(value >= 0) and np.all(value <= np.broadcast_to(np.asarray(upper) * (1 + rel), np.shape(sca.rho))[feasible])


def test_sca_objective_history_is_monotone_and_verdicts_agree():
    problem, sca, exact = solved()
    feasible = np.asarray(sca.status) != Status.INFEASIBLE
    history = np.asarray(sca.objective_history)
    assert history.shape[0] == N
    assert np.all(np.diff(history, axis=-1)[feasible] <= 1e-9)  # log2 D̂ never increases (the paper's claim)
    np.testing.assert_array_equal(np.asarray(sca.status) == Status.INFEASIBLE, np.asarray(exact.status) == Status.INFEASIBLE)
    for name, value in sca._asdict().items():
        if value is not None:
            assert np.all(np.isfinite(np.asarray(value))), name
    assert set(np.unique(np.asarray(sca.status))) <= {Status.OPTIMAL, Status.INFEASIBLE, Status.NOT_CONVERGED}
