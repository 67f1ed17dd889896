"""Extractive question answering with a split, pruned ``BertForQuestionAnswering``.

Question and context are tokenised as a pair with the checkpoint's
``tokenizer.json``; a context longer than ``max_length`` is cut into windows
that overlap by ``doc_stride`` tokens (the question is repeated in each), as
transformers' ``run_qa`` does. Each window runs device part → server part →
``qa_outputs`` (start/end logits). The answer is the span of context tokens
``i <= j < i + max_answer_length`` maximising ``start[i] + end[j]`` over all
windows (an exhaustive search, ties to the earliest window, start, end), and
its text is the context slice the token offsets give. A question too long to
leave room for any context in ``max_length`` is cut together with the context
(``longest_first``, one window).
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Sequence

import jax
import numpy as np

from laimco_jax.models import bert
from laimco_jax.tasks.data import SquadExample
from laimco_jax.tasks.split_model import SplitTaskModel


@dataclasses.dataclass(frozen=True)
class Feature:
    """One tokenised window of one example."""

    example: int
    ids: np.ndarray
    type_ids: np.ndarray
    offsets: list[tuple[int, int]]
    context_mask: np.ndarray  # True on context tokens


def _window(encoding, example: int) -> Feature:
    return Feature(example, np.asarray(encoding.ids, np.int32), np.asarray(encoding.type_ids, np.int32),
                   list(encoding.offsets), np.array([s == 1 for s in encoding.sequence_ids]))


def tokenize(tokenizer, examples: Sequence[SquadExample], *, max_length: int,
             doc_stride: int) -> list[Feature]:
    """Windows of ``(question, context)`` pairs, at most ``max_length`` tokens each."""
    features = []
    for n, example in enumerate(examples):
        tokenizer.enable_truncation(max_length, stride=doc_stride, strategy="only_second")
        try:
            encoding = tokenizer.encode(example.question, example.context)
        except Exception:  # question too long to leave room for the context: cut both
            tokenizer.enable_truncation(max_length, strategy="longest_first")
            encoding = tokenizer.encode(example.question, example.context)
        features.extend(_window(e, n) for e in [encoding, *encoding.overflowing])
    tokenizer.no_truncation()
    return features


@functools.partial(jax.jit, static_argnames=("config", "split"))
def qa_logits(config: bert.BertConfig, device_params, server_params, input_ids, attention_mask,
              token_type_ids, *, split: int) -> tuple[jax.Array, jax.Array]:
    """``(start_logits, end_logits)`` ``(B, T)``: device part, server part, then ``qa_outputs``.

    ``server_params`` holds the server half and the head under ``"qa_outputs"``.
    """
    hidden = bert.device_forward(config, device_params, input_ids, attention_mask,
                                 token_type_ids, split=split)
    base = {k: v for k, v in server_params.items() if k != "qa_outputs"}
    last, _ = bert.server_forward(config, base, hidden, attention_mask, split=split)
    head = server_params["qa_outputs"]
    logits = last @ head["kernel"] + head["bias"]
    return logits[..., 0], logits[..., 1]


def best_span(start: np.ndarray, end: np.ndarray, context_mask: np.ndarray,
              max_answer_length: int) -> tuple[int, int, float] | None:
    """``(i, j, start[i] + end[j])`` maximal over context tokens with ``i <= j < i + max_answer_length``."""
    n = len(context_mask)
    start, end = np.asarray(start[:n], np.float64), np.asarray(end[:n], np.float64)
    i, j = np.indices((n, n))
    valid = (j >= i) & (j - i < max_answer_length) & context_mask[:, None] & context_mask[None, :]
    if not valid.any():
        return None
    scores = np.where(valid, start[:, None] + end[None, :], -np.inf)
    flat = int(np.argmax(scores))
    return flat // n, flat % n, float(scores.flat[flat])


def feature_logits(model: SplitTaskModel, features: Sequence[Feature], *,
                   batch_size: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """Start/end logits per feature (unpadded), in fixed-shape batches (one compile)."""
    length = max(len(f.ids) for f in features)
    out = []
    for lo in range(0, len(features), batch_size):
        chunk = features[lo:lo + batch_size]
        ids = np.zeros((batch_size, length), np.int32)
        types, mask = np.zeros_like(ids), np.zeros_like(ids)
        for r, f in enumerate(chunk):
            ids[r, :len(f.ids)], types[r, :len(f.ids)], mask[r, :len(f.ids)] = f.ids, f.type_ids, 1
        start, end = qa_logits(model.config, model.device_params, model.server_params,
                               ids, mask, types, split=model.split)
        start, end = np.asarray(start), np.asarray(end)
        out.extend((start[r, :len(f.ids)], end[r, :len(f.ids)]) for r, f in enumerate(chunk))
    return out


def answer(model: SplitTaskModel, examples: Sequence[SquadExample], *, max_length: int = 384,
           doc_stride: int = 128, max_answer_length: int = 30,
           batch_size: int = 8) -> dict[str, str]:
    """Predicted answer text per question id."""
    features = tokenize(model.tokenizer, examples, max_length=max_length, doc_stride=doc_stride)
    best: dict[int, tuple[float, str]] = {}
    for f, (start, end) in zip(features, feature_logits(model, features, batch_size=batch_size)):
        span = best_span(start, end, f.context_mask, max_answer_length)
        if span is None:
            continue
        i, j, score = span
        if f.example not in best or score > best[f.example][0]:
            context = examples[f.example].context
            best[f.example] = (score, context[f.offsets[i][0]:f.offsets[j][1]])
    return {e.id: best.get(n, (0.0, ""))[1] for n, e in enumerate(examples)}
