"""Fading sweeps (laimco sweep --fading MODEL --samples N --seed S [--reduce-only]): the stored draws are
the solves at the drawn gains, the reductions equal numpy on the full sample, the draws do not depend on
the chunking, --reduce-only keeps only the reductions, resume works, bad input is one line and exit 2."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from laimco_jax import sweep
from laimco_jax.fading import gain_factor_draws, parse_fading
from laimco_jax.outage import REDUCTIONS, adaptive_reductions, with_channel_gain
from laimco_jax.params import ConfigError, make_problem
from laimco_jax.solvers import found_point, solve_exact
from laimco_jax.sweep import fading as sweep_fading
from laimco_jax.sweep.spec import SweepSpec
from laimco_jax.system import channel_gain

MODEL, SAMPLES, SEED = "rician:2+lognormal:4", 37, 11
GRID = {"distance_m": "150,450", "delay_s": "0.2,0.35"}  # 450 m misses the budgets at some draws
SPEC = dict(grid=GRID, fading=MODEL, samples=SAMPLES, seed=SEED)
QUANTILES = {"adaptive_log10_distortion_bound_q05": 0.05, "adaptive_log10_distortion_bound_q50": 0.5,
             "adaptive_log10_distortion_bound_q95": 0.95}


def numpy_reductions(log10_or_inf: np.ndarray) -> dict[str, np.ndarray]:
    """The reductions along the last axis by numpy on the full sample (the independent reference)."""
    finite = np.isfinite(log10_or_inf)
    served = finite.sum(-1)
    mean = np.where(served > 0, np.where(finite, log10_or_inf, 0.0).sum(-1) / np.maximum(served, 1), np.inf)
    out = {"adaptive_mean_log10_distortion_bound": mean, "adaptive_infeasible_fraction": np.mean(~finite, axis=-1)}
    for name, q in QUANTILES.items():
        out[name] = np.quantile(log10_or_inf, q, axis=-1, method="inverted_cdf")
    return out


@pytest.mark.parametrize("backend", ["jax", "numpy"])
@pytest.mark.parametrize("n", [1, 2, 19, 20, 21, 100, 1001])
def test_reductions_are_numpy_on_the_full_sample(n, backend):
    rng = np.random.default_rng(n)
    x = rng.normal(size=(4, n))
    x[0, rng.random(n) < 0.3] = np.inf  # some draws without a design
    x[1] = np.inf  # no design at all
    with jax.enable_x64(True):
        reduce = jax.jit(adaptive_reductions) if backend == "jax" else adaptive_reductions
        got = {k: np.asarray(v) for k, v in reduce(x).items()}
    want = numpy_reductions(x)
    assert set(got) == set(REDUCTIONS) == set(want)
    for name in REDUCTIONS:
        np.testing.assert_allclose(got[name], want[name], rtol=1e-14, atol=1e-15, err_msg=name)
    for name in QUANTILES:  # exact order statistics, not interpolated
        assert np.array_equal(got[name], want[name]), name


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """The same fading sweep: full with one grid point per chunk and draws in batches of 16 (the last one
    padded), full in one chunk, and reduce-only; plus the spec."""
    tmp = tmp_path_factory.mktemp("fading_sweep")
    spec = sweep.build_spec(**SPEC)
    patch = pytest.MonkeyPatch()
    patch.setattr(sweep_fading, "SAMPLE_BATCH_INSTANCES", 16)
    try:
        small = sweep.run_sweep(spec, tmp / "small.zarr", chunk_size=SAMPLES)
    finally:
        patch.undo()
    whole = sweep.run_sweep(spec, tmp / "whole.zarr", chunk_size=10**6)
    reduced = sweep.run_sweep(sweep.build_spec(**SPEC, reduce_only=True), tmp / "reduced.zarr", chunk_size=SAMPLES)
    return {"spec": spec, "tmp": tmp, **{k: sweep.open_sweep(p).load() for k, p in
                                         (("small", small), ("whole", whole), ("reduced", reduced))}}


def test_sample_dim_stores_the_drawn_gain_factor(runs):
    ds = runs["small"]
    assert ds.sizes["sample"] == SAMPLES and list(ds["sample"].values) == list(range(SAMPLES))
    with jax.enable_x64(True):
        direct = np.asarray(gain_factor_draws(parse_fading(MODEL), SEED, jnp.arange(SAMPLES), jnp.float64))
    np.testing.assert_allclose(ds["gain_factor"].values, direct, rtol=1e-14)
    assert ds.attrs["fading"] == MODEL and ds.attrs["fading_seed"] == SEED and ds.attrs["complete"]


def test_each_draw_is_the_solve_at_its_drawn_gain(runs):
    ds = runs["small"]
    factor = ds["gain_factor"].values
    with jax.enable_x64(True):
        for d in ds["distance_m"].values:
            for t in ds["delay_s"].values:
                problem = make_problem("paper", "bert-base", overrides={"distance_m": d, "delay_s": t}).astype(jnp.float64)
                direct = solve_exact(with_channel_gain(problem, channel_gain(problem.system) * factor, validate=False))
                at = ds.sel(distance_m=d, delay_s=t, scheme="proposed")
                np.testing.assert_allclose(at["drawn_channel_gain"].values, channel_gain(problem.system) * factor,
                                           rtol=1e-15)
                assert np.array_equal(at["status"].values, np.asarray(direct.status))
                np.testing.assert_allclose(at["retained_params"].values, np.asarray(direct.retained_params), rtol=1e-12)
                np.testing.assert_allclose(at["log10_distortion_bound"].values,
                                           np.asarray(direct.log10_distortion_bound), rtol=1e-12)


def test_reductions_equal_numpy_on_the_stored_draws(runs):
    ds = runs["small"]
    found = np.asarray(found_point(ds["status"].values))
    log10 = np.where(found, ds["log10_distortion_bound"].values, np.inf)
    assert 0 < np.mean(~found) < 1  # both served and unserved draws are reduced
    want = numpy_reductions(log10)
    for name in REDUCTIONS:
        assert ds[name].dims == ("distance_m", "delay_s", "scheme")
        np.testing.assert_allclose(ds[name].values, want[name], rtol=1e-13, atol=1e-15, err_msg=name)


def test_draws_and_results_do_not_depend_on_the_chunking(runs):
    small, whole = runs["small"], runs["whole"]
    assert small.attrs["chunk_block"] != whole.attrs["chunk_block"]
    for name in small.variables:
        assert np.array_equal(small[name].values, whole[name].values, equal_nan=small[name].dtype.kind == "f"), name


def test_reduce_only_keeps_only_the_reductions(runs):
    reduced, small = runs["reduced"], runs["small"]
    assert "sample" not in reduced.dims and "gain_factor" not in reduced.variables
    assert set(reduced.data_vars) == set(REDUCTIONS)
    for name in REDUCTIONS:
        assert np.array_equal(reduced[name].values, small[name].values), name
    # the store's size does not grow with the draws
    spec = sweep.build_spec(**SPEC, reduce_only=True)
    more = sweep.build_spec(**{**SPEC, "samples": 10**6}, reduce_only=True)
    layout = sweep.chunk_layout(spec.shape, 1)
    from laimco_jax.sweep.store import variable_bytes

    assert variable_bytes(spec, layout, np.float64) == variable_bytes(more, layout, np.float64)


def test_spec_round_trips_and_other_sweeps_keep_their_spec_text(runs):
    spec = runs["spec"]
    again = SweepSpec.from_json(spec.to_json())
    assert again.fading == spec.fading and again.to_json() == spec.to_json()
    assert "fading" not in json.loads(sweep.build_spec(grid=GRID).to_json())


def test_interrupted_fading_sweep_resumes_to_the_same_results(runs):
    out = runs["tmp"] / "resumed.zarr"
    spec = runs["spec"]

    def stop(chunk, instances):
        raise KeyboardInterrupt

    patch = pytest.MonkeyPatch()
    patch.setattr(sweep_fading, "SAMPLE_BATCH_INSTANCES", 16)  # the small run's programs
    try:
        with pytest.raises(sweep.Interrupted, match="[123] of 4 chunks written"):
            sweep.run_sweep(spec, out, chunk_size=SAMPLES, on_chunk=stop)
        from laimco_jax.cli_sweep import run_sweep_from_cli

        run_sweep_from_cli(out=out, resume=True, progress=False)  # the stored spec, no options
    finally:
        patch.undo()
    resumed = sweep.open_sweep(out).load()
    assert resumed.attrs["complete"]
    for name in runs["small"].variables:
        assert np.array_equal(resumed[name].values, runs["small"][name].values,
                              equal_nan=resumed[name].dtype.kind == "f"), name


@pytest.mark.parametrize(
    "args, words",
    [
        (("--fading", "rayleigh", "--samples", "0"), ["--samples", "0", "[1, "]),
        (("--fading", "rayleigh", "--seed", "1.5"), ["--seed", "integer"]),
        (("--fading", "rayleigh", "--seed", "-2"), ["--seed", "-2", "[0, "]),
        (("--fading", "nakagami:3"), ["--fading", "nakagami:3", "rician:K"]),
        (("--fading", "rician:-1"), ["rician:K", "-1.0", "[0, 1e+08]"]),
        (("--reduce-only",), ["--reduce-only", "--fading"]),
        (("--samples", "10"), ["--samples", "10", "--fading"]),
        (("--seed", "3"), ["--seed", "--fading"]),
        (("--fading", "rayleigh", "--split", "all"), ["--fading", "--split"]),
        (("--fading", "rayleigh", "--users", "cell.toml"), ["--users", "--fading"]),
    ],
)
def test_cli_bad_input_is_one_line_and_exit_2(cli, tmp_path, args, words):
    code, out, err = cli("sweep", "--grid", "distance_m=100,200", "--out", tmp_path / "x.zarr", *args)
    assert code == 2 and out == "", (out, err)
    assert len(err.strip().splitlines()) == 1, err
    assert all(word in err for word in words), err
    assert not (tmp_path / "x.zarr").exists()


def test_spec_file_fading_keys(tmp_path):
    path = tmp_path / "spec.toml"
    path.write_text('fading = "rician:5"\nsamples = 64\nseed = 9\nreduce_only = true\n[grid]\ndistance_m = "100,200"\n')
    options = sweep.read_spec_file(path)
    spec = sweep.build_spec(**options)
    assert spec.fading == sweep.FadingSamples("rician:5", 64, 9, True)
    assert spec.inner_shape == (1, 64) and spec.num_instances == 128
    path.write_text('fading = "rayleigh"\nreduce_only = "yes"\n')
    with pytest.raises(ConfigError, match="reduce_only = 'yes'; expected true or false"):
        sweep.read_spec_file(path)


def test_cli_fading_sweep_reduce_only(cli, runs, tmp_path):
    out = tmp_path / "cli.zarr"
    grid = [a for field, spec in GRID.items() for a in ("--grid", f"{field}={spec}")]
    code, _, err = cli("sweep", *grid, "--fading", MODEL, "--samples", SAMPLES, "--seed", SEED, "--reduce-only",
                       "--chunk-size", SAMPLES, "--out", out)
    assert code == 0, err
    ds = sweep.open_sweep(out).load()
    assert ds.attrs["fading_reduce_only"] and set(ds.data_vars) == set(REDUCTIONS)
    for name in REDUCTIONS:
        assert np.array_equal(ds[name].values, runs["reduced"][name].values), name
