"""Configuration of a co-inference problem as frozen pytrees, with validation, presets and TOML I/O.

Three sections, named as in a TOML file, the CLI (``--set section.field=value``) and the Python API:

* :class:`SystemParams` (``[system]``): wireless link and the two processors (paper Section II, VI).
* :class:`ModelProfile` (``[model]``): how the model is split (q, s, N_FLOP, Ñ_FLOP, θ) and stored (b, h(w)).
* :class:`Budget` (``[budget]``): the delay budget T0 and the energy budget E0 of (44a), (44b).

:class:`Problem` bundles the three. All classes are pytrees whose leaves may be Python floats, NumPy
arrays or JAX arrays of any (broadcastable) batch shape, so a batch of problems is one ``Problem``.

Validation runs when a user constructs an object from concrete values (``__post_init__``); pytree
unflattening (inside ``jit``, ``vmap``, ``grad``) bypasses it, so gradients and tracers pass through.
Every check names the field, the offending value and the allowed range.
"""

from __future__ import annotations

import dataclasses
import json
import math
import tomllib
from importlib import resources
from pathlib import Path
from typing import Any, Mapping, NamedTuple

import jax
import numpy as np
import tomli_w

__all__ = [
    "ConfigError",
    "MissingDependencyError",
    "SystemParams",
    "ModelProfile",
    "Budget",
    "Problem",
    "SYSTEM_PRESETS",
    "MODEL_PRESETS",
    "BUDGET_PRESETS",
    "ModelPresetSpec",
    "MEASURED_SPECS",
    "PUBLISHED_TOTALS",
    "published_spec",
    "make_problem",
    "model_preset_fields",
    "RAW_INPUT_SPLIT",
    "split_upload_bits",
    "apply_overrides",
    "field_name",
    "problem_to_dict",
    "problem_from_dict",
    "load_toml",
    "read_user_text",
    "dump_toml",
    "save_toml",
    "validate_fraction",
    "check_range",
    "Range",
]


class ConfigError(ValueError):
    """A configuration value is missing, malformed or outside its allowed range."""


class MissingDependencyError(ConfigError, ImportError):
    """A command needs an optional dependency (a pip extra of laimco_jax) that is not installed."""


# ----------------------------------------------------------------------------- pytree dataclasses


def _pytree_dataclass(cls):
    """Frozen dataclass registered as a pytree whose unflatten bypasses ``__init__``/validation.

    Fields set to ``None`` are empty subtrees (e.g. the unused form of the channel description).
    """
    cls = dataclasses.dataclass(frozen=True)(cls)
    names = tuple(f.name for f in dataclasses.fields(cls))

    def flatten_with_keys(obj):
        return [(jax.tree_util.GetAttrKey(n), getattr(obj, n)) for n in names], None

    def unflatten(_, children):
        obj = object.__new__(cls)
        for n, v in zip(names, children):
            object.__setattr__(obj, n, v)
        return obj

    jax.tree_util.register_pytree_with_keys(
        cls, flatten_with_keys, unflatten, flatten_func=lambda o: ([getattr(o, n) for n in names], None)
    )
    def derive(self, **changes):
        """A copy with ``changes`` that skips validation: for values derived from an already validated
        object (e.g. a scheme's re-split, whose q + s may exceed the range of q alone)."""
        return unflatten(None, [changes.get(n, getattr(self, n)) for n in names])

    cls.replace = lambda self, **changes: dataclasses.replace(self, **changes)
    cls.derive = derive
    return cls


# ----------------------------------------------------------------------------- validation helpers

class Range(NamedTuple):
    """The values a field accepts: finite, above ``lower`` (or equal if ``inclusive``), below ``upper``
    (or equal if ``upper_inclusive``).

    The bounds are the range the solvers are tested on in float64 (several orders of magnitude beyond
    any physical setting); outside it the convex form's coefficients overflow or the price search
    no longer spans the optimal price (docs/solver.md#supported-ranges).
    """

    lower: float
    inclusive: bool = True
    upper: float = math.inf
    upper_inclusive: bool = True

    def text(self) -> str:
        low = "-inf" if self.lower == -math.inf else f"{self.lower:g}"
        closed = self.upper_inclusive and self.upper < math.inf
        return f"{'[' if self.inclusive and self.lower != -math.inf else '('}{low}, {self.upper:g}{']' if closed else ')'}"


