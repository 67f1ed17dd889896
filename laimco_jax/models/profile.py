"""Measured per-split model profiles: q_k, s_k, N_FLOP, Ñ_FLOP, θ_k and h(w).

Split convention (the paper's, Sec. V-C, and ``params.ModelPresetSpec``), for a
model with L blocks (BERT layers; BART *encoder* layers):

* split 0 — on-server inference: the device holds nothing (q = N_FLOP = 0) and
  uploads the raw input, θ = ``seq_len x token_id_bits``;
* 0 < k < L — the device runs the embeddings and blocks ``0..k-1``
  (:func:`bert.device_forward`), the server the rest
  (:func:`bert.server_forward`); θ = ``seq_len x hidden x activation_bits``;
* split L — BERT: on-device inference, everything (pooler included) on the
  device, s = Ñ_FLOP = 0, θ = 0. BART splits only its encoder, so at L the
  server still runs the decoder and θ is the encoder output.

θ counts one sequence (batch 1); the 0/1 padding mask is not counted (a batch
of one unpadded sequence needs none).

Parameter counts: a tensor needed on both sides (BART's tied token table) is
counted once, on the device side, so q + s is the model's parameter count.

FLOPs are XLA's ``flops`` from the cost analysis of the compiled, jitted halves
at batch 1 and the given sequence length (FLOPs of one inference, one
multiply-add = 2 FLOPs); :func:`analytic_flops` counts the matrix products only
and agrees within a few percent (the rest is softmax, GELU and LayerNorm).
BART's decoder reads ``decoder_seq_len`` tokens (default: ``seq_len``) in one
teacher-forced pass.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp

from laimco_jax.distortion import weight_entropy_bits
from laimco_jax.models import bart, bert, checkpoints, weights
from laimco_jax.params import ConfigError

#: Built-in architectures (random init, no weights needed): public configs of
#: bert-base-uncased and facebook/bart-base.
PRESETS: dict[str, checkpoints.Config] = {"bert-base": bert.BERT_BASE, "bart-base": bart.BART_BASE}

#: Defaults shared with ``laimco_jax.params.ModelPresetSpec``.
DEFAULT_ACTIVATION_BITS = 8
DEFAULT_TOKEN_ID_BITS = 32
DEFAULT_BITS_PER_WEIGHT = 32

#: Settings of the embedded preset profiles (``laimco_jax/data/model_profiles.json``). BART's server
#: work is its remaining encoder blocks plus one decoder step over the encoder output: the work to the
#: first generated token, so T0 reads as time to first token (the paper's 6.44 GFLOPs for BART-base
#: is the same work counted as multiply-accumulates of the linear layers, 6.43 G, where XLA counts two
#: FLOPs per multiply-accumulate and the attention products: docs/theory.md#flop-conventions).
PRESET_SEQ_LEN = 128
PRESET_DECODER_SEQ_LEN = {"bart-base": 1}


def _module(config: checkpoints.Config):
    return bert if isinstance(config, bert.BertConfig) else bart


def resolve_model(model: str) -> tuple[checkpoints.Config, Any, bool]:
    """``(config, params, pretrained)`` for ``minilm``, a preset name, or a checkpoint directory.

    Presets give a ``jax.ShapeDtypeStruct`` tree (nothing materialised) and
    ``pretrained=False``; ``minilm`` (found by :func:`weights.minilm_checkpoint_dir`, downloaded once
    if needed) and a directory give loaded weights.
    """
    if model in PRESETS:
        config = PRESETS[model]
        return config, _module(config).param_shapes(config), False
    if model == "minilm":
        model = weights.minilm_checkpoint_dir()
    if not os.path.isdir(model):
        raise ConfigError(
            f"model={model!r} is neither a preset nor a checkpoint directory; "
            f"allowed: {['minilm', *PRESETS]} or a directory with config.json + model.safetensors"
        )
    config, params = checkpoints.load_checkpoint(model)
    return config, params, True


def _profile_halves(config, tree, split: int) -> tuple[dict, dict]:
    """The device and server parameter trees at ``split`` under the profile convention."""
    if split == 0:
        return {}, tree
    if split == config.num_layers and isinstance(config, bert.BertConfig):
        return tree, {}
    return _module(config).split_params(config, tree, split)


def count_params(device: dict, server: dict) -> tuple[int, int]:
    """``(q, s)``: server tensors already on the device (tied) are counted on the device only."""
    size = lambda leaf: math.prod(leaf.shape)  # noqa: E731
    device_paths = {p for p, _ in jax.tree_util.tree_leaves_with_path(device)}
    q = sum(size(leaf) for leaf in jax.tree.leaves(device))
    s = sum(size(leaf) for p, leaf in jax.tree_util.tree_leaves_with_path(server) if p not in device_paths)
    return q, s


def xla_flops(fn: Callable, *args) -> float:
    """FLOPs of ``fn(*args)`` from XLA's cost analysis of the compiled jit (args may be abstract)."""
    analysis = jax.jit(fn).lower(*args).compile().cost_analysis()
    if isinstance(analysis, Sequence):  # older jax: one dict per device
        analysis = analysis[0]
    return float(analysis["flops"])


