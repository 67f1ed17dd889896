"""Write laimco_jax/data/model_profiles.json: the measured per-split profiles of the preset models.

Run from the repository root after changing a port or a preset setting (about a minute on a CPU):

    python scripts/make_preset_profiles.py

tests/test_profile.py checks the embedded file against transformers' parameter counts and the analytic
FLOP count, and (slow) that re-measuring reproduces it.
"""

import json
from pathlib import Path

from laimco_jax.models.profile import PRESETS, preset_profile_document

OUT = Path(__file__).resolve().parents[1] / "laimco_jax" / "data" / "model_profiles.json"

if __name__ == "__main__":
    documents = {model: preset_profile_document(model) for model in PRESETS}
    OUT.write_text(json.dumps(documents, indent=1) + "\n")
    print(f"wrote {OUT}")
