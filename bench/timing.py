"""Wall-clock timing shared by the benchmarks, free of JAX (``torch_calibration.py`` runs without it)."""

import statistics
import time
from collections.abc import Callable


def median_time(fn: Callable[[], object], repeats: int) -> float:
  """Seconds: the median of ``repeats`` calls of ``fn()`` after one untimed warm-up call."""
  fn()
  times = []
  for _ in range(repeats):
    start = time.perf_counter()
    fn()
    times.append(time.perf_counter() - start)
  return statistics.median(times)
