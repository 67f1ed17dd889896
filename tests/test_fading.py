"""Fading channels (laimco_jax.fading), the outage-constrained static design and the Monte Carlo over
channel draws (laimco_jax.outage), and `laimco solve --fading` / `laimco fading`."""

import json
import math

import jax
import jax.numpy as jnp
import mpmath
import numpy as np
import pytest
from scipy import integrate, special, stats

from laimco_jax import make_problem
from laimco_jax.fading import (
    Fading,
    annulus_distance_draws,
    check_outage,
    check_samples,
    check_seed,
    gain_factor_cdf,
    gain_factor_draws,
    gain_factor_quantile,
    parse_fading,
    quantile_derivatives,
)
from laimco_jax.params import ConfigError
from laimco_jax.solvers import Status, solve_exact
from laimco_jax.system import channel_gain

MODELS = ["rayleigh", "rician:5", "lognormal:6", "rayleigh+lognormal:8", "rician:3+lognormal:4"]
DB = math.log(10.0) / 10.0


# ----------------------------------------------------------------------------- parsing


def test_parse_every_form_and_back():
    assert parse_fading("rayleigh") == Fading(0.0, None)
    assert parse_fading("rician:5") == Fading(5.0, None)
    assert parse_fading("lognormal:8") == Fading(None, 8.0)
    assert parse_fading("Rayleigh+lognormal:8") == Fading(0.0, 8.0)
    assert parse_fading("rician:2.5+lognormal:4") == Fading(2.5, 4.0)
    for text in MODELS:
        assert parse_fading(text).name == text


@pytest.mark.parametrize(
    "text, words",
    [
        ("nakagami:2", ["--fading", "nakagami:2", "rician:K"]),
        ("rician", ["--fading", "not a known fading model"]),
        ("rayleigh+rician:3", ["not a known fading model"]),
        ("lognormal:3+lognormal:4", ["not a known fading model"]),
        ("rician:-1", ["rician:K", "-1.0", "[0, 1e+08]"]),
        ("rician:x", ["rician:K", "'x'", "[0, 1e+08]"]),
        ("lognormal:-2", ["lognormal:SIGMA_DB", "-2.0", "[0, 30]"]),
        ("rayleigh+lognormal:nan", ["lognormal:SIGMA_DB", "nan"]),
    ],
)
def test_parse_rejects_with_the_parameter_value_and_range(text, words):
    with pytest.raises(ConfigError) as info:
        parse_fading(text)
    assert all(word in str(info.value) for word in words), str(info.value)


@pytest.mark.parametrize("value", [0.0, 1.0, -0.1, 1.5, float("nan"), "0.1", True])
def test_outage_outside_the_open_unit_interval(value):
    with pytest.raises(ConfigError, match=r"^--outage = .*\(0, 1\)"):
        check_outage("--outage", value)


def test_samples_and_seed_checks():
    assert check_samples("--samples", 3) == 3
    assert check_seed("--seed", 7) == 7
    for bad in (0, -1, 2.0, True):
        with pytest.raises(ConfigError, match="--samples"):
            check_samples("--samples", bad)
    for bad in (1.5, -1, 2**32, "3", False):
        with pytest.raises(ConfigError, match="--seed"):
            check_seed("--seed", bad)


# ----------------------------------------------------------------------------- quantiles


@pytest.mark.parametrize("eps", [1e-6, 1e-3, 0.05, 0.5, 0.99])
def test_rayleigh_quantile_closed_form(eps):
    q = gain_factor_quantile(parse_fading("rayleigh"), eps)
    assert q == pytest.approx(-math.log(1.0 - eps), rel=1e-14)
    assert -math.expm1(-q) == pytest.approx(eps, rel=1e-13)  # Exp(1) CDF
    assert quantile_derivatives(parse_fading("rayleigh"), eps)["outage"] == pytest.approx(1.0 / (1.0 - eps), rel=1e-12)


@pytest.mark.parametrize("k", [0.5, 5.0, 40.0])
@pytest.mark.parametrize("eps", [1e-3, 0.05, 0.7])
def test_rician_quantile_against_scipy_and_the_rice_density(k, eps):
    q = gain_factor_quantile(Fading(k, None), eps)
    assert q == pytest.approx(stats.ncx2.ppf(eps, 2, 2 * k) / (2 * (k + 1)), rel=1e-12)
    # independent: the Rice density of |h|² (mean 1) integrated with mpmath up to q gives ε
    mpmath.mp.dps = 30
    rice = lambda t: (k + 1) * mpmath.exp(-k - (k + 1) * t) * mpmath.besseli(0, 2 * mpmath.sqrt(k * (k + 1) * t))
    assert float(mpmath.quad(rice, [0, q])) == pytest.approx(eps, rel=1e-9)


