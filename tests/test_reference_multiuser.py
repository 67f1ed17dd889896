"""Tests of the multi-user cell reference (laimco_jax.reference_multiuser).

* K = 1 is solve_cvxpy_exact at the whole band and server clock, exactly.
* Two identical users with equal weights split the band equally (both methods, all objectives).
* sum-log at K = 2 is the minimum of a two-level grid over b_1 of the CVXPY per-user optima, within 1e-6
  relative (observed 4e-10), and never worse than the grid beyond solver noise.
* max equalises log2 D̂ of band-limited users.
* The scipy method (joint SLSQP) agrees with the nested CVXPY search at K = 3 within 1e-6 relative; at
  K = 8 no transfer of band between two users improves its objective.
* Every returned split uses at most B, gives each user at least its least band b_min (the closed-form
  feasibility edge, checked against CVXPY), and each user's point meets its budgets when re-evaluated by
  laimco_jax.system; on-device users (θ = 0) get no band; infeasible cells and bad input are reported.

Instances: the paper's BERT-base preset at split 4, users 300-600 m away with T0 = 0.35-0.4 s and
E0 = 0.015 J, B = 5 MHz, F = 4 GHz: every user is feasible alone, and its optimum keeps growing with its
band up to the whole of B (band-limited).
"""

from __future__ import annotations

import numpy as np
import pytest

from laimco_jax.params import ConfigError, make_problem
from laimco_jax.system import evaluate

pytest.importorskip("cvxpy")
from laimco_jax.reference import solve_cvxpy_exact  # noqa: E402
from laimco_jax.reference_multiuser import (  # noqa: E402
    OBJECTIVES,
    CellReference,
    least_band_hz,
    solve_cell_reference,
)

BAND_HZ = 5e6
SERVER_HZ = 4e9
# Agreement between two methods, or with a grid, relative to the objective.
REL_TOL = 1e-6
# Budget excess allowed when a CVXPY point is re-evaluated (Clarabel's tolerances are 1e-10 of a budget).
BUDGET_RTOL = 1e-8


def _user(distance_m: float, delay_s: float = 0.35, energy_j: float = 0.015, split: int | None = None):
    return make_problem("paper", "bert-base", split=split,
                        overrides=dict(distance_m=distance_m, delay_s=delay_s, energy_j=energy_j))


def _at(problem, band_hz: float, server_hz: float):
    return problem.replace(system=problem.system.replace(bandwidth_hz=band_hz, f_max_server_hz=server_hz))


def _log2_bound(problem, band_hz: float, server_hz: float) -> float:
    return float(solve_cvxpy_exact(_at(problem, band_hz, server_hz)).solution.log2_distortion_bound)


def _check_cell(result: CellReference, problems, band_hz: float = BAND_HZ, server_hz: float = SERVER_HZ):
    """Σ b ≤ B, b_k ≥ b_min,k, and every user's point meets its budgets at its band and F/K."""
    assert result.status == "optimal"
    assert result.bandwidth_hz.sum() <= band_hz * (1 + 1e-12)
    share = server_hz / len(problems)
    for problem, band, solution in zip(problems, result.bandwidth_hz, result.solutions):
        assert band >= least_band_hz(problem)
        cell_problem = _at(problem, band if band > 0 else band_hz, share)
        terms = evaluate(cell_problem.system, cell_problem.model, solution.point)
        assert float(terms.delay_s) <= float(problem.budget.delay_s) * (1 + BUDGET_RTOL)
        assert float(terms.energy_j) <= float(problem.budget.energy_j) * (1 + BUDGET_RTOL)


@pytest.mark.parametrize("objective", OBJECTIVES)
def test_one_user_is_the_single_user_reference(objective):
    problem = _user(450.0)
    result = solve_cell_reference([problem], BAND_HZ, SERVER_HZ, [2.0], objective)
    single = solve_cvxpy_exact(_at(problem, BAND_HZ, SERVER_HZ)).solution
    assert result.bandwidth_hz.tolist() == [BAND_HZ]
    assert result.retained.tolist() == [float(single.retained_params)]
    np.testing.assert_allclose(result.log2_distortion_bound, [float(single.log2_distortion_bound)], rtol=1e-14)
    log2_bound = result.log2_distortion_bound[0]
    expected = {"sum-log": 2.0 * log2_bound, "sum": 2.0 * 2.0**log2_bound, "max": log2_bound}[objective]
    assert result.objective_value == pytest.approx(expected, rel=1e-14)
    _check_cell(result, [problem])


