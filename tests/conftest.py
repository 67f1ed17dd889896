"""Test-wide settings: float64 JAX (the library itself never flips this) and no network."""

import os

import jax

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
jax.config.update("jax_enable_x64", True)
