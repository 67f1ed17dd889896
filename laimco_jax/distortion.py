"""Rate-distortion bounds on pruning distortion (paper Section IV, Appendix B) and weight fits.

Eqs. (33), (40), (41) for a multivariate Laplacian source, (60)-(61) for a parallel Laplacian source,
and the Laplace / Gaussian fits that estimate h(w) from real weights.

Units: rates and entropies are in bits (log base 2); fitted log-likelihoods are in nats per weight.
A distortion is E‖w − ŵ‖ (eqs. (20), (24)) in the units of the weights; ``dim`` is the number of
parameters (q + s for a split model). ρ and ρ̃ are *remaining* fractions (footnote 1): ρ = 1 means no
pruning.

Every function is pure, broadcasts over any batch shape and works under ``jit``, ``vmap`` and ``grad``.
Results keep the floating dtype of the inputs (float32 or float64); where the inputs are Python
scalars, ``dtype`` picks it (default: JAX's default float). Nothing here raises on traced values or
changes global JAX config. Domains are documented, not checked (the CLI validates its parameters):
outside them a function returns whatever IEEE arithmetic gives (inf, NaN). The closed forms run
eagerly (so Python ints such as 10**12 parameters are fine without x64); the three parallel-Laplace
functions are jitted, since their bisection loop would otherwise be recompiled at every eager call.

Corrections to the paper (docs/theory.md#corrections-to-the-paper):

* slip 2: (P3.k) prints √(πe); the derivation (33) → (41) gives √π·e, used here.
* slip 3: Φ(1) in (32)-(33) is the largest entropy under E‖z‖ ≤ 1 (as in (27) and the proof),
  not E‖z‖² ≤ 1 as Lemma 4.2 prints.
* slip 4: Proposition 4.1's condition on μ is garbled; Appendix B (58)-(61) is used: reverse
  water-filling D_i = min(μ, 1/λ_i) with Σ_i D_i = √q·D.

The Γ functions of (33), (40), (41) are evaluated as log Γ (``gammaln``) through the duplication
formula Γ(n/2) / (2Γ(n)) = √π / (2^n Γ((n+1)/2)), and per dimension (Φ(1)/n), so that the bounds stay
accurate to a few ulps of float64 for dim from 1 to beyond 1e12.
"""

from __future__ import annotations

import functools
import math
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
from jax.scipy.special import gammaln

from laimco_jax.system import LN2

__all__ = [
    "DistributionFit",
    "distortion_bound",
    "fit_gaussian",
    "fit_laplace",
    "laplace_entropy_bits",
    "log10_distortion_bound",
    "log2_distortion_bound",
    "log2_distortion_rate_bound",
    "parallel_laplace_distortion_lower_bound",
    "parallel_laplace_rate_lower_bound_bits",
    "parallel_laplace_water_level",
    "phi_one_bits",
    "rate_distortion_lower_bound_bits",
    "weight_entropy_bits",
]

LOG2_PI = math.log2(math.pi)
LOG2_SQRT_PI_E = math.log2(math.sqrt(math.pi) * math.e)
LOG10_2 = math.log10(2.0)
BISECTION_ITERATIONS = 64  # halvings of a log-domain bracket: below float64 resolution of log2 μ


def _float_arrays(*values, dtype=None):
    """``values`` as JAX arrays of one floating dtype: ``dtype``, else their promoted (inexact) dtype."""
    if dtype is None:
        dtype = jnp.result_type(*values, 1.0)
    return tuple(jnp.asarray(value, dtype) for value in values)


def _phi_one_per_dim_bits(dim):
    """Φ(1)/n [bits per dimension], eq. (33) divided by n = ``dim``.

    Φ(1)/n = log2(√π e / n) + (1/n) log2(2Γ(n)/Γ(n/2))
           = log2(√π e / n) + 1 − (½ log2 π − log2 Γ((n+1)/2)) / n     (duplication formula).
    One ``gammaln`` of magnitude ~n ln n divided by n: absolute error ~1e-14 at n = 1e12 in float64.
    """
    log2_gamma_half = gammaln((dim + 1) / 2) / LN2
    return LOG2_SQRT_PI_E - jnp.log2(dim) + 1 - (0.5 * LOG2_PI - log2_gamma_half) / dim


def phi_one_bits(dim, *, dtype=None):
    """Φ(1) [bits], eq. (33): the largest differential entropy of z ∈ R^dim with E‖z‖ ≤ 1.

    Φ(1) = n log2(√π e / n) + log2(2Γ(n)/Γ(n/2)), n = ``dim`` ≥ 1 (real n allowed). The maximiser is
    Q_β(z) ∝ exp(−β‖z‖) with β = n, eq. (34). Slip 3 corrected: the constraint is E‖z‖ ≤ 1 (eq. (27)),
    not E‖z‖² ≤ 1 as Lemma 4.2 prints.
    """
    (dim,) = _float_arrays(dim, dtype=dtype)
    return dim * _phi_one_per_dim_bits(dim)


