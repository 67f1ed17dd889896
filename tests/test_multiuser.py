"""Multi-user cells: solve_cell against its single-user pieces, the physics, the baselines and bad input.

The comparison with an independent reference (CVXPY per user, scipy over the band split) is in
tests/test_multiuser_reference.py.
"""

from __future__ import annotations

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from laimco_jax.cell import make_cell, stack_cells
from laimco_jax.params import make_problem
from laimco_jax.solvers import Status, solve_exact
from laimco_jax.solvers.multiuser import CellInfeasibleReason, solve_alone, solve_cell, solve_equal_split
from laimco_jax.system import evaluate

B, F = 5e6, 4e9


def _user(distance_m, delay_s=0.35, energy_j=0.015, **extra):
    return make_problem(overrides=dict(distance_m=distance_m, delay_s=delay_s, energy_j=energy_j, **extra))


def _cell(users, weights=None, bandwidth_hz=B):
    return make_cell(users, weights or [1.0] * len(users), bandwidth_hz, F)


def _padded(users, weights=None, size=3):
    """A cell of ``users`` padded with absent users to ``size`` (the shape the fast tests compile once for)."""
    cell = _cell(list(users) + [users[0]] * (size - len(users)), (weights or [1.0] * len(users)) + [1.0] * (size - len(users)))
    return cell._replace(present=np.arange(size) < len(users))


@pytest.fixture(scope="module")
def three_users():
    return _cell([_user(300.0), _user(500.0, delay_s=0.4), _user(200.0, energy_j=0.01)], [1.0, 2.0, 0.5])


def _user_problems(cell, solution):
    system = jax.tree_util.tree_map(jnp.asarray, cell.users.system).derive(
        bandwidth_hz=solution.bandwidth_hz, f_max_server_hz=solution.server_share_hz)
    return cell.users.derive(system=system)


@pytest.mark.parametrize("objective", ["sum-log", pytest.param("sum", marks=pytest.mark.slow), pytest.param("max", marks=pytest.mark.slow)])
def test_returned_points_meet_every_budget_and_the_band(three_users, objective):
    sol = solve_cell(three_users, objective)
    assert int(sol.status) == Status.OPTIMAL
    bands = np.asarray(sol.bandwidth_hz)
    assert np.all(bands > 0) and bands.sum() <= B * (1 + 1e-12)
    problems = _user_problems(three_users, sol)
    terms = evaluate(problems.system, problems.model, sol.users.point)
    assert np.all(np.asarray(terms.delay_s) <= np.asarray(problems.budget.delay_s))
    assert np.all(np.asarray(terms.energy_j) <= np.asarray(problems.budget.energy_j))
    assert np.all(np.asarray(sol.users.f_server_hz) <= F / 3 * (1 + 1e-12))
    assert float(sol.lower_bound) <= float(sol.objective)


def test_one_user_reproduces_solve_exact():
    """The same solve of the same numbers; only XLA's fusion of the final D̂ may differ (a few ulps)."""
    problem = _user(400.0)
    sol = solve_cell(_padded([problem]))
    alone = solve_exact(problem.astype(jnp.float64))
    assert float(sol.bandwidth_hz[0]) == B
    for name in ("status", "rho", "rho_server", "f_device_hz", "p_w", "f_server_hz", "log2_distortion_bound",
                 "upper_bound", "certificate"):
        np.testing.assert_array_max_ulp(np.asarray(getattr(sol.users, name))[0], np.asarray(getattr(alone, name)), 4)


def test_sum_log_marginal_values_of_band_are_equal_at_the_optimum(three_users):
    """Moving band between two users cannot help: Σ w log2 D̂ rises (independent finite differences)."""
    sol = solve_cell(three_users, "sum-log")
    bands = np.asarray(sol.bandwidth_hz)
    weights = np.asarray(three_users.weights)
    base = float(sol.objective)
    for give, take in ((0, 1), (1, 2), (2, 0)):
        for step in (1e-3, -1e-3):
            moved = bands.copy()
            moved[give] -= step * bands[give]
            moved[take] += step * bands[give]
            users = _user_problems(three_users, sol._replace(bandwidth_hz=jnp.asarray(moved)))
            log2 = np.asarray(solve_exact(users).log2_distortion_bound)
            assert np.sum(weights * log2) >= base - 1e-9


@pytest.mark.slow
def test_max_objective_equalises_band_limited_users(three_users):
    sol = solve_cell(three_users, "max")
    log2 = np.asarray(sol.users.log2_distortion_bound)
    assert np.ptp(log2) < 1e-5
    assert float(sol.objective) - float(sol.lower_bound) <= 1e-6


