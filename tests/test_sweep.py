"""Sweeps: spec parsing, chunk layout, sharded / multi-process / resumed runs and the best split.

Every sweep here has the structure of ``SPEC`` (one point-list axis, two grid axes, four splits, one
scheme) and the same chunk size, so the in-process runs share one compilation; the sharded and
multi-process runs are subprocesses (their device setup must precede the JAX import there). The
two-process and the killed-process tests compile in two more processes each: they are marked slow.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import xarray as xr
import zarr

from laimco_jax import sweep
from laimco_jax.cli_sweep import run_sweep_from_cli
from laimco_jax.params import ConfigError, make_problem
from laimco_jax.solvers import SCHEMES, Status, solve_exact

ROOT = Path(__file__).resolve().parents[1]
POINTS = [{"distance_m": 300.0, "power_coeff_server": 1e-25}, {"distance_m": 800.0, "power_coeff_server": 1e-26}]
SPEC = dict(
    points=POINTS,
    grid={"delay_s": "0.0001:0.5:5", "energy_j": [0.004, 0.01, 0.03]},
    splits="0,3,6,9",
    schemes="proposed",
)
CHUNK = 32  # instances: 8 grid points x 4 splits -> blocks of (1, 2, 3), 6 chunks, edge chunks on delay_s
NUM_CHUNKS = 6

SCRIPT = """
import json, sys, time
import jax
jax.config.update("jax_enable_x64", True)
args = json.loads(sys.argv[1])
if args["processes"] > 1:
    jax.distributed.initialize(coordinator_address=args["coordinator"], num_processes=args["processes"],
                               process_id=args["process_id"])
