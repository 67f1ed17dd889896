"""``laimco reproduce``: the paper's figures end to end, their data, and ``summary.md``.

Parts (each writes PNG + CSV into the output directory):

========================  ==========================================================================
``systems``               Figs. 4, 5, 6 — every scheme on one batch of problems; ``claims.csv``
``assumptions``           ``fig6_assumptions`` — the best split against the raw-input size and c̃
``sca``                   the paper's SCA against the certified optimum over the Fig. 4 grid
``sensitivity``           elasticities of D̂* to T0, E0 and d over the Fig. 4 grid
``weights``               Fig. 2 — Laplace and Gaussian fits of real weights
``distortion``            Fig. 3 — output against parameter distortion, magnitude and random pruning
``loop``                  the exact solver's ρ, ρ̃ over T0 applied to the real MiniLM (D̂ beside the
                          measured output distortion and embedding cosine similarity)
``fading``                beyond the paper: the static outage design's log10 D̂* against ε (Rayleigh,
                          Rician K = 5) beside the adaptive design's mean, and the CDF over channel draws
``multiuser``             beyond the paper, not in the default run (``--parts multiuser`` or ``all``):
                          K = 1 … 16 users sharing the band and the server, per objective, against the
                          equal split
========================  ==========================================================================

A re-run with the same arguments reuses finished parts: ``manifest.json`` records each part's
arguments and files, and a part whose record matches and whose files exist is not recomputed.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from laimco_jax.experiments import paper

__all__ = ["PARTS", "DEFAULT_PARTS", "FadingGrid", "ReproduceConfig", "reproduce", "write_summary"]

MANIFEST = "manifest.json"
#: Fig. 3 in the full run: remaining ratios and power-iteration steps for Proposition 3.2's G (the
#: theory module's own defaults, 20 ratios and 50 steps, take over 10 minutes on a 2-core CPU).
FIG3_RATIOS = (0.05, 0.1, 0.2, 0.4, 0.6, 0.8, 0.9, 1.0)
FIG3_POWER_ITERATIONS = 20


@dataclasses.dataclass(frozen=True)
class FadingGrid:
    """The ``fading`` part: BERT-base at ``distance_m`` (the preset's 500 m has no static design at
    ε = 0.05 under Rayleigh fading; the static curve is also drawn there, ``preset_distance_m``), the
    Monte Carlo of ``samples`` draws from ``seed`` at ε = ``outage`` for each fading model."""

    models: tuple[str, ...] = ("rayleigh", "rician:5")
    distance_m: float = 100.0
    preset_distance_m: float = 500.0
    outage: float = 0.05
    samples: int = 20_000
    seed: int = 0
    model: str = "bert-base"

    @classmethod
    def quick(cls) -> FadingGrid:
        return cls(samples=2_000)


@dataclasses.dataclass(frozen=True)
class ReproduceConfig:
    """What ``laimco reproduce`` computes: ``quick`` shrinks every grid and batch (CI, about a minute)."""

    quick: bool = False
    preset: str = "paper"

    def __post_init__(self):
        from laimco_jax.params import SYSTEM_PRESETS, ConfigError

        if self.preset not in SYSTEM_PRESETS:
            raise ConfigError(f"preset={self.preset!r} is not known; allowed: {', '.join(SYSTEM_PRESETS)}")

    @property
    def grids(self) -> paper.FigureGrids:
        return paper.FigureGrids.quick() if self.quick else paper.FigureGrids()

    def part_grid(self, part: str):
        """The grid a part computes on (a dataclass; the figure grids for the system parts)."""
        if part == "assumptions":
            return paper.AssumptionGrids()
        if part == "fading":
            return FadingGrid.quick() if self.quick else FadingGrid()
        if part == "multiuser":
            from laimco_jax.experiments.multiuser import MultiuserGrid

            return MultiuserGrid.quick() if self.quick else MultiuserGrid()
        return self.grids

    def key(self, part: str) -> dict[str, Any]:
        """The arguments a part's result depends on, as ``manifest.json`` stores them (tuples as lists;
        compared with the manifest on a re-run)."""
        from laimco_jax import __version__

        grids = dataclasses.asdict(self.part_grid(part))
        return json.loads(json.dumps(dict(part=part, quick=self.quick, preset=self.preset, version=__version__,
                                          grids=grids, profiles=paper.PROFILES)))


#: System figure -> file stem; a profile's figures are ``STEM.png`` (measured) and ``STEM_published.png``.
SYSTEM_FIGURES = {"fig4": "fig4_delay", "fig5": "fig5_energy", "fig6": "fig6_split"}


def _figure_file(stem: str, profile: str) -> str:
    return f"{stem}.png" if profile == "measured" else f"{stem}_{profile}.png"


def _all_points(config: ReproduceConfig) -> pd.DataFrame:
    """Every figure point of the published presets and of the measured profiles (one batch)."""
    return paper.figure_points(config.grids, sum(paper.PROFILES.values(), ()), config.preset)


def _systems(config: ReproduceConfig, out: Path) -> list[str]:
    points = _all_points(config)
    table = paper.solve_with_on_device_end(points, ("proposed",) + paper.BENCHMARKS, config.preset)
    files = ["claims.csv", "benchmark_counts.csv"]
    for figure, stem in SYSTEM_FIGURES.items():
        table[table.figure.isin([figure, figure + "d"])].to_csv(out / f"{stem}.csv", index=False)
        files.append(f"{stem}.csv")
        for profile in paper.PROFILES:
            rows, path = table[table.profile == profile], out / _figure_file(stem, profile)
            if figure == "fig6":
                paper.plot_split_figure(rows, path)
            else:
                paper.plot_budget_figure(rows, figure, path)
            files.append(path.name)
    paper.check_claims(table).to_csv(out / "claims.csv", index=False)
    paper.benchmark_counts(table).to_csv(out / "benchmark_counts.csv", index=False)
    return files


def _assumptions(config: ReproduceConfig, out: Path) -> list[str]:
    points = paper.assumption_points(paper.AssumptionGrids(), sum(paper.PROFILES.values(), ()))
    best = paper.best_split_by_assumption(paper.solve_with_on_device_end(points, preset=config.preset))
    best.to_csv(out / "fig6_assumptions.csv", index=False)
    paper.plot_assumptions_figure(best, out / "fig6_assumptions.png")
    paper.slow_server_example(config.preset).to_csv(out / "fig6_slow_server.csv", index=False)
    return ["fig6_assumptions.csv", "fig6_assumptions.png", "fig6_slow_server.csv"]


def _fig4_points(config: ReproduceConfig) -> pd.DataFrame:
    points = _all_points(config)
    return points[points.figure == "fig4"].reset_index(drop=True)


def _sca(config: ReproduceConfig, out: Path) -> list[str]:
    table = paper.sca_against_exact(_fig4_points(config), config.preset)
    table.to_csv(out / "sca_vs_exact.csv", index=False)
    paper.plot_sca_figure(table, out / "sca_vs_exact.png")
    return ["sca_vs_exact.csv", "sca_vs_exact.png"]


def _sensitivity(config: ReproduceConfig, out: Path) -> list[str]:
    table = paper.sensitivity_table(_fig4_points(config), config.preset)
    table.to_csv(out / "sensitivity.csv", index=False)
    paper.plot_sensitivity_figure(table, out / "sensitivity.png")
    return ["sensitivity.csv", "sensitivity.png"]


@functools.lru_cache(maxsize=None)
def _theory_model(name: str, quick: bool):
    """Each theory model loaded (FCDNNs: trained) once per process, shared by Figs. 2 and 3.

    BART is always the theory module's small random-init BART (2+2 layers, d_model 64): random weights
    say nothing about a trained BART, and Proposition 3.2's Jacobian at BART-base size alone takes
    about 10 minutes on a 2-core CPU (``laimco bound-check --model bart`` runs it).
    """
    from laimco_jax.experiments import theory

    return theory.load_theory_model(name, quick=quick or name == "bart")


def _theory_models(config: ReproduceConfig) -> list:
    from laimco_jax.experiments import theory

    return [_theory_model(name, config.quick) for name in theory.MODELS]


def _weights(config: ReproduceConfig, out: Path) -> list[str]:
    from laimco_jax.experiments import theory

    table = theory.weight_fit_table(_theory_models(config), quick=config.quick)
    return [path.name for path in theory.write_table(table, out, "weight_fit")]


def _distortion(config: ReproduceConfig, out: Path) -> list[str]:
    from laimco_jax.experiments import theory

    ratios, iterations = (None, None) if config.quick else (FIG3_RATIOS, FIG3_POWER_ITERATIONS)
    table = pd.concat([theory.bound_check_table(m, quick=config.quick, ratios=ratios, iterations=iterations)
                       for m in _theory_models(config)], ignore_index=True)
    return [path.name for path in theory.write_table(table, out, "bound_check")]


def _close_loop(config: ReproduceConfig, out: Path) -> list[str]:
    from laimco_jax.experiments import theory

    table = theory.close_loop_table("minilm", quick=config.quick, preset=config.preset)
    return [path.name for path in theory.write_table(table, out, "close_loop")]


def _fading_name(model: str, distance_m: float) -> str:
    return f"{model}, d = {distance_m:g} m"


def _fading(config: ReproduceConfig, out: Path) -> list[str]:
    """Beyond the paper: per fading model, the static outage design against ε at the part's distance
    and at the preset's, the Monte Carlo of the static design and of the adaptive design at ε."""
    from laimco_jax.experiments.fading import OUTAGE_GRID, plot_adaptive_cdf, plot_static_curve, static_curve_table
    from laimco_jax.fading import parse_fading
    from laimco_jax.outage import monte_carlo, summarize
    from laimco_jax.params import make_problem

    grid: FadingGrid = config.part_grid("fading")
    outages = sorted({*OUTAGE_GRID, grid.outage})
    curves, results, records, draws = {}, {}, [], []
    for text in grid.models:
        fading = parse_fading(text)
        for distance in (grid.distance_m, grid.preset_distance_m):
            problem = make_problem(config.preset, grid.model, overrides=dict(distance_m=distance))
            curve = static_curve_table(problem, fading, outages)
            curves[_fading_name(fading.name, distance)] = curve.assign(fading=fading.name, distance_m=distance)
        problem = make_problem(config.preset, grid.model, overrides=dict(distance_m=grid.distance_m))
        result = monte_carlo(problem, fading, grid.outage, samples=grid.samples, seed=grid.seed)
        name = _fading_name(fading.name, grid.distance_m)
        results[name] = result
        records.append(dict(summarize(result), distance_m=grid.distance_m))
        draws.append(pd.DataFrame(dict(fading=fading.name, draw=np.arange(result.gain_factor.size),
                                       gain_factor=result.gain_factor,
                                       adaptive_log10_distortion_bound=result.adaptive_log10_distortion_bound,
                                       static_miss=result.static_miss)))
    columns = ["fading", "distance_m"]
    static = pd.concat(curves.values(), ignore_index=True)
    static[columns + [c for c in static.columns if c not in columns]].to_csv(out / "fading_static.csv", index=False)
    summary = pd.DataFrame(records)
    summary[columns + [c for c in summary.columns if c not in columns]].to_csv(out / "fading_summary.csv", index=False)
    pd.concat(draws, ignore_index=True).to_csv(out / "fading_draws.csv", index=False)
    means = {_fading_name(r["fading"], r["distance_m"]): r["adaptive_mean_log10_distortion_bound"] for r in records}
    plot_static_curve(curves, out / "fading_static.png", means)
    plot_adaptive_cdf(results, out / "fading_cdf.png")
    return ["fading_static.csv", "fading_summary.csv", "fading_draws.csv", "fading_static.png", "fading_cdf.png"]


