"""Sweep benchmark: wall time, instances/s and peak RSS of exact-solver sweeps of growing size.

Each size runs in a fresh subprocess (so its peak RSS is its own) and sweeps a Cartesian grid
delay_s x energy_j x distance_m (100 x 100 x N/1e4) of the paper's BERT configuration with the
``proposed`` scheme, writing every Solution field to a Zarr store in a temporary directory.

    python benchmarks/bench_sweep.py                      # 1e5 and 1e6 instances
    python benchmarks/bench_sweep.py --points 1e6,1e7     # memory stays flat as the grid grows
    python benchmarks/bench_sweep.py --points 1e8 --chunk-size 4194304 --store-dir /scratch  # GPU
    python benchmarks/bench_sweep.py --compilation-cache /tmp/jaxcache   # twice: the 2nd skips compiling
    python benchmarks/bench_sweep.py --points 1e6 --warm  # cold, then warm from a fresh temporary cache
    python benchmarks/bench_sweep.py --points 1e6 --warm --cli  # the whole `laimco sweep` command
    python benchmarks/bench_sweep.py --points 1e6 --warm --cli --repeat 3  # best / median of 3 (busy hosts)

``--warm`` runs every size twice against a fresh temporary compilation cache: the first run compiles
(cold, as a first ``laimco sweep``), the second finds the compiled chunk function in the cache (as
every later ``laimco sweep`` of the same structure: the CLI turns the persistent cache on).

``--cli`` times the whole ``laimco sweep --grid ... --out ...`` command instead (Python start-up,
imports, store and progress bar included), with ``LAIMCO_COMPILATION_CACHE`` pointing at the cache,
and prints when each phase of it ended (``LAIMCO_SWEEP_PHASES``, :mod:`laimco_jax.sweep.phases`):
imports, spec, evaluator (inputs on the device), store created, store opened, compiled (the compile
thread done: trace, lower and XLA compile, or the program loaded from the cache), compile waited for,
first and last chunk written, store finished (``complete``), sweep done, exit (the process gone).

Reported per size: ``wall_s`` (the whole run_sweep call, compilation and writing included),
``compile_s`` (until the first chunk is written, minus that chunk's share), ``instances_per_s``
(points / wall) and ``steady_instances_per_s`` (after the first chunk), ``peak_rss_mib``
(``resource.getrusage``), ``store_mib`` and the devices used.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _grid(points: int) -> dict[str, str]:
    """A 100 x 100 x points/1e4 grid (points must be a multiple of 1e4)."""
    if points % 10_000 or points < 10_000:
        raise SystemExit(f"--points {points}: use a multiple of 1e4")
    return {"delay_s": "0.05:0.6:100", "energy_j": "0.002:0.05:100", "distance_m": f"100:1500:{points // 10_000}"}


def run_one(points: int, chunk_size: int, store_dir: str, cache_dir: str | None, dtype: str = "float64") -> dict:
    """One sweep in this process (solved and stored in ``dtype``); returns its measurements."""
    import jax
    import jax.numpy as jnp

    jax.config.update("jax_enable_x64", True)
    if cache_dir:
        jax.config.update("jax_compilation_cache_dir", cache_dir)
        jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    from laimco_jax import sweep

    spec = sweep.build_spec(grid=_grid(points))
    out = Path(tempfile.mkdtemp(dir=store_dir)) / "bench.zarr"
    stamps: list[tuple[float, int]] = []
    start = time.perf_counter()
    try:
        sweep.run_sweep(spec, out, chunk_size=chunk_size, dtype=jnp.dtype(dtype),
                        on_chunk=lambda c, n: stamps.append((time.perf_counter(), n)))
        wall = time.perf_counter() - start
        store_bytes = sum(f.stat().st_size for f in out.rglob("*") if f.is_file())
    finally:
        shutil.rmtree(out.parent, ignore_errors=True)
    first_time, first_n = stamps[0]
    steady = (points - first_n) / (stamps[-1][0] - first_time) if len(stamps) > 1 else float("nan")
    return {
        "points": points,
        "dtype": dtype,
        "chunk_size": chunk_size,
        "chunks": len(stamps),
        "wall_s": wall,
        "compile_s": max(first_time - start - first_n / steady, 0.0) if len(stamps) > 1 else float("nan"),
        "instances_per_s": points / wall,
        "steady_instances_per_s": steady,
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "store_mib": store_bytes / 2**20,
        "devices": [str(d) for d in jax.local_devices()],
        "jax": jax.__version__,
    }


def _phase_table(stamps: list[tuple[str, float]], start: float, end: float) -> dict[str, float]:
    """Seconds from the command's start to the end of each phase (``LAIMCO_SWEEP_PHASES`` stamps; a
    repeated phase, e.g. ``chunk written``, as its first and last), then ``exit`` (the process gone)."""
    table: dict[str, float] = {}
    for name, when in stamps:
        if name == "chunk written":
            table.setdefault("first chunk written", when - start)
            table["last chunk written"] = when - start
        else:
            table[name] = when - start
    table["exit"] = end - start
    return table


def run_cli(points: int, chunk_size: int, store_dir: str, cache_dir: str | None) -> dict:
    """One ``laimco sweep`` command in a subprocess, timed from the outside, with its phases."""
    out = Path(tempfile.mkdtemp(dir=store_dir)) / "bench.zarr"
    phases = out.parent / "phases.json"
    grids = [f"--grid={field}={values}" for field, values in _grid(points).items()]
    cmd = [sys.executable, "-m", "laimco_jax.cli", "sweep", *grids, "--chunk-size", str(chunk_size), "--out", str(out)]
    env = {**os.environ, "LAIMCO_COMPILATION_CACHE": cache_dir or "off", "LAIMCO_SWEEP_PHASES": str(phases),
           "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    before = os.times()
    start_clock, start = time.time(), time.perf_counter()
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
    wall = time.perf_counter() - start
    end_clock = start_clock + wall
    after = os.times()
    table = _phase_table(json.loads(phases.read_text()), start_clock, end_clock) if phases.exists() else {}
    shutil.rmtree(out.parent, ignore_errors=True)
    if done.returncode:
        sys.exit(f"laimco sweep of {points} instances failed:\n{done.stderr[-3000:]}")
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.children_user - before.children_user) + (after.children_system - before.children_system)
    return {"points": points, "chunk_size": chunk_size, "command": "laimco sweep", "wall_s": wall, "cpu_s": cpu,
            "instances_per_s": points / wall, "peak_rss_mib_children_max": usage.ru_maxrss / 1024, "phases_s": table}


def _print_phases(table: dict[str, float]) -> None:
    last = 0.0
    for name, at in table.items():
        print(f"{'':14}{name:>22} at {at:7.2f} s  (+{at - last:5.2f})")
        last = max(last, at)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--points", default="1e5,1e6", help="comma list of sweep sizes (instances)")
    parser.add_argument("--chunk-size", type=int, default=65536, help="instances per chunk")
    parser.add_argument("--store-dir", default=None, help="where the temporary Zarr stores go")
    parser.add_argument("--compilation-cache", default=None,
                        help="JAX persistent compilation cache directory (a second run skips compiling)")
    parser.add_argument("--warm", action="store_true",
                        help="run each size twice with a fresh temporary compilation cache (cold, then warm)")
    parser.add_argument("--cli", action="store_true", help="time the whole `laimco sweep` command (start-up included)")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "bench_sweep.json")
    parser.add_argument("--repeat", type=int, default=1,
                        help="run each size (with --warm: each cold and warm pair, a fresh cache each) this many times")
    parser.add_argument("--dtypes", default="float64", help="comma list: float64, float32 (in-process runs)")
    parser.add_argument("--single", type=int, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    store_dir = args.store_dir or tempfile.gettempdir()
    if args.single is not None:
        print(json.dumps(run_one(args.single, args.chunk_size, store_dir, args.compilation_cache, args.dtypes)))
        return
    dtypes = [d for d in args.dtypes.split(",") if d]
    if not set(dtypes) <= {"float32", "float64"} or (args.cli and dtypes != ["float64"]):
        sys.exit(f"--dtypes {args.dtypes!r}: float32 and/or float64 (the --cli runs are float64)")
    runs = []
    for text, dtype, _ in [(t, d, r) for t in args.points.split(",") for d in dtypes for r in range(args.repeat)]:
        points = int(float(text))
        cache = tempfile.mkdtemp(prefix="laimco-bench-cache-") if args.warm else args.compilation_cache
        for label in ("cold", "warm") if args.warm else ("",):
            if args.cli:
                runs.append({**run_cli(points, args.chunk_size, store_dir, cache), "cache": label or bool(cache),
                             "load_average_before": os.getloadavg()[0]})
                print(f"{points:>12,d} instances {label:>4} `laimco sweep` wall {runs[-1]['wall_s']:8.2f} s  "
                      f"(CPU {runs[-1]['cpu_s']:.2f} s, load average {runs[-1]['load_average_before']:.1f})", flush=True)
                _print_phases(runs[-1]["phases_s"])
                continue
            cmd = [sys.executable, __file__, "--single", str(points), "--chunk-size", str(args.chunk_size),
                   "--store-dir", store_dir, "--dtypes", dtype] + (["--compilation-cache", cache] if cache else [])
            env = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
            done = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
            if done.returncode:
                sys.exit(f"sweep of {points} instances failed:\n{done.stderr[-3000:]}")
            runs.append({**json.loads(done.stdout.strip().splitlines()[-1]), "cache": label or bool(cache)})
            r = runs[-1]
            print(f"{points:>12,d} instances {dtype} {label:>4} wall {r['wall_s']:8.2f} s  {r['instances_per_s']:10.4g} inst/s "
                  f"(steady {r['steady_instances_per_s']:.4g})  compile ~{r['compile_s']:.1f} s  "
                  f"peak RSS {r['peak_rss_mib']:7.0f} MiB  store {r['store_mib']:.0f} MiB", flush=True)
        if args.warm:
            shutil.rmtree(cache, ignore_errors=True)
    if args.cli and args.repeat > 1:
        for points in dict.fromkeys(r["points"] for r in runs):
            for label in dict.fromkeys(r["cache"] for r in runs):
                walls = sorted(r["wall_s"] for r in runs if r["points"] == points and r["cache"] == label)
                print(f"{points:>12,d} instances {label!s:>4} `laimco sweep` over {len(walls)} runs: "
                      f"best {walls[0]:.2f} s, median {walls[len(walls) // 2]:.2f} s, worst {walls[-1]:.2f} s")
    record = {
        "benchmark": "sweep of the exact solver, scheme proposed, every Solution field written to Zarr",
        "host": platform.node(),
        "cpu_count": os.cpu_count(),
        "load_average_at_end": os.getloadavg(),
        "compilation_cache": args.compilation_cache,
        "runs": runs,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(record, indent=2))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
