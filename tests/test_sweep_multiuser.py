"""Cell sweeps (``laimco sweep --users``): stored values against direct solve_cell calls, the K axis and
its seeded draws, resume, and bad input.

Compiling solve_cell takes several seconds, so every sweep here solves cells of the same shape: chunks
of 2 cells of Kmax = 2 users, objective sum-log. The sweeps, and the direct solve_cell calls of the
same cells placed like a chunk (on the sweep's device mesh), then share one compiled program.
"""

from __future__ import annotations

import jax
import numpy as np
import pytest
import xarray as xr
from jax.sharding import NamedSharding, PartitionSpec

from laimco_jax import sweep
from laimco_jax.cell import load_cell, make_cell, stack_cells
from laimco_jax.params import ConfigError, make_problem
from laimco_jax.solvers import Status
from laimco_jax.solvers.multiuser import solve_cell
from laimco_jax.sweep.compute import local_mesh
from laimco_jax.sweep.schema import SOLUTION_VARIABLES

F = 4e9
USERS = [{"distance_m": 300.0, "energy_j": 0.015, "weight": 1.0}, {"distance_m": 500.0, "energy_j": 0.02, "weight": 2.0}]
CELL_TOML = """
[cell]
bandwidth_hz = 5e6
f_max_server_hz = 4e9
[defaults]
delay_s = 0.35
energy_j = 0.015
[[user]]
distance_m = 300.0
[[user]]
distance_m = 500.0
energy_j = 0.02
weight = 2.0
"""
DELAYS, BANDS = [0.3, 0.4], [4e6, 5e6, 6e6]
GRID = {"delay_s": "0.3,0.4", "bandwidth_hz": "4e6,5e6,6e6"}
CHUNK = 4  # user problems: 2 cells x 1 objective x 2 users -> blocks of (1, 2); 4 chunks, edge chunks on bandwidth_hz
CELL_FIELDS = {"cell_status": "status", "cell_infeasible_reason": "infeasible_reason", "cell_objective": "objective",
               "cell_lower_bound": "lower_bound", "cell_certificate": "certificate"}


@pytest.fixture(scope="module")
def cell_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("cells") / "cell.toml"
    path.write_text(CELL_TOML)
    return path


@pytest.fixture(scope="module")
def reference(cell_file):
    out = cell_file.parent / "grid.zarr"
    sweep.run_sweep(sweep.build_cell_spec(cell_file, grid=GRID), out, chunk_size=CHUNK)
    return sweep.open_sweep(out).load()


def _solve(cells):
    """solve_cell of ``cells`` (a list of 2) placed as a sweep chunk is (so the compiled program is shared):
    one solution per cell."""
    batch = jax.device_put(stack_cells(cells), NamedSharding(local_mesh(), PartitionSpec("chunk")))
    solution = solve_cell(batch, "sum-log")
    return [jax.tree_util.tree_map(lambda x, n=n: np.asarray(x)[n], solution) for n in range(len(cells))]


def _assert_stored(ds, index, solution, k_present):
    """The stored cell at ``index`` (grid indices, objective sum-log) equals ``solution`` for its users."""
    at = ds.isel({**index, "objective": 0})
    for stored, field in CELL_FIELDS.items():
        np.testing.assert_allclose(at[stored].values, getattr(solution, field), rtol=1e-12)
    users = slice(0, k_present)
    np.testing.assert_allclose(at.band_share_hz.values[users], solution.bandwidth_hz[users], rtol=1e-12)
    np.testing.assert_allclose(at.server_share_hz.values[users], solution.server_share_hz[users], rtol=1e-12)
    for field, (stored, *_) in SOLUTION_VARIABLES.items():
        np.testing.assert_allclose(at[stored].values[users], getattr(solution.users, field)[users], rtol=1e-12,
                                   err_msg=stored)
    absent = slice(k_present, None)
    assert np.all(np.isnan(at.rho.values[absent])) and np.all(at.status.values[absent] == -1)


