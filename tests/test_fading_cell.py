"""Fading in a cell of users (laimco fading --users CELL.toml): independent draws per user, the static cell
design at every user's ε-quantile gain, the cell outage against 1 − (1 − ε)^K, the adaptive cell design per
draw. The Monte Carlo compiles solve_cell once (about 16 s): those tests are slow."""

import json
import math

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd
import pytest

from laimco_jax.cell import load_cell, make_cell, stack_cells
from laimco_jax.fading import gain_factor_draws, parse_fading
from laimco_jax.outage import cell_monte_carlo, cell_static_misses, summarize_cell
from laimco_jax.params import make_problem
from laimco_jax.solvers import found_point
from laimco_jax.solvers.multiuser import solve_cell
from laimco_jax.system import channel_gain

EPS, SAMPLES, CHUNK, SEED = 0.1, 4000, 500, 5
DISTANCES = (150.0, 250.0)
CELL_TOML = """[cell]
bandwidth_hz = 5e6
f_max_server_hz = 4e9
objective = "sum-log"
""" + "".join(f"[[user]]\ndistance_m = {d}\n" for d in DISTANCES)


@pytest.fixture(scope="module")
def cell_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("cell") / "cell.toml"
    path.write_text(CELL_TOML)
    return path


@pytest.fixture(scope="module")
def run(cell_file):
    cell, _ = load_cell(cell_file)
    return cell, cell_monte_carlo(cell, parse_fading("rayleigh"), EPS, objective="sum-log", samples=SAMPLES,
                                  seed=SEED, chunk_size=CHUNK)


@pytest.mark.slow
def test_each_user_misses_exactly_below_its_quantile_gain(run):
    _, result = run
    q = -math.log1p(-EPS)  # Rayleigh: the ε-quantile of |h|² in closed form
    assert result.static.gain_factor_quantile == pytest.approx(q, rel=1e-14)
    assert found_point(int(result.static.solution.status))
    with jax.enable_x64(True):
        above = np.asarray(cell_static_misses(result.static, jnp.full((1, 2), q * (1 + 1e-9))))
        below = np.asarray(cell_static_misses(result.static, jnp.full((1, 2), q * (1 - 1e-6))))
    assert not above.any() and below.all()  # both users' budgets bind at g_k q_ε
    # so a user misses iff its draw is below q_ε
    assert np.array_equal(result.user_miss, result.gain_factor < q)


@pytest.mark.slow
def test_cell_outage_is_one_minus_the_product_within_4_standard_errors(run):
    _, result = run
    record = summarize_cell(result)
    users = len(DISTANCES)
    independent = 1.0 - (1.0 - EPS) ** users
    assert record["cell_outage_independent"] == pytest.approx(independent, rel=1e-14)
    assert record["cell_outage_union_bound"] == pytest.approx(users * EPS)
    se = math.sqrt(independent * (1 - independent) / SAMPLES)
    assert abs(record["static_cell_outage"] - independent) < 4 * se
    for measured in record["static_user_outage"]:
        assert abs(measured - EPS) < 4 * math.sqrt(EPS * (1 - EPS) / SAMPLES)
    # independent users: the empirical joint miss rate is not the single user's (it would be if the draws were shared)
    assert record["static_cell_outage"] > EPS + 4 * math.sqrt(EPS * (1 - EPS) / SAMPLES)


@pytest.mark.slow
def test_draws_are_independent_per_user_and_keyed_by_index(run):
    _, result = run
    with jax.enable_x64(True):
        flat = np.asarray(jax.jit(gain_factor_draws, static_argnames=("fading", "dtype"))(
            parse_fading("rayleigh"), SEED, jnp.arange(SAMPLES * 2), jnp.float64))
    np.testing.assert_allclose(result.gain_factor, flat.reshape(SAMPLES, 2), rtol=1e-14)
    assert abs(np.corrcoef(result.gain_factor.T)[0, 1]) < 4 / math.sqrt(SAMPLES)


