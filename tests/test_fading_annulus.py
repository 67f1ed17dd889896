"""A user at a random distance under fading: d uniform in area over the annulus [d_min, d_max]
(laimco_jax.fading.AnnulusFading, laimco_jax.outage), and `--distance-range MIN:MAX` of `laimco fading` and
`laimco solve --fading`.

References are independent of the code under test: the CDF of Y = (d/d_max)^(−α)|h|² for Rayleigh in
closed form (lower incomplete gamma), direct numpy draws of d and |h|², and Monte Carlo within 4
binomial standard errors √(ε(1 − ε)/N).
"""

import json
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import optimize, special

from laimco_jax import make_problem
from laimco_jax.fading import (
    AnnulusFading,
    annulus_distance,
    annulus_distance_draws,
    gain_factor_cdf,
    gain_factor_draws,
    gain_factor_pdf,
    gain_factor_quantile,
    parse_fading,
    with_distance_range,
)
from laimco_jax.outage import distance_range_fading, monte_carlo, summarize
from laimco_jax.params import ConfigError
from laimco_jax.system import channel_gain

ALPHA = 3.5
#: Draws per batch of every Monte Carlo run here (one compiled solve of a batch serves them all).
BATCH = 4000


def rayleigh_annulus_cdf(y, d_min, d_max, alpha):
    """P((d/d_max)^(−α) E <= y), E ~ Exp(1), d uniform in area: 1 − E_d[exp(−y (d/d_max)^α)], and with
    v = y (d/d_max)^α the average is (2/(α(1 − r²))) y^(−2/α) Γ(2/α) [P(2/α, y) − P(2/α, y r^α)], r = d_min/d_max."""
    r, s = d_min / d_max, 2.0 / alpha
    incomplete = special.gamma(s) * (special.gammainc(s, y) - special.gammainc(s, y * r**alpha))
    return 1.0 - 2.0 / (alpha * (1.0 - r * r)) * y ** (-s) * incomplete


def direct_draws(text, d_min, d_max, alpha, n, seed):
    """Y by numpy, apart from the library: d = √(d_min² + U (d_max² − d_min²)), |h|² of the model."""
    rng = np.random.default_rng(seed)
    fading = parse_fading(text)
    d = np.sqrt(d_min**2 + rng.random(n) * (d_max**2 - d_min**2))
    h2 = np.ones(n)
    if fading.k_factor is not None:
        k = fading.k_factor
        h2 = rng.noncentral_chisquare(2.0, 2.0 * k, n) / (2.0 * (k + 1.0)) if k > 0 else rng.exponential(size=n)
    if fading.shadowing_db is not None:
        h2 = h2 * 10.0 ** (fading.shadowing_db * rng.standard_normal(n) / 10.0)
    return (d / d_max) ** (-alpha) * h2


@pytest.fixture(scope="module")
def problem():
    """BERT-base with the paper's path loss (both budgets bind at the static optima below)."""
    return make_problem(overrides={"distance_m": 100.0}).astype(jnp.float64)


# ----------------------------------------------------------------------------- distribution


@pytest.mark.parametrize("d_min, d_max, alpha", [(20.0, 200.0, 3.76), (90.0, 100.0, 2.0), (1.0, 1000.0, 4.0)])
def test_cdf_is_the_closed_form_for_rayleigh(d_min, d_max, alpha):
    """The quadrature over the distance against the incomplete-gamma closed form, to 1e-9 relative."""
    model = with_distance_range(parse_fading("rayleigh"), d_min, d_max, alpha)
    for y in np.geomspace(1e-3, 1e6, 10):
        expected = rayleigh_annulus_cdf(y, d_min, d_max, alpha)
        assert gain_factor_cdf(model, y) == pytest.approx(expected, rel=1e-9, abs=1e-300)
    eps = 0.05
    q = gain_factor_quantile(model, eps)
    assert rayleigh_annulus_cdf(q, d_min, d_max, alpha) == pytest.approx(eps, rel=1e-9)
    h = 1e-5 * q  # the density: a central difference of the closed form (error ~ h² f'')
    slope = (rayleigh_annulus_cdf(q + h, d_min, d_max, alpha) - rayleigh_annulus_cdf(q - h, d_min, d_max, alpha)) / (2 * h)
    assert gain_factor_pdf(model, q) == pytest.approx(slope, rel=1e-6)


