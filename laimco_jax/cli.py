"""The ``laimco`` command line.

Every command that takes a configuration accepts ``--preset`` and ``--model`` (embedded defaults),
or ``--config FILE.toml`` instead (it replaces the presets: giving both is an error), and repeated
``--set section.field=value`` overrides (the bare field name works too). The CLI computes in float64.

Exit statuses (see :func:`main`): 0 success (a solve that ran, whatever its status), 2 bad input (one
line on stderr), 1 internal error (one line; the traceback with ``--debug`` or ``LAIMCO_DEBUG=1``),
130 interrupted. ``--json`` output is strict JSON (:func:`json_text`).
"""

from __future__ import annotations

import inspect
import json
import math
import sys
from pathlib import Path
from typing import Annotated, Any, Optional

import typer
from rich.console import Console
from rich.table import Table

from laimco_jax.params import ConfigError, Problem, Range, check_range, dump_toml, make_problem, validate_fraction
from laimco_jax.units import UNITS

app = typer.Typer(
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,  # help is plain text: rich markup eats "[system]", "[s]"; Markdown eats "<model>"
    help="Pruning-aware co-inference of large AI models at the wireless edge (laimco_jax).",
)
console = Console()

DEBUG_ENV = "LAIMCO_DEBUG"
_run = {"debug": False, "quick_exit": False}  # --debug of the current invocation; quick_exit: see _quick_exit


@app.callback()
def _root(
    debug: Annotated[bool, typer.Option("--debug", envvar=DEBUG_ENV, help=f"Print the traceback of an internal error "
                                        f"(also {DEBUG_ENV}=1).")] = False,
) -> None:
    _run["debug"] = debug


PresetOpt = Annotated[Optional[str], typer.Option("--preset", help="System preset (Section VI of the paper; "
                                                  "default paper).")]
ModelOpt = Annotated[Optional[str], typer.Option("--model", help="Model profile preset: bert-base (default) or "
                                                 "bart-base.")]
ConfigOpt = Annotated[
    Optional[Path], typer.Option("--config", help="TOML file with [system], [model], [budget]; replaces --preset "
                                 "and --model.")
]
SetOpt = Annotated[
    Optional[list[str]],
    typer.Option("--set", help="Override a field: section.field=value or field=value (repeatable)."),
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]


def _enable_x64() -> None:
    import jax

    jax.config.update("jax_enable_x64", True)


def _parse_sets(items: list[str] | None) -> dict[str, str]:
    out = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or not key or not value:
            raise ConfigError(f"--set {item!r}: expected KEY=VALUE, e.g. budget.delay_s=0.3")
        field = key.strip().rpartition(".")[2]  # section.field and field name the same field
        earlier = [k for k in out if k.rpartition(".")[2] == field]
        if earlier:
            raise ConfigError(f"--set {item!r}: {field} is already set by --set {earlier[0]}={out[earlier[0]]}; "
                              "give each field once")
        out[key.strip()] = value.strip()
    return out


def _problem(
    preset: str | None, model: str | None, config: Path | None, sets: list[str] | None, split: int | None = None
) -> Problem:
    """The configuration of --preset/--model (default paper, bert-base) at ``split``, or of --config; with --set.

    Unknown preset names are errors; so is --preset or --model given with --config (the file replaces them).
    """
    problem = make_problem(preset or "paper", model or "bert-base", split=split, config=config,
                           overrides=_parse_sets(sets))
    given = [f"--{option} {value}" for option, value in (("preset", preset), ("model", model)) if value is not None]
    if config is not None and given:
        raise ConfigError(f"{' and '.join(given)} given with --config {str(config)!r}: the config file replaces "
                          "the presets; give one or the other")
    return problem


_POSITIVE = Range(0.0, False)
_NONNEGATIVE = Range(0.0)


def _scalar(x: Any) -> Any:
    import numpy as np

    arr = np.asarray(x)
    return arr.item() if arr.ndim == 0 else arr.tolist()


def _nonfinite_kind(value: float) -> str:
    return "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf")


def _json_value(value: Any, key: str, notes: dict[str, str]) -> Any:
    """``value`` with non-finite floats replaced by None and noted in ``notes`` under ``key`` (``key[i]`` in lists)."""
    if isinstance(value, dict):
        return _json_object(value, {})
    if isinstance(value, (list, tuple)):
        return [_json_value(v, f"{key}[{i}]", notes) for i, v in enumerate(value)]
    if isinstance(value, float) and not math.isfinite(value):
        notes[key] = _nonfinite_kind(value)
        return None
    return value


def _json_object(record: dict[str, Any], why: dict[str, str]) -> dict[str, Any]:
    notes: dict[str, str] = {}
    out = {key: _json_value(value, key, notes) for key, value in record.items()}
    if notes:
        out["nonfinite"] = {key: f"{kind}: {why[key]}" if key in why else kind for key, kind in notes.items()}
    return out


def json_text(data: dict[str, Any] | list[dict[str, Any]], why: dict[str, str] | None = None) -> str:
    """``data`` (an object or a list of objects) as strict JSON: every ``--json`` output goes through here.

    JSON has no NaN or infinity, so a non-finite number becomes ``null`` and the object holding it gains a
    member ``"nonfinite"`` mapping its key (``key[i]`` for an element of a list) to ``"inf"``, ``"-inf"`` or
    ``"nan"``, followed by ``": reason"`` where ``why`` (top-level keys) gives one.
    """
    body = _json_object(data, why or {}) if isinstance(data, dict) else [_json_object(d, {}) for d in data]
    return json.dumps(body, indent=2, allow_nan=False)


#: Units in the tables of ``laimco system``, ``bound`` and ``solve`` (a dimensionless quantity shown as "-").
_TABLE_UNITS = {name: "-" if unit == "1" else unit for name, unit in UNITS.items()} | {
    "model_bits": "bit",  # laimco bound: retained parameters x bits per weight
}


