"""Readers for users' local evaluation files: SQuAD v1.1 JSON and summarisation JSONL.

Malformed input raises :class:`~laimco_jax.params.ConfigError` naming the file and where
in it (JSON line and column, the JSONL line, or the SQuAD path ``data[i].paragraphs[j].qas[k]``).
"""

from __future__ import annotations

import dataclasses
import json
import os
from typing import Any

from laimco_jax.models.checkpoints import read_json_object
from laimco_jax.params import ConfigError


@dataclasses.dataclass(frozen=True)
class SquadExample:
    """One SQuAD question: its id, question, context and gold answers (texts and character starts)."""

    id: str
    question: str
    context: str
    answers: tuple[str, ...]
    answer_starts: tuple[int | None, ...]


@dataclasses.dataclass(frozen=True)
class SummaryExample:
    """One summarisation pair: the source text and its reference summary."""

    text: str
    summary: str
    line: int


def _check_file(path: str | os.PathLike, name: str = "data") -> str:
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise ConfigError(f"{name}={path!r}: no such file")
    return path


def _need(obj: Any, key: str, kind: type | tuple[type, ...], where: str, path: str) -> Any:
    if not isinstance(obj, dict):
        raise ConfigError(f"{path}: {where} must be a JSON object, got {type(obj).__name__}")
    if key not in obj:
        raise ConfigError(f"{path}: {where} has no {key!r} key")
    value = obj[key]
    if not isinstance(value, kind) or isinstance(value, bool):
        names = " or ".join(k.__name__ for k in (kind if isinstance(kind, tuple) else (kind,)))
        raise ConfigError(f"{path}: {where}.{key} must be a {names}, got {type(value).__name__}")
    return value


def read_squad(path: str | os.PathLike) -> list[SquadExample]:
    """The questions of a SQuAD v1.1-format file (``data → paragraphs → context, qas``).

    Every question needs ``id``, ``question`` and a non-empty ``answers`` list of
    ``{"text", "answer_start"}`` (SQuAD v2 unanswerable questions are rejected:
    v1.1 scoring has no answer for them). Question ids must be unique.
    """
    path = _check_file(path)
    raw = read_json_object(path)
    examples: list[SquadExample] = []
    seen: set[str] = set()
    for i, article in enumerate(_need(raw, "data", list, "the top level", path)):
        for j, paragraph in enumerate(_need(article, "paragraphs", list, f"data[{i}]", path)):
            where = f"data[{i}].paragraphs[{j}]"
            context = _need(paragraph, "context", str, where, path)
            for k, qa in enumerate(_need(paragraph, "qas", list, where, path)):
                q_where = f"{where}.qas[{k}]"
                qid = str(_need(qa, "id", (str, int), q_where, path))
                question = _need(qa, "question", str, q_where, path)
                answers = _need(qa, "answers", list, q_where, path)
                if not answers:
                    raise ConfigError(f"{path}: {q_where} (id {qid!r}) has no answers; SQuAD v2 "
                                      "unanswerable questions are not supported (v1.1 scoring)")
                texts = tuple(_need(a, "text", str, f"{q_where}.answers[{n}]", path)
                              for n, a in enumerate(answers))
                starts = tuple(a.get("answer_start") for a in answers)
                if qid in seen:
                    raise ConfigError(f"{path}: {q_where} repeats question id {qid!r}")
                seen.add(qid)
                examples.append(SquadExample(qid, question, context, texts, starts))
    if not examples:
        raise ConfigError(f"{path}: no questions found")
    return examples


def read_summarization(path: str | os.PathLike, *, text_key: str = "article",
                       summary_key: str = "highlights") -> list[SummaryExample]:
    """Pairs from a JSONL file: one JSON object per line with string ``text_key`` and ``summary_key``.

    Defaults follow CNN/DailyMail (``article``, ``highlights``); blank lines are skipped.
    """
    path = _check_file(path)
    examples = []
    with open(path, "rb") as f:
        for number, data in enumerate(f, start=1):
            try:
                line = data.decode("utf-8")
            except UnicodeDecodeError as err:
                raise ConfigError(f"{path}: line {number}: not UTF-8 text (byte {err.start}: {err.reason})") from None
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as err:
                raise ConfigError(f"{path}: line {number}: malformed JSON at column {err.colno}: "
                                  f"{err.msg}") from None
            where = f"line {number}"
            text = _need(obj, text_key, str, where, path)
            summary = _need(obj, summary_key, str, where, path)
            examples.append(SummaryExample(text, summary, number))
    if not examples:
        raise ConfigError(f"{path}: no examples found (one JSON object per line expected)")
    return examples
