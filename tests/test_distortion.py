"""Tests of laimco_jax.distortion against independent references.

Every expected value comes from outside the code under test: mpmath with exact Γ (dims ≤ 1e5), an
asymptotic (Stirling) series for log Γ written here and evaluated in mpmath (dims 1e6 … 1e12), Monte
Carlo sampling of the entropy maximiser, scipy's SLSQP on a convex form of the water-filling problem
(58), and scipy.stats fits. The module runs in float64 (tests/conftest.py enables x64; the library
never does); float32 is checked explicitly.

Compilation dominates the run time, so calls share a few shapes and the closed forms go through
``jax.jit`` wrappers (the eager path is compared with them in
``test_bounds_under_jit_and_vmap_equal_eager``); the parallel-Laplace functions are jitted by the
library itself.

Tolerances (float64):
* log2 D bound: absolute 2e-14, about 10 ulps at |log2 D| ~ 10 (the evaluation divides a log Γ of
  size ~n ln n by n, so ~1e-16 relative error in log Γ becomes ~1e-15 absolute).
* R(D) bound and Φ(1): absolute 2e-15 × (|h| + n (|log2 n| + |log2 D| + 3)), i.e. a few ulps of the
  largest term of (40) (R is a difference of terms of size n log2 n, which fixes its absolute error).
* float32: absolute 2e-5 on log2 D at dims 1 … 1e12.
"""

import functools
import math

import hypothesis.strategies as st
import jax
import jax.numpy as jnp
import mpmath as mp
import numpy as np
import pytest
import scipy.optimize
import scipy.stats
from hypothesis import given, settings

from laimco_jax import distortion as dist

mp.mp.dps = 50

LOG2_D_ATOL = 2e-14
RATE_RTOL = 2e-15

rate_bound = jax.jit(dist.rate_distortion_lower_bound_bits)
log2_distortion = jax.jit(dist.log2_distortion_rate_bound)
phi_one = jax.jit(dist.phi_one_bits)
log2_split = jax.jit(dist.log2_distortion_bound)
log10_split = jax.jit(dist.log10_distortion_bound)
split = jax.jit(dist.distortion_bound)
fit_laplace = jax.jit(dist.fit_laplace, static_argnames="axis")
fit_gaussian = jax.jit(dist.fit_gaussian, static_argnames="axis")
weight_entropy = jax.jit(dist.weight_entropy_bits)


# ---------------------------------------------------------------- references (mpmath, Stirling)


def mp_log2(x):
    return mp.log(x) / mp.log(2)


def stirling_ln_gamma(x, terms=6):
    """ln Γ(x) from the Stirling series (x−½)ln x − x + ½ln 2π + Σ_k B_2k / (2k(2k−1) x^(2k−1))."""
    x = mp.mpf(x)
    series = sum(mp.bernoulli(2 * k) / (2 * k * (2 * k - 1) * x ** (2 * k - 1)) for k in range(1, terms + 1))
    return (x - mp.mpf(1) / 2) * mp.log(x) - x + mp.log(2 * mp.pi) / 2 + series


EXACT_GAMMA_MAX_DIM = 100_000


def mp_log2_gamma_ratio(n):
    """log2(Γ(n/2) / (2Γ(n))): mpmath's exact Γ up to 1e5, the Stirling series beyond.

    With 6 terms and n/2 ≥ 5e5 the Stirling truncation error is below 1e-70.
    """
    n = mp.mpf(n)
    if n <= EXACT_GAMMA_MAX_DIM:
        return mp_log2(mp.gamma(n / 2) / (2 * mp.gamma(n)))
    return (stirling_ln_gamma(n / 2) - stirling_ln_gamma(n) - mp.log(2)) / mp.log(2)


def mp_rate_bound(distortion, n, h):
    """Eq. (40): h + n log2(n / (√π e D)) + log2(Γ(n/2) / (2Γ(n)))."""
    n, distortion, h = mp.mpf(n), mp.mpf(distortion), mp.mpf(h)
    return h + n * mp_log2(n / (mp.sqrt(mp.pi) * mp.e * distortion)) + mp_log2_gamma_ratio(n)


