"""Section III on real weights: the tables of Figs. 2 and 3 and the optimiser's ratios on MiniLM.

Three tables (pandas DataFrames; plots are in :mod:`laimco_jax.experiments.plots`, files written by
:func:`write_table`):

* :func:`weight_fit_table` — Fig. 2 / Remark 4.2: Laplace and Gaussian maximum-likelihood fits of a
  model's weight matrices (:func:`laimco_jax.distortion.fit_laplace` / ``fit_gaussian``), their mean
  log-likelihood [nats per weight] and Kolmogorov–Smirnov statistic (:func:`laimco_jax.bounds.ks_statistic`),
  and a histogram.
* :func:`bound_check_table` — Fig. 3: for remaining ratios ρ (footnote 1: ρ = 1 keeps everything)
  and magnitude or random pruning of the whole model, the parameter distortion ‖Ω − Ω̂‖_F of
  eq. (20), the measured output distortion ‖f(φ, Ω) − f(φ, Ω̂)‖ over a batch of real inputs,
  Theorem 3.1's bound (19) for the FCDNNs and Proposition 3.2's G‖Ω − Ω̂‖_F (23) for every model,
  beside the first-order distortion ‖∇_Ω f : (Ω − Ω̂)‖ of (21). The bounds are
  :mod:`laimco_jax.bounds` (docs/theory.md#output-and-parameter-distortion).
* :func:`close_loop_table` — the exact solver's (ρ, ρ̃) over a sweep of the delay budget T0 at the
  MiniLM profile, applied to the real MiniLM split halves: D̂ of (41) beside the measured output
  distortion and the cosine similarity of mean-pooled sentence embeddings to the unpruned model's.

Models, their inputs and the output f(φ, Ω) whose distortion is measured: see
:mod:`laimco_jax.models.theory_models` (``model=`` is one of :data:`MODELS`, a checkpoint directory,
an FCDNN safetensors file or a loaded :class:`TheoryModel`). Distortions are Euclidean norms per
input, in the units of the outputs; parameter distortions are Frobenius norms over all pruned
tensors together, in the units of the weights.

What is pruned (``prunable``, see :mod:`laimco_jax.pruning`): by default the weight matrices
(``"kernel"`` leaves) of the whole model, globally — the Ω^(l) of Theorem 3.1. The Jacobian of
Proposition 3.2 is taken w.r.t. those same leaves.

Functions return data, change no global JAX configuration (``dtype=`` casts the parameters and FCDNN
inputs; :func:`close_loop_table` solves in float64 inside ``jax.enable_x64(True)``, the precision policy
of docs/architecture.md) and raise :class:`~laimco_jax.params.ConfigError` naming the parameter,
the value and the allowed values on bad input. ``quick=True`` shrinks everything (fewer epochs,
inputs, ratios, power steps, fitted weights) for CI: seconds per model.
"""

from __future__ import annotations

import functools
import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd

from laimco_jax import distortion
from laimco_jax import pruning as _pr
from laimco_jax.bounds import (
    fcdnn_bounds,
    gaussian_cdf,
    jacobian_spectral_norms,
    ks_statistic,
    laplace_cdf,
    parameter_distortion,
)
from laimco_jax.models.theory_models import (
    MODELS,
    TheoryModel,
    check_int,
    load_theory_model,
    masked_outputs,
)
from laimco_jax.params import ConfigError

#: Re-exported from :mod:`laimco_jax.models.theory_models` (``MODELS``, ``TheoryModel``,
#: ``load_theory_model``): the tables take a model name or a loaded model.
__all__ = [
    "DEFAULT_RATIOS",
    "MODELS",
    "PRUNINGS",
    "QUICK_RATIOS",
    "TABLE_FILES",
    "TheoryModel",
    "bound_check_table",
    "close_loop_table",
    "load_theory_model",
    "weight_fit_table",
    "write_table",
]

PyTree = Any

