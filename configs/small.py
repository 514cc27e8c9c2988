"""Small config: the best model found to train on a 2-core CPU in 60 minutes, 128² output.

Commands (the dataset: 4 identities x 5 expressions x 72 views at 128², about 2 minutes)::

  .venv/bin/python -m head360_jax.data.build_dataset --rig anny --identities 4 \
      --expressions jawOpen,eyeBlinkLeft,mouthSmileLeft,browInnerUp,neutral --resolution 128 --seed 0 \
      --out runs/anny_small
  .venv/bin/python train.py --config configs/small.py --workdir runs/small --config.data.root=runs/anny_small

Expected: 128² output from 64² raw renders (one super-resolution block), batch 4; the
held-out figures of G_ema every ``eval_every`` steps (``eval/`` in TensorBoard and the log).
The settings tried and the quality-vs-time curve are in ``docs/quality.md``.
"""

import ml_collections

from configs import tiny


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  """``tiny`` widths at 128² output; ``arg`` is unused."""
  config = tiny.get_config(arg)
  model = config.model
  model.texture_resolution = 128
  model.plane_resolution = 128
  model.neural_resolution = 64
  model.output_resolution = 128
  model.sr_channels = (32,)  # one block 64² -> 128²: the raw render enters it at its own size

  train = config.train
  train.g_lr = 0.01
  train.gan_weight = 0.0  # L1 only: on 2 cores it beats L1 + GAN per minute (docs/quality.md)
  train.ema_kimg = 0.4  # half-life 100 steps: smooths the step-to-step noise of a long run
  train.steps = 20000
  train.max_minutes = 60.0
  train.sample_every = 250
  train.checkpoint_every = 250
  train.eval_every = 250
  return config
