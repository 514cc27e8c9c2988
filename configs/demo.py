"""Demo config: the quick start's training run, ``tiny`` sizes with the fastest recipe found on 2 cores.

Command (run by ``scripts/demo.sh``; dataset from ``build_dataset --resolution 128``)::

  .venv/bin/python train.py --config configs/demo.py --workdir runs/demo/run \
      --config.data.root=runs/demo/anny_small

Expected (2-core CPU, 0.37-0.48 s/step): 64² output from 32² raw renders, 1000 steps in
8-11 minutes; held-out PSNR 21.9 dB; the held-out figures of G_ema every 250 steps. Against ``tiny`` (GAN + L1,
``g_lr`` 0.0025, two super-resolution blocks, so the 32² raw render is first resized down
to 16²) it trains L1 only at 4× the learning rate through one block that takes the raw
render at its own size; the comparison runs are in ``docs/quality.md``.
"""

import ml_collections

from configs import tiny


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  """``tiny`` with the L1-only recipe; ``arg`` is unused."""
  config = tiny.get_config(arg)
  config.model.sr_channels = (32,)  # one block 32² -> 64²: the raw render is not resized down to 16² first

  train = config.train
  train.g_lr = 0.01
  train.gan_weight = 0.0  # L1 only: per minute of CPU it beats L1 + GAN (docs/quality.md)
  train.steps = 1000
  train.density_reg_interval = 16  # the lazy density regulariser every 16 steps instead of 4: shorter steps
  train.sample_every = 250
  train.checkpoint_every = 250
  train.eval_every = 250
  return config
