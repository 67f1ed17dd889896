"""Solver throughput and agreement: the exact JAX solver, the JAX SCA and CVXPY, on the same instances.

Prints a summary and writes JSON (``--out``). All figures come from one run on one machine:

* instances/s of ``solve_exact`` and ``solve_sca`` at batch sizes 1, 1e2, 1e4, 1e6 after compilation
  (best of ``--repeats``), and their compile times;
* CVXPY + Clarabel seconds per instance, exact convex form and the paper's SCA loop as printed;
* agreement of the exact solver with CVXPY's exact form (feasibility verdicts, relative difference in
  ρq + ρ̃s), and how often and by how much the SCA (JAX and CVXPY) falls short of the global optimum;
* the speed-up ratios exact-vs-CVXPY-exact and JAX-SCA-vs-CVXPY-SCA, on the default instance mix
  (``random_problems(spread=3)``) and on the wide one (``spread=10``, issue 17), each against CVXPY's
  time on instances of the same mix;
* with ``--baseline REF`` (a git revision, e.g. ``main``): ``solve_exact`` of REF and of the working
  tree timed interleaved in this process on the same batch (before/after instances/s, one device each,
  and the working tree's on every CPU device), and the first call of each on new shapes, each in a
  fresh process (compile time; the median of ``--compile-repeats`` processes each, in turns);
* ``solve_exact`` in float32 on both mixes: throughput, and statuses and ρq + ρ̃s against float64's.

Large batches run in blocks of ``--chunk`` (``laimco_jax.solvers.batching.map_devices``) on one device,
and again on every device: on CPU the script asks JAX for one device per core (``--cpu-devices``), so
"one device" is one core (the figure to set beside CVXPY, which solves on one core) and "all devices"
is the whole machine.

Usage: ``python benchmarks/bench_solvers.py [--out benchmarks/results/bench_solvers.json] [--baseline main]
[--dispatch loop]``.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import platform
import re
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from io import BytesIO
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

jax.config.update("jax_enable_x64", True)

from laimco_jax.params import Problem  # noqa: E402
from laimco_jax.solvers import Status, found_point, solve_exact  # noqa: E402
from laimco_jax.solvers.batching import DEFAULT_BLOCK, map_devices, use_cpu_cores  # noqa: E402
from laimco_jax.solvers.instances import random_problems  # noqa: E402
from laimco_jax.solvers.numerics import VECTOR_COMPILER_OPTIONS  # noqa: E402
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


DISPATCH = "map"  # set by --dispatch


def chunked(solver, chunk: int, devices=None, options=VECTOR_COMPILER_OPTIONS):
    """Solve a batch in blocks of ``chunk`` instances (cache-sized working set, memory linear in the
    batch): ``map_devices`` — the batch split over ``devices`` (default: the first device only), each
    looping over its blocks inside one program (``--dispatch map``) — or one jitted call per chunk
    from Python on one device, as a sweep runs its chunks (``--dispatch loop``). Compiled with the
    XLA ``options`` (default: the solvers' :data:`VECTOR_COMPILER_OPTIONS`, as laimco's own programs)."""
    devices = devices or jax.local_devices()[:1]
    if DISPATCH == "loop":
        solve = jax.jit(solver, compiler_options=options)

        def run_loop(problem):
            n = problem.budget.delay_s.shape[0]
            return [solve(jax.tree_util.tree_map(lambda x: x[i:i + chunk], problem)) for i in range(0, n, chunk)]

        return run_loop
    return jax.jit(lambda problem: map_devices(solver, problem, devices, block=chunk), compiler_options=options)


REPO = Path(__file__).resolve().parent.parent


def baseline_package(ref: str) -> str:
    """Import laimco_jax as it is at git revision ``ref`` under the name ``laimco_jax_<hash>`` (its
    files extracted to a temporary folder, ``laimco_jax`` renamed in their imports), for timing the
    old solver beside the new one in one process. Returns the package name."""
    commit = subprocess.run(["git", "rev-parse", "--short", ref], cwd=REPO, check=True, capture_output=True,
                            text=True).stdout.strip()
    name = f"laimco_jax_{commit}"
    if name not in sys.modules:
        archive = subprocess.run(["git", "archive", commit, "laimco_jax"], cwd=REPO, check=True, capture_output=True).stdout
        root = Path(tempfile.mkdtemp(prefix="laimco_baseline_"))
        with tarfile.open(fileobj=BytesIO(archive)) as tar:
            tar.extractall(root, filter="data")
        (root / "laimco_jax").rename(root / name)
        for path in (root / name).rglob("*.py"):
            path.write_text(re.sub(r"\blaimco_jax\b", name, path.read_text()))
        sys.path.insert(0, str(root))
    importlib.import_module(name)
    return name


def interleaved(fns: dict, problem: Problem, repeats: int) -> dict:
    """Best steady-state instances/s of each function, timed in turns on the same batch (a loaded
    machine then slows them alike, and their ratio stays meaningful)."""
    n = int(np.size(problem.budget.delay_s))
    for fn in fns.values():
        jax.block_until_ready(fn(problem))
    best = {k: np.inf for k in fns}
    for _ in range(repeats):
        for k, fn in fns.items():
            start = time.perf_counter()
            jax.block_until_ready(fn(problem))
            best[k] = min(best[k], time.perf_counter() - start)
    return {k: n / t for k, t in best.items()}


_COMPILE_PROBE = """
import sys, time, jax
jax.config.update("jax_enable_x64", True)
sys.path[:0] = {path!r}
from {package}.solvers import solve_exact
from laimco_jax.solvers.instances import random_problems
problem = jax.tree_util.tree_map(lambda x: x.reshape({shape!r}), random_problems({size}, seed=1))
start = time.perf_counter()
jax.block_until_ready(solve_exact(problem, {scheme!r}))
print(time.perf_counter() - start)
"""


def _probe_path() -> list[str]:
    """``sys.path`` entries a probe subprocess needs: the extracted baselines and this checkout."""
    return [p for p in sys.path if "laimco_baseline_" in p] + [str(REPO)]


def compile_seconds(package: str, shape: tuple, scheme: str = "proposed") -> float:
    """Seconds of the first ``solve_exact`` call on a batch of ``shape`` in a fresh Python process
    (tracing, compiling and one solve of an instance batch that small: the time a user waits)."""
    path = _probe_path()
    size = int(np.prod(shape))
    code = _COMPILE_PROBE.format(path=path, package=package, shape=shape, size=size, scheme=scheme)
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, check=True, capture_output=True, text=True).stdout
    return float(out.split()[-1])


_ONE_CORE_PROBE = """
import os
if {core} is not None:
    os.sched_setaffinity(0, {{{core}}})  # before JAX starts: its CPU client then sizes its thread pool to one core
