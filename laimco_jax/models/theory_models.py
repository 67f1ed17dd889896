"""The models and real inputs of Section III's experiments (Figs. 2 and 3, closing the loop).

Models (``model=``): ``"fcdnn8"`` / ``"fcdnn16"`` (the paper's auto-encoders, trained here on
scikit-learn digits with :func:`laimco_jax.models.fcdnn.train`, or a safetensors file written by
:func:`laimco_jax.models.fcdnn.save`); ``"minilm"`` (real pretrained all-MiniLM-L6-v2, a BERT, found
by :func:`laimco_jax.models.weights.minilm_checkpoint_dir`); ``"bart"`` (facebook/bart-base's
architecture, randomly initialised: its weights say nothing about a trained BART; in quick mode a
2+2-layer, d_model 64 BART) or a Hugging Face checkpoint directory (config.json + model.safetensors,
BERT or BART). :func:`load_theory_model` does the loading once, so several tables can share it.

Inputs. FCDNNs read digits (64 pixels in [0, 1]) scaled by 1 / max‖φ‖ over the batch, so that every
input satisfies Assumption 1 (‖φ‖² ≤ 1) and the largest has norm 1; the networks were trained on the
unscaled digits. Transformers read :data:`SENTENCES` (real English), tokenised with the checkpoint's
``tokenizer.json`` (MiniLM's when the directory has none, and for ``"bart"``) by
:func:`laimco_jax.models.checkpoints.load_tokenizer`, padded to the longest and truncated to
``max_tokens``.

Model output f(φ, Ω) (:meth:`TheoryModel.apply`, the quantity whose distortion is measured, see
docs/theory.md#output-and-parameter-distortion): the FCDNN's reconstruction (64 values); for a BERT
the last hidden state, for a BART the decoder's last hidden state (teacher-forced on the shifted
input), at the real (non-padding) tokens, flattened per sentence.

Bad arguments raise :class:`~laimco_jax.params.ConfigError` naming the parameter, the value and the
allowed values.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from laimco_jax.bounds import mlp_forward
from laimco_jax.models.weights import minilm_checkpoint_dir
from laimco_jax.params import ConfigError

__all__ = ["MODELS", "SENTENCES", "TheoryModel", "check_int", "load_theory_model", "masked_outputs", "tokenize"]

PyTree = Any

#: Built-in model names (anything else must be a checkpoint directory or an FCDNN safetensors file).
MODELS = ("fcdnn8", "fcdnn16", "minilm", "bart")
_ALIASES = {"fcdnn-8": "fcdnn8", "fcdnn-16": "fcdnn16"}
_FCDNN_NAMES = {"fcdnn8": "fcdnn-8", "fcdnn16": "fcdnn-16"}

#: Real English sentences, the transformer inputs of Fig. 3 and of closing the loop.
SENTENCES = (
    "The quick brown fox jumps over the lazy dog.",
    "Wireless networks carry most of the data that phones send to the cloud.",
    "She opened the window to let the cool evening air into the room.",
    "Large language models are often too big to run on a mobile device.",
    "The train to Edinburgh leaves from platform four at half past nine.",
    "Heavy rain is expected across the north of the country tomorrow.",
    "He reads a chapter of his book every night before going to sleep.",
    "Pruning removes the weights that contribute least to the output.",
    "The museum will be closed on Monday for repairs to the roof.",
    "A good cup of coffee makes the morning meeting much easier.",
    "The children built a small castle out of sand on the beach.",
    "Energy consumption is a major concern for battery powered devices.",
    "Our team won the match after a penalty in the final minute.",
    "The recipe calls for two eggs, a cup of flour and some milk.",
    "Scientists measured the temperature of the lake every hour.",
    "Please send me the report by the end of the week.",
)


def check_int(name: str, value: Any, minimum: int) -> None:
    """ConfigError unless ``value`` is an integer (not a bool) >= ``minimum``."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ConfigError(f"{name}={value!r} must be an integer >= {minimum}")


