"""Design under fading: the outage-constrained static design and the Monte Carlo over channel draws.

Static design. A design (ρ, f, p, ρ̃, f̃) fixed before the channel is drawn must meet T0 and E0 with
probability at least 1 − ε over the gain g·|h|² (:mod:`laimco_jax.fading`). At fixed power the upload
delay (6) and energy (7) fall as the gain rises, so the design meets both budgets exactly for gains
above a threshold, and the outage constraint is (P1) at the ε-quantile g·q_ε of the gain
(docs/theory.md#fading-channels): :func:`static_design` solves it with
:func:`~laimco_jax.solvers.solve_exact`, :func:`static_sensitivity` chains the implicit derivatives of
the optimum in the gain (:mod:`laimco_jax.sensitivity`) with dq_ε/dε and dq_ε/dθ.

Cells. :func:`static_cell_design` solves a cell of users (:func:`~laimco_jax.solvers.multiuser.solve_cell`)
with every user's gain at its ε-quantile; :func:`cell_monte_carlo` draws independent fadings per user,
measures the cell's outage (a joint draw where any user misses a budget) and solves the adaptive cell
design per draw; :func:`summarize_cell` reduces them.

A user at a random distance. With an :class:`~laimco_jax.fading.AnnulusFading` (built from a problem by
:func:`distance_range_fading`) the gain is g(d)·|h|² with d uniform in area over [d_min, d_max]; every
function here then reads the problem at the outer radius (:func:`at_outer_radius`, the configuration's
own distance_m is ignored) and the gain factor as Y = (d/d_max)^(−α)·|h|², so the static design is (P1)
at the ε-quantile of the composite gain g(d_max)·q_ε(Y) and the Monte Carlo draws a distance per draw.

Monte Carlo. :func:`monte_carlo` draws N gains (seeded, chunk-invariant), measures the static design's
outage on them (the fraction of draws where it misses a budget: ε up to sampling error when a budget
binds) and solves the adaptive design, (P1) at each drawn gain, in batches; :func:`summarize` reduces
the draws (mean and quantiles of log10 D̂, infeasible fraction, the value of knowing the channel).
"""

from __future__ import annotations

import functools
import math
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from laimco_jax.fading import (
    AnnulusFading,
    Fading,
    annulus_distance_draws,
    check_outage,
    check_samples,
    check_seed,
    gain_factor_draws,
    gain_factor_quantile,
    quantile_derivatives,
    with_distance_range,
)
from laimco_jax.params import ConfigError, Problem, SystemParams
from laimco_jax.sensitivity import SINGULAR, field_derivatives
from laimco_jax.solvers import Solution, Status, found_point, scheme_spec, solve_exact
from laimco_jax.solvers.solution import budget_excess
from laimco_jax.system import channel_gain, evaluate

__all__ = [
    "DEFAULT_CHUNK",
    "DEFAULT_OUTAGE",
    "REDUCTIONS",
    "SUMMARY_QUANTILES",
    "CellMonteCarlo",
    "CellStaticDesign",
    "MonteCarlo",
    "StaticDesign",
    "adaptive_reductions",
    "at_outer_radius",
    "cell_at_gains",
    "cell_gain_factors",
    "cell_monte_carlo",
    "cell_static_misses",
    "distance_keys",
    "distance_range_fading",
    "draw_gain_factors",
    "monte_carlo",
    "quantile_gain",
    "static_cell_design",
    "static_design",
    "static_misses",
    "static_sensitivity",
    "summarize",
    "summarize_cell",
    "with_channel_gain",
]

DEFAULT_OUTAGE = 0.05
#: Channel draws solved per batch by :func:`monte_carlo` (memory is linear in it).
DEFAULT_CHUNK = 16_384
#: The quantiles of the adaptive design's log10 D̂ reported by :func:`summarize`.
SUMMARY_QUANTILES = (0.05, 0.5, 0.95)


def with_channel_gain(problem: Problem, gain, *, validate: bool = True) -> Problem:
    """``problem`` with the channel given as ``gain`` [-] (``channel_gain``; the path-loss fields unset).

    ``validate`` checks the gain against its range (ConfigError outside); inside ``jit`` (a traced
    gain) pass False, which skips construction checks as pytree unflattening does.
    """
    unset = dict.fromkeys(SystemParams.PATHLOSS_FIELDS)
    system = (problem.system.replace if validate else problem.system.derive)(channel_gain=gain, **unset)
    return problem.derive(system=system)