import json, sys, time, jax
jax.config.update("jax_enable_x64", True)
sys.path[:0] = {path!r}
from laimco_jax.solvers.batching import map_blocks
from laimco_jax.solvers.instances import random_problems
problem = random_problems({size}, seed=0, spread={spread})
fns = {{name: jax.jit(lambda p, f=__import__(package + ".solvers", fromlist=["solve_exact"]).solve_exact: map_blocks(f, p, {chunk}),
                      compiler_options=options)
        for name, (package, options) in {packages!r}.items()}}
for fn in fns.values():
    jax.block_until_ready(fn(problem))
best = {{name: float("inf") for name in fns}}
for _ in range({repeats}):
    for name, fn in fns.items():
        start = time.perf_counter()
        jax.block_until_ready(fn(problem))
        best[name] = min(best[name], time.perf_counter() - start)
print(json.dumps({{name: {size} / t for name, t in best.items()}}))
"""


def one_core_rates(packages: dict, size: int, spread: float, chunk: int, repeats: int) -> dict:
    """instances/s of each package's ``solve_exact`` (timed in turns) in a process bound to one core,
    whose XLA therefore runs every kernel on that core alone: the figure to set beside CVXPY, which
    solves on one core. (In this process XLA splits large kernels over every core, so "one device"
    here is not one core.) ``packages``: name -> (importable package, XLA compiler options); the
    baseline is on ``sys.path``."""
    core = min(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None
    path = _probe_path()
    code = _ONE_CORE_PROBE.format(core=core, path=path, size=size, spread=spread, packages=packages, chunk=chunk,
                                  repeats=repeats)
    run = subprocess.run([sys.executable, "-c", code], cwd=REPO, check=True, capture_output=True, text=True)
    return json.loads(run.stdout.strip().splitlines()[-1])


def float32_accuracy(measure, problem: Problem, repeats: int, mix: str) -> dict:
    """``solve_exact`` in float32 on ``problem``: its throughput, and its answers against float64's — status
    pairs, and ρq + ρ̃s relative to q + s where both found a point (float32's certificate is 1000 ulps, 1.2e-4)."""
    as32 = jax.tree_util.tree_map(lambda x: x.astype(jnp.float32) if jnp.issubdtype(x.dtype, jnp.floating) else x, problem)
    out = measure(solve_exact, as32, repeats)
    wide, narrow = (chunked(solve_exact, DEFAULT_BLOCK)(q) for q in (problem, as32))
    pairs: dict = {}
    for a, b in zip(np.asarray(wide.status).ravel(), np.asarray(narrow.status).ravel()):
        key = f"{Status(int(a)).name}->{Status(int(b)).name}"
        pairs[key] = pairs.get(key, 0) + 1
    both = np.asarray(found_point(wide.status) & found_point(narrow.status))
    total = np.asarray(problem.model.params_device + problem.model.params_server, np.float64)
    rel = (np.abs(np.asarray(narrow.retained_params, np.float64) - np.asarray(wide.retained_params)) / total)[both]
    out.update(status_float64_to_float32=pairs, relative_difference_retained_params={
        "median": float(np.median(rel)), "p99": float(np.quantile(rel, 0.99)), "max": float(rel.max())})
    every = f", {out['instances_per_s_all_devices']:.3g} on {jax.device_count()} devices" if "instances_per_s_all_devices" in out else ""
    print(f"exact  float32 batch {out['batch']} ({mix} mix): {out['instances_per_s']:.3g} inst/s on one device{every}; statuses "
          f"{pairs}; retained params vs float64 median {np.median(rel):.1e}, max {rel.max():.1e}")
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/bench_solvers.json"))
    parser.add_argument("--sizes", default="1,100,10000,1000000")
    parser.add_argument("--sca-sizes", default="1,100,10000")
    parser.add_argument("--cvxpy-instances", type=int, default=40)
    parser.add_argument("--cvxpy-sca-instances", type=int, default=10)
    parser.add_argument("--chunk", type=int, default=DEFAULT_BLOCK)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--dispatch", choices=("map", "loop"), default="map",
                        help="large batches as a lax.map over chunks, or one jitted call per chunk")
    parser.add_argument("--cpu-devices", type=int, default=None,
                        help="CPU devices (cores) for the all-device figures (default: every core this process may use)")
    parser.add_argument("--baseline", default=None, help="git revision whose solve_exact is timed beside this one")
    parser.add_argument("--baseline-batch", type=int, default=1_000_000)
    parser.add_argument("--compile-shapes", default="1;1000;100000;10,1000",
                        help="batch shapes (';'-separated, ',' within a shape) for fresh-process compile times")
    parser.add_argument("--compile-repeats", type=int, default=3,
                        help="fresh processes per shape and solver for the first-call times (their median is reported)")
    args = parser.parse_args()
    if args.compile_repeats < 1:
        parser.error(f"--compile-repeats = {args.compile_repeats} must be at least 1")
    global DISPATCH
    DISPATCH = args.dispatch
    use_cpu_cores(args.cpu_devices)  # before the first computation; only the CPU backend reads it

    report: dict = {"machine": f"{platform.processor() or platform.machine()}, {jax.device_count()} "
                               f"{jax.default_backend()} device(s), {os.cpu_count()} CPU cores",
                    "jax": jax.__version__, "devices": jax.device_count()}
    sizes = [int(float(s)) for s in args.sizes.split(",")]
    pool = random_problems(max(sizes), seed=0)
    wide_pool = random_problems(max(sizes), seed=0, spread=10.0)  # the wide mix of issue 17

    def measure(solver, problem, repeats):
        """Throughput on one device, and on every device where there are several (large batches)."""
        n = problem.budget.delay_s.shape[0]
        large = n > args.chunk
        out = throughput(chunked(solver, args.chunk), problem, repeats)
        if large and jax.device_count() > 1 and DISPATCH == "map":
            every = throughput(chunked(solver, args.chunk, jax.local_devices()), problem, repeats)
            out["instances_per_s_all_devices"] = every["instances_per_s"]
        return out

    def show(label, r):
        every = f", {r['instances_per_s_all_devices']:.3g} on {jax.device_count()} devices" if "instances_per_s_all_devices" in r else ""
        print(f"{label}: {r['instances_per_s']:.3g} inst/s on one device{every} (first call {r['first_call_s']:.1f} s)")

    exact = []
    for n in sizes:
        exact.append(measure(solve_exact, take(pool, slice(0, n)), args.repeats))
        show(f"exact  batch {n:>8}", exact[-1])
    report["exact"] = exact
    report["exact_wide"] = measure(solve_exact, wide_pool, args.repeats)
    show(f"exact  batch {max(sizes):>8} (wide mix)", report["exact_wide"])
    report["exact_float32"] = {mix: float32_accuracy(measure, problem, args.repeats, mix)
                               for mix, problem in (("default", take(pool, slice(0, max(sizes)))), ("wide", wide_pool))}

    def measure_sca(problem):
        """The SCA's throughput on one device, and on every device for the largest batch."""
        out = throughput(jax.jit(solve_sca, compiler_options=VECTOR_COMPILER_OPTIONS), problem, args.repeats)
        if problem.budget.delay_s.shape[0] == max_sca and jax.device_count() > 1:
            every = throughput(jax.jit(lambda q: map_devices(solve_sca, q), compiler_options=VECTOR_COMPILER_OPTIONS),
                               problem, args.repeats)
            out["instances_per_s_all_devices"] = every["instances_per_s"]
        return out

    sca_sizes = [int(float(s)) for s in args.sca_sizes.split(",")]
    max_sca = max(sca_sizes)
    sca = []
    for n in sca_sizes:
        sca.append(measure_sca(take(pool, slice(0, n))))
        show(f"sca    batch {n:>8}", sca[-1])
    report["sca"] = sca
    report["sca_wide"] = measure_sca(take(wide_pool, slice(0, max_sca)))
    show(f"sca    batch {max_sca:>8} (wide mix)", report["sca_wide"])

    from laimco_jax import reference

    def one(pool_, i):
        return jax.tree_util.tree_map(lambda x: float(np.asarray(x)[i]), pool_)

    wide_times = [reference.solve_cvxpy_exact(one(wide_pool, i)).seconds for i in range(args.cvxpy_instances)]
    wide_exact = solve_exact(take(wide_pool, slice(0, args.cvxpy_sca_instances)))
    wide_sca_times = [reference.solve_cvxpy_sca(one(wide_pool, i)).seconds
                      for i in range(args.cvxpy_sca_instances) if int(wide_exact.status[i]) != Status.INFEASIBLE]

    m = args.cvxpy_instances
    small = take(pool, slice(0, m))
    ours = solve_exact(small)
    ours_sca = solve_sca(take(pool, slice(0, args.cvxpy_sca_instances)))
    cvx_times, cvx_sca_times, rel_diffs, verdict_mismatch = [], [], [], 0
    cvx_sca_short, jax_sca_short = [], []
    for i in range(m):
        inst = one(small, i)
        ref = reference.solve_cvxpy_exact(inst)
        cvx_times.append(ref.seconds)
        ours_feasible = int(ours.status[i]) != Status.INFEASIBLE
        ref_feasible = int(ref.solution.status) != Status.INFEASIBLE
        verdict_mismatch += ours_feasible != ref_feasible
        total = inst.model.params_device + inst.model.params_server
        if ours_feasible and ref_feasible:
            rel_diffs.append(abs(float(ours.retained_params[i]) - float(ref.solution.retained_params)) / total)
        if i < args.cvxpy_sca_instances and ours_feasible:
            ref_sca = reference.solve_cvxpy_sca(inst)
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
        "exact_seconds_per_instance_wide_mix": float(np.median(wide_times)),
        "sca_seconds_per_instance": float(np.median(cvx_sca_times)) if cvx_sca_times else None,
        "sca_seconds_per_instance_wide_mix": float(np.median(wide_sca_times)) if wide_sca_times else None,
        "instances": m,
    }
    report["agreement"] = {
        "feasibility_mismatches": int(verdict_mismatch),
        "relative_difference_retained_params": stats(rel_diffs),
        "cvxpy_sca_shortfall_vs_exact": stats(cvx_sca_short),
        "jax_sca_shortfall_vs_exact": stats(jax_sca_short),
    }
    cvx = report["cvxpy"]
    largest = max(exact, key=lambda r: r["batch"])
    ratios = {  # CVXPY solves one instance at a time in one process: "per core" compares one device with it
        "exact_vs_cvxpy_exact": max(r["instances_per_s"] for r in exact) * cvx["exact_seconds_per_instance"],
        "exact_vs_cvxpy_exact_wide_mix": report["exact_wide"]["instances_per_s"] * cvx["exact_seconds_per_instance_wide_mix"],
        "jax_sca_vs_cvxpy_sca": max(r["instances_per_s"] for r in sca) * cvx["sca_seconds_per_instance"]
        if cvx["sca_seconds_per_instance"] else None,
        "jax_sca_vs_cvxpy_sca_wide_mix": report["sca_wide"]["instances_per_s"] * cvx["sca_seconds_per_instance_wide_mix"]
        if cvx["sca_seconds_per_instance_wide_mix"] else None,
    }
    for key, rate, cvx_s in (("jax_sca_vs_cvxpy_sca_all_devices", sca[-1], cvx["sca_seconds_per_instance"]),
                             ("jax_sca_vs_cvxpy_sca_wide_mix_all_devices", report["sca_wide"],
                              cvx["sca_seconds_per_instance_wide_mix"])):
        if "instances_per_s_all_devices" in rate and cvx_s:
            ratios[key] = rate["instances_per_s_all_devices"] * cvx_s
    if "instances_per_s_all_devices" in largest:
        ratios["exact_vs_cvxpy_exact_all_devices"] = largest["instances_per_s_all_devices"] * cvx["exact_seconds_per_instance"]
        ratios["exact_vs_cvxpy_exact_wide_mix_all_devices"] = (report["exact_wide"]["instances_per_s_all_devices"]
                                                                * cvx["exact_seconds_per_instance_wide_mix"])
    report["ratios"] = ratios
    if args.baseline:
        report["baseline"] = before_after(args, sizes, report)
    print(json.dumps({k: report[k] for k in ("cvxpy", "agreement", "ratios", "baseline") if k in report}, indent=2))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2))
    print(f"wrote {args.out}")


