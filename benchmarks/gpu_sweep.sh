#!/usr/bin/env bash
# One-shot sweep benchmark for a lent GPU machine. Run from the repository root:
#     OUT=/some/dir bash benchmarks/gpu_sweep.sh
# Installs jax[cuda12] (unless JAX already sees a GPU) and this package, then times a 1e6-instance
# warm-up sweep and a 1e8-instance sweep (100 x 100 x 10,000 grid, exact solver, every Solution
# field written to Zarr on local disk: ~17 GiB for 1e8), and writes the JSON to $OUT/gpu_sweep.json.
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
"$PY" -m pip install -q -e . zarr xarray
"$PY" -c 'import jax; print("devices:", jax.devices())' | tee "$OUT/gpu_devices.txt"
nvidia-smi --query-gpu=name,memory.total --format=csv | tee -a "$OUT/gpu_devices.txt" || true

"$PY" benchmarks/bench_sweep.py --points "$POINTS" --chunk-size "$CHUNK" --store-dir "$STORE_DIR" \
    --compilation-cache "$STORE_DIR/jax-cache" --out "$OUT/gpu_sweep.json" 2>&1 | tee "$OUT/gpu_sweep.log"
rm -rf "$STORE_DIR"
