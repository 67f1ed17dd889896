"""Load and save Hugging Face checkpoint directories without torch.

A checkpoint directory holds ``config.json`` and ``model.safetensors`` (or
shards listed in ``model.safetensors.index.json``). The tensor names are mapped
explicitly to our parameter paths by :func:`tensor_map`; linear weights are
transposed (PyTorch stores ``(out, in)``, flax ``(in, out)``).

Accepted variations, all explicit:

* a base-model prefix (``bert.`` for BERT task models, ``model.`` for BART
  task models) is stripped;
* legacy LayerNorm names ``gamma``/``beta`` are read as ``weight``/``bias``;
* BART's tied token table may be stored as ``shared.weight``,
  ``encoder.embed_tokens.weight`` or ``decoder.embed_tokens.weight`` (copies
  must agree);
* non-parameter buffers and task heads listed in :data:`IGNORED_PREFIXES` are
  dropped (``embeddings.position_ids``, ``cls.``, ``lm_head.``, …).

Task heads are read only on request, by :func:`load_task_checkpoint` with a
head named in :data:`HEADS`: ``"question_answering"`` (``BertForQuestionAnswering``:
``qa_outputs.weight``/``.bias``; the base model has no pooler) and
``"conditional_generation"`` (``BartForConditionalGeneration``:
``final_logits_bias``; ``lm_head.weight`` is the tied token table unless the
config says ``tie_word_embeddings: false``).

Anything else that does not match raises :class:`CheckpointError`, whose
message names every missing, unexpected and mis-shaped tensor. Every file is
checked as it is read, and an error names it: JSON files (:func:`read_json_object`)
must be UTF-8 JSON objects; tensors (:func:`read_safetensors`) must be floating
point (float16, bfloat16, float32, float64) with finite values only, except the
integer buffers of :data:`INTEGER_BUFFERS`.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator, Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from safetensors import SafetensorError, safe_open
from safetensors.numpy import save_file

from laimco_jax.models import bart, bert
from laimco_jax.params import ConfigError, read_user_text

Config = bert.BertConfig | bart.BartConfig
Path = tuple[str, ...]

#: Hugging Face ``model_type`` -> (config class, model module).
MODEL_TYPES = {"bert": (bert.BertConfig, bert), "bart": (bart.BartConfig, bart)}

#: Base-model prefixes stripped from tensor names, per model type.
BASE_PREFIXES = {"bert": "bert.", "bart": "model."}

#: Tensor-name prefixes dropped on load: buffers and task heads (not part of the base model).
IGNORED_PREFIXES = {
    "bert": ("embeddings.position_ids", "cls.", "classifier.", "qa_outputs."),
    "bart": ("lm_head.", "final_logits_bias", "classification_head.", "qa_outputs."),
}

#: Last name components of non-parameter buffers, which may hold integers (BERT's ``embeddings.position_ids``).
INTEGER_BUFFERS = ("position_ids", "token_type_ids")

#: At most this many tensor names are listed in one error message.
LISTED_NAMES = 10

#: BART names under which the tied token table may be stored.
BART_TIED = ("shared.weight", "encoder.embed_tokens.weight", "decoder.embed_tokens.weight")


#: Task heads: name -> (model type, HF tensor name -> (path in the head tree, transpose?, required?)).
HEADS: dict[str, tuple[str, dict[str, tuple[Path, bool, bool]]]] = {
    "question_answering": ("bert", {
        "qa_outputs.weight": (("qa_outputs", "kernel"), True, True),
        "qa_outputs.bias": (("qa_outputs", "bias"), False, True),
    }),
    "conditional_generation": ("bart", {
        "final_logits_bias": (("lm_head", "bias"), False, True),
        "lm_head.weight": (("lm_head", "kernel"), True, False),
    }),
}

#: Top-level keys of the base parameters a head checkpoint may lack altogether.
HEAD_OPTIONAL_BASE = {"question_answering": ("pooler",), "conditional_generation": ()}


class CheckpointError(ConfigError):
    """A checkpoint file cannot be read, or does not match the model its config describes."""


def read_json_object(path: str | os.PathLike, error: type[ConfigError] = ConfigError) -> dict[str, Any]:
    """The JSON object in file ``path``; raises ``error`` naming the file otherwise.

    The file must exist, be readable UTF-8 text, be valid JSON and hold an object at the
    top level; the message says which of these failed (with the line and column of bad JSON).
    """
    text = read_user_text(path, str(path), error)
    try:
        value = json.loads(text)
    except json.JSONDecodeError as err:
        raise error(f"{path}: malformed JSON at line {err.lineno}, column {err.colno}: {err.msg}") from None
    if not isinstance(value, dict):
        raise error(f"{path}: the top level must be a JSON object, got {type(value).__name__}")
    return value


def check_weights(name: str, array: np.ndarray, file: str | os.PathLike) -> None:
    """Raise :class:`CheckpointError` naming tensor ``name`` of ``file`` unless it is finite floating point."""
    if not jnp.issubdtype(array.dtype, jnp.floating):
        raise CheckpointError(f"{file}: tensor {name!r} has dtype {array.dtype}; allowed: a floating-point dtype "
                              "(float16, bfloat16, float32, float64; quantised weights are not supported)")
    bad = array.size - int(np.count_nonzero(np.isfinite(array)))
    if bad:
        raise CheckpointError(f"{file}: tensor {name!r} has {bad} non-finite value{'s' if bad > 1 else ''} "
                              f"(NaN or inf) among {array.size}; allowed: finite numbers only")


def read_safetensors(file: str | os.PathLike) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    """``(tensors, metadata)`` of a safetensors file, every tensor checked by :func:`check_weights`.

    Tensors named like an integer buffer (:data:`INTEGER_BUFFERS`) are not checked.
    """
    try:
        with safe_open(os.fspath(file), "np") as f:
            metadata = f.metadata() or {}
            tensors = {name: f.get_tensor(name) for name in f.keys()}
    except (SafetensorError, OSError) as err:
        raise CheckpointError(f"{file} cannot be read as safetensors: {err}") from None
    for name, array in tensors.items():
        if name.rsplit(".", 1)[-1] not in INTEGER_BUFFERS:
            check_weights(name, array, file)
    return tensors, metadata


def listed(names: list[str]) -> str:
    """``names`` for an error message: the first :data:`LISTED_NAMES`, then how many more."""
    more = len(names) - LISTED_NAMES
    return f"{names[:LISTED_NAMES]!r} and {more} more" if more > 0 else repr(names)


def _dense(hf: str, ours: Path) -> Iterator[tuple[str, Path, bool]]:
    yield f"{hf}.weight", ours + ("kernel",), True
    yield f"{hf}.bias", ours + ("bias",), False


def _layer_norm(hf: str, ours: Path) -> Iterator[tuple[str, Path, bool]]:
    yield f"{hf}.weight", ours + ("scale",), False
    yield f"{hf}.bias", ours + ("bias",), False


def _embedding(hf: str, ours: Path) -> Iterator[tuple[str, Path, bool]]:
    yield f"{hf}.weight", ours + ("embedding",), False


def _bart_attention(hf: str, ours: Path) -> Iterator[tuple[str, Path, bool]]:
    for hf_proj, proj in (("q_proj", "q"), ("k_proj", "k"), ("v_proj", "v"), ("out_proj", "o")):
        yield from _dense(f"{hf}.{hf_proj}", ours + (proj,))


def _bert_entries(c: bert.BertConfig) -> Iterator[tuple[str, Path, bool]]:
    e = ("embeddings",)
    yield from _embedding("embeddings.word_embeddings", e + ("word",))
    yield from _embedding("embeddings.position_embeddings", e + ("position",))
    yield from _embedding("embeddings.token_type_embeddings", e + ("token_type",))
    yield from _layer_norm("embeddings.LayerNorm", e + ("ln",))
    for i in range(c.num_hidden_layers):
        hf, ours = f"encoder.layer.{i}", (f"layers_{i}",)
        for hf_proj, proj in (("query", "q"), ("key", "k"), ("value", "v")):
            yield from _dense(f"{hf}.attention.self.{hf_proj}", ours + ("attn", proj))
        yield from _dense(f"{hf}.attention.output.dense", ours + ("attn", "o"))
        yield from _layer_norm(f"{hf}.attention.output.LayerNorm", ours + ("attn_ln",))
        yield from _dense(f"{hf}.intermediate.dense", ours + ("ffn", "fc1"))
        yield from _dense(f"{hf}.output.dense", ours + ("ffn", "fc2"))
        yield from _layer_norm(f"{hf}.output.LayerNorm", ours + ("ffn_ln",))
    yield from _dense("pooler.dense", ("pooler",))


def _bart_entries(c: bart.BartConfig) -> Iterator[tuple[str, Path, bool]]:
    yield from _embedding("shared", ("shared",))
    for side, n in (("encoder", c.encoder_layers), ("decoder", c.decoder_layers)):
        s = side[:3]
        yield from _embedding(f"{side}.embed_positions", (f"{s}_pos",))
        yield from _layer_norm(f"{side}.layernorm_embedding", (f"{s}_ln",))
        for i in range(n):
            hf, ours = f"{side}.layers.{i}", (f"{s}_layers_{i}",)
            yield from _bart_attention(f"{hf}.self_attn", ours + ("attn",))
            yield from _layer_norm(f"{hf}.self_attn_layer_norm", ours + ("attn_ln",))
            if side == "decoder":
                yield from _bart_attention(f"{hf}.encoder_attn", ours + ("cross",))
                yield from _layer_norm(f"{hf}.encoder_attn_layer_norm", ours + ("cross_ln",))
            yield from _dense(f"{hf}.fc1", ours + ("ffn", "fc1"))
            yield from _dense(f"{hf}.fc2", ours + ("ffn", "fc2"))
            yield from _layer_norm(f"{hf}.final_layer_norm", ours + ("ffn_ln",))


def tensor_map(config: Config) -> dict[str, tuple[Path, bool]]:
    """Hugging Face tensor name -> (our parameter path, transpose?) for ``config``."""
    entries = _bert_entries(config) if isinstance(config, bert.BertConfig) else _bart_entries(config)
    return {hf: (path, transpose) for hf, path, transpose in entries}


def _model_type(config: Config) -> str:
    return "bert" if isinstance(config, bert.BertConfig) else "bart"


def _normalise(name: str, model_type: str) -> str:
    prefix = BASE_PREFIXES[model_type]
    name = name.removeprefix(prefix)
    if name.endswith(".gamma"):
        return name.removesuffix(".gamma") + ".weight"
    if name.endswith(".beta"):
        return name.removesuffix(".beta") + ".bias"
    return name


def _get(tree: Mapping[str, Any], path: Path) -> Any:
    for key in path:
        tree = tree[key]
    return tree


def _set(tree: dict[str, Any], path: Path, value: Any) -> None:
    for key in path[:-1]:
        tree = tree.setdefault(key, {})
    tree[path[-1]] = value


def _tied_bart_table(tensors: dict[str, np.ndarray]) -> list[str]:
    """Fold BART's tied token-table aliases into ``shared.weight``; return problems."""
    present = [n for n in BART_TIED if n in tensors]
    tables = [tensors.pop(n) for n in present]
    if not tables:
        return []
    if any(t.shape != tables[0].shape or not np.array_equal(t, tables[0]) for t in tables[1:]):
        return [f"tied token tables {present} differ"]
    tensors["shared.weight"] = tables[0]
    return []