#: The channel power gain g, given directly or through the path-loss model.
CHANNEL_GAIN_RANGE = Range(1e-30, True, 1e6)


#: A remaining fraction ρ or ρ̃ (pruning ratios keep this share of the parameters).
FRACTION_RANGE = Range(0.0, True, 1.0)


def _holds_non_real(value: Any) -> bool:
    """Whether ``value`` is, or a list/tuple in it holds, a boolean, a string or a non-numeric array."""
    if isinstance(value, (list, tuple)):
        return any(_holds_non_real(v) for v in value)
    return isinstance(value, (bool, str, bytes)) or np.asarray(value).dtype.kind not in "iufO"


def _reals(label: str, value: Any, allowed: Range) -> np.ndarray:
    """``value`` as a float64 array; ConfigError unless it is a real number or a sequence/array of them.

    Booleans and strings are refused, although NumPy would turn True into 1.0 and "0.3" into 0.3.
    """
    if not _holds_non_real(value):
        try:
            return np.asarray(value, dtype=np.float64)
        except (TypeError, ValueError, OverflowError):
            pass
    raise ConfigError(f"{label} = {value!r} ({type(value).__name__}): expected a real number in {allowed.text()}")


def check_range(label: str, value: Any, allowed: Range) -> None:
    """Raise ConfigError unless every element of ``value`` is a finite real number within ``allowed``.

    ``label`` names the value in the message (``section.field`` or a CLI option).
    """
    arr = _reals(label, value, allowed)
    bad = ~np.isfinite(arr) | ((arr > allowed.upper) if allowed.upper_inclusive else (arr >= allowed.upper))
    bad |= (arr < allowed.lower) if allowed.inclusive else (arr <= allowed.lower)
    if np.any(bad):
        idx = np.unravel_index(int(np.argmax(bad)), arr.shape) if arr.ndim else ()
        where = f" at index {tuple(int(i) for i in idx)}" if arr.ndim else ""
        raise ConfigError(f"{label} = {arr[idx].item()!r}{where} is outside the allowed range {allowed.text()}")


def validate_fraction(name: str, value: Any) -> None:
    """Raise ConfigError unless ``value`` lies in [0, 1] (pruning ratios are remaining fractions)."""
    check_range(name, value, FRACTION_RANGE)


def _is_concrete(value: Any) -> bool:
    return value is not None and not isinstance(value, jax.core.Tracer)


def _validate(obj, section: str, rules: Mapping[str, Range]) -> None:
    for name, allowed in rules.items():
        value = getattr(obj, name)
        if _is_concrete(value):
            check_range(f"{section}.{name}", value, allowed)


# ----------------------------------------------------------------------------- sections