def _multiuser(config: ReproduceConfig, out: Path) -> list[str]:
    """Beyond the paper: cells of K users against K, every objective, the equal-split and alone baselines."""
    from laimco_jax.experiments import multiuser

    users, cells = multiuser.multiuser_tables(config.part_grid("multiuser"), config.preset)
    users.to_csv(out / "multiuser_users.csv", index=False)
    cells.to_csv(out / "multiuser_cells.csv", index=False)
    multiuser.plot_users(users, out / "multiuser_users.png")
    multiuser.plot_gain(cells, out / "multiuser_gain.png")
    multiuser.plot_server(cells, users, out / "multiuser_server.png")
    return ["multiuser_users.csv", "multiuser_cells.csv", "multiuser_users.png", "multiuser_gain.png",
            "multiuser_server.png"]


#: Part name -> (description for the progress display, function writing the part's files).
PARTS: dict[str, tuple[str, Callable[[ReproduceConfig, Path], list[str]]]] = {
    "systems": ("Figs. 4-6: every scheme over the budget and split grids", _systems),
    "assumptions": ("Fig. 6: the best split against the raw-input size and the server's FLOPs per cycle",
                    _assumptions),
    "sca": ("SCA against the exact optimum", _sca),
    "sensitivity": ("sensitivity of the optimum", _sensitivity),
    "weights": ("Fig. 2: Laplace and Gaussian fits of real weights", _weights),
    "distortion": ("Fig. 3: output vs parameter distortion under pruning", _distortion),
    "loop": ("the solver's ratios applied to the real MiniLM", _close_loop),
    "fading": ("beyond the paper: the static outage design and the Monte Carlo over fading draws", _fading),
    "multiuser": ("beyond the paper: K users sharing the band and the server", _multiuser),
}
#: The parts of a run without ``parts``: every part but ``multiuser`` (three solver compilations, about a
#: minute even in --quick); ``parts=["all"]`` (``--parts all``) runs every part.
DEFAULT_PARTS: tuple[str, ...] = tuple(name for name in PARTS if name != "multiuser")