def tokenize(sentences: Sequence[str], tokenizer_json: str | os.PathLike | None = None, *,
             max_tokens: int = 32, pad_id: int = 0, vocab_size: int | None = None) -> dict[str, np.ndarray]:
    """``{"input_ids", "attention_mask"}`` (int32, ``(batch, seq)``) of ``sentences``.

    ``tokenizer_json``: a ``tokenizers`` file (default: MiniLM's), whose token ids must lie below
    ``vocab_size`` if given. Padded with ``pad_id`` to the longest sentence, truncated to
    ``max_tokens`` tokens.
    """
    from laimco_jax.models.checkpoints import load_tokenizer

    check_int("max_tokens", max_tokens, 2)
    if isinstance(sentences, str) or not sentences:
        raise ConfigError(f"sentences={sentences!r} must be a non-empty sequence of strings")
    path = Path(tokenizer_json) if tokenizer_json is not None else minilm_checkpoint_dir() / "tokenizer.json"
    tok = load_tokenizer(path, vocab_size)
    tok.enable_truncation(max_length=max_tokens)
    tok.enable_padding(pad_id=pad_id, pad_token=tok.id_to_token(pad_id) or "[PAD]")
    encodings = tok.encode_batch(list(sentences))
    return {"input_ids": np.array([e.ids for e in encodings], np.int32),
            "attention_mask": np.array([e.attention_mask for e in encodings], np.int32)}


@dataclasses.dataclass(frozen=True, eq=False)
class TheoryModel:
    """A model and its batch of real inputs, as the tables use them.

    ``kind``: ``"fcdnn"``, ``"bert"`` or ``"bart"``; ``config``: the transformer's config (``None``
    for FCDNNs); ``inputs``: FCDNN ``{"x": (batch, 64)}`` (scaled to max‖φ‖ = 1, Assumption 1) or
    ``{"input_ids", "attention_mask"}``; ``input_scale``: the factor applied to the digits;
    ``source``: the model argument or path it came from (``split_profiles`` accepts it for
    transformers); ``pretrained``: real trained weights (False for a random init).
    """

    name: str
    kind: str
    params: PyTree
    inputs: dict[str, np.ndarray]
    config: Any = None
    pretrained: bool = True
    source: str = ""
    input_scale: float = 1.0

    def apply(self, params: PyTree, inputs: dict[str, Any] | None = None) -> jax.Array:
        """f(φ, Ω) of eqs. (12)-(13): ``(batch, m)`` outputs (zeros at padding tokens), see the module docstring."""
        inputs = self.inputs if inputs is None else inputs
        if self.kind == "fcdnn":
            return mlp_forward(params, inputs["x"])
        return masked_outputs(self.hidden(params, inputs), inputs["attention_mask"])

    def hidden(self, params: PyTree, inputs: dict[str, Any] | None = None) -> jax.Array:
        """Transformers: the ``(batch, seq, hidden)`` output states before flattening."""
        from laimco_jax.models import bart, bert

        inputs = self.inputs if inputs is None else inputs
        ids, mask = inputs["input_ids"], inputs["attention_mask"]
        if self.kind == "bert":
            return bert.forward(self.config, params, ids, mask)[0]
        if self.kind == "bart":
            dec = bart.shift_tokens_right(self.config, ids)
            return bart.forward(self.config, params, ids, mask, dec, None)[0]
        raise ValueError(f"hidden states need a transformer; model {self.name!r} is kind={self.kind!r}")

    def with_dtype(self, dtype) -> TheoryModel:
        """A copy with floating parameters (and FCDNN inputs) cast to ``dtype``."""
        if dtype is None:
            return self
        cast = lambda a: jnp.asarray(a, dtype) if jnp.issubdtype(jnp.asarray(a).dtype, jnp.floating) else a  # noqa: E731
        inputs = {"x": np.asarray(self.inputs["x"], dtype)} if self.kind == "fcdnn" else self.inputs
        return dataclasses.replace(self, params=jax.tree.map(cast, self.params), inputs=inputs)


def masked_outputs(hidden: jax.Array, mask: jax.Array) -> jax.Array:
    """``(batch, seq, width)`` states zeroed at padding (``mask`` 0) and flattened to ``(batch, seq·width)``."""
    return (hidden * jnp.asarray(mask, hidden.dtype)[..., None]).reshape(hidden.shape[0], -1)