def mp_log2_distortion(rate, n, h):
    """log2 of eq. (41): log2(n / (√π e)) − (R − h)/n + log2(Γ(n/2) / (2Γ(n))) / n."""
    n, rate, h = mp.mpf(n), mp.mpf(rate), mp.mpf(h)
    return mp_log2(n / (mp.sqrt(mp.pi) * mp.e)) - (rate - h) / n + mp_log2_gamma_ratio(n) / n


def mp_phi_one(n):
    """Eq. (33): n log2(√π e / n) + log2(2Γ(n)/Γ(n/2)) = n log2(√π e / n) − log2(Γ(n/2)/(2Γ(n)))."""
    n = mp.mpf(n)
    return n * mp_log2(mp.sqrt(mp.pi) * mp.e / n) - mp_log2_gamma_ratio(n)


def rate_tolerance(distortion, n, h):
    return RATE_RTOL * (np.abs(h) + n * (np.abs(np.log2(n)) + np.abs(np.log2(distortion)) + 3))


SMALL_DIMS = list(range(1, 201)) + [257, 1000, 4097, 12345, EXACT_GAMMA_MAX_DIM]
LARGE_DIMS = [10**6, 3 * 10**7, 10**8, 10**10, 10**11, 123_456_789_012, 10**12]
DIMS = np.array(SMALL_DIMS + LARGE_DIMS, dtype=np.float64)


def random_instances(seed):
    """Distortion D (log-uniform), rate R and entropy h (both ∝ n) for each of DIMS."""
    rng = np.random.default_rng(seed)
    distortion = 10.0 ** rng.uniform(-4, 4, DIMS.shape)
    rate = DIMS * rng.uniform(0, 32, DIMS.shape)
    entropy = DIMS * rng.uniform(-8, 8, DIMS.shape)
    return DIMS, distortion, rate, entropy


def test_stirling_reference_agrees_with_mpmath_loggamma():
    for x in [5e5, 1e6, 3.3e9, 5e11]:
        assert abs(stirling_ln_gamma(x) - mp.loggamma(x)) < mp.mpf(10) ** -40 * mp.loggamma(x)


# ---------------------------------------------------------------- eqs. (40), (41), (33)


def test_rate_bound_eq40_matches_reference():
    dims, distortion, _, entropy = random_instances(seed=1)
    got = np.asarray(rate_bound(distortion, dims, entropy))
    want = np.array([float(mp_rate_bound(*args)) for args in zip(distortion, dims, entropy)])
    assert got.dtype == np.float64
    np.testing.assert_array_less(np.abs(got - want), rate_tolerance(distortion, dims, entropy))


def test_distortion_rate_bound_eq41_matches_reference():
    dims, _, rate, entropy = random_instances(seed=2)
    got = np.asarray(log2_distortion(rate, dims, entropy))
    want = np.array([float(mp_log2_distortion(*args)) for args in zip(rate, dims, entropy)])
    np.testing.assert_allclose(got, want, rtol=0, atol=LOG2_D_ATOL)


def test_phi_one_eq33_matches_reference():
    got = np.asarray(phi_one(DIMS))
    want = np.array([float(mp_phi_one(n)) for n in DIMS])
    np.testing.assert_array_less(np.abs(got - want), rate_tolerance(1.0, DIMS, 0.0))


def test_rate_and_distortion_bounds_are_inverse():
    dims, _, rate, entropy = random_instances(seed=3)
    log2_d = log2_distortion(rate, dims, entropy)
    rate_back = rate_bound(2.0**log2_d, dims, entropy)
    np.testing.assert_array_less(np.abs(rate_back - rate), rate_tolerance(2.0**log2_d, dims, entropy))