@_pytree_dataclass
class SystemParams:
    """The ``[system]`` section: link and processors (paper Section II; values of Section VI in presets).

    The channel power gain g is given either directly (``channel_gain``, linear, dimensionless) or by
    the path-loss model g = K0 (d/d0)^-α of Section VI (``ref_gain_db`` = K0 in dB, ``ref_distance_m``
    = d0, ``distance_m`` = d, ``pathloss_exponent`` = α); exactly one form must be set.
    """

    bandwidth_hz: Any  # B, uplink bandwidth [Hz]
    noise_psd_w_per_hz: Any  # N0, noise power spectral density [W/Hz]
    p_max_w: Any  # P_max, maximum transmit power [W]
    f_max_device_hz: Any  # f^max, device clock [cycles/s]
    f_max_server_hz: Any  # f̃^max, server clock [cycles/s]
    flops_per_cycle_device: Any  # c [FLOP/cycle]
    flops_per_cycle_server: Any  # c̃ [FLOP/cycle]
    pue_device: Any  # η, power usage effectiveness [-]
    pue_server: Any  # η̃ [-]
    power_coeff_device: Any  # φ, chip power coefficient [W/(cycle/s)^3]
    power_coeff_server: Any  # φ̃ [W/(cycle/s)^3]
    channel_gain: Any = None  # g [-]
    ref_gain_db: Any = None  # K0 [dB]
    ref_distance_m: Any = None  # d0 [m]
    distance_m: Any = None  # d [m]
    pathloss_exponent: Any = None  # α [-]

    _RULES = {
        "bandwidth_hz": Range(1.0, True, 1e12),
        "noise_psd_w_per_hz": Range(1e-30, True, 1e-3),
        "p_max_w": Range(1e-12, True, 1e6),
        "f_max_device_hz": Range(1e3, True, 1e13),
        "f_max_server_hz": Range(1e3, True, 1e13),
        "flops_per_cycle_device": Range(1e-3, True, 1e9),
        "flops_per_cycle_server": Range(1e-3, True, 1e9),
        "pue_device": Range(1e-3, True, 1e3),
        "pue_server": Range(1e-3, True, 1e3),
        "power_coeff_device": Range(1e-40, True, 1e-10),
        "power_coeff_server": Range(1e-40, True, 1e-10),
        "channel_gain": CHANNEL_GAIN_RANGE,
        "ref_gain_db": Range(-300.0, True, 60.0),
        "ref_distance_m": Range(1e-3, True, 1e7),
        "distance_m": Range(1e-3, True, 1e7),
        "pathloss_exponent": Range(0.0, False, 10.0),
    }
    PATHLOSS_FIELDS = ("ref_gain_db", "ref_distance_m", "distance_m", "pathloss_exponent")

    def __post_init__(self):
        pathloss_set = [getattr(self, n) is not None for n in self.PATHLOSS_FIELDS]
        if self.channel_gain is not None and any(pathloss_set):
            raise ConfigError(
                "system.channel_gain and the path-loss fields "
                f"({', '.join(self.PATHLOSS_FIELDS)}) are exclusive: set one form of the channel"
            )
        if self.channel_gain is None and not all(pathloss_set):
            missing = [n for n, s in zip(self.PATHLOSS_FIELDS, pathloss_set) if not s]
            raise ConfigError(
                "system: the channel needs either channel_gain or all of "
                f"{', '.join(self.PATHLOSS_FIELDS)}; missing {', '.join(missing)}"
            )
        _validate(self, "system", self._RULES)
        if self.channel_gain is None and all(_is_concrete(getattr(self, n)) for n in self.PATHLOSS_FIELDS):
            self._check_pathloss_gain()

    def _check_pathloss_gain(self) -> None:
        """The gain K0 (d/d0)^-α of the path-loss fields must lie in :data:`CHANNEL_GAIN_RANGE`."""
        log10_gain = np.asarray(self.ref_gain_db, np.float64) / 10.0 - np.asarray(
            self.pathloss_exponent, np.float64
        ) * np.log10(np.asarray(self.distance_m, np.float64) / np.asarray(self.ref_distance_m, np.float64))
        low, high = math.log10(CHANNEL_GAIN_RANGE.lower), math.log10(CHANNEL_GAIN_RANGE.upper)
        bad = (log10_gain < low) | (log10_gain > high)
        if np.any(bad):
            worst = float(np.asarray(log10_gain)[np.unravel_index(int(np.argmax(bad)), np.shape(bad))])
            raise ConfigError(
                f"system: the path-loss gain K0 (d/d0)^-alpha = 1e{worst:.4g} (from ref_gain_db, ref_distance_m, "
                f"distance_m, pathloss_exponent) is outside the allowed range {CHANNEL_GAIN_RANGE.text()}"
            )