def rate_distortion_lower_bound_bits(distortion, dim, entropy_bits, *, dtype=None):
    """Lower bound on R(D) [bits], eq. (40), for a source of ``dim`` parameters with entropy h(w).

    R(D) ≥ h + n log2(n / (√π e D)) + log2(Γ(n/2) / (2Γ(n))) = h − Φ(1) − n log2 D   ((26), (32)),
    with D = ``distortion`` > 0 (E‖w − ŵ‖), n = ``dim`` ≥ 1, h = ``entropy_bits`` = h(w) in bits.
    The bound can be negative (it is then vacuous: R(D) ≥ 0 always). D → 0 gives +inf.
    """
    distortion, dim, entropy_bits = _float_arrays(distortion, dim, entropy_bits, dtype=dtype)
    return entropy_bits - dim * (_phi_one_per_dim_bits(dim) + jnp.log2(distortion))


def log2_distortion_rate_bound(rate_bits, dim, entropy_bits, *, dtype=None):
    """log2 of the lower bound on D(R), the inverse of eq. (40) (eq. (41) with q + s → n).

    log2 D(R) ≥ log2(n / (√π e)) − (R − h)/n + (1/n) log2(Γ(n/2) / (2Γ(n)))
              = −(R − h)/n − Φ(1)/n,
    with R = ``rate_bits`` ≥ 0, n = ``dim`` ≥ 1, h = ``entropy_bits``. Computed per dimension, so no
    quantity of size n·log n is formed: accurate for n in [1, 1e12] and beyond.
    """
    rate_bits, dim, entropy_bits = _float_arrays(rate_bits, dim, entropy_bits, dtype=dtype)
    return -(rate_bits - entropy_bits) / dim - _phi_one_per_dim_bits(dim)


def log2_distortion_bound(
    rho, rho_server, params_device, params_server, bits_per_weight, entropy_bits, *, dtype=None
):
    """log2 D̂(ρ, ρ̃), eq. (41): the distortion-rate bound of the pruned split model.

    Rate R = (ρ q + ρ̃ s) b bits, dimension n = q + s, so
    log2 D̂ = log2((q+s)/(√π e)) − ((ρq + ρ̃s) b − h)/(q+s) + log2(Γ((q+s)/2)/(2Γ(q+s)))/(q+s).
    ``rho``, ``rho_server`` in [0, 1] are the remaining fractions of the device and server parts
    (footnote 1), ``params_device`` = q ≥ 0 and ``params_server`` = s ≥ 0 their parameter counts
    (q + s ≥ 1), ``bits_per_weight`` = b, ``entropy_bits`` = h(w) in bits. Strictly decreasing in
    ρq + ρ̃s (slope −b/(q+s)). Slip 2 corrected: the constant is √π·e as in (41), not √(πe) as (P3.k)
    prints.
    """
    rho, rho_server, q, s, b, h = _float_arrays(
        rho, rho_server, params_device, params_server, bits_per_weight, entropy_bits, dtype=dtype
    )
    return log2_distortion_rate_bound((rho * q + rho_server * s) * b, q + s, h)


def log10_distortion_bound(
    rho, rho_server, params_device, params_server, bits_per_weight, entropy_bits, *, dtype=None
):
    """log10 D̂(ρ, ρ̃), eq. (41); arguments as :func:`log2_distortion_bound`."""
    log2_bound = log2_distortion_bound(
        rho, rho_server, params_device, params_server, bits_per_weight, entropy_bits, dtype=dtype
    )
    return log2_bound * LOG10_2


def distortion_bound(
    rho, rho_server, params_device, params_server, bits_per_weight, entropy_bits, *, dtype=None
):
    """D̂(ρ, ρ̃), eq. (41), in the units of the weights: 2 ** :func:`log2_distortion_bound`.

    D̂ spans many orders of magnitude: it underflows to 0 or overflows to inf once |log2 D̂| passes the
    exponent range (±128 in float32, ±1024 in float64). Prefer the log2 / log10 forms.
    """
    log2_bound = log2_distortion_bound(
        rho, rho_server, params_device, params_server, bits_per_weight, entropy_bits, dtype=dtype
    )
    return jnp.exp2(log2_bound)


def _arithmetic_mean(lo, hi):
    return (lo + hi) / 2


def _geometric_mean(lo, hi):
    return jnp.sqrt(lo) * jnp.sqrt(hi)


