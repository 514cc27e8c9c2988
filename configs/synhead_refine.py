"""SynHead100 stage 3: pix2pixHD's default global generator on the 512² renders (``configs/refine.py``).

Command (after ``configs/synhead.py`` or its stage 2)::

  python train.py --config configs/synhead_refine.py --workdir runs/synhead_refine \
      --config.data.root=/path/to/SynHead100 --config.train.init_from=runs/synhead_stage2

The paper does not give the RefineNet's training length; pix2pixHD trains 200 epochs.
"""

import ml_collections

from configs import refine, synhead


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  """``synhead`` data with pix2pixHD's default sizes, batch 8, 100 k steps; ``arg`` is unused."""
  config = refine.refine(synhead.get_config(arg), steps=100_000)
  config.train.batch_size = 8
  return config