from laimco_jax import sweep
pause = (lambda chunk, instances: time.sleep(args["slow"])) if args["slow"] else None
sweep.run_sweep(sweep.build_spec(**args["spec"]), args["out"], chunk_size=args["chunk"], on_chunk=pause)
print("devices", len(jax.local_devices()), "processes", jax.process_count())
"""


def _launch(out: Path, *, processes: int = 1, process_id: int = 0, port: int = 0, devices: int = 1, slow: float = 0):
    args = dict(spec=SPEC, out=str(out), chunk=CHUNK, processes=processes, process_id=process_id,
                coordinator=f"127.0.0.1:{port}", slow=slow)
    env = {**os.environ, "PYTHONPATH": str(ROOT), "XLA_FLAGS": f"--xla_force_host_platform_device_count={devices}",
           "JAX_PLATFORMS": "cpu"}
    return subprocess.Popen([sys.executable, "-c", SCRIPT, json.dumps(args)], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def _finish(proc: subprocess.Popen, timeout: float = 300) -> str:
    stdout, stderr = proc.communicate(timeout=timeout)
    assert proc.returncode == 0, stderr[-3000:]
    return stdout


def assert_same_sweep(actual: xr.Dataset, expected: xr.Dataset) -> None:
    """Equal coordinates, attrs, integers and NaN positions; floats equal up to rounding (1e-12 relative,
    1e-10 for the multipliers).

    Different shard lengths vectorise the elementwise kernels differently, which moves results by an
    ulp or so (and differences of nearly equal numbers, like slacks, by an ulp of the larger one). The
    multipliers are ratios at the bisection's final price, which an ulp can move to the adjacent float
    (seen: 3e-12 relative).
    """
    xr.testing.assert_identical(actual.drop_vars(list(actual.data_vars)), expected.drop_vars(list(expected.data_vars)))
    assert sorted(actual.data_vars) == sorted(expected.data_vars)
    for name, want in expected.data_vars.items():
        got = actual[name]
        assert got.dims == want.dims and got.attrs == want.attrs, name
        if np.issubdtype(want.dtype, np.integer):
            np.testing.assert_array_equal(got, want, err_msg=name)
        else:
            scale = float(np.nanmax(np.abs(want.values)))
            rtol = 1e-10 if name.endswith("_multiplier") else 1e-12
            np.testing.assert_allclose(got, want, rtol=rtol, atol=rtol * scale, equal_nan=True, err_msg=name)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def sharded_run(tmp_path_factory):
    """Start the 4-device run at once; it overlaps the in-process tests."""
    out = tmp_path_factory.mktemp("sub") / "sharded.zarr"
    proc = _launch(out, devices=4)
    yield out, proc
    if proc.poll() is None:
        proc.kill()


@pytest.fixture(scope="module")
def reference(tmp_path_factory, sharded_run):
    """The sweep run in this process on one device, uninterrupted."""
    out = tmp_path_factory.mktemp("ref") / "ref.zarr"
    sweep.run_sweep(sweep.build_spec(**SPEC), out, chunk_size=CHUNK, dtype=jnp.float64)
    return sweep.open_sweep(out).load()


# ----------------------------------------------------------------------------- parsing


def test_grid_values_forms():
    np.testing.assert_allclose(sweep.parse_grid_values("delay_s", "0.1:0.6:51"), np.linspace(0.1, 0.6, 51))
    np.testing.assert_allclose(sweep.parse_grid_values("bandwidth_hz", "1e6:1e8:3:log"), [1e6, 1e7, 1e8])
    np.testing.assert_array_equal(sweep.parse_grid_values("p_max_w", "0.1, 0.2,0.5"), [0.1, 0.2, 0.5])
    np.testing.assert_array_equal(sweep.parse_grid_values("p_max_w", [0.1, 1]), [0.1, 1.0])
    np.testing.assert_array_equal(sweep.parse_grid_values("p_max_w", 0.3), [0.3])
    assert sweep.parse_grid_option("budget.energy_j=0.005:0.03:26")[0] == "energy_j"
    assert sweep.parse_splits("all", "bert-base") == tuple(range(13))
    assert sweep.parse_splits("0:12", "bert-base") == tuple(range(13))
    assert sweep.parse_splits([0, 4], "bert-base") == (0, 4)
    assert sweep.parse_schemes("all") == SCHEMES
    assert sweep.parse_schemes("proposed, fixed-power") == ("proposed", "fixed-power")


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(grid={"delay_s": "0.1:0.6"}), r"grid delay_s='0.1:0.6': expected START:STOP:NUM"),
        (dict(grid={"delay_s": "0.1:0.6:2.5"}), r"NUM = '2.5' must be an integer >= 1"),
        (dict(grid={"delay_s": "0.1:0.6:0"}), r"NUM = '0' must be an integer >= 1"),
        (dict(grid={"delay_s": "0.1:x:3"}), r"'x' is not a number"),
        (dict(grid={"delay_s": "0.1:0.6:3:cubic"}), r"must be 'log'"),
        (dict(grid={"delay_s": "0:0.6:3:log"}), r"needs START > 0 and STOP > 0"),
        (dict(grid={"delay_s": "0.1,0.1"}), r"must be distinct"),
        (dict(grid={"delay_s": "nan"}), r"not a finite number"),
        (dict(grid={"delay_s": "-0.1:0.5:3"}), r"delay_s axis: budget.delay_s = -0.1 at index \(0,\) is outside"),
        (dict(grid={"warp_speed": "1:2:3"}), r"grid warp_speed: unknown field 'warp_speed'"),
        (dict(grid={"system.delay_s": "1:2:3"}), r"belongs to section \[budget\], not \[system\]"),
        (dict(grid={"params_device": "1e6:1e7:3"}, splits="0:12"), r"conflict with the split axis"),
        (dict(grid={"channel_gain": "1e-9:1e-8:3", "distance_m": "100:200:3"}), r"swept fields channel_gain, distance_m set both forms of the channel"),
        (dict(grid={"distance_m": "1:2:2"}, points=[{"distance_m": 3.0}]), r"distance_m appear on more than one axis"),
        (dict(splits="0:13"), r"split = '0:13' .*leaves \[0, 12\]"),
        (dict(splits="a:b"), r"split = 'a:b': expected 'all', FIRST:LAST"),
        (dict(schemes="proposed,teleport"), r"'teleport' is not known; allowed: all, proposed"),
        (dict(points=[{"distance_m": 1.0}, {"p_max_w": 1.0}]), r"points: row 1 has fields"),
        (dict(points=[{"p_max_w": -1.0}]), r"point axis: system.p_max_w = -1.0"),
    ],
)
def test_bad_specs_raise_clear_errors(kwargs, message):
    with pytest.raises(ConfigError, match=message):
        sweep.build_spec(**kwargs)


def test_grid_option_needs_field_and_spec():
    with pytest.raises(ConfigError, match=r"--grid 'delay_s': expected FIELD=SPEC"):
        sweep.parse_grid_option("delay_s")


def test_spec_file_and_points_csv(tmp_path):
    (tmp_path / "points.csv").write_text("distance_m,power_coeff_server\n300,1e-25\n800,1e-26\n")
    (tmp_path / "sweep.toml").write_text(
        'split = "0,3,6,9"\nscheme = "proposed"\nout = "res.zarr"\nchunk_size = 32\npoints = "points.csv"\n'
        '[set]\n"system.pue_server" = 2.0\n[grid]\ndelay_s = "0.0001:0.5:5"\nenergy_j = [0.004, 0.01, 0.03]\n'
    )
    options = sweep.read_spec_file(tmp_path / "sweep.toml")
    assert options["out"] == tmp_path / "res.zarr" and options["chunk_size"] == 32
    spec = sweep.build_spec(**{k: v for k, v in options.items() if k not in ("out", "chunk_size")})
    assert spec.to_json() == sweep.build_spec(**SPEC).to_json()
    assert sweep.SweepSpec.from_json(spec.to_json()).to_json() == spec.to_json()
    (tmp_path / "bad.toml").write_text('grids = "x"\n')
    with pytest.raises(ConfigError, match=r"unknown key\(s\) grids; allowed: preset"):
        sweep.read_spec_file(tmp_path / "bad.toml")
    (tmp_path / "bad.csv").write_text("distance_m,p_max_w\n300\n")
    with pytest.raises(ConfigError, match=r"bad.csv' line 2: 1 values for 2 fields"):
        sweep.read_points_csv(tmp_path / "bad.csv")


# ----------------------------------------------------------------------------- layout and reduction


@pytest.mark.parametrize("shape, max_points", [((5, 3), 8), ((2, 5, 3), 8), ((7,), 3), ((4, 4), 100), ((), 5), ((3, 2), 1)])
def test_chunks_tile_the_grid_once(shape, max_points):
    layout = sweep.chunk_layout(shape, max_points)
    assert layout.block_points <= max(max_points, 1)
    hits = np.zeros(shape, int)
    for chunk in range(layout.num_chunks):
        hits[layout.region(chunk)] += 1
    np.testing.assert_array_equal(hits, 1)


def test_best_split_reduction_ties_and_infeasible():
    status = jnp.array([[0, 0, 1], [1, 2, 1], [0, 0, 0], [0, 0, 0]])
    retained = jnp.array([[5.0, 7.0, 9.0], [9.0, 9.0, 9.0], [3.0, 3.0, 1.0], [1.0, 3.0 - 1e-12, 3.0]])
    log10 = jnp.array([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0], [7.0, 8.0, 9.0], [1.0, 2.0, 3.0]])
    best, at_best = sweep.best_split(status, retained, log10, (0, 4, 12))
    np.testing.assert_array_equal(best, [4, -1, 0, 4])
    np.testing.assert_array_equal(at_best, [2.0, np.nan, 7.0, 2.0])


# ----------------------------------------------------------------------------- sweeps


def _brute_force(spec_kwargs):
    """Every instance of SPEC solved directly: {variable: array (point, delay, energy, split)}."""
    delay = np.linspace(0.0001, 0.5, 5)
    energy = np.array([0.004, 0.01, 0.03])
    pts = {k: np.array([p[k] for p in POINTS]) for k in POINTS[0]}
    mesh = np.meshgrid(np.arange(len(POINTS)), delay, energy, indexing="ij")
    overrides = {k: v[mesh[0]] for k, v in pts.items()} | {"delay_s": mesh[1], "energy_j": mesh[2]}
    solutions = [solve_exact(make_problem(split=k, overrides=overrides).astype(jnp.float64)) for k in (0, 3, 6, 9)]
    return {f: np.stack([np.asarray(getattr(s, f)) for s in solutions], -1) for f in ("status", "retained_params",
                                                                                     "log10_distortion_bound", "rho")}


def test_sweep_matches_direct_solves_and_brute_force_best_split(reference):
    ds = reference
    assert ds.sizes == {"point": 2, "delay_s": 5, "energy_j": 3, "scheme": 1, "split": 4}
    np.testing.assert_array_equal(ds.distance_m, [300.0, 800.0])
    assert ds.delay_s.attrs["units"] == "s" and ds.total_energy_j.attrs["units"] == "J"
    assert "[budget]" in ds.attrs["config_toml"]
    direct = _brute_force(SPEC)
    got = ds.isel(scheme=0)
    np.testing.assert_array_equal(got.status, direct["status"])
    np.testing.assert_allclose(got.retained_params, direct["retained_params"], rtol=1e-12)
    np.testing.assert_allclose(got.rho, direct["rho"], rtol=1e-12, atol=1e-15)
    # brute-force argmax in numpy over OPTIMAL splits, -1 if none
    found = (direct["status"] == Status.OPTIMAL).any(-1)
    score = np.where(direct["status"] == Status.OPTIMAL, direct["retained_params"], -np.inf)
    top = score.max(-1, keepdims=True)
    index = np.array([[[next(k for k in range(4) if score[i, j, l, k] >= top[i, j, l, 0] * (1 - sweep.BEST_SPLIT_RTOL))
                        if found[i, j, l] else 0 for l in range(3)] for j in range(5)] for i in range(2)])
    expected = np.where(found, np.array([0, 3, 6, 9])[index], -1)
    np.testing.assert_array_equal(got.best_split, expected)
    at_best = np.take_along_axis(direct["log10_distortion_bound"], index[..., None], -1)[..., 0]
    np.testing.assert_allclose(got.best_log10_distortion_bound, np.where(found, at_best, np.nan), rtol=1e-12)
    assert (expected == -1).any() and (expected >= 0).any()  # the grid covers both cases


def test_sweep_resumes_after_an_interruption(tmp_path, reference):
    out = tmp_path / "resumed.zarr"
    spec = sweep.build_spec(**SPEC)
    written = []

    def stop_after_two(chunk, instances):
        written.append(chunk)
        if len(written) == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        sweep.run_sweep(spec, out, chunk_size=CHUNK, dtype=jnp.float64, on_chunk=stop_after_two)
    with pytest.warns(UserWarning, match="incomplete sweep: 3 of 6 chunks written"):
        partial = sweep.open_sweep(out).load()
    assert int((partial.status == -1).sum()) > 0 and np.isnan(partial.rho.values).any()
    with pytest.raises(ConfigError, match="exists; pass resume"):
        sweep.run_sweep(spec, out, chunk_size=CHUNK)
    other = sweep.build_spec(**{**SPEC, "schemes": "fixed-power"})
    with pytest.raises(ConfigError, match="holds a different sweep"):
        sweep.run_sweep(other, out, resume=True, dtype=jnp.float64)
    done_before = np.flatnonzero(zarr.open_array(out / "_progress" / "done", mode="r")[:]).tolist()
    assert set(written) <= set(done_before) and len(done_before) < NUM_CHUNKS
    resumed = []
    sweep.run_sweep(spec, out, chunk_size=7, resume=True, dtype=jnp.float64, on_chunk=lambda c, n: resumed.append(c))
    assert sorted(resumed + done_before) == list(range(NUM_CHUNKS))  # nothing lost, nothing twice
    xr.testing.assert_identical(sweep.open_sweep(out).load(), reference)


def test_default_dtype_is_float64_with_x64_off(tmp_path, reference):
    """run_sweep computes in float64 whatever the caller's setting (docs/architecture.md, precision policy)."""
    with jax.enable_x64(False):
        out = sweep.run_sweep(sweep.build_spec(**SPEC), tmp_path / "x64_off.zarr", chunk_size=CHUNK, progress=False)
        assert not jax.config.jax_enable_x64  # the caller's setting is restored
    ds = sweep.open_sweep(out).load()
    assert ds.rho.dtype == np.float64
    xr.testing.assert_identical(ds, reference)


