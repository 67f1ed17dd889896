"""The ``*-published`` presets (issue 13, item 3): the paper's stated totals, split like the measured profiles."""

import tomllib

import pytest

from laimco_jax.models import bart, bert
from laimco_jax.params import (
    MEASURED_SPECS,
    MODEL_SPECS,
    PUBLISHED_TOTALS,
    make_problem,
)

#: Sec. VI-A of the paper: parameters and GFLOPs of one inference.
PAPER = {"bert-base-published": (109.48e6, 21.77e9), "bart-base-published": (139.42e6, 6.44e9)}


@pytest.mark.parametrize("model", sorted(PAPER))
def test_config_prints_the_papers_totals(model, cli):
    code, out, err = cli("config", "--model", model)
    assert code == 0, err
    fields = tomllib.loads(out)["model"]
    params, flops = PAPER[model]
    assert fields["params_device"] + fields["params_server"] == pytest.approx(params, rel=1e-12)
    assert fields["flops_device"] + fields["flops_server"] == pytest.approx(flops, rel=1e-12)


@pytest.mark.parametrize("name", sorted(PUBLISHED_TOTALS))
def test_every_split_keeps_the_measured_proportions(name):
    measured, published = MEASURED_SPECS[name], MODEL_SPECS[name + "-published"]
    params, flops = PAPER[name + "-published"]
    assert len(published.splits) == len(measured.splits) == measured.num_layers + 1
    for k, (m, p) in enumerate(zip(measured.splits, published.splits)):
        fields = make_problem("paper", name + "-published", split=k).model
        assert float(fields.params_device + fields.params_server) == pytest.approx(params, rel=1e-12)
        assert float(fields.flops_device + fields.flops_server) == pytest.approx(flops, rel=1e-12)
        for part in ("params", "flops"):
            device, server = f"{part}_device", f"{part}_server"
            assert p[device] * (m[device] + m[server]) == pytest.approx(m[device] * (p[device] + p[server]), rel=1e-12)
            assert (p[device] == 0) == (m[device] == 0) and (p[server] == 0) == (m[server] == 0)  # absent stays absent
        assert p["embedding_bits"] == m["embedding_bits"]


def _linear_macs_per_token(hidden: int, ffn: int) -> int:
    """Multiply-accumulates of a transformer block's linear layers per token: Q, K, V, O and the FFN."""
    return 4 * hidden * hidden + 2 * hidden * ffn


def test_the_papers_flops_follow_two_conventions():
    """docs/theory.md#flop-conventions: BERT's 21.77 G is 2 FLOPs/MAC (21.74 G); BART's 6.44 G is MACs (6.43 G)."""
    tokens = 128
    c = bert.BERT_BASE
    bert_flops = 2 * c.num_hidden_layers * tokens * _linear_macs_per_token(c.hidden_size, c.intermediate_size)
    assert bert_flops == pytest.approx(21.74e9, rel=1e-3) and bert_flops == pytest.approx(21.77e9, rel=2e-3)
    c = bart.BART_BASE
    d = c.d_model
    encoder = c.encoder_layers * tokens * _linear_macs_per_token(d, c.encoder_ffn_dim)
    # one decoder step: self-attention and FFN on one token, cross-attention Q, O on it and K, V on the 128 encoder outputs
    decoder = c.decoder_layers * (_linear_macs_per_token(d, c.decoder_ffn_dim) + 2 * d * d + 2 * tokens * d * d)
    bart_macs = encoder + decoder + d * c.vocab_size
    assert bart_macs == pytest.approx(6.43e9, rel=1e-3) and bart_macs == pytest.approx(6.44e9, rel=2e-3)
