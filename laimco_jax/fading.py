"""Fading of the uplink: models of the power gain factor |h|², seeded draws, and its quantiles.

The paper's channel gain g (path loss, :func:`~laimco_jax.system.channel_gain`) is fixed. Under fading
the gain is g·|h|², with |h|² = H·S the product of

* small-scale fading H: Rician with K-factor K, h = √(K/(K+1)) + √(1/(K+1))·CN(0, 1), so E[H] = 1 and
  2(K+1)·H is noncentral chi-square with 2 degrees of freedom and noncentrality 2K; K = 0 is
  Rayleigh, H ~ Exp(1);
* log-normal shadowing S = 10^(σ Z/10), Z ~ N(0, 1), σ in dB: 0 dB on average in dB (median 1;
  the path loss g is the gain's median over the shadowing, the usual convention of σ-dB shadowing).

A model is a :class:`Fading` (a NamedTuple, so a hashable pytree: a static argument under ``jit``),
parsed from the strings ``rayleigh``, ``rician:K``, ``lognormal:SIGMA_DB``,
``rayleigh+lognormal:SIGMA_DB`` and ``rician:K+lognormal:SIGMA_DB`` by :func:`parse_fading`.

Draws (:func:`gain_factor_draws`) use ``jax.random`` with the key of draw i derived from the seed and
the global index i alone (``fold_in``), so the same seed gives the same draws whatever the chunk size,
the order of the chunks or the number of devices. Quantiles (:func:`gain_factor_quantile`) are
computed in float64 with SciPy: in closed form for Rayleigh (−ln(1 − ε)) and log-normal
(10^(σ Φ⁻¹(ε)/10)), by the noncentral chi-square quantile for Rician, and by root-finding on a
numerical CDF (an integral over the shadowing) for the composite models. docs/theory.md#fading-channels
explains why the ε-quantile is what an outage-constrained design needs.

A user at a random distance (:class:`AnnulusFading`, built by :func:`with_distance_range`): d uniform in area
over the annulus d_min <= d <= d_max (:func:`annulus_distance` of a uniform draw, :func:`annulus_distance_draws`,
keyed by the same global draw index as |h|²) under the path loss g(d) ∝ d^(−α). The gain is g(d)·|h|² = g(d_max)·Y with the gain factor
Y = (d/d_max)^(−α)·|h|² relative to the path loss at d_max; every function of this module that takes a
model takes an :class:`AnnulusFading` too and then describes Y: its CDF is the average of the CDF of |h|²
over the distance (a quadrature, :func:`_distance_integral`), its quantile the root of that CDF, and
d_min = d_max gives exactly the model at the fixed distance d_max.
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from laimco_jax.params import ConfigError, Range, check_range

__all__ = [
    "AnnulusFading",
    "Fading",
    "FADING_FORMS",
    "K_FACTOR_RANGE",
    "SHADOWING_DB_RANGE",
    "OUTAGE_RANGE",
    "parse_fading",
    "check_outage",
    "check_seed",
    "check_samples",
    "gain_factor_draws",
    "annulus_distance",
    "annulus_distance_draws",
    "with_distance_range",
    "gain_factor_cdf",
    "gain_factor_pdf",
    "gain_factor_quantile",
    "quantile_derivatives",
]

FADING_FORMS = "rayleigh, rician:K, lognormal:SIGMA_DB, rayleigh+lognormal:SIGMA_DB, rician:K+lognormal:SIGMA_DB"
#: Rician K-factor [-] (power of the line-of-sight path over the scattered power); 0 is Rayleigh.
K_FACTOR_RANGE = Range(0.0, True, 1e8)
#: Standard deviation of log-normal shadowing [dB].
SHADOWING_DB_RANGE = Range(0.0, True, 30.0)
#: Outage probability ε of a static design.
OUTAGE_RANGE = Range(0.0, False, 1.0, upper_inclusive=False)
_INDEX_BITS = 32  # a draw's index and the seed are folded into the key as 32-bit words
_DB = math.log(10.0) / 10.0  # ln(10)/10: S = exp(_DB σ Z)
_STREAM_GAIN, _STREAM_DISTANCE = 0, 1


class Fading(NamedTuple):
    """A fading model of |h|² = H·S: Rician H (``k_factor`` K, 0 = Rayleigh; None = no small-scale
    fading, H = 1) times log-normal S (``shadowing_db`` σ [dB]; None = no shadowing, S = 1)."""

    k_factor: float | None = None
    shadowing_db: float | None = None

    @property
    def name(self) -> str:
        """The model as :func:`parse_fading` reads it, e.g. ``rician:5+lognormal:8``."""
        parts = []
        if self.k_factor is not None:
            parts.append("rayleigh" if self.k_factor == 0 else f"rician:{self.k_factor:g}")
        if self.shadowing_db is not None:
            parts.append(f"lognormal:{self.shadowing_db:g}")
        return "+".join(parts)

    @property
    def parameters(self) -> dict[str, float]:
        """The model's parameters by name (``k_factor``, ``shadowing_db``), those that are set."""
        return {name: value for name, value in self._asdict().items() if value is not None}


