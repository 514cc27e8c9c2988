"""Persistent XLA compilation cache for the entry points (train.py, render.py, fit.py, evaluate).

A full-size training phase takes 20-60 s to compile on CPU and the tiny config's first calls
5-24 s each; with the cache a second run of the same program on the same machine and jax
version loads the compiled executables instead. The cache lives in ``<cache_dir()>/xla``
(``HEAD360_CACHE``, default ``~/.cache/head360_jax``; see ``assets.cache_dir``) unless
``HEAD360_COMPILATION_CACHE`` names another folder; ``HEAD360_COMPILATION_CACHE=0`` or an
entry point's ``--nocompilation_cache`` turns it off. Entries are keyed by jax on the
program, the jax/jaxlib version, the backend and the compile options, so a stale entry is never
used; the folder may be deleted at any time.
"""

import os
import pathlib

import jax

from head360_jax import assets

ENV = 'HEAD360_COMPILATION_CACHE'
_OFF = {'0', 'off', 'false', 'no'}


def cache_path() -> pathlib.Path | None:
  """The cache folder the environment selects (``$HEAD360_COMPILATION_CACHE`` or ``<cache_dir>/xla``); None if off."""
  value = os.environ.get(ENV, '').strip()
  if value.lower() in _OFF:
    return None
  return pathlib.Path(value) if value else assets.cache_dir() / 'xla'


def enable(enabled: bool = True, *, min_compile_seconds: float = 0.5) -> pathlib.Path | None:
  """Turns on jax's persistent compilation cache (``jax_compilation_cache_dir``); returns its folder.

  Args:
    enabled: False leaves the cache off (an entry point's ``--nocompilation_cache``).
    min_compile_seconds: only programs that took at least this long to compile are written.

  Returns:
    The folder in use, or None when the cache is off (``enabled`` False or
    ``HEAD360_COMPILATION_CACHE=0``).
  """
  path = cache_path() if enabled else None
  if path is None:
    return None
  path.mkdir(parents=True, exist_ok=True)
  jax.config.update('jax_compilation_cache_dir', str(path))
  jax.config.update('jax_persistent_cache_min_compile_time_secs', float(min_compile_seconds))
  jax.config.update('jax_persistent_cache_min_entry_size_bytes', 0)
  return path