@pytest.mark.parametrize("objective", ["sum-log", pytest.param("sum", marks=pytest.mark.slow), pytest.param("max", marks=pytest.mark.slow)])
def test_joint_allocation_beats_equal_split_and_is_beaten_by_each_user_alone(three_users, objective):
    sol = solve_cell(three_users, objective)
    weights = np.asarray(three_users.weights)

    def value(log2):
        log2 = np.asarray(log2)
        return {"sum-log": np.sum(weights * log2), "sum": np.sum(weights * np.exp2(log2)), "max": np.max(log2)}[objective]

    equal = value(solve_equal_split(three_users).log2_distortion_bound)
    assert float(sol.objective) <= equal + 1e-9
    assert float(sol.lower_bound) >= value(solve_alone(three_users).log2_distortion_bound) - 1e-9


@pytest.mark.slow
def test_cells_of_different_sizes_batch_together(three_users):
    two = _cell([_user(250.0), _user(450.0)], [1.5, 1.0])
    batch = solve_cell(stack_cells([three_users, two]))
    for index, cell in enumerate((three_users, two)):
        alone = solve_cell(cell)
        k = np.shape(cell.present)[-1]
        np.testing.assert_allclose(np.asarray(batch.bandwidth_hz)[index, :k], np.asarray(alone.bandwidth_hz), rtol=1e-6)
        np.testing.assert_allclose(float(batch.objective[index]), float(alone.objective), rtol=1e-9, atol=1e-9)
    assert np.asarray(batch.bandwidth_hz)[1, 2] == 0.0
    assert np.all(np.asarray(batch.status) == Status.OPTIMAL)


def test_permuting_users_permutes_the_solution(three_users):
    order = [2, 0, 1]
    permuted = three_users._replace(
        users=jax.tree_util.tree_map(lambda x: np.asarray(x)[..., order], three_users.users),
        weights=np.asarray(three_users.weights)[order],
    )
    a, b = solve_cell(three_users), solve_cell(permuted)
    np.testing.assert_allclose(np.asarray(b.bandwidth_hz), np.asarray(a.bandwidth_hz)[order], rtol=1e-6)
    np.testing.assert_allclose(float(b.objective), float(a.objective), atol=1e-8)


@pytest.mark.slow
def test_vmap_over_cells_matches_the_batched_call(three_users):
    cells = stack_cells([three_users, three_users._replace(bandwidth_hz=np.float64(8e6))])
    batched = solve_cell(cells)
    mapped = jax.vmap(solve_cell)(cells)
    np.testing.assert_array_equal(np.asarray(mapped.bandwidth_hz), np.asarray(batched.bandwidth_hz))
    assert float(batched.objective[1]) < float(batched.objective[0])  # more band never hurts


def test_a_user_infeasible_with_the_whole_band_makes_the_cell_infeasible():
    sol = solve_cell(_padded([_user(300.0, delay_s=0.01), _user(300.0)]))
    assert int(sol.status) == Status.INFEASIBLE and int(sol.infeasible_reason) == CellInfeasibleReason.USER
    assert list(np.asarray(sol.users.status)[:2]) == [Status.INFEASIBLE, Status.OPTIMAL]


def test_users_feasible_alone_but_not_together_are_proved_band_infeasible():
    user = _user(900.0, delay_s=0.12, energy_j=0.1)  # least band 2.4 MHz: three need more than 5 MHz
    assert int(solve_exact(user.astype(jnp.float64)).status) == Status.OPTIMAL
    sol = solve_cell(_cell([user] * 3))
    assert int(sol.status) == Status.INFEASIBLE and int(sol.infeasible_reason) == CellInfeasibleReason.BAND


# ----------------------------------------------------------------------------- the command


CELL_FILE = """
[cell]
bandwidth_hz = 5e6
f_max_server_hz = 4e9
objective = "sum-log"
[defaults]
preset = "paper"
delay_s = 0.35
energy_j = 0.015
[[user]]
weight = 1.0
distance_m = 300.0
[[user]]
weight = 2.0
distance_m = 500.0
[[user]]
model = "bart-base"
distance_m = 200.0
"""


def _write(tmp_path, text, name="cell.toml"):
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def test_cli_json_lists_users_in_file_order_with_the_keys_of_solve(cli, tmp_path):
    code, out, _ = cli("multiuser", "--users", _write(tmp_path, CELL_FILE), "--json")
    assert code == 0
    record = json.loads(out)
    assert record["status"] == "optimal" and record["objective_name"] == "sum-log"
    _, solve_out, _ = cli("solve", "--json", "--set", "distance_m=300")
    keys = set(json.loads(solve_out)) - {"p_watt"}
    users = record["users"]
    assert [u["weight"] for u in users] == [1.0, 2.0, 1.0]
    for user in users:
        assert keys | {"bandwidth_hz", "server_share_hz", "weight"} <= set(user)
        assert user["server_share_hz"] == pytest.approx(4e9 / 3)
    assert sum(u["bandwidth_hz"] for u in users) <= 5e6 * (1 + 1e-12)
    weights = np.array([u["weight"] for u in users])
    assert record["objective"] == pytest.approx(float(np.sum(weights * [u["log2_distortion_bound"] for u in users])))
    assert record["objective"] <= record["equal_split_objective"]