@pytest.mark.parametrize("method", ["cvxpy-search", "scipy"])
@pytest.mark.parametrize("objective", OBJECTIVES)
def test_identical_users_split_the_band_equally(objective, method):
    """The equal split, to within what the objective resolves: sum-log and sum are smooth at it, so a
    solver noise ε in the objective leaves the split uncertain by ~√ε (1e-10 -> 1e-5, observed 1.2e-5);
    the split's value must match the equal split's own to REL_TOL."""
    problem = _user(450.0)
    result = solve_cell_reference([problem, problem], BAND_HZ, SERVER_HZ, [1.0, 1.0], objective, method)
    np.testing.assert_allclose(result.bandwidth_hz, [BAND_HZ / 2] * 2, rtol=1e-4)
    half = _log2_bound(problem, BAND_HZ / 2, SERVER_HZ / 2)
    equal = {"sum-log": 2.0 * half, "sum": 2.0 * 2.0**half, "max": half}[objective]
    assert abs(result.objective_value - equal) <= REL_TOL * abs(equal)
    _check_cell(result, [problem, problem])


def test_sum_log_two_users_is_the_minimum_over_a_grid():
    """Grid of b_1 (39 interior points of [b_min,1, B − b_min,2], then 21 points around the best),
    b_2 = B − b_1, each user solved by solve_cvxpy_exact at F/2."""
    problems, weights = [_user(350.0, 0.35), _user(550.0, 0.4)], [1.0, 2.0]
    result = solve_cell_reference(problems, BAND_HZ, SERVER_HZ, weights, "sum-log", "cvxpy-search")
    _check_cell(result, problems)

    def objective(b1):
        return (weights[0] * _log2_bound(problems[0], b1, SERVER_HZ / 2)
                + weights[1] * _log2_bound(problems[1], BAND_HZ - b1, SERVER_HZ / 2))

    grid = np.linspace(least_band_hz(problems[0]), BAND_HZ - least_band_hz(problems[1]), 41)[1:-1]
    for _ in range(2):
        values = [objective(b1) for b1 in grid]
        best = int(np.argmin(values))
        grid = np.linspace(grid[max(best - 1, 0)], grid[min(best + 1, len(grid) - 1)], 21)
    scale = abs(result.objective_value)
    assert result.objective_value <= values[best] + 1e-9 * scale
    assert values[best] - result.objective_value <= REL_TOL * scale


def test_max_equalises_band_limited_users():
    problems = [_user(300.0), _user(500.0, 0.4)]
    result = solve_cell_reference(problems, BAND_HZ, SERVER_HZ, [1.0, 3.0], "max", "cvxpy-search")
    _check_cell(result, problems)
    for problem, retained in zip(problems, result.retained):  # both would gain from more band
        alone = solve_cvxpy_exact(_at(problem, BAND_HZ, SERVER_HZ / 2)).solution
        assert float(alone.retained_params) > 1.01 * retained
    log2_bounds = result.log2_distortion_bound
    assert abs(log2_bounds[0] - log2_bounds[1]) <= REL_TOL * abs(log2_bounds).max()
    assert result.objective_value == log2_bounds.max()


def _three_users():
    return [_user(300.0), _user(450.0), _user(600.0, 0.4)], [1.0, 2.0, 1.5]


@pytest.mark.parametrize("objective", [
    "sum-log",
    pytest.param("sum", marks=pytest.mark.slow),  # the nested search takes ~5 s
    pytest.param("max", marks=pytest.mark.slow),  # ~12 s: Brent on a kink takes golden-section steps
])
def test_scipy_agrees_with_the_search_at_three_users(objective):
    problems, weights = _three_users()
    search = solve_cell_reference(problems, BAND_HZ, SERVER_HZ, weights, objective, "cvxpy-search")
    scipy = solve_cell_reference(problems, BAND_HZ, SERVER_HZ, weights, objective, "scipy")
    _check_cell(search, problems)
    _check_cell(scipy, problems)
    assert scipy.objective_value == pytest.approx(search.objective_value, rel=REL_TOL)
    np.testing.assert_allclose(scipy.bandwidth_hz, search.bandwidth_hz, rtol=1e-4)


