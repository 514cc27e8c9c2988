#!/usr/bin/env bash
# One-command GPU check: full-size training phases (bf16-mixed and float32), images/s, MFU and
# 512² render frames/s, on a machine whose Python already has jax with CUDA (e.g. the lent H100:
# Python 3.12, jax 0.11, flax, optax, orbax) but not the rest of requirements.txt.
#
# Prepare on a machine with PyPI (here), from the repo root:
#   echo /.whl/ >> .git/info/exclude; echo /.gpu_data/ >> .git/info/exclude
#   python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
#     --platform manylinux_2_28_x86_64 --platform manylinux_2_24_x86_64 --platform manylinux2014_x86_64 \
#     -d .whl grain array_record tensorly trimesh clu ml_collections tensorboardX jaxtyping wadler_lindig \
#     psutil imageio
#   .venv/bin/python bench/train_bench.py --config configs/synhead.py --make-root .gpu_data   # builds the data only
# Then on the GPU machine (carry .whl and .gpu_data):
#   bash bench/gpu_check.sh [WHEELS=.whl] [ROOT=.gpu_data] [BATCH=4] [PEAK_TFLOPS=989] [OUT=$OUT]
#
# MFU = XLA's FLOP count of each compiled phase / its time / PEAK_TFLOPS. The default peak is the
# H100 SXM's dense bf16 tensor-core figure (989 TFLOP/s; H200: the same); float32 runs are
# measured against the same bf16 peak, so their MFU reads low by design. Results: the printed
# tables and $OUT/gpu_check_*.json.
set -euo pipefail
cd "$(dirname "$0")/.."
WHEELS=${WHEELS:-.whl}
ROOT=${ROOT:-.gpu_data}
BATCH=${BATCH:-4}
PEAK_TFLOPS=${PEAK_TFLOPS:-989}
OUT=${OUT:-bench_out}
PY=${PYTHON:-python3}
mkdir -p "$OUT"
if compgen -G "$WHEELS/*.whl" >/dev/null; then
  "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/head360_site "$WHEELS"/*.whl
  export PYTHONPATH=/tmp/head360_site${PYTHONPATH:+:$PYTHONPATH}
fi
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH}
export PYTHONUNBUFFERED=1
"$PY" -c 'import jax; print("jax", jax.__version__, jax.devices())'
[ -d "$ROOT" ] || { echo "gpu_check: dataset $ROOT not found (build it with train_bench.py --make-root)"; exit 2; }
"$PY" bench/train_bench.py --config configs/synhead.py --root "$ROOT" --precision mixed,float32 \
  --batch-size "$BATCH" --repeats 5 --peak-tflops "$PEAK_TFLOPS" --json "$OUT/gpu_check_train.json" \
  2>&1 | tee "$OUT/gpu_check_train.log"
