"""Chunk evaluation: the grid cut into chunks, one jitted function per scheme solving a chunk's
instances sharded over the local devices, and the best split reduced inside it."""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from laimco_jax.solvers import Status, solve_exact
from laimco_jax.solvers.batching import map_blocks
from laimco_jax.solvers.numerics import VECTOR_COMPILER_OPTIONS
from laimco_jax.sweep.schema import SOLUTION_VARIABLES, gradient_variable
from laimco_jax.sweep.spec import SweepSpec, configuration

#: Default most (P1) instances per chunk (fits a CPU's caches reasonably; use ~1e6 on a GPU).
DEFAULT_CHUNK_SIZE = 65536
#: Relative tolerance within which splits tie on retained parameters (the solver's gap tolerance).
BEST_SPLIT_RTOL = 1e-9


@dataclasses.dataclass(frozen=True)
class ChunkLayout:
    """The grid (``shape``) cut into hyper-rectangular chunks of ``block`` grid points (C order)."""

    shape: tuple[int, ...]
    block: tuple[int, ...]

    @property
    def chunk_grid(self) -> tuple[int, ...]:
        return tuple(-(-n // b) for n, b in zip(self.shape, self.block))

    @property
    def num_chunks(self) -> int:
        return math.prod(self.chunk_grid)

    @property
    def block_points(self) -> int:
        return math.prod(self.block)

    def region(self, chunk: int) -> tuple[slice, ...]:
        """The grid region of chunk number ``chunk`` (edge chunks are cut at the grid's end)."""
        index = np.unravel_index(chunk, self.chunk_grid) if self.shape else ()
        return tuple(slice(i * b, min((i + 1) * b, n)) for i, b, n in zip(index, self.block, self.shape))


def chunk_layout(shape: Sequence[int], max_points: int) -> ChunkLayout:
    """Chunks of at most ``max_points`` (at least one) grid points: whole along the innermost dims,
    then the next dim cut into equal pieces (so edge chunks waste little storage), then one.
    """
    block, room = [], max(1, int(max_points))
    for n in reversed(tuple(shape)):
        take = n if n <= room else -(-n // -(-n // room))
        block.append(take)
        room = room // n if take == n else 1
    return ChunkLayout(tuple(shape), tuple(reversed(block)))


def best_split(status, retained_params, log10_bound, splits, rtol=BEST_SPLIT_RTOL):
    """Best split over the last axis: ``(best_split, best_log10_distortion_bound)``.

    The first split (a value of ``splits``) among OPTIMAL statuses whose ``retained_params`` is
    within ``rtol`` (relative) of the largest OPTIMAL one; -1 and NaN where no split is OPTIMAL.
    The tolerance makes ties (e.g. several splits that need no pruning) go to the smallest split
    rather than to rounding noise.
    """
    optimal = status == Status.OPTIMAL
    score = jnp.where(optimal, retained_params, -jnp.inf)
    best_value = jnp.max(score, axis=-1, keepdims=True)
    index = jnp.argmax(optimal & (score >= best_value * (1.0 - rtol)), axis=-1)
    found = jnp.any(optimal, axis=-1)
    at_best = jnp.take_along_axis(log10_bound, index[..., None], axis=-1)[..., 0]
    return (
        jnp.where(found, jnp.asarray(splits, jnp.int32)[index], -1),
        jnp.where(found, at_best, jnp.nan),
    )


class _Plan(NamedTuple):
    """The static structure of one scheme's chunk computation (the jit cache key, with the inputs' structure).

    One compiled function per scheme: compile time grows linearly in the schemes swept, and a
    persistent compilation cache serves any later sweep that includes the scheme.
    """

    shape: tuple[int, ...]  # grid shape
    block: tuple[int, ...]  # chunk shape
    scheme: str
    splits: tuple[int, ...] | None
    mesh: Mesh  # local devices, one axis "chunk"
    gradients: tuple[tuple[str, str], ...] = ()

    @property
    def padded_points(self) -> int:
        return padded_points(self.block, self.mesh)


def padded_points(block: Sequence[int], mesh: Mesh) -> int:
    """Grid points of a block rounded up to a multiple of the device count."""
    return -(-math.prod(block) // mesh.size) * mesh.size


def grid_indices(origin, local, shape: Sequence[int], block: Sequence[int]) -> list[jax.Array]:
    """The index along each grid dim of the points ``local`` (flat in-block numbers, C order) of the
    block at grid index ``origin``; indices past the grid's end (edge blocks) are clamped to it."""
    return [
        jnp.minimum(origin[d] + local // math.prod(block[d + 1 :]) % block[d], shape[d] - 1)
        for d in range(len(shape))
    ]


def blocks_pay(mesh: Mesh) -> bool:
    """Whether a chunk is solved in cache-sized blocks: on one CPU device only. A chunk of 2·10⁵
    instances at once streams the solver's intermediates through a CPU's main memory; a chunk sharded
    over several devices is solved whole (blocks inside it would gather it), and so is one on an
    accelerator, whose kernels want the whole chunk (blocks would run them one after another)."""
    return mesh.size == 1 and mesh.devices.flat[0].platform == "cpu"


def solve_in_blocks(problem, scheme: str, mesh: Mesh):
    """``solve_exact`` of a chunk's flat instances, in blocks (``batching.map_blocks``) where
    :func:`blocks_pay`, else whole."""
    if not blocks_pay(mesh):
        return solve_exact(problem, scheme)
    return map_blocks(functools.partial(solve_exact, scheme=scheme), problem)


def _solve_scheme(problem, plan: _Plan) -> dict[str, jax.Array]:
    """Every stored variable for one scheme: Solution fields (chunk[, split]) and the best split (chunk).

    ``problem`` holds one instance per (grid point, split) pair, flat (the split fastest): one-dimensional
    arrays compile faster and run faster on CPU than (point, split) ones.
    """
    instances = plan.padded_points * len(plan.splits or (None,))
    shape = (plan.padded_points,) + (() if plan.splits is None else (len(plan.splits),))
    solution = solve_in_blocks(problem, plan.scheme, plan.mesh)
    values = {stored: getattr(solution, field) for field, (stored, *_) in SOLUTION_VARIABLES.items()}
    if plan.gradients:
        from laimco_jax.sensitivity import field_derivatives

        fields = tuple(dict.fromkeys(field for _, field in plan.gradients))
        derivatives = field_derivatives(problem, solution, plan.scheme, fields)
        for output, field in plan.gradients:
            values[gradient_variable(output, field)] = getattr(derivatives[field], output)
    out = {name: jnp.broadcast_to(v, (instances,)).reshape(shape) for name, v in values.items()}
    if plan.splits is None:
        return out
    best, best_log10 = best_split(out["status"], out["retained_params"], out["log10_distortion_bound"], plan.splits)
    return {**out, "best_split": best, "best_log10_distortion_bound": best_log10}


@functools.partial(jax.jit, static_argnames=("plan",), compiler_options=VECTOR_COMPILER_OPTIONS)
def _evaluate_chunk(origin, base, axis_values, split_values, plan: _Plan) -> dict[str, jax.Array]:
    """All variables of one scheme at the chunk at grid index ``origin``, sharded along the (padded) chunk axis.

    ``base`` is the configuration dict with array leaves, ``axis_values`` a tuple (one per grid dim)
    of ``{field: values}``, ``split_values`` ``{field: values (splits,)}``. Padding repeats the last
    grid point of the block (and is dropped on writing); edge blocks are clamped to the grid likewise.
    """
    sharded = NamedSharding(plan.mesh, PartitionSpec("chunk"))
    n_splits = len(plan.splits or (None,))
    instance = jax.lax.with_sharding_constraint(jnp.arange(plan.padded_points * n_splits), sharded)
    swept = {name: v[instance % n_splits] for name, v in split_values.items()}
    problem = block_problem(origin, base, axis_values, instance // n_splits, plan.shape, plan.block, swept)
    return jax.lax.with_sharding_constraint(_solve_scheme(problem, plan), sharded)


def block_problem(origin, base, axis_values, local, shape: Sequence[int], block: Sequence[int], swept=None):
    """The Problem at the grid points ``local`` (flat in-block numbers; those past the block repeat its last
    point) of the block at grid index ``origin``: ``base`` with each axis' fields gathered there, plus
    the values ``swept`` (e.g. a split's fields) already laid out like ``local``."""
    index = grid_indices(origin, jnp.minimum(local, math.prod(block) - 1), shape, block)
    values = dict(swept or {})
    for axis, at in zip(axis_values, index):
        values.update({name: v[at] for name, v in axis.items()})
    return configuration(base, values)


def local_mesh() -> Mesh:
    return Mesh(np.array(jax.local_devices()), ("chunk",))


class ChunkEvaluator(NamedTuple):
    """``evaluate(chunk)``: a dict of variables (padded chunk[, split]) per scheme, dispatched asynchronously;
    ``compile_jobs``: one callable per scheme that compiles its chunk function ahead of time (so that
    compiling can overlap preparing the store; a later ``evaluate`` reuses the compiled program);
    ``host`` (optional): applied to each of those dicts in the writer thread before it is written, for
    work better done on the host (the fading sweep's order statistics) without stalling the dispatch.
    """

    evaluate: Callable[[int], list[dict]]
    compile_jobs: tuple[Callable[[], Any], ...]
    host: Callable[[dict], dict] | None = None


def replicate(tree, mesh: Mesh, dtype):
    """``tree``'s leaves as arrays of ``dtype`` (floats; booleans stay booleans) replicated over ``mesh``."""
    replicated = NamedSharding(mesh, PartitionSpec())

    def cast(v):
        v = np.asarray(v)
        return v if v.dtype == bool else v.astype(dtype)

    return jax.device_put(jax.tree_util.tree_map(cast, tree), replicated)


def chunk_origin(layout: ChunkLayout, chunk: int) -> np.ndarray:
    """The grid index of chunk number ``chunk``'s first point."""
    return np.array([r.start for r in layout.region(chunk)], np.int32)


def chunk_evaluator(spec: SweepSpec, layout: ChunkLayout, mesh: Mesh, dtype) -> ChunkEvaluator:
    """The chunk evaluation of ``spec``. All values (base configuration, axes, splits) are arguments,
    so sweeps of the same structure share one compilation per scheme.
    """
    base = replicate(spec.base, mesh, dtype)
    axis_values = replicate(tuple(dict(axis.values) for axis in spec.axes), mesh, dtype)
    split_values = replicate(spec.split_values(), mesh, dtype)
    plans = [_Plan(layout.shape, layout.block, scheme, spec.splits, mesh, spec.gradients) for scheme in spec.schemes]

    compiled: dict[_Plan, Any] = {}  # filled by the compile jobs (before any evaluate, see the driver)

    def evaluate(chunk: int) -> list[dict]:
        args = (chunk_origin(layout, chunk), base, axis_values, split_values)
        return [compiled[plan](*args) if plan in compiled else _evaluate_chunk(*args, plan=plan) for plan in plans]

    x64 = jax.config.jax_enable_x64  # the caller's setting, per thread: carried into the compile pool

    def compile_job(plan: _Plan):
        def compile_plan():
            from laimco_jax.sweep.executables import compile_cached

            with jax.enable_x64(x64):
                compiled[plan] = compile_cached(_evaluate_chunk, (chunk_origin(layout, 0), base, axis_values, split_values),
                                                {"plan": plan}, list(mesh.devices.flat))
            return compiled[plan]

        return compile_plan

    return ChunkEvaluator(evaluate, tuple(map(compile_job, plans)))