@pytest.mark.slow  # compiles the cell solver (about 20 s)
def test_grid_sweep_stores_solve_cell_of_the_same_cells(reference):
    ds = reference
    assert ds.attrs["complete"] and dict(ds.sizes) == {"delay_s": 2, "bandwidth_hz": 3, "objective": 1, "user": 2}
    np.testing.assert_array_equal(ds.delay_s, DELAYS)
    np.testing.assert_array_equal(ds.bandwidth_hz, BANDS)
    np.testing.assert_array_equal(ds.distance_m, [300.0, 500.0])
    np.testing.assert_array_equal(ds.weight, [1.0, 2.0])
    assert ds.present.values.all() and list(ds.objective.values) == ["sum-log"]
    cells = {
        (i, j): make_cell([make_problem(overrides={"distance_m": u["distance_m"], "delay_s": t, "energy_j": u["energy_j"]})
                           for u in USERS], [u["weight"] for u in USERS], b, F)
        for i, t in enumerate(DELAYS) for j, b in enumerate(BANDS)
    }
    keys = list(cells)
    for pair in (keys[0:2], keys[2:4], keys[4:6]):
        for (i, j), solution in zip(pair, _solve([cells[key] for key in pair])):
            _assert_stored(ds, {"delay_s": i, "bandwidth_hz": j}, solution, 2)
    assert (ds.cell_status == Status.OPTIMAL).any()
    assert np.all(ds.band_share_hz.sum("user") <= ds.bandwidth_hz * (1 + 1e-12))


@pytest.mark.slow  # compiles the cell solver (about 20 s)
def test_stored_cell_file_loads_back_as_the_cell(reference, tmp_path):
    (tmp_path / "back.toml").write_text(reference.attrs["cell_toml"])
    back, options = load_cell(tmp_path / "back.toml")
    assert options.objective == "sum-log" and options.server_sharing == "equal"
    np.testing.assert_array_equal(back.weights, [1.0, 2.0])
    np.testing.assert_array_equal(back.users.system.distance_m, [300.0, 500.0])
    np.testing.assert_array_equal(back.users.budget.energy_j, [0.015, 0.02])
    assert float(back.bandwidth_hz) == 5e6 and float(back.f_max_server_hz) == F


@pytest.mark.slow  # compiles the cell solver (about 20 s)
def test_resume_after_an_interruption_loses_and_repeats_nothing(cell_file, reference, tmp_path, cli):
    out = tmp_path / "resumed.zarr"
    spec = sweep.build_cell_spec(cell_file, grid=GRID)
    written = []

    def stop_after_two(chunk, instances):
        written.append(chunk)
        if len(written) == 2:
            raise KeyboardInterrupt

    with pytest.raises(sweep.Interrupted, match="resume with: laimco sweep --resume"):
        sweep.run_sweep(spec, out, chunk_size=CHUNK, on_chunk=stop_after_two)
    with pytest.warns(UserWarning, match="incomplete sweep: [23] of 4 chunks written"):
        partial = sweep.open_sweep(out).load()
    assert int((partial.cell_status == -1).sum()) > 0 and np.isnan(partial.cell_objective.values).any()
    other = sweep.build_cell_spec(cell_file, grid={**GRID, "delay_s": "0.3,0.45"})
    with pytest.raises(ConfigError, match="holds a different sweep"):
        sweep.run_sweep(other, out, resume=True)
    assert isinstance(sweep.stored_spec(out), sweep.CellSweepSpec)
    code, _, err = cli("sweep", "--resume", "--out", out)  # the stored spec, no options repeated
    assert code == 0, err
    xr.testing.assert_identical(sweep.open_sweep(out).load(), reference)


@pytest.mark.slow  # compiles the cell solver (about 20 s)
def test_num_users_axis_draws_seeded_cells_padded_with_absent_users(cell_file, tmp_path, cli):
    out = tmp_path / "k.zarr"
    code, _, err = cli("sweep", "--users", cell_file, "--num-users", "1,2", "--draws", "2", "--seed", "3",
                       "--distance-range", "100:600", "--chunk-size", CHUNK, "--out", out)
    assert code == 0, err
    ds = sweep.open_sweep(out).load()
    assert dict(ds.sizes) == {"num_users": 2, "draw": 2, "objective": 1, "user": 2}
    distances = sweep.draw_distances(3, 2, 2, (100.0, 600.0))
    np.testing.assert_array_equal(ds.distance_m.transpose("draw", "user"), distances)
    assert np.all((distances >= 100) & (distances <= 600))
    np.testing.assert_array_equal(ds.present.transpose("num_users", "user"), [[True, False], [True, True]])
    np.testing.assert_array_equal(ds.weight, [1.0, 1.0])  # the first user's, for every user
    first = USERS[0]
    for k_index, k in enumerate((1, 2)):
        cells = [make_cell([make_problem(overrides={"distance_m": float(d), "delay_s": 0.35, "energy_j": first["energy_j"]})
                            for d in distances[draw]], [first["weight"]] * 2, 5e6, F) for draw in (0, 1)]
        cells = [cell._replace(present=np.arange(2) < k) for cell in cells]  # the sweep's padding: the draw's next user
        for draw, solution in enumerate(_solve(cells)):
            _assert_stored(ds, {"num_users": k_index, "draw": draw}, solution, k)


