"""Model-test fixtures."""

import jax
import pytest


@pytest.fixture
def fast_compile():
  """Compile time dominates the toy generator: XLA optimisations off for one test, then restored."""
  previous = jax.config.values['jax_disable_most_optimizations']
  jax.config.update('jax_disable_most_optimizations', True)
  yield
  jax.config.update('jax_disable_most_optimizations', previous)
