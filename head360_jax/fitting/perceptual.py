"""LPIPS for the photo fit: the code lives in ``head360_jax.metrics.lpips`` (VGG16 and AlexNet).

The fit (``fitting.appearance``, ``fitting.pipeline``) uses LPIPS-VGG, ``load_lpips('vgg')``.
"""

from head360_jax.metrics.lpips import LpipsParams, load_lpips, lpips

__all__ = ['LpipsParams', 'load_lpips', 'lpips']
