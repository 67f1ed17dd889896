"""The theory of Sections III–IV on real weights: Figs. 2 and 3, and the optimiser's ratios on MiniLM.

Three tables (pandas DataFrames; plots are in :mod:`laimco_jax.experiments.plots`):

* :func:`weight_fit_table` — Fig. 2 / Remark 4.2: Laplace and Gaussian maximum-likelihood fits of a
  model's weight matrices (:func:`laimco_jax.distortion.fit_laplace` / ``fit_gaussian``), their mean
  log-likelihood [nats per weight] and Kolmogorov–Smirnov statistic, and a histogram.
* :func:`bound_check_table` — Fig. 3: for remaining ratios ρ (footnote 1: ρ = 1 keeps everything)
  and magnitude or random pruning of the whole model, the parameter distortion ‖Ω − Ω̂‖_F of
  eq. (20), the measured output distortion ‖f(φ, Ω) − f(φ, Ω̂)‖ over a batch of real inputs,
  Theorem 3.1's bound (19) for the FCDNNs and Proposition 3.2's G‖Ω − Ω̂‖_F (23) for every model,
  beside the first-order distortion ‖∇_Ω f : (Ω − Ω̂)‖ of (21).
* :func:`close_loop_table` — the exact solver's (ρ, ρ̃) over a sweep of the delay budget T0 at the
  MiniLM profile, applied to the real MiniLM split halves: D̂ of (41) beside the measured output
  distortion and the cosine similarity of mean-pooled sentence embeddings to the unpruned model's.

Models (``model=``): ``"fcdnn8"`` / ``"fcdnn16"`` (the paper's auto-encoders, trained here on
scikit-learn digits with :func:`laimco_jax.models.fcdnn.train`, or a safetensors file written by
:func:`laimco_jax.models.fcdnn.save`); ``"minilm"`` (real pretrained all-MiniLM-L6-v2, a BERT);
``"bart"`` (facebook/bart-base's architecture, randomly initialised: its weights say nothing about a
trained BART; in quick mode a 2+2-layer, d_model 64 BART) or a Hugging Face checkpoint directory
(config.json + model.safetensors, BERT or BART). :func:`load_theory_model` does the loading once, so
several tables can share it.

Inputs. FCDNNs read digits (64 pixels in [0, 1]) scaled by 1 / max‖φ‖ over the batch, so that every
input satisfies Assumption 1 (‖φ‖² ≤ 1) and the largest has norm 1; the networks were trained on the
unscaled digits. Transformers read :data:`SENTENCES` (real English), tokenised with the checkpoint's
``tokenizer.json`` (MiniLM's when the directory has none, and for ``"bart"``), padded to the longest
and truncated to ``max_tokens``.

Model output f(φ, Ω) (the quantity whose distortion is measured): the FCDNN's reconstruction
(64 values); for a BERT the last hidden state, for a BART the decoder's last hidden state
(teacher-forced on the shifted input), at the real (non-padding) tokens, flattened per sentence.
Distortions are Euclidean norms per input, in the units of the outputs; parameter distortions are
Frobenius norms over all pruned tensors together, in the units of the weights.

What is pruned (``prunable``, see :mod:`laimco_jax.pruning`): by default the weight matrices
(``"kernel"`` leaves) of the whole model, globally — the Ω^(l) of Theorem 3.1. The Jacobian of
Proposition 3.2 is taken w.r.t. those same leaves.

Theorem 3.1 with biases (the paper's FCDNNs have them; its proof does not). The bound (19),
Σ_l Â^(l)‖Ω^(l) − Ω̂^(l)‖_F with Â^(l) = Π_{i≠l}‖Ω^(i)‖_F over the kernels, follows from Lemma 3.2
and Lemma 3.1. With *unpruned* biases Lemma 3.2's recursion still holds — the bias cancels in the
difference σ(W h + b) − σ(Ŵ ĥ + b) — so for every input

    ‖f(φ, Ω) − f(φ, Ω̂)‖ ≤ Σ_l (‖W^(l) − Ŵ^(l)‖_F ‖h^(l−1)(φ)‖ + ‖b^(l) − b̂^(l)‖) Π_{i>l}‖W^(i)‖_F

(``data_bound``; h^(0) = φ, h^(l) the post-ReLU activations of the unpruned net) is a theorem with
biases. Only Lemma 3.1, ‖h^(l)‖ ≤ Π_{j≤l}‖W^(j)‖_F, needs ‖φ‖ ≤ 1 *and* no biases; whenever it holds
on an input (``lemma31_holds_fraction``), the paper's (19) holds on that input too. So: the printed
bound (19) is guaranteed for bias-free nets under Assumption 1; with biases it holds on every input
where Lemma 3.1 holds, and is otherwise unproven (``theorem_holds_fraction`` says whether it was
violated). Corrections used (docs/theory.md#corrections-to-the-paper):
slip 5 (Ã^(l) multiplies the server layers V^(i)), slip 6
(the proof needs ‖Ŵ‖_F ≤ ‖W‖_F, true for masking), slip 7 (the norm in Remark 3.1 is unsquared).

Proposition 3.2. ``G`` is the largest, over the inputs, spectral norm of the Jacobian
J_φ = ∂f(φ, Ω)/∂Ω (Ω the pruned leaves), from power iteration on J_φᵀJ_φ with ``jax.linearize`` and
``jax.linear_transpose`` (a jvp and a vjp per step). Then ‖J_φ vec(Ω − Ω̂)‖ ≤ G‖Ω − Ω̂‖_F exactly;
the true distortion is only approximately bounded (first-order Taylor (21)). Power iteration
converges from below: ``G`` is a lower estimate of sup_φ‖J_φ‖_2, accurate to ~1% after enough steps.

Functions are pure (they return data), change no global JAX configuration (callers enable x64;
``dtype=`` casts the parameters and FCDNN inputs) and raise :class:`~laimco_jax.params.ConfigError`
naming the parameter, the value and the allowed values on bad input. ``quick=True`` shrinks
everything (fewer epochs, inputs, ratios, power steps, fitted weights) for CI: seconds per model.
"""