def _pathloss_exponent(problem: Problem) -> float:
    """The problem's path-loss exponent α [-]; ConfigError if it gives channel_gain instead."""
    if problem.system.distance_m is None:
        raise ConfigError(f"needs the path-loss form of the channel ({', '.join(SystemParams.PATHLOSS_FIELDS)}); "
                          "the configuration gives system.channel_gain")
    return float(problem.system.pathloss_exponent)


def distance_range_fading(problem: Problem, fading: Fading, d_min_m: float, d_max_m: float,
                          label: str | None = None) -> AnnulusFading:
    """``fading`` for a user at a distance uniform in area over [``d_min_m``, ``d_max_m``] [m] under the path
    loss of ``problem`` (its exponent α; :func:`~laimco_jax.fading.with_distance_range`). ConfigError
    unless 0 < d_min <= d_max, the problem gives the path-loss fields and the gains g(d_min), g(d_max)
    lie in the gain's range (:func:`at_outer_radius`); its message starts with ``label`` (default: the range)."""
    label = label or f"distance range [{d_min_m!r}, {d_max_m!r}] m"
    try:
        model = with_distance_range(fading, d_min_m, d_max_m, _pathloss_exponent(problem))
        at_outer_radius(problem, model)
    except ConfigError as exc:
        raise ConfigError(f"{label}: {exc}") from None
    return model


def at_outer_radius(problem: Problem, fading: Fading | AnnulusFading) -> Problem:
    """``problem`` as the gain factors of ``fading`` are read against: unchanged for a :class:`Fading`; for
    an :class:`~laimco_jax.fading.AnnulusFading` at ``distance_m`` = d_max [m] (its own distance_m is
    ignored), whose path loss g(d_max) times Y = (d/d_max)^(−α)·|h|² is the gain. ConfigError if the problem
    gives channel_gain, has another path-loss exponent than the model, or g(d_min) or g(d_max) is out of range."""
    if not isinstance(fading, AnnulusFading):
        return problem
    alpha = _pathloss_exponent(problem)
    if alpha != fading.pathloss_exponent:
        raise ConfigError(f"the model's path-loss exponent {fading.pathloss_exponent:g} is not the "
                          f"configuration's {alpha:g}")
    problem.system.replace(distance_m=fading.d_min_m)  # validates d_min and its gain
    return problem.derive(system=problem.system.replace(distance_m=fading.d_max_m))


def quantile_gain(problem: Problem, fading: Fading | AnnulusFading, outage: float) -> tuple[float, Any]:
    """(q_ε, g·q_ε): the ε-quantile of |h|² [-] and of the gain g·|h|² [-], g the problem's path loss (for
    an :class:`~laimco_jax.fading.AnnulusFading`: of Y and of the composite gain g(d_max)·Y = g(d)·|h|²)."""
    quantile = gain_factor_quantile(fading, outage)
    return quantile, channel_gain(at_outer_radius(problem, fading).system) * quantile


class StaticDesign(NamedTuple):
    """The outage-constrained static design: (P1) solved at the ε-quantile of the gain."""

    fading: Fading
    outage: float  # ε
    gain_factor_quantile: float  # q_ε, the ε-quantile of |h|² [-]
    quantile_gain: Any  # g·q_ε [-]
    problem: Problem  # the problem at gain g·q_ε
    solution: Solution


def static_design(problem: Problem, fading: Fading, outage: float, scheme: str = "proposed") -> StaticDesign:
    """The design that maximises ρq + ρ̃s (minimises D̂ of (41)) subject to P(T <= T0, E <= E0) >= 1 − ε.

    It is the optimum of (P1) at the gain g·q_ε (docs/theory.md#fading-channels), solved by
    :func:`~laimco_jax.solvers.solve_exact` in the problem's dtype; the leaves of ``problem`` may carry
    a batch shape. ConfigError if ε is outside (0, 1) or g·q_ε outside the gain's range.
    """
    outage = check_outage("outage", outage)
    quantile, gain = quantile_gain(problem, fading, outage)
    at_quantile = with_channel_gain(problem, gain)
    return StaticDesign(fading, outage, quantile, gain, at_quantile, solve_exact(at_quantile, scheme))