def _read_manifest(out: Path) -> dict[str, Any]:
    path = out / MANIFEST
    if not path.exists():
        return {}
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError:
        return {}  # a damaged manifest only costs a recomputation


def _is_done(record: dict[str, Any] | None, key: dict[str, Any], out: Path) -> bool:
    return bool(record) and record.get("key") == key and all((out / f).exists() for f in record.get("files", []))


def _write_manifest(out: Path, manifest: dict[str, Any]) -> None:
    """``manifest.json``, written to a temporary name and renamed (an interrupt never leaves half of it)."""
    partial = out / f".{MANIFEST}.partial"
    partial.write_text(json.dumps(manifest, indent=1))
    os.replace(partial, out / MANIFEST)


def _rerun_command(out: Path, config: ReproduceConfig, parts: Sequence[str] | None) -> str:
    """The ``laimco reproduce`` command line that repeats a run (and so resumes it)."""
    words = ["laimco reproduce", f"--out {out}"]
    words += ["--quick"] if config.quick else []
    words += [f"--preset {config.preset}"] if config.preset != ReproduceConfig.preset else []
    words += [f"--parts {','.join(parts)}"] if parts is not None else []
    return " ".join(words)


def reproduce(out: str | Path, config: ReproduceConfig = ReproduceConfig(), *, parts: Sequence[str] | None = None,
              progress: bool = True) -> dict[str, list[str]]:
    """Compute the parts of :data:`DEFAULT_PARTS` (or ``parts``; ``["all"]``: every part) into ``out`` and
    write ``summary.md``; returns part -> files.

    Finished parts with matching arguments are reused. ``progress`` shows a rich progress display.
    Every part computes in float64 whatever the caller's ``jax_enable_x64``: the parts run inside
    ``jax.enable_x64(True)`` (docs/architecture.md, precision policy).
    A KeyboardInterrupt becomes :class:`~laimco_jax.sweep.Interrupted`, whose message names the parts
    finished and the command that resumes the run.
    """
    import jax

    from laimco_jax.params import ConfigError
    from laimco_jax.sweep import Interrupted

    chosen = list(DEFAULT_PARTS) if parts is None else list(PARTS) if list(parts) == ["all"] else list(parts)
    unknown = [p for p in chosen if p not in PARTS]
    if unknown or not chosen:
        problem = f"parts={unknown} are not known" if unknown else "parts=[] names no part"
        raise ConfigError(f"{problem}; allowed: {', '.join(PARTS)} or all")
    out = Path(out)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"--out {str(out)!r}: cannot create the directory ({exc.strerror}); "
                          "expected a writable directory") from exc
    manifest = _read_manifest(out)
    try:
        with jax.enable_x64(True):
            _run_parts(out, config, chosen, manifest, progress)
    except KeyboardInterrupt as exc:
        finished = [p for p in chosen if _is_done(manifest.get(p), config.key(p), out)]
        raise Interrupted(f"interrupted: parts finished in {out}: {', '.join(finished) or 'none'} (of "
                          f"{', '.join(chosen)}); resume with: {_rerun_command(out, config, parts)}") from exc
    write_summary(out, config)
    return {name: manifest[name]["files"] for name in chosen}