from __future__ import annotations

import dataclasses
import math
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd

from laimco_jax import distortion
from laimco_jax import pruning as _pr
from laimco_jax.models.weights import minilm_checkpoint_dir
from laimco_jax.params import ConfigError

__all__ = [
    "DEFAULT_RATIOS",
    "MODELS",
    "PRUNINGS",
    "QUICK_RATIOS",
    "SENTENCES",
    "TheoryModel",
    "bound_check_table",
    "close_loop_table",
    "fcdnn_bounds",
    "jacobian_spectral_norms",
    "ks_statistic",
    "load_theory_model",
    "mlp_activations",
    "mlp_forward",
    "parameter_distortion",
    "tokenize",
    "weight_fit_table",
]

PyTree = Any

#: Built-in model names (anything else must be a checkpoint directory or an FCDNN safetensors file).
MODELS = ("fcdnn8", "fcdnn16", "minilm", "bart")
_ALIASES = {"fcdnn-8": "fcdnn8", "fcdnn-16": "fcdnn16"}
_FCDNN_NAMES = {"fcdnn8": "fcdnn-8", "fcdnn16": "fcdnn-16"}
PRUNINGS = _pr.METHODS
#: Remaining ratios of Fig. 3: 0.05, 0.10, ..., 1.00.
DEFAULT_RATIOS = tuple(round(0.05 * i, 2) for i in range(1, 21))
QUICK_RATIOS = (0.2, 0.5, 0.8, 1.0)

#: Real English sentences, the transformer inputs of Fig. 3 and of closing the loop.
SENTENCES = (
    "The quick brown fox jumps over the lazy dog.",
    "Wireless networks carry most of the data that phones send to the cloud.",
    "She opened the window to let the cool evening air into the room.",
    "Large language models are often too big to run on a mobile device.",
    "The train to Edinburgh leaves from platform four at half past nine.",
    "Heavy rain is expected across the north of the country tomorrow.",
    "He reads a chapter of his book every night before going to sleep.",
    "Pruning removes the weights that contribute least to the output.",
    "The museum will be closed on Monday for repairs to the roof.",
    "A good cup of coffee makes the morning meeting much easier.",
    "The children built a small castle out of sand on the beach.",
    "Energy consumption is a major concern for battery powered devices.",
    "Our team won the match after a penalty in the final minute.",
    "The recipe calls for two eggs, a cup of flour and some milk.",
    "Scientists measured the temperature of the lake every hour.",
    "Please send me the report by the end of the week.",
)


def _check_choice(name: str, value: Any, allowed: Sequence[Any]) -> None:
    if value not in allowed:
        raise ConfigError(f"{name}={value!r} is not supported; allowed: {list(allowed)}")