class AnnulusFading(NamedTuple):
    """The fading model ``fading`` of |h|² for a user whose distance d [m] is uniform in area over the annulus
    ``d_min_m`` <= d <= ``d_max_m`` under the path loss g(d) ∝ d^(−α) (α = ``pathloss_exponent`` [-]).

    It describes the gain factor Y = (d/d_max)^(−α)·|h|² [-] relative to the path loss g(d_max) at the outer
    radius (the gain is g(d_max)·Y); ``name`` and ``parameters`` are those of ``fading``. Build it with
    :func:`with_distance_range`."""

    fading: Fading
    d_min_m: float
    d_max_m: float
    pathloss_exponent: float

    @property
    def name(self) -> str:
        """The small-scale model's name (:attr:`Fading.name`); the distances are fields of their own."""
        return self.fading.name

    @property
    def parameters(self) -> dict[str, float]:
        """The small-scale model's parameters (:attr:`Fading.parameters`)."""
        return self.fading.parameters


def _split(model: Fading | AnnulusFading) -> tuple[Fading, AnnulusFading | None]:
    """(the model of |h|², the annulus or None where the distance is fixed or the annulus is a circle)."""
    if isinstance(model, AnnulusFading):
        return model.fading, (model if model.d_min_m < model.d_max_m else None)
    return model, None


# ----------------------------------------------------------------------------- parsing and checks


def _part_value(label: str, parameter: str, text: str, allowed: Range) -> float:
    """The number ``text`` of ``parameter`` (e.g. ``rician:K``) in a model string; ConfigError naming
    ``label``, the parameter, the value and ``allowed`` unless it is a number within it."""
    try:
        value = float(text)
    except ValueError:
        raise ConfigError(f"{label} {parameter} = {text!r}: expected a number in {allowed.text()}") from None
    check_range(f"{label} {parameter}", value, allowed)
    return value


def parse_fading(text: str, label: str = "--fading") -> Fading:
    """The :class:`Fading` of ``text`` (one of :data:`FADING_FORMS`); ConfigError naming ``label``,
    the value and the allowed forms or range otherwise (K in :data:`K_FACTOR_RANGE`, σ in
    :data:`SHADOWING_DB_RANGE`)."""
    fields: dict[str, float] = {}
    for part in str(text).strip().lower().split("+"):
        name, colon, value = (x.strip() for x in part.partition(":"))
        if name == "rayleigh" and not colon and "k_factor" not in fields:
            fields["k_factor"] = 0.0
        elif name == "rician" and colon and "k_factor" not in fields:
            fields["k_factor"] = _part_value(label, "rician:K", value, K_FACTOR_RANGE)
        elif name == "lognormal" and colon and "shadowing_db" not in fields:
            fields["shadowing_db"] = _part_value(label, "lognormal:SIGMA_DB", value, SHADOWING_DB_RANGE)
        else:
            raise ConfigError(f"{label} = {text!r} is not a known fading model; allowed: {FADING_FORMS}")
    return Fading(**fields)


def check_outage(label: str, outage: Any) -> float:
    """``outage`` as a float; ConfigError unless it lies in :data:`OUTAGE_RANGE`, (0, 1)."""
    check_range(label, outage, OUTAGE_RANGE)
    return float(outage)


