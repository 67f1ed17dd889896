"""The paper's fully connected auto-encoders FCDNN-8 and FCDNN-16 (Sec. V-A).

The encoder's hidden widths are given; the decoder mirrors them, so FCDNN-8
has hidden layers ``64-128-256-32-32-256-128-64`` and FCDNN-16 sixteen. Every
hidden layer uses ReLU; a linear output layer maps back to the input width.
The paper trains on MNIST, which is not available offline: here the inputs are
the 8x8 digits of ``sklearn.datasets.load_digits`` (64 pixels scaled to
[0, 1]), trained to reconstruct themselves under mean squared error with Adam.

Parameters: ``{"dense_0": {"kernel", "bias"}, ...}`` (flax ``Dense`` layers).
"""

from __future__ import annotations

import functools
import os
from collections.abc import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
from safetensors.numpy import save_file

from laimco_jax.models.bert import Params
from laimco_jax.models.checkpoints import CheckpointError, listed, read_safetensors
from laimco_jax.params import ConfigError

#: Encoder hidden widths of the paper's auto-encoders.
ENCODERS: dict[str, tuple[int, ...]] = {
    "fcdnn-8": (64, 128, 256, 32),
    "fcdnn-16": (64, 128, 256, 512, 256, 128, 64, 32),
}
#: Input width: 8 x 8 digits.
INPUT_DIM = 64


def hidden_widths(encoder: Sequence[int]) -> tuple[int, ...]:
    """Encoder widths followed by their mirror image (the decoder)."""
    return tuple(encoder) + tuple(encoder)[::-1]


class FCDNN(nn.Module):
    """ReLU MLP with hidden ``widths`` and a linear output of width ``out_dim``."""

    widths: tuple[int, ...]
    out_dim: int = INPUT_DIM

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        for i, width in enumerate(self.widths):
            x = jax.nn.relu(nn.Dense(width, name=f"dense_{i}")(x))
        return nn.Dense(self.out_dim, name=f"dense_{len(self.widths)}")(x)


def _widths(name: str) -> tuple[int, ...]:
    if name not in ENCODERS:
        raise ConfigError(f"model={name!r} is not supported; allowed: {sorted(ENCODERS)}")
    return hidden_widths(ENCODERS[name])


def init(name: str, key: jax.Array) -> Params:
    """Random parameters of ``fcdnn-8`` or ``fcdnn-16``."""
    return _init(_widths(name), key)


@functools.partial(jax.jit, static_argnames="widths")
def _init(widths: tuple[int, ...], key: jax.Array) -> Params:
    return FCDNN(widths).init(key, jnp.zeros((1, INPUT_DIM)))["params"]


@functools.partial(jax.jit, static_argnames="widths")
def _apply(widths: tuple[int, ...], params: Params, x: jax.Array) -> jax.Array:
    return FCDNN(widths).apply({"params": params}, x)


def forward(name: str, params: Params, x: jax.Array) -> jax.Array:
    """Reconstruction of inputs ``x`` of shape ``(batch, 64)``."""
    return _apply(_widths(name), params, x)


def digits() -> np.ndarray:
    """The 1,797 scikit-learn 8x8 digits as float32 rows of 64 pixels in [0, 1]."""
    from sklearn.datasets import load_digits

    return (load_digits().data / 16.0).astype(np.float32)


def train(name: str, *, seed: int = 0, epochs: int = 100, batch_size: int = 64,
          learning_rate: float = 1e-3, data: np.ndarray | None = None) -> tuple[Params, list[float]]:
    """Train an auto-encoder on ``data`` (default :func:`digits`) with Adam and MSE.

    Returns ``(params, losses)``, the mean training MSE [pixel^2] of each epoch.
    Deterministic for a given ``seed`` (init and shuffling).
    """
    widths = _widths(name)
    data = digits() if data is None else np.asarray(data, np.float32)
    key, init_key = jax.random.split(jax.random.key(seed))
    params = init(name, init_key)
    optimizer = optax.adam(learning_rate)
    x_all = jnp.asarray(data)

    def loss_fn(p, x):
        return jnp.mean((FCDNN(widths).apply({"params": p}, x) - x) ** 2)

    def step(carry, idx):
        p, state = carry
        loss, grads = jax.value_and_grad(loss_fn)(p, jnp.take(x_all, idx, axis=0))
        updates, state = optimizer.update(grads, state, p)
        return (optax.apply_updates(p, updates), state), loss

    def epoch(carry, order):
        carry, losses = jax.lax.scan(step, carry, order)
        return carry, losses.mean()

    n_batches = len(data) // batch_size
    orders = jax.vmap(lambda k: jax.random.permutation(k, len(data))[: n_batches * batch_size])(
        jax.random.split(key, epochs)).reshape(epochs, n_batches, batch_size)
    (params, _), losses = jax.jit(lambda c, o: jax.lax.scan(epoch, c, o))(
        (params, optimizer.init(params)), orders)
    return params, [float(v) for v in losses]


def save(path: str | os.PathLike, name: str, params: Params) -> None:
    """Write ``params`` of model ``name`` to a safetensors file (``dense_i.kernel`` names)."""
    _widths(name)
    tensors = {f"{layer}.{leaf}": np.asarray(v) for layer, d in params.items() for leaf, v in d.items()}
    save_file(tensors, os.fspath(path), metadata={"model": name})


def load(path: str | os.PathLike) -> tuple[str, Params]:
    """``(name, params)`` from a file written by :func:`save`; checks every tensor's shape.

    Raises :class:`~laimco_jax.models.checkpoints.CheckpointError` naming the file (and the
    tensor) when it is not safetensors, lacks the model metadata, or holds missing, unexpected,
    mis-shaped, non-floating or non-finite tensors.
    """
    tensors, metadata = read_safetensors(path)
    name = metadata.get("model")
    if name not in ENCODERS:
        raise CheckpointError(f"{path}: metadata model={name!r}; allowed: {sorted(ENCODERS)}")
    expected = jax.eval_shape(lambda: init(name, jax.random.key(0)))
    want = {f"{layer}.{leaf}": v.shape for layer, d in expected.items() for leaf, v in d.items()}
    got = {k: v.shape for k, v in tensors.items()}
    missing, unexpected = sorted(set(want) - set(got)), sorted(set(got) - set(want))
    problems = [f"missing tensors: {listed(missing)}"] if missing else []
    problems += [f"unexpected tensors: {listed(unexpected)}"] if unexpected else []
    problems += [f"{k}: shape {got[k]}, expected {want[k]}" for k in sorted(set(got) & set(want))
                 if got[k] != want[k]]
    if problems:
        raise CheckpointError(f"{path} does not match {name}: " + "; ".join(problems))
    params: dict = {}
    for key, value in tensors.items():
        layer, leaf = key.split(".")
        params.setdefault(layer, {})[leaf] = jnp.asarray(value)
    return name, params
