"""``laimco solve --fading`` and ``laimco fading``: the outage-constrained static design and the Monte
Carlo over channel draws (:mod:`laimco_jax.outage`, docs/theory.md#fading-channels)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import jax.numpy as jnp

from laimco_jax.fading import check_outage, check_samples, check_seed, parse_fading
from laimco_jax.outage import DEFAULT_OUTAGE, monte_carlo, quantile_gain, static_sensitivity, summarize
from laimco_jax.outage import at_outer_radius, distance_keys, distance_range_fading, with_channel_gain
from laimco_jax.params import ConfigError, Problem, Range, check_range
from laimco_jax.sensitivity import SINGULAR
from laimco_jax.solvers import found_point

#: Units of the keys of ``laimco fading`` ("-": dimensionless).
FADING_UNITS = {
    "outage": "-",
    "samples": "draws",
    "distance_range_m": "m",
    "mean_distance_m": "m",
    "fading_gain_factor_quantile": "-",
    "fading_quantile_gain": "-",
    "static_log10_distortion_bound": "log10",
    "static_outage": "-",
    "static_outage_standard_error": "-",
    "adaptive_mean_log10_distortion_bound": "log10",
    "adaptive_log10_distortion_bound_q05": "log10",
    "adaptive_log10_distortion_bound_q50": "log10",
    "adaptive_log10_distortion_bound_q95": "log10",
    "adaptive_infeasible_fraction": "-",
    "value_of_channel_knowledge_log10": "decades",
    "static_d_log10_distortion_bound_d_outage": "decades",
    "static_d_log10_distortion_bound_d_k_factor": "decades",
    "static_d_log10_distortion_bound_d_shadowing_db": "decades/dB",
}


#: The --distance-range option's allowed form (its messages).
DISTANCE_RANGE_FORM = "expected MIN:MAX in metres with 0 < MIN <= MAX"


def fading_model(problem: Problem, fading: str, distance_range: str | None):
    """The model of ``--fading`` (:func:`~laimco_jax.fading.parse_fading`), with ``--distance-range MIN:MAX``
    [m] an :class:`~laimco_jax.fading.AnnulusFading` under the problem's path loss
    (:func:`~laimco_jax.outage.distance_range_fading`). ConfigError naming the option, the value and the
    allowed form or range (MIN > MAX, MIN <= 0, not two numbers, a configuration without path-loss fields)."""
    model = parse_fading(fading)
    if distance_range is None:
        return model
    from laimco_jax.sweep.cells import parse_distance_range

    label = f"--distance-range {distance_range!r}"
    try:
        low, high = parse_distance_range(distance_range)
    except ConfigError:
        raise ConfigError(f"{label}: {DISTANCE_RANGE_FORM}") from None
    return distance_range_fading(problem, model, low, high, label)


def outage_problem(problem: Problem, fading: str | None, outage: float | None,
                   distance_range: str | None = None) -> tuple[Problem, dict[str, Any]]:
    """``laimco solve --fading MODEL --outage EPS [--distance-range MIN:MAX]``: ``problem`` at the gain's
    ε-quantile g·q_ε (ε default :data:`~laimco_jax.outage.DEFAULT_OUTAGE`), and the keys the output gains
    (``fading``, ``outage``, ``fading_gain_factor_quantile`` q_ε, ``fading_quantile_gain`` g·q_ε; with a
    distance range ``distance_range_m``, the quantile of the composite gain g(d)·|h|² over the distance
    and the fading, q_ε relative to g(MAX), the configuration's distance_m ignored). Without --fading the
    problem is unchanged; --outage or --distance-range alone is a ConfigError."""
    if fading is None:
        if outage is not None:
            raise ConfigError(f"--outage {outage!r} needs --fading MODEL (the channel model whose quantile it picks)")
        if distance_range is not None:
            raise ConfigError(f"--distance-range {distance_range!r} needs --fading MODEL (the fading at each distance)")
        return problem, {}
    model = fading_model(problem, fading, distance_range)
    outage = check_outage("--outage", DEFAULT_OUTAGE if outage is None else outage)
    quantile, gain = quantile_gain(problem, model, outage)
    record = {"fading": model.name, "outage": outage, **distance_keys(model, None),
              "fading_gain_factor_quantile": quantile, "fading_quantile_gain": float(gain)}
    return with_channel_gain(problem, gain), record


def fading_record(problem: Problem, fading: str, *, outage: float, samples: int, seed: int, scheme: str,
                  chunk_size: int, out: Path | None, distance_range: str | None = None) -> dict[str, Any]:
    """``laimco fading``: :func:`~laimco_jax.outage.summarize` of the Monte Carlo run, the static optimum's
    d log10 D̂*/dε and d log10 D̂*/dθ per fading parameter (``static_d_log10_distortion_bound_d_*``, where
    the static design is feasible), and with ``out`` the files of
    :func:`~laimco_jax.experiments.fading.write_fading` plus ``fading_summary.json`` (key ``files``).
    ``distance_range`` (``MIN:MAX`` [m], :func:`fading_model`): a distance per draw, uniform in area over
    the annulus, the configuration's distance_m ignored (gain factors relative to g(MAX))."""
    from laimco_jax.cli import json_text

    model = fading_model(problem, fading, distance_range)
    problem = at_outer_radius(problem, model)
    outage = check_outage("--outage", outage)
    samples = check_samples("--samples", samples)
    seed = check_seed("--seed", seed)
    check_range("--chunk-size", chunk_size, Range(1.0))
    result = monte_carlo(problem, model, outage, samples=samples, seed=seed, scheme=scheme, chunk_size=chunk_size)
    record = summarize(result)
    if found_point(int(result.static.solution.status)):
        derivatives = static_sensitivity(problem.astype(jnp.float64), model, outage, scheme)
        record["static_sensitivity_singular"] = bool(derivatives.pop(SINGULAR))
        for name, outputs in derivatives.items():
            record[f"static_d_log10_distortion_bound_d_{name}"] = float(outputs.log2_distortion_bound) * math.log10(2.0)
    if out is not None:
        from laimco_jax.experiments.fading import OUTAGE_GRID, static_curve_table, write_fading

        curve = static_curve_table(problem, model, sorted({*OUTAGE_GRID, outage}), scheme)
        paths = write_fading(result, curve, out)
        summary = Path(out) / "fading_summary.json"
        summary.write_text(json_text(record) + "\n")
        record["files"] = [str(p) for p in [*paths, summary]]
    return record


_OBJECTIVE = "bit (sum-log, max) or - (sum)"  # Σ w log2 D̂, max log2 D̂ or Σ w D̂
#: Units of the keys of ``laimco fading --users`` beyond :data:`FADING_UNITS` ("-": dimensionless).
CELL_FADING_UNITS = {
    "users": "users",
    "static_cell_objective": _OBJECTIVE,
    "static_user_outage": "-",
    "static_cell_outage": "-",
    "static_cell_outage_standard_error": "-",
    "cell_outage_independent": "-",
    "cell_outage_union_bound": "-",
    "adaptive_mean_cell_objective": _OBJECTIVE,
    "adaptive_cell_objective_q05": _OBJECTIVE,
    "adaptive_cell_objective_q50": _OBJECTIVE,
    "adaptive_cell_objective_q95": _OBJECTIVE,
    "value_of_channel_knowledge_objective": _OBJECTIVE,
}


def cell_draws_table(result) -> Any:
    """One row per joint draw of a :class:`~laimco_jax.outage.CellMonteCarlo`: ``draw``, ``gain_factor_K``
    and ``static_miss_K`` per user K (1-based), ``static_cell_miss``, ``adaptive_cell_objective`` (+inf: no
    design) and ``adaptive_status``."""
    import numpy as np
    import pandas as pd

    from laimco_jax.solvers import Status

    columns = {"draw": np.arange(result.gain_factor.shape[0])}
    for k in range(result.gain_factor.shape[1]):
        columns[f"gain_factor_{k + 1}"] = result.gain_factor[:, k]
        columns[f"static_miss_{k + 1}"] = result.user_miss[:, k]
    columns["static_cell_miss"] = result.user_miss.any(axis=1)
    columns["adaptive_cell_objective"] = result.adaptive_objective
    columns["adaptive_status"] = [Status(int(s)).name.lower() for s in result.adaptive_status]
    return pd.DataFrame(columns)


def cell_fading_record(users: Path, fading: str, *, objective: str | None, outage: float, samples: int, seed: int,
                       chunk_size: int, out: Path | None, refused: list[str] | None = None) -> dict[str, Any]:
    """``laimco fading --users CELL.toml``: :func:`~laimco_jax.outage.summarize_cell` of the cell's Monte Carlo
    run (independent draws per user, the static cell design at every user's ε-quantile gain and its cell
    outage, the adaptive cell design per draw). ``objective`` defaults to the file's; the file's server
    sharing must be ``equal``. With ``out``: ``fading_cell_draws.csv`` (:func:`cell_draws_table`),
    ``fading_cell_summary.json`` and ``fading_cell_cdf.png`` (the adaptive objective's CDF with the static
    level, :func:`~laimco_jax.experiments.fading.plot_draws_cdf`) (key ``files``). ``refused``: single-user flags given (a ConfigError)."""
    from laimco_jax.cell import check_objective, load_cell
    from laimco_jax.cli import json_text
    from laimco_jax.outage import cell_monte_carlo, summarize_cell

    if refused:
        raise ConfigError(f"--users: the cell file gives every user's configuration; drop {', '.join(refused)}")
    model = parse_fading(fading)
    outage = check_outage("--outage", outage)
    samples = check_samples("--samples", samples)
    seed = check_seed("--seed", seed)
    check_range("--chunk-size", chunk_size, Range(1.0))
    cell, options = load_cell(users)
    objective = check_objective(options.objective if objective is None else objective)
    result = cell_monte_carlo(cell, model, outage, objective=objective, samples=samples, seed=seed,
                              chunk_size=chunk_size, server_sharing=options.server_sharing)
    record = summarize_cell(result)
    if out is not None:
        out = Path(out)
        out.mkdir(parents=True, exist_ok=True)
        from laimco_jax.experiments.fading import plot_draws_cdf

        paths = [out / "fading_cell_draws.csv", out / "fading_cell_summary.json"]
        cell_draws_table(result).to_csv(paths[0], index=False)
        paths[1].write_text(json_text(record) + "\n")
        curve = (result.adaptive_objective, record["static_cell_objective"], f"static, ε = {outage:g} per user")
        paths.append(plot_draws_cdf({model.name: curve}, out / "fading_cell_cdf.png",
                                    xlabel=f"cell objective ({objective})",
                                    title="Adaptive cell design over joint channel draws vs the static design"))
        record["files"] = [str(p) for p in paths]
    return record
