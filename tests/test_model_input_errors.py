"""Malformed model files from users (issue 12): one clear ConfigError line, exit 2, no traceback.

Every file a user hands us is covered: a checkpoint's config.json, model.safetensors (or its
shards and index), tokenizer.json and generation_config.json, an FCDNN .safetensors file, SQuAD
JSON and summarisation JSONL. The checkpoints are tiny and written here (no torch, no network).
"""

import dataclasses
import json
import os
import re

import jax
import numpy as np
import pytest
from safetensors.numpy import load_file, save_file

from laimco_jax import pruning
from laimco_jax.experiments import theory
from laimco_jax.models import bart, bert, checkpoints, fcdnn, profile
from laimco_jax.params import ConfigError
from laimco_jax.tasks import load_split_model, read_squad, read_summarization
from laimco_jax.tasks.split_model import check_ratio

BERT = bert.BertConfig(vocab_size=40, hidden_size=8, num_hidden_layers=2, num_attention_heads=2,
                       intermediate_size=12, max_position_embeddings=16)
BART = bart.BartConfig(vocab_size=40, d_model=8, encoder_layers=2, decoder_layers=1, encoder_attention_heads=2,
                       decoder_attention_heads=2, encoder_ffn_dim=12, decoder_ffn_dim=12,
                       max_position_embeddings=16)
WORDS = ["[PAD]", "[UNK]", "<s>", "</s>", "the", "a", "of", "to", "and", "is", "in", "on", "for"]
QUERY = "encoder.layer.0.attention.self.query.weight"


def write_tokenizer(directory):
    """A word-level tokenizer.json over :data:`WORDS` (ids below every vocabulary here)."""
    from tokenizers import Tokenizer, models, pre_tokenizers

    tokenizer = Tokenizer(models.WordLevel({w: i for i, w in enumerate(WORDS)}, unk_token="[UNK]"))
    tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer.save(os.path.join(directory, "tokenizer.json"))


@pytest.fixture(scope="module")
def bert_params():
    return bert.init(BERT, jax.random.key(0))


@pytest.fixture()
def bert_dir(tmp_path, bert_params):
    """A valid tiny BERT checkpoint directory with a tokenizer.json."""
    directory = tmp_path / "bert"
    checkpoints.save_checkpoint(directory, BERT, bert_params)
    write_tokenizer(directory)
    return directory


@pytest.fixture()
def bart_dir(tmp_path):
    """A valid tiny BartForConditionalGeneration directory (tied head) with tokenizer and generation config."""
    directory = tmp_path / "bart"
    checkpoints.save_checkpoint(directory, BART, bart.init(BART, jax.random.key(1)))
    edit_tensors(directory, lambda t: t.update(final_logits_bias=np.zeros((1, BART.vocab_size), np.float32)))
    write_tokenizer(directory)
    (directory / "generation_config.json").write_text(json.dumps({"eos_token_id": 3}))
    return directory


def edit_config(directory, **changes):
    path = directory / "config.json"
    path.write_text(json.dumps(json.loads(path.read_text()) | changes))


def edit_tensors(directory, edit):
    path = os.path.join(directory, "model.safetensors")
    tensors = load_file(path)
    edit(tensors)
    save_file(tensors, path)


def cli_error(cli, *args) -> str:
    """Run ``laimco ARGS``; assert exit 2 with one line on stderr and no traceback; return that line."""
    code, _, err = cli(*args)
    assert code == 2, err
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    return lines[0]


def profile_error(cli, directory) -> str:
    return cli_error(cli, "profile", "--model", directory, "--seq-len", 4, "--no-entropy")


def assert_names(line: str, *fragments):
    for fragment in fragments:
        assert str(fragment) in line, (fragment, line)


# ----------------------------------------------------------------------------- config.json


