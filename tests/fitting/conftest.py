"""Fitting-test fixtures."""

import jax
import pytest


@pytest.fixture(scope='module')
def fast_compilation():
  """Compile time dominates toy-size programs: XLA optimisations off for a module, then restored.

  Use with ``pytestmark = pytest.mark.usefixtures('fast_compilation')``.
  """
  previous = jax.config.values['jax_disable_most_optimizations']
  jax.config.update('jax_disable_most_optimizations', True)
  yield
  jax.config.update('jax_disable_most_optimizations', previous)
