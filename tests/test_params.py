"""Configuration pytrees: validation messages, presets, TOML round trips, overrides."""

import dataclasses
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from laimco_jax import Budget, ConfigError, ModelProfile, Problem, SystemParams, dump_toml, load_toml, make_problem, save_toml
from laimco_jax.params import MODEL_PRESETS, SYSTEM_PRESETS, apply_overrides, preset_dict, problem_from_dict, problem_to_dict

SYSTEM = SYSTEM_PRESETS["paper"]
MODEL = MODEL_PRESETS["bert-base"]


def test_paper_preset_values():
    s = make_problem("paper", "bert-base").system
    assert (s.bandwidth_hz, s.noise_psd_w_per_hz, s.p_max_w) == (5e6, 2e-19, 0.5)
    assert (s.f_max_device_hz, s.f_max_server_hz, s.flops_per_cycle_device, s.flops_per_cycle_server) == (1e9, 4e9, 32, 128)
    assert (s.pue_device, s.pue_server, s.power_coeff_device, s.power_coeff_server) == (1, 2, 5e-29, 1e-28)
    assert (s.ref_gain_db, s.ref_distance_m, s.distance_m, s.pathloss_exponent) == (-30, 1, 500, 2.8)


# Closed-form parameter counts of the public architectures (hidden 768, FFN 3072, 12 heads).
D, F = 768, 3072
BLOCK = 4 * (D * D + D) + (D * F + F) + (F * D + D) + 2 * 2 * D  # attention, FFN, two LayerNorms
BERT_EMBEDDINGS = (30522 + 512 + 2) * D + 2 * D  # words, positions, token types, LayerNorm
BART_EMBEDDINGS = 50265 * D + (1024 + 2) * D + 2 * D  # shared table, learned positions (+2 offset), LayerNorm


def analytic_encoder_flops(layers, n=128, d=D, f=F):
    """Matrix-product FLOPs (2 per multiply-add) of ``layers`` encoder blocks over n tokens."""
    return layers * (8 * n * d * d + 4 * n * n * d + 4 * n * d * f)


@pytest.mark.parametrize("model, params, device_params, budget", [
    ("bert-base", 109_482_240, BERT_EMBEDDINGS + 4 * BLOCK, (0.35, 0.015)),
    ("bart-base", 139_420_416, BART_EMBEDDINGS + 4 * BLOCK, (0.22, 0.0225)),
])
def test_model_presets_total_and_split(model, params, device_params, budget):
    p = make_problem("paper", model)
    assert p.model.params_device + p.model.params_server == params  # the paper's 109.48M and 139.42M
    assert p.model.params_device == device_params  # embeddings + 4 blocks on the device
    assert p.model.flops_device == pytest.approx(analytic_encoder_flops(4), rel=0.05)
    assert p.model.embedding_bits == 128 * 768 * 8
    assert p.model.entropy_bits == pytest.approx(params * math.log2(2 * math.e * 0.028))
    assert (p.budget.delay_s, p.budget.energy_j) == budget


@pytest.mark.parametrize("section, cls, base, field, value, allowed", [
    ("system", SystemParams, SYSTEM, "bandwidth_hz", 0.0, "[1, 1e+12]"),
    ("system", SystemParams, SYSTEM, "noise_psd_w_per_hz", -1e-19, "[1e-30, 0.001]"),
    ("system", SystemParams, SYSTEM, "p_max_w", float("nan"), "[1e-12, 1e+06]"),
    ("system", SystemParams, SYSTEM, "f_max_device_hz", float("inf"), "[1000, 1e+13]"),
    ("system", SystemParams, SYSTEM, "flops_per_cycle_server", 0.0, "[0.001, 1e+09]"),
    ("system", SystemParams, SYSTEM, "pue_server", -2.0, "[0.001, 1000]"),
    ("system", SystemParams, SYSTEM, "distance_m", 0.0, "[0.001, 1e+07]"),
    ("system", SystemParams, SYSTEM, "ref_gain_db", float("nan"), "[-300, 60]"),
    ("model", ModelProfile, MODEL, "params_device", -1.0, "[0, 1e+15]"),
    ("model", ModelProfile, MODEL, "flops_server", -5.0, "[0, 1e+21]"),
    ("model", ModelProfile, MODEL, "embedding_bits", float("nan"), "[0, 1e+15]"),
    ("model", ModelProfile, MODEL, "bits_per_weight", 0.0, "(0, 1024]"),
    ("budget", Budget, {"delay_s": 0.3, "energy_j": 0.01}, "delay_s", 0.0, "[1e-09, 1e+06]"),
    ("budget", Budget, {"delay_s": 0.3, "energy_j": 0.01}, "energy_j", -0.01, "[1e-12, 1e+06]"),
    # the issue-12 reproducers: magnitudes the solver cannot represent are refused with the range
    ("system", SystemParams, SYSTEM, "f_max_device_hz", 1e300, "[1000, 1e+13]"),
    ("system", SystemParams, SYSTEM, "ref_gain_db", 4000.0, "[-300, 60]"),
    ("budget", Budget, {"delay_s": 0.3, "energy_j": 0.01}, "delay_s", 1e30, "[1e-09, 1e+06]"),
])
def test_validation_names_field_value_and_range(section, cls, base, field, value, allowed):
    with pytest.raises(ConfigError) as info:
        cls(**{**base, field: value})
    message = str(info.value)
    assert f"{section}.{field} = " in message and allowed in message and str(value) in message


