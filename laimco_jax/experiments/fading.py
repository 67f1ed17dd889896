"""Tables and figures of the fading study (beyond the paper, docs/theory.md#fading-channels).

* :func:`static_curve_table`: the outage-constrained static design's log10 D̂* against ε;
* :func:`draws_table`: one row per channel draw of a :class:`~laimco_jax.outage.MonteCarlo` run;
* :func:`plot_draws_cdf`: the CDF of a quantity over channel draws with the static design's level;
* :func:`plot_adaptive_cdf`: that of the adaptive design's log10 D̂*;
* :func:`plot_static_curve`: static log10 D̂* against ε beside the adaptive mean;
* :func:`write_fading`: the CSV files and the figures of one run into a directory.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd

from laimco_jax.fading import Fading, check_outage, gain_factor_quantile
from laimco_jax.outage import MonteCarlo, summarize, with_channel_gain
from laimco_jax.params import Problem
from laimco_jax.solvers import Status, found_point, solve_exact
from laimco_jax.system import channel_gain

__all__ = ["OUTAGE_GRID", "static_curve_table", "draws_table", "plot_draws_cdf", "plot_adaptive_cdf",
           "plot_static_curve", "write_fading"]

#: Outage probabilities ε of the static curve: 1e-3 to 0.5, log-spaced.
OUTAGE_GRID = tuple(float(e) for e in np.geomspace(1e-3, 0.5, 19))


def static_curve_table(problem: Problem, fading: Fading, outages: Sequence[float] = OUTAGE_GRID,
                       scheme: str = "proposed") -> pd.DataFrame:
    """The static design at each ε of ``outages`` (one batched solve in float64): columns ``outage``,
    ``gain_factor_quantile`` q_ε, ``quantile_gain`` g·q_ε, ``status`` and ``log10_distortion_bound``
    (+inf where no design meets the budgets at g·q_ε)."""
    outages = np.asarray([check_outage("outage", e) for e in outages])
    quantiles = np.asarray([gain_factor_quantile(fading, e) for e in outages])
    with jax.enable_x64(True):
        problem = problem.astype(jnp.float64)
        gains = np.asarray(channel_gain(problem.system)) * quantiles
        solution = solve_exact(with_channel_gain(problem, jnp.asarray(gains)), scheme)
        found = np.asarray(found_point(solution.status))
        return pd.DataFrame({
            "outage": outages,
            "gain_factor_quantile": quantiles,
            "quantile_gain": gains,
            "status": [Status(int(s)).name.lower() for s in np.asarray(solution.status)],
            "log10_distortion_bound": np.where(found, np.asarray(solution.log10_distortion_bound), np.inf),
        })


def draws_table(result: MonteCarlo) -> pd.DataFrame:
    """One row per draw: ``draw`` (global index), ``gain_factor`` |h|², ``adaptive_log10_distortion_bound``
    (+inf: no design meets the budgets) and ``static_miss``."""
    return pd.DataFrame({
        "draw": np.arange(result.gain_factor.size),
        "gain_factor": result.gain_factor,
        "adaptive_log10_distortion_bound": result.adaptive_log10_distortion_bound,
        "static_miss": result.static_miss,
    })


def plot_draws_cdf(curves: Mapping[str, tuple[np.ndarray, float, str]], path: str | os.PathLike, *, xlabel: str,
                   title: str) -> Path:
    """Empirical CDF of a quantity over channel draws per curve, ``{name: (values, static level, static label)}``
    (+inf values: draws without a design, which never reach the top, so a curve ends at 1 − infeasible
    fraction), with the static design's level as a dashed vertical line of the same colour (none where
    it is not finite). The x range spans the 0.1 % to 99 % quantiles of the served draws and the static
    levels (deep fades stretch the upper tail)."""
    from laimco_jax.experiments.plots import figure_grid, save_figure

    fig, (ax,) = figure_grid(1, width=6.0, height=4.0)
    ends = []
    for name, (values, static, static_label) in curves.items():
        served = values[np.isfinite(values)]
        ends += list(np.quantile(served, [0.001, 0.99])) if served.size else []
        ordered = np.sort(values)
        n = ordered.size
        finite = np.isfinite(ordered)
        (line,) = ax.step(ordered[finite], np.arange(1, n + 1)[finite] / n, where="post", label=f"{name}: adaptive")
        if np.isfinite(static):
            ax.axvline(static, color=line.get_color(), linestyle="--", label=f"{name}: {static_label}")
            ends.append(static)
    if ends:
        pad = 0.05 * (max(ends) - min(ends)) or 0.1
        ax.set_xlim(min(ends) - pad, max(ends) + pad)
    ax.set_xlabel(xlabel)
    ax.set_ylabel("fraction of channel draws")
    ax.set_title(title)
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    return save_figure(fig, path)


def plot_adaptive_cdf(results: Mapping[str, MonteCarlo], path: str | os.PathLike) -> Path:
    """:func:`plot_draws_cdf` of the adaptive design's log10 D̂* per model, with the static design's log10 D̂*."""
    curves = {}
    for name, result in results.items():
        static = result.static.solution
        level = float(static.log10_distortion_bound) if found_point(int(static.status)) else np.inf
        curves[name] = (result.adaptive_log10_distortion_bound, level, f"static, ε = {result.static.outage:g}")
    return plot_draws_cdf(curves, path, xlabel="log10 D̂* (distortion bound)",
                          title="Adaptive design over channel draws vs the static outage design")


def plot_static_curve(curves: Mapping[str, pd.DataFrame], path: str | os.PathLike,
                      adaptive_means: Mapping[str, float] | None = None) -> Path:
    """Static log10 D̂* against ε (log axis) per model (``static_curve_table`` tables), with the
    adaptive design's mean log10 D̂* as a dotted horizontal line where ``adaptive_means`` gives it."""
    from laimco_jax.experiments.plots import figure_grid, save_figure

    fig, (ax,) = figure_grid(1, width=6.0, height=4.0)
    for name, table in curves.items():
        feasible = np.isfinite(table["log10_distortion_bound"])
        (line,) = ax.plot(table["outage"][feasible], table["log10_distortion_bound"][feasible], marker="o",
                          markersize=3, label=f"{name}: static")
        if adaptive_means and np.isfinite(adaptive_means.get(name, np.inf)):
            ax.axhline(adaptive_means[name], color=line.get_color(), linestyle=":", label=f"{name}: adaptive mean")
    ax.set_xscale("log")
    ax.set_xlabel("outage probability ε")
    ax.set_ylabel("log10 D̂* (distortion bound)")
    ax.set_title("Static outage-constrained design against ε")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3, which="both")
    return save_figure(fig, path)


def write_fading(result: MonteCarlo, curve: pd.DataFrame, out: str | os.PathLike) -> list[Path]:
    """Write one run into the directory ``out`` (created): ``fading_draws.csv`` (:func:`draws_table`),
    ``fading_static.csv`` (``curve``, :func:`static_curve_table`), ``fading_cdf.png`` and
    ``fading_static.png``. Returns the paths written."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    name = result.static.fading.name
    paths = [out / "fading_draws.csv", out / "fading_static.csv"]
    draws_table(result).to_csv(paths[0], index=False)
    curve.to_csv(paths[1], index=False)
    adaptive_mean = summarize(result)["adaptive_mean_log10_distortion_bound"]
    return [*paths, plot_adaptive_cdf({name: result}, out / "fading_cdf.png"),
            plot_static_curve({name: curve}, out / "fading_static.png", {name: adaptive_mean})]