def test_cli_infeasible_cell_exits_0_and_names_the_user(cli, tmp_path):
    text = CELL_FILE.replace("distance_m = 500.0", "distance_m = 500.0\ndelay_s = 0.01")
    code, out, _ = cli("multiuser", "--users", _write(tmp_path, text), "--json")
    record = json.loads(out)
    assert code == 0 and record["status"] == "infeasible"
    assert record["infeasible_reason"].startswith("user(s) 2:") and "delay budget" in record["infeasible_reason"]


@pytest.mark.parametrize(
    "edit, message",
    [
        (lambda t: t.split("[[user]]")[0], "K = 0"),
        (lambda t: t.replace("distance_m = 300.0", "distance_m = 300.0\nbandwidth_hz = 1e6"),
         "user 1: bandwidth_hz is a field of the whole cell"),
        (lambda t: t.replace("distance_m = 500.0", "distance_m = 500.0\nf_max_server_hz = 1e9"),
         "user 2: f_max_server_hz is a field of the whole cell"),
        (lambda t: t.replace("distance_m = 300.0", "distance = 300.0"), "user 1: unknown field 'distance'"),
        (lambda t: t.replace("weight = 2.0", "weight = -1.0"), "user 2: weight = -1.0 is outside the allowed range (0"),
        (lambda t: t.replace("weight = 2.0", "weight = 0"), "user 2: weight = 0"),
        (lambda t: t.replace('objective = "sum-log"', 'objective = "mean"'), "objective = 'mean' is not known"),
        (lambda t: t.replace('objective = "sum-log"', 'server_sharing = "fair"'),
         "server_sharing = 'fair' is not known; allowed: equal, optimized"),
        (lambda t: t.replace("[cell]", "[cel]"), "unknown table(s) cel"),
        (lambda t: t.replace("bandwidth_hz = 5e6\n", ""), "[cell] is missing bandwidth_hz"),
        (lambda t: t.replace("bandwidth_hz = 5e6", "bandwidth_hz = 1e30"), "cell.bandwidth_hz = 1e+30 is outside"),
        (lambda t: t.replace('model = "bart-base"', 'model = "gpt"'), "user 3: unknown model preset 'gpt'"),
    ],
)
def test_cli_malformed_cell_files_exit_2_with_one_line(cli, tmp_path, edit, message):
    code, out, err = cli("multiuser", "--users", _write(tmp_path, edit(CELL_FILE)))
    assert code == 2 and out == ""
    assert len(err.strip().splitlines()) == 1 and message in err, err


def test_cli_unknown_objective_flag_exits_2(cli, tmp_path):
    code, _, err = cli("multiuser", "--users", _write(tmp_path, CELL_FILE), "--objective", "median")
    assert code == 2 and "allowed: sum-log, sum, max" in err


def test_cli_unknown_server_sharing_flag_exits_2(cli, tmp_path):
    code, _, err = cli("multiuser", "--users", _write(tmp_path, CELL_FILE), "--server-sharing", "fair")
    assert code == 2 and "allowed: equal, optimized" in err


# ----------------------------------------------------------------------------- the structure it relies on


def test_upload_energy_per_bit_is_jointly_convex_in_seconds_per_bit_and_band():
    """docs/theory.md#multi-user-cell: u·b·(2^{1/(ub)} − 1) has a positive definite Hessian (mpmath)."""
    mpmath = pytest.importorskip("mpmath")
    mpmath.mp.dps = 40
    rng = np.random.default_rng(3)

    def energy(u, b):
        return u * b * (mpmath.power(2, 1 / (u * b)) - 1)

    for u, b in zip(10.0 ** rng.uniform(-9, -4, 50), 10.0 ** rng.uniform(3, 8, 50)):
        u, b = mpmath.mpf(u), mpmath.mpf(b)
        h = [[mpmath.diff(energy, (u, b), (2, 0)), mpmath.diff(energy, (u, b), (1, 1))],
             [mpmath.diff(energy, (u, b), (1, 1)), mpmath.diff(energy, (u, b), (0, 2))]]
        assert h[0][0] > 0 and h[0][0] * h[1][1] - h[0][1] ** 2 > 0


def test_retained_parameters_are_concave_and_increasing_in_the_band():
    """v(b) from the CVXPY reference (no shared code with the solver) on a grid of bands."""
    from laimco_jax.reference import solve_cvxpy_exact

    problem = _user(450.0)
    bands = np.linspace(1.5e6, 5e6, 8)
    values = np.array([solve_cvxpy_exact(problem.replace(system=problem.system.replace(bandwidth_hz=b)))
                       .solution.retained_params for b in bands], float)
    assert np.all(np.diff(values) > 0)
    assert np.all(np.diff(values, 2) <= 1e-6 * values.max())
