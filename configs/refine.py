"""Stage 3 (RefineNet, paper §3.3; ``head360_jax/training/refine_loop.py``) on top of any config.

``refine(config, ...)`` adds the ``refine`` section: pix2pixHD's global generator and
multi-scale discriminator sizes (pix2pixHD defaults: ngf 64, 4 downsamplings, 9 residual
blocks, ndf 64, 3 layers, 2 scales), its loss weights (feature matching 10, VGG 10) and Adam
(2e-4, β1 0.5). ``train.py`` trains the RefineNet alone when a config has this section, on
the renders of ``--config.train.init_from=<run>`` (its EMA generator, frozen).
"""

import ml_collections


def refine(
  config: ml_collections.ConfigDict,
  *,
  steps: int,
  ngf: int = 64,
  n_downsampling: int = 4,
  n_blocks: int = 9,
  ndf: int = 64,
  num_d: int = 2,
) -> ml_collections.ConfigDict:
  """``config`` with a ``refine`` section and ``steps`` RefineNet iterations (sizes: pix2pixHD's names)."""
  config.refine = ml_collections.ConfigDict(
    {
      'ngf': ngf,
      'n_downsampling': n_downsampling,
      'n_blocks': n_blocks,
      'ndf': ndf,
      'n_layers_d': 3,
      'num_d': num_d,
      'lambda_feat': 10.0,  # feature matching and VGG weights (pix2pixHD --lambda_feat)
      'learning_rate': 2e-4,
      'vgg_loss': True,
    }
  )
  config.train.steps = steps
  return config