@pytest.mark.parametrize("sigma", [3.0, 8.0])
@pytest.mark.parametrize("eps", [1e-3, 0.1])
def test_lognormal_quantile_closed_form(sigma, eps):
    q = gain_factor_quantile(Fading(None, sigma), eps)
    assert q == pytest.approx(stats.lognorm.ppf(eps, s=DB * sigma), rel=1e-12)


def _composite_cdf_over_small_scale(k, sigma, x):
    """P(H·S <= x) conditioned on H (the library conditions on S): E_H[Φ(ln(x/H)/σ')]."""
    density = lambda t: (k + 1) * math.exp(-k - (k + 1) * t) * special.i0e(2 * math.sqrt(k * (k + 1) * t)) * math.exp(
        2 * math.sqrt(k * (k + 1) * t))
    f = lambda t: density(t) * special.ndtr(math.log(x / t) / (DB * sigma)) if t > 0 else 0.0
    return integrate.quad(f, 0, np.inf, epsabs=0, epsrel=1e-11, limit=500, points=None)[0]


@pytest.mark.parametrize("k, sigma", [(0.0, 4.0), (0.0, 10.0), (3.0, 6.0)])
@pytest.mark.parametrize("eps", [1e-3, 0.05, 0.5])
def test_composite_quantile_against_an_independent_cdf(k, sigma, eps):
    q = gain_factor_quantile(Fading(k, sigma), eps)
    assert _composite_cdf_over_small_scale(k, sigma, q) == pytest.approx(eps, rel=1e-7)


@pytest.mark.parametrize("text", MODELS)
def test_draws_follow_the_cdf(text):
    """Empirical CDF of the JAX draws at the model's quantiles, and the mean of |h|² (1 without shadowing)."""
    fading = parse_fading(text)
    n = 40_000
    draws = np.asarray(gain_factor_draws(fading, 3, jnp.arange(n), jnp.float64))
    for eps in (0.01, 0.2, 0.5, 0.9):
        se = math.sqrt(eps * (1 - eps) / n)
        assert abs(np.mean(draws <= gain_factor_quantile(fading, eps)) - eps) < 4 * se
    mean = {None: 1.0}.get(fading.shadowing_db, math.exp(0.5 * (DB * (fading.shadowing_db or 0.0)) ** 2))  # E[H] E[S]
    assert abs(draws.mean() - mean) < 4 * draws.std() / math.sqrt(n)


def test_same_seed_same_draws_whatever_the_chunking():
    fading = parse_fading("rician:3+lognormal:4")
    draws = jax.jit(gain_factor_draws, static_argnames=("fading", "dtype"))
    whole = np.asarray(draws(fading, 11, jnp.arange(1000), jnp.float64))
    for size in (1, 7, 128, 999):
        parts = [np.asarray(draws(fading, 11, jnp.arange(s, min(s + size, 1000)), jnp.float64))
                 for s in range(0, 1000, size)]
        np.testing.assert_array_equal(np.concatenate(parts), whole)
    assert not np.array_equal(np.asarray(gain_factor_draws(fading, 12, jnp.arange(1000), jnp.float64)), whole)


def test_annulus_distances_uniform_in_area():
    n, d_min, d_max = 40_000, 10.0, 300.0
    d = np.asarray(annulus_distance_draws(5, jnp.arange(n), d_min, d_max, jnp.float64))
    assert d.min() >= d_min and d.max() <= d_max
    for r in (50.0, 150.0, 250.0):
        p = (r**2 - d_min**2) / (d_max**2 - d_min**2)
        assert abs(np.mean(d <= r) - p) < 4 * math.sqrt(p * (1 - p) / n)


@pytest.mark.parametrize("text", ["rician:5", "lognormal:6", "rayleigh+lognormal:8", "rician:3+lognormal:4"])
def test_quantile_derivatives_against_differences(text):
    fading = parse_fading(text)
    eps = 0.05
    derivatives = quantile_derivatives(fading, eps)
    h = 1e-5
    by_eps = (gain_factor_quantile(fading, eps + h) - gain_factor_quantile(fading, eps - h)) / (2 * h)
    assert derivatives["outage"] == pytest.approx(by_eps, rel=1e-5)
    for name, value in fading.parameters.items():
        if value == 0.0:  # Rayleigh: the Rician density's derivative in K vanishes at K = 0, so does dq/dK
            assert abs(derivatives[name]) < 1e-7
            continue
        step = 1e-3 * max(1.0, value)
        diff = (gain_factor_quantile(fading._replace(**{name: value + step}), eps)
                - gain_factor_quantile(fading._replace(**{name: value - step}), eps)) / (2 * step)
        assert derivatives[name] == pytest.approx(diff, rel=1e-4, abs=1e-9)