PRUNINGS = _pr.METHODS
#: Remaining ratios of Fig. 3: 0.05, 0.10, ..., 1.00.
DEFAULT_RATIOS = tuple(round(0.05 * i, 2) for i in range(1, 21))
QUICK_RATIOS = (0.2, 0.5, 0.8, 1.0)
#: File stem of each table, by table name: ``write_table`` writes ``<stem>.csv`` and ``<stem>.png``
#: (and ``<stem>_<suffix>`` when a command writes one model's table).
TABLE_FILES = {"weight_fit": "fig2_weights", "bound_check": "fig3_distortion", "close_loop": "close_loop"}


def _check_choice(name: str, value: Any, allowed: Sequence[Any]) -> None:
    if value not in allowed:
        raise ConfigError(f"{name}={value!r} is not supported; allowed: {list(allowed)}")


def _check_ratios(ratios: Any) -> tuple[float, ...]:
    try:
        values = tuple(float(r) for r in ratios)
    except (TypeError, ValueError):
        raise ConfigError(f"ratios={ratios!r} must be a sequence of remaining fractions in [0, 1]") from None
    bad = [r for r in values if not (0.0 <= r <= 1.0)]
    if not values or bad:
        raise ConfigError(f"ratios={list(ratios)!r} must be a non-empty sequence of remaining fractions "
                          f"in [0, 1]; bad: {bad}")
    return values


def _check_prunings(value: str | Sequence[str]) -> tuple[str, ...]:
    methods = (value,) if isinstance(value, str) else tuple(value)
    if not methods:
        raise ConfigError(f"pruning={value!r} is empty; allowed: {list(PRUNINGS)}")
    for method in methods:
        _check_choice("pruning", method, PRUNINGS)
    return methods


def _resolve(model: str | os.PathLike | TheoryModel, **kwargs) -> TheoryModel:
    return model if isinstance(model, TheoryModel) else load_theory_model(model, **kwargs)


def _prunable_paths(params: PyTree, prunable: _pr.Prunable) -> list[tuple]:
    """:func:`laimco_jax.pruning.prunable_paths`, or ConfigError when ``prunable`` selects nothing."""
    paths = _pr.prunable_paths(params, prunable)
    if not paths:
        raise ConfigError(f"prunable={prunable!r} selects no leaf of the model")
    return paths


# ----------------------------------------------------------------------------- Fig. 2: weight fits


def _pooled_weights(params: PyTree, prunable: _pr.Prunable) -> np.ndarray:
    """The ``prunable`` leaves of ``params``, flattened and concatenated (Ω as one vector)."""
    chosen = set(_prunable_paths(params, prunable))
    return np.concatenate([np.ravel(np.asarray(leaf)) for p, leaf in jax.tree_util.tree_leaves_with_path(params)
                           if p in chosen])


