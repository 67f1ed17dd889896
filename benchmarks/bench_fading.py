"""Fading Monte Carlo throughput: draws/s of ``outage.monte_carlo`` against the plain exact solver's
instances/s on the same gains, in the same run.

The Monte Carlo per draw: a gain factor |h|² drawn with ``jax.random`` (its key folded from the seed
and the draw index), the adaptive design (``solve_exact`` at g·|h|²), the static design's budget check
at that gain, the transfer to the host and the reductions (``outage.summarize``). The plain solver gets
the same gains as a ready batched ``Problem`` and solves it chunk by chunk (the same chunk size, so
both run the same compiled solve). The overhead of sampling, checks and reductions is
``monte_carlo_s / solve_s − 1`` (target: below 0.30). The fading sweep (``laimco sweep --grid
distance_m=100:135:P --fading MODEL --samples N --reduce-only``, :mod:`laimco_jax.sweep.fading`, P =
``--sweep-points``) solves the same draws at P distances, in batches of ``--chunk``, into a Zarr store of
the reductions alone: ``sweep_overhead`` is its time over P plain solves of the N gains, minus 1 (the
store, the draws and the reductions; per-instance solve costs differ little between the distances). Timings are the best of ``--repeats`` after a warm-up call that compiles.

Usage: ``python benchmarks/bench_fading.py [--samples 200000] [--chunk 16384] [--fading rayleigh]
[--out benchmarks/results/bench_fading.json]``.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import platform
import tempfile
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

jax.config.update("jax_enable_x64", True)

from laimco_jax import make_problem, sweep  # noqa: E402
from laimco_jax.fading import parse_fading  # noqa: E402
from laimco_jax.outage import monte_carlo, summarize, with_channel_gain  # noqa: E402
from laimco_jax.solvers import solve_exact  # noqa: E402
from laimco_jax.sweep import fading as sweep_fading  # noqa: E402
from laimco_jax.system import channel_gain  # noqa: E402


def best_of(fn, repeats: int) -> float:
    """Seconds of the fastest of ``repeats`` calls of ``fn`` after one warm-up (compiling) call."""
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=200_000)
    parser.add_argument("--chunk", type=int, default=16_384)
    parser.add_argument("--fading", default="rayleigh")
    parser.add_argument("--outage", type=float, default=0.05)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--sweep-points", type=int, default=8)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/bench_fading.json"))
    args = parser.parse_args()

    problem = make_problem(overrides={"distance_m": 100.0}).astype(jnp.float64)
    fading = parse_fading(args.fading)

    def run_monte_carlo():
        return summarize(monte_carlo(problem, fading, args.outage, samples=args.samples, seed=0,
                                     chunk_size=args.chunk))

    factor = monte_carlo(problem, fading, args.outage, samples=args.samples, seed=0, chunk_size=args.chunk).gain_factor
    pad = -args.samples % args.chunk  # the Monte Carlo pads its last chunk too
    gains = channel_gain(problem.system) * np.concatenate([factor, factor[:pad]])
    chunks = [with_channel_gain(problem, jnp.asarray(block), validate=False)
              for block in gains.reshape(-1, args.chunk)]

    def run_solver():
        return [jax.block_until_ready(solve_exact(chunk)) for chunk in chunks]

    spec = sweep.build_spec(grid={"distance_m": f"100:135:{args.sweep_points}"}, fading=args.fading, samples=args.samples, seed=0,
                            reduce_only=True)
    sweep_fading.SAMPLE_BATCH_INSTANCES = args.chunk  # the draws in batches of the plain solver's chunk
    stores = tempfile.TemporaryDirectory(prefix="bench-fading-sweep-")
    names = itertools.count()

    def run_sweep():
        return sweep.run_sweep(spec, Path(stores.name) / f"s{next(names)}.zarr", chunk_size=args.samples)

    solve_s = best_of(run_solver, args.repeats)
    monte_carlo_s = best_of(run_monte_carlo, args.repeats)
    sweep_s = best_of(run_sweep, args.repeats)
    stores.cleanup()
    report = {
        "machine": f"{platform.processor() or platform.machine()}, {jax.device_count()} {jax.default_backend()} "
                   f"device(s), {os.cpu_count()} CPU cores",
        "jax": jax.__version__,
        "fading": fading.name,
        "samples": args.samples,
        "chunk": args.chunk,
        "solve_s": solve_s,
        "solver_instances_per_s": args.samples / solve_s,
        "monte_carlo_s": monte_carlo_s,
        "monte_carlo_draws_per_s": args.samples / monte_carlo_s,
        "overhead": monte_carlo_s / solve_s - 1.0,
        "sweep_reduce_only_s": sweep_s,
        "sweep_points": args.sweep_points,
        "sweep_instances_per_s": args.sweep_points * args.samples / sweep_s,
        "sweep_overhead": sweep_s / (args.sweep_points * solve_s) - 1.0,
        "summary": run_monte_carlo(),
    }
    print(f"plain exact solver: {report['solver_instances_per_s']:.4g} instances/s ({solve_s:.3f} s)")
    print(f"fading Monte Carlo: {report['monte_carlo_draws_per_s']:.4g} draws/s ({monte_carlo_s:.3f} s)")
    print(f"sampling, static checks and reductions: {100 * report['overhead']:+.1f} % on top of the solve "
          f"(target < 30 %)")
    print(f"fading sweep (--reduce-only, {args.sweep_points} grid points): {report['sweep_instances_per_s']:.4g} "
          f"instances/s ({sweep_s:.3f} s, {100 * report['sweep_overhead']:+.1f} % on top of the solve)")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2, default=float))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
