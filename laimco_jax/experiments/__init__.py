"""Experiments on real models, one module per group of the paper's figures.

* :mod:`~laimco_jax.experiments.theory` — Section III on real weights: Fig. 2 (weight fits),
  Fig. 3 (output vs parameter distortion, Theorem 3.1, Proposition 3.2) and the optimiser's ratios
  applied to a real pruned MiniLM (closing the loop).
* :mod:`~laimco_jax.experiments.plots` — matplotlib figures of those tables (Agg, no pyplot state).

Submodules are imported on use, so importing this package loads nothing heavy.
"""

__all__ = ["plots", "theory"]