def test_cdf_is_continuous_in_x():
    fading = parse_fading("rayleigh+lognormal:8")
    xs = np.geomspace(1e-6, 1e3, 60)
    values = np.array([gain_factor_cdf(fading, x) for x in xs])
    assert np.all(np.diff(values) > 0) and values[0] > 0 and values[-1] < 1


# ----------------------------------------------------------------------------- static design and Monte Carlo

from laimco_jax.outage import monte_carlo, static_design, static_misses, static_sensitivity, summarize, with_channel_gain  # noqa: E402


@pytest.fixture(scope="module")
def problem():
    """BERT-base at 100 m: both budgets bind at the static optimum of every model and ε below."""
    return make_problem(overrides={"distance_m": 100.0}).astype(jnp.float64)


@pytest.mark.parametrize("text, eps", [("rayleigh", 0.01), ("rayleigh", 0.1), ("rician:5", 0.05),
                                       ("lognormal:6", 0.3), ("rician:3+lognormal:4", 0.2)])
def test_static_design_outage_is_eps(problem, text, eps):
    """The Monte Carlo outage of the static design is ε within 4 standard errors, and the design misses a
    budget exactly on the draws below the ε-quantile (the threshold of docs/theory.md#fading-channels)."""
    n = 20_000
    result = monte_carlo(problem, parse_fading(text), eps, samples=n, seed=2, chunk_size=8192)
    solution = result.static.solution
    assert int(solution.status) == Status.OPTIMAL and float(solution.delay_multiplier) > 0
    assert abs(summarize(result)["static_outage"] - eps) < 4 * math.sqrt(eps * (1 - eps) / n)
    q = result.static.gain_factor_quantile
    clear = np.abs(result.gain_factor / q - 1) > 1e-9
    np.testing.assert_array_equal(result.static_miss[clear], (result.gain_factor < q)[clear])


def test_a_design_for_a_larger_gain_misses_more_often(problem):
    """Optimality side: (P1) solved at a gain above g·q_ε misses the budgets just above q_ε."""
    fading, eps = parse_fading("rayleigh"), 0.05
    design = static_design(problem, fading, eps)
    bolder = solve_exact(with_channel_gain(problem, design.quantile_gain * 1.001))
    x = np.array([design.gain_factor_quantile * 1.0005])
    assert not static_misses(problem, design.solution, x)[0]
    assert static_misses(problem, bolder, x)[0]
    assert float(bolder.log10_distortion_bound) < float(design.solution.log10_distortion_bound)


@pytest.mark.slow
def test_zero_variance_fading_is_the_deterministic_solve(problem):
    deterministic = solve_exact(problem)
    design = static_design(problem, parse_fading("lognormal:0"), 0.05)
    assert design.gain_factor_quantile == 1.0
    for name in ("status", "rho", "rho_server", "f_device_hz", "p_w", "f_server_hz", "log10_distortion_bound"):
        np.testing.assert_allclose(getattr(design.solution, name), getattr(deterministic, name), rtol=1e-12)
    result = monte_carlo(problem, parse_fading("lognormal:0"), 0.05, samples=64, seed=0)
    np.testing.assert_allclose(result.adaptive_log10_distortion_bound, float(deterministic.log10_distortion_bound),
                               rtol=1e-12)
    assert summarize(result)["static_outage"] == 0.0
    nearly = static_design(problem, parse_fading("rician:1e8"), 0.05).solution  # |h|² within 2e-4 of 1
    assert float(nearly.log10_distortion_bound) == pytest.approx(float(deterministic.log10_distortion_bound), rel=1e-3)


