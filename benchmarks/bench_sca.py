"""The JAX SCA (``solve_sca``) against the CVXPY SCA loop and against itself at an older revision (issue 17, target 2).

On each instance mix -- ``random_problems(n, seed, spread=3)`` (default) and ``spread=10`` (wide) -- in
one run and one process:

* CVXPY + Clarabel seconds per instance of the paper's SCA loop (``reference.solve_cvxpy_sca``), the
  median over the first ``--cvxpy-instances`` instances of the mix that ``solve_exact`` finds
  feasible (as ``bench_solvers.py`` does: an infeasible instance costs CVXPY no SCA iteration);
* instances/s of ``solve_sca`` of the working tree ("after") and of ``--baseline`` ("before",
  imported under another name by ``bench_solvers.baseline_package``; "after" compiled with
  ``numerics.VECTOR_COMPILER_OPTIONS``, "before" with XLA's defaults), timed in turns on the same
  batch of each size of ``--sizes`` after compilation (best of ``--repeats``), and of "after" on a
  batch of feasible instances only — set beside CVXPY's median and its mean over feasible instances
  (the mean is its time per instance of a batch: the like-for-like ratio, since iterations per instance
  are heavy-tailed, 3 to 50), with its own stopping rule (ε = 1e-9 bits, at most 100 iterations) and
  with the CVXPY loop's (``reference.DEFAULT_SCA_EPS`` = 1e-6, ``DEFAULT_SCA_MAX_ITERS`` = 50:
  "after_cvxpy_settings", the same algorithm with the same settings);
* the ratios JAX-SCA/CVXPY-SCA (instances/s times CVXPY seconds per instance) before and after, and
  after with the batch split over every CPU core (``solvers.batching.map_devices``; CVXPY uses one);
* at the largest batch, before and after: status counts, SCA iterations of the feasible instances
  (mean, max), and the shortfall against ``solve_exact``'s optimum, (retained_exact - retained_sca)/(q + s)
  over the instances it solves to OPTIMAL (median, max, fraction above 1e-6); and of "after" with the
  CVXPY loop's stopping rule.

Usage: ``python benchmarks/bench_sca.py [--out benchmarks/results/bench_sca.json] [--baseline f91bde0]
[--sizes 100,10000] [--repeats 3] [--cvxpy-instances 12]``.
"""

from __future__ import annotations

import argparse
import functools
import importlib
import json
import os
import platform
import subprocess
import sys
from pathlib import Path

import jax
import numpy as np

jax.config.update("jax_enable_x64", True)

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_solvers import REPO, baseline_package, interleaved, take  # noqa: E402

from laimco_jax import reference  # noqa: E402
from laimco_jax.solvers import Status, solve_exact  # noqa: E402
from laimco_jax.solvers.batching import map_devices, use_cpu_cores  # noqa: E402
from laimco_jax.solvers.numerics import VECTOR_COMPILER_OPTIONS  # noqa: E402
from laimco_jax.solvers.instances import random_problems  # noqa: E402
from laimco_jax.solvers.sca import solve_sca  # noqa: E402

MIXES = (("default", 3.0), ("wide", 10.0))


def quality(problem, sca, exact) -> dict:
    """Statuses, iterations and shortfall against the exact optimum of one SCA answer."""
    status, exact_status = np.asarray(sca.status), np.asarray(exact.status)
    total = np.asarray(problem.model.params_device + problem.model.params_server)
    shortfall = ((np.asarray(exact.retained_params) - np.asarray(sca.retained_params)) / total)[exact_status == Status.OPTIMAL]
    iterations = np.asarray(sca.iterations)[status != Status.INFEASIBLE]
    return {
        "statuses": {Status(int(k)).name: int(v) for k, v in zip(*np.unique(status, return_counts=True))},
        "iterations_mean": float(iterations.mean()),
        "iterations_max": int(iterations.max()),
        "shortfall_median": float(np.median(shortfall)),
        "shortfall_max": float(shortfall.max()),
        "shortfall_fraction_above_1e-6": float(np.mean(shortfall > 1e-6)),
        "shortfall_count": int(shortfall.size),
    }


def cvxpy_seconds(problem, exact, count: int) -> dict:
    """Seconds per instance of the CVXPY SCA loop on the first ``count`` feasible instances."""
    seconds, iterations = [], []
    for i in np.flatnonzero(np.asarray(exact.status) != Status.INFEASIBLE)[:count]:
        one = jax.tree_util.tree_map(lambda x: float(np.asarray(x)[i]), problem)
        result = reference.solve_cvxpy_sca(one)
        seconds.append(result.seconds)
        iterations.append(int(result.solution.iterations))
    return {"median_s": float(np.median(seconds)), "mean_s": float(np.mean(seconds)), "seconds": seconds,
            "iterations": iterations}


# The JAX SCA with the CVXPY loop's stopping rule (ε = 1e-6 bits, at most 50 iterations; its own defaults
# are 1e-9 and 100): the same algorithm with the same settings.
cvxpy_settings = functools.partial(solve_sca, eps=reference.DEFAULT_SCA_EPS, max_iters=reference.DEFAULT_SCA_MAX_ITERS)