def before_after(args, sizes, report) -> dict:
    """solve_exact of ``--baseline`` and of the working tree: instances/s timed in turns on both mixes,
    the ratios to CVXPY they imply, and fresh-process first-call (compile) times per shape."""
    package = baseline_package(args.baseline)
    old = importlib.import_module(f"{package}.solvers").solve_exact
    n = args.baseline_batch
    out = {"revision": args.baseline, "package": package, "batch": n, "mixes": {}}
    cvx = {"default": report["cvxpy"]["exact_seconds_per_instance"],
           "wide": report["cvxpy"]["exact_seconds_per_instance_wide_mix"]}
    for mix, spread in (("default", 3.0), ("wide", 10.0)):
        problem = random_problems(n, seed=0, spread=spread)
        solvers = {"before": chunked(old, args.chunk, options={}),
                   "before_vector_options": chunked(old, args.chunk),
                   "after": chunked(solve_exact, args.chunk)}
        if jax.device_count() > 1 and DISPATCH == "map":
            solvers["before_all_devices"] = chunked(old, args.chunk, jax.local_devices(), options={})
            solvers["after_all_devices"] = chunked(solve_exact, args.chunk, jax.local_devices())
        rates = interleaved(solvers, problem, args.repeats)
        packages = {"before": (package, {}), "after": ("laimco_jax", VECTOR_COMPILER_OPTIONS)}
        one_core = one_core_rates(packages, n, spread, args.chunk, args.repeats)
        rates.update({f"{k}_one_core": v for k, v in one_core.items()})
        out["mixes"][mix] = {**{f"{k}_instances_per_s": v for k, v in rates.items()},
                             **{f"speedup_{k}": v / rates["before"] for k, v in rates.items() if k != "before"},
                             **{f"{k}_vs_cvxpy": v * cvx[mix] for k, v in rates.items()}}
        print(f"before/after ({mix} mix, batch {n}): " + ", ".join(
            f"{k} {v:.3g} inst/s (x{v / rates['before']:.2f}, {v * cvx[mix]:.3g}x CVXPY)" for k, v in rates.items()))
    shapes = [tuple(int(d) for d in s.split(",")) for s in args.compile_shapes.split(";") if s]
    out["compile_first_call_s"] = []
    for shape in shapes:
        samples = {"before": [], "after": []}
        for _ in range(args.compile_repeats):  # in turns, each in a fresh process
            for k, p in (("before", package), ("after", "laimco_jax")):
                samples[k].append(compile_seconds(p, shape))
        times = {k: statistics.median(v) for k, v in samples.items()}
        out["compile_first_call_s"].append({"shape": list(shape), **times, "samples": samples})
        print(f"first call, fresh process, shape {shape} (median of {args.compile_repeats}): "
              f"{times['before']:.2f} s -> {times['after']:.2f} s")
    return out


if __name__ == "__main__":
    main()