def test_distance_alone_in_closed_form():
    """|h|² = 1 (lognormal:0): Y = (d/d_max)^(−α), P(Y <= y) = (1 − y^(−2/α))/(1 − r²) on [1, r^(−α)]."""
    model = with_distance_range(parse_fading("lognormal:0"), 50.0, 200.0, ALPHA)
    r2 = 0.25**2
    for y in (1.5, 10.0, 100.0):
        assert gain_factor_cdf(model, y) == pytest.approx((1 - y ** (-2 / ALPHA)) / (1 - r2), rel=1e-9)
        assert gain_factor_pdf(model, y) == pytest.approx(2 / ALPHA * y ** (-2 / ALPHA - 1) / (1 - r2), rel=1e-12)
    eps = 0.2
    assert gain_factor_quantile(model, eps) == pytest.approx((1 - eps * (1 - r2)) ** (-ALPHA / 2), rel=1e-10)


@pytest.mark.parametrize("d_min, d_max", [(30.0, 300.0), (995.3, 2000.0), (0.1, 0.1 + 1e-9), (1.0, 1e4)])
def test_annulus_distance_is_one_formula_for_numpy_and_jax(d_min, d_max):
    """The inverse of the area CDF (d² − d_min²)/(d_max² − d_min²) at u on NumPy and JAX arrays: float64 within
    5e-16 relative (2.3 ulp) of mpmath at 50 digits, eagerly and under jit; a NumPy array for NumPy input, and
    eagerly the same IEEE operations, bit for bit (jit may fuse a multiply-add)."""
    import mpmath

    u = np.concatenate([[0.0, 0.5, 1.0], np.random.default_rng(3).random(200)])
    by_numpy = annulus_distance(u, d_min, d_max)
    eager = annulus_distance(jnp.asarray(u), d_min, d_max)
    jitted = jax.jit(annulus_distance)(jnp.asarray(u), d_min, d_max)
    assert isinstance(by_numpy, np.ndarray) and isinstance(eager, jax.Array)
    np.testing.assert_array_equal(by_numpy, np.asarray(eager))
    with mpmath.workdps(50):
        lo, hi = mpmath.mpf(d_min), mpmath.mpf(d_max)
        expected = np.array([float(mpmath.sqrt(lo**2 + mpmath.mpf(x) * (hi**2 - lo**2))) for x in u])
    for d in (by_numpy, np.asarray(jitted)):
        np.testing.assert_allclose(d, expected, rtol=5e-16, atol=0)
        assert d[0] == d_min


@pytest.mark.parametrize("text, eps", [("rayleigh", 0.05), ("rician:5", 0.01), ("rayleigh+lognormal:6", 0.1)])
def test_quantile_against_direct_draws(text, eps):
    """The composite ε-quantile against 2e5 direct numpy draws: the fraction of draws below it is ε within
    4 binomial standard errors, and the empirical ε-quantile lies between the quantiles at ε ± 4 SE."""
    n, d_min, d_max = 200_000, 20.0, 200.0
    model = with_distance_range(parse_fading(text), d_min, d_max, ALPHA)
    y = direct_draws(text, d_min, d_max, ALPHA, n, seed=11)
    se = math.sqrt(eps * (1 - eps) / n)
    q = gain_factor_quantile(model, eps)
    assert abs(np.mean(y <= q) - eps) < 4 * se
    empirical = np.quantile(y, eps)
    assert gain_factor_quantile(model, eps - 4 * se) < empirical < gain_factor_quantile(model, eps + 4 * se)