def with_distance_range(fading: Fading, d_min_m: float, d_max_m: float, pathloss_exponent: float) -> AnnulusFading:
    """``fading`` for a user at a distance uniform in area over [d_min_m, d_max_m] [m] (path-loss exponent
    α [-], > 0): an :class:`AnnulusFading`. ConfigError unless 0 < d_min <= d_max (finite) and α > 0."""
    d_min_m, d_max_m, alpha = float(d_min_m), float(d_max_m), float(pathloss_exponent)
    if not (math.isfinite(d_min_m) and math.isfinite(d_max_m) and 0.0 < d_min_m <= d_max_m):
        raise ConfigError(f"distance range [{d_min_m!r}, {d_max_m!r}] m: expected 0 < d_min <= d_max")
    if not (math.isfinite(alpha) and alpha > 0.0):
        raise ConfigError(f"pathloss_exponent = {alpha!r}: expected a number > 0 for a distance range")
    return AnnulusFading(fading, d_min_m, d_max_m, alpha)


def check_samples(label: str, samples: Any) -> int:
    """``samples`` as an int; ConfigError unless it is an integer in [1, 2^32] (draw indices are 32-bit)."""
    if isinstance(samples, bool) or not isinstance(samples, (int, np.integer)) or not 1 <= samples <= 2**_INDEX_BITS:
        raise ConfigError(f"{label} = {samples!r}: expected an integer in [1, {2**_INDEX_BITS}]")
    return int(samples)


def check_seed(label: str, seed: Any) -> int:
    """``seed`` as an int; ConfigError unless it is an integer in [0, 2^32)."""
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or not 0 <= seed < 2**_INDEX_BITS:
        raise ConfigError(f"{label} = {seed!r}: expected an integer in [0, {2**_INDEX_BITS - 1}]")
    return int(seed)


# ----------------------------------------------------------------------------- draws (JAX)


def _draw_keys(seed, indices, stream: int):
    """The key of each draw: the seed's key folded with the draw's global index, then with ``stream``
    (independent streams per quantity), so a draw never depends on which other draws are made."""
    key = jax.random.key(seed)
    return jax.vmap(lambda i: jax.random.fold_in(jax.random.fold_in(key, i), stream))(indices)


def gain_factor_draws(fading: Fading | AnnulusFading, seed, indices, dtype):
    """Draws of |h|² = H·S [-], one per global draw index in the 1-D ``indices`` (0 <= i < 2^32); for an
    :class:`AnnulusFading` the gain factor Y = (d/d_max)^(−α)·|h|² [-], d from
    :func:`annulus_distance_draws` with the same seed and index (|h|² alone where d_min = d_max).

    Each draw uses three standard normals of its own key: two for the scattered component of h,
    one for the shadowing. So a given (seed, index) gives the same value in every chunk of indices
    (bit for bit within one compiled program, e.g. under ``jit``, on one platform), and models differ
    only through the map from the normals (common random numbers). Pure, works under ``jit``
    (``fading`` and ``dtype`` static) and ``vmap``.
    """
    small, annulus = _split(fading)
    flat = jnp.ravel(indices)
    # XLA rewrites the arithmetic of a single element and may round it differently: draw it in a pair
    padded = jnp.concatenate([flat, flat]) if flat.size == 1 else flat
    normals = jax.vmap(lambda k: jax.random.normal(k, (3,), dtype))(_draw_keys(seed, padded, _STREAM_GAIN))
    factor = jnp.ones(normals.shape[:1], dtype)
    if small.k_factor is not None:
        k = small.k_factor
        los, scatter = math.sqrt(k / (k + 1.0)), math.sqrt(0.5 / (k + 1.0))
        factor = (los + scatter * normals[:, 0]) ** 2 + (scatter * normals[:, 1]) ** 2
    if small.shadowing_db is not None:
        factor = factor * jnp.exp(_DB * small.shadowing_db * normals[:, 2])
    if annulus is not None:
        distance = annulus_distance_draws(seed, padded, annulus.d_min_m, annulus.d_max_m, dtype)
        # (d/d_max)^(−α) as one exponential: XLA on CPU lowers ``**`` to a scalar libm pow per element
        factor = factor * jnp.exp(-annulus.pathloss_exponent * jnp.log(distance / annulus.d_max_m))
    return factor[:flat.size]