@pytest.mark.parametrize("content, message", [
    (b"[1, 2]", "the top level must be a JSON object, got list"),
    (b'{"model_type": "bert",', "malformed JSON at line 1"),
    (b'{"model_type": "b\xe9rt"}', "not UTF-8 text"),
    (b"", "malformed JSON at line 1"),
])
def test_unreadable_config_json_is_one_line_naming_the_file(cli, bert_dir, content, message):
    (bert_dir / "config.json").write_bytes(content)
    assert_names(profile_error(cli, bert_dir), bert_dir / "config.json", message)
    with pytest.raises(checkpoints.CheckpointError, match=re.escape(message)):
        checkpoints.read_config(bert_dir)


def test_config_json_that_is_a_directory(cli, bert_dir):
    os.remove(bert_dir / "config.json")
    os.mkdir(bert_dir / "config.json")
    assert_names(profile_error(cli, bert_dir), bert_dir / "config.json", "cannot be read")


@pytest.mark.parametrize("field, value, allowed", [
    ("num_attention_heads", 0, "an integer >= 1"),
    ("num_hidden_layers", 2.0, "an integer >= 1"),
    ("num_hidden_layers", -1, "an integer >= 1"),
    ("num_hidden_layers", True, "an integer >= 1"),
    ("num_hidden_layers", "2", "an integer >= 1"),
    ("hidden_size", None, "an integer >= 1"),
    ("vocab_size", 0, "an integer >= 1"),
    ("pad_token_id", 40, "an integer in [0, 39]"),
    ("pad_token_id", -1, "an integer in [0, 39]"),
    ("layer_norm_eps", "small", "a finite number > 0"),
    ("layer_norm_eps", 0, "a finite number > 0"),
    ("hidden_act", 3, "allowed: ['gelu'"),
    ("hidden_act", "tanh", "allowed: ['gelu'"),
    ("hidden_size", 9, "multiple of num_attention_heads=2"),
])
def test_bad_bert_config_field_names_file_field_value_and_range(cli, bert_dir, field, value, allowed):
    edit_config(bert_dir, **{field: value})
    line = profile_error(cli, bert_dir)
    assert_names(line, bert_dir / "config.json", f"{field}={value!r}", allowed)
    with pytest.raises(ConfigError):
        checkpoints.read_config(bert_dir)


def test_non_finite_layer_norm_eps(bert_dir):
    (bert_dir / "config.json").write_text((bert_dir / "config.json").read_text().replace(
        '"layer_norm_eps": 1e-12', '"layer_norm_eps": NaN'))
    with pytest.raises(checkpoints.CheckpointError, match=r"layer_norm_eps=nan must be a finite number > 0"):
        checkpoints.read_config(bert_dir)


@pytest.mark.parametrize("field, value, allowed", [
    ("encoder_layers", 1.5, "an integer >= 1"),
    ("decoder_layers", 0, "an integer >= 1"),
    ("d_model", 0, "an integer >= 1"),
    ("encoder_attention_heads", 0, "an integer >= 1"),
    ("decoder_start_token_id", 99, "an integer in [0, 39]"),
    ("scale_embedding", "yes", "true or false"),
    ("activation_function", ["gelu"], "allowed: ['gelu'"),
])
def test_bad_bart_config_field(tmp_path, field, value, allowed):
    (tmp_path / "config.json").write_text(json.dumps(BART.to_hf() | {field: value}))
    with pytest.raises(checkpoints.CheckpointError) as info:
        checkpoints.read_config(tmp_path)
    assert_names(str(info.value), tmp_path / "config.json", f"{field}={value!r}", allowed)


def test_programmatic_configs_are_checked_too():
    with pytest.raises(ConfigError, match=r"num_hidden_layers=2.0 must be an integer >= 1"):
        bert.BertConfig(num_hidden_layers=2.0)
    assert bert.BertConfig(num_hidden_layers=np.int64(2)).num_layers == 2


# ----------------------------------------------------------------------------- weights


