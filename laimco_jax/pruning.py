"""Unstructured pruning masks as pytrees (magnitude and random), per co-inference half.

A *mask* has the structure of the parameter tree it prunes, with a boolean
array per leaf (True = weight kept). ρ and ρ̃ are *remaining* fractions
(docs/theory.md#slip-8): ρ = 1 keeps everything.

Which tensors are prunable is chosen by leaf name (the last key of its path):

* ``"kernel"`` — weight matrices of dense layers (attention projections,
  feed-forward, pooler, FCDNN layers): the default, as in the paper's
  magnitude pruning [31];
* ``"bias"`` — dense and LayerNorm biases;
* ``"scale"`` — LayerNorm gains;
* ``"embedding"`` — token, position and token-type tables.

Pass ``prunable=`` a sequence of these names, or a predicate
``(path, leaf) -> bool``. Non-prunable leaves get an all-True mask.

Selection keeps exactly ``round(ratio x n)`` prunable weights: over all
prunable tensors together (``scope="global"``), or per tensor
(``scope="layer"``) with the per-tensor counts apportioned by largest
remainder so that the total is still ``round(ratio x n)``. Magnitude masks
keep the largest ``|w|``; random masks keep weights chosen uniformly
(``jax.random`` key). Selection runs on the host (numpy ``argpartition``,
linear time): pruning is an offline step.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import jax
import numpy as np

from laimco_jax.params import ConfigError

PyTree = Any
Prunable = Sequence[str] | Callable[[tuple, Any], bool]

#: Leaf names pruned by default: weight matrices only.
DEFAULT_PRUNABLE: tuple[str, ...] = ("kernel",)
LEAF_KINDS = ("kernel", "bias", "scale", "embedding")
METHODS = ("magnitude", "random")
SCOPES = ("global", "layer")


def _leaf_name(path: tuple) -> str:
    last = path[-1]
    return str(getattr(last, "key", getattr(last, "name", last)))


def _predicate(prunable: Prunable) -> Callable[[tuple, Any], bool]:
    if callable(prunable):
        return prunable
    unknown = sorted(set(prunable) - set(LEAF_KINDS))
    if unknown:
        raise ConfigError(f"prunable={list(prunable)} has unknown kinds {unknown}; allowed: {list(LEAF_KINDS)}")
    names = frozenset(prunable)
    return lambda path, leaf: _leaf_name(path) in names


def _check_choice(name: str, value: Any, allowed: Sequence[str]) -> None:
    if value not in allowed:
        raise ConfigError(f"{name}={value!r} is not supported; allowed: {list(allowed)}")


def _check_ratio(name: str, ratio: Any) -> None:
    if not (isinstance(ratio, (int, float, np.floating)) and 0.0 <= ratio <= 1.0):
        raise ConfigError(f"{name}={ratio!r} must be a remaining fraction in [0, 1]")


def prunable_paths(params: PyTree, prunable: Prunable = DEFAULT_PRUNABLE) -> list[tuple]:
    """Key paths of the leaves of ``params`` that ``prunable`` selects."""
    keep = _predicate(prunable)
    return [p for p, leaf in jax.tree_util.tree_leaves_with_path(params) if keep(p, leaf)]


def _keep_largest(scores: np.ndarray, count: int) -> np.ndarray:
    """Boolean mask of exactly ``count`` entries of the 1-D ``scores`` with the largest values."""
    mask = np.zeros(scores.size, bool)
    if count >= scores.size:
        mask[:] = True
    elif count > 0:
        mask[np.argpartition(-scores, count - 1)[:count]] = True
    return mask


def _apportion(sizes: np.ndarray, ratio: float) -> np.ndarray:
    """Integer counts ≈ ``ratio x sizes`` summing to ``round(ratio x sizes.sum())`` (largest remainder)."""
    exact = ratio * sizes
    counts = np.floor(exact).astype(np.int64)
    short = int(round(ratio * sizes.sum())) - counts.sum()
    counts[np.argsort(counts - exact, kind="stable")[:short]] += 1
    return counts


def _select(scores: list[np.ndarray], ratio: float, scope: str) -> list[np.ndarray]:
    """Per-tensor boolean masks keeping the highest scores at fraction ``ratio``."""
    if not scores:
        return []
    sizes = np.array([s.size for s in scores], np.int64)
    if scope == "layer":
        return [_keep_largest(s.ravel(), int(c)).reshape(s.shape)
                for s, c in zip(scores, _apportion(sizes, ratio))]
    flat = _keep_largest(np.concatenate([s.ravel() for s in scores]), int(round(ratio * sizes.sum())))
    return [m.reshape(s.shape) for m, s in zip(np.split(flat, np.cumsum(sizes)[:-1]), scores)]


def _masks(params: PyTree, ratio: float, scores_of: Callable[[list], list[np.ndarray]],
           scope: str, prunable: Prunable, fixed: dict | None = None) -> PyTree:
    """Mask tree: prunable leaves (minus those in ``fixed``) selected; ``fixed`` leaves copied."""
    _check_ratio("ratio", ratio)
    _check_choice("scope", scope, SCOPES)
    fixed = fixed or {}
    keep = _predicate(prunable)
    leaves, treedef = jax.tree_util.tree_flatten_with_path(params)
    chosen = [i for i, (p, leaf) in enumerate(leaves) if keep(p, leaf) and p not in fixed]
    selected = dict(zip(chosen, _select(scores_of([leaves[i][1] for i in chosen]), ratio, scope)))
    masks = [
        selected[i] if i in selected
        else fixed.get(p, np.ones(leaf.shape, bool))
        for i, (p, leaf) in enumerate(leaves)
    ]
    return jax.tree_util.tree_unflatten(treedef, masks)


def _scorer(method: str, key: jax.Array | None) -> Callable[[list], list[np.ndarray]]:
    _check_choice("method", method, METHODS)
    if method == "magnitude":
        return lambda leaves: [np.abs(np.asarray(leaf, np.float32)) for leaf in leaves]
    if key is None:
        raise ValueError("method='random' needs a jax.random key (key=None given)")

    def random_scores(leaves):
        sizes = [int(np.prod(leaf.shape)) for leaf in leaves]
        flat = np.asarray(jax.random.uniform(key, (sum(sizes),)))
        return [s.reshape(leaf.shape) for s, leaf in zip(np.split(flat, np.cumsum(sizes)[:-1]), leaves)]

    return random_scores


def magnitude_mask(params: PyTree, ratio: float, *, scope: str = "global",
                   prunable: Prunable = DEFAULT_PRUNABLE) -> PyTree:
    """Keep the ``round(ratio x n)`` prunable weights of largest magnitude."""
    return _masks(params, ratio, _scorer("magnitude", None), scope, prunable)


def random_mask(params: PyTree, ratio: float, key: jax.Array, *, scope: str = "global",
                prunable: Prunable = DEFAULT_PRUNABLE) -> PyTree:
    """Keep ``round(ratio x n)`` prunable weights chosen uniformly at random (``params`` may be shapes)."""
    return _masks(params, ratio, _scorer("random", key), scope, prunable)


def split_masks(device: PyTree, server: PyTree, rho: float, rho_server: float, *,
                method: str = "magnitude", scope: str = "global", key: jax.Array | None = None,
                prunable: Prunable = DEFAULT_PRUNABLE) -> tuple[PyTree, PyTree]:
    """Masks for the device half (remaining fraction ρ = ``rho``) and server half (ρ̃ = ``rho_server``).

    ``device``/``server`` are the halves from ``split_params``. Each half keeps
    ``round(ρ x n_half)`` of its own prunable weights. A tensor present in both
    halves (BART's tied token table) belongs to the device half, as in
    :func:`laimco_jax.models.profile.count_params`; the server copies its mask.
    """
    _check_ratio("rho", rho)
    _check_ratio("rho_server", rho_server)
    device_key, server_key = jax.random.split(key) if key is not None else (None, None)
    device_mask = _masks(device, rho, _scorer(method, device_key), scope, prunable)
    shared = dict(jax.tree_util.tree_leaves_with_path(device_mask))
    server_paths = {p for p, _ in jax.tree_util.tree_leaves_with_path(server)}
    fixed = {p: m for p, m in shared.items() if p in server_paths}
    server_mask = _masks(server, rho_server, _scorer(method, server_key), scope, prunable, fixed)
    return device_mask, server_mask


@jax.jit
def apply_mask(params: PyTree, mask: PyTree) -> PyTree:
    """``params`` with the weights where ``mask`` is False set to zero."""
    return jax.tree.map(lambda w, m: jax.numpy.where(m, w, 0).astype(w.dtype), params, mask)


def kept_count(mask: PyTree, params: PyTree, prunable: Prunable = DEFAULT_PRUNABLE) -> tuple[int, int]:
    """``(kept, total)`` over the prunable leaves of ``params``."""
    keep = _predicate(prunable)
    pairs = zip(jax.tree.leaves(mask), jax.tree_util.tree_leaves_with_path(params))
    counted = [(int(np.count_nonzero(m)), int(np.size(m))) for m, (p, leaf) in pairs if keep(p, leaf)]
    return sum(k for k, _ in counted), sum(n for _, n in counted)
