"""Pruning masks: exact kept fractions per half, magnitude order, configurable prunable tensors."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from laimco_jax import pruning
from laimco_jax.models import bart, bert

CONFIG = bert.BertConfig(vocab_size=60, hidden_size=24, num_hidden_layers=3, num_attention_heads=3,
                         intermediate_size=40, max_position_embeddings=16)


@pytest.fixture(scope="module")
def params():
    return bert.init(CONFIG, jax.random.key(0))


def kernels(tree):
    """Independent reference: the 2-D ``kernel`` arrays of a parameter tree, by path."""
    return {jax.tree_util.keystr(p): np.asarray(x) for p, x in jax.tree_util.tree_leaves_with_path(tree)
            if jax.tree_util.keystr(p).endswith("['kernel']")}


def masks_by_path(mask):
    return {jax.tree_util.keystr(p): np.asarray(m) for p, m in jax.tree_util.tree_leaves_with_path(mask)}


@pytest.mark.parametrize("rho", [0.0, 0.137, 0.5, 0.9, 1.0])
def test_global_magnitude_keeps_the_largest_weights_at_the_exact_fraction(params, rho):
    mask = masks_by_path(pruning.magnitude_mask(params, rho))
    ref = kernels(params)
    n = sum(w.size for w in ref.values())
    kept = np.concatenate([np.abs(w[mask[k]]) for k, w in ref.items()])
    dropped = np.concatenate([np.abs(w[~mask[k]]) for k, w in ref.items()])
    assert abs(kept.size - rho * n) <= 1
    if kept.size and dropped.size:
        assert kept.min() >= dropped.max()
    assert all(m.all() for k, m in mask.items() if k not in ref)  # biases, LayerNorm, embeddings kept


def test_layer_magnitude_keeps_the_largest_in_each_tensor(params):
    rho = 0.3
    mask = masks_by_path(pruning.magnitude_mask(params, rho, scope="layer"))
    ref = kernels(params)
    total = 0
    for k, w in ref.items():
        m = mask[k]
        assert abs(m.sum() - rho * w.size) <= 1
        assert np.abs(w[m]).min() >= np.abs(w[~m]).max()
        total += m.sum()
    assert abs(total - rho * sum(w.size for w in ref.values())) <= 1


def test_device_and_server_halves_keep_their_own_fractions(params):
    for k in range(CONFIG.num_layers + 1):
        device, server = bert.split_params(CONFIG, params, k)
        for method in pruning.METHODS:
            dm, sm = pruning.split_masks(device, server, 0.25, 0.8, method=method,
                                         key=jax.random.key(k))
            for half, mask, rho in ((device, dm, 0.25), (server, sm, 0.8)):
                n = sum(w.size for w in kernels(half).values())
                kept = sum(masks_by_path(mask)[p].sum() for p in kernels(half))
                assert abs(kept - rho * n) <= 1
                assert pruning.kept_count(mask, half) == (kept, n)


def test_random_masks_are_seeded_and_uniform(params):
    a = pruning.random_mask(params, 0.4, jax.random.key(1))
    b = pruning.random_mask(params, 0.4, jax.random.key(1))
    c = pruning.random_mask(params, 0.4, jax.random.key(2))
    jax.tree.map(np.testing.assert_array_equal, a, b)
    assert any(not np.array_equal(x, y) for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(c)))
    big = masks_by_path(a)["['layers_0']['ffn']['fc1']['kernel']"]  # 960 weights
    assert abs(big.mean() - 0.4) < 0.06


def test_random_masks_need_only_shapes():
    shapes = bert.param_shapes(CONFIG)
    kept, n = pruning.kept_count(pruning.random_mask(shapes, 0.5, jax.random.key(0)), shapes)
    assert abs(kept - 0.5 * n) <= 1


def test_prunable_kinds_are_configurable(params):
    with_bias = masks_by_path(pruning.magnitude_mask(params, 0.0, prunable=("kernel", "bias")))
    assert not with_bias["['layers_0']['attn']['q']['bias']"].any()
    assert with_bias["['embeddings']['word']['embedding']"].all()
    only_pooler = pruning.magnitude_mask(
        params, 0.0, prunable=lambda path, leaf: jax.tree_util.keystr(path).startswith("['pooler']"))
    assert pruning.kept_count(only_pooler, params) == (sum(w.size for w in kernels(params).values())
                                                       - CONFIG.hidden_size**2, sum(
        w.size for w in kernels(params).values()))
    with pytest.raises(ValueError, match=r"unknown kinds \['weights'\]"):
        pruning.magnitude_mask(params, 0.5, prunable=("weights",))


def test_apply_mask_zeroes_exactly_the_pruned_weights_and_the_model_runs(params):
    mask = pruning.magnitude_mask(params, 0.5)
    pruned = pruning.apply_mask(params, mask)
    for w, p, m in zip(jax.tree.leaves(params), jax.tree.leaves(pruned), jax.tree.leaves(mask)):
        np.testing.assert_array_equal(np.asarray(p), np.where(m, np.asarray(w), 0))
    last, _ = bert.forward(CONFIG, pruned, jnp.ones((1, 5), jnp.int32))
    assert np.isfinite(np.asarray(last)).all()


def test_tied_bart_table_is_pruned_once_with_the_device_mask():
    config = bart.BartConfig(vocab_size=40, d_model=16, encoder_layers=2, decoder_layers=1,
                             encoder_attention_heads=2, decoder_attention_heads=2,
                             encoder_ffn_dim=24, decoder_ffn_dim=24, max_position_embeddings=16)
    params = bart.init(config, jax.random.key(0))
    device, server = bart.split_params(config, params, 1)
    dm, sm = pruning.split_masks(device, server, 0.3, 0.9, prunable=("kernel", "embedding"))
    np.testing.assert_array_equal(sm["shared"]["embedding"], dm["shared"]["embedding"])
    assert abs(dm["shared"]["embedding"].mean() - 0.3) < 0.1


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(rho=1.5), r"rho=1.5 must be a remaining fraction in \[0, 1\]"),
        (dict(rho_server=-0.1), r"rho_server=-0.1"),
        (dict(method="taylor"), r"method='taylor' is not supported; allowed: \['magnitude', 'random'\]"),
        (dict(scope="row"), r"scope='row' is not supported; allowed: \['global', 'layer'\]"),
        (dict(method="random"), r"needs a jax.random key"),
    ],
)
def test_bad_arguments_are_rejected(params, kwargs, message):
    device, server = bert.split_params(CONFIG, params, 1)
    args = dict(rho=0.5, rho_server=0.5) | kwargs
    with pytest.raises(ValueError, match=message):
        pruning.split_masks(device, server, args.pop("rho"), args.pop("rho_server"), **args)
