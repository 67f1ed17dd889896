"""Section III's bounds on the output distortion of a pruned model, and the fit statistics of Fig. 2.

See docs/theory.md#output-and-parameter-distortion. Ω is a parameter pytree, Ω̂ its pruned copy (same
structure); φ an input. Parameter distortions are Frobenius norms, in the units of the weights; output
distortions are Euclidean norms per input, in the units of the outputs.

* :func:`parameter_distortion` — d(Ω, Ω̂) = ‖Ω − Ω̂‖_F of eq. (20).
* :func:`mlp_forward`, :func:`mlp_activations` — f(φ, Ω) of eqs. (12)-(13) for a ReLU MLP
  ``{"dense_i": {"kernel", "bias"?}}`` (the paper's FCDNNs).
* :func:`fcdnn_bounds` — Theorem 3.1's bound (19), its bias-safe data-dependent form and
  Lemma 3.1 (15) per input.
* :func:`jacobian_spectral_norms` — ‖J_φ‖_2 per input, J_φ = ∂f(φ, Ω)/∂Ω; G of Proposition 3.2 (22)
  is their maximum.
* :func:`ks_statistic`, :func:`laplace_cdf`, :func:`gaussian_cdf` — the Kolmogorov–Smirnov distance
  of weights to the Laplace and Gaussian laws fitted by :func:`laimco_jax.distortion.fit_laplace` /
  :func:`~laimco_jax.distortion.fit_gaussian` (Fig. 2, Remark 4.2).

Theorem 3.1 with biases (the paper's FCDNNs have them; its proof does not). The bound (19),
Σ_l Â^(l)‖Ω^(l) − Ω̂^(l)‖_F with Â^(l) = Π_{i≠l}‖Ω^(i)‖_F over the kernels, follows from Lemma 3.2
and Lemma 3.1. With *unpruned* biases Lemma 3.2's recursion still holds — the bias cancels in the
difference σ(W h + b) − σ(Ŵ ĥ + b) — so for every input

    ‖f(φ, Ω) − f(φ, Ω̂)‖ ≤ Σ_l (‖W^(l) − Ŵ^(l)‖_F ‖h^(l−1)(φ)‖ + ‖b^(l) − b̂^(l)‖) Π_{i>l}‖W^(i)‖_F

(``data_bound``; h^(0) = φ, h^(l) the post-ReLU activations of the unpruned net) is a theorem with
biases. Only Lemma 3.1, ‖h^(l)‖ ≤ Π_{j≤l}‖W^(j)‖_F, needs ‖φ‖ ≤ 1 *and* no biases; whenever it holds
on an input, the paper's (19) holds on that input too. So the printed bound (19) is guaranteed for
bias-free nets under Assumption 1 (‖φ‖² ≤ 1); with biases it holds on every input where Lemma 3.1
holds, and is otherwise unproven. Corrections used (docs/theory.md#corrections-to-the-paper):
slip 5 (Ã^(l) multiplies the server layers V^(i)), slip 6 (the proof needs ‖Ŵ‖_F ≤ ‖W‖_F, true for
masking), slip 7 (the norm in Remark 3.1 is unsquared), slip 10 (the last line of (19) is used).

Proposition 3.2. ‖J_φ vec(Ω − Ω̂)‖ ≤ ‖J_φ‖_2 ‖Ω − Ω̂‖_F ≤ G‖Ω − Ω̂‖_F (23) exactly; the true output
distortion is only approximately bounded (first-order Taylor (21)). Power iteration converges from
below: the estimate of ‖J_φ‖_2 is a lower estimate, accurate to ~1% after enough steps.

Nothing here changes global JAX configuration; norms are accumulated in float64 numpy.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from laimco_jax.params import ConfigError

__all__ = [
    "fcdnn_bounds",
    "gaussian_cdf",
    "jacobian_spectral_norms",
    "ks_statistic",
    "laplace_cdf",
    "mlp_activations",
    "mlp_forward",
    "parameter_distortion",
]

PyTree = Any


def parameter_distortion(params: PyTree, pruned: PyTree) -> float:
    """‖Ω − Ω̂‖_F over every leaf (eq. (20)), in float64 [units of the weights]."""
    return float(np.sqrt(sum(np.sum(np.square(np.asarray(a, np.float64) - np.asarray(b, np.float64)))
                             for a, b in zip(jax.tree.leaves(params), jax.tree.leaves(pruned)))))


# ----------------------------------------------------------------------------- Theorem 3.1 (FCDNNs)


def _dense_layers(params: PyTree) -> list[dict]:
    """The ``dense_i`` layers of an FCDNN parameter dict, in order."""
    try:
        names = sorted(params, key=lambda k: int(str(k).rsplit("_", 1)[1]))
        layers = [params[n] for n in names]
    except (ValueError, IndexError, TypeError):
        raise ValueError(f"params has keys {sorted(map(str, params))}; expected 'dense_0', 'dense_1', ...") from None
    for name, layer in zip(names, layers):
        if "kernel" not in layer:
            raise ValueError(f"params[{name!r}] has no 'kernel'; keys: {sorted(layer)}")
    return layers


def mlp_forward(params: PyTree, x: jax.Array) -> jax.Array:
    """f(φ, Ω) of eqs. (12)-(13) for a ReLU MLP ``{"dense_i": {"kernel", "bias"?}}`` (the FCDNNs).

    ``x @ kernel + bias`` per layer, ReLU after every layer but the last (a missing bias is zero).
    Equals :func:`laimco_jax.models.fcdnn.forward` on FCDNN parameters.
    """
    return mlp_activations(params, x)[-1]


def mlp_activations(params: PyTree, x: jax.Array) -> list[jax.Array]:
    """``[h0 = x, h1, ..., h_{L-1}, output]``: inputs, post-ReLU hidden activations, linear output."""
    layers = _dense_layers(params)
    out = [x]
    for i, layer in enumerate(layers):
        z = x @ layer["kernel"]
        if "bias" in layer:
            z = z + layer["bias"]
        x = z if i == len(layers) - 1 else jax.nn.relu(z)
        out.append(x)
    return out


_jit_activations = jax.jit(mlp_activations)


def fcdnn_bounds(params: PyTree, pruned: PyTree, inputs: jax.Array) -> dict[str, np.ndarray]:
    """Theorem 3.1 (19) and its bias-safe data-dependent form for an MLP and its pruned copy.

    Returns float64 numpy values:

    * ``theorem_bound`` (scalar): Σ_l Â^(l)‖Ω^(l) − Ω̂^(l)‖_F, Â^(l) = Π_{i≠l}‖Ω^(i)‖_F over the
      kernels (eq. (19), with Assumption 1's ‖φ‖ ≤ 1 — no input factor). Guaranteed for bias-free
      nets with ‖φ‖ ≤ 1 and ‖Ŵ‖_F ≤ ‖W‖_F.
    * ``data_bound`` (per input): Σ_l (‖ΔW^(l)‖_F‖h^(l−1)(φ)‖ + ‖Δb^(l)‖) Π_{i>l}‖W^(i)‖_F — Lemma 3.2
      unrolled with the measured activations; a theorem with biases too (and any input norm).
    * ``lemma31_holds`` (per input, bool): ‖h^(l)(φ)‖ ≤ Π_{j≤l}‖W^(j)‖_F for every hidden layer l
      (Lemma 3.1, eq. (15) with ‖φ‖ ≤ 1); where it holds and biases are unpruned,
      ``data_bound`` ≤ ``theorem_bound``, so (19) holds on that input.
    * ``bias_free`` (bool): every bias is zero or absent.
    """
    layers, pruned_layers = _dense_layers(params), _dense_layers(pruned)
    norm = lambda a: float(np.linalg.norm(np.asarray(a, np.float64)))  # noqa: E731
    kernel_norms = np.array([norm(layer["kernel"]) for layer in layers])
    kernel_deltas = np.array([norm(np.asarray(a["kernel"], np.float64) - np.asarray(b["kernel"], np.float64))
                              for a, b in zip(layers, pruned_layers)])
    bias_deltas = np.array([
        norm(np.asarray(a["bias"], np.float64) - np.asarray(b["bias"], np.float64)) if "bias" in a else 0.0
        for a, b in zip(layers, pruned_layers)])
    n_layers = len(layers)
    a_hat = np.array([np.prod(np.delete(kernel_norms, i)) for i in range(n_layers)])
    after = np.array([np.prod(kernel_norms[i + 1:]) for i in range(n_layers)])  # Π_{i>l}
    before = np.concatenate([[1.0], np.cumprod(kernel_norms)[:-1]])  # Π_{j<l}
    acts = [np.linalg.norm(np.asarray(h, np.float64), axis=-1) for h in _jit_activations(params, inputs)[:-1]]
    acts = np.stack(acts, axis=-1)  # (batch, L): ‖h^(l−1)‖ for l = 1..L
    data_bound = (acts * kernel_deltas + bias_deltas) @ after
    # Lemma 3.1 on hidden layers l = 1..L-1 (acts[:, l] is ‖h^(l)‖, bound Π_{j≤l} = before[l]).
    lemma = np.all(acts[:, 1:] <= before[1:] * (1 + 1e-12), axis=-1) & (acts[:, 0] <= 1 + 1e-12)
    bias_free = all("bias" not in layer or not np.any(np.asarray(layer["bias"])) for layer in layers)
    return dict(theorem_bound=np.float64(a_hat @ kernel_deltas), data_bound=data_bound,
                lemma31_holds=lemma, bias_free=np.bool_(bias_free))


# ----------------------------------------------------------------------------- Proposition 3.2


def _selection(params: PyTree, paths: Sequence[tuple] | None) -> list[bool]:
    """Per leaf of ``params`` (in ``jax.tree.leaves`` order): is its key path in ``paths`` (None: all)."""
    all_paths = [p for p, _ in jax.tree_util.tree_leaves_with_path(params)]
    if paths is None:
        return [True] * len(all_paths)
    unknown = set(paths) - set(all_paths)
    if unknown:
        raise ConfigError(f"paths={sorted(map(jax.tree_util.keystr, unknown))} are not leaves of params")
    chosen = set(paths)
    if not chosen:
        raise ConfigError("paths=[] selects no leaf of params")
    return [p in chosen for p in all_paths]


def jacobian_spectral_norms(apply: Callable[[PyTree, PyTree], jax.Array], params: PyTree, inputs: PyTree,
                            paths: Sequence[tuple] | None = None, *, iterations: int = 50, seed: int = 0,
                            chunk_floats: int = 2**26) -> np.ndarray:
    """Per input φ, ‖J_φ‖_2 with J_φ = ∂f(φ, Ω)/∂Ω over the leaves at ``paths`` (Proposition 3.2).

    ``paths``: key paths of the leaves of ``params`` that make Ω (e.g.
    :func:`laimco_jax.pruning.prunable_paths`; default every leaf). ``apply(params, inputs)`` maps a
    batch (every leaf of ``inputs`` has the batch on axis 0) to outputs ``(batch, m)``, each row
    depending on its own input only. Power iteration on J_φᵀJ_φ (v ← J_φᵀJ_φ v / ‖·‖, one
    ``jax.jvp`` and one ``jax.vjp`` per step) from a random unit start, ``iterations`` steps; the
    estimate is sqrt‖J_φᵀJ_φ v‖ at the last unit v, a lower estimate of σ_max converging at rate
    (σ₂/σ₁)^(2k). G of (22)-(23) is the maximum over the inputs. Inputs are processed in vmapped
    chunks holding at most ``chunk_floats`` vector entries (one jitted step, compiled once; the
    iteration loop runs in Python). Returns float64 ``(batch,)`` [output units per weight unit].
    """
    from jax.flatten_util import ravel_pytree

    for name, value in (("iterations", iterations), ("chunk_floats", chunk_floats)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
            raise ConfigError(f"{name}={value!r} must be an integer >= 1")
    select = _selection(params, paths)
    leaves, treedef = jax.tree.flatten(params)
    chosen = [leaf for leaf, s in zip(leaves, select) if s]
    flat, unravel = ravel_pytree(chosen)
    n = flat.size

    def merged(all_leaves, sel):
        it = iter(sel)
        return jax.tree.unflatten(treedef, [next(it) if s else leaf for leaf, s in zip(all_leaves, select)])

    def one(all_leaves, x, v):
        base = [leaf for leaf, s in zip(all_leaves, select) if s]
        g = lambda sel: apply(merged(all_leaves, sel), jax.tree.map(lambda a: a[None], x))[0]  # noqa: E731
        u = jax.jvp(g, (base,), (unravel(v),))[1]
        w = ravel_pytree(jax.vjp(g, base)[1](u)[0])[0]
        norm = jnp.linalg.norm(w)
        return w / jnp.maximum(norm, jnp.finfo(w.dtype).tiny), norm

    step = jax.jit(jax.vmap(one, in_axes=(None, 0, 0)))
    batch = jax.tree.leaves(inputs)[0].shape[0]
    chunk = max(1, min(batch, chunk_floats // max(n, 1)))
    key = jax.random.key(seed)
    out = []
    for start in range(0, batch, chunk):
        rows = np.minimum(np.arange(start, start + chunk), batch - 1)  # pad the last chunk by repetition
        x = jax.tree.map(lambda a: jnp.asarray(a)[rows], inputs)
        v = jax.random.normal(jax.random.fold_in(key, start), (chunk, n), flat.dtype)
        v = v / jnp.linalg.norm(v, axis=1, keepdims=True)
        for _ in range(iterations):
            v, norm = step(leaves, x, v)
        out.append(np.sqrt(np.asarray(norm, np.float64))[: min(chunk, batch - start)])
    return np.concatenate(out)


# ----------------------------------------------------------------------------- Fig. 2: goodness of fit


def ks_statistic(sorted_weights: np.ndarray, cdf: Callable[[np.ndarray], np.ndarray]) -> float:
    """Kolmogorov–Smirnov statistic sup_x |F_n(x) − F(x)| of ascending ``sorted_weights`` against ``cdf``.

    F_n is the empirical CDF of the weights; the statistic is dimensionless, in [0, 1].
    """
    x = np.asarray(sorted_weights)
    n = x.size
    if n == 0:
        raise ValueError("sorted_weights is empty; need at least one weight")
    f = np.asarray(cdf(x), np.float64)
    i = np.arange(1, n + 1, dtype=np.float64)
    return float(max(np.max(i / n - f), np.max(f - (i - 1) / n)))


def laplace_cdf(x: np.ndarray, loc: float, scale: float) -> np.ndarray:
    """CDF of the Laplace law with location ``loc`` and scale b = ``scale`` (units of ``x``), float64."""
    z = (np.asarray(x, np.float64) - loc) / scale
    return np.where(z < 0, 0.5 * np.exp(np.minimum(z, 0)), 1 - 0.5 * np.exp(-np.maximum(z, 0)))


def gaussian_cdf(x: np.ndarray, loc: float, scale: float) -> np.ndarray:
    """CDF of the Gaussian law with mean ``loc`` and standard deviation ``scale`` (units of ``x``), float64.

    Evaluated as erfc(−z/√2)/2, which keeps the far left tail accurate.
    """
    z = (np.asarray(x, np.float64) - loc) / (scale * math.sqrt(2.0))
    return np.asarray(jax.scipy.special.erfc(-jnp.asarray(z)), np.float64) / 2
