"""Shared pytest setup: CPU-only JAX and the shared data folder."""

import os

# Must be set before jax is imported anywhere: CPU only, two host devices so the
# sharding tests can split a batch; XLA:CPU without LLVM's expensive passes compiles the
# tests' many small programs 15-20 % faster at no cost in run time (bench/train_bench.py).
os.environ.setdefault('JAX_PLATFORMS', 'cpu')
os.environ.setdefault('XLA_FLAGS', '--xla_force_host_platform_device_count=2 --xla_llvm_disable_expensive_passes=true')

from head360_jax import xla_options  # noqa: E402

xla_options.apply()  # the entry points' XLA:CPU options, so the tests run what users run

import jax  # noqa: E402
import pytest  # noqa: E402

from head360_jax import assets  # noqa: E402


@pytest.fixture(scope='session')
def shared_data():
  """Path of ``../shared/data`` (or ``$HEAD360_SHARED_DATA``)."""
  return assets.shared_data_dir()


def pytest_collection_modifyitems(config, items):
  """Runs the ``slow``-marked tests first (stable order otherwise).

  With ``pytest -n 2 --dist loadfile`` (README's test command) the longest files then start
  on the two workers at once instead of being left for the end of the run.
  """
  items.sort(key=lambda item: item.get_closest_marker('slow') is None)


@pytest.fixture(scope='module')
def toy_run(tmp_path_factory):
  """A step-0 toy run (``render_run.write_step0_run``: 16² output) in ``<tmp>/run``, XLA optimisations off.

  Compile time dominates at toy size, so the module's programs compile without most
  optimisations; the setting is restored after the module.
  """
  from render_run import write_step0_run

  previous = jax.config.values['jax_disable_most_optimizations']
  jax.config.update('jax_disable_most_optimizations', True)
  yield write_step0_run(tmp_path_factory.mktemp('toy'))
  jax.config.update('jax_disable_most_optimizations', previous)


@pytest.fixture(scope='module')
def toy_renderer(toy_run):
  """``inference.HeadRenderer`` of ``toy_run``."""
  from head360_jax import inference

  return inference.HeadRenderer(toy_run)