def static_misses(problem: Problem, solution: Solution, gain_factors):
    """Whether the fixed design ``solution`` misses T0 or E0 (eqs. (10), (11)) at each gain g·|h|² of
    ``gain_factors`` (|h|² draws, any shape; bool of that shape). Also True where the design itself
    has no point meeting the budgets (an infeasible static design is always in outage)."""
    drawn = with_channel_gain(problem, channel_gain(problem.system) * gain_factors, validate=False)
    terms = evaluate(drawn.system, drawn.model, solution.point)
    return (budget_excess(terms, drawn.budget) > 0) | ~found_point(solution.status)


def static_sensitivity(problem: Problem, fading: Fading, outage: float, scheme: str = "proposed") -> dict[str, Any]:
    """Derivatives of the static optimum in ε and in each fading parameter θ (K, σ [dB]).

    The static optimum is the optimum of (P1) at the gain G = g·q_ε(θ), so
    d(output)/dε = d(output)/dG · g · dq_ε/dε (and alike for θ): the first factor by the implicit
    derivatives of :func:`~laimco_jax.sensitivity.field_derivatives` in ``channel_gain``, the last by
    :func:`~laimco_jax.fading.quantile_derivatives`. Returns ``{"outage": OptimumOutputs, name:
    OptimumOutputs, ..., "singular": flag}`` (see :mod:`laimco_jax.sensitivity`).
    """
    problem = at_outer_radius(problem, fading)
    design = static_design(problem, fading, outage, scheme)
    by_gain = field_derivatives(design.problem, design.solution, scheme, ("channel_gain",))
    scale = channel_gain(problem.system)
    out = {name: jax.tree_util.tree_map(lambda d, dq=dq: d * scale * dq, by_gain["channel_gain"])
           for name, dq in quantile_derivatives(fading, design.outage).items()}
    return out | {SINGULAR: by_gain[SINGULAR]}


# ----------------------------------------------------------------------------- Monte Carlo


class MonteCarlo(NamedTuple):
    """Draws of the Monte Carlo over the channel and the static design they were measured against.

    The arrays hold one entry per draw, in the order of the draw index (0 .. samples − 1).
    """

    static: StaticDesign
    seed: int
    gain_factor: np.ndarray  # |h|² of each draw [-]
    adaptive_log10_distortion_bound: np.ndarray  # log10 D̂* of (P1) at the drawn gain; +inf: no point
    static_miss: np.ndarray  # the static design misses a budget at the drawn gain
    distance_m: np.ndarray | None = None  # the user's distance of each draw [m] (AnnulusFading), else None


#: :func:`~laimco_jax.fading.gain_factor_draws` as a program of its own: fused with the solve, XLA may
#: round the same draw differently in batches of different sizes. Every batched user of the draws
#: (this module, the fading sweep) calls this one.
draw_gain_factors = jax.jit(gain_factor_draws, static_argnames=("fading", "dtype"))
_draw_distances = jax.jit(annulus_distance_draws, static_argnames=("dtype",))


@functools.partial(jax.jit, static_argnames=("scheme",))
def _solve_draws(problem: Problem, static: Solution, factor, *, scheme: str):
    """At the gains g·|h|² of ``factor``: the adaptive optimum's log10 D̂ (+inf: no point) and whether
    the static design misses a budget."""
    drawn = with_channel_gain(problem, channel_gain(problem.system) * factor, validate=False)
    adaptive = solve_exact(drawn, scheme)
    log10_d = jnp.where(found_point(adaptive.status), adaptive.log10_distortion_bound, jnp.inf)
    return log10_d, static_misses(problem, static, factor)