def test_explicit_float32_computes_and_stores_float32(tmp_path, reference):
    out = sweep.run_sweep(sweep.build_spec(**SPEC), tmp_path / "f32.zarr", chunk_size=CHUNK, dtype=jnp.float32,
                          progress=False)
    ds = sweep.open_sweep(out).load()
    assert ds.rho.dtype == np.float32 and ds.total_delay_s.dtype == np.float32
    both = (ds.status == Status.OPTIMAL) & (reference.status == Status.OPTIMAL)
    assert int(both.sum()) > 0
    np.testing.assert_allclose(ds.retained_params.where(both), reference.retained_params.where(both), rtol=1e-3)


def test_cli_entry_with_spec_file_and_resume_only(tmp_path, reference):
    (tmp_path / "points.csv").write_text("distance_m,power_coeff_server\n300,1e-25\n800,1e-26\n")
    (tmp_path / "sweep.toml").write_text('split = "0,3,6,9"\nout = "cli.zarr"\npoints = "points.csv"\n[grid]\n'
                                         'delay_s = "0.0001:0.5:5"\nenergy_j = [1.0, 2.0]\n')
    # a --grid option replaces the file's axis of the same field, in place
    out = run_sweep_from_cli(spec=tmp_path / "sweep.toml", grids=["energy_j=0.004,0.01,0.03"],
                                   chunk_size=CHUNK, progress=False)
    assert out == tmp_path / "cli.zarr"
    xr.testing.assert_identical(sweep.open_sweep(out).load(), reference)
    assert run_sweep_from_cli(out=out, resume=True, progress=False) == out  # nothing left to do
    with pytest.raises(ConfigError, match="holds no sweep to resume"):
        run_sweep_from_cli(out=tmp_path / "absent.zarr", resume=True, progress=False)


