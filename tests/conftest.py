"""Shared pytest setup: CPU-only JAX and the shared data folder."""

import os

# Must be set before jax is imported anywhere: CPU only, two host devices so the
# sharding tests can split a batch.
os.environ.setdefault('JAX_PLATFORMS', 'cpu')
os.environ.setdefault('XLA_FLAGS', '--xla_force_host_platform_device_count=2')

import pytest  # noqa: E402

from head360_jax import assets  # noqa: E402


@pytest.fixture(scope='session')
def shared_data():
  """Path of ``../shared/data`` (or ``$HEAD360_SHARED_DATA``)."""
  return assets.shared_data_dir()