def monte_carlo(
    problem: Problem,
    fading: Fading,
    outage: float = DEFAULT_OUTAGE,
    *,
    samples: int,
    seed: int = 0,
    scheme: str = "proposed",
    chunk_size: int = DEFAULT_CHUNK,
    dtype=None,
) -> MonteCarlo:
    """The static design for ε = ``outage`` and ``samples`` channel draws of ``fading`` from ``seed``.

    Per draw: the gain factor |h|², whether the static design misses a budget, and the adaptive design
    (:func:`~laimco_jax.solvers.solve_exact` at the drawn gain g·|h|², batches of ``chunk_size``
    draws). The draws depend only on (seed, index), not on ``chunk_size``. ``problem`` is one
    configuration (scalar leaves). With an :class:`~laimco_jax.fading.AnnulusFading` each draw also has its
    distance (the same index; ``distance_m``) and the gain factor is Y (:func:`at_outer_radius`). Computes in ``dtype`` (default float64) inside
    ``jax.enable_x64(True)`` whatever the caller's setting (docs/architecture.md, precision policy).
    ConfigError for ε outside (0, 1), samples < 1, a seed that is not an integer in [0, 2^32), a
    chunk size < 1, an unknown scheme or a batched problem.
    """
    samples = check_samples("samples", samples)
    seed = check_seed("seed", seed)
    scheme_spec(scheme)
    if isinstance(chunk_size, bool) or not isinstance(chunk_size, int) or chunk_size < 1:
        raise ConfigError(f"chunk_size = {chunk_size!r}: expected an integer >= 1 (draws per batch)")
    if any(np.ndim(leaf) for leaf in jax.tree_util.tree_leaves(problem)):
        raise ConfigError("monte_carlo: the problem must be one configuration (scalar fields), not a batch")
    size = min(chunk_size, samples)
    annulus = isinstance(fading, AnnulusFading)
    with jax.enable_x64(True):
        problem = at_outer_radius(problem, fading).astype(jnp.dtype(jnp.float64 if dtype is None else dtype))
        static = static_design(problem, fading, outage, scheme)
        parts = []
        for start in range(0, samples, size):  # the last batch is padded with the next draws, then cut
            index, real = start + jnp.arange(size), problem.budget.delay_s.dtype
            factor = draw_gain_factors(fading, seed, index, real)
            distance = _draw_distances(seed, index, fading.d_min_m, fading.d_max_m, real) if annulus else factor
            parts.append((factor, *_solve_draws(problem, static.solution, factor, scheme=scheme), distance))
        factor, log10_d, miss, distance = (np.concatenate([np.asarray(p[i]) for p in parts])[:samples] for i in range(4))
    return MonteCarlo(static, seed, factor, log10_d, miss, distance if annulus else None)


def _quantile_key(level: float, quantity: str = "log10_distortion_bound") -> str:
    return f"adaptive_{quantity}_q{round(100 * level):02d}"


#: The reductions of the adaptive design's log10 D̂* over channel draws (:func:`adaptive_reductions`):
#: key -> (units, description). The keys of ``laimco fading --json`` and the fading sweep's variables.
REDUCTIONS: dict[str, tuple[str, str]] = {
    "adaptive_mean_log10_distortion_bound": ("log10", "mean of log10 D̂* over the draws with a design"),
    **{_quantile_key(level): ("log10", f"{100 * level:g} % quantile (inverted CDF) of log10 D̂* over the draws, +inf: no design")
       for level in SUMMARY_QUANTILES},
    "adaptive_infeasible_fraction": ("-", "fraction of draws without a design that meets both budgets"),
}


def adaptive_reductions(log10_d, quantity: str = "log10_distortion_bound") -> dict[str, Any]:
    """The :data:`REDUCTIONS` of log10 D̂* over the draws along the last axis of ``log10_d`` (+inf: no design).

    ``quantity`` names what is reduced in the keys (``adaptive_mean_QUANTITY``, ``adaptive_QUANTITY_qNN``;
    e.g. ``cell_objective`` for the adaptive cell design's objective, :func:`summarize_cell`).

    * ``adaptive_mean_log10_distortion_bound``: the mean over the finite entries (+inf if none);
    * ``adaptive_log10_distortion_bound_qNN``: the quantiles :data:`SUMMARY_QUANTILES`, exact, by the
      inverted empirical CDF (numpy's ``method="inverted_cdf"``, Hyndman-Fan type 1): the
      ⌈N·q⌉-th smallest of the N entries, +inf counting as the largest;
    * ``adaptive_infeasible_fraction``: the fraction of entries that are +inf.

    A numpy array is reduced with numpy (the order statistics by one ``np.partition``, O(N)); anything
    else with JAX (one sort along the last axis), so it runs inside ``jit`` on device arrays. Any batch
    shape; the results have the batch shape, in the input's dtype.
    """
    xp = np if isinstance(log10_d, np.ndarray) else jnp
    log10_d = xp.asarray(log10_d)
    n = log10_d.shape[-1]
    feasible = xp.isfinite(log10_d)
    served = xp.sum(feasible, axis=-1)
    total = xp.sum(xp.where(feasible, log10_d, 0.0), axis=-1)
    out = {f"adaptive_mean_{quantity}": xp.where(served > 0, total / xp.maximum(served, 1), xp.inf)}
    # numpy's inverted_cdf takes the order statistic ceil(n q - 1) (0-based), clipped to [0, n - 1]
    index = [min(max(math.ceil(n * level - 1.0), 0), n - 1) for level in SUMMARY_QUANTILES]
    ordered = np.partition(log10_d, index, axis=-1) if xp is np else jnp.sort(log10_d, axis=-1)
    for level, k in zip(SUMMARY_QUANTILES, index):
        out[_quantile_key(level, quantity)] = ordered[..., k]
    out["adaptive_infeasible_fraction"] = (n - served) / n
    return out