def _run_parts(out: Path, config: ReproduceConfig, parts: Sequence[str], manifest: dict[str, Any],
               progress: bool) -> None:
    """Compute each part not finished yet, recording it in ``manifest`` (and ``manifest.json``) when done."""
    from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    with Progress(SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn(),
                  disable=not progress, transient=False) as bar:
        for name in parts:
            description, run = PARTS[name]
            key = config.key(name)
            task = bar.add_task(f"{name}: {description}", total=1)
            if _is_done(manifest.get(name), key, out):
                bar.update(task, completed=1, description=f"{name}: reused from {out / MANIFEST}")
                continue
            files = run(config, out)
            manifest[name] = dict(key=key, files=files)
            _write_manifest(out, manifest)
            bar.update(task, completed=1)


def _markdown_table(frame: pd.DataFrame, floatfmt: str = ".4g") -> str:
    def cell(value: Any) -> str:
        if isinstance(value, float):
            return format(value, floatfmt)
        return str(value)

    lines = ["| " + " | ".join(frame.columns) + " |", "|" + "---|" * len(frame.columns)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in frame.itertuples(index=False)]
    return "\n".join(lines)


def _at_preset(table: pd.DataFrame) -> pd.DataFrame:
    """Every scheme at the preset budgets and split (the Fig. 6 row of the default split)."""
    from laimco_jax.params import MODEL_SPECS

    rows = []
    for model, group in table.groupby("model", sort=False):
        at = group[group.split == MODEL_SPECS[model].default_split]
        for row in at.itertuples():
            rows.append(dict(model=model, scheme=row.scheme, status=row.status,
                             log10_D=row.log10_distortion_bound, rho=row.rho, rho_server=row.rho_server))
    return pd.DataFrame(rows)


SPLIT_EXPLANATION = """\
Why on-server inference wins here: at split 0 the device uploads the raw input, 128 token ids of
32 bits (4,096 bits), while any other split uploads a 128 × 768 × 8-bit embedding (786,432 bits,
about 40 ms of the link at full power). And with the paper's chip constants the server is both faster
(4 GHz × 128 FLOPs/cycle against 1 GHz × 32) and, at the clock the budget needs, cheaper per FLOP
(η̃φ̃f̃²/c̃ against ηφf²/c), so every block moved to the device costs delay and energy it does not
save. The paper's interior optimum needs a raw input that costs more to upload than an embedding (its
Section VI-C says so: "reduced communication overhead compared to transmitting raw data"); token ids of
a text model do not. Set `model.input_bits` (e.g. `laimco sweep --set input_bits=...`) to model a
heavier raw input."""


def _assumptions_summary(out: Path) -> list[str]:
    """Which assumption gives Fig. 6 an interior best split, read off ``fig6_assumptions.csv`` and
    ``fig6_slow_server.csv`` (the numbers are the run's, not fixed text)."""
    from laimco_jax.params import MODEL_SPECS

    best = pd.read_csv(out / "fig6_assumptions.csv")
    bert = best[best.model == "bert-base"].set_index(["assumption", "value"])
    embedding = ", ".join(f"{name} ({bits:,.0f} bits): {int(bert.loc[('input_bits', bits), 'best_split'])}"
                          for name, bits in paper.EMBEDDING_SIZED_INPUTS.items())
    slow = paper.SLOW_SERVER_EXAMPLE
    at_paper = int(bert.loc[("flops_per_cycle_server", slow["flops_per_cycle_server"]), "best_split"])
    example = pd.read_csv(out / "fig6_slow_server.csv")
    k, curve = paper.best_split_of(example)["best_split"], example.set_index("split").log10_distortion_bound
    last = MODEL_SPECS[slow["model"]].num_layers
    interior = best.groupby(["model", "assumption"]).interior.sum().unstack().reset_index()
    return ["## Fig. 6: which assumption gives an interior best split", "",
            "The exact solver over every split at each model's preset budgets, one assumption changed at a time "
            "(`laimco sweep --split all --set ...`). Figure: `fig6_assumptions.png`; data: `fig6_assumptions.csv`.",
            "", f"* A raw input as large as an fp16 or fp32 embedding (`--set input_bits=...`), BERT-base best split "
            f"{embedding}.",
            f"* A slower server, c̃ = {slow['flops_per_cycle_server']:g} FLOPs/cycle "
            f"(`--set flops_per_cycle_server={slow['flops_per_cycle_server']:g}`): BERT-base's best split at the "
            f"paper's budgets is {at_paper} of 0..{last}; at T0 = {slow['delay_s']} s, E0 = {slow['energy_j']} J it "
            f"is {k} (log10 D̂ {curve[k]:.2f}, against {curve[1]:.2f} at k = 1, {curve[0]:.2f} on-server and "
            f"{curve[last]:.2f} at k = {last}).", "",
            "How many values of each assumption's grid give an interior best split, 0 < k < L:", "",
            _markdown_table(interior), ""]


PROFILES_TEXT = """\
Every system figure is computed twice: **as published**, on the presets `bert-base-published` and
`bart-base-published`, which carry the paper's totals (109.48 M parameters and 21.77 GFLOPs; 139.42 M and
6.44 GFLOPs) split per layer like the measured profiles, and **as measured**, on the profiles of our Flax
ports (XLA cost analysis: 22.70 and 13.27 GFLOPs). BART's published figure counts one FLOP per
multiply-accumulate, its BERT figure two (docs/theory.md, FLOP conventions), so as published a BART
budget buys twice the compute."""

