"""Experiments on real models and the paper's figures, one module per group.

* :mod:`~laimco_jax.experiments.paper` — Section VI: Figs. 4, 5, 6 (every scheme over budgets and
  splits), the paper's SCA against the certified optimum, elasticities, the claims read off the data.
* :mod:`~laimco_jax.experiments.theory` — Section III on real weights: Fig. 2 (weight fits),
  Fig. 3 (output vs parameter distortion, Theorem 3.1, Proposition 3.2) and the optimiser's ratios
  applied to a real pruned MiniLM (closing the loop).
* :mod:`~laimco_jax.experiments.fading` — beyond the paper: the static outage design against ε and the
  Monte Carlo over channel draws (tables, figures).
* :mod:`~laimco_jax.experiments.multiuser` — beyond the paper: cells of K users sharing the band and the
  server, every objective against the equal split (tables, figures).
* :mod:`~laimco_jax.experiments.plots` — matplotlib figures of the theory tables (Agg, no pyplot state).
* :mod:`~laimco_jax.experiments.reproduce` — every part end to end, resumably, and ``summary.md``.

Submodules are imported on use (``from laimco_jax.experiments import paper``), so importing this
package loads nothing heavy.
"""

__all__ = ["fading", "multiuser", "paper", "plots", "reproduce", "theory"]
