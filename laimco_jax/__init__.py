"""laimco_jax: pruning-aware co-inference of large AI models at the wireless edge, in JAX.

Implements (and corrects, see docs/theory.md#corrections-to-the-paper)
Lyu et al., "The Larger the Merrier? Efficient Large AI
Model Inference in Wireless Edge Networks": the system model (eqs. 1-11), the rate-distortion bound
on pruning distortion (Section IV) and the joint pruning / power / frequency design of problem (P1).
"""

from laimco_jax.params import (
    Budget,
    ConfigError,
    ModelProfile,
    Problem,
    SystemParams,
    apply_overrides,
    dump_toml,
    load_toml,
    make_problem,
    save_toml,
)
from laimco_jax.system import OperatingPoint, SystemTerms, channel_gain, evaluate, rate_bps

__version__ = "0.1.0"

__all__ = [
    "Budget",
    "ConfigError",
    "ModelProfile",
    "OperatingPoint",
    "Problem",
    "SystemParams",
    "SystemTerms",
    "apply_overrides",
    "channel_gain",
    "dump_toml",
    "evaluate",
    "load_toml",
    "make_problem",
    "rate_bps",
    "save_toml",
]