def test_a_circle_is_the_fixed_distance_model():
    """d_min = d_max: the model of |h|² exactly (quantile, CDF, draws); continuity as d_min -> d_max."""
    fading, eps = parse_fading("rician:3"), 0.05
    circle = with_distance_range(fading, 100.0, 100.0, ALPHA)
    assert gain_factor_quantile(circle, eps) == gain_factor_quantile(fading, eps)
    assert gain_factor_cdf(circle, 0.3) == gain_factor_cdf(fading, 0.3)
    draws = jax.jit(gain_factor_draws, static_argnames=("fading", "dtype"))
    with jax.enable_x64(True):
        index = jnp.arange(100)
        np.testing.assert_array_equal(draws(circle, 5, index, jnp.float64), draws(fading, 5, index, jnp.float64))
    thin = with_distance_range(fading, 100.0 * (1 - 1e-7), 100.0, ALPHA)
    assert gain_factor_quantile(thin, eps) == pytest.approx(gain_factor_quantile(fading, eps), rel=1e-6)


def test_draws_are_keyed_by_the_global_index_whatever_the_chunks():
    """Y_i = (d_i/d_max)^(−α)|h_i|² with d_i and |h_i|² of the same index i; chunks of 50 and 1 give the
    draws of one batch of 200 bit for bit; the distances are uniform in area (mean within 4 SE)."""
    model = with_distance_range(parse_fading("rayleigh+lognormal:4"), 30.0, 300.0, ALPHA)
    draws = jax.jit(gain_factor_draws, static_argnames=("fading", "dtype"))
    distances = jax.jit(annulus_distance_draws, static_argnames=("dtype",))
    with jax.enable_x64(True):
        whole = np.asarray(draws(model, 7, jnp.arange(200), jnp.float64))
        for size in (50, 1):
            parts = [np.asarray(draws(model, 7, jnp.arange(s, min(s + size, 200)), jnp.float64)) for s in range(0, 200, size)]
            np.testing.assert_array_equal(np.concatenate(parts), whole)
        h2 = np.asarray(draws(model.fading, 7, jnp.arange(200), jnp.float64))
        d = np.asarray(distances(7, jnp.arange(20_000), 30.0, 300.0, jnp.float64))
    np.testing.assert_allclose(whole, h2 * (d[:200] / 300.0) ** (-ALPHA), rtol=1e-13)
    assert d.min() >= 30.0 and d.max() <= 300.0
    mean = 2 / 3 * (300.0**3 - 30.0**3) / (300.0**2 - 30.0**2)  # E[d] for the density 2d/(b² − a²)
    std = math.sqrt((300.0**2 + 30.0**2) / 2 - mean**2)
    assert abs(d.mean() - mean) < 4 * std / math.sqrt(d.size)


@pytest.mark.parametrize("d_min, d_max, alpha", [(1.0, 1000.0, 2.0), (1.0, 1000.0, 6.0), (30.0, 300.0, 3.76),
                                                  (100.0, 100.5, 2.7), (10.0, 5000.0, 4.5), (10.0, 5000.0, 6.0)])
def test_path_loss_factor_against_mpmath(d_min, d_max, alpha):
    """|h|² = 1: each drawn Y is (d/d_max)^(−α) of its own drawn d (:func:`annulus_distance_draws`, same seed
    and index) to 1e-13 relative of mpmath at 40 digits, over the path-loss exponents and ranges of use."""
    import mpmath

    model = with_distance_range(parse_fading("lognormal:0"), d_min, d_max, alpha)
    index = jnp.arange(500)
    with jax.enable_x64(True):
        y = np.asarray(jax.jit(gain_factor_draws, static_argnames=("fading", "dtype"))(model, 3, index, jnp.float64))
        d = np.asarray(annulus_distance_draws(3, index, d_min, d_max, jnp.float64))
    with mpmath.workdps(40):
        expected = np.array([float((mpmath.mpf(x) / mpmath.mpf(d_max)) ** -mpmath.mpf(alpha)) for x in d])
    np.testing.assert_allclose(y, expected, rtol=1e-13, atol=0)


# ----------------------------------------------------------------------------- static design and Monte Carlo