def params_from_tensors(config: Config, tensors: Mapping[str, np.ndarray], *,
                        optional: tuple[str, ...] = ()) -> bert.Params:
    """Our parameter tree from Hugging Face-named arrays; raises :class:`CheckpointError`.

    ``optional`` names top-level keys of our tree (e.g. ``"pooler"``) whose tensors
    may be absent altogether; the tree then lacks that key. Partly present is an error.
    """
    model_type = _model_type(config)
    tensors = {_normalise(k, model_type): v for k, v in tensors.items()}
    tensors = {k: v for k, v in tensors.items() if not k.startswith(IGNORED_PREFIXES[model_type])}
    problems = _tied_bart_table(tensors) if model_type == "bart" else []
    shapes = MODEL_TYPES[model_type][1].param_shapes(config)
    mapping = tensor_map(config)
    missing = sorted(set(mapping) - set(tensors))
    for key in optional:
        names = {name for name, (path, _) in mapping.items() if path[0] == key}
        if names <= set(missing):
            missing = [name for name in missing if name not in names]
    unexpected = sorted(set(tensors) - set(mapping))
    params: dict[str, Any] = {}
    for name, (path, transpose) in mapping.items():
        if name not in tensors:
            continue
        array = tensors[name].T if transpose else tensors[name]
        expected = _get(shapes, path)
        if array.shape != expected.shape:
            stored = tensors[name].shape
            want = expected.shape[::-1] if transpose else expected.shape
            problems.append(f"{name}: shape {tuple(stored)}, expected {tuple(want)}")
            continue
        _set(params, path, np.asarray(array, dtype=expected.dtype))
    if missing:
        problems.append(f"missing tensors: {listed(missing)}")
    if unexpected:
        problems.append(f"unexpected tensors: {listed(unexpected)}")
    if problems:
        raise CheckpointError(f"checkpoint does not match the {model_type} config: " + "; ".join(problems))
    return jax.tree.map(jax.numpy.asarray, params)