@pytest.mark.slow
def test_monte_carlo_is_the_same_whatever_the_chunk_size(problem):
    fading = parse_fading("rayleigh+lognormal:4")
    runs = [monte_carlo(problem, fading, 0.1, samples=300, seed=9, chunk_size=size) for size in (300, 64, 7)]
    for run in runs[1:]:
        np.testing.assert_array_equal(run.gain_factor, runs[0].gain_factor)
        np.testing.assert_array_equal(run.static_miss, runs[0].static_miss)
        np.testing.assert_allclose(run.adaptive_log10_distortion_bound, runs[0].adaptive_log10_distortion_bound,
                                   rtol=1e-12)
    jitted = jax.jit(gain_factor_draws, static_argnames=("fading", "dtype"))  # op by op, XLA may round differently
    np.testing.assert_array_equal(runs[0].gain_factor, np.asarray(jitted(fading, 9, jnp.arange(300), jnp.float64)))


@pytest.mark.slow
def test_adaptive_design_is_the_solve_at_each_drawn_gain(problem):
    fading = parse_fading("rician:3")
    result = monte_carlo(problem, fading, 0.05, samples=50, seed=4)
    gain = float(channel_gain(problem.system))
    direct = solve_exact(with_channel_gain(problem, gain * jnp.asarray(result.gain_factor)))
    expected = np.where(np.asarray(direct.status) == Status.OPTIMAL, np.asarray(direct.log10_distortion_bound), np.inf)
    np.testing.assert_allclose(result.adaptive_log10_distortion_bound, expected, rtol=1e-12)
    record = summarize(result)
    finite = expected[np.isfinite(expected)]
    assert record["adaptive_mean_log10_distortion_bound"] == pytest.approx(finite.mean(), rel=1e-12)
    assert record["adaptive_infeasible_fraction"] == pytest.approx(1 - finite.size / 50)
    assert record["adaptive_log10_distortion_bound_q50"] == np.sort(expected)[24]  # inverted CDF: the 25th of 50


@pytest.mark.parametrize("text", ["rayleigh", "rician:5+lognormal:4"])
def test_static_sensitivity_against_differences(problem, text):
    fading, eps = parse_fading(text), 0.05
    derivatives = static_sensitivity(problem, fading, eps)
    assert not bool(derivatives["singular"])

    def log2_d(f, e):
        return float(static_design(problem, f, e).solution.log2_distortion_bound)

    h = 1e-5
    by_eps = (log2_d(fading, eps + h) - log2_d(fading, eps - h)) / (2 * h)
    assert float(derivatives["outage"].log2_distortion_bound) == pytest.approx(by_eps, rel=1e-4)
    for name, value in fading.parameters.items():
        if value == 0.0:
            continue
        step = 1e-3 * value
        diff = (log2_d(fading._replace(**{name: value + step}), eps)
                - log2_d(fading._replace(**{name: value - step}), eps)) / (2 * step)
        assert float(derivatives[name].log2_distortion_bound) == pytest.approx(diff, rel=1e-4)


def test_monte_carlo_bad_input(problem):
    fading = parse_fading("rayleigh")
    for kwargs, word in [(dict(samples=0), "samples"), (dict(samples=3, seed=-1), "seed"),
                         (dict(samples=3, chunk_size=0), "chunk_size"), (dict(samples=3, scheme="nope"), "scheme")]:
        with pytest.raises(ConfigError, match=word):
            monte_carlo(problem, fading, 0.05, **kwargs)
    with pytest.raises(ConfigError, match="outage"):
        monte_carlo(problem, fading, 1.0, samples=3)
    batch = jax.tree_util.tree_map(lambda x: jnp.stack([x, x]), problem)
    with pytest.raises(ConfigError, match="one configuration"):
        monte_carlo(batch, fading, 0.05, samples=3)


# ----------------------------------------------------------------------------- command line

NEAR = ("--set", "distance_m=100")


def test_cli_solve_with_fading_is_the_solve_at_the_quantile_gain(cli):
    code, out, err = cli("solve", "--json", *NEAR, "--fading", "rayleigh", "--outage", "0.1")
    assert code == 0, err
    record = json.loads(out)
    gain = float(channel_gain(make_problem(overrides={"distance_m": 100.0}).system))
    assert record["fading"] == "rayleigh" and record["outage"] == 0.1
    assert record["fading_gain_factor_quantile"] == pytest.approx(-math.log(0.9), rel=1e-14)
    assert record["fading_quantile_gain"] == pytest.approx(gain * -math.log(0.9), rel=1e-14)
    code, out, _ = cli("solve", "--json", "--set", f"channel_gain={record['fading_quantile_gain']!r}")
    fixed = json.loads(out)
    assert record["status"] == fixed["status"] == "optimal"
    for key in ("rho", "rho_server", "p_w", "log10_distortion_bound"):
        assert record[key] == pytest.approx(fixed[key], rel=1e-12)
    code, out, _ = cli("solve", "--json", *NEAR, "--fading", "rician:5")  # default ε = 0.05
    assert json.loads(out)["outage"] == 0.05
    assert json.loads(out)["fading_gain_factor_quantile"] == pytest.approx(stats.ncx2.ppf(0.05, 2, 10) / 12, rel=1e-12)


