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
    whole = np.asarray(gain_factor_draws(fading, 11, jnp.arange(1000), jnp.float64))
    for size in (1, 7, 128, 999):
        parts = [np.asarray(gain_factor_draws(fading, 11, jnp.arange(s, min(s + size, 1000)), jnp.float64))
                 for s in range(0, 1000, size)]
        np.testing.assert_array_equal(np.concatenate(parts), whole)
    assert not np.array_equal(np.asarray(gain_factor_draws(fading, 12, jnp.arange(1000), jnp.float64)), whole)
    # a 2-D block of indices gives the same values as the flat draw
    np.testing.assert_array_equal(np.asarray(gain_factor_draws(fading, 11, jnp.arange(1000).reshape(20, 50), jnp.float64)),
                                  whole.reshape(20, 50))


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