def test_same_seed_same_cells_nested_in_k_and_draws(cell_file):
    spec = sweep.build_cell_spec(cell_file, num_users="1:4", draws=3, seed=11, distance_range="100:600")
    again = sweep.build_cell_spec(cell_file, num_users="1:4", draws=3, seed=11, distance_range="100:600")
    assert spec.to_json() == again.to_json()
    np.testing.assert_array_equal(spec.distances(), again.distances())
    smaller = sweep.build_cell_spec(cell_file, num_users="2", draws=2, seed=11, distance_range="100:600")
    np.testing.assert_array_equal(smaller.distances(), spec.distances()[:2, :2])  # the same users of each draw
    other = sweep.build_cell_spec(cell_file, num_users="1:4", draws=3, seed=12, distance_range="100:600")
    assert not np.any(other.distances() == spec.distances())
    roundtrip = sweep.CellSweepSpec.from_json(spec.to_json())
    assert roundtrip.to_json() == spec.to_json()
    np.testing.assert_array_equal(roundtrip.distances(), spec.distances())


def test_drawn_distances_are_uniform_over_the_annulus():
    low, high = 100.0, 600.0
    d = sweep.draw_distances(5, 20_000, 1, (low, high))[:, 0]
    for r in (200.0, 350.0, 500.0):
        expected = (r * r - low * low) / (high * high - low * low)  # area fraction inside radius r
        assert abs(np.mean(d <= r) - expected) < 0.015


def test_defaults_alone_give_the_template_user_of_the_k_axis(tmp_path):
    path = tmp_path / "defaults.toml"
    path.write_text("[cell]\nbandwidth_hz = 5e6\nf_max_server_hz = 4e9\n[defaults]\ndelay_s = 0.4\n")
    spec = sweep.build_cell_spec(path, num_users="2,4", distance_range="200:300")
    assert len(spec.users) == 1 and spec.users[0]["budget"]["delay_s"] == 0.4 and spec.max_users == 4
    with pytest.raises(ConfigError, match="no users"):
        sweep.build_cell_spec(path)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--num-users", "2"], "needs --distance-range"),
        (["--draws", "3"], "only with --num-users"),
        (["--seed", "1"], "only with --num-users"),
        (["--grid", "weight=1,2"], "unknown field 'weight'"),
        (["--grid", "bandwidth_hz=-1,5e6"], "grid bandwidth_hz = -1.0"),
        (["--grid", "delay_s=0:0.4:3"], "delay_s"),
        (["--num-users", "0,2", "--distance-range", "100:600"], "--num-users"),
        (["--num-users", "2", "--distance-range", "600:100"], "0 < MIN <= MAX"),
        (["--num-users", "2", "--distance-range", "100:600", "--grid", "distance_m=100,200"], "draws each user's distance_m"),
        (["--num-users", "2", "--distance-range", "100:600", "--draws", "0"], "--draws 0"),
        (["--objective", "fairness"], "'fairness' is not known"),
        (["--split", "0:3"], "not --split"),
        (["--set", "delay_s=0.3"], "not --set"),
    ],
)
def test_bad_cell_sweep_options_exit_2_with_one_line(cli, cell_file, tmp_path, args, message):
    code, _, err = cli("sweep", "--users", cell_file, *args, "--out", tmp_path / "bad.zarr")
    assert code == 2 and err.count("\n") == 1 and message in err, err
    assert not (tmp_path / "bad.zarr").exists()


def test_cell_options_need_users_and_a_path_loss_template(cli, tmp_path):
    code, _, err = cli("sweep", "--objective", "sum", "--out", tmp_path / "x.zarr")
    assert code == 2 and "only with --users" in err and err.count("\n") == 1
    gain = tmp_path / "gain.toml"
    gain.write_text("[cell]\nbandwidth_hz = 5e6\nf_max_server_hz = 4e9\n[[user]]\nchannel_gain = 1e-9\n")
    code, _, err = cli("sweep", "--users", gain, "--num-users", "2", "--distance-range", "100:600", "--out",
                       tmp_path / "x.zarr")
    assert code == 2 and "channel_gain" in err and err.count("\n") == 1
    code, _, err = cli("sweep", "--users", tmp_path / "missing.toml", "--out", tmp_path / "x.zarr")
    assert code == 2 and "no such file" in err
