"""Large batches in blocks and over devices (``laimco_jax.solvers.batching``) give the solvers' own answers.

The solvers are elementwise over their batch, so solving in blocks, or with the batch split over
several CPU devices, must return what one call on the whole batch returns — the same statuses, and
every value to its last ulps (XLA's vector and scalar code may round one expression differently) —
with every field and every shape (batches of any rank, scalar leaves broadcast, sizes that are not a multiple of the block
or of the device count, trailing dims such as the SCA's ``objective_history``). Several CPU devices
need JAX's ``jax_num_cpu_devices`` before its backend starts, so that case runs in a fresh process.
"""

import functools
import subprocess
import sys
import textwrap

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from laimco_jax.params import make_problem
from laimco_jax.solvers import Solution, solve_exact, solve_sca
from laimco_jax.solvers.batching import map_blocks, map_devices, use_cpu_cores
from laimco_jax.solvers.instances import random_problems


def _assert_same(got, want):
    """Same fields, shapes and dtypes; integers (statuses, reasons, iterations) equal; floats equal up to
    the last ulps (XLA's vector and scalar code for one expression may round differently, and which
    instances fall in a vector loop's scalar tail depends on the batch's layout)."""
    got_leaves, want_leaves = jax.tree_util.tree_leaves(got), jax.tree_util.tree_leaves(want)
    assert len(got_leaves) == len(want_leaves)
    for a, b in zip(got_leaves, want_leaves):
        assert a.shape == b.shape and a.dtype == b.dtype
        if jnp.issubdtype(a.dtype, jnp.integer):
            np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
        else:
            np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("scheme", ["proposed", "fixed-frequency"])
def test_blocks_give_the_whole_batch_answers(scheme):
    problem = random_problems(1001, seed=3, spread=10.0)  # not a multiple of the block: padded
    solver = functools.partial(solve_exact, scheme=scheme)
    want = jax.jit(solver)(problem)
    _assert_same(jax.jit(lambda p: map_blocks(solver, p, block=128))(problem), want)
    _assert_same(jax.jit(lambda p: map_devices(solver, p, block=128))(problem), want)  # one device here


def test_blocks_keep_batch_shape_and_broadcast_scalar_leaves():
    base = make_problem("paper", "bert-base")
    delays = jnp.linspace(0.1, 0.6, 7)[:, None]
    energies = jnp.linspace(0.005, 0.03, 9)[None, :]
    problem = base.replace(budget=base.budget.replace(delay_s=delays, energy_j=energies))  # (7, 9), rest scalars
    got = jax.jit(lambda p: map_blocks(solve_exact, p, block=10))(problem)
    assert got.status.shape == (7, 9)
    _assert_same(got, solve_exact(problem))


def test_blocks_keep_trailing_dims_of_the_sca():
    problem = random_problems(10, seed=5)
    want = solve_sca(problem, max_iters=5)
    got = jax.jit(lambda p: map_blocks(functools.partial(solve_sca, max_iters=5), p, block=4))(problem)
    assert got.objective_history.shape == (10, 6)
    _assert_same(got, want)


def test_bad_block_and_core_counts_are_refused():
    with pytest.raises(ValueError, match="block = 0"):
        map_blocks(solve_exact, random_problems(4, seed=0), block=0)
    with pytest.raises(ValueError, match="count = 0"):
        use_cpu_cores(0)
    jax.devices()  # the backend is running in this process, with one CPU device
    assert use_cpu_cores(1) == 1
    with pytest.raises(RuntimeError, match="already started with 1 device"):
        use_cpu_cores(3)


_TWO_DEVICES = textwrap.dedent("""
    import sys
    import jax
    from laimco_jax.solvers.batching import map_devices, use_cpu_cores
    assert use_cpu_cores(2) == 2
    jax.config.update("jax_enable_x64", True)
    import numpy as np
    from laimco_jax.solvers import solve_exact
    from laimco_jax.solvers.instances import random_problems
    assert jax.device_count() == 2
    import functools
    from laimco_jax.solvers import solve_sca
    sca = functools.partial(solve_sca, max_iters=5)
    for solver, problem in ((solve_exact, random_problems(1001, seed=11, spread=10.0)), (sca, random_problems(41, seed=2))):
        want = jax.jit(solver)(problem)
        got = jax.jit(lambda p: map_devices(solver, p, block=16))(problem)
        for a, b in zip(jax.tree_util.tree_leaves(got), jax.tree_util.tree_leaves(want)):
            assert a.shape == b.shape and a.dtype == b.dtype, (a.shape, b.shape)
            if a.dtype.kind == "i":
                np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
            else:
                np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-12, atol=1e-14)
        print("same", len(jax.tree_util.tree_leaves(got)))
""")


def test_two_cpu_devices_give_the_whole_batch_answers():  # the exact solver and the SCA
    out = subprocess.run([sys.executable, "-c", _TWO_DEVICES], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    fields = len(Solution._fields)
    assert out.stdout.split() == ["same", str(fields - 1), "same", str(fields)]  # the exact solver's history is None