def make_sharded(directory):
    """Turn ``model.safetensors`` into one shard listed by ``model.safetensors.index.json``."""
    os.rename(directory / "model.safetensors", directory / "model-00001-of-00001.safetensors")
    names = load_file(directory / "model-00001-of-00001.safetensors")
    index = {"metadata": {}, "weight_map": {n: "model-00001-of-00001.safetensors" for n in names}}
    (directory / "model.safetensors.index.json").write_text(json.dumps(index))
    return directory / "model.safetensors.index.json"


@pytest.mark.parametrize("index, message", [
    ({"metadata": {}}, "has no 'weight_map' key"),
    ({"weight_map": ["model-00001-of-00001.safetensors"]}, "weight_map must be a JSON object"),
    ({"weight_map": {QUERY: 3}}, "weight_map must map tensor names to file names"),
    ({"weight_map": {QUERY: "missing.safetensors"}}, "lists 'missing.safetensors', which is not a file"),
    ([], "the top level must be a JSON object, got list"),
])
def test_bad_sharded_index(cli, bert_dir, index, message):
    path = make_sharded(bert_dir)
    checkpoints.load_checkpoint(bert_dir)  # the sharded layout itself is fine
    path.write_text(json.dumps(index))
    assert_names(profile_error(cli, bert_dir), path, message)


def test_tensor_in_two_shards(bert_dir):
    make_sharded(bert_dir)
    save_file({QUERY: np.zeros((8, 8), np.float32)}, bert_dir / "model-00002-of-00002.safetensors")
    index = json.loads((bert_dir / "model.safetensors.index.json").read_text())
    index["weight_map"][QUERY] = "model-00002-of-00002.safetensors"
    (bert_dir / "model.safetensors.index.json").write_text(json.dumps(index))
    with pytest.raises(checkpoints.CheckpointError, match=re.escape(f"{QUERY!r} is stored twice")):
        checkpoints.load_checkpoint(bert_dir)


@pytest.mark.parametrize("edit, message", [
    (lambda t: t.pop(QUERY), f"missing tensors: ['{QUERY}']"),
    (lambda t: t.update({QUERY: np.zeros((8, 7), np.float32)}), f"{QUERY}: shape (8, 7), expected (8, 8)"),
])
def test_missing_or_misshaped_tensor_is_one_line(cli, bert_dir, edit, message):
    edit_tensors(bert_dir, edit)
    assert_names(profile_error(cli, bert_dir), bert_dir, message)
    with pytest.raises(ConfigError):
        checkpoints.load_checkpoint(bert_dir)


def test_config_that_disagrees_with_the_weights_is_one_line(cli, bert_dir):
    edit_config(bert_dir, num_hidden_layers=12)
    line = profile_error(cli, bert_dir)
    assert_names(line, "missing tensors: ['encoder.layer.10.", "and 150 more")
    assert len(line) < 1500


@pytest.mark.parametrize("value, message", [
    (np.nan, "1 non-finite value (NaN or inf)"),
    (-np.inf, "1 non-finite value (NaN or inf)"),
])
def test_non_finite_weight_is_refused_by_profile(cli, bert_dir, value, message):
    def poison(tensors):
        tensors[QUERY][2, 3] = value

    edit_tensors(bert_dir, poison)
    line = profile_error(cli, bert_dir)
    assert_names(line, bert_dir / "model.safetensors", repr(QUERY), message)


@pytest.mark.parametrize("dtype", [np.int8, np.int32, np.bool_, np.uint8])
def test_non_floating_weight_is_refused(cli, bert_dir, dtype):
    edit_tensors(bert_dir, lambda t: t.update({QUERY: np.ones((8, 8), dtype)}))
    line = profile_error(cli, bert_dir)
    assert_names(line, bert_dir / "model.safetensors", repr(QUERY), f"dtype {np.dtype(dtype)}", "floating-point")