@_pytree_dataclass
class ModelProfile:
    """The ``[model]`` section: the split model's sizes and workloads (paper Sections II, IV).

    ``params_device`` q and ``params_server`` s count parameters before pruning; ``flops_device`` N_FLOP
    and ``flops_server`` Ñ_FLOP count FLOPs of one inference before pruning; ``embedding_bits`` θ is the
    size of the uploaded embedding [bits]; ``bits_per_weight`` b is the storage precision [bits];
    ``entropy_bits`` h(w) is the differential entropy of the whole model's weights [bits] (may be
    negative); ``input_bits`` is the size of the raw input [bits], uploaded when the model runs
    entirely on the server (split 0).
    """

    params_device: Any
    params_server: Any
    flops_device: Any
    flops_server: Any
    embedding_bits: Any
    bits_per_weight: Any
    entropy_bits: Any
    input_bits: Any = 0.0

    _RULES = {
        "params_device": Range(0.0, True, 1e15),
        "params_server": Range(0.0, True, 1e15),
        "flops_device": Range(0.0, True, 1e21),
        "flops_server": Range(0.0, True, 1e21),
        "embedding_bits": Range(0.0, True, 1e15),
        "bits_per_weight": Range(0.0, False, 1024.0),
        "entropy_bits": Range(-1e18, True, 1e18),
        "input_bits": Range(0.0, True, 1e15),
    }

    def __post_init__(self):
        _validate(self, "model", self._RULES)
        if _is_concrete(self.params_device) and _is_concrete(self.params_server):
            total = np.asarray(self.params_device, np.float64) + np.asarray(self.params_server, np.float64)
            if np.any(total < 1.0):
                raise ConfigError(
                    f"model.params_device + model.params_server = {float(np.min(total))!r} "
                    "is outside the allowed range [1, inf): the model needs at least one parameter"
                )

    @property
    def params_total(self):
        """q + s, parameters of the unpruned model."""
        return self.params_device + self.params_server


@_pytree_dataclass
class Budget:
    """The ``[budget]`` section: delay budget T0 [s] of (44a) and energy budget E0 [J] of (44b)."""

    delay_s: Any
    energy_j: Any

    _RULES = {"delay_s": Range(1e-9, True, 1e6), "energy_j": Range(1e-12, True, 1e6)}

    def __post_init__(self):
        _validate(self, "budget", self._RULES)


@_pytree_dataclass
class Problem:
    """One co-inference configuration (or a batch of them): system, model profile and budget."""

    system: SystemParams
    model: ModelProfile
    budget: Budget

    def astype(self, dtype) -> "Problem":
        """The same problem with every leaf a JAX array of ``dtype`` (e.g. ``jnp.float64``)."""
        return jax.tree_util.tree_map(lambda x: jax.numpy.asarray(x, dtype=dtype), self)


SECTIONS: dict[str, type] = {"system": SystemParams, "model": ModelProfile, "budget": Budget}


def _field_names(cls) -> list[str]:
    return [f.name for f in dataclasses.fields(cls)]


def _section_of_field() -> dict[str, str]:
    out: dict[str, str] = {}
    for section, cls in SECTIONS.items():
        for name in _field_names(cls):
            assert name not in out, f"field name {name} is not unique"
            out[name] = section
    return out


FIELD_SECTION = _section_of_field()


# ----------------------------------------------------------------------------- presets

#: Section VI of the paper: B = 5 MHz, N0 = 2e-19 W/Hz, P_max = 0.5 W, K0 = -30 dB at d0 = 1 m,
#: alpha = 2.8, d = 500 m, f_max = 1 GHz, f̃_max = 4 GHz, c = 32, c̃ = 128, η = 1, η̃ = 2,
#: φ = 5e-29, φ̃ = 1e-28.
SYSTEM_PRESETS: dict[str, dict[str, float]] = {
    "paper": dict(
        bandwidth_hz=5e6,
        noise_psd_w_per_hz=2e-19,
        p_max_w=0.5,
        f_max_device_hz=1e9,
        f_max_server_hz=4e9,
        flops_per_cycle_device=32.0,
        flops_per_cycle_server=128.0,
        pue_device=1.0,
        pue_server=2.0,
        power_coeff_device=5e-29,
        power_coeff_server=1e-28,
        ref_gain_db=-30.0,
        ref_distance_m=1.0,
        distance_m=500.0,
        pathloss_exponent=2.8,
    )
}


