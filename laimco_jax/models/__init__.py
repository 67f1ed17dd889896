"""Flax ports of BERT and BART, the paper's FCDNN auto-encoders, checkpoint I/O and split profiles.

* :mod:`~laimco_jax.models.bert` — BERT encoder + pooler; shared attention/FFN blocks.
* :mod:`~laimco_jax.models.bart` — BART encoder-decoder (encoder-only splits).
* :mod:`~laimco_jax.models.checkpoints` — Hugging Face checkpoint directories, without torch.
* :mod:`~laimco_jax.models.fcdnn` — FCDNN-8 / FCDNN-16 trained on scikit-learn digits.
* :mod:`~laimco_jax.models.profile` — per-split q, s, N_FLOP, Ñ_FLOP, θ, h(w).
* :mod:`~laimco_jax.models.theory_models` — the models and real inputs of Section III's experiments.

Submodules are imported on use (``from laimco_jax.models import profile``), so
importing this package pulls in neither flax nor safetensors.
"""

__all__ = ["bart", "bert", "checkpoints", "fcdnn", "profile", "theory_models"]
