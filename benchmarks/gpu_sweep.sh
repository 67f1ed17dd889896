#!/usr/bin/env bash
# One-shot sweep benchmark for a lent GPU machine. Run from the repository root:
#     OUT=/some/dir bash benchmarks/gpu_sweep.sh
# Installs jax[cuda12] (unless JAX already sees a GPU) and this package, then times a 1e6-instance
# warm-up sweep and a 1e8-instance sweep (100 x 100 x 10,000 grid, exact solver, every Solution
# field written to Zarr on local disk: ~17 GiB for 1e8 in float64), each in float32 and float64, and
# the solver benchmark (benchmarks/bench_solvers.py, batches up to 1e7, CVXPY beside it on the CPU),
# and writes one JSON, $OUT/gpu_sweep.json.
# Knobs: CHUNK (instances per chunk, default 4194304), POINTS (default 1e6,1e8), STORE_DIR.
set -euo pipefail
OUT=${OUT:-benchmarks/results}
CHUNK=${CHUNK:-4194304}
POINTS=${POINTS:-1e6,1e8}
STORE_DIR=${STORE_DIR:-$(mktemp -d)}
PY=${PYTHON:-python3}
mkdir -p "$OUT"

if ! "$PY" -c 'import jax, sys; sys.exit(jax.default_backend() != "gpu")' 2>/dev/null; then
    "$PY" -m pip install -q "jax[cuda12]"
fi
"$PY" -m pip install -q -e ".[baseline]" zarr xarray
"$PY" -c 'import jax; print("devices:", jax.devices())' | tee "$OUT/gpu_devices.txt"
nvidia-smi --query-gpu=name,memory.total --format=csv | tee -a "$OUT/gpu_devices.txt" || true

"$PY" benchmarks/bench_sweep.py --points "$POINTS" --dtypes float32,float64 --chunk-size "$CHUNK" \
    --store-dir "$STORE_DIR" --compilation-cache "$STORE_DIR/jax-cache" --out "$OUT/gpu_sweep_runs.json" \
    2>&1 | tee "$OUT/gpu_sweep.log"
"$PY" benchmarks/bench_solvers.py --sizes 1,10000,1000000,10000000 --chunk 1000000 --repeats 3 \
    --out "$OUT/gpu_solvers.json" 2>&1 | tee "$OUT/gpu_solvers.log"
rm -rf "$STORE_DIR"
# one JSON: the devices, the sweeps (float32 and float64) and the solver benchmark
"$PY" - "$OUT" <<'EOF'
import json, sys
from pathlib import Path
out = Path(sys.argv[1])
record = {"devices": (out / "gpu_devices.txt").read_text(),
          "sweeps": json.loads((out / "gpu_sweep_runs.json").read_text()),
          "solvers": json.loads((out / "gpu_solvers.json").read_text())}
(out / "gpu_sweep.json").write_text(json.dumps(record, indent=2))
print("wrote", out / "gpu_sweep.json")
EOF