def distance_keys(fading: Fading | AnnulusFading, distance_m) -> dict[str, Any]:
    """``distance_range_m`` [d_min, d_max] [m] and ``mean_distance_m`` (the draws' mean distance [m], if
    drawn) for an :class:`~laimco_jax.fading.AnnulusFading`; nothing for a fixed distance."""
    if not isinstance(fading, AnnulusFading):
        return {}
    keys = {"distance_range_m": [fading.d_min_m, fading.d_max_m]}
    return keys if distance_m is None else keys | {"mean_distance_m": float(np.mean(distance_m))}


def summarize(result: MonteCarlo) -> dict[str, Any]:
    """The reductions of a Monte Carlo run (floats, ints and strings; keys of ``laimco fading --json``).

    * ``static_log10_distortion_bound``: log10 D̂* of the static design (+inf if infeasible), with the
      quantile ``fading_gain_factor_quantile`` q_ε and ``fading_quantile_gain`` g·q_ε;
    * with a distance range (:class:`~laimco_jax.fading.AnnulusFading`): ``distance_range_m`` and the
      draws' ``mean_distance_m``; q_ε is then the quantile of Y, relative to the path loss at d_max;
    * ``static_outage``: the fraction of draws where the static design misses a budget (ε up to
      sampling error, at most ε, when a budget binds), and its standard error √(ε̂(1 − ε̂)/N);
    * ``adaptive_mean_log10_distortion_bound``: the mean of log10 D̂* over the draws where the adaptive
      design meets both budgets; ``adaptive_log10_distortion_bound_qNN``: its quantiles over all draws,
      a draw without a feasible point counting as +inf (no service); ``adaptive_infeasible_fraction``:
      the fraction of draws without a point that meets both budgets;
    * ``value_of_channel_knowledge_log10``: static log10 D̂* minus the adaptive mean [decades]: how much
      lower the distortion bound is, on average over the served draws, when the design knows the draw.
    """
    static = result.static
    log10_d = result.adaptive_log10_distortion_bound
    samples = int(log10_d.size)
    static_found = bool(found_point(int(static.solution.status)))
    static_log10 = float(static.solution.log10_distortion_bound) if static_found else math.inf
    measured = float(np.mean(result.static_miss))
    reduced = {name: float(value) for name, value in adaptive_reductions(np.asarray(log10_d)).items()}
    adaptive_mean = reduced["adaptive_mean_log10_distortion_bound"]
    record = {
        "fading": static.fading.name,
        "outage": static.outage,
        "samples": samples,
        "seed": result.seed,
        **distance_keys(static.fading, result.distance_m),
        "fading_gain_factor_quantile": static.gain_factor_quantile,
        "fading_quantile_gain": float(static.quantile_gain),
        "static_status": Status(int(static.solution.status)).name.lower(),
        "static_log10_distortion_bound": static_log10,
        "static_outage": measured,
        "static_outage_standard_error": math.sqrt(measured * (1.0 - measured) / samples),
        **reduced,
    }
    record["value_of_channel_knowledge_log10"] = static_log10 - adaptive_mean
    return record


# ----------------------------------------------------------------------------- cells of users


def cell_gain_factors(fading: Fading, seed: int, start: int, size: int, samples: int, users: int):
    """|h|² of ``size`` joint draws from ``start`` (of ``samples``) of a cell of ``users`` users, (size, K):
    user k of joint draw j gets the draw of global index j·K + k (:func:`draw_gain_factors`), so the users'
    fadings are independent and reproducible from ``seed`` whatever the batching. Draws past ``samples``
    (a padded last batch) repeat the last one."""
    index = jnp.minimum((start + jnp.arange(size))[:, None] * users + jnp.arange(users), samples * users - 1)
    return draw_gain_factors(fading, seed, index.ravel(), jnp.float64).reshape(size, users)


