"""The generic numerics of laimco_jax.solvers.numerics against numpy and scipy, with and without jit."""

import functools
import math

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.optimize

from laimco_jax.solvers import SCHEMES, numerics
from laimco_jax.solvers.schemes import scheme_spec
from laimco_jax.solvers.instances import random_problems


def ulps(got, want):
    """|got - want| in units in the last place of ``want`` (0 where they are equal, inf included)."""
    with np.errstate(invalid="ignore"):
        return np.where(got == want, 0.0, np.abs(got - want) / np.spacing(np.abs(want)))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_cbrt_matches_numpy_within_a_few_ulps(dtype):
    finfo = np.finfo(dtype)
    rng = np.random.default_rng(0)
    normal = np.exp(rng.uniform(np.log(finfo.tiny), np.log(finfo.max), 100_000))
    subnormal = rng.uniform(0.0, 1.0, 1000) * finfo.tiny
    special = [0.0, np.inf, finfo.smallest_subnormal, finfo.tiny, finfo.max, 1.0, 8.0, 27.0, 1e-30, 1e30]
    a = np.concatenate([normal, subnormal, special]).astype(dtype)
    got = np.asarray(numerics.cbrt(jnp.asarray(a)))
    assert got.dtype == dtype
    assert ulps(got, np.cbrt(a.astype(np.longdouble)).astype(dtype)).max() <= 3
    assert got[-10] == 0.0 and got[-9] == np.inf


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_inv_cbrt_matches_numpy_within_two_ulps(dtype):
    """a^(-1/3) over the whole normal range against 1/cbrt(a) in extended precision; 0 and inf clip."""
    finfo = np.finfo(dtype)
    rng = np.random.default_rng(1)
    a = np.exp(rng.uniform(np.log(finfo.tiny), np.log(finfo.max), 100_000))
    a = np.concatenate([a, [finfo.tiny, finfo.max, 1.0, 8.0, 1e-30, 1e30]]).astype(dtype)
    got = np.asarray(jax.jit(numerics.inv_cbrt)(jnp.asarray(a)))
    assert got.dtype == dtype
    assert ulps(got, (1.0 / np.cbrt(a.astype(np.longdouble))).astype(dtype)).max() <= 2
    assert got[-3] == 0.5
    ends = np.asarray(numerics.inv_cbrt(jnp.asarray([0.0, np.inf], dtype)))
    np.testing.assert_allclose(ends, 1.0 / np.cbrt(np.array([finfo.tiny, finfo.max], np.float64)), rtol=10 * finfo.eps)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_expm1_nonnegative_matches_numpy_within_three_ulps(dtype):
    """e^y - 1 for y from the smallest normal to the overflow threshold against numpy in extended precision."""
    finfo = np.finfo(dtype)
    top = 709.0 if dtype == np.float64 else 88.0
    rng = np.random.default_rng(2)
    y = np.concatenate([np.exp(rng.uniform(np.log(finfo.tiny), np.log(top), 100_000)), rng.uniform(0.0, 3.0, 10_000),
                        [0.0, math.log(2.0) / 2, 1.0, top]]).astype(dtype)
    got = np.asarray(jax.jit(numerics.expm1_nonnegative)(jnp.asarray(y)))
    assert got.dtype == dtype
    assert ulps(got, np.expm1(y.astype(np.longdouble)).astype(dtype)).max() <= 3
    assert np.asarray(numerics.expm1_nonnegative(jnp.asarray([np.inf, top * 1.01], dtype))).tolist() == [np.inf] * 2


def test_cbrt_passes_nan_and_differentiates():
    assert np.isnan(float(numerics.cbrt(jnp.asarray(np.nan))))
    np.testing.assert_allclose(jax.grad(numerics.cbrt)(8.0), 1.0 / 12.0, rtol=1e-15)
    assert float(jax.grad(numerics.cbrt)(0.0)) == 0.0  # infinite in truth; 0 keeps masked branches finite


def test_safe_div_gives_the_fallback_and_finite_gradients_at_zero():
    num, den = jnp.asarray([1.0, 2.0, -3.0]), jnp.asarray([2.0, 0.0, 0.0])
    np.testing.assert_array_equal(numerics.safe_div(num, den, jnp.inf), [0.5, np.inf, np.inf])
    grad = jax.grad(lambda d: jnp.sum(numerics.safe_div(num, d, 7.0)))(den)
    np.testing.assert_array_equal(grad, [-0.25, 0.0, 0.0])


def test_broadcast_leaves_shapes_and_dtypes():
    tree = {"a": 1.0, "b": jnp.ones((3, 1), jnp.float32), "c": np.zeros(4)}
    out = numerics.broadcast_leaves(tree)
    assert all(v.shape == (3, 4) for v in out.values()) and out["b"].dtype == jnp.float32
    promoted = numerics.broadcast_leaves(tree, promote=True)
    assert {v.dtype for v in promoted.values()} == {jnp.result_type(*[jnp.asarray(v) for v in tree.values()])}


def test_solve_small_matches_lapack_including_pivoting():
    rng = np.random.default_rng(7)
    a = rng.normal(size=(500, 5, 5)) + 3.0 * np.eye(5)
    a[:100, 0, 0] = 0.0  # a zero leading pivot: only a row swap gets past it
    rhs = rng.normal(size=(500, 5, 3))
    expected = np.linalg.solve(a, rhs)
    solved = jax.vmap(numerics.solve_small)(jnp.asarray(a), jnp.asarray(rhs))
    np.testing.assert_allclose(solved.x, expected, rtol=1e-9, atol=1e-9 * np.abs(expected).max())
    assert not np.any(solved.singular)
    vector = jax.vmap(numerics.solve_small)(jnp.asarray(a), jnp.asarray(rhs[..., 0]))
    np.testing.assert_allclose(vector.x, expected[..., 0], rtol=1e-9, atol=1e-9 * np.abs(expected).max())


