"""Fading Monte Carlo throughput: draws/s of ``outage.monte_carlo`` against the plain exact solver's
instances/s on the same gains, in the same run.

The Monte Carlo per draw: a gain factor |h|² drawn with ``jax.random`` (its key folded from the seed
and the draw index), the adaptive design (``solve_exact`` at g·|h|²), the static design's budget check
at that gain, the transfer to the host and the reductions (``outage.summarize``). The plain solver gets
the same gains as a ready batched ``Problem`` and solves it chunk by chunk (the same chunk size, so
both run the same compiled solve). The overhead of sampling, checks and reductions is
``monte_carlo_s / solve_s − 1`` (target: below 0.30). Timings are the best of ``--repeats`` after a
warm-up call that compiles.

Usage: ``python benchmarks/bench_fading.py [--samples 200000] [--chunk 16384] [--fading rayleigh]
[--out benchmarks/results/bench_fading.json]``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

jax.config.update("jax_enable_x64", True)

from laimco_jax import make_problem  # noqa: E402
from laimco_jax.fading import parse_fading  # noqa: E402
from laimco_jax.outage import monte_carlo, summarize, with_channel_gain  # noqa: E402
from laimco_jax.solvers import solve_exact  # noqa: E402
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

    solve_s = best_of(run_solver, args.repeats)
    monte_carlo_s = best_of(run_monte_carlo, args.repeats)
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
        "summary": run_monte_carlo(),
    }
    print(f"plain exact solver: {report['solver_instances_per_s']:.4g} instances/s ({solve_s:.3f} s)")
    print(f"fading Monte Carlo: {report['monte_carlo_draws_per_s']:.4g} draws/s ({monte_carlo_s:.3f} s)")
    print(f"sampling, static checks and reductions: {100 * report['overhead']:+.1f} % on top of the solve "
          f"(target < 30 %)")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2, default=float))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
