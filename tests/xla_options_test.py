"""head360_jax.xla_options: the XLA:CPU flags the entry points add to XLA_FLAGS."""

import os
import sys

import psutil
import pytest

from head360_jax import xla_options

FLAG = '--xla_cpu_enable_concurrency_optimized_scheduler'


def test_apply_appends_missing_flags_and_keeps_the_users():
  env = {'XLA_FLAGS': '--xla_force_host_platform_device_count=2'}
  value = xla_options.apply(env)
  assert value == env['XLA_FLAGS'] == f'--xla_force_host_platform_device_count=2 {FLAG}=false'
  assert xla_options.apply(env) == value  # idempotent

  user = {'XLA_FLAGS': f'{FLAG}=true'}
  assert xla_options.apply(user) == f'{FLAG}=true'  # the user's choice wins

  empty = {}
  assert xla_options.apply(empty) == f'{FLAG}=false'


def test_the_test_processes_run_with_the_entry_points_flags():
  # tests/conftest.py applies them before jax starts, as train.py, render.py and fit.py do.
  assert f'{FLAG}=false' in os.environ['XLA_FLAGS']


def test_a_flag_jaxlib_does_not_know_is_skipped_with_a_warning(monkeypatch):
  # XLA aborts the whole process on an unknown flag in XLA_FLAGS, so apply() must never add one.
  assert xla_options.known_to_jaxlib('xla_cpu_enable_concurrency_optimized_scheduler')
  assert not xla_options.known_to_jaxlib('xla_cpu_no_such_flag_in_any_release')
  monkeypatch.setattr(xla_options, 'CPU_FLAGS', {'xla_cpu_no_such_flag_in_any_release': 'true'})
  env = {'XLA_FLAGS': '--xla_force_host_platform_device_count=2'}
  with pytest.warns(RuntimeWarning, match='does not know'):
    assert xla_options.apply(env) == '--xla_force_host_platform_device_count=2'


@pytest.mark.skipif(not sys.platform.startswith('linux'), reason='glibc malloc_trim is Linux-only')
def test_release_free_heap_returns_the_holes_a_fragmented_heap_keeps():
  """Freed blocks pinned between live ones (as after a compile) stay resident until the trim hands them back."""
  process = psutil.Process()
  pairs = [(bytearray(16384), bytearray(600)) for _ in range(16_000)]  # 256 MiB of blocks, each followed by a pin
  pins = [pin for _, pin in pairs]
  del pairs  # the large blocks are free now, but the pins keep glibc from shrinking the heap
  before = process.memory_info().rss
  assert xla_options.release_free_heap() is True
  assert before - process.memory_info().rss > 128 * 2**20
  del pins
