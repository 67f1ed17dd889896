"""Generic elementwise numerics shared by the solvers and the sensitivity module.

Everything here is a pure function of arrays with no knowledge of (P1): a cube root that is cheap on
XLA CPU, a division with a chosen value where the denominator is zero, broadcasting a pytree to one
shape, an unrolled solver of small dense linear systems and a golden-section search. All work under
``jit``, ``vmap`` and (where noted) ``grad``, and in float32 or float64.
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

__all__ = [
    "VECTOR_COMPILER_OPTIONS", "float_bits", "cbrt", "inv_cbrt", "expm1_nonnegative", "safe_div", "broadcast_leaves", "tolerance", "SmallSolve", "solve_small",
    "golden_section",
]

#: XLA compiler options of the solvers' jitted entry points (``jax.jit(..., compiler_options=...)``):
#: 512-bit vectors where the CPU has them (XLA on CPU prefers 256 bits by default). Their programs are
#: long elementwise loops: solve_exact ran 1.14x as fast on one Sapphire Rapids core with the same
#: bits in every answer (docs/performance.md). Other backends ignore the option.
VECTOR_COMPILER_OPTIONS = {"xla_cpu_prefer_vector_width": 512}


def float_bits(x):
    """The IEEE bit pattern of floats as signed integers of the same width: monotone for x >= 0, so a
    bisection of it is geometric in x."""
    return jax.lax.bitcast_convert_type(x, jnp.int64 if x.dtype == jnp.float64 else jnp.int32)


# cbrt(f) on [1, 2): least-squares quadratic for the relative error (at most 7.1e-4).
_CBRT_GUESS = (0.6228944233278512, 0.4374729459679123, -0.05965740676787311)


@jax.custom_jvp
def cbrt(a):
    """Cube root of a >= 0 (0 and inf map to themselves, NaN and negative a are returned unchanged).

    a = f·2^(3k + j) with f in [1, 2) and j in {0, 1, 2} (from the bit pattern, exact); cbrt(f·2^j)
    from a quadratic in f times 2^(j/3) (7e-4 off), then Halley steps x <- x + x (r - x³)/(2x³ + r),
    r = f·2^j in [1, 8) (so nothing overflows): two in float64 and one in float32 reach the last
    few ulps (tests/test_numerics.py), with one division each, and cbrt(a) = x·2^k. Half the time of
    ``jnp.cbrt`` on XLA CPU (2.2 against 4.5 ns per float64 on this project's VM). Subnormal a (which XLA on CPU flushes to zero in arithmetic) are
    read from their bit pattern. Differentiable: d cbrt(a) = da/(3 cbrt(a)²), taken as 0 at a = 0
    (where it is infinite) so that a branch masked out by ``jnp.where`` stays free of NaN in reverse mode.
    """
    dtype = a.dtype
    wide = dtype == jnp.float64
    width, mantissa, bias = (64, 52, 1023) if wide else (32, 23, 127)
    bits = float_bits(a)
    one = jnp.asarray(1, bits.dtype)
    field, fraction = bits >> mantissa, bits & ((one << mantissa) - 1)
    regular = (bits > 0) & (field < 2 * bias + 1)  # positive, finite and not 0 (NaN, inf, a <= 0 pass through)
    # a = f·2^e, f in [1, 2), from the bit pattern alone (XLA on CPU flushes subnormals to zero in
    # arithmetic): a subnormal a = fraction·2^(1 - bias - mantissa) is normalised by its leading zeros.
    subnormal = field == 0
    top = (width - 1) - jax.lax.clz(jnp.where(subnormal, fraction, one))  # highest set bit of the fraction
    shift = jnp.where(subnormal, mantissa - top, 0)
    e = jnp.where(subnormal, top + 1 - bias - mantissa, field - bias)
    f = jax.lax.bitcast_convert_type(((fraction << shift) & ((one << mantissa) - 1)) | (jnp.asarray(bias, bits.dtype) << mantissa), dtype)
    offset = 3 * ((bias + mantissa) // 3 + 1)  # keeps the dividend positive: e // 3 rounded down
    k = jax.lax.div(e + offset, jnp.asarray(3, bits.dtype)) - offset // 3
    j = e - 3 * k
    r = f * jnp.where(j == 0, 1.0, jnp.where(j == 1, 2.0, 4.0))  # a = r·2^(3k), r in [1, 8)
    x = (_CBRT_GUESS[0] + f * (_CBRT_GUESS[1] + f * _CBRT_GUESS[2])) * jnp.where(
        j == 0, 1.0, jnp.where(j == 1, 2.0 ** (1 / 3), 2.0 ** (2 / 3)))
    for _ in range(1 if wide else 0):
        cube = x * x * x
        x = x + x * (r - cube) / (2.0 * cube + r)  # x (x³ + 2r)/(2x³ + r), the correction rounded alone
    scale = jax.lax.bitcast_convert_type((k + bias) << mantissa, dtype)  # 2^k, a normal number
    # The last step scaled by 2^k, with the division last so that XLA keeps the root in memory for its
    # readers instead of copying the cheap arithmetic before it into each of them.
    cube = x * x * x
    return jnp.where(regular, (x * scale) * (cube + 2.0 * r), a) / jnp.where(regular, 2.0 * cube + r, 1.0)


@cbrt.defjvp
def _cbrt_jvp(primals, tangents):
    (a,), (da,) = primals, tangents
    x = cbrt(a)
    return x, safe_div(da, 3.0 * x * x, 0.0)


def inv_cbrt(a):
    """a^(-1/3) for a > 0 by multiplications only: a bit-pattern guess (3.4% off) and two steps of
    r <- r (1 + d/3 + 2d²/9 + 14d³/81 + 35d⁴/243), d = 1 - a r³ (the series of (1 - d)^(-1/3), fifth
    order): within two ulps in float32 and float64 (tests/test_numerics.py). ``a`` is clipped to the
    dtype's normal range first (0 gives tiny^(-1/3), inf gives max^(-1/3): finite, for callers that
    clamp the result). Unlike :func:`cbrt` (divisions) it fuses into one vectorised loop with its
    neighbours on XLA CPU; the terms are grouped to keep the chain of dependent operations short.
    """
    dtype = a.dtype
    finfo = jnp.finfo(dtype)
    a = jnp.clip(a, finfo.tiny, finfo.max)
    bits = float_bits(a)
    magic = 0x553EF0FF289DD794 if dtype == jnp.float64 else 0x54A21D2A
    r = jax.lax.bitcast_convert_type(jnp.asarray(magic, bits.dtype) - jax.lax.div(bits, jnp.asarray(3, bits.dtype)), dtype)
    for _ in range(2):
        d = 1.0 - (a * r) * (r * r)
        r = r + r * (d * ((1.0 / 3.0 + (2.0 / 9.0) * d) + (d * d) * (14.0 / 81.0 + (35.0 / 243.0) * d)))
    return r


def expm1_nonnegative(y):
    """e^y - 1 for y >= 0 (inf above 709 in float64, 88 in float32) in arithmetic and bit operations.

    y = n ln2 + g with |g| <= ln2/2 (ln2 in two parts), e^g - 1 = g·P(g) with P the Taylor polynomial
    of degree 13 (float64; 7 in float32: truncation below 1e-17, resp. 1e-8, relative) evaluated by
    Estrin's scheme (a short dependency chain), then 2^n (e^g - 1) + (2^n - 1) with 2^n from its bit
    pattern: within three ulps of the correctly rounded value (tests/test_numerics.py). Not
    ``jnp.expm1``: inside a large loop fusion XLA on CPU (jaxlib 0.10.2) emits exp and expm1 as scalar
    code per vector lane. Subnormal y (flushed to zero by XLA on CPU) give 0.
    """
    dtype = y.dtype
    wide = dtype == jnp.float64
    ln2_hi, ln2_lo = (0.6931471803691238, 1.9082149292705877e-10) if wide else (0.693145751953125, 1.428606765330187e-06)
    top = 709.0 if wide else 88.0
    clipped = jnp.clip(y, 0.0, top)
    n = jnp.floor(clipped * (1.0 / math.log(2.0)) + 0.5)
    g = (clipped - n * ln2_hi) - n * ln2_lo
    coefficients = [1.0 / math.factorial(k) for k in range(1, 15 if wide else 9)]  # P(g) = Σ g^(k-1)/k!
    terms = [coefficients[i] + coefficients[i + 1] * g for i in range(0, len(coefficients), 2)]
    power = g * g
    while len(terms) > 1:  # Estrin: pair up terms with g², g⁴, ...
        terms = [terms[i] + terms[i + 1] * power if i + 1 < len(terms) else terms[i] for i in range(0, len(terms), 2)]
        power = power * power
    exponent = n.astype(jnp.int64 if wide else jnp.int32) + (1023 if wide else 127)
    scale = jax.lax.bitcast_convert_type(exponent << (52 if wide else 23), dtype)  # 2^n
    return jnp.where(y > top, jnp.inf, scale * (g * terms[0]) + (scale - 1.0))


def safe_div(numerator, denominator, if_zero):
    """numerator/denominator, and ``if_zero`` where the denominator is 0 (no 0/0 in values or
    gradients: the denominator is replaced before dividing)."""
    zero = denominator == 0
    # The division last (if_zero/1 is exact): XLA on CPU then keeps the quotient in memory for its
    # readers rather than copying a selection after it into each of them.
    return jnp.where(zero, if_zero, numerator) / jnp.where(zero, 1.0, denominator)


def broadcast_leaves(tree, *, promote: bool = False):
    """Every leaf of ``tree`` as an array of the leaves' common broadcast shape; with ``promote``, also
    of their common (promoted) dtype. A batch of problems then vmaps leaf by leaf."""
    leaves, treedef = jax.tree_util.tree_flatten(jax.tree_util.tree_map(jnp.asarray, tree))
    shape = jnp.broadcast_shapes(*(leaf.shape for leaf in leaves))
    if promote:
        dtype = jnp.result_type(*leaves)
        leaves = [leaf.astype(dtype) for leaf in leaves]
    return jax.tree_util.tree_unflatten(treedef, [jnp.broadcast_to(leaf, shape) for leaf in leaves])


def tolerance(base: float, dtype) -> float:
    """``base`` (meant for float64), or 64 machine epsilons where the dtype cannot reach it."""
    return max(base, 64.0 * float(jnp.finfo(dtype).eps))


class SmallSolve(NamedTuple):
    """Result of :func:`solve_small`."""

    x: Any  # the solution, shaped like the right-hand side (non-finite where singular)
    singular: Any  # bool: a pivot was below n·eps·max|a| or the solution is not finite


def solve_small(a, b) -> SmallSolve:
    """x with a x = b for one small square system (n x n, n of a few): Gaussian elimination with
    partial pivoting, unrolled into elementwise operations over the rows (callers vmap over systems).

    Partial pivoting makes it stable for general matrices; on symmetric positive-definite ones it is
    stable as well (it then seldom swaps). ``b`` is (n,) or (n, m). Not ``jnp.linalg.solve``: on CPU
    (jaxlib 0.10.2) two batched LAPACK solves that XLA runs concurrently in one program deadlock its
    thread pool (two stored gradients in a sweep hung), and for 5 x 5 systems a batched LAPACK call is
    slower than these few vector operations anyway. A numerically singular ``a`` is flagged.
    """
    n = a.shape[-1]
    rhs = b.reshape(n, -1)
    rows = [jnp.concatenate([a[i], rhs[i]]) for i in range(n)]
    threshold = n * jnp.finfo(a.dtype).eps * jnp.max(jnp.abs(a))
    singular = jnp.zeros((), bool)
    for k in range(n):
        which = jnp.argmax(jnp.stack([jnp.abs(row[k]) for row in rows[k:]]))
        pivot = jax.lax.select_n(which, *rows[k:]) if k < n - 1 else rows[k]
        rows[k + 1 :] = [jnp.where(which == j, rows[k], row) for j, row in enumerate(rows[k + 1 :], start=1)]
        rows[k] = pivot
        singular = singular | ~(jnp.abs(pivot[k]) > threshold)
        for i in range(k + 1, n):
            rows[i] = rows[i] - (rows[i][k] / pivot[k]) * pivot
    x = [None] * n
    for k in reversed(range(n)):
        tail = sum((rows[k][j] * x[j] for j in range(k + 1, n)), jnp.zeros_like(rows[k][n:]))
        x[k] = (rows[k][n:] - tail) / rows[k][k]
    x = jnp.stack(x).reshape(b.shape)
    return SmallSolve(x, singular | ~jnp.all(jnp.isfinite(x)))


def golden_section(fun, low, high, steps: int):
    """Minimiser of a unimodal ``fun`` on [low, high] by golden-section search (elementwise): the
    bracket shrinks by (√5 - 1)/2 per step; the midpoint of the last bracket is returned."""
    shrink = (math.sqrt(5.0) - 1.0) / 2.0

    def body(_, bracket):
        lo, hi = bracket
        left, right = hi - shrink * (hi - lo), lo + shrink * (hi - lo)
        keep_left = fun(left) <= fun(right)
        return jnp.where(keep_left, lo, left), jnp.where(keep_left, right, hi)

    lo, hi = jax.lax.fori_loop(0, steps, body, (low, high))
    return 0.5 * (lo + hi)