def _check_int(name: str, value: Any, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ConfigError(f"{name}={value!r} must be an integer >= {minimum}")


def _check_ratios(ratios: Any) -> tuple[float, ...]:
    try:
        values = tuple(float(r) for r in ratios)
    except (TypeError, ValueError):
        raise ConfigError(f"ratios={ratios!r} must be a sequence of remaining fractions in [0, 1]") from None
    bad = [r for r in values if not (0.0 <= r <= 1.0)]
    if not values or bad:
        raise ConfigError(f"ratios={list(ratios)!r} must be a non-empty sequence of remaining fractions "
                          f"in [0, 1]; bad: {bad}")
    return values


def _check_prunings(value: str | Sequence[str]) -> tuple[str, ...]:
    methods = (value,) if isinstance(value, str) else tuple(value)
    if not methods:
        raise ConfigError(f"pruning={value!r} is empty; allowed: {list(PRUNINGS)}")
    for method in methods:
        _check_choice("pruning", method, PRUNINGS)
    return methods


# ----------------------------------------------------------------------------- FCDNN as plain MLP


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


# ----------------------------------------------------------------------------- Jacobian of Prop. 3.2


def _selection(params: PyTree, prunable: _pr.Prunable) -> list[bool]:
    """Per leaf of ``params`` (in ``jax.tree.leaves`` order): is it covered by ``prunable``."""
    chosen = set(_pr.prunable_paths(params, prunable))
    return [p in chosen for p, _ in jax.tree_util.tree_leaves_with_path(params)]


def jacobian_spectral_norms(apply: Callable[[PyTree, PyTree], jax.Array], params: PyTree, inputs: PyTree, *,
                            prunable: _pr.Prunable = _pr.DEFAULT_PRUNABLE, iterations: int = 50,
                            seed: int = 0, chunk_floats: int = 2**26) -> np.ndarray:
    """Per input φ, ‖J_φ‖_2 with J_φ = ∂f(φ, Ω)/∂Ω over the ``prunable`` leaves (Proposition 3.2).

    ``apply(params, inputs)`` maps a batch (every leaf of ``inputs`` has the batch on axis 0) to
    outputs ``(batch, m)``, each row depending on its own input only. Power iteration on J_φᵀJ_φ
    (v ← J_φᵀJ_φ v / ‖·‖, one ``jax.jvp`` and one ``jax.vjp`` per step) from a random unit start,
    ``iterations`` steps; the estimate is sqrt‖J_φᵀJ_φ v‖ at the last unit v, a lower estimate of
    σ_max converging at rate (σ₂/σ₁)^(2k). G of (22)-(23) is the maximum over the inputs.
    Inputs are processed in vmapped chunks holding at most ``chunk_floats`` vector entries
    (one jitted step, compiled once; the iteration loop runs in Python).
    """
    from jax.flatten_util import ravel_pytree

    _check_int("iterations", iterations, 1)
    _check_int("chunk_floats", chunk_floats, 1)
    select = _selection(params, prunable)
    if not any(select):
        raise ConfigError(f"prunable={prunable!r} selects no leaf of params")
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


def parameter_distortion(params: PyTree, pruned: PyTree) -> float:
    """‖Ω − Ω̂‖_F over every leaf (eq. (20)), in float64 [units of the weights]."""
    return float(np.sqrt(sum(np.sum(np.square(np.asarray(a, np.float64) - np.asarray(b, np.float64)))
                             for a, b in zip(jax.tree.leaves(params), jax.tree.leaves(pruned)))))


# ----------------------------------------------------------------------------- models and inputs


def tokenize(sentences: Sequence[str], tokenizer_json: str | os.PathLike | None = None, *,
             max_tokens: int = 32, pad_id: int = 0, vocab_size: int | None = None) -> dict[str, np.ndarray]:
    """``{"input_ids", "attention_mask"}`` (int32, ``(batch, seq)``) of ``sentences``.

    ``tokenizer_json``: a ``tokenizers`` file (default: MiniLM's), whose token ids must lie below
    ``vocab_size`` if given. Padded with ``pad_id`` to the longest sentence, truncated to
    ``max_tokens`` tokens.
    """
    from laimco_jax.models.checkpoints import load_tokenizer

    _check_int("max_tokens", max_tokens, 2)
    if isinstance(sentences, str) or not sentences:
        raise ConfigError(f"sentences={sentences!r} must be a non-empty sequence of strings")
    path = Path(tokenizer_json) if tokenizer_json is not None else minilm_checkpoint_dir() / "tokenizer.json"
    tok = load_tokenizer(path, vocab_size)
    tok.enable_truncation(max_length=max_tokens)
    tok.enable_padding(pad_id=pad_id, pad_token=tok.id_to_token(pad_id) or "[PAD]")
    encodings = tok.encode_batch(list(sentences))
    return {"input_ids": np.array([e.ids for e in encodings], np.int32),
            "attention_mask": np.array([e.attention_mask for e in encodings], np.int32)}


@dataclasses.dataclass(frozen=True, eq=False)
class TheoryModel:
    """A model and its batch of real inputs, as the tables use them.

    ``kind``: ``"fcdnn"``, ``"bert"`` or ``"bart"``; ``config``: the transformer's config (``None``
    for FCDNNs); ``inputs``: FCDNN ``{"x": (batch, 64)}`` (scaled to max‖φ‖ = 1, Assumption 1) or
    ``{"input_ids", "attention_mask"}``; ``input_scale``: the factor applied to the digits;
    ``source``: the model argument or path it came from (``split_profiles`` accepts it for
    transformers); ``pretrained``: real trained weights (False for a random init).
    """

    name: str
    kind: str
    params: PyTree
    inputs: dict[str, np.ndarray]
    config: Any = None
    pretrained: bool = True
    source: str = ""
    input_scale: float = 1.0

    def apply(self, params: PyTree, inputs: dict[str, Any] | None = None) -> jax.Array:
        """f(φ, Ω): ``(batch, m)`` outputs (zeros at padding tokens), see the module docstring."""
        inputs = self.inputs if inputs is None else inputs
        if self.kind == "fcdnn":
            return mlp_forward(params, inputs["x"])
        return _flatten_masked(self.hidden(params, inputs), inputs["attention_mask"])

    def hidden(self, params: PyTree, inputs: dict[str, Any] | None = None) -> jax.Array:
        """Transformers: the ``(batch, seq, hidden)`` output states before flattening."""
        from laimco_jax.models import bart, bert

        inputs = self.inputs if inputs is None else inputs
        ids, mask = inputs["input_ids"], inputs["attention_mask"]
        if self.kind == "bert":
            return bert.forward(self.config, params, ids, mask)[0]
        if self.kind == "bart":
            dec = bart.shift_tokens_right(self.config, ids)
            return bart.forward(self.config, params, ids, mask, dec, None)[0]
        raise ValueError(f"hidden states need a transformer; model {self.name!r} is kind={self.kind!r}")

    def with_dtype(self, dtype) -> TheoryModel:
        """A copy with floating parameters (and FCDNN inputs) cast to ``dtype``."""
        if dtype is None:
            return self
        cast = lambda a: jnp.asarray(a, dtype) if jnp.issubdtype(jnp.asarray(a).dtype, jnp.floating) else a  # noqa: E731
        inputs = {"x": np.asarray(self.inputs["x"], dtype)} if self.kind == "fcdnn" else self.inputs
        return dataclasses.replace(self, params=jax.tree.map(cast, self.params), inputs=inputs)


def _flatten_masked(hidden: jax.Array, mask: jax.Array) -> jax.Array:
    return (hidden * jnp.asarray(mask, hidden.dtype)[..., None]).reshape(hidden.shape[0], -1)


#: Quick-mode stand-in for bart-base: same structure, tiny widths.
_QUICK_BART = dict(d_model=64, encoder_layers=2, decoder_layers=2, encoder_attention_heads=4,
                   decoder_attention_heads=4, encoder_ffn_dim=256, decoder_ffn_dim=256)


def load_theory_model(model: str | os.PathLike, *, quick: bool = False, seed: int = 0,
                      batch_size: int | None = None, max_tokens: int | None = None,
                      epochs: int | None = None) -> TheoryModel:
    """Load (or train, or randomly initialise) ``model`` and its batch of real inputs.

    ``model``: one of :data:`MODELS` (``fcdnn-8``/``fcdnn-16`` also accepted), a checkpoint directory
    or an FCDNN ``.safetensors`` file. ``batch_size``: inputs (default 256 digits / 8 sentences;
    quick 64 / 4; at most 1,797 digits and ``len(SENTENCES)`` sentences). ``max_tokens``: sentence
    truncation (default 32, quick 16). ``epochs``: FCDNN training epochs (default 100, quick 10).
    ``seed`` drives training, initialisation and the choice of digits.
    """
    from laimco_jax.models import bart, bert, checkpoints, fcdnn

    _check_int("seed", seed, 0)
    if not isinstance(model, (str, os.PathLike)):
        raise ConfigError(f"model={model!r} must be one of {list(MODELS)} or a path")
    name = _ALIASES.get(os.fspath(model), os.fspath(model))
    path = Path(name)
    is_fcdnn_file = name not in MODELS and path.is_file() and path.suffix == ".safetensors"
    if name not in MODELS and not path.is_dir() and not is_fcdnn_file:
        raise ConfigError(f"model={os.fspath(model)!r} is not supported; allowed: {list(MODELS)}, a checkpoint "
                          "directory (config.json + model.safetensors) or an FCDNN .safetensors file")
    if name in _FCDNN_NAMES or is_fcdnn_file:
        n_max = len(fcdnn.digits())
        batch = (64 if quick else 256) if batch_size is None else batch_size
        _check_int("batch_size", batch, 1)
        if batch > n_max:
            raise ConfigError(f"batch_size={batch} exceeds the {n_max} digits")
        if is_fcdnn_file:
            arch, params = fcdnn.load(path)
            label = path.stem
        else:
            arch = _FCDNN_NAMES[name]
            n_epochs = (10 if quick else 100) if epochs is None else epochs
            _check_int("epochs", n_epochs, 1)
            params, _ = fcdnn.train(arch, seed=seed, epochs=n_epochs)
            label = name
        data = fcdnn.digits()
        rows = np.sort(np.random.default_rng(seed).choice(len(data), batch, replace=False))
        x = data[rows]
        scale = 1.0 / float(np.max(np.linalg.norm(x, axis=1)))
        return TheoryModel(label, "fcdnn", params, {"x": (x * scale).astype(np.float32)},
                           pretrained=True, source=os.fspath(model), input_scale=scale)
    batch = (4 if quick else 8) if batch_size is None else batch_size
    _check_int("batch_size", batch, 1)
    if batch > len(SENTENCES):
        raise ConfigError(f"batch_size={batch} exceeds the {len(SENTENCES)} sentences of SENTENCES")
    tokens = (16 if quick else 32) if max_tokens is None else max_tokens
    if name == "bart":
        config = bart.BartConfig(**_QUICK_BART) if quick else bart.BART_BASE
        params = bart.init(config, jax.random.key(seed))
        pretrained, tokenizer_json, label = False, None, "bart"
    else:
        directory = minilm_checkpoint_dir() if name == "minilm" else path
        config, params = checkpoints.load_checkpoint(directory)
        pretrained, label = True, "minilm" if name == "minilm" else path.name
        own = directory / "tokenizer.json"
        tokenizer_json = own if own.is_file() else None
    pad_id = config.pad_token_id
    inputs = tokenize(SENTENCES[:batch], tokenizer_json, max_tokens=tokens, pad_id=pad_id,
                      vocab_size=config.vocab_size)
    kind = "bert" if isinstance(config, bert.BertConfig) else "bart"
    return TheoryModel(label, kind, params, inputs, config=config, pretrained=pretrained,
                       source="bart-base" if name == "bart" else os.fspath(model))


def _resolve(model: str | os.PathLike | TheoryModel, **kwargs) -> TheoryModel:
    return model if isinstance(model, TheoryModel) else load_theory_model(model, **kwargs)


# ----------------------------------------------------------------------------- Fig. 2: weight fits


def ks_statistic(sorted_weights: np.ndarray, cdf: Callable[[np.ndarray], np.ndarray]) -> float:
    """Kolmogorov–Smirnov statistic sup_x |F_n(x) − F(x)| of ascending ``sorted_weights`` against ``cdf``."""
    x = np.asarray(sorted_weights)
    n = x.size
    if n == 0:
        raise ValueError("sorted_weights is empty; need at least one weight")
    f = np.asarray(cdf(x), np.float64)
    i = np.arange(1, n + 1, dtype=np.float64)
    return float(max(np.max(i / n - f), np.max(f - (i - 1) / n)))


def _laplace_cdf(loc: float, scale: float) -> Callable[[np.ndarray], np.ndarray]:
    def cdf(x):
        z = (np.asarray(x, np.float64) - loc) / scale
        return np.where(z < 0, 0.5 * np.exp(np.minimum(z, 0)), 1 - 0.5 * np.exp(-np.maximum(z, 0)))
    return cdf


def _normal_cdf(loc: float, scale: float) -> Callable[[np.ndarray], np.ndarray]:
    def cdf(x):
        z = (np.asarray(x, np.float64) - loc) / (scale * math.sqrt(2.0))
        return np.asarray(jax.scipy.special.erfc(-jnp.asarray(z)), np.float64) / 2  # erfc keeps the far left tail
    return cdf


def _pooled_weights(params: PyTree, prunable: _pr.Prunable) -> np.ndarray:
    chosen = set(_pr.prunable_paths(params, prunable))
    leaves = [np.ravel(np.asarray(leaf)) for p, leaf in jax.tree_util.tree_leaves_with_path(params) if p in chosen]
    if not leaves:
        raise ConfigError(f"prunable={prunable!r} selects no leaf of the model")
    return np.concatenate(leaves)


def weight_fit_table(models: str | os.PathLike | TheoryModel | Sequence[str | os.PathLike | TheoryModel], *,
                     quick: bool = False, seed: int = 0, bins: int = 121, max_weights: int | None = None,
                     prunable: _pr.Prunable = _pr.DEFAULT_PRUNABLE) -> pd.DataFrame:
    """Fig. 2: Laplace vs Gaussian fits of each model's pooled weight matrices.

    One row per model: ``n_weights`` (all selected weights), ``n_fitted`` (the uniform random
    subsample fitted: at most ``max_weights``, default 2,000,000, quick 200,000; 0 fits all), then for ``laplace`` and ``gaussian``: ``*_loc``, ``*_scale``
    [units of the weights; Laplace b = E|w − loc|, Gaussian σ], ``*_mean_loglik`` [nats per weight,
    at the MLE, from :mod:`laimco_jax.distortion`] and ``*_ks`` (Kolmogorov–Smirnov statistic against
    the fitted law, dimensionless), ``better_fit`` (higher log-likelihood), ``entropy_bits_per_weight``
    (log2(2e·b), the h(w) estimate of docs/theory.md#inputs-the-paper-leaves-open),
    ``pretrained`` (False: random init, which is
    Gaussian by construction).

    ``table.attrs["histogram"]``: a DataFrame (``model``, ``bin_left``, ``bin_right``, ``count``,
    ``density`` [1/units of the weights]) of *all* selected weights over ``bins`` equal bins between
    their minimum and maximum, for :func:`~laimco_jax.experiments.plots.plot_weight_fit`.
    """
    _check_int("bins", bins, 2)
    if max_weights is None:
        max_weights = 200_000 if quick else 2_000_000
    _check_int("max_weights", max_weights, 0)
    items = [models] if isinstance(models, (str, os.PathLike, TheoryModel)) else list(models)
    if not items:
        raise ConfigError(f"models={models!r} is empty; allowed: {list(MODELS)} or paths")
    rows, hists = [], []
    for item in items:
        tm = _resolve(item, quick=quick, seed=seed)
        weights = _pooled_weights(tm.params, prunable)
        sample = weights
        if max_weights and weights.size > max_weights:
            sample = np.random.default_rng(seed).choice(weights, max_weights, replace=False)
        lap, gau = distortion.fit_laplace(sample), distortion.fit_gaussian(sample)
        lap = [float(v) for v in lap]
        gau = [float(v) for v in gau]
        ordered = np.sort(sample.astype(np.float64))
        rows.append(dict(
            model=tm.name, weights=str(prunable if callable(prunable) else ",".join(prunable)),
            n_weights=int(weights.size), n_fitted=int(sample.size),
            laplace_loc=lap[0], laplace_scale=lap[1], laplace_mean_loglik=lap[2],
            laplace_ks=ks_statistic(ordered, _laplace_cdf(lap[0], lap[1])),
            gaussian_loc=gau[0], gaussian_scale=gau[1], gaussian_mean_loglik=gau[2],
            gaussian_ks=ks_statistic(ordered, _normal_cdf(gau[0], gau[1])),
            better_fit="laplace" if lap[2] > gau[2] else "gaussian",
            entropy_bits_per_weight=float(distortion.laplace_entropy_bits(lap[1])),
            pretrained=tm.pretrained,
        ))
        counts, edges = np.histogram(weights, bins=bins)
        hists.append(pd.DataFrame(dict(model=tm.name, bin_left=edges[:-1], bin_right=edges[1:], count=counts,
                                       density=counts / (weights.size * np.diff(edges)))))
    table = pd.DataFrame(rows)
    table.attrs["histogram"] = pd.concat(hists, ignore_index=True)
    return table


# ----------------------------------------------------------------------------- Fig. 3: bound check


def _mask(params: PyTree, method: str, ratio: float, key: jax.Array, prunable: _pr.Prunable) -> PyTree:
    if method == "magnitude":
        return _pr.magnitude_mask(params, ratio, prunable=prunable)
    return _pr.random_mask(params, ratio, key, prunable=prunable)


def bound_check_table(model: str | os.PathLike | TheoryModel, pruning: str | Sequence[str] = PRUNINGS,
                      ratios: Sequence[float] | None = None, *, quick: bool = False, seed: int = 0,
                      iterations: int | None = None, batch_size: int | None = None, dtype: Any = None,
                      prunable: _pr.Prunable = _pr.DEFAULT_PRUNABLE) -> pd.DataFrame:
    """Fig. 3: output vs parameter distortion of ``model`` pruned at each remaining ratio.

    ``pruning``: ``"magnitude"``, ``"random"`` or both (default). ``ratios``: remaining
    fractions (default :data:`DEFAULT_RATIOS`, quick :data:`QUICK_RATIOS`). Pruning is global over
    the ``prunable`` leaves of the whole model; random masks use one key per table, so masks are
    nested across ratios. ``iterations``: power steps for G (default 50, quick 10). ``dtype``:
    cast parameters and FCDNN inputs (e.g. ``jnp.float64`` with x64 enabled).

    Columns (one row per method and ratio; distortions in output units, parameters in weight units):
    ``model``, ``kind``, ``pruning``, ``ratio``, ``kept_fraction`` (measured), ``n_inputs``,
    ``param_norm`` ‖Ω‖_F and ``param_distortion`` ‖Ω − Ω̂‖_F (eq. (20)), ``output_norm_mean``
    (mean ‖f(φ, Ω)‖), ``output_distortion_mean`` / ``_max`` (‖f(φ, Ω) − f(φ, Ω̂)‖ over the inputs),
    ``first_order_distortion_mean`` (‖J_φ(Ω̂ − Ω)‖, eq. (21), a jvp), ``G`` (max_φ ‖J_φ‖_2, eq. (22);
    ``G_mean`` its mean over inputs), ``G_bound`` = G‖Ω − Ω̂‖_F (eq. (23)),
    ``prop32_holds_fraction`` (inputs whose true distortion ≤ G_bound). FCDNNs only (NaN otherwise):
    ``theorem_bound`` (eq. (19)), ``theorem_holds_fraction`` (inputs with distortion ≤ it),
    ``lemma31_holds_fraction``, ``data_bound_mean`` and ``data_bound_holds_fraction`` (see
    :func:`fcdnn_bounds`), ``bias_free`` and ``theorem_applies`` (bias-free and max‖φ‖ ≤ 1: then
    ``theorem_holds_fraction`` must be 1). ``input_scale``: factor applied to the digits.
    """
    methods = _check_prunings(pruning)
    ratios = _check_ratios((QUICK_RATIOS if quick else DEFAULT_RATIOS) if ratios is None else ratios)
    iterations = (10 if quick else 50) if iterations is None else iterations
    _check_int("iterations", iterations, 1)
    tm = _resolve(model, quick=quick, seed=seed, batch_size=batch_size).with_dtype(dtype)
    params, inputs = tm.params, {k: jnp.asarray(v) for k, v in tm.inputs.items()}

    @jax.jit
    def evaluate(p, q, t):  # (f(φ, q), J_φ(p)·t): one compiled function for outputs and (21)
        return tm.apply(q, inputs), jax.jvp(lambda r: tm.apply(r, inputs), (p,), (t,))[1]

    zeros = jax.tree.map(jnp.zeros_like, params)
    y0 = np.asarray(evaluate(params, params, zeros)[0], np.float64)
    sigma = jacobian_spectral_norms(tm.apply, params, inputs, prunable=prunable, iterations=iterations, seed=seed)
    g = float(np.max(sigma))
    chosen = set(_pr.prunable_paths(params, prunable))
    param_norm = float(np.sqrt(sum(np.sum(np.square(np.asarray(leaf, np.float64)))
                                   for p, leaf in jax.tree_util.tree_leaves_with_path(params) if p in chosen)))
    key = jax.random.key(seed)
    max_input_norm = float(np.max(np.linalg.norm(tm.inputs["x"], axis=1))) if tm.kind == "fcdnn" else math.nan
    rows = []
    for method in methods:
        for ratio in ratios:
            mask = _mask(params, method, ratio, key, prunable)
            pruned = _pr.apply_mask(params, mask)
            kept, total = _pr.kept_count(mask, params, prunable)
            delta = jax.tree.map(lambda a, b: b - a, params, pruned)
            y, first = evaluate(params, pruned, delta)
            dist = np.linalg.norm(np.asarray(y, np.float64) - y0, axis=1)
            first = np.linalg.norm(np.asarray(first, np.float64), axis=1)
            d_param = parameter_distortion(params, pruned)
            row = dict(
                model=tm.name, kind=tm.kind, pruning=method, ratio=ratio, kept_fraction=kept / total,
                n_inputs=len(y0), param_norm=param_norm, param_distortion=d_param,
                output_norm_mean=float(np.mean(np.linalg.norm(y0, axis=1))),
                output_distortion_mean=float(np.mean(dist)), output_distortion_max=float(np.max(dist)),
                first_order_distortion_mean=float(np.mean(first)), G=g, G_mean=float(np.mean(sigma)),
                G_bound=g * d_param, prop32_holds_fraction=float(np.mean(dist <= g * d_param)),
                theorem_bound=math.nan, theorem_holds_fraction=math.nan, lemma31_holds_fraction=math.nan,
                data_bound_mean=math.nan, data_bound_holds_fraction=math.nan, bias_free=None,
                theorem_applies=None, input_scale=tm.input_scale, iterations=iterations,
            )
            if tm.kind == "fcdnn":
                b = fcdnn_bounds(params, pruned, inputs["x"])
                bias_free = bool(b["bias_free"])
                row.update(
                    theorem_bound=float(b["theorem_bound"]),
                    theorem_holds_fraction=float(np.mean(dist <= b["theorem_bound"])),
                    lemma31_holds_fraction=float(np.mean(b["lemma31_holds"])),
                    data_bound_mean=float(np.mean(b["data_bound"])),
                    data_bound_holds_fraction=float(np.mean(dist <= b["data_bound"] * (1 + 1e-6) + 1e-12)),
                    bias_free=bias_free, theorem_applies=bias_free and max_input_norm <= 1 + 1e-6,
                )
            rows.append(row)
    return pd.DataFrame(rows)


# ----------------------------------------------------------------------------- closing the loop


def _mean_pool(hidden: np.ndarray, mask: np.ndarray) -> np.ndarray:
    m = mask[..., None].astype(np.float64)
    return (hidden * m).sum(axis=1) / m.sum(axis=1)


def _cosine(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.sum(a * b, axis=-1) / (np.linalg.norm(a, axis=-1) * np.linalg.norm(b, axis=-1))


def _problem_at(problem, delays: np.ndarray):
    from laimco_jax.params import Budget

    energy = np.full(delays.shape, float(problem.budget.energy_j))
    batched = problem.replace(budget=Budget(delay_s=delays, energy_j=energy))
    return jax.tree.map(lambda a: jnp.broadcast_to(jnp.asarray(a, jnp.float64), delays.shape), batched)


def close_loop_table(model: str | os.PathLike | TheoryModel = "minilm", *, split: int = 3,
                     delays: Sequence[float] | None = None, n_delays: int | None = None,
                     energy_j: float | None = None, preset: str = "paper", budget_model: str = "bert-base",
                     pruning: str | Sequence[str] = PRUNINGS, quick: bool = False, seed: int = 0,
                     batch_size: int | None = None, seq_len: int = 128,
                     prunable: _pr.Prunable = _pr.LEAF_KINDS) -> pd.DataFrame:
    """The exact solver's (ρ, ρ̃) over a sweep of T0, applied to the real split model.

    Needs float64 JAX (``jax_enable_x64``): the solver runs in float64.

    The problem is ``make_problem(preset, budget_model)`` with its ``[model]`` section replaced by
    the measured profile of ``model`` (``minilm`` or a checkpoint directory; the profile of
    :func:`laimco_jax.models.profile.split_profiles` at ``split`` and ``seq_len`` tokens, whose keys
    are the ``[model]`` field names) and, if given, ``energy_j`` for E0 [J]. h(w) is
    :func:`~laimco_jax.models.profile.model_entropy_bits` of all weights (quick mode: the same
    Laplace fit on a uniform subsample of 2^20 weights). ``delays`` T0 [s]: default ``n_delays``
    (6, quick 3) evenly spaced from the smallest feasible T0 to the smallest T0 at which nothing is
    pruned (found on a geometric grid of 241 budgets from 1e-4 s to 10 s).

    For each T0 the device half (embeddings and blocks < ``split``) is pruned to ρ and the server
    half to ρ̃ with :func:`laimco_jax._pr.split_masks` — by default over *every* parameter
    (``prunable`` = all leaf kinds), so that ρ is the kept fraction of the profile's q as in the
    solver; pass ``("kernel",)`` to prune weight matrices only.

    Columns: ``delay_s`` T0, ``energy_j`` E0, ``status``, ``rho``, ``rho_server``,
    ``log10_distortion_bound`` log10 D̂ (eq. (41), D̂ in weight units), ``pruning``,
    ``kept_fraction_device`` / ``_server`` (measured), ``param_distortion`` ‖Ω − Ω̂‖_F,
    ``output_distortion_mean`` (last hidden states, as in :func:`bound_check_table`),
    ``cosine_similarity_mean`` / ``_min`` (mean-pooled sentence embeddings vs the unpruned
    model's), ``split``. Infeasible budgets keep NaN measurements. (For BART the server's kept
    fraction counts the tied token table, which follows the device mask, on both sides.)

    Measured on MiniLM at split 3, E0 = 0.015 J (paper preset): T0 from 0.021 s (ρ = 0, ρ̃ = 0.12)
    to 0.079 s (nothing pruned); magnitude pruning at the solver's ρ keeps pooled-embedding cosine
    similarity 0.76 / 0.91 / 0.99 at ρ = 0.32 / 0.56 / 0.80, while random pruning of every
    parameter (LayerNorm gains and embeddings included) destroys the embedding (cosine < 0.2).
    """
    import dataclasses as dc

    from laimco_jax.models import bart, bert
    from laimco_jax.models.profile import model_entropy_bits, split_profiles
    from laimco_jax.params import ModelProfile, make_problem
    from laimco_jax.solvers import Status, solve_exact

    methods = _check_prunings(pruning)
    if not jax.config.read("jax_enable_x64"):
        raise ValueError("close_loop_table needs float64: enable jax_enable_x64 before calling it")
    if isinstance(model, TheoryModel):
        tm = model
    else:
        if os.fspath(model) in MODELS and os.fspath(model) != "minilm":
            raise ConfigError(f"model={os.fspath(model)!r} is not supported for closing the loop; allowed: "
                              "'minilm' or a pretrained checkpoint directory")
        tm = load_theory_model(model, quick=quick, seed=seed, batch_size=batch_size)
    if tm.kind == "fcdnn" or not tm.pretrained:
        raise ConfigError(f"model={tm.name!r} (kind {tm.kind}, pretrained={tm.pretrained}) is not supported for "
                          "closing the loop; allowed: 'minilm' or a pretrained checkpoint directory")
    _check_int("split", split, 1)
    if split >= tm.config.num_layers and tm.kind == "bert":
        raise ConfigError(f"split={split} must be in [1, {tm.config.num_layers - 1}] (both halves pruned)")
    if split > tm.config.num_layers:
        raise ConfigError(f"split={split} must be in [1, {tm.config.num_layers}]")
    record = split_profiles(tm.source, seq_len=seq_len, splits=[split], entropy=False)[0]
    if quick:
        flat = np.concatenate([np.ravel(np.asarray(leaf)) for leaf in jax.tree.leaves(tm.params)])
        sample = np.random.default_rng(seed).choice(flat, min(flat.size, 2**20), replace=False)
        entropy = flat.size * float(distortion.laplace_entropy_bits(distortion.fit_laplace(sample).scale))
    else:
        entropy = model_entropy_bits(tm.params)
    fields = {f.name for f in dc.fields(ModelProfile)}
    overrides = {f"model.{k}": (entropy if k == "entropy_bits" else record[k]) for k in fields}
    if energy_j is not None:
        overrides["budget.energy_j"] = energy_j
    problem = make_problem(preset, budget_model, overrides=overrides)

    def solve(t0: np.ndarray):
        return solve_exact(_problem_at(problem, np.asarray(t0, np.float64)), "proposed")

    if delays is None:
        n = (3 if quick else 6) if n_delays is None else n_delays
        _check_int("n_delays", n, 1)
        grid = np.geomspace(1e-4, 10.0, 241)
        sol = solve(grid)
        ok = np.asarray(sol.status) == int(Status.OPTIMAL)
        if not ok.any():
            raise ConfigError(f"no delay budget in [1e-4, 10] s is feasible at energy_j={float(problem.budget.energy_j)}; "
                              "raise energy_j")
        full = ok & (np.asarray(sol.rho) >= 1 - 1e-9) & (np.asarray(sol.rho_server) >= 1 - 1e-9)
        lo = grid[np.argmax(ok)]
        hi = grid[np.argmax(full)] if full.any() else grid[-1]
        delays = np.linspace(lo, hi, n) if hi > lo else np.array([lo])
    else:
        delays = np.asarray([float(d) for d in delays], np.float64)
        if delays.size == 0 or not np.all(np.isfinite(delays) & (delays > 0)):
            raise ConfigError(f"delays={list(delays)!r} must be a non-empty list of budgets > 0 [s]")
    sol = solve(delays)
    module = bert if tm.kind == "bert" else bart
    params, inputs = tm.params, {k: jnp.asarray(v) for k, v in tm.inputs.items()}
    mask = np.asarray(tm.inputs["attention_mask"])
    hidden = jax.jit(tm.hidden)
    h0 = np.asarray(hidden(params, inputs), np.float64)
    pooled0 = _mean_pool(h0, mask)
    flat0 = np.asarray(_flatten_masked(h0, mask))
    device, server = module.split_params(tm.config, params, split)
    key = jax.random.key(seed)
    rows = []
    for i, t0 in enumerate(delays):
        base = dict(split=split, delay_s=float(t0), energy_j=float(problem.budget.energy_j),
                    status=Status(int(np.asarray(sol.status)[i])).name.lower(), rho=float(np.asarray(sol.rho)[i]),
                    rho_server=float(np.asarray(sol.rho_server)[i]),
                    log10_distortion_bound=float(np.asarray(sol.log10_distortion_bound)[i]))
        for method in methods:
            row = base | dict(pruning=method, kept_fraction_device=math.nan, kept_fraction_server=math.nan,
                              param_distortion=math.nan, output_distortion_mean=math.nan,
                              cosine_similarity_mean=math.nan, cosine_similarity_min=math.nan)
            if base["status"] == "optimal":
                dmask, smask = _pr.split_masks(device, server, min(base["rho"], 1.0),
                                                   min(base["rho_server"], 1.0), method=method, key=key,
                                                   prunable=prunable)
                dev_p, srv_p = _pr.apply_mask(device, dmask), _pr.apply_mask(server, smask)
                pruned = {**dev_p, **srv_p}
                kd, nd = _pr.kept_count(dmask, device, prunable)
                ks, ns = _pr.kept_count(smask, server, prunable)
                h = np.asarray(hidden(pruned, inputs), np.float64)
                cos = _cosine(_mean_pool(h, mask), pooled0)
                row.update(kept_fraction_device=kd / nd, kept_fraction_server=ks / ns,
                           param_distortion=parameter_distortion(params, {k: pruned[k] for k in params}),
                           output_distortion_mean=float(np.mean(np.linalg.norm(
                               np.asarray(_flatten_masked(h, mask)) - flat0, axis=1))),
                           cosine_similarity_mean=float(np.mean(cos)), cosine_similarity_min=float(np.min(cos)))
            rows.append(row)
    return pd.DataFrame(rows)