def read_config(directory: str | os.PathLike) -> Config:
    """The architecture described by ``directory/config.json``; :class:`CheckpointError` naming the file."""
    path = os.path.join(directory, "config.json")
    raw = read_json_object(path, CheckpointError)
    model_type = raw.get("model_type")
    if not isinstance(model_type, str) or model_type not in MODEL_TYPES:
        raise CheckpointError(
            f"{path}: model_type={model_type!r} is not supported; allowed: {sorted(MODEL_TYPES)}"
        )
    try:
        return MODEL_TYPES[model_type][0].from_hf(raw)
    except ConfigError as err:
        raise CheckpointError(f"{path}: {err}") from None


def _shard_files(directory: str | os.PathLike) -> list[str]:
    """``model.safetensors``, or the shard files that ``model.safetensors.index.json`` lists."""
    single = os.path.join(directory, "model.safetensors")
    index = os.path.join(directory, "model.safetensors.index.json")
    if os.path.exists(single):
        return [single]
    if not os.path.exists(index):
        raise CheckpointError(f"{directory}: neither model.safetensors nor model.safetensors.index.json found")
    raw = read_json_object(index, CheckpointError)
    if "weight_map" not in raw:
        raise CheckpointError(f"{index}: has no 'weight_map' key (tensor name -> shard file)")
    weight_map = raw["weight_map"]
    if not isinstance(weight_map, dict):
        raise CheckpointError(f"{index}: weight_map must be a JSON object, got {type(weight_map).__name__}")
    if not all(isinstance(file, str) for file in weight_map.values()):
        raise CheckpointError(f"{index}: weight_map must map tensor names to file names (strings)")
    names = sorted(set(weight_map.values()))
    absent = [name for name in names if not os.path.isfile(os.path.join(directory, name))]
    if absent:
        raise CheckpointError(f"{index}: weight_map lists {absent[0]!r}, which is not a file in {directory}")
    return [os.path.join(directory, name) for name in names]