def test_scipy_at_eight_users_admits_no_improving_band_transfer():
    rng = np.random.default_rng(3)
    problems = [_user(float(d), float(t)) for d, t in zip(rng.uniform(300, 600, 8), rng.uniform(0.3, 0.4, 8))]
    weights = rng.uniform(0.5, 2.0, 8).tolist()
    band_hz, server_hz = 25e6, 16e9
    result = solve_cell_reference(problems, band_hz, server_hz, weights, "sum-log")  # auto: scipy
    _check_cell(result, problems, band_hz, server_hz)
    step = 1e-4 * band_hz
    values = [_log2_bound(p, b, server_hz / 8) for p, b in zip(problems, result.bandwidth_hz)]
    less = [_log2_bound(p, b - step, server_hz / 8) for p, b in zip(problems, result.bandwidth_hz)]
    more = [_log2_bound(p, b + step, server_hz / 8) for p, b in zip(problems, result.bandwidth_hz)]
    for i in range(8):
        for j in range(8):
            if i != j:  # move `step` Hz from user i to user j
                change = weights[i] * (less[i] - values[i]) + weights[j] * (more[j] - values[j])
                assert change >= -1e-9 * abs(result.objective_value)


def test_least_band_is_the_feasibility_edge_of_the_cvxpy_form():
    problem = _user(600.0, 0.3)
    least = least_band_hz(problem)
    assert 0.0 < least < BAND_HZ
    below = solve_cvxpy_exact(_at(problem, least * (1 - 1e-6), SERVER_HZ)).solution
    above = solve_cvxpy_exact(_at(problem, least * (1 + 1e-4), SERVER_HZ)).solution
    assert int(below.status) == 1  # INFEASIBLE
    assert int(above.status) == 0 and float(above.retained_params) > 0.0


def test_on_device_user_takes_no_band():
    problems = [_user(300.0, split=12), _user(400.0), _user(500.0)]
    result = solve_cell_reference(problems, BAND_HZ, SERVER_HZ, [1.0, 1.0, 1.0], "sum-log")
    _check_cell(result, problems)
    assert result.bandwidth_hz[0] == 0.0
    assert result.bandwidth_hz[1:].sum() == pytest.approx(BAND_HZ, rel=1e-12)
    alone = solve_cvxpy_exact(_at(problems[0], BAND_HZ, SERVER_HZ / 3)).solution
    assert result.retained[0] == float(alone.retained_params)


def test_infeasible_cells():
    far = _user(3000.0)  # cannot upload θ within its budgets even with the whole band
    assert least_band_hz(far) == np.inf
    result = solve_cell_reference([_user(300.0), far], BAND_HZ, SERVER_HZ, [1.0, 1.0], "sum-log")
    assert result.status == "infeasible" and result.objective_value == np.inf
    assert np.isnan(result.bandwidth_hz).all() and result.solutions == ()
    crowded = [_user(600.0, 0.3)] * 5  # each alone needs ~1.2 MHz of the 5 MHz
    assert 5 * least_band_hz(crowded[0]) > BAND_HZ
    assert solve_cell_reference(crowded, BAND_HZ, SERVER_HZ, [1.0] * 5, "max").status == "infeasible"


@pytest.mark.parametrize("change, message", [
    (dict(problems=[]), "K = 0"),
    (dict(weights=[1.0, 0.0]), "> 0"),
    (dict(weights=[1.0]), "one weight per user"),
    (dict(bandwidth_hz=0.0), "bandwidth_hz"),
    (dict(objective="mean"), "objective"),
    (dict(method="newton"), "method"),
])
def test_bad_input(change, message):
    args = dict(problems=[_user(300.0), _user(400.0)], bandwidth_hz=BAND_HZ, f_max_server_hz=SERVER_HZ,
                weights=[1.0, 1.0], objective="sum-log", method="auto")
    with pytest.raises(ConfigError, match=message):
        solve_cell_reference(**{**args, **change})