def weight_fit_table(models: str | os.PathLike | TheoryModel | Sequence[str | os.PathLike | TheoryModel], *,
                     quick: bool = False, seed: int = 0, bins: int = 121, max_weights: int | None = None,
                     prunable: _pr.Prunable = _pr.DEFAULT_PRUNABLE) -> pd.DataFrame:
    """Fig. 2: Laplace vs Gaussian fits of each model's pooled weight matrices.

    One row per model: ``n_weights`` (all selected weights), ``n_fitted`` (the uniform random
    subsample fitted: at most ``max_weights``, default 2,000,000, quick 200,000; 0 fits all), then for ``laplace`` and ``gaussian``: ``*_loc``, ``*_scale``
    [units of the weights; Laplace b = E|w − loc|, Gaussian σ], ``*_mean_loglik`` [nats per weight,
    at the MLE, from :mod:`laimco_jax.distortion`] and ``*_ks`` (Kolmogorov–Smirnov statistic against
    the fitted law, dimensionless), ``better_fit`` (higher log-likelihood), ``entropy_bits_per_weight``
    (log2(2e·b), the h(w) estimate of docs/theory.md#inputs-the-paper-leaves-open),
    ``pretrained`` (False: random init, which is
    Gaussian by construction).

    ``table.attrs["histogram"]``: a DataFrame (``model``, ``bin_left``, ``bin_right``, ``count``,
    ``density`` [1/units of the weights]) of *all* selected weights over ``bins`` equal bins between
    their minimum and maximum, for :func:`~laimco_jax.experiments.plots.plot_weight_fit`.
    """
    check_int("bins", bins, 2)
    if max_weights is None:
        max_weights = 200_000 if quick else 2_000_000
    check_int("max_weights", max_weights, 0)
    items = [models] if isinstance(models, (str, os.PathLike, TheoryModel)) else list(models)
    if not items:
        raise ConfigError(f"models={models!r} is empty; allowed: {list(MODELS)} or paths")
    rows, hists = [], []
    for item in items:
        tm = _resolve(item, quick=quick, seed=seed)
        weights = _pooled_weights(tm.params, prunable)
        sample = weights
        if max_weights and weights.size > max_weights:
            sample = np.random.default_rng(seed).choice(weights, max_weights, replace=False)
        lap, gau = distortion.fit_laplace(sample), distortion.fit_gaussian(sample)
        lap = [float(v) for v in lap]
        gau = [float(v) for v in gau]
        ordered = np.sort(sample.astype(np.float64))
        rows.append(dict(
            model=tm.name, weights=str(prunable if callable(prunable) else ",".join(prunable)),
            n_weights=int(weights.size), n_fitted=int(sample.size),
            laplace_loc=lap[0], laplace_scale=lap[1], laplace_mean_loglik=lap[2],
            laplace_ks=ks_statistic(ordered, functools.partial(laplace_cdf, loc=lap[0], scale=lap[1])),
            gaussian_loc=gau[0], gaussian_scale=gau[1], gaussian_mean_loglik=gau[2],
            gaussian_ks=ks_statistic(ordered, functools.partial(gaussian_cdf, loc=gau[0], scale=gau[1])),
            better_fit="laplace" if lap[2] > gau[2] else "gaussian",
            entropy_bits_per_weight=float(distortion.laplace_entropy_bits(lap[1])),
            pretrained=tm.pretrained,
        ))
        counts, edges = np.histogram(weights, bins=bins)
        hists.append(pd.DataFrame(dict(model=tm.name, bin_left=edges[:-1], bin_right=edges[1:], count=counts,
                                       density=counts / (weights.size * np.diff(edges)))))
    table = pd.DataFrame(rows)
    table.attrs["histogram"] = pd.concat(hists, ignore_index=True)
    return table


# ----------------------------------------------------------------------------- Fig. 3: bound check


def _mask(params: PyTree, method: str, ratio: float, key: jax.Array, prunable: _pr.Prunable) -> PyTree:
    if method == "magnitude":
        return _pr.magnitude_mask(params, ratio, prunable=prunable)
    return _pr.random_mask(params, ratio, key, prunable=prunable)