def test_sharded_over_four_devices_equals_one_device(sharded_run, reference):
    out, proc = sharded_run
    assert "devices 4" in _finish(proc)
    assert_same_sweep(sweep.open_sweep(out).load(), reference)


@pytest.mark.slow
def test_two_processes_with_jax_distributed_equal_one(tmp_path, reference):
    out, port = tmp_path / "distributed.zarr", _free_port()
    procs = [_launch(out, processes=2, process_id=i, port=port) for i in range(2)]
    try:
        for proc in procs:
            assert "processes 2" in _finish(proc)
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
    assert_same_sweep(sweep.open_sweep(out).load(), reference)


@pytest.mark.slow
def test_killed_subprocess_resumes_to_the_same_dataset(tmp_path, reference):
    out = tmp_path / "killed.zarr"
    proc = _launch(out, slow=1.0)
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and proc.poll() is None:
        done = (out / "_progress" / "done").exists() and len(list((out / "_progress" / "done").glob("[0-9]*")))
        if done and done >= 2:
            break
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    with pytest.warns(UserWarning, match="incomplete sweep"):
        partial = sweep.open_sweep(out).load()
    assert (partial.status == -1).any(), "the sweep finished before it was killed"
    sweep.run_sweep(sweep.build_spec(**SPEC), out, resume=True, dtype=jnp.float64)
    xr.testing.assert_identical(sweep.open_sweep(out).load(), reference)