def test_float32_is_accurate_at_all_dims():
    dims, _, rate, entropy = random_instances(seed=4)
    want = [float(mp_log2_distortion(*args)) for args in zip(rate, dims, entropy)]
    got = log2_distortion(*(jnp.asarray(x, jnp.float32) for x in (rate, dims, entropy)))
    assert got.dtype == jnp.float32
    np.testing.assert_allclose(got, want, rtol=0, atol=2e-5)


# ---------------------------------------------------------------- Φ(1): the entropy maximiser


@pytest.mark.parametrize("q", range(2, 9))
def test_phi_one_is_entropy_of_the_maximiser_monte_carlo(q):
    """Sample Q_β, β = q (eq. (34)): z = r·U, U uniform on the sphere, r ~ Gamma(q, scale 1/q)."""
    rng = np.random.default_rng(100 + q)
    samples = 200_000
    gaussian = rng.standard_normal((samples, q))
    radius = rng.gamma(shape=q, scale=1 / q, size=samples)
    z = radius[:, None] * gaussian / np.linalg.norm(gaussian, axis=1, keepdims=True)
    norm = np.linalg.norm(z, axis=1)
    assert abs(norm.mean() - 1) < 4 * norm.std() / math.sqrt(samples)  # E‖z‖ = 1: the constraint (27)
    # density of z: radial density / area of the sphere of radius ‖z‖, 2π^{q/2} ‖z‖^{q−1} / Γ(q/2)
    log_sphere_area = math.log(2) + q / 2 * math.log(math.pi) - math.lgamma(q / 2) + (q - 1) * np.log(norm)
    minus_log2_density = (log_sphere_area - scipy.stats.gamma.logpdf(norm, a=q, scale=1 / q)) / math.log(2)
    standard_error = minus_log2_density.std() / math.sqrt(samples)
    assert abs(minus_log2_density.mean() - float(phi_one(q))) < 4 * standard_error


def test_phi_one_in_one_dimension_is_laplace_entropy():
    """q = 1: the maximiser e^{−|z|}/2 is the Laplace law with E|z| = 1, entropy log2(2e)."""
    assert float(phi_one(1)) == pytest.approx(math.log2(2 * math.e), rel=1e-15)


@pytest.mark.parametrize("q", [1, 2, 5, 50])
def test_phi_one_exceeds_entropy_of_gaussian_with_unit_mean_norm(q):
    """Φ(1) is a supremum: an isotropic Gaussian scaled to E‖z‖ = 1 has less entropy."""
    mean_norm_per_sigma = math.sqrt(2) * math.exp(math.lgamma((q + 1) / 2) - math.lgamma(q / 2))
    sigma = 1 / mean_norm_per_sigma
    gaussian_entropy_bits = q / 2 * math.log2(2 * math.pi * math.e * sigma**2)
    assert float(phi_one(q)) > gaussian_entropy_bits


# ---------------------------------------------------------------- D̂(ρ, ρ̃), eq. (41) of the split model


def mp_split_log2_distortion(rho, rho_server, q, s, b, h):
    """log2 of (41) as printed, with n = q + s:

    (n / (√π e)) · 2^{−((ρq + ρ̃s)b − h)/n} · (Γ(n/2) / (2Γ(n)))^{1/n}.
    """
    rho, rho_server, q, s, b, h = (mp.mpf(x) for x in (rho, rho_server, q, s, b, h))
    n = q + s
    value = (
        n
        / (mp.sqrt(mp.pi) * mp.e)
        * mp.power(2, -((rho * q + rho_server * s) * b - h) / n)
        * mp.power(mp.gamma(n / 2) / (2 * mp.gamma(n)), 1 / n)
    )
    return mp_log2(value)


SPLIT_CASES = np.array(  # rho, rho_server, q, s, b, h
    [
        (1.0, 1.0, 300, 500, 16, -2.6 * 800),
        (0.5, 0.8, 300, 500, 16, -2.6 * 800),
        (0.0, 0.0, 37, 3, 8, 10.0),
        (0.3, 1.0, 0, 120, 32, -400.0),  # split 0: everything on the server
        (1.0, 0.25, 777, 0, 4, 1234.5),  # split L: everything on the device
        (0.9, 0.1, 2500, 1500, 16, -9000.0),
        (0.7, 0.6, 1, 0, 16, -3.0),
    ]
).T