def read_tensors(directory: str | os.PathLike) -> dict[str, np.ndarray]:
    """All arrays of ``model.safetensors`` (or of the shards its index lists), checked by :func:`read_safetensors`."""
    tensors: dict[str, np.ndarray] = {}
    for file in _shard_files(directory):
        shard, _ = read_safetensors(file)
        twice = sorted(set(shard) & set(tensors))
        if twice:
            raise CheckpointError(f"{file}: tensor {twice[0]!r} is stored twice (also in another shard)")
        tensors |= shard
    return tensors


def load_checkpoint(directory: str | os.PathLike) -> tuple[Config, bert.Params]:
    """``(config, params)`` from a Hugging Face checkpoint directory (BERT or BART)."""
    config = read_config(directory)
    tensors = read_tensors(directory)
    try:
        return config, params_from_tensors(config, tensors)
    except CheckpointError as err:
        raise CheckpointError(f"{directory}: {err}") from None


def _tie_word_embeddings(directory: str | os.PathLike) -> bool:
    """``tie_word_embeddings`` of ``directory/config.json`` (default true)."""
    path = os.path.join(directory, "config.json")
    tied = read_json_object(path, CheckpointError).get("tie_word_embeddings", True)
    if not isinstance(tied, bool):
        raise CheckpointError(f"{path}: tie_word_embeddings={tied!r} must be true or false")
    return tied