COUNTS_EXPLANATION = """\
Why the counts look like this: device-only pruning never loses to the proposed design where both are
feasible, because at these budgets the optimum never prunes the server part (ρ̃ = 1; the server is the
cheaper place to compute), so pinning ρ̃ = 1 costs nothing; it loses only where the unpruned server part
alone breaks a budget. Fixed power is infeasible wherever uploading the embedding at P_max costs more
than E0 (786,432 bits at 0.5 W take about 0.04 s and 0.02 J, above BERT's E0 = 0.015 J)."""


def _on_device_summary(fig6: pd.DataFrame) -> list[str]:
    """Why Fig. 6's BART panel has an on-device point beyond split L, with its log10 D̂ per profile."""
    ends = fig6[(fig6.scheme == "on-device")]
    values = "; ".join(f"{r.model}: log10 D̂ {r.log10_distortion_bound:.3g} at the paper's budgets" if r.feasible
                       else f"{r.model}: infeasible" for r in ends.itertuples())
    return ["## Fig. 6's on-device end", "",
            "BERT-base's split L = 12 runs the whole model on the device. BART-base splits its encoder only: its "
            "split L = 6 keeps the decoder on the server, so on its own the split axis has no on-device end and "
            "\"interior\" would mean nothing there. Fig. 6's BART panel therefore adds the on-device point at 7: the "
            "`on-device` scheme, the whole model, decoder included, on the device (q ← q + s, N ← N + Ñ, nothing "
            "uploaded; `paper.on_device_split`), and a BART split counts as interior only if it beats split 0 and "
            f"that point ({values}).", ""]


def _claims_summary(out: Path) -> list[str]:
    """The claims, the benchmark counts and the preset point of ``summary.md``, published beside measured."""
    claims = pd.read_csv(out / "claims.csv")
    tables = pd.concat([pd.read_csv(out / f"{n}.csv") for n in SYSTEM_FIGURES.values()])
    side = paper.claims_side_by_side(claims)
    lines = ["## The paper's claims, as published and as measured", "", PROFILES_TEXT, "",
             _markdown_table(side), ""]
    if not claims[(claims.claim == "interior_split") & (claims.profile == "measured")].holds.all():
        lines += [SPLIT_EXPLANATION, ""]
    counts = pd.read_csv(out / "benchmark_counts.csv")
    lines += ["## The proposed design against each benchmark (Figs. 4, 5)", "",
              "Points of the Fig. 4 and Fig. 5 grids (panels (d) excluded) where the proposed D̂ is strictly "
              "lower (`better`), equal within 1e-9 (`tie`) or where only the benchmark is infeasible.", "",
              _markdown_table(counts), "", COUNTS_EXPLANATION, ""]
    panels = tables[tables.figure.isin(["fig4d", "fig5d"]) & (tables.scheme == "proposed")]
    if len(panels):
        bits = panels.upload_bits.iloc[0]
        lines += ["## Figs. 4(d) and 5(d): random pruning, T0 = 0.21 s, E0 = 0.0011 J", "",
                  "Random and magnitude pruning differ in task accuracy only, not in (P1): the panels (d) differ "
                  "from (c) by their budgets. With the paper's 786,432-bit embedding every scheme is infeasible at "
                  "E0 = 0.0011 J (the upload alone costs more), so the panels are drawn at the largest upload at "
                  f"which T0 = 0.21 s and E0 = 0.0011 J are jointly feasible, θ = {bits:,.0f} bits "
                  "(`paper.largest_upload_bits`: T0 · r(min(P_max, E0/T0))). Proposed points feasible: "
                  + ", ".join(f"{f}: {int(g.feasible.sum())} of {len(g)}" for f, g in panels.groupby("figure")) + ".",
                  ""]
    lines += _on_device_summary(tables[tables.figure == "fig6"])
    lines += ["## At the paper's budgets (split 4)", "",
              _markdown_table(_at_preset(tables[tables.figure == "fig6"])), "",
              "Figures: `fig4_delay.png`, `fig5_energy.png`, `fig6_split.png` (measured) and "
              "`fig4_delay_published.png`, `fig5_energy_published.png`, `fig6_split_published.png` (as published); "
              "a scheme's infeasible points are crosses in its colour along the bottom of a panel.", ""]
    return lines