def test_gradient_fields_equal_pointwise_sensitivities(tmp_path):
    from laimco_jax.sensitivity import sensitivities

    spec = sweep.build_spec(grid={"delay_s": "0.25:0.45:3", "distance_m": "300,600"},
                            gradients=["log2_distortion_bound/delay_s", "rho/energy_j", "p_w/distance_m"])
    ds = sweep.open_sweep(sweep.run_sweep(spec, tmp_path / "g.zarr", progress=False))
    for i, delay in enumerate([0.25, 0.35, 0.45]):
        for j, distance in enumerate([300.0, 600.0]):
            problem = make_problem(overrides={"delay_s": delay, "distance_m": distance}).astype(jnp.float64)
            grads = sensitivities(problem)
            got = ds.isel(delay_s=i, distance_m=j, scheme=0)
            assert float(got.d_log2_distortion_bound_d_delay_s) == pytest.approx(float(grads["log2_distortion_bound"].budget.delay_s), rel=1e-9)
            assert float(got.d_rho_d_energy_j) == pytest.approx(float(grads["rho"].budget.energy_j), rel=1e-9, abs=1e-12)
            assert float(got.d_p_w_d_distance_m) == pytest.approx(float(grads["p_w"].system.distance_m), rel=1e-9, abs=1e-15)
    with pytest.raises(ConfigError, match="gradient 'rho/warp': expected OUTPUT/FIELD"):
        sweep.build_spec(grid={"delay_s": "0.2:0.3:2"}, gradients=["rho/warp"])


