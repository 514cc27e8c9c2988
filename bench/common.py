"""Helpers shared by the benchmarks in ``bench/`` (configs, timing, a throwaway dataset, memory, XLA costs).

Imported as ``import common`` by scripts run as plain files (``.venv/bin/python bench/<name>.py``
puts ``bench/`` first on ``sys.path``).
"""

import contextlib
import importlib.util
import pathlib
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator

import jax
import psutil

from head360_jax import xla_options
from head360_jax.data import build_dataset
from head360_jax.geometry import bilinear, rig

# Bench scripts are entry points: XLA reads XLA_FLAGS at the first computation, so importing jax above is fine.
xla_options.apply()

REPO = pathlib.Path(__file__).resolve().parent.parent


def load_config(path: str):
  """``get_config()`` of a config file given relative to the repository root (e.g. configs/tiny.py)."""
  spec = importlib.util.spec_from_file_location('bench_config', REPO / path)
  if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))  # configs import configs.base
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module.get_config()


# Precision presets (configs/base.py fields; reference-spec §3.10, §4, §5.2): field -> value.
PRECISIONS = {
  'float32': {'compute_dtype': 'float32', 'g_num_bf16_res': 0, 'sr_num_bf16_res': 0, 'd_num_bf16_res': 0},
  'mixed': {'compute_dtype': 'float32', 'g_num_bf16_res': 0, 'sr_num_bf16_res': 4, 'd_num_bf16_res': 4},
  'bfloat16': {'compute_dtype': 'bfloat16', 'g_num_bf16_res': 0, 'sr_num_bf16_res': 0, 'd_num_bf16_res': 0},
}


def set_precision(config, name: str) -> None:
  """Sets ``config.model``'s precision fields to preset ``name`` (``PRECISIONS``); 'config' leaves them.

  'float32': everything float32; 'mixed': the reference's (SR and the 4 highest discriminator
  resolutions in bfloat16); 'bfloat16': every convolution in bfloat16 (``training/build.py``).
  """
  if name != 'config':
    config.model.update(PRECISIONS[name])


def time_fn(fn: Callable, repeats: int) -> tuple[float, float]:
  """(first call, incl. any compilation; median of ``repeats`` later calls), seconds; blocks on results."""
  start = time.perf_counter()
  jax.block_until_ready(fn())
  first = time.perf_counter() - start
  times = []
  for _ in range(repeats):
    start = time.perf_counter()
    jax.block_until_ready(fn())
    times.append(time.perf_counter() - start)
  return first, statistics.median(times) if times else first


@contextlib.contextmanager
def dataset_root(
  root: str | None, *, resolution: int, num_identities: int = 2, expressions=('neutral',), rank: int | None = None
) -> Iterator[str]:
  """Yields ``root``, or a throwaway anny dataset built at ``resolution`` in a temporary folder.

  ``rank``: the throwaway dataset's ``bilinear.npz`` is built from ``max(rank, num_identities)``
  identities, so it has that rank (for ``model.latent = 'identity_factor'``, whose ``z_dim`` must
  equal it); images are still rendered for ``num_identities`` only (the first identities of the
  same draw, so their meshes agree). None: the builder's own model (rank ``num_identities``).
  """
  if root is not None:
    yield str(root)
    return
  with tempfile.TemporaryDirectory() as tmp:
    build_root(tmp, resolution=resolution, num_identities=num_identities, expressions=expressions, rank=rank)
    yield tmp


def build_root(
  path: str, *, resolution: int, num_identities: int = 2, expressions=('neutral',), rank: int | None = None
) -> str:
  """Builds the benchmark's small anny dataset into ``path`` (see ``dataset_root``); returns ``path``."""
  anny = rig.load_rig('anny')
  pathlib.Path(path).mkdir(parents=True, exist_ok=True)
  if rank is not None:  # written first: build_dataset keeps an existing bilinear.npz
    model = bilinear.build_from_rig(anny, num_identities=max(rank, num_identities), rank=rank, seed=0)
    bilinear.save(model, pathlib.Path(path) / 'bilinear.npz')
  build_dataset.build(
    path,
    rig=anny,
    num_identities=num_identities,
    expressions=list(expressions),
    resolution=resolution,
    seed=0,
    progress=False,
  )
  return path


class PeakRSS:
  """Context manager: peak resident memory of this process while inside, sampled by a thread.

  Attributes after exit: ``start`` (bytes at entry), ``peak`` (max bytes seen), ``delta``
  (``peak - start``), ``seconds`` (wall time inside).
  """

  def __init__(self, interval: float = 0.01):
    self._interval = interval
    self._process = psutil.Process()
    self._stop = threading.Event()
    self.start = self.peak = self.delta = 0
    self.seconds = 0.0

  def _poll(self) -> None:
    while not self._stop.is_set():
      self.peak = max(self.peak, self._process.memory_info().rss)
      self._stop.wait(self._interval)

  def __enter__(self) -> 'PeakRSS':
    self.start = self.peak = self._process.memory_info().rss
    self._thread = threading.Thread(target=self._poll, daemon=True)
    self._t0 = time.perf_counter()
    self._thread.start()
    return self

  def __exit__(self, *exc) -> None:
    self._stop.set()
    self._thread.join()
    self.peak = max(self.peak, self._process.memory_info().rss)
    self.delta = self.peak - self.start
    self.seconds = time.perf_counter() - self._t0


def cost_flops(compiled) -> float | None:
  """FLOPs from ``compiled.cost_analysis()``: a dict (jax >= 0.4.3x) or a one-per-device list of dicts (older)."""
  analysis = compiled.cost_analysis()
  if isinstance(analysis, list | tuple):
    analysis = analysis[0] if analysis else None
  if not analysis:
    return None
  flops = analysis.get('flops')
  return None if flops is None else float(flops)


def memory_bytes(compiled) -> dict[str, int] | None:
  """XLA's buffer sizes of a compiled program: ``arguments``, ``outputs``, ``temp``, ``aliased``, ``total``.

  ``total`` = arguments + outputs + temp - aliased (donated inputs reused as outputs): the
  device memory the program needs at once, parameters included. None where unsupported.
  """
  try:
    stats = compiled.memory_analysis()
  except Exception:  # some backends raise instead of returning None
    return None
  if stats is None:
    return None
  out = {
    'arguments': int(stats.argument_size_in_bytes),
    'outputs': int(stats.output_size_in_bytes),
    'temp': int(stats.temp_size_in_bytes),
    'aliased': int(stats.alias_size_in_bytes),
  }
  out['total'] = out['arguments'] + out['outputs'] + out['temp'] - out['aliased']
  return out


def table(header: list[str], rows: list[list[str]]) -> str:
  """A plain-text table: the first column left-aligned, the others right-aligned, a dashed rule under the header."""
  widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
  cell = lambda i, c, w: str(c).ljust(w) if i == 0 else str(c).rjust(w)
  line = lambda r: '  '.join(cell(i, c, w) for i, (c, w) in enumerate(zip(r, widths, strict=True)))
  return '\n'.join([line(header), '  '.join('-' * w for w in widths), *map(line, rows)])


def gib(num_bytes: float | None) -> str:
  """``'1.23 GiB'`` (or ``'-'`` for None)."""
  return '-' if num_bytes is None else f'{num_bytes / 2**30:.2f} GiB'
