"""Tiny stage 3: the demo's small RefineNet on a ``tiny`` run (``configs/refine.py``).

Command::

  .venv/bin/python train.py --config configs/tiny_refine.py --workdir runs/tiny_refine \
      --config.data.root=runs/demo/anny_small --config.train.init_from=runs/tiny
"""

import ml_collections

from configs import refine, tiny


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  """``tiny`` data and batch with a small RefineNet, 300 steps; ``arg`` is unused."""
  return refine.refine(tiny.get_config(arg), steps=300, ngf=16, n_downsampling=3, n_blocks=3, ndf=16)
