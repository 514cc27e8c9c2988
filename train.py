"""head360-jax `train.py`: not implemented yet.

The train command arrives with its own issue (see README, "Status"). Until then this entry
point exits with a clear message instead of failing halfway.
"""

import sys

if __name__ == '__main__':
  sys.exit(
    'train.py is not implemented yet: the geometry and data foundation is in place; '
    'see README.md "Status" for what works today.'
  )
