"""Section III on real and toy weights: Theorem 3.1, the Laplace/Gaussian fits, pruning distortion, G.

The bounds (laimco_jax.bounds), the loading (laimco_jax.models.theory_models) and the tables and their
files (laimco_jax.experiments.theory).
"""

import json
import math
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.stats

from laimco_jax import bounds, pruning
from laimco_jax.experiments import plots, theory
from laimco_jax.models import fcdnn, theory_models
from laimco_jax.params import ConfigError

RATIOS = (0.05, 0.1, 0.2, 0.35, 0.5, 0.65, 0.8, 0.9, 0.95, 1.0)
forward = jax.jit(bounds.mlp_forward)


def mlp_params(widths, key, *, bias=True, dtype=jnp.float64, bias_scale=0.1):
    """Random ReLU MLP ``{"dense_i": {"kernel", "bias"}}`` with Glorot-ish kernels."""
    params = {}
    for i, (n_in, n_out) in enumerate(zip(widths[:-1], widths[1:])):
        key, k1, k2 = jax.random.split(key, 3)
        layer = {"kernel": jax.random.normal(k1, (n_in, n_out), dtype) * math.sqrt(2.0 / (n_in + n_out))}
        layer["bias"] = (jax.random.normal(k2, (n_out,), dtype) * bias_scale if bias
                         else jnp.zeros((n_out,), dtype))
        params[f"dense_{i}"] = layer
    return params


