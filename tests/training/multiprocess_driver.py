"""``train.py`` with the stand-in networks, for ``multiprocess_test.py``: one process of a (multi-process) run.

Usage: ``python multiprocess_driver.py --history PREFIX <train.py flags>``. Runs ``train.main``
unchanged except that ``head360_jax.training.build`` is replaced by the stand-ins (compiled
in seconds) and each process writes the ``{step: metrics}`` history its
``loop.train_and_evaluate`` returned to ``PREFIX.<process index>.json``. Compiles with
``jax_disable_most_optimizations`` like the in-process training tests
(``tests/training/conftest.py``), so their numbers can be compared.
"""

import json
import pathlib
import sys
import types

ROOT = pathlib.Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

import jax  # noqa: E402
import standins  # noqa: E402
from absl import app, flags  # noqa: E402

import train  # noqa: E402
from head360_jax.training import loop  # noqa: E402

_HISTORY = flags.DEFINE_string('history', None, 'Write this process history to <history>.<process index>.json.')
flags.mark_flag_as_required('history')


def main(argv: list[str]) -> None:
  jax.config.update('jax_disable_most_optimizations', True)
  build = types.ModuleType('head360_jax.training.build')
  build.build_models = standins.build_models
  sys.modules['head360_jax.training.build'] = build  # train.main imports build_models from here
  train_and_evaluate = loop.train_and_evaluate

  def recording(*args, **kwargs):
    history = train_and_evaluate(*args, **kwargs)
    path = pathlib.Path(f'{_HISTORY.value}.{jax.process_index()}.json')
    path.write_text(json.dumps({str(step): metrics for step, metrics in history.items()}))
    return history

  loop.train_and_evaluate = recording
  train.main(argv)


if __name__ == '__main__':
  app.run(main)
