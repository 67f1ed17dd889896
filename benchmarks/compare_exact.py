"""Answers of ``solve_exact`` at a git revision against the working tree's, on the same random instances.

For every scheme and two instance mixes — ``random_problems(spread=10)`` and the wide mix of
tests/test_solver_reliability.py (half of it log-uniform over the validated ranges) — prints and
writes (``--out``, JSON) the status counts of both, every status change (``old->new``: count), the
largest certificate among OPTIMAL answers of each, and the largest difference in ρq + ρ̃s relative to
q + s where both are OPTIMAL. Instances are solved in blocks (``batching.map_blocks``), float64.

Usage: ``python benchmarks/compare_exact.py --baseline ee69fb3 --n 1000000 [--seed 21]``.
"""

from __future__ import annotations

import argparse
import functools
import importlib
import json
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

jax.config.update("jax_enable_x64", True)

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from bench_solvers import baseline_package  # noqa: E402
from test_solver_reliability import wide_problems  # noqa: E402

from laimco_jax.solvers import SCHEMES, solve_exact  # noqa: E402
from laimco_jax.solvers.batching import map_blocks  # noqa: E402
from laimco_jax.solvers.instances import random_problems  # noqa: E402
from laimco_jax.solvers.numerics import VECTOR_COMPILER_OPTIONS  # noqa: E402


def chunked(solver, scheme: str, chunk: int):
    """``solver`` for ``scheme`` over a batch in blocks of ``chunk`` (``batching.map_blocks``)."""
    solve = functools.partial(solver, scheme=scheme)
    return jax.jit(lambda problem: map_blocks(solve, problem, chunk), compiler_options=VECTOR_COMPILER_OPTIONS)


def compare(old, new, problem) -> dict:
    """Status counts, status changes, largest OPTIMAL certificates and largest relative difference."""
    total = np.asarray(problem.model.params_device + problem.model.params_server)
    s_old, s_new = np.asarray(old.status), np.asarray(new.status)
    both = (s_old == 0) & (s_new == 0)
    diff = np.abs(np.asarray(old.retained_params) - np.asarray(new.retained_params)) / total
    pairs, counts = np.unique(np.stack([s_old, s_new])[:, s_old != s_new], axis=1, return_counts=True)
    return {
        "old": np.bincount(s_old, minlength=4).tolist(),
        "new": np.bincount(s_new, minlength=4).tolist(),
        "changed": {f"{a}->{b}": int(c) for (a, b), c in zip(pairs.T, counts)},
        "max_certificate_optimal_old": float(np.asarray(old.certificate)[s_old == 0].max(initial=0.0)),
        "max_certificate_optimal_new": float(np.asarray(new.certificate)[s_new == 0].max(initial=0.0)),
        "max_relative_difference_both_optimal": float(diff[both].max(initial=0.0)),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--baseline", required=True, help="git revision of the old solver")
    parser.add_argument("--n", type=int, default=1_000_000, help="instances per mix")
    parser.add_argument("--seed", type=int, default=21)
    parser.add_argument("--chunk", type=int, default=10_000)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/compare_exact.json"))
    args = parser.parse_args()

    old_solver = importlib.import_module(f"{baseline_package(args.baseline)}.solvers").solve_exact
    mixes = {
        "spread10": random_problems(args.n, seed=args.seed, spread=10.0),
        "wide": jax.tree_util.tree_map(jnp.asarray, wide_problems(args.n, seed=args.seed + 1)),
    }
    report = {"baseline": args.baseline, "n": args.n, "seed": args.seed, "results": {}}
    for mix, problem in mixes.items():
        for scheme in SCHEMES:
            old = chunked(old_solver, scheme, args.chunk)(problem)
            new = chunked(solve_exact, scheme, args.chunk)(problem)
            report["results"][f"{mix}/{scheme}"] = result = compare(old, new, problem)
            print(f"{mix:8s} {scheme:20s} {json.dumps(result)}", flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