def test_split_distortion_bound_matches_eq41():
    want = np.array([mp_split_log2_distortion(*case) for case in SPLIT_CASES.T])
    np.testing.assert_allclose(log2_split(*SPLIT_CASES), want.astype(float), rtol=0, atol=LOG2_D_ATOL)
    want_log10 = np.array([float(x * mp.log10(2)) for x in want])
    np.testing.assert_allclose(log10_split(*SPLIT_CASES), want_log10, rtol=0, atol=LOG2_D_ATOL)
    np.testing.assert_allclose(split(*SPLIT_CASES), [float(mp.power(2, x)) for x in want], rtol=1e-13)


def test_split_distortion_bound_strictly_decreasing_in_kept_parameters():
    q, s, b, h = 44_000_000, 66_000_000, 16, -2.7 * 110_000_000
    rho, rho_server = np.random.default_rng(5).uniform(0, 1, (2, 2000))
    kept = rho * q + rho_server * s
    order = np.argsort(kept)
    assert np.all(np.diff(kept[order]) > 0)
    log2_bound = np.asarray(log2_split(rho, rho_server, q, s, b, h))[order]
    assert np.all(np.diff(log2_bound) < 0)


def test_split_distortion_bound_slope_is_minus_bits_per_dim():
    grad = jax.jit(jax.grad(dist.log2_distortion_bound, argnums=(0, 1)))(0.4, 0.7, 300.0, 500.0, 16.0, -100.0)
    np.testing.assert_allclose(grad, (-16 * 300 / 800, -16 * 500 / 800), rtol=1e-14)


@settings(max_examples=100, deadline=None)
@given(
    rho=st.floats(0, 1),
    rho_server=st.floats(0, 1),
    q=st.integers(0, 10**12),
    s=st.integers(0, 10**12),
    bits=st.floats(1, 64),
    entropy_per_weight=st.floats(-40, 40),
    dtype=st.sampled_from([np.float32, np.float64]),
)
def test_split_distortion_bound_finite_on_domain(rho, rho_server, q, s, bits, entropy_per_weight, dtype):
    s = max(s, 1 - q)  # q + s ≥ 1
    args = (rho, rho_server, q, s, bits, entropy_per_weight * (q + s))
    value = log2_split(*(np.asarray(x, dtype) for x in args))
    assert value.dtype == dtype
    assert np.isfinite(value)


def test_split_bound_broadcasts_over_batch_shapes():
    rho = np.linspace(0, 1, 3)[:, None, None]
    rho_server = np.linspace(0, 1, 4)[None, :, None]
    q = np.array([10.0, 1e6])
    got = log2_split(rho, rho_server, q, 500.0, 16, -100.0)
    assert got.shape == (3, 4, 2)
    want = [
        [[float(mp_split_log2_distortion(r, rs, qq, 500, 16, -100)) for qq in q] for rs in rho_server.flat]
        for r in rho.flat
    ]
    np.testing.assert_allclose(got, want, rtol=0, atol=LOG2_D_ATOL)


# ---------------------------------------------------------------- parallel Laplace, eqs. (58)-(61)


def slsqp_rate_bound(inv_scales, distortion):
    """min Σ max(−log2(λ_i D_i), 0) s.t. Σ D_i ≤ √q D, D_i > 0  (58), solved by SLSQP.

    Convex form: D_i ≤ 1/λ_i loses nothing (a larger D_i costs budget and buys no rate), so with
    y_i = λ_i D_i ∈ (0, 1] the problem is min −Σ log2 y_i s.t. Σ y_i/λ_i ≤ √q D (scaled to O(1)).
    Returns the minimum rate [bits] and the allocation D_i.
    """
    q = len(inv_scales)
    budget = math.sqrt(q) * distortion
    result = scipy.optimize.minimize(
        lambda y: -np.sum(np.log2(y)),
        0.5 * np.minimum(1, budget / (q * inv_scales)),
        jac=lambda y: -1 / (y * math.log(2)),
        method="SLSQP",
        bounds=[(1e-12, 1)] * q,
        constraints=[
            {"type": "ineq", "fun": lambda y: 1 - y @ inv_scales / budget, "jac": lambda y: -inv_scales / budget}
        ],
        options={"ftol": 1e-12, "maxiter": 1000},
    )
    assert result.success, result.message
    return result.fun, result.x * inv_scales


