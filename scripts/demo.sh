#!/usr/bin/env bash
# The quick-start demo: set up .venv, build a small anny dataset in the SynHead100 layout,
# and report how well the bilinear (Tucker) model fits the rig.
# Outputs go to ${DEMO_DIR:-runs/demo} (ignored by git). Re-running resumes the build.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
out=${DEMO_DIR:-runs/demo}
mkdir -p "$out"
.venv/bin/python -m head360_jax.data.build_dataset --rig anny --identities 4 \
  --expressions jawOpen,eyeBlinkLeft,mouthSmileLeft,browInnerUp,neutral --resolution 128 --seed 0 \
  --out "$out/anny_small"
.venv/bin/python -m head360_jax.geometry.build_bilinear --rig anny --identities 100 --rank 50 \
  --out "$out/anny_bilinear_100.npz"
echo "demo done: dataset in $out/anny_small, model in $out/anny_bilinear_100.npz"
