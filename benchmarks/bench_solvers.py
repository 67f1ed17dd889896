"""Solver throughput and agreement: the exact JAX solver, the JAX SCA and CVXPY, on the same instances.

Prints a summary and writes JSON (``--out``). All figures come from one run on one machine:

* instances/s of ``solve_exact`` and ``solve_sca`` at batch sizes 1, 1e2, 1e4, 1e6 after compilation
  (best of ``--repeats``), and their compile times;
* CVXPY + Clarabel seconds per instance, exact convex form and the paper's SCA loop as printed;
* agreement of the exact solver with CVXPY's exact form (feasibility verdicts, relative difference in
  ρq + ρ̃s), and how often and by how much the SCA (JAX and CVXPY) falls short of the global optimum;
* the speed-up ratios exact-vs-CVXPY-exact and JAX-SCA-vs-CVXPY-SCA.

Usage: ``python benchmarks/bench_solvers.py [--out benchmarks/results/bench_solvers.json]``.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

jax.config.update("jax_enable_x64", True)

from laimco_jax.params import Problem  # noqa: E402
from laimco_jax.solvers import Status, solve_exact  # noqa: E402
from laimco_jax.solvers.instances import random_problems  # noqa: E402
from laimco_jax.solvers.sca import solve_sca  # noqa: E402


def take(problem: Problem, idx) -> Problem:
    return jax.tree_util.tree_map(lambda x: jnp.asarray(np.asarray(x)[idx]), problem)


def throughput(fn, problem: Problem, repeats: int) -> dict:
    """Compile time and best steady-state instances/s of ``fn`` on a batched problem."""
    n = int(np.size(problem.budget.delay_s))
    start = time.perf_counter()
    jax.block_until_ready(fn(problem))
    first = time.perf_counter() - start
    best = np.inf
    for _ in range(repeats):
        start = time.perf_counter()
        jax.block_until_ready(fn(problem))
        best = min(best, time.perf_counter() - start)
    return {"batch": n, "first_call_s": first, "steady_s": best, "instances_per_s": n / best}


def chunked(solver, chunk: int):
    """Solve a batch as a lax.map over chunks (cache-sized working set, memory linear in the batch)."""

    @jax.jit
    def run(problem):
        n = problem.budget.delay_s.shape[0]
        blocks = jax.tree_util.tree_map(lambda x: x.reshape(n // chunk, chunk), problem)
        return jax.lax.map(solver, blocks)

    return run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/bench_solvers.json"))
    parser.add_argument("--sizes", default="1,100,10000,1000000")
    parser.add_argument("--sca-sizes", default="1,100,10000")
    parser.add_argument("--cvxpy-instances", type=int, default=40)
    parser.add_argument("--cvxpy-sca-instances", type=int, default=10)
    parser.add_argument("--chunk", type=int, default=10_000)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    report: dict = {"machine": f"{platform.processor() or platform.machine()}, {jax.device_count()} "
                               f"{jax.default_backend()} device(s), {__import__('os').cpu_count()} CPU cores",
                    "jax": jax.__version__}
    sizes = [int(float(s)) for s in args.sizes.split(",")]
    pool = random_problems(max(sizes), seed=0)

    exact = []
    for n in sizes:
        problem = take(pool, slice(0, n))
        fn = chunked(solve_exact, args.chunk) if n > args.chunk and n % args.chunk == 0 else solve_exact
        exact.append(throughput(fn, problem, args.repeats))
        print(f"exact  batch {n:>8}: {exact[-1]['instances_per_s']:.3g} inst/s (first call {exact[-1]['first_call_s']:.1f} s)")
    report["exact"] = exact

    sca = []
    for n in [int(float(s)) for s in args.sca_sizes.split(",")]:
        sca.append(throughput(solve_sca, take(pool, slice(0, n)), 1))
        print(f"sca    batch {n:>8}: {sca[-1]['instances_per_s']:.3g} inst/s (first call {sca[-1]['first_call_s']:.1f} s)")
    report["sca"] = sca

    from laimco_jax import reference

    m = args.cvxpy_instances
    small = take(pool, slice(0, m))
    ours = solve_exact(small)
    ours_sca = solve_sca(take(pool, slice(0, args.cvxpy_sca_instances)))
    cvx_times, cvx_sca_times, rel_diffs, verdict_mismatch = [], [], [], 0
    cvx_sca_short, jax_sca_short = [], []
    for i in range(m):
        one = jax.tree_util.tree_map(lambda x: float(np.asarray(x)[i]), small)
        ref = reference.solve_cvxpy_exact(one)
        cvx_times.append(ref.seconds)
        ours_feasible = int(ours.status[i]) != Status.INFEASIBLE
        ref_feasible = int(ref.solution.status) != Status.INFEASIBLE
        verdict_mismatch += ours_feasible != ref_feasible
        total = one.model.params_device + one.model.params_server
        if ours_feasible and ref_feasible:
            rel_diffs.append(abs(float(ours.retained_params[i]) - float(ref.solution.retained_params)) / total)
        if i < args.cvxpy_sca_instances and ours_feasible:
            ref_sca = reference.solve_cvxpy_sca(one)
            cvx_sca_times.append(ref_sca.seconds)
            if int(ref_sca.solution.status) != Status.INFEASIBLE:
                cvx_sca_short.append((float(ours.retained_params[i]) - float(ref_sca.solution.retained_params)) / total)
            jax_sca_short.append((float(ours.retained_params[i]) - float(ours_sca.retained_params[i])) / total)

    def stats(values):
        v = np.asarray(values, float)
        return {"count": int(v.size), "max": float(v.max(initial=0.0)), "median": float(np.median(v)) if v.size else 0.0,
                "fraction_above_1e-6": float(np.mean(v > 1e-6)) if v.size else 0.0}

    report["cvxpy"] = {
        "exact_seconds_per_instance": float(np.median(cvx_times)),
        "sca_seconds_per_instance": float(np.median(cvx_sca_times)) if cvx_sca_times else None,
        "instances": m,
    }
    report["agreement"] = {
        "feasibility_mismatches": int(verdict_mismatch),
        "relative_difference_retained_params": stats(rel_diffs),
        "cvxpy_sca_shortfall_vs_exact": stats(cvx_sca_short),
        "jax_sca_shortfall_vs_exact": stats(jax_sca_short),
    }
    best_exact = max(r["instances_per_s"] for r in exact)
    best_sca = max(r["instances_per_s"] for r in sca)
    report["ratios"] = {
        "exact_vs_cvxpy_exact": best_exact * report["cvxpy"]["exact_seconds_per_instance"],
        "jax_sca_vs_cvxpy_sca": best_sca * report["cvxpy"]["sca_seconds_per_instance"]
        if report["cvxpy"]["sca_seconds_per_instance"] else None,
    }
    print(json.dumps({k: report[k] for k in ("cvxpy", "agreement", "ratios")}, indent=2))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