def _bisect(root_is_above, lo, hi, iterations, midpoint):
    """Bracket [lo, hi] split at ``midpoint`` ``iterations`` times around a monotone root; returns hi.

    ``root_is_above(x)`` is True where the root lies above x; it must be True at lo and False at hi
    (elementwise, any batch shape). Fixed trip count, so it is jit/vmap friendly. The predicate is
    kept free of transcendental functions: they make XLA's compilation of the loop several times slower.
    """

    def split(_, bracket):
        lo, hi = bracket
        mid = midpoint(lo, hi)
        above = root_is_above(mid)
        return jnp.where(above, mid, lo), jnp.where(above, hi, mid)

    return jax.lax.fori_loop(0, iterations, split, tuple(jnp.broadcast_arrays(lo, hi)))[1]


@functools.partial(jax.jit, static_argnames=("iterations", "dtype"))
def parallel_laplace_water_level(inv_scales, distortion, *, iterations=BISECTION_ITERATIONS, dtype=None):
    """Water level μ of the reverse water-filling in Appendix B, eqs. (58)-(60) (slip 4 corrected).

    The source has independent Laplace weights with density λ_i/2 exp(−λ_i|w_i|), eq. (42);
    ``inv_scales`` holds 1/λ_i = E|w_i| along the last axis (q ≥ 1 entries, all > 0; leading axes
    batch). μ solves Σ_i min(μ, 1/λ_i) = √q·D, with D = ``distortion`` > 0 broadcasting against the
    batch axes; each component gets distortion D_i = min(μ, 1/λ_i). When √q·D ≥ Σ 1/λ_i every D_i is
    1/λ_i (zero rate) and max 1/λ_i is returned.

    Bisection at geometric midpoints (i.e. on log μ) over [min(D/√q, max 1/λ_i), max 1/λ_i] for
    ``iterations`` steps, then one exact step: μ = (√q·D − Σ_{1/λ_i ≤ μ̂} 1/λ_i) / #{i: 1/λ_i > μ̂},
    exact once the bisection has isolated the active set, and differentiable in ``inv_scales`` and
    ``distortion``. Jitted, with ``iterations`` and ``dtype`` static (as are the two functions below).
    """
    inv_scales, distortion = _float_arrays(inv_scales, distortion, dtype=dtype)
    q = inv_scales.shape[-1]
    budget = math.sqrt(q) * distortion[..., None]
    largest = jnp.max(inv_scales, axis=-1, keepdims=True)
    fixed_scales, fixed_budget, fixed_largest = jax.lax.stop_gradient((inv_scales, budget, largest))

    def root_is_above(mu):
        return jnp.sum(jnp.minimum(mu, fixed_scales), axis=-1, keepdims=True) < fixed_budget

    lo = jnp.minimum(fixed_budget / q, fixed_largest)
    approx_mu = _bisect(root_is_above, lo, fixed_largest, iterations, _geometric_mean)
    active = inv_scales > approx_mu
    n_active = jnp.sum(active, axis=-1, keepdims=True)
    saturated = jnp.sum(jnp.where(active, 0, inv_scales), axis=-1, keepdims=True)
    exact_mu = jnp.minimum((budget - saturated) / jnp.maximum(n_active, 1), largest)
    return jnp.where(n_active > 0, exact_mu, largest)[..., 0]


@functools.partial(jax.jit, static_argnames=("iterations", "dtype"))
def parallel_laplace_rate_lower_bound_bits(
    inv_scales, distortion, *, iterations=BISECTION_ITERATIONS, dtype=None
):
    """Lower bound on R(D) [bits] for a parallel Laplacian source, eqs. (43)/(60) (slip 4 corrected).

    R(D) ≥ Σ_i max(−log2(λ_i μ), 0) with μ from :func:`parallel_laplace_water_level` (same arguments);
    0 when √q·D ≥ Σ 1/λ_i. Each term is Lemma A.1 (55) at D_i = min(μ, 1/λ_i).
    """
    inv_scales, distortion = _float_arrays(inv_scales, distortion, dtype=dtype)
    mu = parallel_laplace_water_level(inv_scales, distortion, iterations=iterations)
    per_weight = jnp.maximum(jnp.log2(inv_scales / mu[..., None]), 0)  # exactly 0 where μ = 1/λ_i
    return jnp.sum(per_weight, axis=-1)