#: The split at which nothing runs on the device and the raw input is uploaded (the on-server scheme).
RAW_INPUT_SPLIT = 0


def split_upload_bits(embedding_bits: Any, input_bits: Any, raw_input: Any) -> Any:
    """θ [bits] uploaded at a split (eqs. (6), (7)): ``input_bits`` where ``raw_input`` is 1 (split 0,
    :data:`RAW_INPUT_SPLIT`: nothing runs on the device, so the raw input is uploaded, as the on-server
    scheme does), else ``embedding_bits``. Elementwise on floats, arrays and tracers; ``raw_input`` is
    0/1 (bool or array), and either value is returned exactly."""
    return input_bits * raw_input + embedding_bits * (1 - raw_input)


@dataclasses.dataclass(frozen=True)
class ModelPresetSpec:
    """A preset model's measured per-split profile (``laimco_jax/data/model_profiles.json``).

    ``splits[k]`` holds q_k, s_k, N_FLOP, Ñ_FLOP [FLOPs, XLA cost analysis at batch 1] and θ_k [bits]
    for split k = 0 (on-server: the raw input, ``seq_len`` token ids, is uploaded) ... ``num_layers``
    (BERT: on-device, nothing uploaded; BART splits its encoder only, so the server always runs the
    decoder). The file is written by ``scripts/make_preset_profiles.py`` from
    ``laimco_jax.models.profile`` (this module must not import the models). Defaults the paper leaves
    open: b = ``bits_per_weight``; h(w) = q_p x log2(2 e β), the entropy of a Laplace law with scale
    β = ``laplace_scale`` per weight; the split at layer ``default_split`` (the paper's 4).

    β = 0.028 has no source: the paper does not state it and none is known. It is kept because β only
    shifts log2 D̂ of eq. (41) by log2(β'/β) at every ρ, ρ̃ (h/(q + s) enters additively,
    docs/theory.md#distortion-bound-in-log-space), so no optimum, feasibility or ranking depends on it;
    a Laplace fit to MiniLM's pretrained weights (``laimco reproduce``, Fig. 2 table) gives 0.045, which
    would raise every log10 D̂ by 0.21.
    """

    name: str
    num_layers: int
    seq_len: int
    input_bits: float
    splits: tuple[Mapping[str, float], ...]
    decoder_seq_len: int | None = None
    default_split: int = 4
    bits_per_weight: float = 32.0
    laplace_scale: float = 0.028

    @property
    def entropy_bits_per_weight(self) -> float:
        return math.log2(2.0 * math.e * self.laplace_scale)

    def check_split(self, split: int | None) -> int:
        """``split`` (default ``default_split``) as an int; ConfigError outside [0, ``num_layers``]."""
        split = self.default_split if split is None else split
        if isinstance(split, bool) or not isinstance(split, (int, np.integer)) or not 0 <= split <= self.num_layers:
            raise ConfigError(f"split = {split!r} is outside the allowed range [0, {self.num_layers}] of {self.name}")
        return int(split)

    def profile_fields(self, split: int | None = None) -> dict[str, float]:
        """The ``[model]`` fields at ``split`` (default ``default_split``); θ = ``input_bits`` at split 0."""
        split = self.check_split(split)
        record = self.splits[split]
        total = record["params_device"] + record["params_server"]
        return dict(
            params_device=float(record["params_device"]),
            params_server=float(record["params_server"]),
            flops_device=float(record["flops_device"]),
            flops_server=float(record["flops_server"]),
            embedding_bits=float(split_upload_bits(record["embedding_bits"], self.input_bits, split == RAW_INPUT_SPLIT)),
            bits_per_weight=self.bits_per_weight,
            entropy_bits=total * self.entropy_bits_per_weight,
            input_bits=float(self.input_bits),
        )