@jax.jit
def rate_and_water_level(inv_scales, distortion):
    return (
        dist.parallel_laplace_rate_lower_bound_bits(inv_scales, distortion),
        dist.parallel_laplace_water_level(inv_scales, distortion),
    )


@pytest.mark.parametrize("q", range(3, 9))
def test_parallel_laplace_rate_bound_matches_slsqp(q):
    rng = np.random.default_rng(q)
    inv_scales = 10.0 ** rng.uniform(-3, 1, (5, q))
    distortion = rng.uniform(0.05, 0.95, 5) * inv_scales.sum(-1) / math.sqrt(q)  # some rate, some saturation
    rates, levels = rate_and_water_level(inv_scales, distortion)
    for scales, d, rate, mu in zip(inv_scales, distortion, rates, levels):
        want_rate, want_allocation = slsqp_rate_bound(scales, d)
        assert float(rate) == pytest.approx(want_rate, rel=1e-9, abs=1e-9)
        np.testing.assert_allclose(np.minimum(mu, scales), want_allocation, rtol=1e-5)


def test_parallel_laplace_single_weight_is_lemma_a1():
    """q = 1: (60) reduces to R(D) = max(−log2(λD), 0), eq. (55)."""
    inv_scale = 0.37
    distortion = np.array([1e-6, 0.01, 0.2, 0.37, 0.5, 3.0])
    got = dist.parallel_laplace_rate_lower_bound_bits(np.full((6, 1), inv_scale), distortion)
    np.testing.assert_allclose(got, np.maximum(np.log2(inv_scale / distortion), 0), rtol=1e-14, atol=1e-14)


Q = 16
SCALES = 10.0 ** np.random.default_rng(9).uniform(-3, 0, (4, 6, Q))  # batch (4, 6) of q = 16 scales
DISTORTION = np.array([1e-5, 1e-3, 0.01, 0.1, 0.5, 5.0])  # per column; 5.0 ≥ Σ 1/λ_i / √q: zero rate


def test_parallel_laplace_water_level_meets_the_budget():
    mu = np.asarray(dist.parallel_laplace_water_level(SCALES, DISTORTION))
    filled = np.minimum(mu[..., None], SCALES).sum(-1)
    np.testing.assert_allclose(filled, np.minimum(math.sqrt(Q) * DISTORTION, SCALES.sum(-1)), rtol=1e-13)


def test_parallel_laplace_zero_rate_when_budget_covers_all_scales():
    assert np.all(math.sqrt(Q) * DISTORTION[-1] >= SCALES.sum(-1))
    rate = dist.parallel_laplace_rate_lower_bound_bits(SCALES, DISTORTION)
    np.testing.assert_array_equal(rate[:, -1], 0.0)
    assert np.all(rate[:, 0] > 0)
    mu = dist.parallel_laplace_water_level(SCALES, DISTORTION)
    np.testing.assert_array_equal(mu[:, -1], SCALES.max(-1)[:, -1])
    zero_rate_distortion = dist.parallel_laplace_distortion_lower_bound(SCALES, np.zeros((4, 6)))
    np.testing.assert_allclose(zero_rate_distortion, SCALES.sum(-1) / math.sqrt(Q), rtol=1e-14)