@pytest.mark.parametrize("eps", [0.02, 0.1])
def test_static_design_outage_is_eps_over_distance_and_fading(problem, eps):
    """The static design (P1 at g(d_max) q_ε(Y)) misses a budget in ε of the joint draws within 4 SE, and
    exactly on the draws whose gain is below the quantile gain (whatever the configuration's distance)."""
    n = 20_000
    model = distance_range_fading(problem, parse_fading("rayleigh"), 40.0, 160.0)
    result = monte_carlo(problem, model, eps, samples=n, seed=3, chunk_size=BATCH)
    record = summarize(result)
    assert abs(record["static_outage"] - eps) < 4 * math.sqrt(eps * (1 - eps) / n)
    assert record["static_status"] == "optimal" and record["distance_range_m"] == [40.0, 160.0]
    g_max = float(channel_gain(problem.system.replace(distance_m=160.0)))
    assert record["fading_quantile_gain"] == pytest.approx(g_max * result.static.gain_factor_quantile, rel=1e-14)
    system = problem.system  # G_i = g(d_i)|h_i|², g(d) = K0 (d/d0)^-α, |h_i|² drawn apart with the same seed
    path_loss = 10 ** (float(system.ref_gain_db) / 10) * (result.distance_m / float(system.ref_distance_m)) ** (-float(system.pathloss_exponent))
    with jax.enable_x64(True):
        h2 = np.asarray(jax.jit(gain_factor_draws, static_argnames=("fading", "dtype"))(
            model.fading, 3, jnp.arange(n), jnp.float64))
    gain = path_loss * h2
    np.testing.assert_allclose(g_max * result.gain_factor, gain, rtol=1e-12)
    clear = np.abs(gain / record["fading_quantile_gain"] - 1) > 1e-9
    np.testing.assert_array_equal(result.static_miss[clear], (gain < record["fading_quantile_gain"])[clear])
    assert 40.0 <= result.distance_m.min() and result.distance_m.max() <= 160.0


def test_a_circle_is_the_fixed_distance_run(problem):
    """--distance-range D:D equals the run at distance_m = D exactly (the configuration's own distance,
    here 300 m, is ignored)."""
    fading, eps = parse_fading("rician:2"), 0.05
    far = problem.derive(system=problem.system.replace(distance_m=300.0))
    circle = monte_carlo(far, distance_range_fading(far, fading, 100.0, 100.0), eps, samples=BATCH, seed=1)
    fixed = monte_carlo(problem, fading, eps, samples=BATCH, seed=1)
    for name in ("gain_factor", "adaptive_log10_distortion_bound", "static_miss"):
        np.testing.assert_array_equal(getattr(circle, name), getattr(fixed, name))
    np.testing.assert_array_equal(circle.distance_m, np.full(BATCH, 100.0))
    a, b = summarize(circle), summarize(fixed)
    assert {k: v for k, v in a.items() if k not in ("distance_range_m", "mean_distance_m")} == b
    assert a["distance_range_m"] == [100.0, 100.0] and a["mean_distance_m"] == 100.0


@pytest.mark.slow
def test_monte_carlo_is_the_same_whatever_the_chunk_size(problem):
    model = distance_range_fading(problem, parse_fading("rician:3+lognormal:4"), 10.0, 150.0)
    runs = [monte_carlo(problem, model, 0.1, samples=300, seed=9, chunk_size=size) for size in (300, 64)]
    for name in ("gain_factor", "distance_m", "static_miss"):
        np.testing.assert_array_equal(getattr(runs[1], name), getattr(runs[0], name))
    np.testing.assert_allclose(runs[1].adaptive_log10_distortion_bound, runs[0].adaptive_log10_distortion_bound, rtol=1e-12)


def test_library_bad_input(problem):
    fading = parse_fading("rayleigh")
    for low, high in [(0.0, 10.0), (20.0, 10.0), (-1.0, 5.0), (math.nan, 5.0)]:
        with pytest.raises(ConfigError, match="distance range"):
            distance_range_fading(problem, fading, low, high)
    with pytest.raises(ConfigError, match="pathloss_exponent"):
        with_distance_range(fading, 1.0, 2.0, 0.0)
    given_gain = make_problem(overrides={"channel_gain": 1e-9})
    with pytest.raises(ConfigError, match="path-loss form"):
        distance_range_fading(given_gain, fading, 10.0, 20.0)
    with pytest.raises(ConfigError, match="path-loss exponent"):
        monte_carlo(problem, AnnulusFading(fading, 10.0, 20.0, 2.0), samples=3)


# ----------------------------------------------------------------------------- command line