def annulus_distance(u, d_min_m, d_max_m):
    """The distance d [m] at the quantile ``u`` (in [0, 1], any shape) of a user uniform in area over the annulus
    ``d_min_m`` <= d <= ``d_max_m`` [m]: d = √(d_min² + u (d_max² − d_min²)), so u ~ U(0, 1) gives the density
    2d/(d_max² − d_min²). Works on NumPy and JAX arrays alike (JAX's square root for a JAX array or tracer,
    NumPy's otherwise); the squares are products, correctly rounded whatever the type."""
    squared = d_min_m * d_min_m + u * (d_max_m * d_max_m - d_min_m * d_min_m)
    return jnp.sqrt(squared) if isinstance(squared, jax.Array) else np.sqrt(squared)


def annulus_distance_draws(seed, indices, d_min_m, d_max_m, dtype):
    """User distances d [m] uniform in area over the annulus d_min <= d <= d_max, one per global draw
    index in the 1-D ``indices``: :func:`annulus_distance` of U ~ U(0, 1) from a stream of its own (so the
    gains drawn with the same seed are independent of the distances)."""
    u = jax.vmap(lambda k: jax.random.uniform(k, (), dtype))(_draw_keys(seed, indices, _STREAM_DISTANCE))
    return annulus_distance(u, d_min_m, d_max_m)


# ----------------------------------------------------------------------------- distribution (SciPy, float64)


def _small_scale_cdf(k: float, t):
    """P(H <= t) of Rician H with mean 1: the noncentral chi-square CDF of 2(K+1)t, 2 dof, nc 2K."""
    from scipy import special

    return special.chndtr(2.0 * (k + 1.0) * np.maximum(t, 0.0), 2.0, 2.0 * k)


def _small_scale_pdf(k: float, t):
    """Density of H: (K+1) e^(−K−(K+1)t) I0(2√(K(K+1)t)), written with the scaled Bessel i0e."""
    from scipy import special

    t = np.maximum(t, 0.0)
    y = 2.0 * np.sqrt(k * (k + 1.0) * t)
    return (k + 1.0) * np.exp(y - k - (k + 1.0) * t) * special.i0e(y)


def _shadowing_integral(fading: Fading, x: float, integrand) -> float:
    """∫ φ(z) integrand(x e^(−σ' z), e^(−σ' z)) dz over the shadowing Z ~ N(0, 1), σ' = σ ln10/10, by
    adaptive quadrature on [−38, 38] (φ is below 1e-313 outside) with a break where x e^(−σ' z) is
    the median of H (where the integrand moves)."""
    from scipy import integrate

    a = _DB * fading.shadowing_db
    median = float(_small_scale_quantile(fading.k_factor, 0.5))
    center = float(np.clip(math.log(x / median) / a, -37.0, 37.0))

    def f(z):
        inv_shadow = math.exp(-a * z)
        return math.exp(-0.5 * z * z) / math.sqrt(2.0 * math.pi) * integrand(x * inv_shadow, inv_shadow)

    return integrate.quad(f, -38.0, 38.0, points=[center], epsabs=0.0, epsrel=1e-10, limit=400)[0]


def _composite(fading: Fading) -> bool:
    return fading.k_factor is not None and bool(fading.shadowing_db)


def _distance_integral(annulus: AnnulusFading, y: float, integrand) -> float:
    """E_d[integrand(y s, s)] with s = (d/d_max)^α over d uniform in area on the annulus (density
    2d/(d_max² − d_min²)), by adaptive quadrature in t = ln(d/d_max) on [ln(d_min/d_max), 0] (weight
    2e^(2t)/(1 − (d_min/d_max)²)), relative tolerance 1e-10, with a break where y s is the median of H
    (where the integrand moves; the step of |h|² = 1 lies there)."""
    from scipy import integrate

    small, alpha = annulus.fading, annulus.pathloss_exponent
    low = math.log(annulus.d_min_m / annulus.d_max_m)
    norm = -math.expm1(2.0 * low)  # 1 − (d_min/d_max)²
    median = 1.0 if small.k_factor is None else float(_small_scale_quantile(small.k_factor, 0.5))
    center = math.log(median / y) / alpha
    points = [center] if low < center < 0.0 else None

    def f(t):
        scale = math.exp(alpha * t)
        return 2.0 * math.exp(2.0 * t) / norm * integrand(y * scale, scale)

    return integrate.quad(f, low, 0.0, points=points, epsabs=0.0, epsrel=1e-10, limit=400)[0]