def _load_model_specs() -> dict[str, ModelPresetSpec]:
    documents = json.loads(resources.files("laimco_jax").joinpath("data/model_profiles.json").read_text())
    return {
        name: ModelPresetSpec(
            name=name, num_layers=doc["num_layers"], seq_len=doc["seq_len"], input_bits=doc["input_bits"],
            decoder_seq_len=doc["decoder_seq_len"], splits=tuple(doc["splits"]),
        )
        for name, doc in documents.items()
    }


#: The paper's stated totals (Sec. VI-A): parameters and FLOPs of one inference. They follow two FLOP
#: conventions (docs/theory.md#flop-conventions): BERT-base's 21.77 G is two FLOPs per multiply-accumulate
#: of the linear layers at 128 tokens (21.74 G), BART-base's 6.44 G is the multiply-accumulates of the
#: linear layers for 128 encoder tokens plus one decoder step (6.43 G).
PUBLISHED_TOTALS: dict[str, tuple[float, float]] = {"bert-base": (109.48e6, 21.77e9), "bart-base": (139.42e6, 6.44e9)}
PUBLISHED_SUFFIX = "-published"


def published_spec(spec: ModelPresetSpec, params_total: float, flops_total: float) -> ModelPresetSpec:
    """``spec`` rescaled to stated totals, named ``<name>-published``: at every split q_k, s_k are scaled
    by ``params_total``/(q_k + s_k) and N_k, Ñ_k by ``flops_total``/(N_k + Ñ_k) [FLOPs], so each split
    keeps the measured device/server proportions and sums to the stated totals (an absent part stays 0)."""

    def rescaled(record: Mapping[str, float]) -> dict[str, float]:
        params = params_total / (record["params_device"] + record["params_server"])
        flops = flops_total / (record["flops_device"] + record["flops_server"])
        return {**record, "params_device": record["params_device"] * params,
                "params_server": record["params_server"] * params,
                "flops_device": record["flops_device"] * flops, "flops_server": record["flops_server"] * flops}

    return dataclasses.replace(spec, name=spec.name + PUBLISHED_SUFFIX, splits=tuple(map(rescaled, spec.splits)))


#: BERT-base (109,482,240 parameters, 22.7 GFLOPs at 128 tokens; the paper says 109.48M, 21.77 GFLOPs)
#: and BART-base (139,420,416 parameters; 13.3 GFLOPs for 128 encoder tokens and the first decoder step,
#: two FLOPs per multiply-accumulate and the attention products included; the paper's 6.44 GFLOPs counts
#: one per multiply-accumulate of the linear layers), measured per split; and ``*-published``, the same
#: splits rescaled to the paper's totals (:data:`PUBLISHED_TOTALS`).
MEASURED_SPECS: dict[str, ModelPresetSpec] = _load_model_specs()
MODEL_SPECS: dict[str, ModelPresetSpec] = {
    **MEASURED_SPECS,
    **{name + PUBLISHED_SUFFIX: published_spec(MEASURED_SPECS[name], *totals) for name, totals in PUBLISHED_TOTALS.items()},
}
MODEL_PRESETS: dict[str, dict[str, float]] = {k: v.profile_fields() for k, v in MODEL_SPECS.items()}  # default splits

#: The paper's budgets (Figs. 4, 5): BERT T0 = 0.35 s, E0 = 0.015 J; BART T0 = 0.22 s, E0 = 0.0225 J.
_PAPER_BUDGETS: dict[str, dict[str, float]] = {
    "bert-base": dict(delay_s=0.35, energy_j=0.015),
    "bart-base": dict(delay_s=0.22, energy_j=0.0225),
}
BUDGET_PRESETS: dict[str, dict[str, float]] = {
    name: _PAPER_BUDGETS[name.removesuffix(PUBLISHED_SUFFIX)] for name in MODEL_SPECS
}


def _choose(kind: str, name: str, table: Mapping[str, Any]) -> Any:
    if name not in table:
        raise ConfigError(f"unknown {kind} {name!r}; allowed: {', '.join(sorted(table))}")
    return table[name]


# ----------------------------------------------------------------------------- dict / TOML


