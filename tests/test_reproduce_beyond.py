"""`laimco reproduce` parts beyond the paper: ``fading`` and ``multiuser`` in quick mode.

The properties are checked on the written CSV files: every returned user design is re-evaluated by
``laimco_jax.system.evaluate`` at its band and server share, a certified joint allocation is never
worse than the equal split, the static outage design is never better than the adaptive design on a
draw where it meets its budgets, and its measured outage is ε up to sampling error.
"""

import json

import numpy as np
import pandas as pd
import pytest

from laimco_jax.experiments.reproduce import DEFAULT_PARTS, PARTS, ReproduceConfig, reproduce
from laimco_jax.params import make_problem
from laimco_jax.system import OperatingPoint, evaluate

B, F = 5e6, 4e9
pytestmark = pytest.mark.slow  # compiles the cell solver once per objective (about a minute)


@pytest.fixture(scope="module")
def out(tmp_path_factory):
    out = tmp_path_factory.mktemp("beyond")
    files = reproduce(out, ReproduceConfig(quick=True), parts=["fading", "multiuser"], progress=False)
    assert set(files) == {"fading", "multiuser"}
    return out


@pytest.fixture(scope="module")
def cells(out):
    return pd.read_csv(out / "multiuser_cells.csv")


@pytest.fixture(scope="module")
def users(out):
    return pd.read_csv(out / "multiuser_users.csv")


def test_files_and_columns(out, cells, users):
    for name in ("fading_static", "fading_cdf", "multiuser_users", "multiuser_gain", "multiuser_server"):
        assert (out / f"{name}.png").stat().st_size > 10_000  # a drawn figure, not an empty canvas
    assert {"budgets", "delay_s", "energy_j", "objective", "server_sharing", "users", "status", "infeasible_reason", "value",
            "lower_bound", "certificate", "equal_split_value", "equal_split_infeasible_users", "alone_value",
            "gain"} <= set(cells.columns)
    assert {"objective", "users", "user", "distance_m", "cell_status", "user_status", "bandwidth_hz", "band_share",
            "server_share_hz", "server_share", "rho", "f_device_hz", "p_w", "rho_server", "f_server_hz", "log10_distortion_bound",
            "equal_split_log10_distortion_bound", "alone_log10_distortion_bound"} <= set(users.columns)
    grid = ReproduceConfig(quick=True).part_grid("multiuser")
    assert set(cells.objective) == {"sum-log", "sum", "max"} and set(cells.users) == set(grid.users)
    assert set(cells[cells.server_sharing == "optimized"].objective) == {"sum-log"}
    assert len(users) == len(cells.drop_duplicates(["budgets", "objective", "server_sharing"])) * sum(grid.users)
    static = pd.read_csv(out / "fading_static.csv")
    assert {"fading", "distance_m", "outage", "quantile_gain", "status", "log10_distortion_bound"} <= set(static.columns)
    assert set(static.fading) == {"rayleigh", "rician:5"}
    draws = pd.read_csv(out / "fading_draws.csv")
    assert {"fading", "draw", "gain_factor", "adaptive_log10_distortion_bound", "static_miss"} <= set(draws.columns)
    assert len(draws) == 2 * ReproduceConfig(quick=True).part_grid("fading").samples


def test_multiuser_users_meet_their_budgets_within_the_band(users):
    """Each returned design, re-evaluated at the user's band and server share, meets T0 and E0; Σ b_k ≤ B;
    the server shares are F/K (equal) or sum to at most F (optimized)."""
    served = users[users.log10_distortion_bound.notna()]
    assert len(served) > 0.9 * len(users)
    for (_, _, sharing, _), cell in served.groupby(["budgets", "objective", "server_sharing", "users"]):
        assert cell.bandwidth_hz.sum() <= B * (1 + 1e-12)
        if sharing == "equal":
            np.testing.assert_allclose(cell.server_share_hz, F / cell.users.iloc[0], rtol=1e-12)
        else:
            assert cell.server_share_hz.sum() <= F * (1 + 1e-12) and (cell.server_share_hz > 0).all()
    for row in served.itertuples():
        problem = make_problem(overrides=dict(distance_m=row.distance_m, delay_s=row.delay_s, energy_j=row.energy_j,
                                              bandwidth_hz=row.bandwidth_hz, f_max_server_hz=row.server_share_hz))
        terms = evaluate(problem.system, problem.model,
                         OperatingPoint(row.rho, row.f_device_hz, row.p_w, row.rho_server, row.f_server_hz))
        assert float(terms.delay_s) <= row.delay_s and float(terms.energy_j) <= row.energy_j
        assert row.f_server_hz <= row.server_share_hz * (1 + 1e-12)