def strict_json(text):
    def refuse(constant):
        raise ValueError(f"not strict JSON: {constant}")

    return json.loads(text, parse_constant=refuse)


def test_cli_solve_distance_range_is_the_solve_at_the_composite_quantile(cli):
    """The quantile gain against the closed-form CDF inverted by scipy's brentq, times g(d_max)."""
    eps, d_min, d_max = 0.1, 50.0, 150.0
    code, out, err = cli("solve", "--json", "--fading", "rayleigh", "--outage", eps, "--distance-range", f"{d_min:g}:{d_max:g}")
    assert code == 0, err
    record = strict_json(out)
    alpha = float(make_problem().system.pathloss_exponent)
    q = optimize.brentq(lambda y: rayleigh_annulus_cdf(y, d_min, d_max, alpha) - eps, 1e-6, 1e6, xtol=1e-14, rtol=1e-14)
    g_max = float(channel_gain(make_problem(overrides={"distance_m": d_max}).system))
    assert record["distance_range_m"] == [d_min, d_max]
    assert record["fading_gain_factor_quantile"] == pytest.approx(q, rel=1e-9)
    assert record["fading_quantile_gain"] == pytest.approx(g_max * q, rel=1e-9)
    code, out, _ = cli("solve", "--json", "--set", f"channel_gain={record['fading_quantile_gain']!r}")
    fixed = strict_json(out)
    for key in ("rho", "rho_server", "p_w", "log10_distortion_bound"):
        assert record[key] == pytest.approx(fixed[key], rel=1e-12)


def test_cli_fading_distance_range_json(cli):
    n, eps = BATCH, 0.1
    args = ("fading", "--fading", "rician:4", "--outage", eps, "--samples", n, "--seed", 5, "--distance-range", "60:140")
    code, out, err = cli(*args, "--json")
    assert code == 0, err
    record = strict_json(out)
    assert record["distance_range_m"] == [60.0, 140.0] and record["samples"] == n
    assert abs(record["static_outage"] - eps) < 4 * math.sqrt(eps * (1 - eps) / n)
    mean = 2 / 3 * (140.0**3 - 60.0**3) / (140.0**2 - 60.0**2)
    std = math.sqrt((140.0**2 + 60.0**2) / 2 - mean**2)
    assert abs(record["mean_distance_m"] - mean) < 4 * std / math.sqrt(n)
    code, out, err = cli(*args)
    assert code == 0, err
    assert "distance_range_m" in out and "distance_m ignored" in " ".join(out.split())


@pytest.mark.parametrize(
    "args, words",
    [
        (("fading", "--fading", "rayleigh", "--distance-range", "200:50"), ["--distance-range", "200:50", "0 < MIN <= MAX"]),
        (("fading", "--fading", "rayleigh", "--distance-range", "0:50"), ["--distance-range", "0:50", "0 < MIN <= MAX"]),
        (("fading", "--fading", "rayleigh", "--distance-range", "-5:50"), ["--distance-range", "-5:50", "0 < MIN"]),
        (("fading", "--fading", "rayleigh", "--distance-range", "50"), ["--distance-range", "50", "MIN:MAX"]),
        (("fading", "--fading", "rayleigh", "--distance-range", "a:b"), ["--distance-range", "a:b", "MIN:MAX"]),
        (("fading", "--fading", "rayleigh", "--distance-range", "1:2:3"), ["--distance-range", "1:2:3", "MIN:MAX"]),
        (("fading", "--fading", "rayleigh", "--distance-range", "10:1e9"), ["--distance-range", "distance_m", "1e+07"]),
        (("solve", "--distance-range", "10:20"), ["--distance-range", "10:20", "--fading"]),
        (("solve", "--fading", "rayleigh", "--distance-range", "10:20", "--set", "channel_gain=1e-9"),
         ["--distance-range", "10:20", "path-loss"]),
        (("fading", "--fading", "rayleigh", "--users", "cell.toml", "--distance-range", "10:20"), ["--distance-range"]),
    ],
)
def test_cli_bad_input_is_one_line_and_exit_2(cli, args, words):
    code, out, err = cli(*args)
    assert code == 2 and out == ""
    assert len(err.strip().splitlines()) == 1, err
    assert all(word in err for word in words), err