def cell_at_gains(cell, gain_factors):
    """The batch of cells (batch shape ``gain_factors.shape[:-1]``) that are ``cell`` (one cell, per-user
    leaves (K,)) with user k's gain g_k·``gain_factors[..., k]`` (g_k its path loss or channel_gain)."""
    shape = jnp.shape(gain_factors)
    per_user = jax.tree_util.tree_map(lambda x: jnp.broadcast_to(x, shape), (cell.users, cell.weights, cell.present))
    gain = channel_gain(cell.users.system) * gain_factors
    shared = jax.tree_util.tree_map(lambda x: jnp.broadcast_to(x, shape[:-1]), (cell.bandwidth_hz, cell.f_max_server_hz))
    return cell._replace(users=with_channel_gain(per_user[0], gain, validate=False), weights=per_user[1],
                         present=per_user[2], bandwidth_hz=shared[0], f_max_server_hz=shared[1])


class CellStaticDesign(NamedTuple):
    """The static design of a cell under fading: the cell solved with every user's gain at its ε-quantile."""

    fading: Fading
    outage: float  # ε, each user's
    objective: str
    gain_factor_quantile: float  # q_ε [-]
    solution: Any  # CellSolution of the cell at the gains g_k·q_ε (one cell)
    users: Problem  # each user at its band share and server share, at its path-loss gain g_k (leaves (K,))
    present: Any  # (K,) bool


def static_cell_design(cell, fading: Fading, outage: float, objective: str, batch: int = 1,
                       server_sharing: str = "equal") -> CellStaticDesign:
    """The static cell design for a per-user outage ε: :func:`~laimco_jax.solvers.multiuser.solve_cell` on
    ``cell`` (one cell) with each user's gain at its ε-quantile g_k·q_ε (server shares F/K, or optimised
    with ``server_sharing="optimized"``: the design then fixes them). It is solved as the first of a
    batch of ``batch`` copies, so the program compiled for batches of the draws serves it too."""
    from laimco_jax.solvers.multiuser import solve_cell

    outage = check_outage("outage", outage)
    quantile = gain_factor_quantile(fading, outage)
    size = jnp.shape(cell.present)[-1]
    solution = jax.tree_util.tree_map(lambda x: x[0], solve_cell(cell_at_gains(cell, jnp.full((batch, size), quantile)),
                                                                 objective, server_sharing))
    band = jnp.where(cell.users.model.embedding_bits > 0, solution.bandwidth_hz, cell.bandwidth_hz)
    users = cell.users.derive(system=cell.users.system.derive(bandwidth_hz=band, f_max_server_hz=solution.server_share_hz))
    return CellStaticDesign(fading, outage, objective, quantile, solution, users, jnp.asarray(cell.present))


def cell_static_misses(static: CellStaticDesign, gain_factors):
    """Whether each user of the static cell design misses its T0 or E0 at the gains g_k·``gain_factors``
    ((..., K) |h|² draws), re-evaluated at its band and server share (:func:`static_misses`); every user
    misses where the static cell has no design, absent users never. Bool, the shape of ``gain_factors``."""
    misses = static_misses(static.users, static.solution.users, gain_factors) | ~found_point(static.solution.status)
    return misses & static.present


class CellMonteCarlo(NamedTuple):
    """Joint channel draws of a cell (one row per joint draw, by index) and its static design."""

    static: CellStaticDesign
    seed: int
    gain_factor: np.ndarray  # (N, K) |h|² of each user [-]
    user_miss: np.ndarray  # (N, K) the static design's user k misses a budget
    adaptive_objective: np.ndarray  # (N,) the adaptive cell design's objective; +inf: no design
    adaptive_status: np.ndarray  # (N,) its Status