#: Quick-mode stand-in for bart-base: same structure, tiny widths.
_QUICK_BART = dict(d_model=64, encoder_layers=2, decoder_layers=2, encoder_attention_heads=4,
                   decoder_attention_heads=4, encoder_ffn_dim=256, decoder_ffn_dim=256)


def load_theory_model(model: str | os.PathLike, *, quick: bool = False, seed: int = 0,
                      batch_size: int | None = None, max_tokens: int | None = None,
                      epochs: int | None = None) -> TheoryModel:
    """Load (or train, or randomly initialise) ``model`` and its batch of real inputs.

    ``model``: one of :data:`MODELS` (``fcdnn-8``/``fcdnn-16`` also accepted), a checkpoint directory
    or an FCDNN ``.safetensors`` file. ``batch_size``: inputs (default 256 digits / 8 sentences;
    quick 64 / 4; at most 1,797 digits and ``len(SENTENCES)`` sentences). ``max_tokens``: sentence
    truncation (default 32, quick 16). ``epochs``: FCDNN training epochs (default 100, quick 10).
    ``seed`` drives training, initialisation and the choice of digits.
    """
    from laimco_jax.models import bart, bert, checkpoints, fcdnn

    check_int("seed", seed, 0)
    if not isinstance(model, (str, os.PathLike)):
        raise ConfigError(f"model={model!r} must be one of {list(MODELS)} or a path")
    name = _ALIASES.get(os.fspath(model), os.fspath(model))
    path = Path(name)
    is_fcdnn_file = name not in MODELS and path.is_file() and path.suffix == ".safetensors"
    if name not in MODELS and not path.is_dir() and not is_fcdnn_file:
        raise ConfigError(f"model={os.fspath(model)!r} is not supported; allowed: {list(MODELS)}, a checkpoint "
                          "directory (config.json + model.safetensors) or an FCDNN .safetensors file")
    if name in _FCDNN_NAMES or is_fcdnn_file:
        n_max = len(fcdnn.digits())
        batch = (64 if quick else 256) if batch_size is None else batch_size
        check_int("batch_size", batch, 1)
        if batch > n_max:
            raise ConfigError(f"batch_size={batch} exceeds the {n_max} digits")
        if is_fcdnn_file:
            arch, params = fcdnn.load(path)
            label = path.stem
        else:
            arch = _FCDNN_NAMES[name]
            n_epochs = (10 if quick else 100) if epochs is None else epochs
            check_int("epochs", n_epochs, 1)
            params, _ = fcdnn.train(arch, seed=seed, epochs=n_epochs)
            label = name
        data = fcdnn.digits()
        rows = np.sort(np.random.default_rng(seed).choice(len(data), batch, replace=False))
        x = data[rows]
        scale = 1.0 / float(np.max(np.linalg.norm(x, axis=1)))
        return TheoryModel(label, "fcdnn", params, {"x": (x * scale).astype(np.float32)},
                           pretrained=True, source=os.fspath(model), input_scale=scale)
    batch = (4 if quick else 8) if batch_size is None else batch_size
    check_int("batch_size", batch, 1)
    if batch > len(SENTENCES):
        raise ConfigError(f"batch_size={batch} exceeds the {len(SENTENCES)} sentences of SENTENCES")
    tokens = (16 if quick else 32) if max_tokens is None else max_tokens
    if name == "bart":
        config = bart.BartConfig(**_QUICK_BART) if quick else bart.BART_BASE
        params = bart.init(config, jax.random.key(seed))
        pretrained, tokenizer_json, label = False, None, "bart"
    else:
        directory = minilm_checkpoint_dir() if name == "minilm" else path
        config, params = checkpoints.load_checkpoint(directory)
        pretrained, label = True, "minilm" if name == "minilm" else path.name
        own = directory / "tokenizer.json"
        tokenizer_json = own if own.is_file() else None
    pad_id = config.pad_token_id
    inputs = tokenize(SENTENCES[:batch], tokenizer_json, max_tokens=tokens, pad_id=pad_id,
                      vocab_size=config.vocab_size)
    kind = "bert" if isinstance(config, bert.BertConfig) else "bart"
    return TheoryModel(label, kind, params, inputs, config=config, pretrained=pretrained,
                       source="bart-base" if name == "bart" else os.fspath(model))
