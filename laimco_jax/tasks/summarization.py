"""Abstractive summarisation with a split, pruned ``BartForConditionalGeneration``.

The source is tokenised with the checkpoint's ``tokenizer.json`` (truncated to
``max_length`` tokens), run through the device part (encoder embeddings and
encoder layers ``0..k-1``) and the server part (remaining encoder layers and the
decoder), and decoded greedily: transformers' ``generate(num_beams=1,
do_sample=False, max_new_tokens=N)`` with the checkpoint's ``decoder_start``,
``eos``, ``pad``, ``forced_bos_token_id`` and ``forced_eos_token_id``. Beam
search, ``min_length``, ``no_repeat_ngram_size`` and length penalties from a
checkpoint's generation config are not applied. The output projection is the
tied token table ``shared`` plus ``final_logits_bias``, or an untied ``lm_head``
(the encoder and decoder token tables must still agree: our BART has one).

There is no KV cache: each of the N steps reruns the decoder over a fixed
``N + 1``-token buffer (causal masking makes the unfilled tail irrelevant),
inside one jitted ``while_loop`` that stops when every row has emitted EOS. The
device part and the server's encoder layers run once (:func:`encode`); the steps
call the server part at split ``L`` (decoder only) on the encoder output
(:func:`decode`) — the same composition as the full model.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from laimco_jax.models import bart
from laimco_jax.tasks.split_model import SplitTaskModel


def _logits(server_params, hidden: jax.Array) -> jax.Array:
    head = server_params["lm_head"]
    kernel = head["kernel"] if "kernel" in head else server_params["shared"]["embedding"].T
    return hidden @ kernel + head["bias"]


@functools.partial(jax.jit, static_argnames=("config", "split", "start"))
def encode(config: bart.BartConfig, device_params, server_params, input_ids, attention_mask, *,
           split: int, start: int) -> jax.Array:
    """The encoder output: device part, then the server's encoder layers ``split..L-1``.

    ``server_forward`` also runs the decoder; it gets just the start token here.
    """
    base = {k: v for k, v in server_params.items() if k != "lm_head"}
    hidden = bart.device_forward(config, device_params, input_ids, attention_mask, split=split)
    first = jnp.full((input_ids.shape[0], 1), start, jnp.int32)
    return bart.server_forward(config, base, hidden, attention_mask, first, split=split)[1]


@functools.partial(jax.jit, static_argnames=(
    "config", "max_new_tokens", "start", "eos", "pad", "forced_bos", "forced_eos"))
def decode(config: bart.BartConfig, server_params, memory, attention_mask, *,
           max_new_tokens: int, start: int, eos: tuple[int, ...], pad: int,
           forced_bos: int | None = None, forced_eos: int | None = None) -> jax.Array:
    """Greedy decoder ids ``(B, max_new_tokens + 1)`` from the encoder output ``memory``.

    ``start`` then the argmax tokens, ``pad`` after a row's EOS; the server part
    runs at split ``L`` (decoder only).
    """
    batch = memory.shape[0]
    base = {k: v for k, v in server_params.items() if k != "lm_head"}
    tokens = jnp.full((batch, max_new_tokens + 1), pad, jnp.int32).at[:, 0].set(start)
    eos_ids = jnp.asarray(eos, jnp.int32)

    def step(state):
        t, tokens, done = state
        out, _ = bart.server_forward(config, base, memory, attention_mask, tokens,
                                     split=config.num_layers)
        nxt = jnp.argmax(_logits(server_params, out[:, t - 1]), axis=-1).astype(jnp.int32)
        if forced_bos is not None:
            nxt = jnp.where(t == 1, forced_bos, nxt)
        if forced_eos is not None:
            nxt = jnp.where(t == max_new_tokens, forced_eos, nxt)
        nxt = jnp.where(done, pad, nxt)
        tokens = tokens.at[:, t].set(nxt)
        return t + 1, tokens, done | jnp.isin(nxt, eos_ids)

    def more(state):
        t, _, done = state
        return (t <= max_new_tokens) & ~jnp.all(done)

    done = jnp.zeros(batch, bool)
    return jax.lax.while_loop(more, step, (jnp.int32(1), tokens, done))[1]


def greedy_generate(config: bart.BartConfig, device_params, server_params, input_ids,
                    attention_mask, *, split: int, max_new_tokens: int, start: int,
                    eos: tuple[int, ...], pad: int, forced_bos: int | None = None,
                    forced_eos: int | None = None) -> jax.Array:
    """Decoder ids ``(B, max_new_tokens + 1)``: ``start`` then greedy tokens, ``pad`` after EOS.

    As transformers' ``generate(num_beams=1, do_sample=False, max_new_tokens=...)``
    with ``forced_bos_token_id``/``forced_eos_token_id`` (None: not forced).
    """
    memory = encode(config, device_params, server_params, input_ids, attention_mask,
                    split=split, start=start)
    return decode(config, server_params, memory, attention_mask, max_new_tokens=max_new_tokens,
                  start=start, eos=tuple(eos), pad=pad, forced_bos=forced_bos,
                  forced_eos=forced_eos)


def generate_ids(model: SplitTaskModel, texts: Sequence[str], *, max_length: int,
                 max_new_tokens: int, batch_size: int = 8) -> list[list[int]]:
    """Generated ids per text (no decoder start; cut before the first EOS)."""
    g = model.generation
    model.tokenizer.enable_truncation(max_length)
    encodings = [model.tokenizer.encode(text) for text in texts]
    model.tokenizer.no_truncation()
    length = max(len(e.ids) for e in encodings)
    out = []
    for lo in range(0, len(encodings), batch_size):
        chunk = encodings[lo:lo + batch_size]
        ids = np.full((batch_size, length), model.config.pad_token_id, np.int32)
        mask = np.zeros_like(ids)
        for r, e in enumerate(chunk):
            ids[r, :len(e.ids)], mask[r, :len(e.ids)] = e.ids, 1
        tokens = np.asarray(greedy_generate(
            model.config, model.device_params, model.server_params, ids, mask,
            split=model.split, max_new_tokens=max_new_tokens,
            start=g["decoder_start_token_id"], eos=g["eos_token_id"], pad=g["pad_token_id"],
            forced_bos=g["forced_bos_token_id"], forced_eos=g["forced_eos_token_id"]))
        for row in tokens[:len(chunk), 1:].tolist():
            cut = next((n for n, tok in enumerate(row) if tok in g["eos_token_id"]), len(row))
            out.append(row[:cut])
    return out


def summarize(model: SplitTaskModel, texts: Sequence[str], *, max_length: int,
              max_new_tokens: int = 64, batch_size: int = 8) -> list[str]:
    """Greedy summaries of ``texts``, detokenised (special tokens skipped)."""
    ids = generate_ids(model, texts, max_length=max_length, max_new_tokens=max_new_tokens,
                       batch_size=batch_size)
    return [model.tokenizer.decode(row, skip_special_tokens=True) for row in ids]
