"""Generic elementwise numerics shared by the solvers and the sensitivity module.

Everything here is a pure function of arrays with no knowledge of (P1): a cube root that is cheap on
XLA CPU, a division with a chosen value where the denominator is zero, broadcasting a pytree to one
shape, an unrolled solver of small dense linear systems, one step of a projected Newton method over a
box and a golden-section search. All work under ``jit``, ``vmap`` and (where noted) ``grad``, and in
float32 or float64.
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

__all__ = [
    "float_bits", "cbrt", "safe_div", "broadcast_leaves", "tolerance", "SmallSolve", "solve_small",
    "projected_newton_step", "golden_section",
]


def float_bits(x):
    """The IEEE bit pattern of floats as signed integers of the same width: monotone for x >= 0, so a
    bisection of it is geometric in x."""
    return jax.lax.bitcast_convert_type(x, jnp.int64 if x.dtype == jnp.float64 else jnp.int32)


@jax.custom_jvp
def cbrt(a):
    """Cube root of a >= 0 (0 and inf map to themselves, NaN and negative a are returned unchanged).

    A bit-pattern guess (3% off) and Halley steps x <- x (r + 2)/(2r + 1), r = x³/a: about 10x cheaper
    than ``jnp.cbrt`` on XLA CPU; three steps reach a few ulps in float64, two the float32 rounding.
    The ratio r stays near 1, so no intermediate overflows. Subnormal a (which XLA on CPU flushes to
    zero in arithmetic) are read from their bit pattern. Differentiable: d cbrt(a) = da/(3 cbrt(a)²),
    taken as 0 at a = 0 (where it is infinite) so that a branch masked out by ``jnp.where`` stays
    free of NaN in reverse mode.
    """
    dtype = a.dtype
    wide = dtype == jnp.float64
    # XLA on CPU treats subnormals as zero, so they are read from their bits: a = m·2^-1074 (float64),
    # = 2m·2^-150 (float32), and cbrt(a) = cbrt(m or 2m)·2^-358 (2^-50), all exact scalings.
    bits = float_bits(a)
    subnormal = (bits > 0) & (bits < float_bits(jnp.asarray(jnp.finfo(dtype).tiny, dtype)))
    m = jnp.where(subnormal, bits.astype(dtype) * (1.0 if wide else 2.0), a)
    regular = (m > 0) & (m < jnp.inf)
    m_safe = jnp.where(regular, m, 1.0)
    x = jax.lax.bitcast_convert_type(
        jax.lax.div(float_bits(m_safe), jnp.asarray(3, bits.dtype)) + (0x2A9F7893782DA1CE if wide else 0x2A5137A0), dtype
    )
    for _ in range(3 if wide else 2):
        r = x * x * (x / m_safe)
        x = x * (r + 2.0) / (2.0 * r + 1.0)
    x = jnp.where(subnormal, x * jnp.asarray(2.0 ** (-358 if wide else -50), dtype), x)
    return jnp.where(regular, x, a)


@cbrt.defjvp
def _cbrt_jvp(primals, tangents):
    (a,), (da,) = primals, tangents
    x = cbrt(a)
    return x, safe_div(da, 3.0 * x * x, 0.0)


def safe_div(numerator, denominator, if_zero):
    """numerator/denominator, and ``if_zero`` where the denominator is 0 (no 0/0 in values or
    gradients: the denominator is replaced before dividing)."""
    zero = denominator == 0
    return jnp.where(zero, if_zero, numerator / jnp.where(zero, 1.0, denominator))


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


def projected_newton_step(
    fun,
    model,
    x,
    lower,
    upper,
    *,
    tol: float,
    ridge: float,
    active_eps: float,
    armijo: float,
    steps: int,
):
    """One step of Bertsekas' projected Newton method for a smooth convex function over a box.

    ``fun(x)`` returns the value (for a stack of points x (..., n)), ``model(x)`` the value, gradient
    and Hessian at one point x (n,). Variables at a bound whose gradient pushes outwards (within ε =
    min(``active_eps``, projected gradient) of it) are held there; the others take a regularised Newton
    step with the Hessian restricted to them (ridge ``ridge``·(1 + max|diag|) + ‖∇f‖∞); the step along
    the projection arc x(t) = clip(x + t d) is the largest of t = 1, 1/4, ..., 4^-(steps-1) meeting
    Armijo's condition with constant ``armijo`` (all tried at once). Returns the new point and whether
    the minimisation is over: the projected gradient ‖x - clip(x - ∇f)‖∞ is below ``tol`` (at least 64
    machine epsilons), the Newton decrement is below the rounding of f (the step just taken is the last
    one that matters), or no trial step decreases f.
    """
    tiny = 8.0 * jnp.finfo(x.dtype).eps
    x = jnp.clip(x, lower, upper)  # a warm start may lie outside a new subproblem's box
    value, grad, hessian = model(x)
    gap = jnp.max(jnp.abs(x - jnp.clip(x - grad, lower, upper)))
    eps = jnp.minimum(active_eps, gap)
    free = ~(((x <= lower + eps) & (grad > 0)) | ((x >= upper - eps) & (grad < 0)))
    h = jnp.where(free[:, None] & free[None, :], hessian, 0.0)
    # Ridge ∝ ‖∇f‖ (regularised Newton): steps stay O(1) where the Hessian is nearly singular, and
    # vanish near the minimiser so convergence stays quadratic.
    shift = ridge * (1.0 + jnp.max(jnp.abs(jnp.diag(h)))) + jnp.max(jnp.abs(jnp.where(free, grad, 0.0)))
    direction = -solve_small(h + jnp.diag(jnp.where(free, shift, 1.0)), grad).x
    trials = jnp.clip(x + (0.25 ** jnp.arange(steps, dtype=x.dtype))[:, None] * direction, lower, upper)
    values = fun(trials)
    predicted = (trials - x) @ grad  # first-order change of f, ≤ 0
    accepted = values <= value + armijo * predicted + tiny * jnp.abs(value)
    best = jnp.argmax(accepted)  # the first (largest) step meeting Armijo's condition
    moved = accepted[best]
    small = -predicted[0] <= jnp.finfo(x.dtype).eps * (1.0 + jnp.abs(value))
    return jnp.where(moved, trials[best], x), (gap <= tolerance(tol, x.dtype)) | small | ~moved


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
