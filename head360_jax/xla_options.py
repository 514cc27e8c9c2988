"""XLA:CPU options the entry points set before JAX starts its backend.

XLA reads ``XLA_FLAGS`` once, when the first computation starts the backend, so ``apply`` runs at
the top of each entry point's ``main`` (train.py, render.py, fit.py, ``evaluate``, the benchmarks
in ``bench/`` through ``bench/common.py``, and ``tests/conftest.py``). A flag that ``XLA_FLAGS``
already names keeps the user's value. The flags are XLA:CPU's; other backends ignore them. XLA
aborts the process on a flag it does not know, so a flag whose name the installed jaxlib's
libraries do not contain (a renamed or removed flag in another jax release) is left out with a
warning.

* ``xla_cpu_enable_concurrency_optimized_scheduler=false``: the default scheduler orders a
  program so that independent ops can run side by side, and so keeps many more buffers live at
  once. With it off, G main at the reference's 512² size (``bench/reference_compare.py``, 2-core
  CPU) needs 5.2 GiB of temporaries instead of 11.4 (peak RSS 11.7 instead of 17.2 GiB) and ran
  12.5-12.9 s per step instead of 13.9. (The equivalent ``compiler_options`` of ``jax.jit`` had no
  effect on the schedule on jax 0.10.2, hence the environment variable.)

``release_free_heap`` hands the memory that compiling left free in glibc's heap back to the OS.
XLA:CPU's compiler frees gigabytes of small blocks that glibc keeps mapped, so a process that
compiles and then runs carries the compiler's peak into its run; the training loop compiles its
phases ahead of the first step and calls it before running them.
"""

import ctypes
import ctypes.util
import functools
import importlib.util
import mmap
import os
import pathlib
import warnings
from collections.abc import MutableMapping

CPU_FLAGS = {'xla_cpu_enable_concurrency_optimized_scheduler': 'false'}


@functools.cache
def known_to_jaxlib(name: str) -> bool:
  """Whether the installed jaxlib's shared libraries contain the flag name ``name`` (a byte search, ~10 ms)."""
  spec = importlib.util.find_spec('jaxlib')
  if spec is None or spec.origin is None:
    return False
  libraries = sorted(pathlib.Path(spec.origin).parent.rglob('*.so'), key=lambda path: -path.stat().st_size)
  for path in libraries:
    with open(path, 'rb') as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as data:
      if data.find(name.encode()) >= 0:
        return True
  return False


def apply(environ: MutableMapping[str, str] = os.environ) -> str:
  """Appends ``CPU_FLAGS`` to ``environ['XLA_FLAGS']`` (flags it already names are left alone); returns the value.

  Call before the first JAX computation of the process; later calls change nothing that XLA sees.
  A flag the installed jaxlib does not know (``known_to_jaxlib``) is skipped with a ``RuntimeWarning``.
  """
  current = environ.get('XLA_FLAGS', '')
  extra = []
  for name, value in CPU_FLAGS.items():
    if f'--{name}=' in current:
      continue
    if not known_to_jaxlib(name):
      warnings.warn(f'jaxlib does not know the XLA flag {name}; running without it', RuntimeWarning, stacklevel=2)
      continue
    extra.append(f'--{name}={value}')
  if extra:
    environ['XLA_FLAGS'] = ' '.join([current, *extra]).strip()
  return environ.get('XLA_FLAGS', '')


def release_free_heap() -> bool:
  """Returns the free pages of the C heap to the OS (glibc ``malloc_trim(0)``); False where unavailable.

  Nothing in use is freed: glibc only unmaps pages that hold no live block. G main at the
  reference's 512² size (``bench/reference_compare.py``, 2-core CPU) carries about 2.4 GiB of
  them out of its compilation. Takes milliseconds to a second.
  """
  name = ctypes.util.find_library('c')
  if name is None:
    return False
  libc = ctypes.CDLL(name)
  if not hasattr(libc, 'malloc_trim'):  # musl, macOS
    return False
  libc.malloc_trim(ctypes.c_size_t(0))
  return True