def _measured_flops(config, device, server, split, seq_len, decoder_seq_len) -> tuple[float, float]:
    ids = jax.ShapeDtypeStruct((1, seq_len), jnp.int32)
    hidden = jax.ShapeDtypeStruct((1, seq_len, config.hidden_size), jnp.float32)
    if isinstance(config, bert.BertConfig):
        full = lambda p, x: bert.forward(config, p, x)  # noqa: E731
        dev = lambda p, x: bert.device_forward(config, p, x, split=split)  # noqa: E731
        srv = lambda p, h: bert.server_forward(config, p, h, split=split)  # noqa: E731
        if not device:
            return 0.0, xla_flops(full, server, ids)
        if not server:
            return xla_flops(full, device, ids), 0.0
        return xla_flops(dev, device, ids), xla_flops(srv, server, hidden)
    dec = jax.ShapeDtypeStruct((1, decoder_seq_len), jnp.int32)
    if not device:
        full = lambda p, x, d: bart.forward(config, p, x, None, d)  # noqa: E731
        return 0.0, xla_flops(full, server, ids, dec)
    dev = lambda p, x: bart.device_forward(config, p, x, split=split)  # noqa: E731
    srv = lambda p, h, d: bart.server_forward(config, p, h, None, d, split=split)  # noqa: E731
    return xla_flops(dev, device, ids), xla_flops(srv, server, hidden, dec)


def _encoder_layer_flops(n: int, d: int, f: int) -> int:
    """Matmul FLOPs of one encoder block: q/k/v/o projections, scores, context, FFN."""
    return 8 * n * d * d + 4 * n * n * d + 4 * n * d * f


def _decoder_layer_flops(t: int, n: int, d: int, f: int) -> int:
    """Matmul FLOPs of one decoder block over ``t`` target and ``n`` source tokens."""
    cross = 4 * t * d * d + 4 * n * d * d + 4 * t * n * d
    return 8 * t * d * d + 4 * t * t * d + cross + 4 * t * d * f


def analytic_flops(config: checkpoints.Config, split: int, seq_len: int,
                   decoder_seq_len: int | None = None) -> tuple[int, int]:
    """``(N_FLOP, Ñ_FLOP)`` counting matrix products only (2 FLOPs per multiply-add)."""
    bert.check_split(split, config.num_layers)
    n, d = seq_len, config.hidden_size
    if isinstance(config, bert.BertConfig):
        layer = _encoder_layer_flops(n, d, config.intermediate_size)
        pooler = 2 * d * d
        if split == config.num_layers:
            return split * layer + pooler, 0
        return split * layer, (config.num_layers - split) * layer + pooler
    t = decoder_seq_len or seq_len
    layer = _encoder_layer_flops(n, d, config.encoder_ffn_dim)
    decoder = config.decoder_layers * _decoder_layer_flops(t, n, d, config.decoder_ffn_dim)
    return split * layer, (config.num_layers - split) * layer + decoder


def embedding_bits(config: checkpoints.Config, split: int, seq_len: int,
                   activation_bits: int = DEFAULT_ACTIVATION_BITS,
                   token_id_bits: int = DEFAULT_TOKEN_ID_BITS) -> int:
    """θ_k [bits] uploaded at ``split`` for one sequence of ``seq_len`` tokens."""
    bert.check_split(split, config.num_layers)
    if split == 0:
        return seq_len * token_id_bits
    if split == config.num_layers and isinstance(config, bert.BertConfig):
        return 0
    return seq_len * config.hidden_size * activation_bits


def model_entropy_bits(params) -> float:
    """h(w) [bits] of all parameters under one Laplace law (the paper's Assumption 4).

    One scale b is fitted to every weight of the model jointly, h = q_p log2(2 e b).
    (Per-tensor fits would give -inf for any constant tensor, e.g. MiniLM's
    all-zero pooler bias.)
    """
    flat = jnp.concatenate([jnp.ravel(leaf) for leaf in jax.tree.leaves(params)])
    return float(weight_entropy_bits(flat))


