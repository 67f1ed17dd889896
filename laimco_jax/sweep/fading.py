"""Fading sweeps: every grid point of a sweep solved at N channel draws, with reductions over the draws.

``laimco sweep ... --fading MODEL --samples N --seed S [--reduce-only]`` (:class:`~laimco_jax.sweep.spec.FadingSamples`)
draws N gain factors |h|² of the fading model (:func:`~laimco_jax.fading.gain_factor_draws`, the draw
of index i keyed by (S, i) alone, so the same seed gives the same draws whatever the chunk size) and
solves the adaptive design, (P1) at the gain g·|h|²_i with :func:`~laimco_jax.solvers.solve_exact`, at
every grid point and scheme for every draw i; g is the grid point's gain (its ``channel_gain``, or the
path loss of its distance etc.). The draws are the same at every grid point (common random numbers).

Stored (dims ``(grid dims..., scheme[, sample])``):

* always, per grid point and scheme, the reductions over the N draws (:data:`~laimco_jax.outage.REDUCTIONS`,
  computed by :func:`~laimco_jax.outage.adaptive_reductions`, the function behind ``laimco fading``):
  ``adaptive_mean_log10_distortion_bound``, ``adaptive_log10_distortion_bound_q05`` / ``_q50`` /
  ``_q95`` (exact quantiles, numpy's ``inverted_cdf``; a draw without a design counts as +inf) and
  ``adaptive_infeasible_fraction``;
* unless ``reduce_only``, every Solution variable of the sweep per draw (dim ``sample``), the draw's
  gain g·|h|² at the grid point (``drawn_channel_gain``), the coordinate ``sample`` (the draw's global
  index) and ``gain_factor`` (the drawn |h|², dim ``sample``).

Memory. A chunk holds all N draws of its grid points; the chunk size counts every draw (a chunk is at
least one grid point). The draws of a chunk are solved in batches of at most
:data:`SAMPLE_BATCH_INSTANCES` instances, and of each draw only log10 D̂* is
kept for the reductions (8 bytes per draw and grid point of the chunk, not the solver's working set;
reduced on the host in the writer thread, so the device goes on with the next chunk), so the exact
quantiles need N × 8 B per grid point in flight (8 MB for N = 10⁶) and the store holds
the reductions alone with ``reduce_only``: its size does not grow with N. Without ``reduce_only`` the
chunk's Solution variables (about 200 B per draw) are held and stored as well. Counting the drawn |h|²
(kept for every chunk), the batches' outputs, their join and its host copy, the peak adds about 100
bytes per draw of a chunk: measured peak RSS of ``laimco sweep`` on CPU, 2 grid points: 309 MB without
fading, 409 MB with N = 2·10⁵ ``--reduce-only`` (store 184 kB), 582 MB without (store 65 MB), 422 MB
with N = 10⁶ ``--reduce-only``; 1 grid point with N = 10⁷: 1.37 GB. So memory is linear in N per grid
point (exact order statistics need the sample) and flat in the grid.
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from laimco_jax.fading import Fading
from laimco_jax.outage import adaptive_reductions, draw_gain_factors, with_channel_gain
from laimco_jax.solvers import found_point
from laimco_jax.solvers.numerics import VECTOR_COMPILER_OPTIONS
from laimco_jax.sweep.compute import (
    DEFAULT_CHUNK_SIZE,
    ChunkEvaluator,
    ChunkLayout,
    block_problem,
    chunk_origin,
    padded_points,
    replicate,
    solve_in_blocks,
)
from laimco_jax.sweep.schema import DRAWN_GAIN, SOLUTION_VARIABLES
from laimco_jax.sweep.spec import FadingSamples, SweepSpec
from laimco_jax.system import channel_gain

__all__ = ["SAMPLE_BATCH_INSTANCES", "fading_evaluator", "gain_factors", "sample_batch"]

_LOG10 = "_log10_or_inf"  # log10 D̂*, +inf where no point: the input of the reductions (not stored)


#: Most (P1) instances solved at once within a chunk of a fading sweep (its draws go in batches).
SAMPLE_BATCH_INSTANCES = DEFAULT_CHUNK_SIZE


def sample_batch(points: int, samples: int) -> int:
    """Draws solved per batch for ``points`` (padded) grid points: all ``samples`` if they fit in
    :data:`SAMPLE_BATCH_INSTANCES` instances, else as many as fit (at least one)."""
    return max(1, min(samples, SAMPLE_BATCH_INSTANCES // max(points, 1)))


def _batch_factors(fading: Fading, seed: int, samples: int, batch: int) -> list[jax.Array]:
    """The drawn |h|² in batches of ``batch`` draws (float64), indices 0 .. samples − 1; the last batch is
    padded with the last draw (cut after solving)."""
    return [draw_gain_factors(fading, seed, jnp.minimum(start + jnp.arange(batch), samples - 1), jnp.float64)
            for start in range(0, samples, batch)]


def gain_factors(draws: FadingSamples) -> np.ndarray:
    """The N drawn |h|² [-] of a fading sweep (float64, by draw index): the coordinate ``gain_factor``."""
    with jax.enable_x64(True):
        parts = _batch_factors(draws.fading, draws.seed, draws.samples, min(draws.samples, DEFAULT_CHUNK_SIZE))
        return np.concatenate([np.asarray(p) for p in parts])[: draws.samples]


class _FadingPlan(NamedTuple):
    """The static structure of one scheme's batch of draws (the jit cache key, with the inputs' structure)."""

    shape: tuple[int, ...]  # grid shape
    block: tuple[int, ...]  # chunk shape
    scheme: str
    mesh: Mesh
    batch: int  # draws per batch
    reduce_only: bool


@functools.partial(jax.jit, static_argnames=("plan",), compiler_options=VECTOR_COMPILER_OPTIONS)
def _solve_batch(origin, base, axis_values, factor, plan: _FadingPlan) -> dict[str, jax.Array]:
    """The adaptive design at every (grid point of the chunk at ``origin``, draw of ``factor``) pair:
    log10 D̂* (+inf: no point meets the budgets, the convention of the reductions) and, unless
    ``reduce_only``, the Solution variables, each (padded chunk, batch). The instances are flat (the
    draw fastest) and sharded along the chunk's devices."""
    sharded = NamedSharding(plan.mesh, PartitionSpec("chunk"))
    points = padded_points(plan.block, plan.mesh)
    instance = jax.lax.with_sharding_constraint(jnp.arange(points * plan.batch), sharded)
    problem = block_problem(origin, base, axis_values, instance // plan.batch, plan.shape, plan.block)
    gain = channel_gain(problem.system) * factor[instance % plan.batch].astype(problem.budget.delay_s.dtype)
    solution = solve_in_blocks(with_channel_gain(problem, gain, validate=False), plan.scheme, plan.mesh)
    out = {_LOG10: jnp.where(found_point(solution.status), solution.log10_distortion_bound, jnp.inf)}
    if not plan.reduce_only:
        out |= {stored: getattr(solution, field) for field, (stored, *_) in SOLUTION_VARIABLES.items()}
        out[DRAWN_GAIN] = gain
    size = points * plan.batch
    out = {name: jnp.broadcast_to(v, (size,)).reshape(points, plan.batch) for name, v in out.items()}
    return jax.lax.with_sharding_constraint(out, sharded)


@functools.partial(jax.jit, static_argnames=("samples", "mesh"))
def _join(parts: list[dict], samples: int, mesh: Mesh) -> dict[str, jax.Array]:
    """The batches of a chunk joined along the draws and cut to ``samples``: (padded chunk, samples) each."""
    joined = {name: jnp.concatenate([p[name] for p in parts], axis=1)[:, :samples] for name in parts[0]}
    return jax.lax.with_sharding_constraint(joined, NamedSharding(mesh, PartitionSpec("chunk")))


def _reduce(joined: dict) -> dict:
    """The stored variables of one scheme's chunk, on the host (the writer thread): the reductions of log10
    D̂* per grid point (:func:`~laimco_jax.outage.adaptive_reductions` in numpy: the order statistics by a
    partition, O(N), where XLA's sort on a CPU took as long as a third of the solve) and the per-draw
    Solution variables as they are."""
    rest = {name: value for name, value in joined.items() if name != _LOG10}
    return rest | adaptive_reductions(np.asarray(joined[_LOG10]))


def fading_evaluator(spec: SweepSpec, layout: ChunkLayout, mesh: Mesh, dtype) -> ChunkEvaluator:
    """The chunk evaluation of a fading sweep (module docstring): per scheme, the chunk's draws in batches
    of :func:`sample_batch`, joined (:func:`_join`), and reduced on the host in the writer thread (:func:`_reduce`). The draws are made once (float64) and serve every chunk."""
    draws = spec.fading
    base = replicate(spec.base, mesh, dtype)
    axis_values = replicate(tuple(dict(axis.values) for axis in spec.axes), mesh, dtype)
    batch = sample_batch(padded_points(layout.block, mesh), draws.samples)
    factors = replicate(_batch_factors(draws.fading, draws.seed, draws.samples, batch), mesh, jnp.float64)
    plans = [_FadingPlan(layout.shape, layout.block, scheme, mesh, batch, draws.reduce_only) for scheme in spec.schemes]

    def evaluate_plan(origin, plan: _FadingPlan) -> dict[str, jax.Array]:
        parts = [_solve_batch(origin, base, axis_values, factor, plan=plan) for factor in factors]
        return _join(parts, draws.samples, mesh=mesh)

    def evaluate(chunk: int) -> list[dict]:
        origin = chunk_origin(layout, chunk)
        return [evaluate_plan(origin, plan) for plan in plans]

    x64 = jax.config.jax_enable_x64  # the caller's setting, per thread: carried into the compile pool

    def compile_job(plan: _FadingPlan):
        def compile_plan():
            with jax.enable_x64(x64):
                return _solve_batch.lower(chunk_origin(layout, 0), base, axis_values, factors[0], plan=plan).compile()

        return compile_plan

    return ChunkEvaluator(evaluate, tuple(map(compile_job, plans)), _reduce)

