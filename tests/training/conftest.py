"""Training tests: compile fast and share compiled steps between tests (persistent cache in a temp dir)."""

import jax
import pytest
from jax._src import compilation_cache

_SETTINGS = {
  'jax_disable_most_optimizations': True,  # house style: compile time dominates these tiny steps
  'jax_persistent_cache_min_compile_time_secs': 0.0,
  'jax_persistent_cache_min_entry_size_bytes': 0,
}


@pytest.fixture(scope='session', autouse=True)
def fast_compilation(tmp_path_factory):
  """Sets the settings above and a compilation cache dir for the training tests, then restores them."""
  settings = _SETTINGS | {'jax_compilation_cache_dir': str(tmp_path_factory.mktemp('jax_cache'))}
  previous = {name: jax.config.values[name] for name in settings}
  for name, value in settings.items():
    jax.config.update(name, value)
  compilation_cache.reset_cache()
  yield
  for name, value in previous.items():
    jax.config.update(name, value)
  compilation_cache.reset_cache()
