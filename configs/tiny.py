"""Tiny config: every stage of the pipeline at toy size, for CPU tests, smoke runs and the demo.

Command (2-core CPU; dataset from ``scripts/demo.sh`` or ``build_dataset --resolution 128``)::

  .venv/bin/python train.py --config configs/tiny.py --workdir runs/tiny \
      --config.data.root=runs/demo/anny_small

Expected: 64² output, 32² raw renders, batch 4; a few hundred steps in minutes
(the step time is printed in the progress line).
"""

import ml_collections

from configs import base


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  """Tiny sizes on top of ``base``; ``arg`` is unused."""
  config = base.get_config(arg)
  model = config.model
  model.z_dim = 32
  model.w_dim = 64
  model.texture_resolution = 64
  model.texture_channels = 8
  model.plane_resolution = 64
  model.plane_channels = 16
  model.channel_base = 1024
  model.channel_max = 64
  model.decoder_hidden = 32
  model.feature_channels = 16
  model.num_coarse = 12
  model.num_fine = 12
  model.neural_resolution = 32
  model.output_resolution = 64
  model.sr_channels = (32, 16)
  model.sr_noise_dim = 32
  model.d_channel_base = 1024
  model.d_channel_max = 64
  model.sr_num_bf16_res = 0  # float32 throughout: bfloat16 convolutions are slower on CPU
  model.d_num_bf16_res = 0

  train = config.train
  train.batch_size = 4
  train.steps = 300
  train.density_reg_points = 256
  train.ema_kimg = 0.1  # half-life 100 images: the EMA follows a short run
  train.blur_fade_kimg = 0.0  # no blur at 64²
  train.gpc_fade_kimg = 0.0
  train.log_every = 10
  train.sample_every = 100
  train.num_samples = 4
  train.checkpoint_every = 100
  train.eval_every = 100

  config.data.resolution = 128
  config.data.held_out_views = tuple(range(3, 72, 8))  # 9 of the 72 cameras, for the demo's held-out L1
  return config