def bound_check_table(model: str | os.PathLike | TheoryModel, pruning: str | Sequence[str] = PRUNINGS,
                      ratios: Sequence[float] | None = None, *, quick: bool = False, seed: int = 0,
                      iterations: int | None = None, batch_size: int | None = None, dtype: Any = None,
                      prunable: _pr.Prunable = _pr.DEFAULT_PRUNABLE) -> pd.DataFrame:
    """Fig. 3: output vs parameter distortion of ``model`` pruned at each remaining ratio.

    ``pruning``: ``"magnitude"``, ``"random"`` or both (default). ``ratios``: remaining
    fractions (default :data:`DEFAULT_RATIOS`, quick :data:`QUICK_RATIOS`). Pruning is global over
    the ``prunable`` leaves of the whole model; random masks use one key per table, so masks are
    nested across ratios. ``iterations``: power steps for G (default 50, quick 10). ``dtype``:
    cast parameters and FCDNN inputs (e.g. ``jnp.float64`` with x64 enabled).

    Columns (one row per method and ratio; distortions in output units, parameters in weight units):
    ``model``, ``kind``, ``pruning``, ``ratio``, ``kept_fraction`` (measured), ``n_inputs``,
    ``param_norm`` ‖Ω‖_F and ``param_distortion`` ‖Ω − Ω̂‖_F (eq. (20)), ``output_norm_mean``
    (mean ‖f(φ, Ω)‖), ``output_distortion_mean`` / ``_max`` (‖f(φ, Ω) − f(φ, Ω̂)‖ over the inputs),
    ``first_order_distortion_mean`` (‖J_φ(Ω̂ − Ω)‖, eq. (21), a jvp), ``G`` (max_φ ‖J_φ‖_2, eq. (22);
    ``G_mean`` its mean over inputs), ``G_bound`` = G‖Ω − Ω̂‖_F (eq. (23)),
    ``prop32_holds_fraction`` (inputs whose true distortion ≤ G_bound). FCDNNs only (NaN otherwise):
    ``theorem_bound`` (eq. (19)), ``theorem_holds_fraction`` (inputs with distortion ≤ it),
    ``lemma31_holds_fraction``, ``data_bound_mean`` and ``data_bound_holds_fraction`` (see
    :func:`fcdnn_bounds`), ``bias_free`` and ``theorem_applies`` (bias-free and max‖φ‖ ≤ 1: then
    ``theorem_holds_fraction`` must be 1). ``input_scale``: factor applied to the digits.
    """
    methods = _check_prunings(pruning)
    ratios = _check_ratios((QUICK_RATIOS if quick else DEFAULT_RATIOS) if ratios is None else ratios)
    iterations = (10 if quick else 50) if iterations is None else iterations
    check_int("iterations", iterations, 1)
    tm = _resolve(model, quick=quick, seed=seed, batch_size=batch_size).with_dtype(dtype)
    params, inputs = tm.params, {k: jnp.asarray(v) for k, v in tm.inputs.items()}

    @jax.jit
    def evaluate(p, q, t):  # (f(φ, q), J_φ(p)·t): one compiled function for outputs and (21)
        return tm.apply(q, inputs), jax.jvp(lambda r: tm.apply(r, inputs), (p,), (t,))[1]

    zeros = jax.tree.map(jnp.zeros_like, params)
    y0 = np.asarray(evaluate(params, params, zeros)[0], np.float64)
    sigma = jacobian_spectral_norms(tm.apply, params, inputs, _prunable_paths(params, prunable),
                                    iterations=iterations, seed=seed)
    g = float(np.max(sigma))
    param_norm = float(np.linalg.norm(_pooled_weights(params, prunable).astype(np.float64)))
    key = jax.random.key(seed)
    max_input_norm = float(np.max(np.linalg.norm(tm.inputs["x"], axis=1))) if tm.kind == "fcdnn" else math.nan
    rows = []
    for method in methods:
        for ratio in ratios:
            mask = _mask(params, method, ratio, key, prunable)
            pruned = _pr.apply_mask(params, mask)
            kept, total = _pr.kept_count(mask, params, prunable)
            delta = jax.tree.map(lambda a, b: b - a, params, pruned)
            y, first = evaluate(params, pruned, delta)
            dist = np.linalg.norm(np.asarray(y, np.float64) - y0, axis=1)
            first = np.linalg.norm(np.asarray(first, np.float64), axis=1)
            d_param = parameter_distortion(params, pruned)
            row = dict(
                model=tm.name, kind=tm.kind, pruning=method, ratio=ratio, kept_fraction=kept / total,
                n_inputs=len(y0), param_norm=param_norm, param_distortion=d_param,
                output_norm_mean=float(np.mean(np.linalg.norm(y0, axis=1))),
                output_distortion_mean=float(np.mean(dist)), output_distortion_max=float(np.max(dist)),
                first_order_distortion_mean=float(np.mean(first)), G=g, G_mean=float(np.mean(sigma)),
                G_bound=g * d_param, prop32_holds_fraction=float(np.mean(dist <= g * d_param)),
                theorem_bound=math.nan, theorem_holds_fraction=math.nan, lemma31_holds_fraction=math.nan,
                data_bound_mean=math.nan, data_bound_holds_fraction=math.nan, bias_free=None,
                theorem_applies=None, input_scale=tm.input_scale, iterations=iterations,
            )
            if tm.kind == "fcdnn":
                b = fcdnn_bounds(params, pruned, inputs["x"])
                bias_free = bool(b["bias_free"])
                row.update(
                    theorem_bound=float(b["theorem_bound"]),
                    theorem_holds_fraction=float(np.mean(dist <= b["theorem_bound"])),
                    lemma31_holds_fraction=float(np.mean(b["lemma31_holds"])),
                    data_bound_mean=float(np.mean(b["data_bound"])),
                    data_bound_holds_fraction=float(np.mean(dist <= b["data_bound"] * (1 + 1e-6) + 1e-12)),
                    bias_free=bias_free, theorem_applies=bias_free and max_input_norm <= 1 + 1e-6,
                )
            rows.append(row)
    return pd.DataFrame(rows)


