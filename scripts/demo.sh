#!/usr/bin/env bash
# The quick-start demo (about 10 minutes on a 2-core CPU):
#   1. set up .venv from requirements.txt;
#   2. build a small anny dataset in the SynHead100 layout (4 identities x 5 expressions x 72 views, 128²);
#   3. train configs/tiny.py on it (300 steps; rerunning resumes);
#   4. render 360° orbits (PNG grid + GIF) of two training identities, one with an open jaw;
#   5. print the held-out L1 (9 camera views never trained on) at step 0 and after training;
#   6. fit the trained model to a photo (fit.py) and orbit the fitted head with an open jaw.
# Outputs go to ${DEMO_DIR:-runs/demo} (ignored by git).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
out=${DEMO_DIR:-runs/demo}
mkdir -p "$out"
py=.venv/bin/python
$py -m head360_jax.data.build_dataset --rig anny --identities 4 \
  --expressions jawOpen,eyeBlinkLeft,mouthSmileLeft,browInnerUp,neutral --resolution 128 --seed 0 \
  --out "$out/anny_small"
$py train.py --config configs/tiny.py --workdir "$out/tiny" --config.data.root="$out/anny_small"
$py render.py --workdir "$out/tiny" --identities 0,1 --views 24 --pitch 10
$py render.py --workdir "$out/tiny" --identities 1 --views 24 --pitch 10 --expression jawOpen=1
$py -m head360_jax.training.evaluate --workdir "$out/tiny"
faces=${HEAD360_SHARED_DATA:-../shared/data}/faces
$py fit.py --workdir "$out/tiny" --image "$faces/man.jpg" --out "$out/fitted/man"
$py render.py --workdir "$out/tiny" --fitted "$out/fitted/man/fitted.npz" --views 24 --expression jawOpen=1
echo "demo done: dataset $out/anny_small, run $out/tiny (tensorboard --logdir $out/tiny), orbits in $out/tiny/renders, photo fit in $out/fitted/man"
