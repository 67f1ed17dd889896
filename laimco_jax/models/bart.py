"""BART encoder-decoder (Flax linen), following transformers' ``BartModel``.

Inference mode (no dropout), post-LayerNorm blocks, learned positions with the
offset of 2 used by BART, optional sqrt(d) token-embedding scale, one token
embedding table (``shared``) tied between encoder and decoder. The attention
and feed-forward pieces are those of :mod:`laimco_jax.models.bert`.

Split execution splits the encoder only, as the paper does (Sec. V-C): for
``k`` in ``[0, L_enc]`` the device part runs the encoder embeddings and encoder
layers ``0..k-1``; the server part runs the remaining encoder layers and the
whole decoder. The tied token table is needed on both sides (the server embeds
decoder tokens); :func:`split_params` puts it in both halves.

Parameters: top-level keys ``shared``, ``enc_pos``, ``enc_ln``,
``enc_layers_{i}``, ``dec_pos``, ``dec_ln``, ``dec_layers_{i}``.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Mapping
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from laimco_jax.models.bert import (
    EncoderLayer,
    FeedForward,
    MultiHeadAttention,
    Params,
    causal_mask,
    check_config,
    check_split,
    padding_mask,
)
from laimco_jax.params import ConfigError

#: Learned position tables have ``max_position_embeddings + POSITION_OFFSET`` rows.
POSITION_OFFSET = 2


@dataclasses.dataclass(frozen=True)
class BartConfig:
    """Architecture of a BART model (Hugging Face ``BartConfig`` field names)."""

    vocab_size: int = 50265
    d_model: int = 768
    encoder_layers: int = 6
    decoder_layers: int = 6
    encoder_attention_heads: int = 12
    decoder_attention_heads: int = 12
    encoder_ffn_dim: int = 3072
    decoder_ffn_dim: int = 3072
    max_position_embeddings: int = 1024
    activation_function: str = "gelu"
    scale_embedding: bool = False
    pad_token_id: int = 1
    decoder_start_token_id: int = 2
    layer_norm_eps: float = 1e-5

    def __post_init__(self):
        check_config(self)
        for name in ("encoder_attention_heads", "decoder_attention_heads"):
            if self.d_model % getattr(self, name):
                raise ConfigError(f"d_model={self.d_model} must be a multiple of {name}={getattr(self, name)}")

    @property
    def num_layers(self) -> int:
        """Number of encoder layers L (split points are 0..L; the decoder is never split)."""
        return self.encoder_layers

    @property
    def hidden_size(self) -> int:
        """Width of the intermediate embedding (``d_model``)."""
        return self.d_model

    @classmethod
    def from_hf(cls, config: Mapping[str, Any]) -> BartConfig:
        """Build from a Hugging Face ``config.json`` dict (extra keys ignored)."""
        for flag in ("normalize_before", "add_final_layer_norm"):
            if config.get(flag):
                raise ConfigError(f"{flag}={config[flag]!r} (mBART-style pre-LayerNorm) is not "
                                  "supported; allowed: false")
        names = {f.name for f in dataclasses.fields(cls)} - {"layer_norm_eps"}
        return cls(**{k: v for k, v in config.items() if k in names})

    def to_hf(self) -> dict[str, Any]:
        """The Hugging Face ``config.json`` dict (LayerNorm eps is fixed at 1e-5 there)."""
        hf = {k: v for k, v in dataclasses.asdict(self).items() if k != "layer_norm_eps"}
        return {"model_type": "bart", "architectures": ["BartModel"], **hf}


#: facebook/bart-base: hidden 768, 6+6 layers; ``BartModel``: 139,420,416 parameters
#: (docs/theory.md#slip-9: the paper's text says 1024 but counts 139.42M, i.e. 768).
BART_BASE = BartConfig()


class DecoderLayer(nn.Module):
    """Post-LN decoder block: causal self-attention, cross-attention, feed-forward."""

    num_heads: int
    ffn_dim: int
    act: str
    eps: float
    param_dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x, self_mask, memory, cross_mask):
        ln = lambda name: nn.LayerNorm(self.eps, name=name, param_dtype=self.param_dtype)  # noqa: E731
        attn = lambda name: MultiHeadAttention(self.num_heads, self.param_dtype, name=name)  # noqa: E731
        h = ln("attn_ln")(x + attn("attn")(x, x, self_mask))
        h = ln("cross_ln")(h + attn("cross")(h, memory, cross_mask))
        return ln("ffn_ln")(h + FeedForward(self.ffn_dim, self.act, self.param_dtype, name="ffn")(h))


class BartModel(nn.Module):
    """BART; ``__call__`` returns ``(decoder_last_hidden, encoder_last_hidden)``."""

    config: BartConfig
    param_dtype: Any = jnp.float32

    def setup(self):
        c, dt = self.config, self.param_dtype
        self.shared = nn.Embed(c.vocab_size, c.d_model, param_dtype=dt)
        self.enc_pos = nn.Embed(c.max_position_embeddings + POSITION_OFFSET, c.d_model, param_dtype=dt)
        self.enc_ln = nn.LayerNorm(c.layer_norm_eps, param_dtype=dt)
        self.enc_layers = [
            EncoderLayer(c.encoder_attention_heads, c.encoder_ffn_dim, c.activation_function,
                         c.layer_norm_eps, dt)
            for _ in range(c.encoder_layers)
        ]
        self.dec_pos = nn.Embed(c.max_position_embeddings + POSITION_OFFSET, c.d_model, param_dtype=dt)
        self.dec_ln = nn.LayerNorm(c.layer_norm_eps, param_dtype=dt)
        self.dec_layers = [
            DecoderLayer(c.decoder_attention_heads, c.decoder_ffn_dim, c.activation_function,
                         c.layer_norm_eps, dt)
            for _ in range(c.decoder_layers)
        ]

    def _embed(self, ids, pos, ln):
        scale = math.sqrt(self.config.d_model) if self.config.scale_embedding else 1.0
        positions = jnp.arange(ids.shape[-1])[None, :] + POSITION_OFFSET
        return ln(self.shared(ids) * scale + pos(positions))

    def device(self, input_ids, attention_mask, split: int) -> jax.Array:
        """Encoder embeddings and encoder layers ``0..split-1``."""
        h = self._embed(input_ids, self.enc_pos, self.enc_ln)
        mask = padding_mask(attention_mask)
        for layer in self.enc_layers[:split]:
            h = layer(h, mask)
        return h

    def server(self, hidden, attention_mask, decoder_input_ids, decoder_attention_mask,
               split: int) -> tuple[jax.Array, jax.Array]:
        """Encoder layers ``split..`` then the decoder: ``(decoder_last, encoder_last)``."""
        mask = padding_mask(attention_mask)
        for layer in self.enc_layers[split:]:
            hidden = layer(hidden, mask)
        self_mask = causal_mask(decoder_input_ids.shape[-1]) & padding_mask(decoder_attention_mask)
        h = self._embed(decoder_input_ids, self.dec_pos, self.dec_ln)
        for layer in self.dec_layers:
            h = layer(h, self_mask, hidden, mask)
        return h, hidden

    def __call__(self, input_ids, attention_mask, decoder_input_ids, decoder_attention_mask):
        h = self.device(input_ids, attention_mask, 0)
        return self.server(h, attention_mask, decoder_input_ids, decoder_attention_mask, 0)


def shift_tokens_right(config: BartConfig, input_ids: jax.Array) -> jax.Array:
    """Default decoder inputs: ``decoder_start_token_id`` then ``input_ids[:, :-1]``."""
    input_ids = jnp.asarray(input_ids)
    start = jnp.full(input_ids.shape[:-1] + (1,), config.decoder_start_token_id, input_ids.dtype)
    return jnp.concatenate([start, input_ids[..., :-1]], axis=-1)


def _decoder_defaults(config, input_ids, decoder_input_ids, decoder_attention_mask):
    if decoder_input_ids is None:
        decoder_input_ids = shift_tokens_right(config, input_ids)
    if decoder_attention_mask is None:
        decoder_attention_mask = jnp.ones_like(decoder_input_ids)
    return decoder_input_ids, decoder_attention_mask


@functools.partial(jax.jit, static_argnames=("config", "param_dtype"))
def init(config: BartConfig, key: jax.Array, param_dtype=jnp.float32) -> Params:
    """Randomly initialised parameters (flax default initialisers)."""
    ids = jnp.zeros((1, 2), jnp.int32)
    return BartModel(config, param_dtype).init(key, ids, ids + 1, ids, ids + 1)["params"]


def param_shapes(config: BartConfig, param_dtype=jnp.float32) -> Params:
    """``jax.ShapeDtypeStruct`` tree of the parameters (nothing materialised)."""
    return jax.eval_shape(lambda k: init(config, k, param_dtype), jax.random.key(0))


@functools.partial(jax.jit, static_argnames="config")
def forward(config: BartConfig, params: Params, input_ids, attention_mask=None,
            decoder_input_ids=None, decoder_attention_mask=None) -> tuple[jax.Array, jax.Array]:
    """Full model: ``(decoder_last_hidden, encoder_last_hidden)``.

    Without ``decoder_input_ids`` the decoder reads ``shift_tokens_right(input_ids)``
    as transformers does.
    """
    attention_mask = jnp.ones_like(input_ids) if attention_mask is None else attention_mask
    dec_ids, dec_mask = _decoder_defaults(config, input_ids, decoder_input_ids, decoder_attention_mask)
    return BartModel(config).apply({"params": params}, input_ids, attention_mask, dec_ids, dec_mask)


@functools.partial(jax.jit, static_argnames=("config", "split"))
def device_forward(config: BartConfig, params: Params, input_ids, attention_mask=None, *,
                   split: int) -> jax.Array:
    """Device part (encoder embeddings + ``split`` encoder layers)."""
    check_split(split, config.num_layers)
    attention_mask = jnp.ones_like(input_ids) if attention_mask is None else attention_mask
    return BartModel(config).apply({"params": params}, input_ids, attention_mask, split,
                                   method="device")


@functools.partial(jax.jit, static_argnames=("config", "split"))
def server_forward(config: BartConfig, params: Params, hidden, attention_mask=None,
                   decoder_input_ids=None, decoder_attention_mask=None, *,
                   split: int) -> tuple[jax.Array, jax.Array]:
    """Server part: remaining encoder layers and the decoder.

    ``decoder_input_ids`` is required here (the server never sees ``input_ids``).
    """
    check_split(split, config.num_layers)
    if decoder_input_ids is None:
        raise ValueError("decoder_input_ids is required for the server part")
    if attention_mask is None:
        attention_mask = jnp.ones(hidden.shape[:2], jnp.int32)
    if decoder_attention_mask is None:
        decoder_attention_mask = jnp.ones_like(decoder_input_ids)
    return BartModel(config).apply({"params": params}, hidden, attention_mask, decoder_input_ids,
                                   decoder_attention_mask, split, method="server")


def split_params(config: BartConfig, params: Params, split: int) -> tuple[Params, Params]:
    """``(device_params, server_params)``; ``shared`` (tied token table) is in both."""
    check_split(split, config.num_layers)
    device = {k: params[k] for k in ("shared", "enc_pos", "enc_ln")}
    device |= {f"enc_layers_{i}": params[f"enc_layers_{i}"] for i in range(split)}
    server = {f"enc_layers_{i}": params[f"enc_layers_{i}"] for i in range(split, config.num_layers)}
    server |= {k: params[k] for k in ("shared", "dec_pos", "dec_ln")}
    server |= {f"dec_layers_{i}": params[f"dec_layers_{i}"] for i in range(config.decoder_layers)}
    return device, server