@functools.partial(jax.jit, static_argnames=("iterations", "dtype"))
def parallel_laplace_distortion_lower_bound(
    inv_scales, rate_bits, *, iterations=BISECTION_ITERATIONS, dtype=None
):
    """Lower bound on D(R) for a parallel Laplacian source, eq. (61) (slip 4 corrected).

    D(R) ≥ Σ_i min(μ, 1/λ_i) / √q, where μ solves Σ_{i: μ < 1/λ_i} −log2(λ_i μ) = R.
    ``inv_scales`` holds 1/λ_i > 0 along the last axis (leading axes batch); R = ``rate_bits`` ≥ 0
    broadcasts against the batch axes. R = 0 gives Σ 1/λ_i / √q; R → inf gives 0.

    Bisection on t = log2 μ over [log2 min 1/λ_i − R/q, log2 max 1/λ_i], then one exact step:
    t = (Σ_{active} log2(1/λ_i) − R) / #active, which makes the result exact and differentiable.
    """
    inv_scales, rate_bits = _float_arrays(inv_scales, rate_bits, dtype=dtype)
    q = inv_scales.shape[-1]
    log2_scales = jnp.log2(inv_scales)
    rate = rate_bits[..., None]
    fixed_log2_scales, fixed_rate = jax.lax.stop_gradient((log2_scales, rate))

    def root_is_above(log2_mu):
        rate_at_mu = jnp.sum(jnp.maximum(fixed_log2_scales - log2_mu, 0), axis=-1, keepdims=True)
        return rate_at_mu > fixed_rate

    lo = jnp.min(fixed_log2_scales, axis=-1, keepdims=True) - fixed_rate / q
    hi = jnp.max(fixed_log2_scales, axis=-1, keepdims=True)
    approx_log2_mu = _bisect(root_is_above, lo, hi, iterations, _arithmetic_mean)
    active = log2_scales > approx_log2_mu
    n_active = jnp.sum(active, axis=-1, keepdims=True)
    active_log2_sum = jnp.sum(jnp.where(active, log2_scales, 0), axis=-1, keepdims=True)
    exact_log2_mu = (active_log2_sum - rate) / jnp.maximum(n_active, 1)
    log2_mu = jnp.where(n_active > 0, exact_log2_mu, approx_log2_mu)
    return jnp.sum(jnp.minimum(jnp.exp2(log2_mu), inv_scales), axis=-1) / math.sqrt(q)


class DistributionFit(NamedTuple):
    """A maximum-likelihood fit of a location-scale family to weights."""

    loc: Any  # location, units of the weights
    scale: Any  # Laplace: b = E|w − loc|; Gaussian: standard deviation
    mean_log_likelihood: Any  # average log-density of the weights at the fit [nats per weight]


def _as_float(weights):
    """``weights`` as a JAX array of its own floating dtype (integers go to the default float)."""
    (weights,) = _float_arrays(weights)
    return weights


def fit_laplace(weights, *, axis=None) -> DistributionFit:
    """Laplace MLE of ``weights`` over ``axis`` (default: all entries): loc = median, scale = mean |w − loc|.

    The mean log-likelihood at the MLE is −ln(2·scale) − 1 nats per weight (mean |w − loc| / scale = 1).
    Zero scale (constant weights) gives mean_log_likelihood = +inf.
    """
    weights = _as_float(weights)
    loc = jnp.median(weights, axis=axis, keepdims=True)
    scale = jnp.mean(jnp.abs(weights - loc), axis=axis)
    return DistributionFit(jnp.squeeze(loc, axis=axis), scale, -jnp.log(2 * scale) - 1)


def fit_gaussian(weights, *, axis=None) -> DistributionFit:
    """Gaussian MLE of ``weights`` over ``axis`` (default: all entries): loc = mean, scale = std (ddof 0).

    The mean log-likelihood at the MLE is −½ ln(2π·scale²) − ½ nats per weight.
    """
    weights = _as_float(weights)
    loc = jnp.mean(weights, axis=axis)
    scale = jnp.std(weights, axis=axis)
    return DistributionFit(loc, scale, -0.5 * jnp.log(2 * jnp.pi * scale**2) - 0.5)


def laplace_entropy_bits(scale):
    """Differential entropy of a Laplace law with scale b = ``scale`` > 0: log2(2 e b) [bits per weight]."""
    (scale,) = _float_arrays(scale)
    return jnp.log2(2 * math.e * scale)


def weight_entropy_bits(weights):
    """Estimate of h(w) [bits] for the rate-distortion bounds: Σ over weights of log2(2 e b).

    ``weights`` is an array or a pytree of arrays (e.g. a model's parameters). Each leaf is fitted by
    :func:`fit_laplace` and contributes size × :func:`laplace_entropy_bits` of its scale: the weights
    are assumed independent, and i.i.d. Laplace within a leaf (a parallel Laplacian source with one
    scale per leaf, Remark 4.4). Empty leaves contribute 0; a constant leaf (scale 0) gives −inf.
    """
    leaves = [_as_float(leaf) for leaf in jax.tree_util.tree_leaves(weights)]
    return sum(
        (leaf.size * laplace_entropy_bits(fit_laplace(leaf).scale) for leaf in leaves if leaf.size),
        jnp.zeros((), jnp.result_type(*leaves, 1.0)),
    )
