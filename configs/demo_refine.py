"""Demo stage 3: a small RefineNet on the demo run's 64² renders (``configs/refine.py``).

Command (after the demo's run)::

  .venv/bin/python train.py --config configs/demo_refine.py --workdir runs/demo/refine \
      --config.data.root=runs/demo/anny_small --config.train.init_from=runs/demo/run

Sizes: ngf 16, 3 downsamplings (64² -> 8²), 3 residual blocks, ndf 16, 2 scales.
"""

import ml_collections

from configs import demo, refine


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  """``demo`` data and batch with a small RefineNet, 1000 steps; ``arg`` is unused."""
  config = refine.refine(demo.get_config(arg), steps=1000, ngf=16, n_downsampling=3, n_blocks=3, ndf=16)
  return config