def _circle_pdf(annulus: AnnulusFading, y: float) -> float:
    """Density of Y = (d/d_max)^(−α) alone (|h|² = 1): P(Y <= y) = (1 − y^(−2/α))/(1 − (d_min/d_max)²) on
    [1, (d_min/d_max)^(−α)], so the density is (2/α) y^(−2/α − 1)/(1 − (d_min/d_max)²) there, 0 outside."""
    alpha, ratio = annulus.pathloss_exponent, annulus.d_min_m / annulus.d_max_m
    if not 1.0 <= y <= ratio ** (-alpha):
        return 0.0
    return 2.0 / alpha * y ** (-2.0 / alpha - 1.0) / (1.0 - ratio * ratio)


def gain_factor_cdf(fading: Fading | AnnulusFading, x: float) -> float:
    """P(|h|² <= x) [-] at x >= 0: closed form unless the model is composite (then an integral of the
    small-scale CDF over the shadowing, :func:`_shadowing_integral`). For an :class:`AnnulusFading`
    P(Y <= x) = E_d[P(|h|² <= x (d/d_max)^α)], a quadrature over the distance (:func:`_distance_integral`)."""
    from scipy import special

    x = float(x)
    if x <= 0.0:
        return 0.0
    fading, annulus = _split(fading)
    if annulus is not None:
        return _distance_integral(annulus, x, lambda t, _: gain_factor_cdf(fading, t))
    if fading.k_factor is None:
        sigma = fading.shadowing_db or 0.0
        return float(x >= 1.0) if sigma == 0.0 else float(special.ndtr(math.log(x) / (_DB * sigma)))
    if not _composite(fading):
        return float(_small_scale_cdf(fading.k_factor, x))
    return _shadowing_integral(fading, x, lambda t, _: _small_scale_cdf(fading.k_factor, t))


def gain_factor_pdf(fading: Fading | AnnulusFading, x: float) -> float:
    """Density of |h|² at x > 0 [-]; log-normal with σ = 0 (|h|² = 1) has none: ConfigError. For an
    :class:`AnnulusFading` the density of Y, E_d[(d/d_max)^α f(x (d/d_max)^α)] (f that of |h|²; in closed
    form where |h|² = 1, :func:`_circle_pdf`)."""
    from scipy import stats

    x = float(x)
    fading, annulus = _split(fading)
    if annulus is not None:
        if fading.k_factor is None and not fading.shadowing_db:
            return _circle_pdf(annulus, x)
        return _distance_integral(annulus, x, lambda t, scale: gain_factor_pdf(fading, t) * scale)
    if fading.k_factor is None:
        if not fading.shadowing_db:
            raise ConfigError(f"fading model {fading.name or 'lognormal:0'!r} has no density: |h|² = 1")
        a = _DB * fading.shadowing_db
        return float(stats.norm.pdf(math.log(x) / a) / (a * x))
    if not _composite(fading):
        return float(_small_scale_pdf(fading.k_factor, x))
    return _shadowing_integral(fading, x, lambda t, inv_shadow: _small_scale_pdf(fading.k_factor, t) * inv_shadow)


def _small_scale_quantile(k: float, outage: float) -> float:
    """ε-quantile of H: −ln(1 − ε) for Rayleigh, the noncentral chi-square quantile / (2(K+1)) for Rician."""
    from scipy import stats

    if k == 0.0:
        return -math.log1p(-outage)
    return float(stats.ncx2.ppf(outage, 2.0, 2.0 * k)) / (2.0 * (k + 1.0))


def _invert_cdf(cdf, outage: float, low: float, high: float, step: float) -> float:
    """The x > 0 with ``cdf``(x) = ε: Brent's method on ln x from the bracket [``low``, ``high``] of ln x,
    widened by ``step`` until it holds the root (x to a relative 1e-13, beyond the CDF's accuracy)."""
    from scipy import optimize

    def excess(log_x):
        return cdf(math.exp(log_x)) - outage

    while excess(low) > 0.0:
        low -= step
    while excess(high) < 0.0:
        high += step
    return math.exp(optimize.brentq(excess, low, high, xtol=1e-13, rtol=1e-14))