def _emit(record: dict[str, Any], as_json: bool, title: str, units: dict[str, str],
          why: dict[str, str] | None = None) -> None:
    """Print ``record`` as strict JSON (see :func:`json_text`, ``why``) or as a table with ``units``."""
    record = {k: _scalar(v) for k, v in record.items()}
    if as_json:
        print(json_text(record, why))
        return
    table = Table(title=title)
    table.add_column("quantity")
    table.add_column("value", justify="right")
    table.add_column("unit")
    for key, value in record.items():
        text = f"{value:.6g}" if isinstance(value, float) else str(value)
        table.add_row(key, text, units.get(key, ""))
    console.print(table)


@app.command("config")
def config_cmd(
    preset: PresetOpt = None,
    model: ModelOpt = None,
    config: ConfigOpt = None,
    set_: SetOpt = None,
) -> None:
    """Print the full configuration as TOML (save it, edit it, pass it back with --config)."""
    print(dump_toml(_problem(preset, model, config, set_)), end="")


@app.command("system")
def system_cmd(
    rho: Annotated[float, typer.Option("--rho", help="Device part's remaining fraction ρ in [0, 1].")],
    f_device: Annotated[float, typer.Option("--f-device", help="Device clock f [Hz].")],
    p_watt: Annotated[float, typer.Option("--p-watt", help="Transmit power p [W].")],
    rho_server: Annotated[float, typer.Option("--rho-server", help="Server part's remaining fraction ρ̃ in [0, 1].")],
    f_server: Annotated[float, typer.Option("--f-server", help="Server clock f̃ [Hz].")],
    preset: PresetOpt = None,
    model: ModelOpt = None,
    config: ConfigOpt = None,
    set_: SetOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Every delay and energy term of eqs. (2), (4)-(11) at one operating point."""
    from laimco_jax.system import OperatingPoint, evaluate

    validate_fraction("--rho", rho)
    validate_fraction("--rho-server", rho_server)
    problem = _problem(preset, model, config, set_)
    check_range("--f-device", f_device, Range(0.0, True, float(problem.system.f_max_device_hz)))
    check_range("--p-watt", p_watt, Range(0.0, True, float(problem.system.p_max_w)))
    check_range("--f-server", f_server, Range(0.0, True, float(problem.system.f_max_server_hz)))
    import jax
    import jax.numpy as jnp

    problem = problem.astype(jnp.float64)
    # Compiled, as the solvers' verdict on a point is: XLA rewrites x/ln 2 as x·(1/ln 2), so an eager
    # evaluation can differ in the last bit, and a budget copied from here would miss by one ulp.
    terms = jax.jit(evaluate)(problem.system, problem.model, OperatingPoint(rho, f_device, p_watt, rho_server, f_server))
    record = dict(terms._asdict())
    record["within_delay_budget"] = bool(terms.delay_s <= problem.budget.delay_s)
    record["within_energy_budget"] = bool(terms.energy_j <= problem.budget.energy_j)
    _emit(record, as_json, "System model, eqs. (2), (4)-(11)", _TABLE_UNITS)


@app.command("bound")
def bound_cmd(
    params_device: Annotated[float, typer.Option("--params-device", help="q, device-side parameters.")],
    params_server: Annotated[float, typer.Option("--params-server", help="s, server-side parameters.")],
    rho: Annotated[float, typer.Option("--rho", help="ρ in [0, 1] (remaining fraction).")],
    rho_server: Annotated[float, typer.Option("--rho-server", help="ρ̃ in [0, 1] (remaining fraction).")],
    bits_per_weight: Annotated[float, typer.Option("--bits-per-weight", help="b, bits per stored weight.")],
    entropy_bits: Annotated[float, typer.Option("--entropy-bits", help="h(w), model entropy [bits].")],
    as_json: JsonOpt = False,
) -> None:
    """The rate-distortion bound D̂(ρ, ρ̃) of eq. (41), with log2 D̂ and log10 D̂."""
    import jax.numpy as jnp

    from laimco_jax import distortion

    check_range("--params-device", params_device, _NONNEGATIVE)
    check_range("--params-server", params_server, _NONNEGATIVE)
    if params_device + params_server < 1:
        raise ConfigError(
            f"--params-device + --params-server = {params_device + params_server!r} is outside the allowed range [1, inf)"
        )
    validate_fraction("--rho", rho)
    validate_fraction("--rho-server", rho_server)
    check_range("--bits-per-weight", bits_per_weight, _POSITIVE)
    check_range("--entropy-bits", entropy_bits, Range(-math.inf))
    args = [jnp.float64(v) for v in (rho, rho_server, params_device, params_server, bits_per_weight, entropy_bits)]
    log2_d = float(distortion.log2_distortion_bound(*args))
    record = {
        "log2_distortion_bound": log2_d,
        "log10_distortion_bound": log2_d * math.log10(2.0),
        "distortion_bound": 2.0**log2_d if log2_d < 1024 else math.inf,
        "retained_params": rho * params_device + rho_server * params_server,
        "model_bits": (rho * params_device + rho_server * params_server) * bits_per_weight,
    }
    _emit(record, as_json, "Distortion bound D̂, eq. (41)", _TABLE_UNITS,
          why={"distortion_bound": "2**log2_distortion_bound overflows float64"})


METHODS = ("exact", "sca", "cvxpy-exact", "cvxpy-sca")
FadingOpt = Annotated[Optional[str], typer.Option("--fading", help="Fading of the gain g|h|^2: rayleigh, rician:K, "
                                                  "lognormal:SIGMA_DB, rayleigh+lognormal:SIGMA_DB or "
                                                  "rician:K+lognormal:SIGMA_DB.")]
#: Deprecated key of ``laimco solve --json`` -> the key (Solution's and the sweep store's name) that
#: replaces it. Each is still printed, with the same value, in 0.1.x and is removed after it.
DEPRECATED_JSON_KEYS = {"p_watt": "p_w"}
DistanceRangeOpt = Annotated[Optional[str], typer.Option(
    "--distance-range", help="With --fading: MIN:MAX [m], the user's distance uniform in area over that annulus, "
    "drawn per channel draw; the configuration's distance_m is then ignored and the design holds with "
    "probability >= 1 - ε over distance and fading (needs the path-loss fields).")]
_IGNORED_DISTANCE = "the configuration's distance_m ignored"


def solution_record(solution, *, method: str, scheme: str) -> dict[str, Any]:
    """A flat JSON-able record of a scalar Solution: the keys of ``laimco solve --json`` (besides the
    deprecated aliases of :data:`DEPRECATED_JSON_KEYS`), named as the fields of Solution."""
    from laimco_jax.solvers import INFEASIBLE_REASON_TEXT, InfeasibleReason, Status

    status = Status(int(solution.status))
    reason = InfeasibleReason(int(solution.infeasible_reason))
    record = {
        "status": status.name.lower(),
        "infeasible_reason": INFEASIBLE_REASON_TEXT[reason],
        "method": method,
        "scheme": scheme,
        "rho": solution.rho,
        "rho_server": solution.rho_server,
        "f_device_hz": solution.f_device_hz,
        "p_w": solution.p_w,
        "f_server_hz": solution.f_server_hz,
        "delay_s": solution.delay_s,
        "energy_j": solution.energy_j,
        "delay_slack_s": solution.delay_slack_s,
        "energy_slack_j": solution.energy_slack_j,
        "log2_distortion_bound": solution.log2_distortion_bound,
        "log10_distortion_bound": solution.log10_distortion_bound,
        "retained_params": solution.retained_params,
        "certificate": solution.certificate,
        "delay_multiplier": solution.delay_multiplier,
        "energy_multiplier": solution.energy_multiplier,
        "iterations": solution.iterations,
    }
    if solution.objective_history is not None:
        record["objective_history"] = solution.objective_history
    return {k: _scalar(v) for k, v in record.items()}


def _solve(problem: Problem, scheme: str, method: str):
    import jax.numpy as jnp

    from laimco_jax.solvers import scheme_spec, solve_exact

    scheme_spec(scheme)
    if method not in METHODS:
        raise ConfigError(f"--method = {method!r} is not known; allowed: {', '.join(METHODS)}")
    if method == "exact":
        return solve_exact(problem.astype(jnp.float64), scheme)
    if method == "sca":
        from laimco_jax.solvers.sca import solve_sca

        return solve_sca(problem.astype(jnp.float64), scheme)
    from laimco_jax import reference

    fn = reference.solve_cvxpy_exact if method == "cvxpy-exact" else reference.solve_cvxpy_sca
    return fn(problem, scheme).solution


@app.command("solve")
def solve_cmd(
    preset: PresetOpt = None,
    model: ModelOpt = None,
    config: ConfigOpt = None,
    set_: SetOpt = None,
    scheme: Annotated[str, typer.Option("--scheme", help="proposed, fixed-power, fixed-frequency, "
                                        "device-pruning-only, server-pruning-only, on-device, on-server.")] = "proposed",
    method: Annotated[str, typer.Option("--method", help="exact | sca | cvxpy-exact | cvxpy-sca.")] = "exact",
    fading: FadingOpt = None,
    outage: Annotated[Optional[float], typer.Option("--outage", help="Outage probability ε in (0, 1) of the "
                                                    "--fading design (default 0.05).")] = None,
    distance_range: DistanceRangeOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Minimise the distortion bound D̂ of (41) under the delay and energy budgets: problem (P1).

    With --fading MODEL, the static design that meets both budgets with probability >= 1 - ε (--outage):
    (P1) at the ε-quantile of the faded gain, reported as fading_quantile_gain (docs/theory.md#fading-channels).
    With --distance-range MIN:MAX, the quantile of the gain g(d)|h|^2 over a distance uniform in the annulus
    and the fading (distance_range_m; the configuration's distance_m is ignored).
    """
    from laimco_jax.cli_fading import outage_problem

    problem, fading_keys = outage_problem(_problem(preset, model, config, set_), fading, outage, distance_range)
    record = solution_record(_solve(problem, scheme, method), method=method, scheme=scheme) | fading_keys
    if as_json:
        print(json_text(record | {old: record[new] for old, new in DEPRECATED_JSON_KEYS.items()}))
        return
    record.pop("objective_history", None)
    annulus = f" at the ε-quantile over distances in [{distance_range}] m, {_IGNORED_DISTANCE}" if distance_range else ""
    _emit(record, False, f"(P1) solved by {method}, scheme {scheme}{annulus}", _TABLE_UNITS | {"distance_range_m": "m"})


#: Columns of ``laimco multiuser``'s user table: (record key, header).
_MULTIUSER_COLUMNS = (("status", "status"), ("bandwidth_hz", "b [Hz]"), ("rho", "rho"), ("rho_server", "rho_srv"),
                      ("p_w", "p [W]"), ("log10_distortion_bound", "log10 D"))


@app.command("multiuser")
def multiuser_cmd(
    users: Annotated[Path, typer.Option("--users", help="Cell file (TOML): [cell] bandwidth_hz, f_max_server_hz; "
                                        "optional [defaults]; one [[user]] table per user (see README).")],
    objective: Annotated[Optional[str], typer.Option("--objective", help="sum-log (default) | sum | max; "
                                                     "overrides the file's.")] = None,
    server_sharing: Annotated[Optional[str], typer.Option("--server-sharing", help="equal (F/K per user, the "
                                                          "default) | optimized (shares chosen with the bands; the "
                                                          "certificate is a duality gap, see README); overrides "
                                                          "the file's.")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Many users in one cell: each user's band share and design minimising a joint distortion objective."""
    from laimco_jax.cli_multiuser import multiuser_record

    record = multiuser_record(users, objective, server_sharing,
                              lambda s: solution_record(s, method="exact", scheme="proposed"))
    if as_json:
        print(json_text(record))
        return
    cell = {k: v for k, v in record.items() if k != "users"}
    unit = "-" if record["objective_name"] == "sum" else "bit"  # sum: relative certificate
    units = _TABLE_UNITS | dict.fromkeys(("objective", "lower_bound", "equal_split_objective", "alone_objective",
                                          "certificate"), unit)
    _emit(cell, False, f"Cell of {len(record['users'])} users, objective {record['objective_name']}", units)
    table = Table(title="Users in file order (laimco multiuser --json for every field)")
    columns = _MULTIUSER_COLUMNS[:2] + ((("server_share_hz", "F_k [Hz]"),) if record["server_sharing"] == "optimized"
                                        else ()) + _MULTIUSER_COLUMNS[2:]
    for header in ("user",) + tuple(header for _, header in columns):
        table.add_column(header, justify="right")
    for k, user in enumerate(record["users"], start=1):
        table.add_row(str(k), *[f"{user[c]:.4g}" if isinstance(user[c], float) else str(user[c]) for c, _ in columns])
    console.print(table)


@app.command("fading")
def fading_cmd(
    fading: Annotated[str, typer.Option("--fading", help="Fading of the gain g|h|^2: rayleigh, rician:K, "
                                        "lognormal:SIGMA_DB, rayleigh+lognormal:SIGMA_DB or rician:K+lognormal:SIGMA_DB.")],
    preset: PresetOpt = None,
    model: ModelOpt = None,
    config: ConfigOpt = None,
    set_: SetOpt = None,
    scheme: Annotated[str, typer.Option("--scheme", help="Design scheme (see `laimco solve --help`).")] = "proposed",
    outage: Annotated[float, typer.Option("--outage", help="Outage probability ε in (0, 1) of the static design.")] = 0.05,
    samples: Annotated[int, typer.Option("--samples", help="Channel draws N.")] = 10_000,
    seed: Annotated[int, typer.Option("--seed", help="Seed of the draws (the same seed gives the same draws).")] = 0,
    chunk_size: Annotated[int, typer.Option("--chunk-size", help="Draws solved per batch (memory bound).")] = 16_384,
    out: Annotated[Optional[Path], typer.Option("--out", help="Directory (created) for fading_draws.csv, "
                                                "fading_static.csv, fading_summary.json, fading_cdf.png, fading_static.png "
                                                "(with --users: fading_cell_draws.csv, fading_cell_summary.json, fading_cell_cdf.png).")] = None,
    as_json: JsonOpt = False,
    users: Annotated[Optional[Path], typer.Option("--users", help="Cell file (as laimco multiuser): independent draws per "
                                                  "user, the static cell design at each user's ε-quantile and the cell outage.")] = None,
    objective: Annotated[Optional[str], typer.Option("--objective", help="With --users: sum-log, sum or max (default the file's).")] = None,
    distance_range: DistanceRangeOpt = None,
) -> None:
    """Fading: the static outage design, its outage over N channel draws, and the adaptive design per draw.

    The static design meets both budgets with probability >= 1 - ε: (P1) at the ε-quantile of the gain
    (static_outage measures it: ε within sampling error). The adaptive design solves (P1) at each drawn
    gain: the mean and 5/50/95 % quantiles of its log10 D̂* (a draw without a design counts as +inf in
    the quantiles), its infeasible fraction, and the value of channel knowledge (static minus adaptive
    mean log10 D̂*). docs/theory.md#fading-channels.

    With --distance-range MIN:MAX each draw also draws the user's distance, uniform in area over the
    annulus (distance_range_m, mean_distance_m); the gain factors are then relative to the path loss at MAX
    and the configuration's distance_m is ignored.

    With --users CELL.toml, a cell of users with independent draws per user: the static cell design at
    every user's ε-quantile gain, the cell outage (draws where any user misses a budget; 1 - (1 - ε)^K
    for K users whose budgets bind) and the adaptive cell design (laimco multiuser) per draw.
    """
    from laimco_jax.cli_fading import CELL_FADING_UNITS, FADING_UNITS, cell_fading_record, fading_record

    if users is not None:
        given = [flag for flag, v in (("--preset", preset), ("--model", model), ("--config", config), ("--set", set_),
                                      ("--distance-range", distance_range)) if v] + (["--scheme"] if scheme != "proposed" else [])
        record = cell_fading_record(users, fading, objective=objective, outage=outage, samples=samples, seed=seed,
                                    chunk_size=chunk_size, out=out, refused=given)
        title = (f"Fading {record['fading']} in a cell of {record['users']} users: static design at each user's "
                 f"ε = {outage:g} and adaptive cell design over {record['samples']} draws")
        units = FADING_UNITS | CELL_FADING_UNITS
    elif objective is not None:
        raise ConfigError(f"--objective {objective!r}: only with --users CELL.toml (the objective of a cell)")
    else:
        record = fading_record(_problem(preset, model, config, set_), fading, outage=outage, samples=samples,
                               seed=seed, scheme=scheme, chunk_size=chunk_size, out=out, distance_range=distance_range)
        title = f"Fading {record['fading']}: static design at ε = {outage:g} and adaptive design over {record['samples']} draws"
        if distance_range is not None:
            title += f" (distances uniform over [{distance_range}] m, {_IGNORED_DISTANCE})"
        units = FADING_UNITS
    files = record.pop("files", None)
    if as_json:
        print(json_text(record | ({"files": files} if files else {})))
        return
    _emit(record, False, title, units)
    if files:
        console.print(f"wrote {', '.join(files)}")


@app.command("sweep")
def sweep_cmd(
    preset: Annotated[Optional[str], typer.Option("--preset", help="System preset (default paper).")] = None,
    model: Annotated[Optional[str], typer.Option("--model", help="Model preset (default bert-base).")] = None,
    config: ConfigOpt = None,
    set_: SetOpt = None,
    grid: Annotated[Optional[list[str]], typer.Option("--grid", help="FIELD=START:STOP:NUM[:log] or FIELD=V1,V2,... (repeatable).")] = None,
    points: Annotated[Optional[Path], typer.Option("--points", help="CSV file of explicit points (one column per field).")] = None,
    split: Annotated[Optional[str], typer.Option("--split", help="Split points: all, FIRST:LAST or a comma list.")] = None,
    scheme: Annotated[Optional[str], typer.Option("--scheme", help="all or a comma list of schemes (default proposed).")] = None,
    out: Annotated[Optional[Path], typer.Option("--out", help="Output: NAME.zarr (Zarr store) or NAME.nc (netCDF, via the work store NAME.nc.zarr); open with laimco_jax.sweep.open_sweep.")] = None,
    spec: Annotated[Optional[Path], typer.Option("--spec", help="Sweep spec TOML (see laimco_jax.sweep).")] = None,
    resume: Annotated[bool, typer.Option("--resume", help="Continue an interrupted sweep in --out.")] = False,
    chunk_size: Annotated[Optional[int], typer.Option("--chunk-size", help="Solves per chunk (memory bound).")] = None,
    distributed: Annotated[bool, typer.Option("--distributed", help="Join a multi-host run (jax.distributed).")] = False,
    gradient: Annotated[Optional[list[str]], typer.Option("--gradient", help="Store d OUTPUT/d FIELD, e.g. log2_distortion_bound/delay_s (repeatable).")] = None,
    force: Annotated[bool, typer.Option("--force", help="Start even if the results may not fit on the disk.")] = False,
    users: Annotated[Optional[Path], typer.Option("--users", help="Cell file (as laimco multiuser): sweep cells of users; "
                                                  "--grid then takes bandwidth_hz, f_max_server_hz or a per-user field (set for every user).")] = None,
    num_users: Annotated[Optional[str], typer.Option("--num-users", help="With --users: a K axis, K1,K2,... or FIRST:LAST users "
                                                     "copied from the file's first user at drawn distances (needs --distance-range).")] = None,
    draws: Annotated[Optional[int], typer.Option("--draws", help="With --num-users: random cells per K (default 1).")] = None,
    seed: Annotated[Optional[int], typer.Option("--seed", help="With --num-users: seed of the distances; with --fading: seed of the channel draws (default 0; the same seed gives the same draws).")] = None,
    distance_range: Annotated[Optional[str], typer.Option("--distance-range", help="With --num-users: MIN:MAX [m], distances uniform over that annulus.")] = None,
    objective: Annotated[Optional[str], typer.Option("--objective", help="With --users: sum-log, sum, max, a comma list or all (default the file's).")] = None,
    fading: FadingOpt = None,
    samples: Annotated[Optional[int], typer.Option("--samples", help="With --fading: channel draws per grid point (default 1000).")] = None,
    reduce_only: Annotated[bool, typer.Option("--reduce-only", help="With --fading: store only the mean, 5/50/95 % quantiles and infeasible fraction of log10 D̂* over the draws, not the sample dim.")] = False,
) -> None:
    """Solve (P1) on a Cartesian grid of configurations, chunk by chunk, into a resumable Zarr store.

    With --fading MODEL, solve every grid point at --samples channel draws (seeded by --seed; a sample
    dim with the drawn gain_factor) and store the reductions over them (--reduce-only: those alone).

    With --users, solve cells of users (laimco multiuser) on a grid of cell or per-user fields, and
    optionally over the number of users K (--num-users), into the same kind of store with a user dim.
    Ctrl-C exits with status 130 and one line on stderr: the chunks written and how to resume.
    """
    from laimco_jax.cli_sweep import run_sweep_from_cli

    path = run_sweep_from_cli(
        preset=preset, model=model, config=config, overrides=_parse_sets(set_), grids=grid, points=points,
        splits=split, schemes=scheme, out=out, spec=spec, resume=resume, chunk_size=chunk_size,
        distributed=distributed, gradients=gradient, force=force, users=users, num_users=num_users, draws=draws,
        seed=seed, distance_range=distance_range, objectives=objective, fading=fading, samples=samples,
        reduce_only=reduce_only,
    )
    console.print(f"sweep written to {path}")
    _run["quick_exit"] = not distributed  # jax.distributed's shutdown runs at exit


def _quick_exit(caller_globals: dict) -> None:
    """End the process at once (``os._exit(0)``, output flushed) after a command that asked for it, when
    ``main`` is the process' entry point (its caller is a ``__main__`` module: the console script,
    ``python -m laimco_jax.cli``), not a test calling it in-process.

    Tearing down the interpreter after a sweep (modules, JAX's and XLA's objects, the zarr event loop)
    takes about a second; nothing is left to do by then: the store is written and closed, its lock
    released, and the persistent compilation cache written when the program was compiled.
    """
    import logging
    import os

    if not _run["quick_exit"] or caller_globals.get("__name__") != "__main__":
        return
    from laimco_jax.sweep.phases import write as write_phases

    write_phases()
    logging.shutdown()
    try:
        for stream in (sys.stdout, sys.stderr):
            stream.flush()
    except BrokenPipeError:  # the reader of stdout is gone: as main
        os._exit(1)
    os._exit(0)


@app.command("profile")
def profile_cmd(
    model: Annotated[str, typer.Option("--model", help="minilm, bert-base, bart-base or a checkpoint directory.")] = "minilm",
    seq_len: Annotated[int, typer.Option("--seq-len", help="Input sequence length [tokens].")] = 128,
    activation_bits: Annotated[int, typer.Option("--activation-bits", help="Bits per uploaded activation.")] = 8,
    splits: Annotated[Optional[str], typer.Option("--splits", help="Comma list of split points (default: all).")] = None,
    entropy: Annotated[bool, typer.Option("--entropy/--no-entropy", help="Fit h(w) (sorts every weight).")] = True,
    as_json: JsonOpt = False,
) -> None:
    """Per-split profile of a model: q, s, N_FLOP, Ñ_FLOP (XLA cost analysis), θ and h(w)."""
    from laimco_jax.models.profile import split_profiles

    chosen = None
    if splits is not None:
        try:
            chosen = [int(x) for x in splits.split(",")]
        except ValueError as exc:
            raise ConfigError(f"--splits = {splits!r}: expected a comma list of integers, e.g. 0,4,12") from exc
    records = split_profiles(model, seq_len=seq_len, activation_bits=activation_bits, splits=chosen, entropy=entropy)
    if as_json:
        print(json_text(records))
        return
    keys = ["split", "params_device", "params_server", "flops_device", "flops_server", "embedding_bits"]
    table = Table(title=f"Split profiles of {model} at {seq_len} tokens")
    for key in keys:
        table.add_column(key, justify="right")
    for record in records:
        table.add_row(*(f"{record[k]:.6g}" if isinstance(record[k], float) else str(record[k]) for k in keys))
    console.print(table)
    if records and records[0].get("entropy_bits") is not None:
        console.print(f"h(w) = {records[0]['entropy_bits']:.6g} bits (Laplace fit of all weights)")


@app.command("sensitivity")
def sensitivity_cmd(
    preset: PresetOpt = None,
    model: ModelOpt = None,
    config: ConfigOpt = None,
    set_: SetOpt = None,
    scheme: Annotated[str, typer.Option("--scheme", help="Design scheme (see `laimco solve --help`).")] = "proposed",
    as_json: JsonOpt = False,
) -> None:
    """Elasticities d ln(output)/d ln(input) of the optimum, ranked by their effect on D̂."""
    import jax
    import jax.numpy as jnp

    from laimco_jax.sensitivity import OUTPUTS, elasticities
    from laimco_jax.solvers import Status, scheme_spec, solve_exact

    scheme_spec(scheme)
    problem = _problem(preset, model, config, set_).astype(jnp.float64)
    status = Status(int(solve_exact(problem, scheme).status))
    table_data = elasticities(problem, scheme)
    names = {"log2_distortion_bound": "distortion_bound"}
    rows = []
    for path, value in jax.tree_util.tree_leaves_with_path(problem):
        field = jax.tree_util.keystr(path).lstrip(".")
        row = {"field": field, "value": float(value)}
        for out in OUTPUTS:
            leaf = dict(jax.tree_util.tree_leaves_with_path(table_data[out]))[path]
            row[f"elasticity_{names.get(out, out)}"] = float(leaf)
        rows.append(row)
    rows.sort(key=lambda r: -abs(r["elasticity_distortion_bound"]))
    if as_json:
        print(json_text({"status": status.name.lower(), "scheme": scheme, "elasticities": rows}))
        return
    table = Table(title=f"Elasticities of the optimum ({scheme}, status {status.name.lower()}): d ln y / d ln x")
    for column in ("input", "value", "D̂", "ρ", "ρ̃", "f", "p", "f̃"):
        table.add_column(column, justify="left" if column == "input" else "right", no_wrap=True)
    keys = ["distortion_bound", "rho", "rho_server", "f_device_hz", "p_w", "f_server_hz"]

    def shown(x: float) -> str:  # rounding noise of exact zeros is shown as 0
        return "0" if abs(x) < 1e-9 else f"{x:+.3g}"

    for row in rows:
        table.add_row(row["field"], f"{row['value']:.4g}", *(shown(row["elasticity_" + k]) for k in keys))
    console.print(table)


@app.command("evaluate")
def evaluate_cmd(
    task: Annotated[str, typer.Option("--task", help="squad (BertForQuestionAnswering) or summarization (BartForConditionalGeneration).")],
    checkpoint: Annotated[Path, typer.Option("--checkpoint", help="Hugging Face directory: config.json, model.safetensors, tokenizer.json.")],
    data: Annotated[Path, typer.Option("--data", help="SQuAD v1.1 JSON, or summarisation JSONL (one object per line).")],
    split: Annotated[int, typer.Option("--split", help="Split point k: the device runs the embeddings and blocks 0..k-1.")],
    rho: Annotated[Optional[float], typer.Option("--rho", help="Remaining fraction of the device half, (0, 1].")] = None,
    rho_server: Annotated[Optional[float], typer.Option("--rho-server", help="Remaining fraction of the server half, (0, 1].")] = None,
    solve: Annotated[bool, typer.Option("--solve", help="Take ρ, ρ̃ from the exact solver on --preset/--model/--config/--set at --split.")] = False,
    preset: PresetOpt = None,
    model: ModelOpt = None,
    config: ConfigOpt = None,
    set_: SetOpt = None,
    pruning: Annotated[str, typer.Option("--pruning", help="magnitude or random.")] = "magnitude",
    seed: Annotated[int, typer.Option("--seed", help="Seed of random pruning.")] = 0,
    limit: Annotated[Optional[int], typer.Option("--limit", help="Evaluate the first N examples only.")] = None,
    text_key: Annotated[str, typer.Option("--text-key", help="JSONL key of the input text.")] = "article",
    summary_key: Annotated[str, typer.Option("--summary-key", help="JSONL key of the reference summary.")] = "highlights",
    max_new_tokens: Annotated[int, typer.Option("--max-new-tokens", help="Longest generated summary [tokens].")] = 64,
    as_json: JsonOpt = False,
) -> None:
    """Task metrics of a split model pruned at (ρ, ρ̃): SQuAD exact match/F1 or ROUGE-1/2/L, in percent.

    Give the ratios with --rho and --rho-server, or --solve to use the exact solver's optimum for the
    configuration (preset or --config, with --set) at the same split; an infeasible configuration is an
    error. Greedy decoding for summarisation.
    """
    from laimco_jax.tasks import evaluate_task

    if solve == (rho is not None or rho_server is not None):
        raise ConfigError("give either --rho and --rho-server, or --solve (not both, not neither)")
    if not solve and (rho is None or rho_server is None):
        raise ConfigError("--rho and --rho-server go together")
    record: dict[str, Any] = {}
    if solve:
        import jax.numpy as jnp

        from laimco_jax.solvers import Status, found_point, solve_exact

        problem = _problem(preset, model, config, set_, split=split if config is None else None)
        solution = solve_exact(problem.astype(jnp.float64))
        if not found_point(int(solution.status)):
            status = Status(int(solution.status)).name.lower()
            raise ConfigError(f"the configuration at split {split} has no optimum to evaluate (status {status}): "
                              "no pruning ratios were found that meet both budgets")
        rho, rho_server = float(solution.rho), float(solution.rho_server)
        record["log10_distortion_bound"] = float(solution.log10_distortion_bound)
        if rho == 0.0 or rho_server == 0.0:
            raise ConfigError(f"the optimum prunes a half entirely (rho = {rho:.3g}, rho_server = {rho_server:.3g}); "
                              "a model with an empty half cannot be evaluated")
    kwargs = dict(text_key=text_key, summary_key=summary_key) if task == "summarization" else {}
    result = evaluate_task(task, checkpoint, data, split=split, rho=rho, rho_server=rho_server, pruning=pruning,
                           seed=seed, limit=limit, max_new_tokens=max_new_tokens, **kwargs)
    _emit({**result, **record}, as_json, f"{task} on {checkpoint} at split {split}", {})


@app.command("reproduce")
def reproduce_cmd(
    out: Annotated[Path, typer.Option("--out", help="Directory for the figures (PNG), their data (CSV) and summary.md.")] = Path("results"),
    quick: Annotated[bool, typer.Option("--quick", help="Small grids and batches (about a minute; what CI runs).")] = False,
    preset: Annotated[str, typer.Option("--preset", help="System preset.")] = "paper",
    parts: Annotated[Optional[str], typer.Option("--parts", help="Comma list of parts (default: every part but multiuser; all: every part).")] = None,
) -> None:
    """The paper's Figs. 2-6 and what it lacks (SCA vs the exact optimum, sensitivity, fading; multi-user cells with --parts multiuser), with summary.md.

    A re-run with the same arguments reuses the finished parts recorded in OUT/manifest.json.
    """
    from laimco_jax.experiments.reproduce import ReproduceConfig, reproduce

    chosen = None if parts is None else [p.strip() for p in parts.split(",") if p.strip()]
    reproduce(out, ReproduceConfig(quick=quick, preset=preset), parts=chosen)
    console.print(f"wrote {out / 'summary.md'}")


# ----------------------------------------------------------------------------- theory on real weights

TheoryModelOpt = Annotated[str, typer.Option("--model", help="fcdnn8, fcdnn16, minilm, bart, a checkpoint directory "
                                             "or an FCDNN .safetensors file.")]
OutOpt = Annotated[Path, typer.Option("--out", help="Output directory (created) for the CSV and PNG files.")]
QuickOpt = Annotated[bool, typer.Option("--quick", help="Small batch, few ratios, short training: seconds, for CI.")]
SeedOpt = Annotated[int, typer.Option("--seed", help="Seed of training, initialisation, inputs and random masks.")]


def _pruning_methods(pruning: str) -> tuple[str, ...]:
    allowed = ("magnitude", "random", "both")
    if pruning not in allowed:
        raise ConfigError(f"--pruning = {pruning!r} is not known; allowed: {', '.join(allowed)}")
    return ("magnitude", "random") if pruning == "both" else (pruning,)


def _float_list(option: str, text: str | None) -> list[float] | None:
    if text is None:
        return None
    try:
        return [float(x) for x in text.split(",")]
    except ValueError as exc:
        raise ConfigError(f"{option} = {text!r}: expected a comma list of numbers, e.g. 0.1,0.5,1") from exc


def _label(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name) or "model"


def _print_frame(frame, columns: list[str], title: str) -> None:
    table = Table(title=title)
    for column in columns:
        table.add_column(column, justify="right", overflow="fold")
    for _, row in frame.iterrows():
        table.add_row(*(f"{row[c]:.4g}" if isinstance(row[c], float) else str(row[c]) for c in columns))
    console.print(table)


@app.command("weight-fit")
def weight_fit_cmd(
    model: Annotated[list[str], typer.Option("--model", help="fcdnn8, fcdnn16, minilm, bart, a checkpoint directory "
                                             "or an FCDNN .safetensors file (repeatable).")],
    out: OutOpt,
    quick: QuickOpt = False,
    seed: SeedOpt = 0,
    bins: Annotated[int, typer.Option("--bins", help="Histogram bins.")] = 121,
) -> None:
    """Fig. 2: Laplace vs Gaussian fits of the weight matrices (log-likelihood, KS) and a histogram.

    Writes fig2_weights.csv (one row per model), fig2_weights_histogram.csv and fig2_weights.png in --out.
    """
    from laimco_jax.experiments import theory

    table = theory.weight_fit_table(model, quick=quick, seed=seed, bins=bins)
    paths = theory.write_table(table, out, "weight_fit")
    _print_frame(table, ["model", "n_weights", "laplace_scale", "laplace_mean_loglik", "laplace_ks",
                         "gaussian_scale", "gaussian_mean_loglik", "gaussian_ks", "better_fit"],
                 "Weight fits (Fig. 2): mean log-likelihood [nats/weight], KS statistic")
    console.print(f"wrote {', '.join(map(str, paths))}")


@app.command("bound-check")
def bound_check_cmd(
    model: TheoryModelOpt,
    out: OutOpt,
    pruning: Annotated[str, typer.Option("--pruning", help="magnitude, random or both.")] = "both",
    ratios: Annotated[Optional[str], typer.Option("--ratios", help="Comma list of remaining ratios "
                                                  "(default 0.05..1 by 0.05; --quick 0.2,0.5,0.8,1).")] = None,
    batch_size: Annotated[Optional[int], typer.Option("--batch-size", help="Inputs (digits or sentences).")] = None,
    iterations: Annotated[Optional[int], typer.Option("--iterations", help="Power-iteration steps for G.")] = None,
    quick: QuickOpt = False,
    seed: SeedOpt = 0,
) -> None:
    """Fig. 3: output vs parameter distortion under pruning, Theorem 3.1 (FCDNNs) and Prop. 3.2's G.

    Writes fig3_distortion_<model>.csv and .png in --out. Theorem 3.1 with biases: see the columns
    theorem_holds_fraction, lemma31_holds_fraction and theorem_applies (laimco_jax.bounds).
    """
    from laimco_jax.experiments import theory

    table = theory.bound_check_table(model, _pruning_methods(pruning), _float_list("--ratios", ratios), quick=quick,
                                     seed=seed, iterations=iterations, batch_size=batch_size)
    paths = theory.write_table(table, out, "bound_check", _label(str(table["model"].iloc[0])))
    columns = ["pruning", "ratio", "param_distortion", "output_distortion_mean", "first_order_distortion_mean",
               "G_bound"]
    if table["theorem_bound"].notna().any():
        columns += ["theorem_bound", "theorem_holds_fraction", "lemma31_holds_fraction"]
    _print_frame(table, columns, f"Output vs parameter distortion of {table['model'].iloc[0]} "
                 f"(G = {table['G'].iloc[0]:.4g})")
    console.print(f"wrote {', '.join(map(str, paths))}")


@app.command("close-loop")
def close_loop_cmd(
    out: OutOpt,
    model: Annotated[str, typer.Option("--model", help="minilm or a pretrained checkpoint directory.")] = "minilm",
    split: Annotated[int, typer.Option("--split", help="Split layer k (device: embeddings + blocks < k).")] = 3,
    delays: Annotated[Optional[str], typer.Option("--delays", help="Comma list of delay budgets T0 [s] "
                                                  "(default: evenly from the smallest feasible to no pruning).")] = None,
    n_delays: Annotated[Optional[int], typer.Option("--n-delays", help="Automatic budgets (default 6, --quick 3).")] = None,
    energy_j: Annotated[Optional[float], typer.Option("--energy-j", help="Energy budget E0 [J] (default: preset's).")] = None,
    preset: PresetOpt = "paper",
    pruning: Annotated[str, typer.Option("--pruning", help="magnitude, random or both.")] = "both",
    prunable: Annotated[str, typer.Option("--prunable", help="Comma list of leaf kinds pruned: kernel, bias, scale, "
                                          "embedding (default all: ρ is the kept fraction of q).")] = "kernel,bias,scale,embedding",
    batch_size: Annotated[Optional[int], typer.Option("--batch-size", help="Sentences.")] = None,
    quick: QuickOpt = False,
    seed: SeedOpt = 0,
) -> None:
    """Closing the loop: the exact solver's ρ, ρ̃ over T0 at the model's profile, applied to the real model.

    Reports log10 D̂ (eq. (41)) beside the measured output distortion and the cosine similarity of
    mean-pooled sentence embeddings to the unpruned model's. Writes close_loop_<model>.csv and .png.
    """
    from laimco_jax.experiments import theory

    if energy_j is not None:
        check_range("--energy-j", energy_j, _POSITIVE)
    table = theory.close_loop_table(model, split=split, delays=_float_list("--delays", delays), n_delays=n_delays,
                                    energy_j=energy_j, preset=preset, pruning=_pruning_methods(pruning),
                                    quick=quick, seed=seed, batch_size=batch_size,
                                    prunable=tuple(x.strip() for x in prunable.split(",")))
    paths = theory.write_table(table, out, "close_loop", _label(Path(model).name if model != "minilm" else model))
    _print_frame(table, ["delay_s", "status", "rho", "rho_server", "log10_distortion_bound", "pruning",
                         "output_distortion_mean", "cosine_similarity_mean"],
                 f"Closing the loop on {model} at split {split}")
    console.print(f"wrote {', '.join(map(str, paths))}")


def _list_commands_by_their_first_line() -> None:
    """``laimco --help`` lists each command with its docstring's first line (click stops at "eqs." or "Fig.")."""
    for info in app.registered_commands:
        info.short_help = info.short_help or inspect.getdoc(info.callback).splitlines()[0]


_list_commands_by_their_first_line()


def _configure_jax() -> None:
    """float64, and JAX's persistent compilation cache (see :func:`main`)."""
    import os

    import jax

    _enable_x64()
    cache = os.environ.get("LAIMCO_COMPILATION_CACHE")
    if cache is None:
        cache = jax.config.jax_compilation_cache_dir or str(
            Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "laimco_jax" / "jax"
        )
    if cache and cache.lower() != "off":
        jax.config.update("jax_compilation_cache_dir", cache)


def _exit(line: str, code: int) -> None:
    """Print ``line`` as exactly one line on stderr and exit with ``code``."""
    print(" ".join(line.split()), file=sys.stderr)
    sys.exit(code)


def _interrupted_line(exc: KeyboardInterrupt) -> str:
    """The exception's ``message`` attribute or text (e.g. how far a sweep got), else "interrupted"."""
    return getattr(exc, "message", None) or str(exc) or "interrupted"


def main() -> None:
    """Entry point of the ``laimco`` console script.

    Exit statuses: 0 success; 2 bad input (a ConfigError, or a usage error such as an unknown option:
    one line on stderr); 1 any other exception, an internal error (one line asking for a report; the
    traceback too with ``--debug`` or ``LAIMCO_DEBUG=1``); 130 interrupted (the interrupt's message or
    "interrupted").

    It also turns on JAX's persistent compilation cache, so that a second ``laimco sweep`` (or
    ``solve``) of the same structure skips compiling: in ``$LAIMCO_COMPILATION_CACHE`` if set (empty or
    ``off`` disables it), else in ``$JAX_COMPILATION_CACHE_DIR`` if set, else in
    ``$XDG_CACHE_HOME/laimco_jax/jax`` (``~/.cache/laimco_jax/jax``); a sweep's compiled programs are also kept
    there, under ``laimco-sweep-executables/``, up to ``$LAIMCO_SWEEP_EXECUTABLES_MAX_BYTES`` (default 2 GiB;
    :mod:`laimco_jax.sweep.executables`). Only the command line does this;
    importing the package changes no JAX setting.
    """
    import os
    import traceback

    _configure_jax()
    _run["debug"] = _run["quick_exit"] = False
    command = typer.main.get_command(app)
    try:  # not app(): typer's own handling turns an interrupt into a bare exit code and loses its message
        with command.make_context("laimco", sys.argv[1:] or ["--help"]) as ctx:
            command.invoke(ctx)
    except ConfigError as exc:
        _exit(f"error: {exc}", 2)
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    except typer.TyperException as exc:  # click usage errors: unknown option, bad or missing value
        _exit(f"error: {exc.format_message()}", 2)
    except KeyboardInterrupt as exc:
        _exit(_interrupted_line(exc), 130)
    except BrokenPipeError:  # the reader of stdout is gone (`laimco ... | head`): nothing to report
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no second error at exit's flush
        sys.exit(1)
    except Exception as exc:
        if _run["debug"]:
            traceback.print_exc()
        _exit(f"internal error: {type(exc).__name__}: {exc} — please report it to the laimco_jax issue tracker "
              f"with the command line (run with --debug or {DEBUG_ENV}=1 for the traceback)", 1)
    _quick_exit(sys._getframe(1).f_globals)


if __name__ == "__main__":
    main()