def problem_to_dict(problem: Problem) -> dict[str, dict[str, Any]]:
    """Nested ``{section: {field: value}}`` of a (scalar) problem, omitting unset optional fields."""
    out: dict[str, dict[str, Any]] = {}
    for section in SECTIONS:
        obj = getattr(problem, section)
        values = {}
        for name in _field_names(type(obj)):
            value = getattr(obj, name)
            if value is None:
                continue
            arr = np.asarray(value)
            values[name] = arr.item() if arr.ndim == 0 else arr.tolist()
        out[section] = values
    return out


def problem_from_dict(data: Mapping[str, Mapping[str, Any]]) -> Problem:
    """Build and validate a Problem from ``{section: {field: value}}``; unknown keys are errors."""
    unknown_sections = set(data) - set(SECTIONS)
    if unknown_sections:
        raise ConfigError(
            f"unknown section(s) {', '.join(sorted(unknown_sections))}; allowed: {', '.join(SECTIONS)}"
        )
    parts = {}
    for section, cls in SECTIONS.items():
        allowed = _field_names(cls)
        values = data.get(section, {})
        if not isinstance(values, Mapping):
            raise ConfigError(f"[{section}] = {values!r} must be a table of fields; allowed fields: {', '.join(allowed)}")
        values = dict(values)
        unknown = set(values) - set(allowed)
        if unknown:
            raise ConfigError(
                f"unknown field(s) {', '.join(sorted(unknown))} in [{section}]; allowed: {', '.join(allowed)}"
            )
        required = [f.name for f in dataclasses.fields(cls) if f.default is dataclasses.MISSING]
        missing = [n for n in required if n not in values]
        if missing:
            raise ConfigError(f"[{section}] is missing field(s): {', '.join(missing)}")
        parts[section] = cls(**values)
    return Problem(**parts)


def dump_toml(problem: Problem) -> str:
    """The problem as TOML text with sections [system], [model], [budget]."""
    return tomli_w.dumps(problem_to_dict(problem))


def save_toml(problem: Problem, path: str | Path) -> None:
    Path(path).write_text(dump_toml(problem))


def read_user_text(path: str | Path, label: str, error: type[ConfigError] = ConfigError) -> str:
    """The UTF-8 text of a file a user gave; ``error`` naming it by ``label`` if it is missing, a
    directory, unreadable or not UTF-8 (the one reader of TOML and JSON inputs)."""
    try:
        return Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise error(f"{label}: no such file") from None
    except IsADirectoryError:
        raise error(f"{label} cannot be read: it is a directory") from None
    except UnicodeDecodeError as exc:
        raise error(f"{label}: not UTF-8 text (byte {exc.start} is {exc.object[exc.start:exc.start + 1]!r})") from None
    except OSError as exc:
        raise error(f"{label} cannot be read: {exc.strerror or exc}") from None


def read_toml_file(path: str | Path, what: str = "config file") -> dict[str, Any]:
    """The parsed TOML of ``path``; ConfigError (naming ``what`` and the path) if missing or invalid."""
    name = f"{what} {str(path)!r}"
    text = read_user_text(path, name)
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{name} is not valid TOML: {exc}") from exc


def _check_single_numbers(data: Mapping[str, Mapping[str, Any]]) -> None:
    """ConfigError at the first array: a file holds one problem (batches are built in Python)."""
    for section, values in data.items():
        for name, value in values.items():
            if np.ndim(value) != 0:
                raise ConfigError(
                    f"{section}.{name} = {value!r}: a TOML value must be a single number in "
                    f"{SECTIONS[section]._RULES[name].text()}, not an array (build batches of problems in Python)"
                )


def load_toml(path: str | Path) -> Problem:
    """Read a TOML file written by :func:`save_toml` (or by hand) into a validated Problem.

    Every value must be a single number; every ConfigError names the file.
    """
    data = read_toml_file(path)
    try:
        problem = problem_from_dict(data)
        _check_single_numbers(data)
    except ConfigError as exc:
        raise ConfigError(f"config file {str(path)!r}: {exc}") from exc
    return problem