def test_cli_fading_json_and_files(cli, tmp_path):
    n, eps = 4000, 0.1
    code, out, err = cli("fading", "--json", *NEAR, "--fading", "rayleigh+lognormal:4", "--outage", eps, "--samples", n,
                         "--seed", 3, "--chunk-size", 1500, "--out", tmp_path)
    assert code == 0, err
    record = json.loads(out)
    assert record["samples"] == n and record["fading"] == "rayleigh+lognormal:4"
    assert abs(record["static_outage"] - eps) < 4 * math.sqrt(eps * (1 - eps) / n)
    assert record["adaptive_log10_distortion_bound_q05"] <= record["adaptive_log10_distortion_bound_q50"] \
        <= record["adaptive_log10_distortion_bound_q95"]
    assert 0 <= record["adaptive_infeasible_fraction"] < 1
    assert record["value_of_channel_knowledge_log10"] == pytest.approx(
        record["static_log10_distortion_bound"] - record["adaptive_mean_log10_distortion_bound"])
    assert record["static_d_log10_distortion_bound_d_outage"] < 0  # a looser outage lowers D̂*
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == ["fading_cdf.png", "fading_draws.csv", "fading_static.csv", "fading_static.png", "fading_summary.json"]
    import pandas as pd

    draws = pd.read_csv(tmp_path / "fading_draws.csv")
    assert len(draws) == n and draws["static_miss"].mean() == record["static_outage"]
    assert json.loads((tmp_path / "fading_summary.json").read_text())["static_outage"] == record["static_outage"]
    static = pd.read_csv(tmp_path / "fading_static.csv")
    row = static[np.isclose(static["outage"], eps)].iloc[0]
    assert row["log10_distortion_bound"] == pytest.approx(record["static_log10_distortion_bound"], rel=1e-12)
    assert np.all(np.diff(static["log10_distortion_bound"][np.isfinite(static["log10_distortion_bound"])]) <= 1e-12)
    # the same seed with another chunk size: the same summary
    code, again, _ = cli("fading", "--json", *NEAR, "--fading", "rayleigh+lognormal:4", "--outage", eps, "--samples", n,
                         "--seed", 3)
    assert json.loads(again)["static_outage"] == record["static_outage"]
    assert json.loads(again)["adaptive_mean_log10_distortion_bound"] == pytest.approx(
        record["adaptive_mean_log10_distortion_bound"], rel=1e-12)


def test_cli_fading_table(cli):
    code, out, err = cli("fading", "--fading", "rayleigh", "--samples", 64)
    assert code == 0, err
    assert "static_outage" in out and "adaptive_infeasible_fraction" in out


@pytest.mark.parametrize(
    "args, words",
    [
        (("fading", "--fading", "nakagami:2"), ["--fading", "nakagami:2", "rician:K"]),
        (("fading", "--fading", "rician:-1"), ["rician:K", "-1.0", "[0, 1e+08]"]),
        (("fading", "--fading", "lognormal:-3"), ["lognormal:SIGMA_DB", "-3.0", "[0, 30]"]),
        (("fading", "--fading", "rayleigh", "--outage", "0"), ["--outage", "0.0", "(0, 1)"]),
        (("fading", "--fading", "rayleigh", "--outage", "1"), ["--outage", "1.0", "(0, 1)"]),
        (("fading", "--fading", "rayleigh", "--samples", "0"), ["--samples", "0", "[1, "]),
        (("fading", "--fading", "rayleigh", "--seed", "1.5"), ["--seed", "integer"]),
        (("fading", "--fading", "rayleigh", "--seed", "-1"), ["--seed", "-1"]),
        (("fading",), ["--fading"]),
        (("solve", "--fading", "rayleigh", "--outage", "2"), ["--outage", "2.0", "(0, 1)"]),
        (("solve", "--fading", "bogus"), ["--fading", "bogus"]),
        (("solve", "--outage", "0.1"), ["--outage", "--fading"]),
    ],
)
def test_cli_bad_input_is_one_line_and_exit_2(cli, args, words):
    code, out, err = cli(*args)
    assert code == 2 and out == ""
    assert len(err.strip().splitlines()) == 1, err
    assert all(word in err for word in words), err