def write_summary(out: str | Path, config: ReproduceConfig = ReproduceConfig()) -> Path:
    """``summary.md`` from the part files present in ``out`` (parts not computed are listed as such)."""
    out = Path(out)
    lines = ["# laimco reproduce — summary", "",
             f"Preset `{config.preset}`, {'quick' if config.quick else 'full'} grids "
             f"({config.grids.points} points per budget axis). Figures and their data lie beside this file.", ""]
    if (out / "claims.csv").exists():
        lines += _claims_summary(out)
    if (out / "fig6_assumptions.csv").exists():
        lines += _assumptions_summary(out)
    if (out / "sca_vs_exact.csv").exists():
        sca = pd.read_csv(out / "sca_vs_exact.csv")
        both = sca[(sca.status_exact == "optimal") & sca.log10_sca.notna()]
        lines += ["## The paper's SCA against the certified global optimum (beyond the paper)", "",
                  f"Over {len(sca)} points of the Fig. 4 grid: largest gap log10 D̂(SCA) − log10 D̂* = "
                  f"{both.gap_log10.max():.3g}, median {both.gap_log10.median():.3g}; SCA iterations median "
                  f"{sca.sca_iterations.median():.0f}, max {sca.sca_iterations.max():.0f}; SCA statuses: "
                  + ", ".join(f"{k} {v}" for k, v in sca.status_sca.value_counts().items()) + ". "
                  "Figure: `sca_vs_exact.png`.", ""]
    if (out / "sensitivity.csv").exists():
        sens = pd.read_csv(out / "sensitivity.csv")
        cols = [c for c in sens.columns if c.startswith("elasticity_")]
        medians = sens.groupby("model")[cols].median().reset_index()
        lines += ["## Sensitivity of the optimum (beyond the paper)", "",
                  "Median elasticity d ln D̂*/d ln x over the feasible Fig. 4 points (−2: 1 % more x lowers "
                  "D̂* by 2 %). Figure: `sensitivity.png`.", "", _markdown_table(medians), ""]
    lines += _theory_summary(out)
    if (out / "fig2_weights.csv").exists() and (out / "fig4_delay.csv").exists():
        lines += _laplace_scale_summary(out)
    if (out / "fading_summary.csv").exists() and (out / "fading_static.csv").exists():
        lines += _fading_summary(out)
    if (out / "multiuser_cells.csv").exists():
        lines += _multiuser_summary(out)
    path = out / "summary.md"
    path.write_text("\n".join(lines))
    return path


def _laplace_scale_summary(out: Path) -> list[str]:
    """How the Laplace scale β behind h(w) moves log10 D̂: the Figs. 4, 5 optima re-evaluated with the
    MiniLM fit of ``fig2_weights.csv`` (:func:`paper.laplace_scale_shift`)."""
    from laimco_jax.params import MODEL_SPECS

    fits = pd.read_csv(out / "fig2_weights.csv").set_index("model")
    fitted = float(fits.loc["minilm", "laplace_scale"])
    rows = pd.concat([pd.read_csv(out / f"{SYSTEM_FIGURES[f]}.csv") for f in ("fig4", "fig5")])
    rows = rows[(rows.scheme == "proposed") & rows.feasible]
    shift = paper.laplace_scale_shift(rows, fitted)
    (beta,) = {spec.laplace_scale for spec in MODEL_SPECS.values()}  # one β for every preset
    return ["## The Laplace scale β behind h(w)", "",
            f"The presets take h(w) = q_p log2(2eβ) with β = {beta:g} per weight, a value "
            "the paper does not state and for which we have no source; we keep it as the default. A Laplace fit "
            f"to MiniLM's {'pretrained' if fits.loc['minilm', 'pretrained'] else 'random-init'} weights gives "
            f"β' = {fitted:.3g} (Fig. 2 table). β enters eq. (41) only through h/(q + s) = log2(2eβ), added to "
            "log2 D̂, so it shifts log D̂ by the same constant at every ρ, ρ̃, split and budget and changes no "
            f"optimum, feasibility or ranking: over the {len(rows)} feasible proposed points of Figs. 4, 5, "
            f"replacing β by β' shifts log10 D̂ by {shift.min():.6f} to {shift.max():.6f} "
            f"(log10(β'/β) = {np.log10(fitted / beta):.6f}).", ""]


def _theory_summary(out: Path) -> list[str]:
    """The Fig. 2, Fig. 3 and closing-the-loop sections of ``summary.md`` (from the part files present)."""
    lines = []
    if (out / "fig2_weights.csv").exists():
        fits = pd.read_csv(out / "fig2_weights.csv")
        cols = ["model", "pretrained", "better_fit", "laplace_scale", "laplace_mean_loglik", "laplace_ks",
                "gaussian_scale", "gaussian_mean_loglik", "gaussian_ks"]
        lines += ["## Fig. 2: are the weights Laplacian? (Assumption of Section IV)", "",
                  "Mean log-likelihood [nats/weight] and Kolmogorov–Smirnov statistic of each fit to the pooled "
                  "weight matrices. Figure: `fig2_weights.png`.", "", _markdown_table(fits[cols]), ""]
    if (out / "fig3_distortion.csv").exists():
        table = pd.read_csv(out / "fig3_distortion.csv")
        pruned = table[table.ratio < 1]
        rows = []
        for (model, method), group in pruned.groupby(["model", "pruning"], sort=False):
            lowest = group.loc[group.ratio.idxmin()]
            rows.append(dict(model=model, pruning=method, ratio=lowest.ratio,
                             param_distortion=lowest.param_distortion,
                             output_distortion=lowest.output_distortion_mean,
                             G_bound=lowest.G_bound, thm31_holds=group.theorem_holds_fraction.min(),
                             prop32_holds=group.prop32_holds_fraction.min()))
        lines += ["## Fig. 3: output against parameter distortion (Section III)", "",
                  "At the lowest remaining ratio of the grid; `thm31_holds` and `prop32_holds` are the smallest "
                  "fraction of inputs, over the ratios, on which Theorem 3.1's bound (FCDNNs, biases included) "
                  "and G‖Ω − Ω̂‖_F hold. Figure: `fig3_distortion.png`.", "", _markdown_table(pd.DataFrame(rows)), ""]
        magnitude = pruned[pruned.pruning == "magnitude"].set_index(["model", "ratio"]).param_distortion
        random = pruned[pruned.pruning == "random"].set_index(["model", "ratio"]).param_distortion
        common = magnitude.index.intersection(random.index)
        lines += [f"Magnitude pruning gives a lower parameter distortion than random pruning at "
                  f"{int((magnitude[common] < random[common]).sum())} of {len(common)} (model, ratio) points.", ""]
    if (out / "close_loop.csv").exists():
        loop = pd.read_csv(out / "close_loop.csv")
        wide = loop.pivot_table(index=["delay_s", "rho", "rho_server", "log10_distortion_bound"], columns="pruning",
                                values="cosine_similarity_mean").reset_index()
        wide.columns = [c if c in ("delay_s", "rho", "rho_server", "log10_distortion_bound") else f"cosine_{c}"
                        for c in wide.columns]
        lines += ["## Closing the loop on the real MiniLM (beyond the paper)", "",
                  "The exact solver's ρ, ρ̃ over T0 (MiniLM's measured profile, split "
                  f"{int(loop.split.iloc[0])}), applied to the real MiniLM: cosine similarity of mean-pooled "
                  "sentence embeddings to the unpruned model's. Figure: `close_loop.png`.", "",
                  _markdown_table(wide), ""]
    return lines


