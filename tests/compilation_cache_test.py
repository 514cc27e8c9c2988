"""The persistent XLA compilation cache: folder selection and switching off."""

import os
import subprocess
import sys

import jax

from head360_jax import compilation_cache


def test_cache_folder_from_environment_and_off_switches(monkeypatch, tmp_path):
  previous = jax.config.jax_compilation_cache_dir
  try:
    monkeypatch.setenv(compilation_cache.ENV, str(tmp_path / 'xla'))
    assert compilation_cache.enable() == tmp_path / 'xla'
    assert (tmp_path / 'xla').is_dir() and jax.config.jax_compilation_cache_dir == str(tmp_path / 'xla')
    assert compilation_cache.enable(False) is None
    monkeypatch.setenv(compilation_cache.ENV, '0')
    assert compilation_cache.cache_path() is None and compilation_cache.enable() is None
    monkeypatch.delenv(compilation_cache.ENV)
    monkeypatch.setenv('HEAD360_CACHE', str(tmp_path / 'cache'))
    assert compilation_cache.cache_path() == tmp_path / 'cache' / 'xla'
  finally:
    jax.config.update('jax_compilation_cache_dir', previous)


def test_a_fresh_process_writes_and_reuses_entries(tmp_path):
  """Two processes compile the same program: the first writes an entry, the second finds it."""
  script = (
    'import jax, jax.numpy as jnp\n'
    'from head360_jax import compilation_cache\n'
    'compilation_cache.enable(min_compile_seconds=0)\n'
    'f = jax.jit(lambda x: jnp.sin(x) @ jnp.cos(x).T)\n'
    'print(float(f(jnp.ones((64, 64))).sum()))\n'
  )
  env = {'HEAD360_COMPILATION_CACHE': str(tmp_path), 'JAX_PLATFORMS': 'cpu'}
  run = lambda: subprocess.run(
    [sys.executable, '-c', script], env={**os.environ, **env}, capture_output=True, text=True, timeout=120
  )
  first = run()
  assert first.returncode == 0, first.stderr
  entries = {p.name: p.stat().st_mtime_ns for p in tmp_path.rglob('*') if p.is_file() and not p.name.endswith('-atime')}
  assert entries, 'no cache entry written'
  second = run()
  assert second.returncode == 0 and second.stdout == first.stdout
  # Read, not rewritten: the same files with the same modification times.
  assert {
    p.name: p.stat().st_mtime_ns for p in tmp_path.rglob('*') if p.is_file() and not p.name.endswith('-atime')
  } == entries