def feasible_batch(n: int, spread: float):
    """``n`` instances of the mix that ``solve_exact`` finds feasible (from seed 1's stream)."""
    pool = random_problems(2 * n, seed=1, spread=spread)
    keep = np.flatnonzero(np.asarray(solve_exact(pool).status) != Status.INFEASIBLE)[:n]
    return take(pool, keep)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/bench_sca.json"))
    parser.add_argument("--baseline", default="f91bde0",
                        help="git revision whose solve_sca is 'before' (default: the augmented-Lagrangian SCA)")
    parser.add_argument("--cpu-devices", type=int, default=None,
                        help="CPU devices (cores) for the all-device figure (default: every core this process may use)")
    parser.add_argument("--sizes", default="100,10000")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--cvxpy-instances", type=int, default=12)
    args = parser.parse_args()
    use_cpu_cores(args.cpu_devices)  # before the first computation
    sizes = [int(float(s)) for s in args.sizes.split(",")]
    package = baseline_package(args.baseline)
    before, after = importlib.import_module(f"{package}.solvers.sca").solve_sca, solve_sca
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True).stdout.strip()
    report: dict = {
        "machine": f"{platform.processor() or platform.machine()}, {jax.default_backend()}, {os.cpu_count()} CPU cores",
        "jax": jax.__version__, "after": f"working tree at {commit}", "before": f"{args.baseline} ({package})", "mixes": {},
    }
    for mix, spread in MIXES:
        pool = random_problems(max(sizes), seed=0, spread=spread)
        exact = solve_exact(pool)
        cvx = cvxpy_seconds(pool, exact, args.cvxpy_instances)
        out: dict = {"spread": spread, "cvxpy_sca": cvx, "throughput": []}
        print(f"[{mix} mix, spread {spread}] CVXPY SCA: {cvx['median_s'] * 1e3:.1f} ms per feasible instance "
              f"(median of {len(cvx['seconds'])}; iterations {cvx['iterations']})", flush=True)
        for n in sizes:
            problem = take(pool, slice(0, n))
            solvers = {"before": jax.jit(before), "after": jax.jit(solve_sca, compiler_options=VECTOR_COMPILER_OPTIONS)}
            if jax.device_count() > 1:  # the batch split over every CPU core (solvers.batching)
                solvers["after_all_devices"] = jax.jit(lambda q: map_devices(solve_sca, q), compiler_options=VECTOR_COMPILER_OPTIONS)
            rates = interleaved(solvers, problem, args.repeats)
            row = {"batch": n, **{f"{k}_instances_per_s": v for k, v in rates.items()},
                   "speedup": rates["after"] / rates["before"],
                   **{f"{k}_vs_cvxpy": v * cvx["median_s"] for k, v in rates.items()}}
            out["throughput"].append(row)
            every = (f"; on {jax.device_count()} devices {rates['after_all_devices']:8.0f} inst/s "
                     f"({row['after_all_devices_vs_cvxpy']:.0f}x)" if "after_all_devices" in rates else "")
            print(f"  batch {n:>6}: before {rates['before']:8.0f} inst/s -> after {rates['after']:8.0f} inst/s "
                  f"(x{row['speedup']:.1f}); vs CVXPY SCA: {row['before_vs_cvxpy']:.0f}x -> {row['after_vs_cvxpy']:.0f}x"
                  f"{every}", flush=True)
        feasible = feasible_batch(max(sizes), spread)
        solvers = {}
        for name, solver in (("after", solve_sca), ("after_cvxpy_settings", cvxpy_settings)):
            solvers[name] = jax.jit(solver, compiler_options=VECTOR_COMPILER_OPTIONS)
            if jax.device_count() > 1:
                solvers[f"{name}_all_devices"] = jax.jit(lambda q, f=solver: map_devices(f, q),
                                                         compiler_options=VECTOR_COMPILER_OPTIONS)
        rates = interleaved(solvers, feasible, args.repeats)
        # like for like: CVXPY's mean over feasible instances is its time per instance of a batch of them
        out["after_feasible_only"] = {"batch": max(sizes), **{
            f"{k}_{field}": v for k, rate in rates.items() for field, v in
            (("instances_per_s", rate), ("vs_cvxpy", rate * cvx["median_s"]), ("vs_cvxpy_mean", rate * cvx["mean_s"]))}}
        for k, rate in rates.items():
            print(f"  batch {max(sizes):>6} of feasible instances only, {k}: {rate:8.0f} inst/s; vs CVXPY SCA "
                  f"{rate * cvx['median_s']:.0f}x its median, {rate * cvx['mean_s']:.0f}x its mean "
                  f"({cvx['mean_s'] * 1e3:.1f} ms)", flush=True)
        out["quality"] = {k: quality(pool, f(pool), exact)
                          for k, f in (("before", before), ("after", after), ("after_cvxpy_settings", cvxpy_settings))}
        for k, q in out["quality"].items():
            print(f"  {k:>6} (batch {max(sizes)}): statuses {q['statuses']}; iterations mean {q['iterations_mean']:.2f} "
                  f"max {q['iterations_max']}; shortfall median {q['shortfall_median']:.2e} max {q['shortfall_max']:.2e} "
                  f"fraction > 1e-6 {q['shortfall_fraction_above_1e-6']:.4f}", flush=True)
        report["mixes"][mix] = out
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