def _check_positive_int(name: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(f"{name}={value!r} must be an integer >= 1")


def split_profiles(model: str, seq_len: int = 128, activation_bits: int = DEFAULT_ACTIVATION_BITS,
                   bits_per_weight: float = DEFAULT_BITS_PER_WEIGHT,
                   token_id_bits: int = DEFAULT_TOKEN_ID_BITS, decoder_seq_len: int | None = None,
                   splits: Sequence[int] | None = None, entropy: bool = True) -> list[dict[str, Any]]:
    """One record per split (all of ``0..L`` unless ``splits`` is given) of ``model``.

    ``model``: ``minilm``, ``bert-base``, ``bart-base`` or a Hugging Face checkpoint
    directory. Record keys (names of the ``[model]`` configuration fields):
    ``split``; ``params_device`` q and ``params_server`` s [parameters];
    ``flops_device`` N_FLOP and ``flops_server`` Ñ_FLOP [FLOPs, XLA]; their
    ``*_analytic`` counterparts; ``embedding_bits`` θ and ``input_bits`` [bits];
    ``bits_per_weight`` b; ``entropy_bits`` h(w) of the whole model [bits] from
    :func:`model_entropy_bits` (``None`` for presets, whose random weights say
    nothing about a trained model, or when ``entropy=False``, which skips the
    fit: it sorts every weight); ``seq_len``, ``decoder_seq_len`` (BART),
    ``activation_bits``, ``num_layers``.
    """
    if not isinstance(model, str):
        raise ConfigError(f"model={model!r} must be a string")
    for name, value in (("seq_len", seq_len), ("activation_bits", activation_bits),
                        ("token_id_bits", token_id_bits)):
        _check_positive_int(name, value)
    if not (isinstance(bits_per_weight, (int, float)) and bits_per_weight > 0):
        raise ConfigError(f"bits_per_weight={bits_per_weight!r} must be a number > 0")
    config, params, pretrained = resolve_model(model)
    is_bart = isinstance(config, bart.BartConfig)
    if seq_len > config.max_position_embeddings:
        raise ConfigError(f"seq_len={seq_len} exceeds max_position_embeddings="
                          f"{config.max_position_embeddings} of {model!r}")
    if is_bart:
        decoder_seq_len = seq_len if decoder_seq_len is None else decoder_seq_len
        _check_positive_int("decoder_seq_len", decoder_seq_len)
        if decoder_seq_len > config.max_position_embeddings:
            raise ConfigError(f"decoder_seq_len={decoder_seq_len} exceeds max_position_embeddings="
                              f"{config.max_position_embeddings} of {model!r}")
    elif decoder_seq_len is not None:
        raise ConfigError(f"decoder_seq_len={decoder_seq_len!r} applies to BART models only")
    all_splits = range(config.num_layers + 1)
    splits = list(all_splits) if splits is None else list(splits)
    bad = [k for k in splits if k not in all_splits]
    if bad:
        raise ConfigError(f"splits={bad} out of range; allowed: 0..{config.num_layers}")
    entropy_bits = model_entropy_bits(params) if pretrained and entropy else None
    records = []
    for k in splits:
        device, server = _profile_halves(config, params, k)
        q, s = count_params(device, server)
        n_dev, n_srv = _measured_flops(config, device, server, k, seq_len, decoder_seq_len)
        a_dev, a_srv = analytic_flops(config, k, seq_len, decoder_seq_len)
        records.append(dict(
            split=k, params_device=q, params_server=s, flops_device=n_dev, flops_server=n_srv,
            flops_device_analytic=a_dev, flops_server_analytic=a_srv,
            embedding_bits=embedding_bits(config, k, seq_len, activation_bits, token_id_bits),
            input_bits=seq_len * token_id_bits, bits_per_weight=bits_per_weight,
            entropy_bits=entropy_bits, seq_len=seq_len, decoder_seq_len=decoder_seq_len,
            activation_bits=activation_bits, num_layers=config.num_layers,
        ))
    return records


def preset_profile_document(model: str) -> dict[str, Any]:
    """The embedded profile of preset ``model`` (``bert-base`` or ``bart-base``) as a JSON-able dict.

    ``laimco_jax/data/model_profiles.json`` holds one such document per preset; it is written by
    ``scripts/make_preset_profiles.py`` and read by ``laimco_jax.params`` (which must not import the
    models). Settings: ``PRESET_SEQ_LEN`` tokens, ``DEFAULT_ACTIVATION_BITS`` bits per uploaded
    activation, ``DEFAULT_TOKEN_ID_BITS`` bits per raw token id, BART's ``PRESET_DECODER_SEQ_LEN``.
    """
    if model not in PRESETS:
        raise ConfigError(f"model={model!r} is not a preset; allowed: {list(PRESETS)}")
    decoder_seq_len = PRESET_DECODER_SEQ_LEN.get(model)
    records = split_profiles(model, seq_len=PRESET_SEQ_LEN, decoder_seq_len=decoder_seq_len, entropy=False)
    keep = ("split", "params_device", "params_server", "flops_device", "flops_server",
            "flops_device_analytic", "flops_server_analytic", "embedding_bits")
    return dict(
        model=model, num_layers=PRESETS[model].num_layers, seq_len=PRESET_SEQ_LEN,
        decoder_seq_len=decoder_seq_len, activation_bits=DEFAULT_ACTIVATION_BITS,
        token_id_bits=DEFAULT_TOKEN_ID_BITS, input_bits=PRESET_SEQ_LEN * DEFAULT_TOKEN_ID_BITS,
        flops_source="XLA cost analysis of the jitted halves at batch 1 (jax " + jax.__version__ + ")",
        splits=[{k: r[k] for k in keep} for r in records],
    )