def test_multiuser_joint_between_alone_and_equal_split(cells, users):
    """alone ≤ joint (each user's own relaxation), certified joint ≤ equal split, proven bound ≤ both;
    optimised server shares never worse than equal ones, their proven bound below both."""
    equal = cells[cells.server_sharing == "equal"].set_index(["budgets", "objective", "users"])
    optimized = cells[cells.server_sharing == "optimized"].set_index(["budgets", "objective", "users"])
    paired = optimized.merge(equal, left_index=True, right_index=True, suffixes=("", "_equal"))
    paired = paired[np.isfinite(paired.value_equal)]
    assert len(paired) == len(optimized[np.isfinite(optimized.value)]) > 0
    assert (paired.value <= paired.value_equal + 1e-9 * np.abs(paired.value_equal)).all()
    assert (paired.lower_bound <= paired.value + 1e-9 * np.abs(paired.value)).all()
    assert (paired.alone_value <= paired.value + 1e-9 * np.abs(paired.value)).all()
    users = users[users.server_sharing == "equal"]
    cells = cells[cells.server_sharing == "equal"]
    found = cells[np.isfinite(cells.value)]
    both = found[np.isfinite(found.equal_split_value)]
    certified = both[both.status == "optimal"]
    assert len(certified) >= len(cells) // 2  # not vacuous
    assert (certified.value <= certified.equal_split_value + 1e-9 * np.abs(certified.equal_split_value)).all()
    assert (both.lower_bound <= both.equal_split_value + 1e-9 * np.abs(both.equal_split_value)).all()
    assert (found.lower_bound <= found.value + 1e-9 * np.abs(found.value)).all()
    assert (found.alone_value <= found.value + 1e-9 * np.abs(found.value)).all()
    served = users[users.log10_distortion_bound.notna()]
    assert (served.alone_log10_distortion_bound <= served.log10_distortion_bound + 1e-9).all()
    one = cells[cells.users == 1]  # one user: the joint allocation is the equal split is the user alone
    np.testing.assert_allclose(one.value, one.equal_split_value, rtol=1e-9)
    np.testing.assert_allclose(one.value, one.alone_value, rtol=1e-9)
    # sharing costs: with more users in the cell a user's distortion bound never falls (equal split, nested cells)
    split = users[(users.objective == "sum-log")].pivot_table(index=["budgets", "user"], columns="users",
                                                             values="equal_split_log10_distortion_bound")
    steps = np.diff(split.to_numpy(), axis=1)
    assert (steps[np.isfinite(steps)] >= -1e-9).all()


def test_fading_static_design_against_the_draws(out):
    summary = pd.read_csv(out / "fading_summary.csv")
    draws = pd.read_csv(out / "fading_draws.csv")
    for record in summary.itertuples():
        # the static design's measured outage is ε up to sampling error (4 standard errors of ε)
        se = np.sqrt(record.outage * (1 - record.outage) / record.samples)
        assert abs(record.static_outage - record.outage) <= 4 * se
        # on every draw where the fixed design meets the budgets, the design that knows the draw is no worse
        mine = draws[draws.fading == record.fading]
        met = mine[~mine.static_miss]
        assert (met.adaptive_log10_distortion_bound <= record.static_log10_distortion_bound + 1e-9).all()
        assert record.adaptive_mean_log10_distortion_bound <= record.static_log10_distortion_bound
        assert record.value_of_channel_knowledge_log10 >= 0


def test_fading_static_curve_monotone_in_outage(out):
    """A larger ε is a higher quantile gain: the static optimum never worsens and, once feasible, stays so."""
    static = pd.read_csv(out / "fading_static.csv")
    for (fading, distance), curve in static.groupby(["fading", "distance_m"]):
        curve = curve.sort_values("outage")
        assert (np.diff(curve.quantile_gain) > 0).all()
        values = curve.log10_distortion_bound.to_numpy()
        feasible = np.isfinite(values)
        assert not np.any(feasible[:-1] & ~feasible[1:]), (fading, distance)
        assert (np.diff(values[feasible]) <= 1e-9).all(), (fading, distance)
    near = static[static.distance_m == static.distance_m.min()]
    assert np.isfinite(near[np.isclose(near.outage, 0.05)].log10_distortion_bound).all()


def test_summary_sections(out):
    text = (out / "summary.md").read_text()
    assert "## Fading: the outage-constrained static design" in text
    assert "## Multi-user cell" in text
    assert "**Optimised server shares** (sum-log" in text and "gain per user K = 1 " in text
    assert "| K | sum-log gain [bits/user] |" in text and "| rayleigh |" in text and "| rician:5 |" in text


def test_rerun_reuses_both_parts(out):
    before = {p.name: p.stat().st_mtime_ns for p in out.iterdir() if p.suffix in (".csv", ".png")}
    manifest = json.loads((out / "manifest.json").read_text())
    reproduce(out, ReproduceConfig(quick=True), parts=["fading", "multiuser"], progress=False)
    assert before == {p.name: p.stat().st_mtime_ns for p in out.iterdir() if p.suffix in (".csv", ".png")}
    assert json.loads((out / "manifest.json").read_text()) == manifest


def test_default_run_has_fading_but_not_multiuser(tmp_path, cli):
    assert "fading" in DEFAULT_PARTS and "multiuser" not in DEFAULT_PARTS and set(DEFAULT_PARTS) < set(PARTS)
    code, _, err = cli("reproduce", "--out", tmp_path, "--parts", "multiusers")
    assert code == 2 and "multiuser" in err and "or all" in err
