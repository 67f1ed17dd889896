"""Seeded random instances of (P1) around the paper's settings, for benchmarks, tests and Monte Carlo studies."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from laimco_jax.params import Problem, make_problem

__all__ = ["random_problems"]


def random_problems(n: int, seed: int = 0, *, spread: float = 3.0) -> Problem:
    """``n`` problems (float64 leaves of shape ``(n,)``) around the paper's BERT-base / BART-base presets.

    Each instance picks one of the two presets, then multiplies the distance by a log-uniform factor in
    [0.2, 3], θ in [0.1, 10], N_FLOP and Ñ_FLOP in [0.3, 3] and T0, E0 in [1/spread, spread].
    """
    rng = np.random.default_rng(seed)
    bert, bart = (make_problem("paper", m) for m in ("bert-base", "bart-base"))
    pick = rng.random(n) < 0.5
    base = jax.tree_util.tree_map(lambda a, b: np.where(pick, float(a), float(b)), bert, bart)

    def scale(x, lo, hi):
        return jnp.asarray(x * np.exp(rng.uniform(np.log(lo), np.log(hi), n)), jnp.float64)

    problem = base.replace(
        system=base.system.replace(distance_m=scale(base.system.distance_m, 0.2, 3.0)),
        model=base.model.replace(
            embedding_bits=scale(base.model.embedding_bits, 0.1, 10.0),
            flops_device=scale(base.model.flops_device, 0.3, 3.0),
            flops_server=scale(base.model.flops_server, 0.3, 3.0),
        ),
        budget=base.budget.replace(
            delay_s=scale(base.budget.delay_s, 1 / spread, spread),
            energy_j=scale(base.budget.energy_j, 1 / spread, spread),
        ),
    )
    return jax.tree_util.tree_map(lambda x: jnp.asarray(x, jnp.float64), problem)
