"""Multi-user cell throughput (issue 15): the batched cell solver's cells/s against the independent
reference per cell, in the same run, on two instance mixes.

What one run measures, per cell size K (default 2, 8, 32) and per mix:

* cells/s of ``solve_cell`` (jitted, float64) on a batch of cells (``--cells``, default 512 cells at
  K = 2, 128 at K = 8, 32 at K = 32): the first call's seconds (compile + solve) and the best of
  ``--repeats`` calls after it; the compile time is the first call less the best. Where the reference
  runs, ours is timed again right after it (``--repeats`` more calls) and the
  best of all timed calls is kept, so that a load from other processes on a shared machine weighs on
  both sides of the ratio alike;
* the reference :func:`laimco_jax.reference_multiuser.solve_cell_reference` (CVXPY + Clarabel per user
  with a bounded-Brent search over the band split at K <= 3, one SLSQP problem over the cell above),
  mean seconds per cell over the first ``--ref-cells`` cells of the same batch (default 5 at K = 2 with
  method ``auto``, 2 at K = 8 with method ``scipy``, none at K = 32: too slow), after one untimed
  warm-up call; the ratio reference s/cell ÷ our s/cell (target >= 1,000x at K = 2 on *both* mixes);
* agreement on those cells: max |ours − ref| / max(|ref|, 1e-3) of the objective, and whether our
  proven lower bound ever lies above the reference's objective;
* the status counts (``Status``: OPTIMAL 0, INFEASIBLE 1, NOT_CONVERGED 2, UNRESOLVED 3), the
  certificate (median, max over cells with a point: OPTIMAL or NOT_CONVERGED);
* the gain of the joint band allocation over the equal split (``solve_equal_split``: B/K and F/K to
  every user): the equal split's objective less ours [bits for sum-log], median and max over cells
  where both serve every user, and how many cells the equal split cannot serve while ours can.

Mixes (users drawn with ``numpy.random.default_rng(seed + K)``, weights exp(U(−1, 1))):

* ``near-paper``: BERT-base at split 4, distance U(150, 600) m, T0 U(0.3, 0.5) s, E0 U(0.01, 0.03) J;
* ``mixed``: BART-base with probability ``--bart-fraction`` (splits 1..6) else BERT-base (splits
  1..8), distance U(100, 800) m, T0 U(0.25, 0.6) s, E0 U(0.008, 0.05) J.

A user that no band can serve (its least band is infinite: the upload's energy floor θ N0 ln2/g is above
E0, or its rate limit P_max g/(N0 ln 2) below θ/T0; ``least_band_hz`` of the reference, closed form) is
redrawn, and the redraws are counted: such a user makes its cell infeasible at any B and says nothing
about sharing. Cells may still be infeasible because their users' least bands add up to more than B.

Cell resources (``--resources``): ``per-user`` (default) B = 5 MHz·K/2 and F = 4 GHz·K/2, so each user's
equal share (2.5 MHz, 2 GHz) stays that of the tests' K = 2 cells at every K; ``fixed`` B = 5 MHz and
F = 4 GHz at every K (at K = 32 most cells are then short of band). ``--server-per-user-hz`` changes the
2 GHz (at 2 GHz a user's server part rarely needs its whole share; at 0.5 GHz the server is scarce).

Usage: ``python benchmarks/bench_multiuser.py [--cells 2:512,8:128,32:32] [--ref-cells 2:5,8:2,32:0]
[--mixes near-paper,mixed] [--objective sum-log] [--server-sharing equal] [--resources per-user] [--repeats 3]
[--out benchmarks/results/bench_multiuser.json]``.

With ``--server-sharing optimized`` (e.g. ``--cells 2:64,8:32,32:8,64:4 --server-per-user-hz 5e8 --out
benchmarks/results/bench_multiuser_optimized.json``) the solver chooses the server shares too: no
reference runs (it solves fixed shares), and each case adds the gain over equal server shares (the same
cells solved with F/K each, the band split optimal) and the certificate's 10/50/90 % quantiles — the
duality gap the non-convex server split leaves (docs/theory.md#optimised-server-shares).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import time
from pathlib import Path

import jax
import numpy as np

jax.config.update("jax_enable_x64", True)

from laimco_jax.cell import make_cell, stack_cells
from laimco_jax.params import make_problem
from laimco_jax.reference_multiuser import least_band_hz, solve_cell_reference
from laimco_jax.solvers import Status
from laimco_jax.solvers.multiuser import cell_objective, solve_cell, solve_equal_split
from laimco_jax.solvers.solution import found_point

MIXES = ("near-paper", "mixed")
BAND_PER_PAIR_HZ = 5e6  # B of a K = 2 cell
TARGET_RATIO_K2 = 1000.0


def draw_user(rng: np.random.Generator, mix: str, bart_fraction: float):
    if mix == "near-paper":
        return make_problem(split=4, overrides={
            "distance_m": float(rng.uniform(150.0, 600.0)), "delay_s": float(rng.uniform(0.3, 0.5)),
            "energy_j": float(rng.uniform(0.01, 0.03))})
    bart = rng.uniform() < bart_fraction
    model, splits = ("bart-base", 6) if bart else ("bert-base", 8)
    return make_problem(model=model, split=int(rng.integers(1, splits + 1)), overrides={
        "distance_m": float(rng.uniform(100.0, 800.0)), "delay_s": float(rng.uniform(0.25, 0.6)),
        "energy_j": float(rng.uniform(0.008, 0.05))})


def draw_cells(mix: str, users: int, count: int, seed: int, bart_fraction: float):
    """``count`` cells of ``users`` users: (list of (problems, weights)), redraws of unservable users."""
    rng = np.random.default_rng(seed + users)
    cells, redraws = [], 0
    for _ in range(count):
        problems = []
        while len(problems) < users:
            problem = draw_user(rng, mix, bart_fraction)
            if np.isfinite(least_band_hz(problem)):
                problems.append(problem)
            else:
                redraws += 1
        weights = [float(w) for w in np.exp(rng.uniform(-1.0, 1.0, users))]
        cells.append((problems, weights))
    return cells, redraws


def timed(fn, repeats: int) -> tuple[float, float]:
    """(first call's seconds, best of ``repeats`` calls after it)."""
    start = time.perf_counter()
    jax.block_until_ready(fn())
    first = time.perf_counter() - start
    best = np.inf
    for _ in range(repeats):
        start = time.perf_counter()
        jax.block_until_ready(fn())
        best = min(best, time.perf_counter() - start)
    return first, best


def stats(values) -> dict:
    v = np.asarray(values, float)
    if v.size == 0:
        return {"count": 0, "median": None, "max": None}
    return {"count": int(v.size), "median": float(np.median(v)), "max": float(v.max())}


def source_version() -> dict:
    """Where ``laimco_jax`` was imported from, its git commit and whether its files differ from it."""
    import laimco_jax

    package = Path(laimco_jax.__file__).resolve().parent

    def git(*cmd):
        try:
            return subprocess.run(["git", *cmd], cwd=package, capture_output=True, text=True, check=True).stdout.strip()
        except (OSError, subprocess.CalledProcessError):
            return None

    commit = git("rev-parse", "HEAD")
    changed = git("status", "--porcelain", "--", ".")
    return {"path": str(package), "commit": commit, "uncommitted_changes": bool(changed) if commit else None}


def parse_counts(text: str) -> dict[int, int]:
    return {int(k): int(v) for k, v in (item.split(":") for item in text.split(",") if item)}


def run_case(args, mix: str, users: int, count: int, ref_count: int) -> dict:
    scale = users / 2 if args.resources == "per-user" else 1.0
    band_hz, server_hz = BAND_PER_PAIR_HZ * scale, 2 * args.server_per_user_hz * scale
    drawn, redraws = draw_cells(mix, users, count, args.seed, args.bart_fraction)
    batch = stack_cells([make_cell(p, w, band_hz, server_hz) for p, w in drawn])

    sharing = args.server_sharing
    first_s, best_s = timed(lambda: solve_cell(batch, args.objective, sharing), args.repeats)
    ours = jax.device_get(solve_cell(batch, args.objective, sharing))
    equal = jax.device_get(solve_equal_split(batch))
    status = np.asarray(ours.status)
    counts = {s.name: int(np.sum(status == s)) for s in Status}
    has_point = np.asarray(found_point(status))

    def gain_over(baseline_served, baseline_value):
        both = has_point & baseline_served
        gain = baseline_value[both] - np.asarray(ours.objective)[both]
        return gain / baseline_value[both] if args.objective == "sum" else gain  # sum: relative

    equal_served = np.all(np.asarray(found_point(equal.status)), axis=-1)
    gain = gain_over(equal_served, np.asarray(cell_objective(args.objective, batch, equal.log2_distortion_bound)))

    case = {
        "mix": mix, "users": users, "cells": count, "bandwidth_hz": band_hz, "f_max_server_hz": server_hz,
        "unservable_users_redrawn": redraws,
        "first_call_s": first_s, "steady_s": best_s, "compile_s": max(first_s - best_s, 0.0),
        "cells_per_s": count / best_s, "seconds_per_cell": best_s / count,
        "status_counts": counts,
        # (batch index, status, certificate) of every cell not OPTIMAL and not proven INFEASIBLE
        "unsettled_cells": [[int(i), int(status[i]), float(ours.certificate[i])]
                            for i in np.flatnonzero((status != Status.OPTIMAL) & (status != Status.INFEASIBLE))],
        "certificate": stats(np.asarray(ours.certificate)[has_point]),
        "certificate_optimal_only": stats(np.asarray(ours.certificate)[status == Status.OPTIMAL]),
        "equal_split": {
            "gain_units": {"sum-log": "bits", "sum": "relative", "max": "bits"}[args.objective],
            "gain": stats(gain),
            "gain_min": float(gain.min()) if gain.size else None,
            "cells_equal_split_cannot_serve": int(np.sum(has_point & ~equal_served)),
        },
    }
    if sharing == "optimized":
        # the same cells with equal server shares and the optimal band split: what optimising the shares gains
        shares = jax.device_get(solve_cell(batch, args.objective))
        served = np.asarray(found_point(shares.status))
        optimized_gain = gain_over(served, np.asarray(shares.objective))
        case["equal_server_shares"] = {"gain": stats(optimized_gain),
                                       "gain_min": float(optimized_gain.min()) if optimized_gain.size else None}
        quantiles = np.quantile(np.asarray(ours.certificate)[has_point], [0.1, 0.5, 0.9]) if has_point.any() else []
        case["certificate_quantiles_10_50_90"] = [float(q) for q in quantiles]

    if sharing == "optimized":
        ref_count = 0  # the reference solves fixed server shares
    ref = {"cells": 0, "skipped": f"--ref-cells gives none at K = {users} (SLSQP over the whole cell is too slow "
                                  "at large K)" if ref_count == 0 else None}
    if sharing == "optimized":
        ref["skipped"] = "the reference solves fixed server shares only"
    if ref_count > 0:
        method = "auto" if users <= 3 else "scipy"
        chosen = list(range(min(ref_count, count)))
        solve_cell_reference(*_ref_args(drawn[0], band_hz, server_hz), args.objective, method=method)  # warm-up
        seconds, rel, above, statuses, verdicts = [], [], 0, [], 0
        for i in chosen:
            start = time.perf_counter()
            answer = solve_cell_reference(*_ref_args(drawn[i], band_hz, server_hz), args.objective, method=method)
            seconds.append(time.perf_counter() - start)
            statuses.append(answer.status)
            ref_feasible = answer.status != "infeasible"
            verdicts += ref_feasible == bool(status[i] == Status.INFEASIBLE)
            if ref_feasible and has_point[i]:
                value = answer.objective_value
                rel.append(abs(float(ours.objective[i]) - value) / max(abs(value), 1e-3))
                above += float(ours.lower_bound[i]) > value + 1e-9 * max(abs(value), 1e-3)
        ref = {
            "cells": len(chosen), "method": method, "seconds_per_cell": float(np.mean(seconds)),
            "seconds": seconds, "statuses": statuses,
            "ratio": float(np.mean(seconds)) / case["seconds_per_cell"],
            "max_relative_objective_difference": float(max(rel)) if rel else None,
            "compared": len(rel),
            "lower_bound_above_reference": int(above),
            "feasibility_verdict_mismatches": int(verdicts),
        }
    case["reference"] = ref
    if ref_count > 0:
        # The machine may be shared: time ours again right after the reference, so that both sides of the
        # ratio have seen the same load, and keep the best of all the timed calls.
        again_first, again_s = timed(lambda: solve_cell(batch, args.objective, sharing), args.repeats - 1)
        again_s = min(again_first, again_s)  # compiled already: every call of these counts
        case["steady_s_after_reference"] = again_s
        best_s = min(best_s, again_s)
        case.update(steady_s=best_s, cells_per_s=count / best_s, seconds_per_cell=best_s / count)
        ref["ratio"] = ref["seconds_per_cell"] / case["seconds_per_cell"]
    return case


def _ref_args(cell, band_hz, server_hz):
    problems, weights = cell
    return problems, band_hz, server_hz, weights


def print_case(case: dict) -> None:
    c = case
    counts = " ".join(f"{k}={v}" for k, v in c["status_counts"].items())
    print(f"K={c['users']:>2} {c['mix']:<10} B={c['bandwidth_hz'] / 1e6:g} MHz F={c['f_max_server_hz'] / 1e9:g} GHz: "
          f"{c['cells_per_s']:.4g} cells/s ({c['cells']} cells in {c['steady_s']:.3f} s; first call "
          f"{c['first_call_s']:.1f} s, compile ~{c['compile_s']:.1f} s); redrawn users {c['unservable_users_redrawn']}")
    unsettled = " ".join(f"#{i}:{Status(st).name}" for i, st, _ in c["unsettled_cells"][:8])
    more = len(c["unsettled_cells"]) - 8
    print(f"      status: {counts}" + (f"; unsettled cells {unsettled}" if unsettled else "")
          + (f" and {more} more" if more > 0 else ""))
    cert, cert_opt = c["certificate"], c["certificate_optimal_only"]
    if cert["count"]:
        optimal = f"max {cert_opt['max']:.3g}" if cert_opt["count"] else "none OPTIMAL"
        print(f"      certificate over {cert['count']} cells with a point: median {cert['median']:.3g}, "
              f"max {cert['max']:.3g} (OPTIMAL only: {optimal})")
    eq = c["equal_split"]
    if eq["gain"]["count"]:
        print(f"      joint vs equal split over {eq['gain']['count']} cells: median gain {eq['gain']['median']:.4g} "
              f"{eq['gain_units']}, max {eq['gain']['max']:.4g}, min {eq['gain_min']:.3g}; cells the equal split "
              f"cannot serve: {eq['cells_equal_split_cannot_serve']}")
    if "equal_server_shares" in c:
        g, q = c["equal_server_shares"]["gain"], c["certificate_quantiles_10_50_90"]
        if g["count"]:
            print(f"      optimised vs equal server shares over {g['count']} cells: median gain {g['median']:.4g} "
                  f"{eq['gain_units']}, max {g['max']:.4g}, min {c['equal_server_shares']['gain_min']:.3g}")
        if q:
            print(f"      certificate (duality gap) 10/50/90 %: {q[0]:.3g} / {q[1]:.3g} / {q[2]:.3g}")
    r = c["reference"]
    if r["cells"]:
        diff = r["max_relative_objective_difference"]
        print(f"      reference ({r['method']}, {r['cells']} cells): {r['seconds_per_cell']:.3g} s/cell -> ratio "
              f"{r['ratio']:.4g}x; max |ours-ref|/|ref| {diff if diff is None else f'{diff:.2g}'} over "
              f"{r['compared']}; lower bound above ref: {r['lower_bound_above_reference']}; "
              f"feasibility mismatches: {r['feasibility_verdict_mismatches']}; ref statuses {r['statuses']}")
    else:
        print(f"      reference: skipped ({r['skipped']})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cells", default="2:512,8:128,32:32", help="K:cells per batch, comma-separated")
    parser.add_argument("--ref-cells", default="2:5,8:2,32:0", help="K:reference cells (first of the batch)")
    parser.add_argument("--mixes", default=",".join(MIXES))
    parser.add_argument("--objective", default="sum-log", choices=("sum-log", "sum", "max"))
    parser.add_argument("--resources", default="per-user", choices=("per-user", "fixed"))
    parser.add_argument("--server-per-user-hz", type=float, default=2e9,
                        help="F/K with --resources per-user, F/2 with fixed [cycles/s]")
    parser.add_argument("--server-sharing", default="equal", choices=("equal", "optimized"),
                        help="optimized: also the gain over equal server shares and the gap distribution; no reference")
    parser.add_argument("--bart-fraction", type=float, default=0.25)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/bench_multiuser.json"))
    args = parser.parse_args()

    cells, ref_cells = parse_counts(args.cells), parse_counts(args.ref_cells)
    mixes = [m for m in args.mixes.split(",") if m]
    for mix in mixes:
        if mix not in MIXES:
            parser.error(f"unknown mix {mix!r}; allowed: {', '.join(MIXES)}")
    start = time.perf_counter()
    report: dict = {
        "machine": f"{platform.processor() or platform.machine()}, {jax.device_count()} {jax.default_backend()} "
                   f"device(s), {os.cpu_count()} CPU cores",
        "load_average_at_start": list(os.getloadavg()),
        "jax": jax.__version__,
        "laimco_jax": source_version(),
        "objective": args.objective, "server_sharing": args.server_sharing, "resources": args.resources,
        "server_per_user_hz": args.server_per_user_hz,
        "seed": args.seed, "repeats": args.repeats,
        "bart_fraction": args.bart_fraction,
        "cases": [],
    }
    version = report["laimco_jax"]
    print(f"{report['machine']}; load {report['load_average_at_start'][0]:.2f}; objective {args.objective}; "
          f"server sharing {args.server_sharing}; resources {args.resources}")
    print(f"laimco_jax from {version['path']} at {version['commit']}"
          + (" WITH UNCOMMITTED CHANGES" if version["uncommitted_changes"] else ""))
    for users, count in cells.items():
        for mix in mixes:
            case = run_case(args, mix, users, count, ref_cells.get(users, 0))
            report["cases"].append(case)
            print_case(case)

    k2 = [c for c in report["cases"] if c["users"] == 2 and c["reference"]["cells"]]
    ratios = {c["mix"]: c["reference"]["ratio"] for c in k2}
    met = bool(k2) and len(ratios) == len(mixes) and all(r >= TARGET_RATIO_K2 for r in ratios.values())
    report["target_k2"] = {"ratio_at_least": TARGET_RATIO_K2, "ratios": ratios, "met": met}
    report["load_average_at_end"] = list(os.getloadavg())
    report["wall_s"] = time.perf_counter() - start
    if ratios:
        print(f"target >= {TARGET_RATIO_K2:g}x at K = 2 on every mix: {'MET' if met else 'NOT MET'} ("
              + ", ".join(f"{m} {r:.4g}x" for m, r in ratios.items()) + ")")
    print(f"wall {report['wall_s']:.0f} s; load at end {report['load_average_at_end'][0]:.2f}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2, default=float))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
