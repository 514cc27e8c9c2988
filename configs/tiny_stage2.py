"""Tiny stage 2: ``tiny`` sizes, hair detached from the head (``configs/stage2.py``).

Command (the stage-1 run from ``configs/tiny.py`` on the same dataset)::

  .venv/bin/python train.py --config configs/tiny_stage2.py --workdir runs/tiny_stage2 \
      --config.data.root=runs/demo/anny_small --config.train.init_from=runs/tiny
"""

import ml_collections

from configs import stage2, tiny


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  """``tiny`` in stage 2; ``arg`` is unused."""
  return stage2.stage2(tiny.get_config(arg))