def _fading_summary(out: Path) -> list[str]:
    """The fading section of ``summary.md``, read off ``fading_summary.csv`` and ``fading_static.csv``."""
    records = pd.read_csv(out / "fading_summary.csv")
    static = pd.read_csv(out / "fading_static.csv")
    distance, outage = float(records.distance_m.iloc[0]), float(records.outage.iloc[0])
    table = pd.DataFrame(dict(
        fading=records.fading,
        static_log10_D=records.static_log10_distortion_bound,
        static_outage=[f"{o:.4f} ± {e:.4f}" for o, e in zip(records.static_outage, records.static_outage_standard_error)],
        adaptive_mean_log10_D=records.adaptive_mean_log10_distortion_bound,
        adaptive_q05=records.adaptive_log10_distortion_bound_q05,
        adaptive_q50=records.adaptive_log10_distortion_bound_q50,
        adaptive_q95=records.adaptive_log10_distortion_bound_q95,
        adaptive_infeasible=records.adaptive_infeasible_fraction,
        value_of_channel_knowledge=records.value_of_channel_knowledge_log10))
    reach, none_at = [], []
    for (fading, d), curve in static.groupby(["fading", "distance_m"], sort=False):
        feasible = curve[np.isfinite(curve.log10_distortion_bound)]
        at = curve[np.isclose(curve.outage, outage)].log10_distortion_bound
        if not len(feasible):
            where = "at no ε of the grid"
        elif len(feasible) == len(curve):
            where = "at every ε of the grid"
        else:
            where = f"from ε = {feasible.outage.min():.3g} on"
        found = len(at) and np.isfinite(at.iloc[0])
        level = f"log10 D̂* = {at.iloc[0]:.3g} at ε = {outage:g}" if found else f"none at ε = {outage:g}"
        reach.append(f"{fading} at d = {d:g} m {where} ({level})")
        if not found:
            none_at.append(f"{fading} at d = {d:g} m")
    samples = int(records.samples.iloc[0])
    return ["## Fading: the outage-constrained static design and the adaptive design (beyond the paper)", "",
            f"BERT-base at d = {distance:g} m, the preset's budgets. The static design is fixed before the channel "
            "is drawn and meets T0 and E0 with probability ≥ 1 − ε: (P1) at the ε-quantile of the gain g·|h|² "
            "(docs/theory.md#fading-channels). The adaptive design is solved per draw, knowing it. Monte Carlo over "
            f"{samples:,} draws per model (seed {int(records.seed.iloc[0])}) at ε = {outage:g}: `static_outage` is the "
            "fraction of draws where the static design misses a budget (± one standard error; it should come out at "
            "ε), the adaptive quantiles count a draw without a feasible design as +inf, and the value of channel "
            "knowledge is the static log10 D̂* minus the adaptive mean [decades].", "",
            _markdown_table(table), "",
            f"The static design over the grid ε = {static.outage.min():.3g} … {static.outage.max():.3g} exists for "
            + "; ".join(reach) + "."
            + (f" No static design meets the budgets at ε = {outage:g} for " + " and ".join(none_at)
               + f", which is why the Monte Carlo runs at d = {distance:g} m." if none_at else "")
            + " Figures: `fading_static.png` (static log10 D̂* against ε, the adaptive mean dotted), `fading_cdf.png` "
            "(CDF of the adaptive design's log10 D̂* over the draws, the static level dashed); data: "
            "`fading_static.csv`, `fading_summary.csv`, `fading_draws.csv`. The same run for one model: "
            f"`laimco fading --set distance_m={distance:g} --fading rayleigh --outage {outage:g} --samples {samples} "
            "--out DIR`.", ""]


