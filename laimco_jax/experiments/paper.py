"""The paper's system-level figures (Figs. 4-6) and two it lacks, as tables and plots.

* Fig. 4 — log10 D̂ and the optimal ρ, ρ̃ against the delay budget T0 at the preset E0;
* Fig. 5 — the same against the energy budget E0 at the preset T0;
* Fig. 6 — the proposed design against the split point 0 … L at the preset budgets;
* SCA against the exact global optimum over the Fig. 4 grid (gap in log10 D̂, iterations);
* the sensitivity (elasticity) of D̂ at the optimum to T0, E0 and the distance d.

Every table is a pandas DataFrame with one row per (model, figure point, scheme); the figures are
drawn from those tables only, so a user can re-plot the CSV files. All points of all figures form one
batch of problems, solved once per scheme (one compilation per scheme). Budgets and grids are in
seconds [s] and joules [J]; D̂ is the distortion bound of (41), reported as log10 D̂.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd

from laimco_jax.distortion import LOG10_2, log2_distortion_rate_bound
from laimco_jax.experiments.plots import figure_grid, save_figure
from laimco_jax.params import (
    BUDGET_PRESETS,
    MODEL_SPECS,
    PUBLISHED_SUFFIX,
    Problem,
    make_problem,
)
from laimco_jax.sensitivity import elasticities
from laimco_jax.solvers import scheme_problem, solve_exact, solve_sca
from laimco_jax.solvers.solution import Status, found_point
from laimco_jax.system import rate_bps

__all__ = [
    "BENCHMARKS",
    "MODELS",
    "FigureGrids",
    "figure_points",
    "largest_upload_bits",
    "panel_upload_bits",
    "RANDOM_PRUNING_PANELS",
    "points_problem",
    "absent_parts",
    "solve_points",
    "on_device_split",
    "solve_on_device_end",
    "solve_with_on_device_end",
    "sca_against_exact",
    "sensitivity_table",
    "laplace_scale_shift",
    "check_claims",
    "claims_side_by_side",
    "benchmark_counts",
    "CLAIMS",
    "PROFILES",
    "profile_of",
    "best_splits",
    "AssumptionGrids",
    "split_points",
    "assumption_points",
    "best_split_of",
    "best_split_by_assumption",
    "SLOW_SERVER_EXAMPLE",
    "slow_server_example",
    "plot_budget_figure",
    "plot_split_figure",
    "plot_sca_figure",
    "plot_sensitivity_figure",
    "plot_assumptions_figure",
]

#: The paper's four benchmark schemes of Figs. 4 and 5 (Section VI-B).
BENCHMARKS: tuple[str, ...] = ("fixed-power", "fixed-frequency", "device-pruning-only", "server-pruning-only")
MODELS: tuple[str, ...] = ("bert-base", "bart-base")
#: Inputs whose elasticity is reported (field names of the configuration).
SENSITIVITY_FIELDS: tuple[str, ...] = ("delay_s", "energy_j", "distance_m")
#: Columns of a solution kept in the tables.
SOLUTION_COLUMNS: tuple[str, ...] = (
    "log10_distortion_bound", "rho", "rho_server", "f_device_hz", "p_w", "f_server_hz", "delay_s", "energy_j",
    "retained_params",
)


@dataclasses.dataclass(frozen=True)
class FigureGrids:
    """Grids of the figures: ``points`` values of T0 in [delay_min_s, delay_max_s] and of E0 in
    [energy_min_j, energy_max_j], both geometric (the interesting part is the stringent end)."""

    points: int = 25
    delay_min_s: float = 0.05
    delay_max_s: float = 0.8
    energy_min_j: float = 1e-3
    energy_max_j: float = 0.1

    @classmethod
    def quick(cls) -> FigureGrids:
        return cls(points=9)

    def delays(self) -> np.ndarray:
        return np.geomspace(self.delay_min_s, self.delay_max_s, self.points)

    def energies(self) -> np.ndarray:
        return np.geomspace(self.energy_min_j, self.energy_max_j, self.points)


def largest_upload_bits(problem: Problem):
    """The largest upload θ [bits] at which the proposed design meets both budgets T0 and E0.

    With both parts pruned away (ρ = ρ̃ = 0, the proposed design's lower bounds) computing costs
    nothing and only the upload remains, eqs. (6), (7). Its energy per bit p/r(p) grows with p, so the
    cheapest upload within T0 takes all of it: θ fits iff θ ≤ T0 · r(p) at p = min(P_max, E0/T0), the
    power that spends E0 in T0 (eq. (2)). Hence θ* = T0 · r(min(P_max, E0/T0)), exact: every benchmark
    restricts the proposed design, so above θ* every scheme is infeasible; at or below it the proposed
    design is feasible. (The least upload energy θ N0 ln2/g alone gives the supremum as T0 → ∞.)
    Elementwise over a batch of problems.
    """
    T0, E0 = problem.budget.delay_s, problem.budget.energy_j
    return T0 * rate_bps(problem.system, jnp.minimum(problem.system.p_max_w, E0 / T0))


@dataclasses.dataclass(frozen=True)
class RandomPruningPanel:
    """A panel (d) of Figs. 4, 5: BERT-base with random pruning at the paper's other budget, T0 = 0.21 s
    or E0 = 0.0011 J. Pruning paradigms differ only in task accuracy, not in (P1): the system-level
    panel differs from (c) by its budget alone."""

    figure: str
    delay_s: float | None
    energy_j: float | None


#: Figs. 4(d) (E0 = 0.0011 J against T0) and 5(d) (T0 = 0.21 s against E0), of BERT-base.
RANDOM_PRUNING_PANELS = (RandomPruningPanel("fig4", None, 0.0011), RandomPruningPanel("fig5", 0.21, None))
#: The budget pair of the two panels, at which :func:`panel_upload_bits` fits the upload.
RANDOM_PRUNING_BUDGET = dict(delay_s=0.21, energy_j=0.0011)


def panel_upload_bits(model: str, preset: str = "paper") -> float:
    """θ [bits] of the panels (d): the preset's embedding if the panels' budget pair
    :data:`RANDOM_PRUNING_BUDGET` admits it, else :func:`largest_upload_bits` there. (With the paper's
    786,432 bits every scheme is infeasible at E0 = 0.0011 J: the upload alone needs more.)"""
    problem = make_problem(preset, model, overrides=RANDOM_PRUNING_BUDGET).astype(jnp.float64)
    return float(min(problem.model.embedding_bits, largest_upload_bits(problem)))


def figure_points(grids: FigureGrids, models: Sequence[str] = MODELS, preset: str = "paper") -> pd.DataFrame:
    """One row per figure point: ``model``, ``profile`` (:func:`profile_of`), ``figure`` (fig4/fig5/fig6, or fig4d/fig5d: the random-pruning
    panels of BERT-base models), ``panel`` (its title), ``split``, ``budget_delay_s``, ``budget_energy_j``,
    ``upload_bits`` (θ where the panel sets it, else NaN: the preset's); budgets not on the figure's axis
    are the model's preset (the paper's)."""
    rows = []
    for model in models:
        budget = BUDGET_PRESETS[model]
        spec = MODEL_SPECS[model]
        common = dict(model=model, profile=profile_of(model), panel=model, split=spec.default_split, upload_bits=np.nan)
        rows += [dict(common, figure="fig4", budget_delay_s=t, budget_energy_j=budget["energy_j"])
                 for t in grids.delays()]
        rows += [dict(common, figure="fig5", budget_delay_s=budget["delay_s"], budget_energy_j=e)
                 for e in grids.energies()]
        rows += [dict(common, figure="fig6", split=k, budget_delay_s=budget["delay_s"], budget_energy_j=budget["energy_j"])
                 for k in range(spec.num_layers + 1)]
        if model.startswith("bert-base"):
            rows += _random_pruning_rows(grids, model, preset)
    return pd.DataFrame(rows)


def _random_pruning_rows(grids: FigureGrids, model: str, preset: str) -> list[dict]:
    bits = panel_upload_bits(model, preset)
    rows = []
    for panel in RANDOM_PRUNING_PANELS:
        label = (f"{model} (d), random pruning, " + (f"E0 = {panel.energy_j} J" if panel.delay_s is None
                                                      else f"T0 = {panel.delay_s} s") + f", θ = {bits:,.0f} bits")
        axis = grids.delays() if panel.delay_s is None else grids.energies()
        rows += [dict(model=model, profile=profile_of(model), figure=panel.figure + "d", panel=label, split=MODEL_SPECS[model].default_split,
                      upload_bits=bits, budget_delay_s=x if panel.delay_s is None else panel.delay_s,
                      budget_energy_j=panel.energy_j if panel.delay_s is None else x) for x in axis]
    return rows


def points_problem(points: pd.DataFrame, preset: str = "paper", dtype=jnp.float64) -> Problem:
    """The batch of problems (shape ``(len(points),)``) of ``points`` on system preset ``preset``."""
    problems = [
        make_problem(preset, row.model, split=int(row.split), overrides=_point_overrides(row))
        for row in points.itertuples()
    ]
    return jax.tree_util.tree_map(lambda *leaves: jnp.asarray(np.array(leaves), dtype), *problems)


#: Optional columns of a figure point -> the configuration field they override where not NaN.
POINT_FIELDS: dict[str, str] = {"upload_bits": "model.embedding_bits", "input_bits": "model.input_bits",
                                "flops_per_cycle_server": "system.flops_per_cycle_server"}


def _point_overrides(row) -> dict[str, float]:
    budgets = {"budget.delay_s": row.budget_delay_s, "budget.energy_j": row.budget_energy_j}
    fields = {key: getattr(row, column, np.nan) for column, key in POINT_FIELDS.items()}
    return {**budgets, **{key: value for key, value in fields.items() if not np.isnan(value)}}


#: Columns that describe one part (device, server): blank where the part is absent.
PART_COLUMNS: dict[str, tuple[str, ...]] = {"device": ("rho", "f_device_hz"), "server": ("rho_server", "f_server_hz")}


def absent_parts(problem: Problem, scheme: str = "proposed") -> dict[str, np.ndarray]:
    """``{"device": mask, "server": mask}``: where the scheme's split leaves a part nothing to run
    (q = N_FLOP = 0, e.g. split 0 or on-server; s = Ñ_FLOP = 0, BERT's split L or on-device). Its
    pruning ratio and clock are then arbitrary and are not reported."""
    model = scheme_problem(problem, scheme).model
    return {"device": np.asarray((model.params_device == 0) & (model.flops_device == 0)),
            "server": np.asarray((model.params_server == 0) & (model.flops_server == 0))}


def _solution_frame(points: pd.DataFrame, solution, scheme: str, method: str, problem: Problem) -> pd.DataFrame:
    frame = points.copy()
    frame["scheme"], frame["method"] = scheme, method
    frame["status"] = [Status(int(s)).name.lower() for s in np.asarray(solution.status)]
    frame["feasible"] = np.asarray(found_point(np.asarray(solution.status)))
    for name in SOLUTION_COLUMNS:
        frame[name] = np.asarray(getattr(solution, name), np.float64)
    frame["iterations"] = np.asarray(solution.iterations)
    # Infeasible points carry the solver's violating point: blank the values a plot would show.
    frame.loc[~frame["feasible"], list(SOLUTION_COLUMNS)] = np.nan
    for part, absent in absent_parts(problem, scheme).items():
        frame.loc[np.broadcast_to(absent, len(frame)), list(PART_COLUMNS[part])] = np.nan
    return frame


def solve_points(points: pd.DataFrame, schemes: Sequence[str], preset: str = "paper") -> pd.DataFrame:
    """Exact optimum of every point under every scheme: ``points`` x ``schemes`` rows."""
    problem = points_problem(points, preset)
    return pd.concat([_solution_frame(points, solve_exact(problem, s), s, "exact", problem) for s in schemes],
                     ignore_index=True)


def on_device_split(model: str) -> int:
    """Fig. 6's position of on-device inference (the whole model on the device, nothing uploaded): split L
    where it leaves the server nothing (BERT-base), else L + 1 (BART-base splits its encoder only, so its
    split L keeps the decoder on the server; the ``on-device`` scheme moves the decoder to the device too)."""
    spec = MODEL_SPECS[model]
    last = spec.splits[spec.num_layers]
    return spec.num_layers + int(last["params_server"] + last["flops_server"] > 0)


def solve_on_device_end(points: pd.DataFrame, preset: str = "paper") -> pd.DataFrame:
    """Fig. 6's on-device end where no split reaches it: the ``on-device`` scheme (q ← q + s, N ← N + Ñ,
    θ = 0) at split L of each such model's Fig. 6 points, reported at ``split`` = :func:`on_device_split`."""
    last = points.model.map(lambda m: MODEL_SPECS[m].num_layers)
    beyond = points.model.map(on_device_split) > last
    ends = points[(points.figure == "fig6") & (points.split == last) & beyond]
    if ends.empty:
        return ends.assign(scheme="on-device")
    table = solve_points(ends, ("on-device",), preset)
    return table.assign(split=table.model.map(on_device_split))


def solve_with_on_device_end(points: pd.DataFrame, schemes: Sequence[str] = ("proposed",),
                             preset: str = "paper") -> pd.DataFrame:
    """:func:`solve_points` and, for Fig. 6's curves, :func:`solve_on_device_end`, in one table."""
    ends = solve_on_device_end(points, preset)
    return pd.concat([solve_points(points, schemes, preset)] + ([ends] if len(ends) else []), ignore_index=True)


def sca_against_exact(points: pd.DataFrame, preset: str = "paper") -> pd.DataFrame:
    """The paper's SCA and the exact solver on the same points (proposed design).

    Columns: the point, ``log10_exact``, ``log10_sca``, ``gap_log10`` = log10 D̂_SCA − log10 D̂* ≥ 0
    up to the exact solver's certificate, ``sca_iterations``, and both statuses.
    """
    problem = points_problem(points, preset)
    exact = _solution_frame(points, solve_exact(problem), "proposed", "exact", problem)
    sca = _solution_frame(points, solve_sca(problem), "proposed", "sca", problem)
    frame = points.copy()
    frame["status_exact"], frame["status_sca"] = exact["status"], sca["status"]
    frame["log10_exact"] = exact["log10_distortion_bound"]
    frame["log10_sca"] = sca["log10_distortion_bound"]
    frame["gap_log10"] = frame["log10_sca"] - frame["log10_exact"]
    frame["sca_iterations"] = sca["iterations"]
    return frame


def sensitivity_table(points: pd.DataFrame, preset: str = "paper") -> pd.DataFrame:
    """Elasticities d ln D̂*/d ln x of the proposed optimum for x in :data:`SENSITIVITY_FIELDS`.

    A value of -2 means 1% more of x lowers D̂ by 2%. Infeasible points get NaN (no optimum).
    """
    problem = points_problem(points, preset)
    of_bound = elasticities(problem)["log2_distortion_bound"]
    feasible = np.asarray(found_point(solve_exact(problem).status))
    frame = points.copy()
    for field in SENSITIVITY_FIELDS:
        section = "budget" if field in ("delay_s", "energy_j") else "system"
        value = np.asarray(getattr(getattr(of_bound, section), field), np.float64)
        frame[f"elasticity_{field}"] = np.where(feasible, value, np.nan)
    return frame


def laplace_scale_shift(table: pd.DataFrame, scale: float) -> np.ndarray:
    """log10 D̂ of eq. (41) at each row's optimum with h(w) = q_p log2(2e β') for the Laplace scale β' =
    ``scale`` [weight units], minus the row's log10 D̂ (the preset's β), per row of :func:`solve_points`.

    The rate R = (ρq + ρ̃s) b (``retained_params`` b) is kept, and h/(q + s) = log2(2eβ) enters (41)
    additively (docs/theory.md#distortion-bound-in-log-space), so every feasible row gives log10(β'/β):
    β moves the level of D̂, never an optimum, a feasibility or a ranking. NaN where infeasible.
    """
    specs = table.model.map(MODEL_SPECS)
    dim = specs.map(lambda spec: sum(spec.profile_fields()[k] for k in ("params_device", "params_server"))).to_numpy()
    bits = specs.map(lambda spec: spec.bits_per_weight).to_numpy()
    entropy = dim * np.log2(2.0 * np.e * scale)
    log10_new = np.asarray(log2_distortion_rate_bound(table.retained_params.to_numpy() * bits, dim, entropy)) * LOG10_2
    return log10_new - table.log10_distortion_bound.to_numpy()


#: The paper's claims about Figs. 4-6: id -> (its sentence, quoted from Sec. VI, and what we test).
CLAIMS: dict[str, tuple[str, str]] = {
    "improves_with_delay": (
        "it is observed that the overall performance improves as the delay thresholds increases",
        "the proposed D̂ never increases with T0 (Fig. 4)"),
    "outperforms": (
        "the proposed design outperforms all benchmark schemes",
        "per benchmark: points where the proposed D̂ is strictly lower, equal (a tie), or the benchmark is "
        "infeasible; holds if the proposed design is never worse and, against every benchmark, strictly "
        "better at some point where the benchmark is feasible (Figs. 4, 5)"),
    "server_only_infeasible": (
        "as shown in Figs. 4(a) and 4(c), under stringent delay constraints, the pruning server only scheme "
        "becomes infeasible",
        "server-only pruning is infeasible at the smallest T0 where the proposed design is feasible (Fig. 4)"),
    "device_only_infeasible": (
        "under stringent energy budgets, the pruning device only scheme becomes infeasible (e.g., in Fig. 5(a))",
        "device-only pruning is infeasible at the smallest E0 where the proposed design is feasible (Fig. 5)"),
    "interior_split": (
        "co-inference with a properly selected split point outperforms both on-device and on-server inference",
        "the best split k (smallest D̂) is interior at the preset budgets (Fig. 6): 0 < k and better than "
        "on-device inference (BERT: k < L; BART: k ≤ L, its split L keeps the decoder on the server, and "
        "on-device, decoder included, is L + 1)"),
}
#: Published presets and measured profiles: the two runs of every system figure.
PROFILES: dict[str, tuple[str, ...]] = {"published": tuple(m + PUBLISHED_SUFFIX for m in MODELS), "measured": MODELS}


def profile_of(model: str) -> str:
    """``"published"`` for a ``*-published`` preset, else ``"measured"``."""
    return "published" if model.endswith(PUBLISHED_SUFFIX) else "measured"


def _claim(claim: str, model: str, holds: bool, detail: str) -> dict:
    return dict(claim=claim, model=model.removesuffix(PUBLISHED_SUFFIX), profile=profile_of(model),
                holds=bool(holds), detail=detail)


def _improves_with_delay(rows: pd.DataFrame, model: str) -> dict:
    proposed = rows[(rows.figure == "fig4") & (rows.scheme == "proposed") & rows.feasible].sort_values("budget_delay_s")
    rises = int((np.diff(proposed.log10_distortion_bound.to_numpy()) > 1e-9).sum())
    detail = (f"log10 D̂ from {proposed.log10_distortion_bound.max():.4g} to {proposed.log10_distortion_bound.min():.4g} "
              f"over the {len(proposed)} feasible T0; {rises} rises")
    return _claim("improves_with_delay", model, rises == 0 and len(proposed) > 1, detail)


def benchmark_counts(table: pd.DataFrame, rtol: float = 1e-9) -> pd.DataFrame:
    """Per (model, benchmark) over the Figs. 4, 5 points: ``better`` (proposed D̂ strictly lower),
    ``tie`` (equal within ``rtol``), ``worse``, ``benchmark_infeasible`` (proposed feasible, benchmark
    not), ``both_infeasible`` and ``proposed_only_infeasible`` (a benchmark feasible where the proposed
    design is not: impossible, every benchmark restricts it)."""
    keys = ["model", "figure", "split", "budget_delay_s", "budget_energy_j"]
    rows = table[table.figure.isin(["fig4", "fig5"])]
    proposed = rows[rows.scheme == "proposed"].set_index(keys)
    out = []
    for scheme in BENCHMARKS:
        other = rows[rows.scheme == scheme].set_index(keys).reindex(proposed.index)
        excess = proposed.log10_distortion_bound - other.log10_distortion_bound
        tied = excess.abs() <= rtol * np.maximum(1.0, other.log10_distortion_bound.abs())
        both = other.feasible & proposed.feasible
        counts = pd.DataFrame(dict(
            better=both & ~tied & (excess < 0), tie=both & tied, worse=both & ~tied & (excess > 0),
            benchmark_infeasible=proposed.feasible & ~other.feasible, both_infeasible=~proposed.feasible & ~other.feasible,
            proposed_only_infeasible=~proposed.feasible & other.feasible.astype(bool)))
        out.append(counts.groupby(level="model").sum().reset_index().assign(benchmark=scheme))
    columns = ["model", "benchmark", "better", "tie", "worse", "benchmark_infeasible", "both_infeasible",
               "proposed_only_infeasible"]
    return pd.concat(out, ignore_index=True)[columns].sort_values(["model", "benchmark"], ignore_index=True)


def _outperforms(counts: pd.DataFrame, model: str) -> dict:
    rows = counts[counts.model == model]
    never_worse = (rows.worse + rows.proposed_only_infeasible == 0).all()
    always_beaten = (rows.better > 0).all()
    detail = "; ".join(f"{r.benchmark}: better {r.better}, tie {r.tie}, benchmark infeasible {r.benchmark_infeasible}"
                       + (f", worse {r.worse}" if r.worse else "") for r in rows.itertuples())
    return _claim("outperforms", model, never_worse and always_beaten, detail)


def _turns_infeasible(rows: pd.DataFrame, model: str, claim: str, figure: str, scheme: str, axis: str) -> dict:
    rows = rows[rows.figure == figure]
    bench = rows[rows.scheme == scheme].set_index(axis).feasible
    feasible_prop = rows[(rows.scheme == "proposed") & rows.feasible][axis]
    lost = np.sort([x for x in feasible_prop if not bench[x]])
    tightest = feasible_prop.min() if len(feasible_prop) else float("nan")
    detail = (f"{scheme} infeasible at {len(lost)} {axis} where the proposed design is feasible"
              + (f" (up to {lost.max():.4g})" if lost.size else "") + f"; proposed feasible from {tightest:.4g}")
    return _claim(claim, model, len(feasible_prop) > 0 and not bench[tightest], detail)


def split_curve_rows(table: pd.DataFrame) -> pd.DataFrame:
    """Fig. 6's curve: the proposed rows at splits 0 … L and the on-device end beyond L
    (:func:`solve_on_device_end`) where there is one."""
    fig6 = table[table.figure == "fig6"]
    beyond = fig6.split > fig6.model.map(lambda m: MODEL_SPECS[m].num_layers)
    return fig6[(fig6.scheme == "proposed") | ((fig6.scheme == "on-device") & beyond)]


def best_splits(table: pd.DataFrame) -> pd.DataFrame:
    """The best split (largest retained parameters ⇔ smallest D̂; :func:`best_split_of`) per model on
    Fig. 6's curve (:func:`split_curve_rows`)."""
    rows = split_curve_rows(table)
    best = [dict(model=model, **best_split_of(curve)) for model, curve in rows.groupby("model", sort=False)]
    return pd.DataFrame(best).rename(columns=dict(best_split="split", log10_best="log10_distortion_bound"))


# ----------------------------------------------------------------------------- Fig. 6's assumptions

#: The raw input as large as an fp16 or fp32 embedding: 2 and 4 times the 8-bit embedding of BERT-base's
#: split 1 (128 tokens x 768 x 16 or 32 bits) [bits].
EMBEDDING_SIZED_INPUTS: dict[str, float] = {"fp16": 1_572_864.0, "fp32": 3_145_728.0}


@dataclasses.dataclass(frozen=True)
class AssumptionGrids:
    """The two axes of ``fig6_assumptions``: the raw-input size ``input_bits`` [bits] (geometric from the
    token ids' 4,096 bits to an fp32 embedding, plus :data:`EMBEDDING_SIZED_INPUTS`) and the server's
    FLOPs per cycle c̃ (16 to 256 in steps of √2, around the paper's 128), at each model's preset budgets."""

    input_bits_points: int = 16
    flops_per_cycle_server: tuple[float, ...] = tuple(2.0 ** np.arange(4.0, 8.5, 0.5))

    def input_bits(self) -> np.ndarray:
        grid = np.geomspace(4096.0, EMBEDDING_SIZED_INPUTS["fp32"], self.input_bits_points)
        return np.unique(np.r_[grid, list(EMBEDDING_SIZED_INPUTS.values())])

    def axes(self) -> dict[str, np.ndarray]:
        """Assumption (a :data:`POINT_FIELDS` column) -> its values."""
        return {"input_bits": self.input_bits(), "flops_per_cycle_server": np.asarray(self.flops_per_cycle_server)}


def split_points(model: str, delay_s: float, energy_j: float, **fields: float) -> pd.DataFrame:
    """One point per split 0 … L of ``model`` at budgets T0 = ``delay_s`` [s], E0 = ``energy_j`` [J] and
    the :data:`POINT_FIELDS` values ``fields`` (e.g. ``flops_per_cycle_server=32``), for
    :func:`solve_points`."""
    splits = range(MODEL_SPECS[model].num_layers + 1)
    return pd.DataFrame([dict(model=model, profile=profile_of(model), figure="fig6", split=k, budget_delay_s=delay_s,
                              budget_energy_j=energy_j, **fields) for k in splits])


def assumption_points(grids: AssumptionGrids, models: Sequence[str] = MODELS) -> pd.DataFrame:
    """:func:`split_points` at each model's preset budgets for every value of every assumption of
    ``grids``; columns ``assumption`` (the field varied) and ``value`` say which."""
    frames = [split_points(model, BUDGET_PRESETS[model]["delay_s"], BUDGET_PRESETS[model]["energy_j"], **{field: value})
              .assign(assumption=field, value=value)
              for model in models for field, values in grids.axes().items() for value in values]
    return pd.concat(frames, ignore_index=True)


#: log10 D̂ within this of a curve's minimum counts as a tie (several splits at the unpruned floor).
SPLIT_TIE_LOG10 = 1e-6


def best_split_of(curve: pd.DataFrame) -> dict:
    """The best split of one proposed D̂-by-split curve (``split``, ``feasible``, ``log10_distortion_bound``):
    the smallest k within :data:`SPLIT_TIE_LOG10` of the least log10 D̂; −1 where no split is feasible."""
    feasible = curve[curve.feasible.astype(bool)]
    if not len(feasible):
        return dict(best_split=-1, log10_best=np.nan)
    least = feasible.log10_distortion_bound.min()
    return dict(best_split=int(feasible[feasible.log10_distortion_bound <= least + SPLIT_TIE_LOG10].split.min()),
                log10_best=float(least))


def best_split_by_assumption(table: pd.DataFrame) -> pd.DataFrame:
    """Per (model, assumption, value) of :func:`solve_with_on_device_end` on :func:`assumption_points`: the
    best split of Fig. 6's curve (:func:`split_curve_rows`, :func:`best_split_of`), its log10 D̂ and
    ``interior`` (0 < k < :func:`on_device_split`)."""
    rows = []
    for (model, assumption, value), curve in split_curve_rows(table).groupby(
            ["model", "assumption", "value"], sort=False):
        best = best_split_of(curve)
        rows.append(dict(model=model, profile=profile_of(model), assumption=assumption, value=value, **best,
                         interior=0 < best["best_split"] < on_device_split(model)))
    return pd.DataFrame(rows)


#: A point where a slower server (c̃ = 32 FLOPs/cycle) gives BERT-base an interior best split.
SLOW_SERVER_EXAMPLE = dict(model="bert-base", delay_s=0.158, energy_j=0.030, flops_per_cycle_server=32.0)


def slow_server_example(preset: str = "paper") -> pd.DataFrame:
    """The proposed design at every split of :data:`SLOW_SERVER_EXAMPLE` (:func:`solve_points` rows)."""
    example = dict(SLOW_SERVER_EXAMPLE)
    return solve_points(split_points(example.pop("model"), **example), ("proposed",), preset)


def check_claims(table: pd.DataFrame) -> pd.DataFrame:
    """The paper's :data:`CLAIMS` tested on ``solve_points``' table: one row per (claim, model), with
    ``model`` the base name, ``profile`` (published or measured), ``holds`` and a ``detail`` with numbers."""
    counts = benchmark_counts(table)
    best = best_splits(table).set_index("model")
    claims = []
    for model, rows in table.groupby("model", sort=False):
        claims.append(_improves_with_delay(rows, model))
        claims.append(_outperforms(counts, model))
        claims.append(_turns_infeasible(rows, model, "server_only_infeasible", "fig4", "server-pruning-only",
                                        "budget_delay_s"))
        claims.append(_turns_infeasible(rows, model, "device_only_infeasible", "fig5", "device-pruning-only",
                                        "budget_energy_j"))
        end, k = on_device_split(model), int(best.loc[model, "split"])
        device = "" if end == MODEL_SPECS[model].num_layers else f", {end} = on-device, decoder included"
        claims.append(_claim("interior_split", model, 0 < k < end, f"best split {k} of 0..{end} "
                             f"(log10 D̂ = {best.loc[model, 'log10_distortion_bound']:.4g}{device})"))
    return pd.DataFrame(claims)


def claims_side_by_side(claims: pd.DataFrame) -> pd.DataFrame:
    """One row per (claim, model): the paper's sentence, what we test, the result as published and as
    measured (holds: detail) and the verdict."""
    rows = []
    for (claim, model), group in claims.groupby(["claim", "model"], sort=False):
        by = group.set_index("profile")
        result = {p: (("yes: " if by.loc[p, "holds"] else "**no**: ") + by.loc[p, "detail"]) if p in by.index else "–"
                  for p in PROFILES}
        holds = {p: p in by.index and bool(by.loc[p, "holds"]) for p in PROFILES}
        verdict = ("reproduced" if all(holds.values()) else "not reproduced" if not any(holds.values())
                   else f"reproduced {'as published' if holds['published'] else 'as measured'} only")
        quote, statement = CLAIMS[claim]
        rows.append(dict(claim=claim, model=model, paper=f"“{quote}”", tested=statement,
                         as_published=result["published"], as_measured=result["measured"], verdict=verdict))
    return pd.DataFrame(rows)


# ----------------------------------------------------------------------------- figures

_AXES = {"fig4": ("budget_delay_s", "delay budget T0 [s]"), "fig5": ("budget_energy_j", "energy budget E0 [J]"),
         "fig6": ("split", "split point k (0 = on-server)")}
_MARKERS = dict(zip(("proposed",) + BENCHMARKS, "osv^D"))


def _mark_infeasible(ax, frame: pd.DataFrame, x: str, row: int = 0, color: str = "red") -> None:
    """Infeasible points as crosses near the bottom of the axes (one row of crosses per scheme)."""
    bad = frame[~frame.feasible]
    if len(bad):
        ax.scatter(bad[x], np.full(len(bad), 0.03 + 0.045 * row), marker="x", color=color,
                   transform=ax.get_xaxis_transform(), clip_on=False, zorder=3)


def plot_budget_figure(table: pd.DataFrame, figure: str, path) -> None:
    """Fig. 4 (``figure="fig4"``) or Fig. 5 (``"fig5"``): per panel (a model, then the random-pruning
    panel (d) of ``figure + "d"`` rows), log10 D̂ of every scheme, then the proposed ρ and ρ̃, against the
    budget; a scheme's infeasible points are crosses in its colour along the bottom of the panel (one
    row per scheme)."""
    x, xlabel = _AXES[figure]
    rows = table[table.figure.isin([figure, figure + "d"])]
    panels = list(dict.fromkeys(rows.panel))
    fig, axes = figure_grid(2 * len(panels))
    for i, panel in enumerate(panels):
        ax_d, ax_r = axes[2 * i], axes[2 * i + 1]
        for i_scheme, (scheme, group) in enumerate(rows[rows.panel == panel].groupby("scheme", sort=False)):
            group = group.sort_values(x)
            (line,) = ax_d.plot(group[x], group.log10_distortion_bound, marker=_MARKERS.get(scheme, "."), ms=4,
                                label=f"{scheme} ({(~group.feasible).sum()} infeasible ×)")
            _mark_infeasible(ax_d, group, x, i_scheme, line.get_color())
        proposed = rows[(rows.panel == panel) & (rows.scheme == "proposed")].sort_values(x)
        ax_r.plot(proposed[x], proposed.rho, marker="o", ms=4, label="ρ (device)")
        ax_r.plot(proposed[x], proposed.rho_server, marker="s", ms=4, label="ρ̃ (server)")
        _mark_infeasible(ax_r, proposed, x)
        span = rows[rows.panel == panel][x]
        for ax in (ax_d, ax_r):
            ax.set_xlabel(xlabel)
            ax.set_xlim(span.min() - 0.03 * np.ptp(span), span.max() + 0.03 * np.ptp(span))  # infeasible ends too
            ax.grid(alpha=0.3)
        ax_d.set_ylabel("log10 D̂")
        ax_d.set_title(f"{panel}:\ndistortion bound", fontsize=8)
        ax_r.set_ylabel("remaining fraction")
        ax_r.set_title(f"{panel}:\nproposed pruning ratios", fontsize=8)
        ax_d.legend(fontsize=7)
        ax_r.legend(fontsize=7)
    save_figure(fig, path)


def plot_split_figure(table: pd.DataFrame, path) -> None:
    """Fig. 6: per model, log10 D̂ and ρ, ρ̃ of the proposed design against the split (and on-device
    inference beyond BART's split L, :func:`split_curve_rows`), best split starred. The ratio of an absent
    part (ρ at split 0, ρ̃ at BERT's split L and on-device) is NaN in the table and not drawn."""
    rows = split_curve_rows(table)
    best = best_splits(table).set_index("model")
    models = list(dict.fromkeys(rows.model))
    fig, axes = figure_grid(2 * len(models))
    for i, model in enumerate(models):
        group = rows[rows.model == model].sort_values("split")
        ax_d, ax_r = axes[2 * i], axes[2 * i + 1]
        ax_d.plot(group.split, group.log10_distortion_bound, marker="o", ms=4, label="proposed")
        if best.loc[model, "split"] >= 0:
            ax_d.scatter([best.loc[model, "split"]], [best.loc[model, "log10_distortion_bound"]], marker="*", s=200,
                         color="gold", edgecolor="black", zorder=4, label=f"best split {best.loc[model, 'split']}")
        _mark_infeasible(ax_d, group, "split")
        ax_r.plot(group.split, group.rho, marker="o", ms=4, label="ρ (device)")
        ax_r.plot(group.split, group.rho_server, marker="s", ms=4, label="ρ̃ (server)")
        end = on_device_split(model)
        for ax in (ax_d, ax_r):
            if end > MODEL_SPECS[model].num_layers:
                ax.set_xticks(range(end + 1), [*map(str, range(end)), "on-\ndevice"])
            ax.set_xlabel(_AXES["fig6"][1])
            ax.grid(alpha=0.3)
            ax.legend(fontsize=7)
        ax_d.set_ylabel("log10 D̂")
        ax_d.set_title(f"{model}: distortion bound by split")
        ax_r.set_ylabel("remaining fraction")
        ax_r.set_title(f"{model}: proposed pruning ratios")
    save_figure(fig, path)


def plot_sca_figure(table: pd.DataFrame, path) -> None:
    """SCA against the exact optimum over the Fig. 4 grid: the gap in log10 D̂ and SCA's iterations."""
    fig, (ax_g, ax_i) = figure_grid(2)
    for model, group in table.groupby("model", sort=False):
        group = group.sort_values("budget_delay_s")
        ax_g.plot(group.budget_delay_s, np.maximum(group.gap_log10, 1e-16), marker="o", ms=4, label=model)
        ax_i.plot(group.budget_delay_s, group.sca_iterations, marker="o", ms=4, label=model)
    ax_g.set_yscale("log")
    ax_g.set_ylabel("log10 D̂(SCA) − log10 D̂* (floored at 1e-16)")
    ax_g.set_title("SCA's gap to the certified optimum")
    ax_i.set_ylabel("SCA outer iterations")
    ax_i.set_title("SCA's iterations (cap 100)")
    for ax in (ax_g, ax_i):
        ax.set_xlabel(_AXES["fig4"][1])
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    save_figure(fig, path)


def plot_sensitivity_figure(table: pd.DataFrame, path) -> None:
    """Elasticities of D̂* to T0, E0 and d along the Fig. 4 grid, one panel per model."""
    models = list(dict.fromkeys(table.model))
    fig, axes = figure_grid(len(models))
    for ax, model in zip(axes, models):
        group = table[table.model == model].sort_values("budget_delay_s")
        for field in SENSITIVITY_FIELDS:
            ax.plot(group.budget_delay_s, group[f"elasticity_{field}"], marker="o", ms=4, label=f"d ln D̂*/d ln {field}")
        ax.axhline(0.0, color="black", lw=0.5)
        ax.set_xlabel(_AXES["fig4"][1])
        ax.set_ylabel("elasticity of D̂*")
        ax.set_title(f"{model}: sensitivity of the optimum")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    save_figure(fig, path)


def plot_assumptions_figure(best: pd.DataFrame, path) -> None:
    """``fig6_assumptions``: the best split of each model (:func:`best_split_by_assumption`) against the
    raw-input size [bits] and against the server's FLOPs per cycle c̃ (log axes); −1 = no split feasible."""
    labels = {"input_bits": "raw input uploaded at split 0 [bits]", "flops_per_cycle_server": "server FLOPs per cycle c̃"}
    fig, axes = figure_grid(len(labels))
    for ax, (assumption, label) in zip(axes, labels.items()):
        for i, (model, group) in enumerate(best[best.assumption == assumption].groupby("model", sort=False)):
            group = group.sort_values("value")
            ax.plot(group.value, group.best_split, marker="os^D"[i % 4], ms=7 - i, alpha=0.8, label=model,
                    linestyle="--" if profile_of(model) == "published" else "-")
        ax.set_xscale("log", base=2 if assumption == "flops_per_cycle_server" else 10)
        ax.set_xlabel(label)
        ax.set_ylabel("best split k (0 = on-server)")
        ax.yaxis.get_major_locator().set_params(integer=True)
        ax.set_title(f"best split against the {label.split(' [')[0]}", fontsize=8)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    save_figure(fig, path)
