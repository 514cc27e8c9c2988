"""Interpolation between heads: shape code, texture/hair styles (in W), hair only, expression only.

Legend: ``k`` heads, ``n`` frames per segment, ``r`` shape rank, ``w`` style width,
``R`` output resolution.

A head is ``(s, ws, b)``: shape code (r,), styles ``{'texture', 'hair', 'sr'}`` each (1, w)
(``HeadRenderer.styles``) and ARKit weights (52,). Between consecutive heads, ``n`` frames
at ``t = i / (n - 1)``; what moves is chosen by ``mode``:

* ``'all'``: everything; ``'shape'``: ``s`` only; ``'style'``: texture and hair styles;
  ``'hair'``: the hair style only (a hair-swap morph); ``'expression'``: ``b`` only.

Everything else stays at the segment's first head. ``lerp`` is ``(1 - t) a + t b``; ``slerp``
(codes and styles; weights and ``b`` stay linear) is the great-circle path at constant
angular speed with the norm interpolated linearly (SphereHead's and StyleGAN's latent videos
use it for Gaussian codes). Both give exactly ``a`` at ``t = 0`` and ``b`` at ``t = 1``.
"""

import numpy as np

MODES = ('all', 'shape', 'style', 'hair', 'expression')


def _exact_ends(mix):
  """Wraps ``mix(a, b, t)`` (float32 arrays) to return copies of ``a`` at ``t = 0`` and ``b`` at ``t = 1``."""

  def wrapped(a: np.ndarray, b: np.ndarray, t: float) -> np.ndarray:
    a, b = np.asarray(a, np.float32), np.asarray(b, np.float32)
    if t in (0.0, 1.0):
      return (a if t == 0.0 else b).copy()
    return mix(a, b, t).astype(np.float32)

  wrapped.__doc__, wrapped.__name__ = mix.__doc__, mix.__name__
  return wrapped


@_exact_ends
def lerp(a: np.ndarray, b: np.ndarray, t: float) -> np.ndarray:
  """``(1 - t) a + t b`` (exact at both ends)."""
  return (1.0 - t) * a + t * b


@_exact_ends
def slerp(a: np.ndarray, b: np.ndarray, t: float) -> np.ndarray:
  """Spherical interpolation of the directions of ``a`` and ``b`` (last axis), norms interpolated linearly."""
  na = np.linalg.norm(a, axis=-1, keepdims=True)
  nb = np.linalg.norm(b, axis=-1, keepdims=True)
  ua, ub = a / np.maximum(na, 1e-12), b / np.maximum(nb, 1e-12)
  cos = np.clip(np.sum(ua * ub, axis=-1, keepdims=True), -1.0, 1.0)
  omega = np.arccos(cos)
  sin = np.sin(omega)
  safe = sin > 1e-6
  wa = np.where(safe, np.sin((1 - t) * omega) / np.where(safe, sin, 1.0), 1 - t)
  wb = np.where(safe, np.sin(t * omega) / np.where(safe, sin, 1.0), t)
  direction = wa * ua + wb * ub
  direction /= np.maximum(np.linalg.norm(direction, axis=-1, keepdims=True), 1e-12)
  return direction * ((1 - t) * na + t * nb)


def path(heads: list[tuple], frames: int, *, mode: str = 'all', spherical: bool = False) -> list[tuple]:
  """The frames ``(s, ws, b)`` of the interpolation through ``heads`` (k >= 2 of ``(s, ws, b)``).

  Returns:
    ``(k - 1) * (frames - 1) + 1`` heads: each segment's ``frames``, the shared ends once.

  Raises:
    ValueError: for an unknown ``mode``, fewer than 2 heads or fewer than 2 frames.
  """
  if mode not in MODES:
    raise ValueError(f'mode must be one of {MODES}, got {mode!r}')
  if len(heads) < 2 or frames < 2:
    raise ValueError(f'need at least 2 heads and 2 frames, got {len(heads)} and {frames}')
  mix = slerp if spherical else lerp
  out = []
  for (s0, ws0, b0), (s1, ws1, b1) in zip(heads[:-1], heads[1:], strict=True):
    for i in range(1 if out else 0, frames):  # a segment's first frame is the previous one's last
      t = i / (frames - 1)
      s = mix(s0, s1, t) if mode in ('all', 'shape') else np.asarray(s0, np.float32)
      ws = {}
      for name in ws0:
        moves = mode in ('all', 'style') or (mode == 'hair' and name == 'hair')
        ws[name] = mix(ws0[name], ws1[name], t) if moves else np.asarray(ws0[name], np.float32)
      b = lerp(b0, b1, t) if mode in ('all', 'expression') else np.asarray(b0, np.float32)
      out.append((s, ws, b))
  return out