def test_parallel_laplace_eq61_inverts_eq60():
    rng = np.random.default_rng(10)
    distortion = rng.uniform(1e-4, 1.0, (4, 6)) * SCALES.sum(-1) / math.sqrt(Q)
    rate = dist.parallel_laplace_rate_lower_bound_bits(SCALES, distortion)
    np.testing.assert_allclose(dist.parallel_laplace_distortion_lower_bound(SCALES, rate), distortion, rtol=1e-12)
    rates = rng.uniform(0, 500, (4, 6))
    distortion_back = dist.parallel_laplace_distortion_lower_bound(SCALES, rates)
    rate_back = dist.parallel_laplace_rate_lower_bound_bits(SCALES, distortion_back)
    np.testing.assert_allclose(rate_back, rates, rtol=1e-12, atol=1e-10)


def test_parallel_laplace_rate_gradient_matches_finite_difference():
    scales, distortion, step = SCALES[0, 0], np.float64(0.01), 1e-8
    grad = jax.grad(dist.parallel_laplace_rate_lower_bound_bits, argnums=1)(scales, distortion)
    upper = dist.parallel_laplace_rate_lower_bound_bits(scales, distortion + step)
    lower = dist.parallel_laplace_rate_lower_bound_bits(scales, distortion - step)
    np.testing.assert_allclose(grad, (upper - lower) / (2 * step), rtol=1e-6)


def test_parallel_laplace_batches_broadcast_and_vmap():
    batched = dist.parallel_laplace_rate_lower_bound_bits(SCALES, DISTORTION)
    assert batched.shape == (4, 6)
    singles = [
        [dist.parallel_laplace_rate_lower_bound_bits(SCALES[i, j], DISTORTION[j]) for j in range(6)] for i in range(4)
    ]
    np.testing.assert_allclose(batched, singles, rtol=1e-14)
    vmapped = jax.vmap(dist.parallel_laplace_rate_lower_bound_bits, in_axes=(0, None))(SCALES, DISTORTION)
    np.testing.assert_allclose(vmapped, batched, rtol=1e-14)


# ---------------------------------------------------------------- fits and entropy


@pytest.fixture(scope="module")
def weights():
    return np.random.default_rng(11).laplace(0.01, 0.03, (64, 47))


def test_fit_laplace_matches_scipy(weights):
    fit = fit_laplace(weights)
    loc, scale = scipy.stats.laplace.fit(weights.ravel())
    np.testing.assert_allclose((fit.loc, fit.scale), (loc, scale), rtol=1e-13)
    want_ll = scipy.stats.laplace.logpdf(weights, loc, scale).mean()
    np.testing.assert_allclose(fit.mean_log_likelihood, want_ll, rtol=1e-12)


def test_fit_laplace_per_row_matches_scipy(weights):
    fit = fit_laplace(weights, axis=-1)
    want = np.array([scipy.stats.laplace.fit(row) for row in weights])
    np.testing.assert_allclose(fit.loc, want[:, 0], rtol=1e-13)
    np.testing.assert_allclose(fit.scale, want[:, 1], rtol=1e-13)


def test_fit_gaussian_matches_scipy(weights):
    fit = fit_gaussian(weights)
    loc, scale = scipy.stats.norm.fit(weights.ravel())
    np.testing.assert_allclose((fit.loc, fit.scale), (loc, scale), rtol=1e-13)
    np.testing.assert_allclose(fit.mean_log_likelihood, scipy.stats.norm.logpdf(weights, loc, scale).mean(), rtol=1e-12)


def test_laplace_fits_laplace_weights_better_than_gaussian(weights):
    assert fit_laplace(weights).mean_log_likelihood > fit_gaussian(weights).mean_log_likelihood


def test_laplace_entropy_matches_scipy():
    scales = np.array([1e-3, 0.03, 1.0, 7.5])
    want = [scipy.stats.laplace(scale=b).entropy() / math.log(2) for b in scales]
    np.testing.assert_allclose(dist.laplace_entropy_bits(scales), want, rtol=1e-14)


