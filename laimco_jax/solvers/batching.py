"""Large batches: a solver over cache-sized blocks, and over every local device.

The solvers (:func:`~laimco_jax.solvers.exact.solve_exact`, :func:`~laimco_jax.solvers.sca.solve_sca`)
are elementwise over their batch, so a batch can be cut anywhere without changing an answer. Two
cuts make a large batch faster (docs/performance.md, "Large batches: blocks and cores"):

* **Blocks** (:func:`map_blocks`): the batch flattened and solved ``block`` instances at a time in
  a loop that writes each block's answers in place. On XLA CPU a solve of 10⁵ or more instances at
  once streams every intermediate through main memory; blocks of a few thousand keep them in one
  core's cache (a sweep solves a chunk on one CPU device in blocks: ``sweep.compute.solve_in_blocks``;
  an accelerator's kernels want the whole batch).
* **Devices** (:func:`map_devices`): the flat batch split evenly over a 1-D mesh of devices with
  ``shard_map``, each device looping over its own blocks. JAX creates a single CPU device unless
  asked (:func:`use_cpu_cores`, before JAX starts its backend); XLA then splits each large loop over
  the cores itself, which for these many short loops costs about as much as it gains. With one
  device per core each core solves its share (on this project's 2-core VM the exact solver runs
  1.5-1.6x as fast on two devices as on one in blocks of 4,096; the SCA 1.6-1.7x).

Compile the program that calls them with :data:`~laimco_jax.solvers.numerics.VECTOR_COMPILER_OPTIONS`
(``jax.jit(..., compiler_options=...)``) for the wide vectors of the CPU.

Both return what the solver returns on the whole batch: the same fields and shapes, and values
equal to their last ulps — XLA's
vector and scalar code for one expression may round differently, and which instances fall in a
vector loop's scalar tail (or, for a scalar leaf, are computed once as a scalar) depends on the
batch's layout (so an instance within an ulp of a verdict's threshold could change status; none did in
tests/test_batching.py). Both are traceable: call them inside ``jit``.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, PartitionSpec

from laimco_jax.solvers.numerics import broadcast_leaves

__all__ = ["DEFAULT_BLOCK", "map_blocks", "map_devices", "use_cpu_cores"]

DEFAULT_BLOCK = 4096  # instances per block: the exact solver's working set in one core's L2 cache (2 MiB)


def _flat(tree) -> tuple[Any, tuple[int, ...]]:
    """``tree``'s leaves broadcast to their common shape (:func:`broadcast_leaves`) and flattened; and that shape."""
    full = broadcast_leaves(tree)
    shape = jnp.shape(jax.tree_util.tree_leaves(full)[0])
    return jax.tree_util.tree_map(lambda v: v.reshape(-1), full), shape


def _pad(tree, size: int):
    """Flat leaves padded to ``size`` by repeating their last entry (a valid instance)."""
    return jax.tree_util.tree_map(lambda v: jnp.concatenate([v, jnp.repeat(v[-1:], size - v.shape[0])]), tree)


def _unflat(out, count: int, shape: tuple[int, ...]):
    """Outputs of a flat (padded) solve back to the batch ``shape``: the first ``count`` rows."""
    return jax.tree_util.tree_map(lambda v: v[:count].reshape(shape + v.shape[1:]), out)


def map_blocks(solver: Callable, tree, block: int = DEFAULT_BLOCK):
    """``solver(tree)``, computed ``block`` instances at a time in a ``fori_loop``.

    The batch is cut into the fewest blocks of at most ``block`` instances, all of one size; each is
    sliced from the flat batch and its answers written in place into the outputs, and the last one
    ends at the batch's end, overlapping its neighbour by fewer instances than there are blocks (those
    are solved twice), so no padded copy of the batch is made.

    Args:
      solver: a function of one batched pytree (e.g. ``functools.partial(solve_exact, scheme=...)``)
        whose outputs have the batch's shape as their leading dims.
      tree: its argument, e.g. a :class:`~laimco_jax.params.Problem`; leaves broadcast to one batch shape.
      block: instances per block (static); a batch of at most ``block`` instances is solved directly.
    """
    if block < 1:
        raise ValueError(f"block = {block!r} must be an integer >= 1")
    flat, shape = _flat(tree)
    count = math.prod(shape)
    if count <= block:
        return _unflat(solver(flat), count, shape)

    blocks = -(-count // block)
    size = -(-count // blocks)  # equal blocks of at most ``block``: the last overlaps by fewer than ``blocks``

    def solve_block(index, out):
        start = jnp.minimum(index * size, count - size)
        part = jax.tree_util.tree_map(lambda v: jax.lax.dynamic_slice_in_dim(v, start, size), flat)
        return jax.tree_util.tree_map(lambda o, r: jax.lax.dynamic_update_slice_in_dim(o, r, start, 0), out, solver(part))

    shapes = jax.eval_shape(solver, jax.tree_util.tree_map(lambda v: v[:size], flat))
    out = jax.tree_util.tree_map(lambda s: jnp.zeros((count,) + s.shape[1:], s.dtype), shapes)
    return _unflat(jax.lax.fori_loop(0, blocks, solve_block, out), count, shape)


def map_devices(solver: Callable, tree, devices: Sequence[jax.Device] | None = None, block: int = DEFAULT_BLOCK):
    """``solver(tree)`` with the batch split evenly over ``devices`` (default: every local device),
    each device solving its share in blocks (:func:`map_blocks`). One device: :func:`map_blocks` alone."""
    devices = list(devices) if devices is not None else jax.local_devices()
    if len(devices) == 1:
        return map_blocks(solver, tree, block)
    mesh = Mesh(np.array(devices), ("batch",))
    flat, shape = _flat(tree)
    count = math.prod(shape)
    padded = _pad(flat, -(-count // mesh.size) * mesh.size)
    spec = PartitionSpec("batch")
    # no collectives: each device only maps over its own share (check_vma off: a solver's loop carries may start
    # from constants, which shard_map's type check would call replicated)
    solve = jax.shard_map(lambda part: map_blocks(solver, part, block), mesh=mesh, in_specs=spec, out_specs=spec,
                          check_vma=False)
    return _unflat(solve(padded), count, shape)


def use_cpu_cores(count: int | None = None) -> int:
    """Ask JAX for ``count`` CPU devices (default: the cores this process may use), so that
    :func:`map_devices` (and sweeps, which shard over the local devices) use every core.

    Sets the ``jax_num_cpu_devices`` option, which JAX reads once, when it starts its CPU backend:
    call this before the first computation (the benchmarks do; the ``laimco`` command keeps one device,
    docs/performance.md says why). Returns the number of CPU devices JAX will have. ValueError for a
    count below 1; RuntimeError if the backend already started with another count.
    """
    if count is None:  # the cores this process may run on (Linux), else all of them
        count = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    if count < 1:
        raise ValueError(f"count = {count!r} must be an integer >= 1")
    try:
        jax.config.update("jax_num_cpu_devices", count)
    except RuntimeError as error:  # the backend is running: fine if it already has that many
        have = len(jax.devices("cpu"))
        if have != count:
            raise RuntimeError(f"JAX's CPU backend already started with {have} device(s); call use_cpu_cores "
                               f"before the first computation to get {count}") from error
    return count