# ----------------------------------------------------------------------------- overrides


def _parse_number(key: str, text: str) -> float:
    try:
        return float(text)
    except ValueError as exc:
        raise ConfigError(f"--set {key}={text!r}: the value must be a number") from exc


def field_name(key: str, where: str) -> str:
    """The bare field name of ``key`` (``section.field`` or ``field``); a ConfigError starting with
    ``where`` if the field is unknown or belongs to another section."""
    section, _, name = key.rpartition(".")
    if name not in FIELD_SECTION:
        raise ConfigError(f"{where}: unknown field {name!r}; allowed: {', '.join(FIELD_SECTION)}")
    if section and section != FIELD_SECTION[name]:
        raise ConfigError(f"{where}: field {name!r} belongs to section [{FIELD_SECTION[name]}], not [{section}]")
    return name


def apply_overrides(data: Mapping[str, Mapping[str, Any]], overrides: Mapping[str, Any]) -> dict:
    """Apply ``{"section.field" or "field": value}`` overrides to a nested dict (not yet validated).

    Field names are unique across sections, so the bare name works. Setting ``channel_gain`` removes
    the path-loss fields and setting any path-loss field removes ``channel_gain``, so either form of
    the channel can be switched to from a preset.
    """
    out = {section: dict(values) for section, values in data.items()}
    for key, raw in overrides.items():
        name = field_name(key, f"--set {key}")
        value = _parse_number(key, raw) if isinstance(raw, str) else raw
        target = out.setdefault(FIELD_SECTION[name], {})
        if name == "channel_gain":
            for n in SystemParams.PATHLOSS_FIELDS:
                target.pop(n, None)
        elif name in SystemParams.PATHLOSS_FIELDS:
            target.pop("channel_gain", None)
        target[name] = value
    return out


def model_preset_fields(model: str = "bert-base", split: int | None = None) -> dict[str, float]:
    """The ``[model]`` fields of a preset model, split at its default layer or at ``split``."""
    return _choose("model preset", model, MODEL_SPECS).profile_fields(split)


def preset_dict(preset: str = "paper", model: str = "bert-base", split: int | None = None) -> dict[str, dict[str, float]]:
    """Nested dict of a system preset, a model preset (optionally at ``split``) and its budget preset."""
    return {
        "system": dict(_choose("system preset", preset, SYSTEM_PRESETS)),
        "model": model_preset_fields(model, split),
        "budget": dict(_choose("model preset", model, BUDGET_PRESETS)),
    }


def make_problem(
    preset: str = "paper",
    model: str = "bert-base",
    *,
    split: int | None = None,
    config: str | Path | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> Problem:
    """A validated Problem from a preset (or a TOML ``config`` file) plus ``section.field`` overrides.

    A ``config`` file replaces the presets, but ``preset``, ``model`` and ``split`` are validated anyway
    (an unknown name is a ConfigError listing the allowed ones).

    ``split`` picks the preset model's split layer (0 = on-server ... L: BERT-base 12 = on-device, BART-base 6 =
    whole encoder on the device; default 4). At split 0 the upload θ is ``input_bits`` (after the
    overrides, so ``input_bits=...`` moves it; ``embedding_bits=...`` there is a ConfigError).
    """
    presets = preset_dict(preset, model, split)  # unknown names are errors even when ``config`` replaces them
    base = problem_to_dict(load_toml(config)) if config is not None else presets
    data = apply_overrides(base, overrides or {})
    if config is None and MODEL_SPECS[model].check_split(split) == RAW_INPUT_SPLIT:
        given = [key for key in overrides or {} if field_name(key, f"--set {key}") == "embedding_bits"]
        if given:
            raise ConfigError(f"--set {given[0]}: at split {RAW_INPUT_SPLIT} the upload is the raw input; "
                              "set input_bits instead")
        model_fields = data["model"]
        model_fields["embedding_bits"] = split_upload_bits(model_fields["embedding_bits"], model_fields["input_bits"], 1)
    return problem_from_dict(data)