def test_solve_small_on_spd_systems():
    rng = np.random.default_rng(3)
    m = rng.normal(size=(500, 5, 5))
    spd = m @ np.swapaxes(m, 1, 2) + 1e-3 * np.eye(5)
    rhs = rng.normal(size=(500, 5))
    expected = np.linalg.solve(spd, rhs[..., None])[..., 0]
    solved = jax.vmap(numerics.solve_small)(jnp.asarray(spd), jnp.asarray(rhs))
    np.testing.assert_allclose(solved.x, expected, rtol=1e-7, atol=1e-9 * np.abs(expected).max())
    assert not np.any(solved.singular)


def test_solve_small_flags_singular_systems():
    rng = np.random.default_rng(11)
    a = rng.normal(size=(4, 5, 5))
    a[0, :, 2] = a[0, :, 4]  # two equal columns
    a[1, 3] = 2.0 * a[1, 1]  # dependent rows
    a[2] = 0.0
    a[3] = np.outer(rng.normal(size=5), rng.normal(size=5))  # rank one
    for system in a:
        with pytest.raises(np.linalg.LinAlgError):
            np.linalg.solve(system, np.ones(5))
    solved = jax.vmap(numerics.solve_small)(jnp.asarray(a), jnp.ones((4, 5)))
    assert np.all(solved.singular)


def test_golden_section_matches_scipy_on_a_unimodal_function():
    def fun(x):
        return (x - 1.3) ** 2 + jnp.exp(0.3 * x)

    got = float(numerics.golden_section(fun, jnp.asarray(-4.0), jnp.asarray(5.0), 80))
    want = scipy.optimize.minimize_scalar(lambda x: float(fun(x)), bounds=(-4.0, 5.0), method="bounded",
                                          options={"xatol": 1e-12}).x
    assert abs(got - want) < 1e-7


class SolversWithAndWithoutJit(chex.TestCase):
    """The numerics and the exact solver's core run alike traced by ``jit`` and eagerly."""

    @chex.variants(with_jit=True, without_jit=True)
    def test_cbrt(self):
        a = jnp.asarray([0.0, 1e-310, 2.0, 1e300, jnp.inf])
        np.testing.assert_array_less(ulps(np.asarray(self.variant(numerics.cbrt)(a)), np.cbrt(np.asarray(a))), 3.0)

    @chex.variants(with_jit=True, without_jit=True)
    def test_solve_small(self):
        a = jnp.asarray(np.random.default_rng(1).normal(size=(5, 5))) + 3.0 * jnp.eye(5)
        b = jnp.arange(5.0)
        solved = self.variant(numerics.solve_small)(a, b)
        np.testing.assert_allclose(solved.x, np.linalg.solve(a, b), rtol=1e-12)

    @chex.variants(with_jit=True, without_jit=True)
    def test_exact_solver_core(self):
        from laimco_jax.solvers.convex_form import convex_form
        from laimco_jax.solvers.exact import _solve_form
        from laimco_jax.solvers.schemes import scheme_spec

        spec = scheme_spec("proposed")
        form = convex_form(random_problems(64, seed=2), spec)
        solve = self.variant(functools.partial(_solve_form, spec=spec, iterations=28))
        _, primal, _, bound, infeasible, _ = solve(form)
        chex.assert_shape([primal.rho, bound, infeasible], (64,))
        found = np.asarray(primal.feasible)
        assert found.any() and not np.any(found & np.asarray(infeasible))
        total = np.asarray(form.value_device + form.value_server)[found]
        gap = (np.asarray(bound)[found] - np.asarray(primal.value)[found]) / total
        assert np.all(gap <= 1e-9) and math.isfinite(float(np.max(gap)))


@pytest.mark.parametrize("scheme", [s for s in SCHEMES if not scheme_spec(s).fixed_frequency])
def test_search_step_verdict_is_the_full_knapsacks(scheme):
    """The price search's division-free test (knapsack scaled by 1/(1 + ν), products instead of
    quotients) gives the full knapsack's verdict "the response exceeds E0" at prices spread over each
    instance's whole search interval, except where the response's energy is within 1e-9 of E0."""
    from laimco_jax.solvers import exact
    from laimco_jax.solvers.convex_form import convex_form
    from laimco_jax.solvers.schemes import scheme_problem

    spec = scheme_spec(scheme)
    form = convex_form(scheme_problem(random_problems(2000, seed=5, spread=10.0), scheme), spec)
    y_end, y_top = exact._search_interval(form)
    y = jnp.exp(jnp.log(y_end) + jnp.linspace(0.0, 1.0, 64)[:, None] * (jnp.log(y_top) - jnp.log(y_end)))
    form = jax.tree_util.tree_map(lambda x: jnp.broadcast_to(x, y.shape), form)  # (64 prices, 2000)
    fixed = exact._fixed_terms(form)
    full = exact._knapsack(form, exact._rates_at(form, y, spec, fixed))
    step = exact._response_exceeds_energy(form, y, spec, fixed)
    clear = np.abs(np.asarray(full.energy_excess)) > 1e-9
    violated = np.asarray(full.energy_violated)[clear]
    assert clear.mean() > 0.99 and violated.any() and not violated.all()
    np.testing.assert_array_equal(np.asarray(step)[clear], violated)
