"""Task metrics for users' own data, on a split model pruned at the solver's ratios.

The paper scores pruned models with F1 on SQuAD (BERT) and ROUGE on CNN/DailyMail
(BART). Neither the datasets nor the fine-tuned checkpoints are reachable
offline, so this harness runs on files the user points it at:

* ``evaluate_task("squad", checkpoint, data, ...)``: a ``BertForQuestionAnswering``
  checkpoint directory (``config.json``, ``model.safetensors``, ``tokenizer.json``)
  and a SQuAD v1.1-format JSON file → exact match and F1 (official v1.1 script
  semantics, percent);
* ``evaluate_task("summarization", checkpoint, data, ...)``: a
  ``BartForConditionalGeneration`` checkpoint directory and a JSONL file of
  ``{"article": ..., "highlights": ...}`` objects → ROUGE-1/2/L F-measure
  (rouge-score, stemmed, mean over examples, percent), greedy decoding.

The model is split at layer ``split`` (device: embeddings + blocks ``0..k-1``;
server: the rest and the task head) and each half pruned to its remaining
fraction (ρ = ``rho``, ρ̃ = ``rho_server``) by :mod:`laimco_jax.pruning`.

Submodules: :mod:`~laimco_jax.tasks.metrics`, :mod:`~laimco_jax.tasks.data`,
:mod:`~laimco_jax.tasks.split_model`, :mod:`~laimco_jax.tasks.qa`,
:mod:`~laimco_jax.tasks.summarization`.
"""

from __future__ import annotations

import numbers
import os
from typing import Any

from laimco_jax.params import ConfigError
from laimco_jax.tasks.data import SquadExample, SummaryExample, read_squad, read_summarization
from laimco_jax.tasks.metrics import (
    ROUGE_TYPES,
    exact_match_score,
    f1_score,
    normalize_answer,
    rouge_module,
    rouge_scores,
    squad_scores,
)
from laimco_jax.tasks.split_model import (
    TASKS,
    SplitTaskModel,
    check_choice,
    check_positive_int,
    load_split_model,
)

__all__ = [
    "ROUGE_TYPES", "TASKS", "SplitTaskModel", "SquadExample", "SummaryExample", "evaluate_task",
    "exact_match_score", "f1_score", "load_split_model", "normalize_answer", "read_squad",
    "read_summarization", "rouge_scores", "squad_scores",
]

#: Default input length in tokens per task (capped by the model's position table).
DEFAULT_MAX_LENGTH = {"squad": 384, "summarization": 1024}


def evaluate_task(task: str, checkpoint: str | os.PathLike, data: str | os.PathLike, *,
                  split: int, rho: float, rho_server: float, pruning: str = "magnitude",
                  seed: int = 0, limit: int | None = None, max_length: int | None = None,
                  batch_size: int = 8, max_answer_length: int = 30, doc_stride: int | None = None,
                  max_new_tokens: int = 64, text_key: str = "article",
                  summary_key: str = "highlights", scope: str = "global",
                  tokenizer: str | os.PathLike | None = None,
                  return_predictions: bool = False) -> dict[str, Any]:
    """Score a split model pruned at (ρ, ρ̃) on a local data file.

    Parameters
    ----------
    task: ``"squad"`` or ``"summarization"``.
    checkpoint: Hugging Face directory of a ``BertForQuestionAnswering`` (squad) or
        ``BartForConditionalGeneration`` (summarization), with ``tokenizer.json``
        unless ``tokenizer`` gives its path.
    data: SQuAD v1.1 JSON (squad) or JSONL with ``text_key``/``summary_key`` (summarization).
    split: split point k in ``[0, L]`` (L encoder layers).
    rho, rho_server: remaining fractions ρ (device half) and ρ̃ (server half) in (0, 1].
    pruning: ``"magnitude"`` or ``"random"`` (seeded by ``seed``); ``scope`` ``"global"``/``"layer"``.
    limit: score only the first ``limit`` questions / examples.
    max_length: input tokens (default 384 for squad, 1024 for summarization, capped
        by ``max_position_embeddings``); squad windows overlap by ``doc_stride``
        tokens (default ``min(128, max_length // 2)``).
    max_answer_length: longest answer span in tokens (squad).
    max_new_tokens: longest generated summary in tokens (summarization).

    Returns
    -------
    dict with ``task``, ``n``, the metrics (``exact_match``, ``f1`` or ``rouge1``,
    ``rouge2``, ``rougeL``, percent), ``split``, ``rho``, ``rho_server``,
    ``pruning``, ``seed``, ``kept_device``/``kept_server`` (achieved kept
    fractions of the prunable weights), ``max_length``, and ``predictions``
    (question id -> answer, or the list of summaries) if ``return_predictions``.
    """
    check_choice("task", task, TASKS)
    if limit is not None:
        limit = check_positive_int("limit", limit)
    batch_size = check_positive_int("batch_size", batch_size)
    if task == "squad":
        examples = read_squad(data)
    else:
        rouge_module()  # before hours of decoding, not after
        examples = read_summarization(data, text_key=text_key, summary_key=summary_key)
    examples = examples[:limit] if limit is not None else examples
    model = load_split_model(task, checkpoint, split=split, rho=rho, rho_server=rho_server,
                             pruning_method=pruning, seed=seed, scope=scope, tokenizer=tokenizer)
    positions = model.config.max_position_embeddings
    if max_length is None:
        max_length = min(DEFAULT_MAX_LENGTH[task], positions)
    max_length = check_positive_int("max_length", max_length, positions)
    result: dict[str, Any] = {"task": task}
    if task == "squad":
        from laimco_jax.tasks import qa

        max_answer_length = check_positive_int("max_answer_length", max_answer_length)
        if doc_stride is None:
            doc_stride = min(128, max_length // 2)
        if isinstance(doc_stride, bool) or not isinstance(doc_stride, numbers.Integral) or not (
                0 <= doc_stride < max_length):
            raise ConfigError(f"doc_stride={doc_stride!r} must be an int in [0, {max_length - 1}]")
        predictions = qa.answer(model, examples, max_length=max_length, doc_stride=doc_stride,
                                max_answer_length=max_answer_length, batch_size=batch_size)
        result |= squad_scores({e.id: e.answers for e in examples}, predictions)
    else:
        from laimco_jax.tasks import summarization

        max_new_tokens = check_positive_int("max_new_tokens", max_new_tokens, positions - 1)
        predictions = summarization.summarize(model, [e.text for e in examples],
                                              max_length=max_length,
                                              max_new_tokens=max_new_tokens,
                                              batch_size=batch_size)
        result |= rouge_scores(predictions, [e.summary for e in examples])
    result |= {
        "split": model.split, "rho": model.rho, "rho_server": model.rho_server,
        "pruning": model.pruning, "seed": model.seed, "kept_device": model.kept_device,
        "kept_server": model.kept_server, "max_length": max_length,
    }
    if return_predictions:
        result["predictions"] = predictions
    return result