def test_integer_buffers_and_half_precision_load(bert_dir):
    import ml_dtypes

    def legacy(tensors):
        tensors["embeddings.position_ids"] = np.arange(16, dtype=np.int64)[None]
        tensors[QUERY] = tensors[QUERY].astype(ml_dtypes.bfloat16)

    edit_tensors(bert_dir, legacy)
    _, params = checkpoints.load_checkpoint(bert_dir)
    assert params["layers_0"]["attn"]["q"]["kernel"].dtype == np.float32


def test_non_finite_weight_is_refused_by_theory_commands(cli, bert_dir, tmp_path):
    edit_tensors(bert_dir, lambda t: t[QUERY].__setitem__((0, 0), np.nan))
    for command in ("bound-check", "weight-fit"):
        line = cli_error(cli, command, "--model", bert_dir, "--out", tmp_path / "out", "--quick")
        assert_names(line, repr(QUERY), "non-finite")
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


@pytest.mark.parametrize("edit, message", [
    (lambda t: t["dense_0.kernel"].__setitem__((0, 0), np.nan), "'dense_0.kernel' has 1 non-finite value"),
    (lambda t: t.update({"dense_0.bias": np.zeros(64, np.int8)}), "'dense_0.bias' has dtype int8"),
    (lambda t: t.pop("dense_8.bias"), "missing tensors: ['dense_8.bias']"),
])
def test_bad_fcdnn_file(cli, tmp_path, edit, message):
    path = tmp_path / "net.safetensors"
    fcdnn.save(path, "fcdnn-8", fcdnn.init("fcdnn-8", jax.random.key(0)))
    tensors = load_file(path)
    edit(tensors)
    save_file(tensors, path, metadata={"model": "fcdnn-8"})
    line = cli_error(cli, "bound-check", "--model", path, "--out", tmp_path / "out", "--quick")
    assert_names(line, path, message)


def test_fcdnn_file_without_metadata_or_unreadable(tmp_path):
    path = tmp_path / "net.safetensors"
    save_file({"dense_0.kernel": np.zeros((64, 64), np.float32)}, path)
    with pytest.raises(checkpoints.CheckpointError, match=r"metadata model=None; allowed: \['fcdnn-16', 'fcdnn-8'\]"):
        fcdnn.load(path)
    path.write_bytes(b"not a safetensors file")
    with pytest.raises(checkpoints.CheckpointError, match="cannot be read as safetensors"):
        fcdnn.load(path)


# ----------------------------------------------------------------------------- tokenizer and generation config


def test_malformed_tokenizer_json(cli, bert_dir, tmp_path):
    (bert_dir / "tokenizer.json").write_text('{"version": "1.0", "model": 3}')
    line = cli_error(cli, "bound-check", "--model", bert_dir, "--out", tmp_path / "out", "--quick")
    assert_names(line, bert_dir / "tokenizer.json", "cannot be read")
    with pytest.raises(ConfigError, match="tokenizer.json.*cannot be read"):
        checkpoints.load_tokenizer(bert_dir)


def test_tokenizer_larger_than_the_vocabulary(cli, tmp_path):
    small = dataclasses.replace(BERT, vocab_size=len(WORDS) - 1)
    directory = tmp_path / "small"
    checkpoints.save_checkpoint(directory, small, bert.init(small, jax.random.key(0)))
    write_tokenizer(directory)
    message = f"token id {len(WORDS) - 1} is outside the model's vocabulary of {len(WORDS) - 1}"
    line = cli_error(cli, "bound-check", "--model", directory, "--out", tmp_path / "out", "--quick")
    assert_names(line, directory / "tokenizer.json", message)
    with pytest.raises(checkpoints.CheckpointError, match=re.escape(message)):
        checkpoints.load_tokenizer(directory, small.vocab_size)
    checkpoints.load_tokenizer(directory, len(WORDS))