def _multiuser_summary(out: Path) -> list[str]:
    """The multi-user section of ``summary.md``, read off ``multiuser_cells.csv`` (and the users file)."""
    from laimco_jax.experiments.multiuser import MAIN_BUDGETS, OPTIMIZED_OBJECTIVE, server_comparison

    every_cell = pd.read_csv(out / "multiuser_cells.csv")
    cells = every_cell[every_cell.server_sharing == "equal"]
    users = pd.read_csv(out / "multiuser_users.csv")
    distances = users.drop_duplicates("user").distance_m
    main = cells[cells.budgets == MAIN_BUDGETS]
    rows = []
    for k, group in main.groupby("users"):
        by = group.set_index("objective")
        row = dict(K=int(k))
        for objective, column, scale in (("sum-log", "sum-log gain [bits/user]", k), ("sum", "sum gain [%]", None),
                                         ("max", "max gain [bits]", 1)):
            cell = by.loc[objective]
            if not np.isfinite(cell.value):
                text = f"{cell.status} ({cell.infeasible_reason})"
            elif not np.isfinite(cell.equal_split_value):
                text = "equal split infeasible"
            else:
                gain = 100 * cell.gain / cell.equal_split_value if scale is None else cell.gain / scale
                gain = 0.0 if abs(gain) < 1e-9 else gain  # K = 1: the same solve up to rounding
                text = f"{gain:.3g}" + ("" if cell.status == "optimal" else f" ({cell.status}, cert {cell.certificate:.2g})")
            row[column] = text
        row["equal-split infeasible users"] = int(by.equal_split_infeasible_users.iloc[0])
        rows.append(row)
    lines = ["## Multi-user cell: K users sharing the band and the server (beyond the paper)", "",
             f"K = {int(cells.users.min())} … {int(cells.users.max())} BERT-base users (preset system, split 4, "
             f"weights 1) at seeded distances uniform in {distances.min():.0f} … {distances.max():.0f} m (user k is "
             "the same user in every cell with K ≥ k) share the paper's uplink band B = 5 MHz by FDMA and the server "
             "clock F = 4 GHz, so sharing tightens with K. Each objective is solved for every cell in one batched call "
             "(`solvers.multiuser.solve_cell`; docs/theory.md#multi-user-cell) and compared with the equal split (B/K "
             "and F/K per user, each user solved exactly). The server is shared equally (F/K) in both, so the joint "
             "allocation optimises the band shares (optimised server shares: below). Certificates: "
             "the gap to the proven lower bound in bits per user (sum-log), bits (max), relative (sum); a cell is "
             "`optimal` below 1e-6.", "",
             "Gain of the joint allocation over the equal split at "
             + ", ".join(f"{r.budgets} budgets T0 = {r.delay_s:g} s, E0 = {r.energy_j:g} J"
                         for r in main.drop_duplicates("budgets").itertuples())
             + " (sum-log: equal-split minus joint Σ log2 D̂ per user; sum: the relative reduction of Σ D̂; max: of "
             "max log2 D̂; a status is named where the solve is not certified optimal, with its certificate):", "",
             _markdown_table(pd.DataFrame(rows)), ""]
    for name, group in cells.groupby("budgets", sort=False):
        t0, e0 = group.delay_s.iloc[0], group.energy_j.iloc[0]
        counts = "; ".join(f"{o}: " + ", ".join(f"{s} {n}" for s, n in g.status.value_counts().items())
                           + f" (largest certificate where a point was found "
                             f"{g[np.isfinite(g.value)].certificate.max():.2g})"
                           for o, g in group.groupby("objective", sort=False))
        infeasible = group[group.status == "infeasible"]
        unresolved = group[~np.isfinite(group.value) & (group.status != "infeasible")]
        text = (f"no feasible allocation (proven) for K ≥ {int(infeasible.users.min())} of "
                f"{int(group.users.min())} … {int(group.users.max())} (reason: "
                + ", ".join(sorted(set(infeasible.infeasible_reason))) + ")") if len(infeasible) else \
            "no cell is proven infeasible"
        if len(unresolved):
            text += ("; the solver found no allocation and no proof of infeasibility (status "
                     + "/".join(sorted(set(unresolved.status))) + ") at "
                     + "; ".join(f"{o} K = " + ", ".join(map(str, g.users))
                                 for o, g in unresolved.groupby("objective", sort=False)))
        rescued = group[np.isfinite(group.value) & ~np.isfinite(group.equal_split_value)]
        if len(rescued):
            text += ("; the equal split leaves some user without a design meeting its budgets at K = "
                     + ", ".join(str(k) for k in sorted(set(rescued.users))) + ", where the joint allocation has one")
        worse = group[np.isfinite(group.value) & np.isfinite(group.equal_split_value)
                      & (group.value > group.equal_split_value + 1e-9 * np.abs(group.equal_split_value))]
        lines.append(f"* {name} budgets (T0 = {t0:g} s, E0 = {e0:g} J): {text}; cells per status: {counts}"
                     + ("; the returned joint point is worse than the equal split at "
                        + ", ".join(f"{r.objective} K = {r.users}" for r in worse.itertuples())
                        + " (not certified optimal there)" if len(worse) else "") + ".")
    comparison = server_comparison(every_cell)
    if len(comparison):
        lines += ["", f"**Optimised server shares** ({OPTIMIZED_OBJECTIVE}; S_k with Σ S_k ≤ F chosen with the bands, "
                  "docs/theory.md#optimised-server-shares). Not a convex problem: the returned point meets every "
                  "budget and both shared limits and is never worse than equal shares; its certificate is the gap to "
                  "a two-price dual bound, which also holds the duality gap the non-convexity leaves. Gain over equal "
                  "server shares (both with the optimal band split) per user, and the certificate [bits per unit "
                  "weight]:", ""]
        for name, frame in comparison.groupby("budgets", sort=False):
            frame = frame.sort_values("users")
            lines.append(f"* {name} budgets: gain per user " + ", ".join(
                f"K = {int(r.users)} {r.gain_per_user:.3g}" for r in frame.itertuples())
                + "; certificate " + ", ".join(f"K = {int(r.users)} {r.certificate:.2g}" for r in frame.itertuples())
                + ".")
    lines += ["", "Figures: `multiuser_users.png` (each user's log10 D̂ and band share against K, per objective, "
              f"{MAIN_BUDGETS} budgets), `multiuser_gain.png` (the gain over the equal split and the certificate "
              "against K), `multiuser_server.png` (optimised against equal server shares: the gain, each user's "
              "share and the certificate against K); data: `multiuser_cells.csv`, `multiuser_users.csv`.", ""]
    return lines