@pytest.mark.slow
def test_adaptive_design_is_solve_cell_at_the_drawn_gains(run):
    cell, result = run
    g = np.asarray(channel_gain(cell.users.system))
    cells = [make_cell([make_problem("paper", "bert-base", overrides={"channel_gain": float(g[k] * f[k])})
                        for k in range(2)], [1.0, 1.0], 5e6, 4e9) for f in result.gain_factor[:CHUNK]]
    with jax.enable_x64(True):
        direct = solve_cell(stack_cells(cells), "sum-log")
    value = np.where(np.asarray(found_point(direct.status)), np.asarray(direct.objective), np.inf)
    assert np.array_equal(np.asarray(direct.status), result.adaptive_status[:CHUNK])
    np.testing.assert_allclose(result.adaptive_objective[:CHUNK], value, rtol=1e-9)
    record = summarize_cell(result)
    finite = np.isfinite(result.adaptive_objective)
    assert record["adaptive_mean_cell_objective"] == pytest.approx(np.mean(result.adaptive_objective[finite]), rel=1e-12)
    assert record["adaptive_cell_objective_q50"] == np.quantile(result.adaptive_objective, 0.5, method="inverted_cdf")
    assert record["adaptive_infeasible_fraction"] == pytest.approx(np.mean(~finite), abs=1e-15)


@pytest.mark.slow
def test_cli_fading_users_json_and_files(cli, run, cell_file, tmp_path):
    code, out, err = cli("fading", "--users", cell_file, "--fading", "rayleigh", "--outage", EPS, "--samples", 1000,
                         "--seed", SEED, "--chunk-size", CHUNK, "--json", "--out", tmp_path)
    assert code == 0, err
    record = json.loads(out)
    assert record["users"] == 2 and record["samples"] == 1000 and record["objective"] == "sum-log"
    _, result = run  # the same seed: the first 1000 joint draws of the fixture's run
    assert record["static_cell_outage"] == np.mean(result.user_miss[:1000].any(axis=1))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["fading_cell_cdf.png", "fading_cell_draws.csv",
                                                          "fading_cell_summary.json"]
    draws = pd.read_csv(tmp_path / "fading_cell_draws.csv")
    assert np.array_equal(draws["static_cell_miss"], result.user_miss[:1000].any(axis=1))
    assert np.allclose(draws[["gain_factor_1", "gain_factor_2"]], result.gain_factor[:1000], rtol=1e-15)


@pytest.mark.parametrize(
    "args, words",
    [
        (("--objective", "sum"), ["--objective", "--users"]),
        (("--users", "MISSING"), ["MISSING"]),
        (("--users", "CELL", "--preset", "paper"), ["--users", "--preset"]),
        (("--users", "CELL", "--samples", "0"), ["--samples", "0", "[1, "]),
        (("--users", "CELL", "--objective", "median"), ["objective", "median"]),
        (("--users", "CELL", "--outage", "1.5"), ["--outage", "1.5", "(0, 1)"]),
        (("--users", "SHARED"), ["server_sharing", "'fair'", "allowed: equal, optimized"]),
    ],
)
def test_cli_users_bad_input_is_one_line_and_exit_2(cli, tmp_path, args, words):
    (tmp_path / "cell.toml").write_text(CELL_TOML)
    (tmp_path / "shared.toml").write_text(CELL_TOML.replace('objective = "sum-log"', 'server_sharing = "fair"'))
    paths = {"CELL": tmp_path / "cell.toml", "SHARED": tmp_path / "shared.toml", "MISSING": tmp_path / "MISSING.toml"}
    code, out, err = cli("fading", "--fading", "rayleigh", *[paths.get(a, a) for a in args])
    assert code == 2 and out == "", (out, err)
    assert len(err.strip().splitlines()) == 1, err
    assert all(word in err for word in words), err


@pytest.mark.slow
def test_optimized_server_shares_fix_the_static_design_and_users_still_miss_exactly_below_the_quantile(cell_file):
    """With optimised server shares the static design fixes them (Σ S_k <= F) and each user's misses are
    still exactly its draws below q_ε (its delay and energy depend on its own gain alone); deep fades may
    leave the adaptive design infeasible, but never a draw the static design serves."""
    cell, _ = load_cell(cell_file)
    result = cell_monte_carlo(cell, parse_fading("rayleigh"), EPS, objective="sum-log", samples=400, seed=SEED,
                              chunk_size=200, server_sharing="optimized")
    shares = np.asarray(result.static.solution.server_share_hz)
    assert shares.sum() <= float(cell.f_max_server_hz) * (1 + 1e-12) and (shares > 0).all()
    q = -math.log1p(-EPS)
    assert np.array_equal(result.user_miss, result.gain_factor < q)
    # where no user of the static design misses, that design is a feasible point: the adaptive one finds one too
    served = ~result.user_miss.any(axis=1)
    assert served.sum() > 0.7 * len(served) and np.isfinite(result.adaptive_objective[served]).all()