@pytest.mark.slow
def test_several_stored_gradients_over_large_chunks_finish(tmp_path):
    """Several gradient fields over full-size chunks: with LAPACK solves this deadlocked XLA's CPU
    thread pool (jaxlib 0.10.2: two batched solves running at once); the KKT systems are now solved
    elementwise. The verdicts must equal the small-chunk sweep's and the values agree to rounding: the
    two chunk shapes compile to differently fused programs (observed: 1e-11 relative on ρq + ρ̃s, a few
    1e-14 absolute on quantities that are zero to rounding, such as certificates and slacks)."""
    options = dict(grid={"delay_s": "0.1:0.6:64", "energy_j": "0.003:0.05:64", "distance_m": "200:900:8"},
                   schemes="proposed,fixed-power", gradients=["log2_distortion_bound/delay_s", "rho/energy_j"])
    spec = sweep.build_spec(**options)
    big = sweep.open_sweep(sweep.run_sweep(spec, tmp_path / "big.zarr", chunk_size=65536, progress=False)).load()
    small = sweep.open_sweep(sweep.run_sweep(spec, tmp_path / "small.zarr", chunk_size=4096, progress=False)).load()
    assert int((big.status == 0).sum()) > 0.3 * big.status.size
    xr.testing.assert_equal(big.status, small.status)
    for name in big.data_vars:
        scale = float(np.nanmax(np.abs(small[name].values)))
        xr.testing.assert_allclose(big[name], small[name], rtol=1e-9, atol=1e-12 * scale)


# ----------------------------------------------------------------------------- store files and compiled programs


def test_compiled_programs_are_cached_on_disk_and_skip_tracing(tmp_path, monkeypatch, reference):
    """With a compilation cache directory, the chunk program is stored serialized under it, and a later
    sweep of the same structure loads it without tracing; a damaged file is compiled again. Results
    are the same throughout."""
    from types import SimpleNamespace

    from laimco_jax.sweep import compute, executables

    spec = sweep.build_spec(**SPEC)
    before = jax.config.jax_compilation_cache_dir
    jax.config.update("jax_compilation_cache_dir", str(tmp_path / "cache"))
    try:
        sweep.run_sweep(spec, tmp_path / "first.zarr", chunk_size=CHUNK)
        (stored,) = (tmp_path / "cache" / executables.SUBDIR).glob("*.exe")
        with monkeypatch.context() as patch:
            def traced(*args, **kwargs):
                raise AssertionError("traced")

            original = compute._evaluate_chunk  # the same name (part of the key), but no tracing
            patch.setattr(compute, "_evaluate_chunk", SimpleNamespace(
                __module__=original.__module__, __qualname__=original.__qualname__, lower=traced))
            sweep.run_sweep(spec, tmp_path / "second.zarr", chunk_size=CHUNK)
        stored.write_bytes(b"damaged")
        sweep.run_sweep(spec, tmp_path / "third.zarr", chunk_size=CHUNK)
        assert stored.read_bytes() != b"damaged"
    finally:
        jax.config.update("jax_compilation_cache_dir", before)
    for name in ("first", "second", "third"):
        xr.testing.assert_identical(sweep.open_sweep(tmp_path / f"{name}.zarr").load(), reference)


def test_chunks_are_blocked_on_one_cpu_device_only():
    """Blocks keep a CPU core's cache warm; on an accelerator or over several devices a chunk is solved whole."""
    from types import SimpleNamespace

    from jax.sharding import Mesh

    from laimco_jax.sweep.compute import blocks_pay

    assert blocks_pay(Mesh(np.array(jax.devices("cpu")[:1]), ("points",)))

    def mesh_of(*platforms):
        return SimpleNamespace(size=len(platforms), devices=np.array([SimpleNamespace(platform=p) for p in platforms]))

    assert blocks_pay(mesh_of("cpu"))
    assert not blocks_pay(mesh_of("gpu"))
    assert not blocks_pay(mesh_of("tpu"))
    assert not blocks_pay(mesh_of("cpu", "cpu"))