def test_validation_points_at_the_bad_element_of_a_batch():
    with pytest.raises(ConfigError, match=r"budget.delay_s = -3.0 at index \(2,\)"):
        Budget(delay_s=np.array([0.1, 0.2, -3.0]), energy_j=0.01)


def test_channel_forms_are_exclusive_and_complete():
    with pytest.raises(ConfigError, match="exclusive"):
        SystemParams(**SYSTEM, channel_gain=1e-11)
    partial = {k: v for k, v in SYSTEM.items() if k != "distance_m"}
    with pytest.raises(ConfigError, match="missing distance_m"):
        SystemParams(**partial)
    direct = {k: v for k, v in SYSTEM.items() if k not in SystemParams.PATHLOSS_FIELDS}
    assert SystemParams(**direct, channel_gain=1e-11).channel_gain == 1e-11


def test_model_needs_a_parameter():
    with pytest.raises(ConfigError, match="params_device \\+ model.params_server"):
        ModelProfile(**{**MODEL, "params_device": 0.0, "params_server": 0.0})


def test_toml_round_trip(tmp_path):
    problem = make_problem("paper", "bart-base", overrides={"budget.delay_s": 0.3, "distance_m": 250.0})
    path = tmp_path / "p.toml"
    save_toml(problem, path)
    again = load_toml(path)
    assert problem_to_dict(again) == problem_to_dict(problem)
    assert "[system]" in dump_toml(problem) and "[budget]" in dump_toml(problem)
    assert make_problem(config=path, overrides={"energy_j": 0.05}).budget.energy_j == 0.05


def test_toml_errors(tmp_path):
    with pytest.raises(ConfigError, match="no such file"):
        load_toml(tmp_path / "missing.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("[system\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_toml(bad)
    data = preset_dict()
    data["model"]["bogus"] = 1.0
    with pytest.raises(ConfigError, match="unknown field.*bogus.*\\[model\\]"):
        problem_from_dict(data)
    data = preset_dict()
    del data["budget"]["energy_j"]
    with pytest.raises(ConfigError, match="missing field.*energy_j"):
        problem_from_dict(data)


def test_overrides_by_section_or_bare_name_and_channel_switch():
    base = preset_dict()
    out = apply_overrides(base, {"budget.delay_s": "0.5", "distance_m": 100.0, "channel_gain": "1e-10"})
    assert out["budget"]["delay_s"] == 0.5
    assert out["system"]["channel_gain"] == 1e-10 and "distance_m" not in out["system"]
    with pytest.raises(ConfigError, match="belongs to section \\[budget\\]"):
        apply_overrides(base, {"system.delay_s": 1.0})
    with pytest.raises(ConfigError, match="unknown field 'nope'"):
        apply_overrides(base, {"nope": 1.0})
    with pytest.raises(ConfigError, match="must be a number"):
        apply_overrides(base, {"delay_s": "fast"})
    with pytest.raises(ConfigError, match="unknown system preset 'moon'"):
        make_problem("moon")


def test_pytree_transforms_bypass_validation():
    problem = make_problem().astype(jnp.float64)
    leaves = jax.tree_util.tree_leaves(problem)
    assert len(leaves) == len(dataclasses.fields(SystemParams)) - 1 + len(dataclasses.fields(ModelProfile)) + 2
    negated = jax.tree_util.tree_map(lambda x: -x, problem)  # a gradient-like pytree with negative values
    assert isinstance(negated, Problem) and float(negated.budget.delay_s) == -0.35
    batched = jax.vmap(lambda d: d.budget.delay_s * 2)(jax.tree_util.tree_map(lambda x: jnp.stack([x, x]), problem))
    assert batched.shape == (2,)


def test_preset_splits_cover_on_server_and_on_device():
    from laimco_jax.params import model_preset_fields

    for split in range(1, 12):
        fields = model_preset_fields("bert-base", split)
        assert fields["params_device"] + fields["params_server"] == 109_482_240
        assert fields["params_device"] == BERT_EMBEDDINGS + split * BLOCK
        assert fields["flops_device"] == pytest.approx(analytic_encoder_flops(split), rel=0.05)
        assert fields["flops_server"] == pytest.approx(analytic_encoder_flops(12 - split) + 2 * D * D, rel=0.05)
    for split in range(7):  # BART splits its encoder: the server always runs the decoder
        fields = model_preset_fields("bart-base", split)
        assert fields["params_device"] == (BART_EMBEDDINGS + split * BLOCK if split else 0)
        assert fields["params_device"] + fields["params_server"] == 139_420_416
        assert fields["flops_server"] > 0
    with pytest.raises(ConfigError, match=r"split = 7 is outside the allowed range \[0, 6\] of bart-base"):
        make_problem(model="bart-base", split=7)
    assert model_preset_fields("bert-base", 0)["params_device"] == 0  # on-server inference
    assert model_preset_fields("bert-base", 12)["params_server"] == 0  # on-device inference
    assert model_preset_fields("bert-base", 0)["embedding_bits"] == 128 * 32  # raw token ids uploaded
    assert model_preset_fields("bert-base", 12)["embedding_bits"] == 0.0  # nothing uploaded
    with pytest.raises(ConfigError, match=r"split = 13 is outside the allowed range \[0, 12\]"):
        make_problem(split=13)