def _head_params(head: str, config: Config, tensors: dict[str, np.ndarray],
                 tied: bool) -> tuple[bert.Params, list[str]]:
    """Pop ``head``'s tensors from ``tensors``; return the head tree and problems."""
    _, spec = HEADS[head]
    if isinstance(config, bert.BertConfig):
        expected = {"qa_outputs.weight": (2, config.hidden_size), "qa_outputs.bias": (2,)}
    else:
        expected = {"final_logits_bias": (1, config.vocab_size),
                    "lm_head.weight": (config.vocab_size, config.d_model)}
    params: dict[str, Any] = {}
    problems = []
    for name, (path, transpose, required) in spec.items():
        array = tensors.pop(name, None)
        if name == "lm_head.weight" and tied:
            continue  # the tied token table (``shared``) serves as the output projection
        if array is None:
            if required or (name == "lm_head.weight" and not tied):
                problems.append(f"missing head tensor {name!r} (is this a {head} checkpoint?)")
            continue
        if array.shape != expected[name]:
            problems.append(f"{name}: shape {tuple(array.shape)}, expected {expected[name]}")
            continue
        if name == "final_logits_bias":
            array = array[0]
        _set(params, path, np.asarray(array.T if transpose else array, np.float32))
    return params, problems


def load_task_checkpoint(directory: str | os.PathLike,
                         head: str) -> tuple[Config, bert.Params, bert.Params]:
    """``(config, params, head_params)`` from a task checkpoint directory.

    ``head`` is a key of :data:`HEADS`. ``head_params`` is ``{"qa_outputs":
    {"kernel" (H, 2), "bias" (2,)}}`` for question answering, ``{"lm_head": {"bias"
    (V,)}}`` for conditional generation (plus ``"kernel"`` (d, V) when the output
    projection is not tied to ``shared``). A pooler-less BERT gives ``params``
    without ``"pooler"``. Raises :class:`CheckpointError` naming missing,
    unexpected or mis-shaped tensors, or a model type the head does not fit.
    """
    if head not in HEADS:
        raise ConfigError(f"head={head!r} is not supported; allowed: {sorted(HEADS)}")
    config = read_config(directory)
    model_type, _ = HEADS[head]
    if _model_type(config) != model_type:
        raise CheckpointError(f"{directory}: head {head!r} needs a {model_type} checkpoint, "
                              f"config.json says model_type={_model_type(config)!r}")
    tied = _tie_word_embeddings(directory)
    tensors = read_tensors(directory)
    try:
        head_params, problems = _head_params(head, config, tensors, tied)
        if problems:
            raise CheckpointError(f"checkpoint does not match the {head} head: " + "; ".join(problems))
        params = params_from_tensors(config, tensors, optional=HEAD_OPTIONAL_BASE[head])
    except CheckpointError as err:
        raise CheckpointError(f"{directory}: {err}") from None
    return config, params, jax.tree.map(jax.numpy.asarray, head_params)


def load_tokenizer(path: str | os.PathLike, vocab_size: int | None = None):
    """A ``tokenizers.Tokenizer`` from ``tokenizer.json`` (a file or a checkpoint directory holding one),
    with its stored truncation and padding switched off (callers set both).

    Raises :class:`CheckpointError` naming the file when it is absent or cannot be read, or when
    it has a token id outside a model vocabulary of ``vocab_size`` tokens (if given).
    """
    from tokenizers import Tokenizer

    path = os.fspath(path)
    file = os.path.join(path, "tokenizer.json") if os.path.isdir(path) else path
    if not os.path.isfile(file):
        raise CheckpointError(f"tokenizer={file!r}: no such file; the checkpoint directory needs a "
                              "tokenizer.json")
    try:
        tokenizer = Tokenizer.from_file(file)
    except Exception as err:  # tokenizers raises plain Exception subclasses
        raise CheckpointError(f"tokenizer={file!r} cannot be read: {err}") from None
    largest = max(tokenizer.get_vocab(with_added_tokens=True).values(), default=-1)
    if vocab_size is not None and largest >= vocab_size:
        raise CheckpointError(f"tokenizer={file!r}: token id {largest} is outside the model's vocabulary of "
                              f"{vocab_size} (vocab_size in config.json); use the checkpoint's own tokenizer.json")
    tokenizer.no_truncation()
    tokenizer.no_padding()
    return tokenizer


def save_checkpoint(directory: str | os.PathLike, config: Config, params: bert.Params) -> None:
    """Write ``config.json`` and ``model.safetensors`` with Hugging Face names."""
    os.makedirs(directory, exist_ok=True)
    tensors = {}
    for name, (path, transpose) in tensor_map(config).items():
        array = np.asarray(_get(params, path))
        tensors[name] = np.ascontiguousarray(array.T if transpose else array)
    save_file(tensors, os.path.join(directory, "model.safetensors"))
    with open(os.path.join(directory, "config.json"), "w") as f:
        json.dump(config.to_hf(), f, indent=2)