# ----------------------------------------------------------------------------- closing the loop


def _mean_pool(hidden: np.ndarray, mask: np.ndarray) -> np.ndarray:
    m = mask[..., None].astype(np.float64)
    return (hidden * m).sum(axis=1) / m.sum(axis=1)


def _cosine(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.sum(a * b, axis=-1) / (np.linalg.norm(a, axis=-1) * np.linalg.norm(b, axis=-1))


def _problem_at(problem, delays: np.ndarray):
    from laimco_jax.params import Budget

    energy = np.full(delays.shape, float(problem.budget.energy_j))
    batched = problem.replace(budget=Budget(delay_s=delays, energy_j=energy))
    return jax.tree.map(lambda a: jnp.broadcast_to(jnp.asarray(a, jnp.float64), delays.shape), batched)


def close_loop_table(model: str | os.PathLike | TheoryModel = "minilm", *, split: int = 3,
                     delays: Sequence[float] | None = None, n_delays: int | None = None,
                     energy_j: float | None = None, preset: str = "paper", budget_model: str = "bert-base",
                     pruning: str | Sequence[str] = PRUNINGS, quick: bool = False, seed: int = 0,
                     batch_size: int | None = None, seq_len: int = 128,
                     prunable: _pr.Prunable = _pr.LEAF_KINDS) -> pd.DataFrame:
    """The exact solver's (ρ, ρ̃) over a sweep of T0, applied to the real split model.

    The solver runs in float64 whatever the caller's ``jax_enable_x64`` (locally, inside
    ``jax.enable_x64(True)``); the model runs in the dtype of its weights.

    The problem is ``make_problem(preset, budget_model)`` with its ``[model]`` section replaced by
    the measured profile of ``model`` (``minilm`` or a checkpoint directory; the profile of
    :func:`laimco_jax.models.profile.split_profiles` at ``split`` and ``seq_len`` tokens, whose keys
    are the ``[model]`` field names) and, if given, ``energy_j`` for E0 [J]. h(w) is
    :func:`~laimco_jax.models.profile.model_entropy_bits` of all weights (quick mode: the same
    Laplace fit on a uniform subsample of 2^20 weights). ``delays`` T0 [s]: default ``n_delays``
    (6, quick 3) evenly spaced from the smallest feasible T0 to the smallest T0 at which nothing is
    pruned (found on a geometric grid of 241 budgets from 1e-4 s to 10 s).

    For each T0 the device half (embeddings and blocks < ``split``) is pruned to ρ and the server
    half to ρ̃ with :func:`laimco_jax.pruning.split_masks` — by default over *every* parameter
    (``prunable`` = all leaf kinds), so that ρ is the kept fraction of the profile's q as in the
    solver; pass ``("kernel",)`` to prune weight matrices only.

    Columns: ``delay_s`` T0, ``energy_j`` E0, ``status``, ``rho``, ``rho_server``,
    ``log10_distortion_bound`` log10 D̂ (eq. (41), D̂ in weight units), ``pruning``,
    ``kept_fraction_device`` / ``_server`` (measured), ``param_distortion`` ‖Ω − Ω̂‖_F,
    ``output_distortion_mean`` (last hidden states, as in :func:`bound_check_table`),
    ``cosine_similarity_mean`` / ``_min`` (mean-pooled sentence embeddings vs the unpruned
    model's), ``split``. Infeasible budgets keep NaN measurements. (For BART the server's kept
    fraction counts the tied token table, which follows the device mask, on both sides.)
    """
    import dataclasses as dc

    from laimco_jax.models import bart, bert
    from laimco_jax.models.profile import model_entropy_bits, split_profiles
    from laimco_jax.params import ModelProfile, make_problem
    from laimco_jax.solvers import Status, solve_exact

    methods = _check_prunings(pruning)
    if isinstance(model, TheoryModel):
        tm = model
    else:
        if os.fspath(model) in MODELS and os.fspath(model) != "minilm":
            raise ConfigError(f"model={os.fspath(model)!r} is not supported for closing the loop; allowed: "
                              "'minilm' or a pretrained checkpoint directory")
        tm = load_theory_model(model, quick=quick, seed=seed, batch_size=batch_size)
    if tm.kind == "fcdnn" or not tm.pretrained:
        raise ConfigError(f"model={tm.name!r} (kind {tm.kind}, pretrained={tm.pretrained}) is not supported for "
                          "closing the loop; allowed: 'minilm' or a pretrained checkpoint directory")
    check_int("split", split, 1)
    if split >= tm.config.num_layers and tm.kind == "bert":
        raise ConfigError(f"split={split} must be in [1, {tm.config.num_layers - 1}] (both halves pruned)")
    if split > tm.config.num_layers:
        raise ConfigError(f"split={split} must be in [1, {tm.config.num_layers}]")
    record = split_profiles(tm.source, seq_len=seq_len, splits=[split], entropy=False)[0]
    if quick:
        flat = np.concatenate([np.ravel(np.asarray(leaf)) for leaf in jax.tree.leaves(tm.params)])
        sample = np.random.default_rng(seed).choice(flat, min(flat.size, 2**20), replace=False)
        entropy = flat.size * float(distortion.laplace_entropy_bits(distortion.fit_laplace(sample).scale))
    else:
        entropy = model_entropy_bits(tm.params)
    fields = {f.name for f in dc.fields(ModelProfile)}
    overrides = {f"model.{k}": (entropy if k == "entropy_bits" else record[k]) for k in fields}
    if energy_j is not None:
        overrides["budget.energy_j"] = energy_j
    problem = make_problem(preset, budget_model, overrides=overrides)

    def solve(t0: np.ndarray):
        with jax.enable_x64(True):
            return solve_exact(_problem_at(problem, np.asarray(t0, np.float64)), "proposed")

    if delays is None:
        n = (3 if quick else 6) if n_delays is None else n_delays
        check_int("n_delays", n, 1)
        grid = np.geomspace(1e-4, 10.0, 241)
        sol = solve(grid)
        ok = np.asarray(sol.status) == int(Status.OPTIMAL)
        if not ok.any():
            raise ConfigError(f"no delay budget in [1e-4, 10] s is feasible at energy_j={float(problem.budget.energy_j)}; "
                              "raise energy_j")
        full = ok & (np.asarray(sol.rho) >= 1 - 1e-9) & (np.asarray(sol.rho_server) >= 1 - 1e-9)
        lo = grid[np.argmax(ok)]
        hi = grid[np.argmax(full)] if full.any() else grid[-1]
        delays = np.linspace(lo, hi, n) if hi > lo else np.array([lo])
    else:
        delays = np.asarray([float(d) for d in delays], np.float64)
        if delays.size == 0 or not np.all(np.isfinite(delays) & (delays > 0)):
            raise ConfigError(f"delays={list(delays)!r} must be a non-empty list of budgets > 0 [s]")
    sol = solve(delays)
    module = bert if tm.kind == "bert" else bart
    params, inputs = tm.params, {k: jnp.asarray(v) for k, v in tm.inputs.items()}
    mask = np.asarray(tm.inputs["attention_mask"])
    hidden = jax.jit(tm.hidden)
    h0 = np.asarray(hidden(params, inputs), np.float64)
    pooled0 = _mean_pool(h0, mask)
    flat0 = np.asarray(masked_outputs(h0, mask))
    device, server = module.split_params(tm.config, params, split)
    key = jax.random.key(seed)
    rows = []
    for i, t0 in enumerate(delays):
        base = dict(split=split, delay_s=float(t0), energy_j=float(problem.budget.energy_j),
                    status=Status(int(np.asarray(sol.status)[i])).name.lower(), rho=float(np.asarray(sol.rho)[i]),
                    rho_server=float(np.asarray(sol.rho_server)[i]),
                    log10_distortion_bound=float(np.asarray(sol.log10_distortion_bound)[i]))
        for method in methods:
            row = base | dict(pruning=method, kept_fraction_device=math.nan, kept_fraction_server=math.nan,
                              param_distortion=math.nan, output_distortion_mean=math.nan,
                              cosine_similarity_mean=math.nan, cosine_similarity_min=math.nan)
            if base["status"] == "optimal":
                dmask, smask = _pr.split_masks(device, server, min(base["rho"], 1.0),
                                                   min(base["rho_server"], 1.0), method=method, key=key,
                                                   prunable=prunable)
                dev_p, srv_p = _pr.apply_mask(device, dmask), _pr.apply_mask(server, smask)
                pruned = {**dev_p, **srv_p}
                kd, nd = _pr.kept_count(dmask, device, prunable)
                ks, ns = _pr.kept_count(smask, server, prunable)
                h = np.asarray(hidden(pruned, inputs), np.float64)
                cos = _cosine(_mean_pool(h, mask), pooled0)
                row.update(kept_fraction_device=kd / nd, kept_fraction_server=ks / ns,
                           param_distortion=parameter_distortion(params, {k: pruned[k] for k in params}),
                           output_distortion_mean=float(np.mean(np.linalg.norm(
                               np.asarray(masked_outputs(h, mask)) - flat0, axis=1))),
                           cosine_similarity_mean=float(np.mean(cos)), cosine_similarity_min=float(np.min(cos)))
            rows.append(row)
    return pd.DataFrame(rows)


# ----------------------------------------------------------------------------- files


def write_table(table: pd.DataFrame, out: str | os.PathLike, name: str, suffix: str | None = None) -> list[Path]:
    """Write the ``name`` table (a key of :data:`TABLE_FILES`) and its figure into the directory ``out``.

    Files, with ``stem`` = ``TABLE_FILES[name]`` (+ ``_<suffix>`` if given): ``<stem>.csv``, one
    ``<stem>_<key>.csv`` per DataFrame in ``table.attrs`` (the weight fits' ``histogram``) and
    ``<stem>.png`` drawn by the table's function in :mod:`laimco_jax.experiments.plots`. ``out`` is
    created. Returns the paths written, in that order.
    """
    from laimco_jax.experiments import plots

    plot = {"weight_fit": plots.plot_weight_fit, "bound_check": plots.plot_bound_check,
            "close_loop": plots.plot_close_loop}
    if name not in TABLE_FILES:
        raise ConfigError(f"name={name!r} is not a theory table; allowed: {list(TABLE_FILES)}")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    stem = TABLE_FILES[name] if suffix is None else f"{TABLE_FILES[name]}_{suffix}"
    frames = {stem: table} | {f"{stem}_{key}": frame for key, frame in table.attrs.items()
                              if isinstance(frame, pd.DataFrame)}
    paths = []
    for file, frame in frames.items():
        frame.to_csv(out / f"{file}.csv", index=False)
        paths.append(out / f"{file}.csv")
    return [*paths, plot[name](table, out / f"{stem}.png")]