def test_weight_entropy_of_a_pytree_sums_leaf_fits(weights):
    tree = {"dense": {"kernel": weights, "bias": [weights[0, :5]]}, "empty": np.zeros((0, 3))}
    leaves = [weights, weights[0, :5]]
    want = sum(
        leaf.size * scipy.stats.laplace(scale=scipy.stats.laplace.fit(leaf.ravel())[1]).entropy() / math.log(2)
        for leaf in leaves
    )
    np.testing.assert_allclose(weight_entropy(tree), want, rtol=1e-13)


# ---------------------------------------------------------------- transformations and dtypes


def test_bounds_under_jit_and_vmap_equal_eager():
    """Compiled code may fuse and reorder: agreement to the reference tolerances, not bitwise."""
    dims, distortion, rate, entropy = random_instances(seed=6)
    eager = dist.log2_distortion_rate_bound(rate, dims, entropy)
    np.testing.assert_allclose(log2_distortion(rate, dims, entropy), eager, rtol=0, atol=LOG2_D_ATOL)
    vmapped = jax.jit(jax.vmap(dist.log2_distortion_rate_bound))(rate, dims, entropy)
    np.testing.assert_allclose(vmapped, eager, rtol=0, atol=LOG2_D_ATOL)
    vmapped = jax.jit(jax.vmap(dist.rate_distortion_lower_bound_bits))(distortion, dims, entropy)
    tolerance = rate_tolerance(distortion, dims, entropy)
    np.testing.assert_array_less(np.abs(vmapped - rate_bound(distortion, dims, entropy)), tolerance)


def arrays_of(dtype):
    """Every public function on ``dtype`` arrays (mixed with Python scalars)."""
    x = jnp.asarray(0.5, dtype)
    ones, counting = jnp.ones(4, dtype), jnp.arange(5, dtype=dtype)
    return [
        dist.rate_distortion_lower_bound_bits(x, jnp.asarray(1e9, dtype), x),
        dist.log2_distortion_rate_bound(x, jnp.asarray(1e9, dtype), x),
        dist.phi_one_bits(jnp.asarray(7, dtype)),
        dist.log2_distortion_bound(x, x, jnp.asarray(3, dtype), 4.0, 16, x),
        dist.log10_distortion_bound(x, x, 3, 4, 16, x),
        dist.distortion_bound(x, x, 3, 4, 16, x),
        dist.parallel_laplace_water_level(ones, x),
        dist.parallel_laplace_rate_lower_bound_bits(ones, x),
        dist.parallel_laplace_distortion_lower_bound(ones, x),
        dist.laplace_entropy_bits(x),
        dist.weight_entropy_bits([counting, {"b": counting}]),
        *dist.fit_laplace(counting),
        *dist.fit_gaussian(counting),
    ]


def python_scalars_as(dtype):
    """Public functions on Python scalars with a ``dtype`` argument."""
    return [
        dist.rate_distortion_lower_bound_bits(0.1, 10**12, -1e12, dtype=dtype),
        dist.log2_distortion_rate_bound(16e12, 10**12, -1e12, dtype=dtype),
        dist.log2_distortion_bound(0.5, 1.0, 10**8, 10**8, 16, -1e8, dtype=dtype),
        dist.log10_distortion_bound(0.5, 1.0, 10**8, 10**8, 16, -1e8, dtype=dtype),
        dist.distortion_bound(0.5, 1.0, 10**8, 10**8, 16, -1e8, dtype=dtype),
        dist.phi_one_bits(10**12, dtype=dtype),
        dist.parallel_laplace_water_level([0.1, 0.2], 0.05, dtype=dtype),
        dist.parallel_laplace_rate_lower_bound_bits([0.1, 0.2], 0.05, dtype=dtype),
        dist.parallel_laplace_distortion_lower_bound([0.1, 0.2], 3, dtype=dtype),
    ]


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.float64])
@pytest.mark.parametrize("results", [arrays_of, python_scalars_as])
def test_dtype_is_preserved(results, dtype):
    shapes = jax.eval_shape(functools.partial(results, dtype))  # traces without compiling
    assert [shape.dtype for shape in shapes] == [dtype] * len(shapes)