def cell_monte_carlo(cell, fading: Fading, outage: float = DEFAULT_OUTAGE, *, objective: str, samples: int,
                     seed: int = 0, chunk_size: int = DEFAULT_CHUNK, server_sharing: str = "equal") -> CellMonteCarlo:
    """The static cell design for a per-user ε = ``outage`` and ``samples`` joint draws (independent per
    user, :func:`cell_gain_factors`): per draw, which users of the static design miss a budget, and the
    adaptive cell design (:func:`~laimco_jax.solvers.multiuser.solve_cell` at the drawn gains, in batches
    of ``chunk_size`` cells, padded, so one program per (objective, K) serves all). ``cell`` is one cell
    (:func:`~laimco_jax.cell.load_cell`); ``server_sharing`` as in ``solve_cell`` (both designs). Computes in
    float64 inside ``jax.enable_x64(True)``.
    ConfigError for bad ε, samples (also samples·K > 2^32), seed or chunk size.
    """
    from laimco_jax.cell import check_objective, check_server_sharing
    from laimco_jax.solvers.multiuser import solve_cell

    check_objective(objective)
    check_server_sharing(server_sharing)
    users = int(np.shape(cell.present)[-1])
    samples = check_samples("samples", samples)
    check_samples("samples x users", samples * users)
    seed = check_seed("seed", seed)
    if isinstance(chunk_size, bool) or not isinstance(chunk_size, int) or chunk_size < 1:
        raise ConfigError(f"chunk_size = {chunk_size!r}: expected an integer >= 1 (cells per batch)")
    size = min(chunk_size, samples)
    with jax.enable_x64(True):
        cell = jax.tree_util.tree_map(lambda x: jnp.asarray(x, jnp.float64) if jnp.asarray(x).dtype != bool else x, cell)
        static = static_cell_design(cell, fading, outage, objective, size, server_sharing)
        parts = []
        for start in range(0, samples, size):
            factor = cell_gain_factors(fading, seed, start, size, samples, users)
            solution = solve_cell(cell_at_gains(cell, factor), objective, server_sharing)
            value = jnp.where(found_point(solution.status), solution.objective, jnp.inf)
            parts.append((factor, cell_static_misses(static, factor), value, solution.status))
        columns = [np.concatenate([np.asarray(p[i]) for p in parts])[:samples] for i in range(4)]
    return CellMonteCarlo(static, seed, *columns)


def summarize_cell(result: CellMonteCarlo) -> dict[str, Any]:
    """The reductions of a cell's Monte Carlo run (keys of ``laimco fading --users --json``).

    * ``static_cell_objective``: the static cell design's objective (+inf if it has none);
    * ``static_user_outage``: per user, the fraction of draws where it misses a budget (ε where its budget
      binds at g_k·q_ε, less otherwise);
    * ``static_cell_outage``: the fraction of joint draws where ANY user misses a budget, and its standard
      error; ``cell_outage_independent`` = 1 − (1 − ε)^K, what it is when every user's budget binds
      (independent users), and ``cell_outage_union_bound`` = min(1, Kε) (docs/theory.md#fading-channels);
    * the :func:`adaptive_reductions` of the adaptive cell design's objective (quantity ``cell_objective``:
      ``adaptive_mean_cell_objective``, ``adaptive_cell_objective_qNN``, ``adaptive_infeasible_fraction``);
    * ``value_of_channel_knowledge_objective``: static objective minus the adaptive mean.
    """
    static = result.static
    samples, users = result.user_miss.shape
    found = bool(found_point(int(static.solution.status)))
    static_value = float(static.solution.objective) if found else math.inf
    cell_outage = float(np.mean(np.any(result.user_miss, axis=-1)))
    reduced = {k: float(v) for k, v in adaptive_reductions(np.asarray(result.adaptive_objective), "cell_objective").items()}
    return {
        "fading": static.fading.name,
        "outage": static.outage,
        "objective": static.objective,
        "users": users,
        "samples": samples,
        "seed": result.seed,
        "fading_gain_factor_quantile": static.gain_factor_quantile,
        "static_status": Status(int(static.solution.status)).name.lower(),
        "static_cell_objective": static_value,
        "static_user_outage": [float(v) for v in np.mean(result.user_miss, axis=0)],
        "static_cell_outage": cell_outage,
        "static_cell_outage_standard_error": math.sqrt(cell_outage * (1.0 - cell_outage) / samples),
        "cell_outage_independent": 1.0 - (1.0 - static.outage) ** users,
        "cell_outage_union_bound": min(1.0, users * static.outage),
        **reduced,
        "value_of_channel_knowledge_objective": static_value - reduced["adaptive_mean_cell_objective"],
    }
