"""head360-jax `fit.py`: fitting the model to one photograph is not implemented yet (issue 5).

Until then this entry point exits with a clear message instead of failing halfway.
Training (`train.py`) and rendering (`render.py`) work; see README.md "Status".
"""

import sys

if __name__ == '__main__':
  sys.exit('fit.py is not implemented yet (issue 5); train.py and render.py work, see README.md "Status".')