def unit_ball_inputs(key, n, dim, dtype=jnp.float64):
    """Inputs with ‖φ‖ ≤ 1 (Assumption 1), some exactly on the sphere, some tiny."""
    x = jax.random.normal(key, (n, dim), dtype)
    radii = jnp.concatenate([jnp.ones(n // 2), jnp.linspace(1e-3, 1.0, n - n // 2)]).astype(dtype)
    return x / jnp.linalg.norm(x, axis=1, keepdims=True) * radii[:, None]


def digits_model(params, n=48, dtype=np.float64):
    x = fcdnn.digits()[:n].astype(dtype)
    x = x / np.max(np.linalg.norm(x, axis=1))
    return theory_models.TheoryModel("toy", "fcdnn", params, {"x": x}, input_scale=1.0)


@pytest.fixture(scope="module")
def fcdnn8_params():
    return fcdnn.init("fcdnn-8", jax.random.key(0))


@pytest.fixture(scope="module")
def toy_table():
    """bound_check_table on a small bias-free ReLU net (float64) over digits scaled to ‖φ‖ ≤ 1."""
    params = mlp_params((64, 48, 24, 48, 64), jax.random.key(3), bias=False)
    return theory.bound_check_table(digits_model(params), ratios=RATIOS, iterations=30)


# ----------------------------------------------------------------------------- Theorem 3.1


@pytest.mark.parametrize("widths", [(8, 5), (16, 32, 8), (12, 6, 6, 6, 6, 6, 6, 6, 3)])
def test_theorem31_holds_on_every_sample_without_biases(widths):
    key = jax.random.key(len(widths))
    params = mlp_params(widths, key, bias=False)
    x = unit_ball_inputs(jax.random.key(7), 40, widths[0])
    y0 = forward(params, x)
    for method in ("magnitude", "random"):
        for ratio in RATIOS:
            mask = (pruning.magnitude_mask(params, ratio) if method == "magnitude"
                    else pruning.random_mask(params, ratio, jax.random.key(11)))
            pruned = pruning.apply_mask(params, mask)
            dist = np.linalg.norm(np.asarray(forward(pruned, x) - y0), axis=1)
            b = bounds.fcdnn_bounds(params, pruned, x)
            assert bool(b["bias_free"]) and np.all(b["lemma31_holds"])
            assert np.all(dist <= b["data_bound"] * (1 + 1e-12) + 1e-15), (method, ratio)
            assert np.all(b["data_bound"] <= b["theorem_bound"] * (1 + 1e-12) + 1e-15), (method, ratio)
            assert np.all(dist <= b["theorem_bound"] * (1 + 1e-12) + 1e-15), (method, ratio)


def test_theorem31_is_tight_for_one_layer():
    # f = Wφ: ‖(W − Ŵ)φ‖ ≤ ‖W − Ŵ‖_F, equality when ΔW has rank one along φ.
    w = np.zeros((3, 2))
    w[0] = [3.0, -4.0]
    w[1] = [0.1, 0.2]
    params = {"dense_0": {"kernel": jnp.asarray(w)}}
    pruned = {"dense_0": {"kernel": jnp.asarray(w * np.array([[0.0], [1.0], [1.0]]))}}
    x = jnp.array([[1.0, 0.0, 0.0]])
    dist = float(jnp.linalg.norm(bounds.mlp_forward(params, x) - forward(pruned, x)))
    b = bounds.fcdnn_bounds(params, pruned, x)
    assert dist == pytest.approx(5.0) and float(b["theorem_bound"]) == pytest.approx(5.0)


def test_bias_safe_bound_holds_with_biases_and_flags_lemma31():
    # With (unpruned) biases the data-dependent bound is still a theorem; Lemma 3.1 may fail.
    params = mlp_params((16, 24, 24, 8), jax.random.key(5), bias=True, bias_scale=3.0)
    x = unit_ball_inputs(jax.random.key(6), 30, 16)
    y0 = forward(params, x)
    for ratio in RATIOS:
        pruned = pruning.apply_mask(params, pruning.random_mask(params, ratio, jax.random.key(2)))
        b = bounds.fcdnn_bounds(params, pruned, x)
        dist = np.linalg.norm(np.asarray(forward(pruned, x) - y0), axis=1)
        assert not bool(b["bias_free"])
        assert np.all(dist <= b["data_bound"] * (1 + 1e-12) + 1e-15)
        # where Lemma 3.1 holds, the paper's bound (19) holds
        held = b["lemma31_holds"]
        assert np.all(dist[held] <= b["theorem_bound"] * (1 + 1e-12) + 1e-15)
    # large biases break Lemma 3.1 on small inputs
    assert not np.all(b["lemma31_holds"])


def test_mlp_forward_matches_fcdnn(fcdnn8_params):
    params = fcdnn8_params
    x = jnp.asarray(fcdnn.digits()[:5])
    np.testing.assert_allclose(forward(params, x), fcdnn.forward("fcdnn-8", params, x), rtol=1e-5, atol=1e-6)


def test_table_theorem_columns_bias_free(toy_table):
    fc = toy_table
    assert fc["theorem_applies"].all() and fc["bias_free"].all()
    assert (fc["theorem_holds_fraction"] == 1).all(), "Theorem 3.1 violated on a bias-free net"
    assert (fc["lemma31_holds_fraction"] == 1).all() and (fc["data_bound_holds_fraction"] == 1).all()
    assert (fc["data_bound_mean"] <= fc["theorem_bound"] * (1 + 1e-12)).all()


# ----------------------------------------------------------------------------- pruning distortion


def test_magnitude_beats_random_at_every_ratio(toy_table):
    mag = toy_table[toy_table.pruning == "magnitude"].set_index("ratio")
    rnd = toy_table[toy_table.pruning == "random"].set_index("ratio")
    below = [r for r in RATIOS if r < 1]
    assert (mag.loc[below, "param_distortion"] < rnd.loc[below, "param_distortion"]).all()
    assert mag.loc[1.0, "param_distortion"] == rnd.loc[1.0, "param_distortion"] == 0.0
    np.testing.assert_allclose(mag["kept_fraction"], mag.index, atol=1e-3)


def test_distortion_zero_at_one_and_grows_as_ratio_falls(toy_table):
    for method, part in toy_table.groupby("pruning"):
        part = part.sort_values("ratio")
        last = part.iloc[-1]
        assert last.ratio == 1.0
        assert last.param_distortion == 0 and last.output_distortion_mean == 0
        assert last.first_order_distortion_mean == 0 and last.G_bound == 0
        assert np.all(np.diff(part["param_distortion"]) < 0), method
        out = part["output_distortion_mean"].to_numpy()
        assert np.all(out[:-1] > 0)
        assert out[0] > out[len(out) // 2] > out[-2] > 0, method  # 0.05 > 0.5 > 0.95


def test_first_order_bounded_by_G(toy_table):
    # ‖J_φ Δ‖ ≤ σ_max(J_φ)‖Δ‖ ≤ G‖Δ‖ exactly (G converged to ~1e-6 here).
    assert (toy_table["first_order_distortion_mean"] <= toy_table["G_bound"] * (1 + 1e-6)).all()
    near = toy_table[toy_table.ratio >= 0.95]
    # first-order (21) is accurate for small pruning
    np.testing.assert_allclose(near["first_order_distortion_mean"], near["output_distortion_mean"], rtol=0.25)


# ----------------------------------------------------------------------------- G of Prop. 3.2


def test_G_matches_exact_jacobian_norm():
    from jax.flatten_util import ravel_pytree

    params = mlp_params((6, 10, 10, 4), jax.random.key(9), bias=True)
    x = unit_ball_inputs(jax.random.key(10), 6, 6)
    est = bounds.jacobian_spectral_norms(bounds.mlp_forward, params, x, pruning.prunable_paths(params), iterations=100,
                                        seed=1)
    kernels = {k: v["kernel"] for k, v in params.items()}
    flat, unravel = ravel_pytree(kernels)

    def f(theta, xi):
        ks = unravel(theta)
        return bounds.mlp_forward({k: {"kernel": ks[k], "bias": params[k]["bias"]} for k in params}, xi[None])[0]

    jacobians = np.asarray(jax.jit(jax.vmap(jax.jacfwd(f), in_axes=(None, 0)))(flat, x))
    exact = np.linalg.norm(jacobians, ord=2, axis=(1, 2))
    np.testing.assert_allclose(est, exact, rtol=1e-2)
    assert np.all(est <= exact * (1 + 1e-9))  # power iteration converges from below


def test_G_paths_are_checked():
    params = mlp_params((3, 2), jax.random.key(0))
    x = unit_ball_inputs(jax.random.key(1), 2, 3)
    with pytest.raises(ConfigError, match="not leaves"):
        bounds.jacobian_spectral_norms(bounds.mlp_forward, params, x, [("nope",)])
    with pytest.raises(ConfigError, match="selects no leaf"):
        bounds.jacobian_spectral_norms(bounds.mlp_forward, params, x, [])
    with pytest.raises(ConfigError, match="iterations=0"):
        bounds.jacobian_spectral_norms(bounds.mlp_forward, params, x, iterations=0)


# ----------------------------------------------------------------------------- Fig. 2 fits


@pytest.mark.parametrize("law, cdf", [("laplace", bounds.laplace_cdf), ("norm", bounds.gaussian_cdf)])
def test_cdfs_and_ks_statistic_agree_with_scipy(law, cdf):
    x = np.sort(np.random.default_rng(3).standard_t(4, size=500) * 0.1 + 0.02)
    law = getattr(scipy.stats, law)
    np.testing.assert_allclose(cdf(x, 0.01, 0.07), law.cdf(x, 0.01, 0.07), rtol=1e-12, atol=1e-300)
    expected = scipy.stats.kstest(x, law.cdf, args=(0.01, 0.07)).statistic
    assert bounds.ks_statistic(x, lambda v: cdf(v, 0.01, 0.07)) == pytest.approx(expected, rel=1e-12)


def test_fits_agree_with_scipy():
    rng = np.random.default_rng(0)
    w = rng.laplace(0.01, 0.05, size=(120, 101))
    tm = theory_models.TheoryModel("toy", "fcdnn", {"dense_0": {"kernel": w, "bias": np.zeros(101)}}, {"x": np.zeros((1, 120))})
    table = theory.weight_fit_table(tm, max_weights=0, bins=31)
    row = table.iloc[0]
    flat = w.ravel()
    loc, scale = scipy.stats.laplace.fit(flat)
    assert row.laplace_loc == pytest.approx(loc, rel=1e-9) and row.laplace_scale == pytest.approx(scale, rel=1e-9)
    assert row.laplace_mean_loglik == pytest.approx(np.mean(scipy.stats.laplace.logpdf(flat, loc, scale)), rel=1e-9)
    assert row.laplace_ks == pytest.approx(scipy.stats.kstest(flat, "laplace", args=(loc, scale)).statistic, rel=1e-9)
    mu, sd = scipy.stats.norm.fit(flat)
    assert row.gaussian_loc == pytest.approx(mu, rel=1e-9) and row.gaussian_scale == pytest.approx(sd, rel=1e-9)
    assert row.gaussian_mean_loglik == pytest.approx(np.mean(scipy.stats.norm.logpdf(flat, mu, sd)), rel=1e-9)
    assert row.gaussian_ks == pytest.approx(scipy.stats.kstest(flat, "norm", args=(mu, sd)).statistic, rel=1e-9)
    assert row.better_fit == "laplace" and row.laplace_ks < row.gaussian_ks
    assert row.n_weights == row.n_fitted == w.size
    hist = table.attrs["histogram"]
    assert hist["count"].sum() == w.size
    assert np.sum(hist["density"] * (hist["bin_right"] - hist["bin_left"])) == pytest.approx(1.0)


def test_gaussian_weights_prefer_gaussian_and_subsample():
    w = np.random.default_rng(1).normal(0, 0.02, size=(300, 200))
    tm = theory_models.TheoryModel("g", "fcdnn", {"dense_0": {"kernel": w}}, {"x": np.zeros((1, 300))})
    row = theory.weight_fit_table(tm, max_weights=20_000).iloc[0]
    assert row.better_fit == "gaussian" and row.gaussian_ks < row.laplace_ks
    assert row.n_fitted == 20_000 and row.n_weights == w.size
    assert row.gaussian_scale == pytest.approx(0.02, rel=0.03)


def test_plots_write_pngs(tmp_path, toy_table):
    import pandas as pd

    w = np.random.default_rng(2).laplace(0, 0.1, size=(50, 40))
    tm = theory_models.TheoryModel("toy", "fcdnn", {"dense_0": {"kernel": w}}, {"x": np.zeros((1, 50))})
    fits = theory.weight_fit_table([tm, tm], bins=21)
    assert plots.plot_weight_fit(fits, tmp_path / "w.png").stat().st_size > 1000
    assert plots.plot_bound_check(toy_table, tmp_path / "b.png").stat().st_size > 1000
    with pytest.raises(ValueError, match="histogram"):
        plots.plot_weight_fit(pd.DataFrame(fits.to_dict()), tmp_path / "x.png")


def test_write_table_writes_csvs_and_png(tmp_path):
    import pandas as pd

    w = np.random.default_rng(4).laplace(0, 0.1, size=(30, 20))
    fits = theory.weight_fit_table(theory_models.TheoryModel("toy", "fcdnn", {"dense_0": {"kernel": w}},
                                                             {"x": np.zeros((1, 30))}), bins=11)
    paths = theory.write_table(fits, tmp_path / "new", "weight_fit", "toy")
    assert [p.name for p in paths] == ["fig2_weights_toy.csv", "fig2_weights_toy_histogram.csv",
                                       "fig2_weights_toy.png"]
    pd.testing.assert_frame_equal(pd.read_csv(paths[0]), fits)
    assert len(pd.read_csv(paths[1])) == 11
    with pytest.raises(ConfigError, match="name='fig2'"):
        theory.write_table(fits, tmp_path, "fig2")


# ----------------------------------------------------------------------------- input checks


@pytest.mark.parametrize("kwargs, match", [
    (dict(model="resnet"), "model='resnet'"),
    (dict(model="fcdnn8", pruning="l1"), "pruning='l1'"),
    (dict(model="fcdnn8", ratios=[0.5, 1.5]), "ratios"),
    (dict(model="fcdnn8", iterations=0), "iterations=0"),
])
def test_bad_input_names_parameter(kwargs, match):
    with pytest.raises(ValueError, match=match):
        theory.bound_check_table(**kwargs)


def test_tokenize_pads_and_truncates():
    tokens = theory_models.tokenize(theory_models.SENTENCES[:3], max_tokens=8)
    assert tokens["input_ids"].shape == tokens["attention_mask"].shape == (3, 8)
    assert tokens["input_ids"][0, 0] == 101  # [CLS]
    short = theory_models.tokenize(["Hello.", "A much longer sentence than the first one."], max_tokens=64)
    assert short["attention_mask"][0].sum() < short["attention_mask"][1].sum() == short["input_ids"].shape[1]


# ----------------------------------------------------------------------------- CLI



@pytest.fixture(scope="module")
def fcdnn_file(tmp_path_factory, fcdnn8_params):
    path = tmp_path_factory.mktemp("fcdnn") / "fcdnn8.safetensors"
    fcdnn.save(path, "fcdnn-8", fcdnn8_params)
    return path


def test_cli_bound_check_writes_csv_and_png(cli, tmp_path, fcdnn_file):
    import pandas as pd

    code, _, err = cli("bound-check", "--model", str(fcdnn_file), "--pruning", "magnitude", "--ratios", "0.5,1",
                       "--batch-size", "8", "--iterations", "3", "--quick", "--out", str(tmp_path))
    assert code == 0, err
    table = pd.read_csv(tmp_path / "fig3_distortion_fcdnn8.csv")
    assert list(table["ratio"]) == [0.5, 1.0] and set(table["pruning"]) == {"magnitude"}
    assert table["n_inputs"].iloc[0] == 8 and (tmp_path / "fig3_distortion_fcdnn8.png").stat().st_size > 1000
    assert {"theorem_bound", "theorem_holds_fraction", "G", "G_bound"} <= set(table.columns)


def test_cli_weight_fit_writes_csv_and_png(cli, tmp_path, fcdnn_file):
    import pandas as pd

    code, _, err = cli("weight-fit", "--model", str(fcdnn_file), "--quick", "--bins", "41", "--out", str(tmp_path))
    assert code == 0, err
    table = pd.read_csv(tmp_path / "fig2_weights.csv")
    assert table["model"].tolist() == ["fcdnn8"]
    assert len(pd.read_csv(tmp_path / "fig2_weights_histogram.csv")) == 41
    assert (tmp_path / "fig2_weights.png").stat().st_size > 1000


@pytest.mark.parametrize("args, match", [
    (["bound-check", "--model", "fcdnn8", "--pruning", "l1"], "--pruning"),
    (["bound-check", "--model", "nope", "--ratios", "0.5"], "model='nope'"),
    (["bound-check", "--model", "fcdnn8", "--ratios", "a,b"], "--ratios"),
    (["weight-fit", "--model", "nope"], "model='nope'"),
    (["close-loop", "--model", "fcdnn8"], "closing the loop"),
])
def test_cli_errors_exit_2(cli, tmp_path, args, match):
    code, _, err = cli(*args, "--out", str(tmp_path))
    assert code == 2 and match in err and err.count("\n") == 1


# ----------------------------------------------------------------------------- slow: real models


@pytest.mark.slow
def test_minilm_bound_check_and_laplace_fit():
    table = theory.bound_check_table("minilm", quick=True)
    mag = table[table.pruning == "magnitude"].set_index("ratio")
    rnd = table[table.pruning == "random"].set_index("ratio")
    assert (mag.loc[[0.2, 0.5, 0.8], "param_distortion"] < rnd.loc[[0.2, 0.5, 0.8], "param_distortion"]).all()
    assert (table["first_order_distortion_mean"] <= table["G_bound"] * 1.05).all()
    assert (table.loc[table.ratio == 1.0, "output_distortion_mean"] == 0).all()
    fits = theory.weight_fit_table("minilm", quick=True).iloc[0]
    assert fits.better_fit == "laplace" and fits.laplace_ks < fits.gaussian_ks  # Remark 4.2 on real weights


@pytest.mark.slow
def test_G_matches_exact_jacobian_norm_tiny_bert():
    from jax.flatten_util import ravel_pytree

    from laimco_jax.models import bert

    config = bert.BertConfig(vocab_size=50, hidden_size=8, num_hidden_layers=1, num_attention_heads=2,
                             intermediate_size=16, max_position_embeddings=16)
    params = jax.tree.map(lambda a: a.astype(jnp.float64), bert.init(config, jax.random.key(0)))
    inputs = {"input_ids": jnp.array([[1, 5, 7, 2], [1, 9, 3, 0]]), "attention_mask": jnp.array([[1, 1, 1, 1], [1, 1, 1, 0]])}
    tm = theory_models.TheoryModel("tiny", "bert", params, inputs, config=config)
    paths = pruning.prunable_paths(params)
    est = bounds.jacobian_spectral_norms(tm.apply, params, inputs, paths, iterations=300)
    leaves = dict(jax.tree_util.tree_leaves_with_path(params))
    flat, unravel = ravel_pytree([leaves[p] for p in paths])

    def f(theta, i):
        new = dict(zip(paths, unravel(theta)))
        p = jax.tree_util.tree_map_with_path(lambda path, leaf: new.get(path, leaf), params)
        return tm.apply(p, jax.tree.map(lambda a: a[i:i + 1], inputs))[0]

    exact = np.array([np.linalg.norm(np.asarray(jax.jacfwd(f)(flat, i)), ord=2) for i in range(2)])
    np.testing.assert_allclose(est, exact, rtol=1e-2)


@pytest.mark.slow
def test_close_loop_minilm_quick():
    table = theory.close_loop_table("minilm", quick=True)
    assert (table["status"] == "optimal").all()
    first = table.drop_duplicates("delay_s").sort_values("delay_s")
    assert np.all(np.diff(first["log10_distortion_bound"]) < 0)  # a looser T0 prunes less
    full = table[(table.rho >= 1 - 1e-9) & (table.rho_server >= 1 - 1e-9)]  # unpruned
    assert len(full) and np.allclose(full["cosine_similarity_mean"], 1) and (full["output_distortion_mean"] == 0).all()
    mag = table[table.pruning == "magnitude"].set_index("delay_s")
    np.testing.assert_allclose(mag["kept_fraction_device"], mag["rho"], atol=1e-6)


@pytest.mark.slow
def test_quick_fcdnn16_and_bart_tables():
    table = theory.bound_check_table("fcdnn16", quick=True)
    assert (table.loc[table.ratio == 1, "output_distortion_mean"] == 0).all()
    assert (table["data_bound_holds_fraction"] == 1).all()
    bart = theory.bound_check_table("bart", quick=True, pruning="magnitude")
    assert bart["kind"].iloc[0] == "bart" and np.isnan(bart["theorem_bound"]).all()
    assert json.loads(bart.to_json())  # serialisable


@pytest.mark.slow
def test_G_chunking_does_not_change_the_estimate():
    params = mlp_params((6, 10, 4), jax.random.key(4))
    x = unit_ball_inputs(jax.random.key(5), 5, 6)
    whole = bounds.jacobian_spectral_norms(bounds.mlp_forward, params, x, iterations=100)
    one_by_one = bounds.jacobian_spectral_norms(bounds.mlp_forward, params, x, iterations=100, chunk_floats=1)
    np.testing.assert_allclose(one_by_one, whole, rtol=1e-4)  # different random starts per chunk


def test_experiments_all_names_every_submodule():
    """``experiments.__all__`` is exactly the package's modules (no stale names, none missing)."""
    import laimco_jax.experiments as experiments

    modules = {p.stem for p in Path(experiments.__file__).parent.glob("*.py") if p.stem != "__init__"}
    assert set(experiments.__all__) == modules