def gain_factor_quantile(fading: Fading | AnnulusFading, outage: float) -> float:
    """The ε-quantile of |h|² [-]: the x with P(|h|² <= x) = ε, ε = ``outage`` in (0, 1).

    Closed forms: Rayleigh −ln(1 − ε); log-normal 10^(σ Φ⁻¹(ε)/10); Rician the noncentral chi-square
    quantile. Composite models: Brent's method on ln x for :func:`gain_factor_cdf` = ε, bracketed
    around ln q_H(ε) + σ' Φ⁻¹(ε) (relative accuracy ~1e-10, that of the quadrature). An
    :class:`AnnulusFading`: the ε-quantile of Y by Brent's method on its CDF (a quadrature over the
    distance), bracketed by [q, q (d_min/d_max)^(−α)] (q the ε-quantile of |h|², as |h|² <= Y <=
    (d_min/d_max)^(−α) |h|²); exactly q where d_min = d_max.
    """
    from scipy import special

    outage = check_outage("outage", outage)
    small, annulus = _split(fading)
    if annulus is not None:
        low = math.log(gain_factor_quantile(small, outage))
        span = annulus.pathloss_exponent * math.log(annulus.d_max_m / annulus.d_min_m)
        return _invert_cdf(lambda x: gain_factor_cdf(annulus, x), outage, low, low + span, span)
    fading = small
    z = float(special.ndtri(outage))
    if fading.k_factor is None:
        return math.exp(_DB * (fading.shadowing_db or 0.0) * z)
    if not _composite(fading):
        return _small_scale_quantile(fading.k_factor, outage)
    guess = math.log(_small_scale_quantile(fading.k_factor, outage)) + _DB * fading.shadowing_db * z
    step = 1.0 + 4.0 * _DB * fading.shadowing_db
    return _invert_cdf(lambda x: gain_factor_cdf(fading, x), outage, guess - step, guess + step, step)


def _parameter_partial(fading: Fading | AnnulusFading, name: str, x: float) -> float:
    """∂P(|h|² <= x)/∂(parameter ``name``) at fixed x: a second-order difference of the CDF (central,
    or one-sided at the lower end of the parameter's range); of Y at fixed distances for an
    :class:`AnnulusFading`."""
    small, _ = _split(fading)
    value = getattr(small, name)
    h = 1e-4 * max(1.0, abs(value))

    def cdf(v):
        model = small._replace(**{name: v})
        return gain_factor_cdf(fading._replace(fading=model) if isinstance(fading, AnnulusFading) else model, x)

    if value - h >= 0.0:
        return (cdf(value + h) - cdf(value - h)) / (2.0 * h)
    return (-3.0 * cdf(value) + 4.0 * cdf(value + h) - cdf(value + 2.0 * h)) / (2.0 * h)


def quantile_derivatives(fading: Fading | AnnulusFading, outage: float) -> dict[str, float]:
    """Derivatives of the ε-quantile q of |h|² by the implicit function theorem on F(q; ε, θ) = ε.

    Returns ``{"outage": dq/dε, name: dq/dθ}`` for each parameter θ of the model (``k_factor`` [1/-],
    ``shadowing_db`` [1/dB]): dq/dε = 1/f(q) (f the density; 1/(1 − ε) for Rayleigh) and
    dq/dθ = −(∂F/∂θ)(q)/f(q); log-normal alone in closed form, dq/dε = q σ'/φ(Φ⁻¹(ε)) and
    dq/dσ = q Φ⁻¹(ε) ln10/10.
    """
    from scipy import special

    q = gain_factor_quantile(fading, outage)
    small, annulus = _split(fading)
    if annulus is None and small.k_factor is None:  # log-normal: q = e^(σ' z), z = Φ⁻¹(ε), in closed form
        z = float(special.ndtri(outage))
        sigma = _DB * (small.shadowing_db or 0.0)
        return {"outage": q * sigma * math.sqrt(2.0 * math.pi) * math.exp(0.5 * z * z)} | {
            name: q * _DB * z for name in small.parameters}
    density = gain_factor_pdf(fading, q)
    return {"outage": 1.0 / density} | {
        name: -_parameter_partial(fading, name, q) / density for name in fading.parameters
    }
