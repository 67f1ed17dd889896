"""BERT encoder with pooler (Flax linen), and the transformer pieces BART reuses.

The port follows transformers' ``BertModel`` (post-LayerNorm blocks, absolute
positions, token types, tanh pooler over the first token) in inference mode
(no dropout). Parameter names are ours; :mod:`laimco_jax.models.checkpoints`
maps them to Hugging Face tensor names.

Split execution (the paper's co-inference, Sec. II): for a split ``k`` in
``[0, L]`` the *device part* runs the embeddings and blocks ``0..k-1`` and
returns the intermediate embedding ``o`` (``batch x seq x hidden``); the
*server part* runs blocks ``k..L-1`` and the pooler. ``server(device(x)) ==
model(x)`` for every ``k``.

Parameters are plain nested dicts (the inner ``"params"`` collection of linen):
top-level keys ``embeddings``, ``layers_0`` … ``layers_{L-1}``, ``pooler``.
Task models without a pooler (``BertForQuestionAnswering``) have no ``pooler``
key; the forward functions then return ``pooled = None``.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import numbers
from collections.abc import Callable, Mapping
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from laimco_jax.params import ConfigError

Params = dict[str, Any]

#: Hugging Face ``hidden_act`` / ``activation_function`` names we support.
ACTIVATIONS: dict[str, Callable[[jax.Array], jax.Array]] = {
    "gelu": lambda x: jax.nn.gelu(x, approximate=False),
    "gelu_new": lambda x: jax.nn.gelu(x, approximate=True),
    "gelu_pytorch_tanh": lambda x: jax.nn.gelu(x, approximate=True),
    "relu": jax.nn.relu,
    "silu": jax.nn.silu,
    "swish": jax.nn.silu,
}


def activation(name: str) -> Callable[[jax.Array], jax.Array]:
    """The activation function called ``name`` in Hugging Face configs."""
    if not isinstance(name, str) or name not in ACTIVATIONS:
        raise ConfigError(
            f"activation {name!r} is not supported; allowed: {sorted(ACTIVATIONS)}"
        )
    return ACTIVATIONS[name]


def _allowed(config: Any, field: dataclasses.Field) -> tuple[bool, str]:
    """``(is the value of field allowed, what the field must be)`` for a field of ``config``.

    The kind follows the field's default: booleans are true or false; floats finite and > 0;
    strings (the activation) a name of :data:`ACTIVATIONS`; integers >= 1, except token ids
    (``*_token_id``), which lie in ``[0, vocab_size - 1]``.
    """
    value = getattr(config, field.name)
    kind = type(field.default)
    number = isinstance(value, numbers.Real) and not isinstance(value, bool)
    integer = number and isinstance(value, numbers.Integral)
    if kind is bool:
        return isinstance(value, bool), "true or false"
    if kind is str:
        return isinstance(value, str) and value in ACTIVATIONS, f"a supported activation; allowed: {sorted(ACTIVATIONS)}"
    if kind is float:
        return number and math.isfinite(value) and value > 0, "a finite number > 0"
    if field.name.endswith("_token_id"):
        return integer and 0 <= value < config.vocab_size, f"an integer in [0, {config.vocab_size - 1}]"
    return integer and value >= 1, "an integer >= 1"


def check_config(config: Any) -> None:
    """Raise ConfigError naming the first field of ``config`` (a BERT or BART config) outside its range."""
    for field in dataclasses.fields(config):
        ok, allowed = _allowed(config, field)
        if not ok:
            raise ConfigError(f"{field.name}={getattr(config, field.name)!r} must be {allowed}")


def padding_mask(attention_mask: jax.Array) -> jax.Array:
    """Boolean key mask ``(batch, 1, 1, seq)`` from a 0/1 ``(batch, seq)`` mask."""
    return attention_mask.astype(bool)[:, None, None, :]


def causal_mask(seq_len: int) -> jax.Array:
    """Boolean ``(1, 1, seq, seq)`` mask letting position i attend to j <= i."""
    return jnp.tril(jnp.ones((seq_len, seq_len), dtype=bool))[None, None]


class MultiHeadAttention(nn.Module):
    """Scaled dot-product multi-head attention with biased q/k/v/o projections.

    ``mask`` is boolean, broadcastable to ``(batch, heads, q_len, kv_len)``;
    False entries are excluded (their score is the dtype's most negative value,
    as transformers does).
    """

    num_heads: int
    param_dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array, kv: jax.Array, mask: jax.Array) -> jax.Array:
        d = x.shape[-1]
        head_dim = d // self.num_heads
        dense = lambda name: nn.Dense(d, name=name, param_dtype=self.param_dtype)  # noqa: E731
        heads = lambda t: t.reshape(t.shape[:-1] + (self.num_heads, head_dim))  # noqa: E731
        q, k, v = heads(dense("q")(x)), heads(dense("k")(kv)), heads(dense("v")(kv))
        scores = jnp.einsum("bqhd,bkhd->bhqk", q, k) / math.sqrt(head_dim)
        scores = jnp.where(mask, scores, jnp.finfo(scores.dtype).min)
        probs = jax.nn.softmax(scores, axis=-1)
        context = jnp.einsum("bhqk,bkhd->bqhd", probs, v).reshape(x.shape[:-1] + (d,))
        return dense("o")(context)


class FeedForward(nn.Module):
    """Position-wise ``fc2(act(fc1(x)))`` with hidden width ``ffn_dim``."""

    ffn_dim: int
    act: str
    param_dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        h = nn.Dense(self.ffn_dim, name="fc1", param_dtype=self.param_dtype)(x)
        h = activation(self.act)(h)
        return nn.Dense(x.shape[-1], name="fc2", param_dtype=self.param_dtype)(h)


class EncoderLayer(nn.Module):
    """Post-LayerNorm transformer block: ``LN(x + attn(x))`` then ``LN(h + ffn(h))``.

    This is both BERT's layer and BART's encoder layer.
    """

    num_heads: int
    ffn_dim: int
    act: str
    eps: float
    param_dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array, mask: jax.Array) -> jax.Array:
        ln = lambda name: nn.LayerNorm(self.eps, name=name, param_dtype=self.param_dtype)  # noqa: E731
        h = ln("attn_ln")(x + MultiHeadAttention(self.num_heads, self.param_dtype, name="attn")(x, x, mask))
        ffn = FeedForward(self.ffn_dim, self.act, self.param_dtype, name="ffn")
        return ln("ffn_ln")(h + ffn(h))


@dataclasses.dataclass(frozen=True)
class BertConfig:
    """Architecture of a BERT encoder (Hugging Face ``BertConfig`` field names)."""

    vocab_size: int = 30522
    hidden_size: int = 768
    num_hidden_layers: int = 12
    num_attention_heads: int = 12
    intermediate_size: int = 3072
    hidden_act: str = "gelu"
    max_position_embeddings: int = 512
    type_vocab_size: int = 2
    layer_norm_eps: float = 1e-12
    pad_token_id: int = 0

    def __post_init__(self):
        check_config(self)
        if self.hidden_size % self.num_attention_heads:
            raise ConfigError(
                f"hidden_size={self.hidden_size} must be a multiple of "
                f"num_attention_heads={self.num_attention_heads}"
            )

    @property
    def num_layers(self) -> int:
        """Number of transformer blocks L (split points are 0..L)."""
        return self.num_hidden_layers

    @classmethod
    def from_hf(cls, config: Mapping[str, Any]) -> BertConfig:
        """Build from a Hugging Face ``config.json`` dict (extra keys ignored)."""
        position = config.get("position_embedding_type", "absolute")
        if position != "absolute":
            raise ConfigError(
                f"position_embedding_type={position!r} is not supported; allowed: ['absolute']"
            )
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in config.items() if k in names})

    def to_hf(self) -> dict[str, Any]:
        """The Hugging Face ``config.json`` dict for this architecture."""
        return {"model_type": "bert", "architectures": ["BertModel"], **dataclasses.asdict(self)}


#: bert-base-uncased (Devlin et al. 2019); ``BertModel`` with pooler: 109,482,240 parameters.
BERT_BASE = BertConfig()


class BertEmbeddings(nn.Module):
    """Word + absolute position + token type embeddings, then LayerNorm."""

    config: BertConfig
    param_dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, input_ids: jax.Array, token_type_ids: jax.Array) -> jax.Array:
        c = self.config
        embed = lambda n, name: nn.Embed(n, c.hidden_size, name=name, param_dtype=self.param_dtype)  # noqa: E731
        positions = jnp.arange(input_ids.shape[-1])[None, :]
        h = (
            embed(c.vocab_size, "word")(input_ids)
            + embed(c.max_position_embeddings, "position")(positions)
            + embed(c.type_vocab_size, "token_type")(token_type_ids)
        )
        return nn.LayerNorm(c.layer_norm_eps, name="ln", param_dtype=self.param_dtype)(h)


class BertModel(nn.Module):
    """BERT encoder + pooler. ``__call__`` returns ``(last_hidden, pooled)``."""

    config: BertConfig
    param_dtype: Any = jnp.float32

    def setup(self):
        c = self.config
        self.embeddings = BertEmbeddings(c, self.param_dtype)
        self.layers = [
            EncoderLayer(c.num_attention_heads, c.intermediate_size, c.hidden_act,
                         c.layer_norm_eps, self.param_dtype)
            for _ in range(c.num_hidden_layers)
        ]
        self.pooler = nn.Dense(c.hidden_size, param_dtype=self.param_dtype)

    def device(self, input_ids, attention_mask, token_type_ids, split: int) -> jax.Array:
        """Embeddings and blocks ``0..split-1``: the intermediate embedding o."""
        h = self.embeddings(input_ids, token_type_ids)
        mask = padding_mask(attention_mask)
        for layer in self.layers[:split]:
            h = layer(h, mask)
        return h

    def server(self, hidden, attention_mask, split: int,
               pool: bool = True) -> tuple[jax.Array, jax.Array | None]:
        """Blocks ``split..L-1`` and the pooler: ``(last_hidden, pooled)``; pooled is None without ``pool``."""
        mask = padding_mask(attention_mask)
        for layer in self.layers[split:]:
            hidden = layer(hidden, mask)
        return hidden, (jnp.tanh(self.pooler(hidden[:, 0])) if pool else None)

    def __call__(self, input_ids, attention_mask, token_type_ids, pool: bool = True):
        h = self.device(input_ids, attention_mask, token_type_ids, 0)
        return self.server(h, attention_mask, 0, pool)


def check_split(split: int, num_layers: int) -> None:
    """Raise ConfigError unless ``split`` is an int in ``[0, num_layers]``."""
    if not (isinstance(split, int) and 0 <= split <= num_layers):
        raise ConfigError(f"split={split!r} must be an int in [0, {num_layers}]")


def _defaults(input_ids, attention_mask, token_type_ids):
    attention_mask = jnp.ones_like(input_ids) if attention_mask is None else attention_mask
    token_type_ids = jnp.zeros_like(input_ids) if token_type_ids is None else token_type_ids
    return attention_mask, token_type_ids


@functools.partial(jax.jit, static_argnames=("config", "param_dtype"))
def init(config: BertConfig, key: jax.Array, param_dtype=jnp.float32) -> Params:
    """Randomly initialised parameters (flax default initialisers)."""
    ids = jnp.zeros((1, 2), jnp.int32)
    return BertModel(config, param_dtype).init(key, ids, ids + 1, ids)["params"]


def param_shapes(config: BertConfig, param_dtype=jnp.float32) -> Params:
    """``jax.ShapeDtypeStruct`` tree of the parameters (nothing materialised)."""
    return jax.eval_shape(lambda k: init(config, k, param_dtype), jax.random.key(0))


@functools.partial(jax.jit, static_argnames="config")
def forward(config: BertConfig, params: Params, input_ids, attention_mask=None,
            token_type_ids=None) -> tuple[jax.Array, jax.Array]:
    """Full model: ``(last_hidden (B, T, H), pooled (B, H))``; masks are 0/1 ``(B, T)``.

    ``pooled`` is None when ``params`` has no ``pooler`` (a pooler-less task checkpoint).
    """
    attention_mask, token_type_ids = _defaults(input_ids, attention_mask, token_type_ids)
    return BertModel(config).apply({"params": params}, input_ids, attention_mask, token_type_ids,
                                   "pooler" in params)


@functools.partial(jax.jit, static_argnames=("config", "split"))
def device_forward(config: BertConfig, params: Params, input_ids, attention_mask=None,
                   token_type_ids=None, *, split: int) -> jax.Array:
    """Device part for split ``split``; ``params`` may be just the device half."""
    check_split(split, config.num_layers)
    attention_mask, token_type_ids = _defaults(input_ids, attention_mask, token_type_ids)
    return BertModel(config).apply({"params": params}, input_ids, attention_mask,
                                   token_type_ids, split, method="device")


@functools.partial(jax.jit, static_argnames=("config", "split"))
def server_forward(config: BertConfig, params: Params, hidden, attention_mask=None, *,
                   split: int) -> tuple[jax.Array, jax.Array]:
    """Server part for split ``split``; ``params`` may be just the server half.

    ``pooled`` is None when ``params`` has no ``pooler`` (a pooler-less task checkpoint).
    """
    check_split(split, config.num_layers)
    if attention_mask is None:
        attention_mask = jnp.ones(hidden.shape[:2], jnp.int32)
    return BertModel(config).apply({"params": params}, hidden, attention_mask, split,
                                   "pooler" in params, method="server")


def split_params(config: BertConfig, params: Params, split: int) -> tuple[Params, Params]:
    """``(device_params, server_params)``: embeddings + layers ``<split`` | the rest (+ pooler if any)."""
    check_split(split, config.num_layers)
    device = {"embeddings": params["embeddings"]}
    device |= {f"layers_{i}": params[f"layers_{i}"] for i in range(split)}
    server = {f"layers_{i}": params[f"layers_{i}"] for i in range(split, config.num_layers)}
    return device, server | ({"pooler": params["pooler"]} if "pooler" in params else {})
