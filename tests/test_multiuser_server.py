"""Optimised server shares (solve_cell(..., server_sharing="optimized")): every returned point meets its
budgets and both shared limits, it never does worse than equal shares, and its proven lower bound lies
below an independent brute-force search (CVXPY per user over a grid of server splits).

Each (objective, shape) compiles the cell solver with the server search (about a minute on two cores):
these tests run in the slow step.
"""

from __future__ import annotations

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from laimco_jax.cell import make_cell
from laimco_jax.params import make_problem
from laimco_jax.reference_multiuser import solve_cell_reference
from laimco_jax.solvers import Status, solve_exact
from laimco_jax.solvers.multiuser import solve_cell
from laimco_jax.system import evaluate

pytestmark = pytest.mark.slow

B, F = 5e6, 1.2e9


def _user(distance_m, delay_s=0.35, energy_j=0.015, split=4):
    return make_problem(split=split, overrides=dict(distance_m=distance_m, delay_s=delay_s, energy_j=energy_j))


def _padded(users, weights=None, size=3):
    """A cell of ``users`` padded with absent users to three (one compilation for every test)."""
    weights = list(weights or [1.0] * len(users))
    cell = make_cell(list(users) + [users[0]] * (size - len(users)), weights + [1.0] * (size - len(users)), B, F)
    return cell._replace(present=np.arange(size) < len(users))


#: Two cells of two users whose server parts compete (paper settings; splits and budgets differ).
PAIRS = [
    [_user(300.0, 0.4, 0.03, split=3), _user(450.0, 0.5, 0.05, split=6)],
    [_user(200.0, 0.5, 0.05, split=2), _user(350.0, 0.3, 0.02, split=5)],
]


@pytest.fixture(scope="module")
def three_users():
    return _padded([_user(300.0, 0.4, 0.03, split=3), _user(500.0, 0.5, 0.05, split=6), _user(200.0, 0.3, 0.02)],
                   [1.0, 2.0, 0.5])


def _problems_at(cell, solution):
    system = jax.tree_util.tree_map(jnp.asarray, cell.users.system).derive(
        bandwidth_hz=solution.bandwidth_hz, f_max_server_hz=solution.server_share_hz)
    return cell.users.derive(system=system)


@pytest.mark.parametrize("objective", ["sum-log", "max"])
def test_optimized_points_meet_every_budget_and_both_shared_limits(three_users, objective):
    sol = jax.device_get(solve_cell(three_users, objective, "optimized"))
    equal = jax.device_get(solve_cell(three_users, objective))
    assert int(sol.status) in (Status.OPTIMAL, Status.NOT_CONVERGED)
    present = np.asarray(three_users.present)
    shares, bands = np.asarray(sol.server_share_hz)[present], np.asarray(sol.bandwidth_hz)[present]
    assert np.all(shares > 0) and shares.sum() <= F * (1 + 1e-12)
    assert np.all(bands > 0) and bands.sum() <= B * (1 + 1e-12)
    problems = _problems_at(three_users, sol)
    terms = evaluate(problems.system, problems.model, sol.users.point)
    assert np.all(np.asarray(terms.delay_s)[present] <= np.asarray(problems.budget.delay_s)[present])
    assert np.all(np.asarray(terms.energy_j)[present] <= np.asarray(problems.budget.energy_j)[present])
    assert np.all(np.asarray(sol.users.f_server_hz)[present] <= shares * (1 + 1e-12))
    # equal shares are the first candidate: optimising them never loses; the bound holds both
    assert float(sol.objective) <= float(equal.objective) + 1e-9 * abs(float(equal.objective))
    assert float(sol.lower_bound) <= float(sol.objective)
    assert float(sol.certificate) == pytest.approx((float(sol.objective) - float(sol.lower_bound))
                                                  / (1.0 if objective == "max" else 3.5), rel=1e-9)


@pytest.mark.parametrize("objective", ["sum-log", "max"])
@pytest.mark.parametrize("pair", range(len(PAIRS)))
def test_optimized_bound_is_below_a_brute_force_search_and_the_bands_are_optimal(pair, objective):
    users = PAIRS[pair]
    sol = jax.device_get(solve_cell(_padded(users), objective, "optimized"))
    # the band split at the returned server shares: optimal, by the CVXPY reference at those shares
    shares = np.asarray(sol.server_share_hz)[:2]
    at_ours = solve_cell_reference(users, B, F, [1.0, 1.0], objective, method="cvxpy-search", server_hz=shares)
    assert float(sol.objective) == pytest.approx(at_ours.objective_value, rel=1e-6, abs=1e-6)
    # no split of the server beats the proven lower bound
    splits = np.linspace(0.02, 0.98, 25)
    brute = [solve_cell_reference(users, B, F, [1.0, 1.0], objective, method="cvxpy-search",
                                  server_hz=[t * F, (1 - t) * F]).objective_value for t in splits]
    assert float(sol.lower_bound) <= min(brute) + 1e-9 * abs(min(brute))
    # and the returned point is not worse than the equal split by the reference
    assert float(sol.objective) <= brute[len(splits) // 2] + 1e-6 * abs(brute[len(splits) // 2])


def test_one_user_gets_the_whole_server_and_reproduces_solve_exact():
    problem = _user(400.0)
    sol = jax.device_get(solve_cell(_padded([problem]), "sum-log", "optimized"))
    alone = solve_exact(problem.astype(jnp.float64).derive(
        system=problem.system.derive(bandwidth_hz=B, f_max_server_hz=F)).astype(jnp.float64))
    assert float(sol.server_share_hz[0]) == pytest.approx(F, rel=1e-12)
    assert int(sol.status) == Status.OPTIMAL
    np.testing.assert_allclose(float(sol.users.log2_distortion_bound[0]), float(alone.log2_distortion_bound), rtol=1e-12)


def test_cli_optimized_json(cli, tmp_path):
    path = tmp_path / "cell.toml"
    path.write_text(f"""
[cell]
bandwidth_hz = {B}
f_max_server_hz = {F}
server_sharing = "optimized"
[defaults]
preset = "paper"
[[user]]
distance_m = 300.0
delay_s = 0.4
energy_j = 0.03
split = 3
[[user]]
distance_m = 450.0
delay_s = 0.5
energy_j = 0.05
split = 6
[[user]]
distance_m = 200.0
delay_s = 0.3
energy_j = 0.02
""")
    code, out, _ = cli("multiuser", "--users", str(path), "--json")
    assert code == 0
    record = json.loads(out)
    assert record["server_sharing"] == "optimized" and record["status"] in ("optimal", "not_converged")
    shares = [u["server_share_hz"] for u in record["users"]]
    assert sum(shares) <= F * (1 + 1e-12) and min(shares) > 0
    assert all(u["f_server_hz"] <= s * (1 + 1e-12) for u, s in zip(record["users"], shares))
    assert record["lower_bound"] <= record["objective"] <= record["equal_split_objective"] + 1e-6 * abs(record["objective"])
    assert record["certificate"] == pytest.approx((record["objective"] - record["lower_bound"]) / 3, rel=1e-9)