def test_valid_tiny_checkpoint_runs_bound_check(cli, bert_dir, tmp_path):
    code, _, err = cli("bound-check", "--model", bert_dir, "--out", tmp_path / "out",
                           "--quick", "--pruning", "magnitude", "--ratios", "0.5,1", "--iterations", "2")
    assert code == 0, err


@pytest.mark.parametrize("file, content, message", [
    ("generation_config.json", "{", "generation_config.json: malformed JSON at line 1"),
    ("generation_config.json", "[3]", "generation_config.json: the top level must be a JSON object"),
    ("generation_config.json", '{"eos_token_id": "end"}', "eos_token_id='end' must be a token id"),
    ("generation_config.json", '{"eos_token_id": [2, 99]}', "eos_token_id=[2, 99] must be a token id"),
    ("generation_config.json", '{"eos_token_id": 3, "forced_bos_token_id": 1.5}',
     "forced_bos_token_id=1.5 must be a token id"),
])
def test_bad_generation_config(bart_dir, file, content, message):
    load_split_model("summarization", bart_dir, split=1, rho=1.0, rho_server=1.0)
    (bart_dir / file).write_text(content)
    with pytest.raises(ConfigError, match=re.escape(message)):
        load_split_model("summarization", bart_dir, split=1, rho=1.0, rho_server=1.0)


def test_bad_tie_word_embeddings(bart_dir):
    edit_config(bart_dir, tie_word_embeddings="no")
    with pytest.raises(checkpoints.CheckpointError, match=r"config.json: tie_word_embeddings='no' must be true or false"):
        load_split_model("summarization", bart_dir, split=1, rho=1.0, rho_server=1.0)


def test_task_checkpoint_with_nan_head(bart_dir):
    edit_tensors(bart_dir, lambda t: t["final_logits_bias"].__setitem__((0, 1), np.nan))
    with pytest.raises(checkpoints.CheckpointError, match=r"'final_logits_bias' has 1 non-finite value"):
        load_split_model("summarization", bart_dir, split=1, rho=1.0, rho_server=1.0)


# ----------------------------------------------------------------------------- data files


def test_non_utf8_jsonl_names_file_and_line(tmp_path):
    path = tmp_path / "data.jsonl"
    path.write_bytes(b'{"article": "a", "highlights": "h"}\n{"article": "caf\xe9", "highlights": "h"}\n')
    with pytest.raises(ConfigError, match=r"data.jsonl: line 2: not UTF-8 text"):
        read_summarization(path)


@pytest.mark.parametrize("content, message", [
    (b"[]", "the top level must be a JSON object, got list"),
    (b'{"data": "x"}', "the top level.data must be a list, got str"),
    (b'{"data": [\xff]}', "not UTF-8 text"),
    (b'{"data": [', "malformed JSON at line 1"),
])
def test_squad_errors_are_config_errors(tmp_path, content, message):
    path = tmp_path / "dev.json"
    path.write_bytes(content)
    with pytest.raises(ConfigError, match=re.escape(message)):
        read_squad(path)
    with pytest.raises(ConfigError, match="no such file"):
        read_squad(tmp_path)


# ----------------------------------------------------------------------------- argument checks


@pytest.mark.parametrize("call", [
    lambda: profile.split_profiles("bert-base", seq_len=0),
    lambda: profile.split_profiles("no-such-model"),
    lambda: profile.analytic_flops(BERT, 3, 4),
    lambda: pruning.magnitude_mask({"kernel": np.ones(3)}, 1.5),
    lambda: pruning.magnitude_mask({"kernel": np.ones(3)}, 0.5, prunable=("weights",)),
    lambda: theory.bound_check_table("fcdnn8", ratios=[2.0]),
    lambda: theory.load_theory_model("no-such-model"),
    lambda: check_ratio("rho", 0.0),
    lambda: fcdnn.init("fcdnn-4", jax.random.key(0)),
    lambda: bert.activation("tanh"),
])
def test_argument_checks_raise_config_error(call):
    with pytest.raises(ConfigError):
        call()
