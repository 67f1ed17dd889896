"""Task metrics: SQuAD v1.1 exact match / F1 and ROUGE-1/2/L.

The SQuAD functions reproduce the official ``evaluate-v1.1.py``: answers are
normalised (lower case, punctuation removed, the articles a/an/the removed,
whitespace collapsed); a prediction scores the maximum over the gold answers;
EM and F1 are averaged over all questions and reported in percent, a question
without a prediction scoring 0.

ROUGE is ``rouge_score.rouge_scorer.RougeScorer(["rouge1", "rouge2", "rougeL"],
use_stemmer=True)``; we report the mean F-measure over examples, in percent.
"""

from __future__ import annotations

import re
import string
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence

from laimco_jax.params import MissingDependencyError

#: ROUGE variants scored for summarisation.
ROUGE_TYPES = ("rouge1", "rouge2", "rougeL")

_PUNCTUATION = frozenset(string.punctuation)
_ARTICLES = re.compile(r"\b(a|an|the)\b")


def normalize_answer(text: str) -> str:
    """SQuAD v1.1 normalisation: lower, strip punctuation, drop a/an/the, collapse whitespace."""
    text = "".join(ch for ch in text.lower() if ch not in _PUNCTUATION)
    return " ".join(_ARTICLES.sub(" ", text).split())


def exact_match_score(prediction: str, ground_truth: str) -> bool:
    """Whether the normalised strings are equal."""
    return normalize_answer(prediction) == normalize_answer(ground_truth)


def f1_score(prediction: str, ground_truth: str) -> float:
    """Token-level F1 in [0, 1] of the normalised strings (0 when nothing is shared)."""
    pred = normalize_answer(prediction).split()
    gold = normalize_answer(ground_truth).split()
    same = sum((Counter(pred) & Counter(gold)).values())
    if same == 0:
        return 0.0
    precision, recall = same / len(pred), same / len(gold)
    return 2 * precision * recall / (precision + recall)


def max_over_ground_truths(metric, prediction: str, ground_truths: Iterable[str]) -> float:
    """The best score of ``prediction`` against any of the gold answers."""
    return max(float(metric(prediction, truth)) for truth in ground_truths)


def squad_scores(answers: Mapping[str, Sequence[str]], predictions: Mapping[str, str]) -> dict:
    """``{"exact_match", "f1", "n"}`` in percent over the questions of ``answers``.

    ``answers`` maps question id to its gold answer texts; ``predictions`` maps
    question id to the predicted text (a missing id scores 0, as officially).
    """
    if not answers:
        raise ValueError("answers is empty: there are no questions to score")
    em = f1 = 0.0
    for qid, truths in answers.items():
        if qid not in predictions:
            continue
        em += max_over_ground_truths(exact_match_score, predictions[qid], truths)
        f1 += max_over_ground_truths(f1_score, predictions[qid], truths)
    n = len(answers)
    return {"exact_match": 100.0 * em / n, "f1": 100.0 * f1 / n, "n": n}


def rouge_module():
    """``rouge_score.rouge_scorer``, or MissingDependencyError naming the extra that installs it."""
    try:
        from rouge_score import rouge_scorer
    except ImportError:
        raise MissingDependencyError("ROUGE needs the rouge-score package: pip install 'laimco_jax[tasks]'") from None
    return rouge_scorer


def rouge_scores(predictions: Sequence[str], references: Sequence[str]) -> dict:
    """``{"rouge1", "rouge2", "rougeL", "n"}``: mean F-measure in percent (rouge-score, stemmed)."""
    rouge_scorer = rouge_module()
    if len(predictions) != len(references):
        raise ValueError(f"len(predictions)={len(predictions)} must equal "
                         f"len(references)={len(references)}")
    if not predictions:
        raise ValueError("predictions is empty: there are no summaries to score")
    scorer = rouge_scorer.RougeScorer(list(ROUGE_TYPES), use_stemmer=True)
    totals = dict.fromkeys(ROUGE_TYPES, 0.0)
    for prediction, reference in zip(predictions, references):
        scores = scorer.score(reference, prediction)  # (target, prediction)
        for kind in ROUGE_TYPES:
            totals[kind] += scores[kind].fmeasure
    n = len(predictions)
    return {kind: 100.0 * total / n for kind, total in totals.items()} | {"n": n}
