"""GAN, regularisation and photometric losses (reference-spec §5.1): pure functions.

Legend: ``b`` batch, ``h w`` image size, ``c`` channels, ``n`` density sample points.
Logits are the discriminator's raw scores ``D(·)`` (b, 1); images are NHWC in [-1, 1].

The GAN losses are the non-saturating logistic forms of StyleGAN2/EG3D written with
``softplus`` (``softplus(x) = log(1 + e^x)``, stable for large ``|x|``):
``L_G = softplus(−D(G))``, ``L_D = softplus(D(G)) + softplus(−D(x))``.
"""

import jax
import jax.numpy as jnp
from jaxtyping import Array, Float

from head360_jax.models import layers


def generator_loss(fake_logits: Float[Array, 'b 1']) -> Float[Array, '']:
  """Non-saturating generator loss ``mean softplus(−D(G(z)))``."""
  return jnp.mean(jax.nn.softplus(-fake_logits))


def discriminator_loss_fake(fake_logits: Float[Array, 'b 1']) -> Float[Array, '']:
  """Discriminator loss on generated images ``mean softplus(D(G(z)))``."""
  return jnp.mean(jax.nn.softplus(fake_logits))


def discriminator_loss_real(real_logits: Float[Array, 'b 1']) -> Float[Array, '']:
  """Discriminator loss on real images ``mean softplus(−D(x))``."""
  return jnp.mean(jax.nn.softplus(-real_logits))


def view_consistency_loss(mismatched_logits: Float[Array, 'b 1']) -> Float[Array, '']:
  """View-image consistency loss of the discriminator ``mean softplus(D(x, c'))``, ``c'`` a wrong camera.

  The fake term of ``L_D`` applied to real images ``x`` scored with camera labels ``c'`` that
  do not match them (``camera.mismatched_labels``): a camera-conditioned D learns that an image
  must agree with its camera, so G cannot pass a face rendered on the back of the head
  (SphereHead, Li et al. 2024, arXiv 2404.05680 §3, "view-image consistency loss").

  Ours, not SphereHead's: the mismatch construction (a yaw offset uniform in 90-270 deg) and
  the weight (``train.view_consistency``, constant over training, 1 when enabled). SphereHead's
  released repository (lhyfst/SphereHead) contains only the model and renderer, not the
  training loop or this loss, so its weight and schedule are unknown.

  Args:
    mismatched_logits: ``D(real image, real raw image, mismatched label)``, (b, 1).

  Returns:
    () float, >= 0; ``log 2`` at logits 0.
  """
  return jnp.mean(jax.nn.softplus(mismatched_logits))


def r1_penalty(grad_image: Float[Array, 'b H W c'], grad_image_raw: Float[Array, 'b h w c']) -> Float[Array, ' b']:
  """Per-sample squared gradient norm ``‖∇_image D‖² + ‖∇_image_raw D‖²`` of the dual discriminator.

  The R1 loss is ``γ/2 · mean_b(r1_penalty)`` (reference-spec §5.1), scaled by the lazy
  regularisation interval when it runs every ``interval`` steps.

  Args:
    grad_image: gradient of ``sum_b D`` with respect to the real high-resolution images.
    grad_image_raw: the same with respect to the real raw (neural rendering) images.
  """
  return jnp.sum(jnp.square(grad_image), axis=(1, 2, 3)) + jnp.sum(jnp.square(grad_image_raw), axis=(1, 2, 3))


def density_regularisation(sigma: Float[Array, 'b n 1'], sigma_perturbed: Float[Array, 'b n 1']) -> Float[Array, '']:
  """Density smoothness ``mean |σ(p) − σ(p + δ)|`` (reference-spec §5.1; weight 0.25 applied by the caller)."""
  return jnp.mean(jnp.abs(sigma - sigma_perturbed))


def l1_photometric(image: Float[Array, 'b h w c'], target: Float[Array, 'b h w c']) -> Float[Array, '']:
  """Mean absolute error over pixels, channels and batch (the reference's 100× L1 term, unweighted)."""
  return jnp.mean(jnp.abs(image - target))


def blur(images: Float[Array, 'b h w c'], sigma: Float[Array, ''] | float, max_sigma: float) -> Float[Array, 'b h w c']:
  """Blurs images with EG3D's fading kernel ``2^(−(x/σ)²)``, ``|x| ≤ ⌊3σ⌋`` (reference-spec §5.1).

  The kernel is separable and zero-padded at the borders, as EG3D's ``upfirdn2d.filter``.
  ``sigma`` may be a traced value: the kernel always has ``2⌊3·max_sigma⌋ + 1`` taps, the
  ones beyond ``⌊3σ⌋`` weighted zero, so one compiled step serves the whole fade. Once the
  fade is over (``σ = 0``) a ``lax.cond`` returns the images unchanged without filtering, so
  the (61-tap at 512²) filter costs nothing after ``blur_fade_kimg``.

  Args:
    images: NHWC images.
    sigma: blur width in pixels, ``0 ≤ sigma ≤ max_sigma``.
    max_sigma: the largest ``sigma`` of the run (static; fixes the kernel size).
  """
  radius = int(3 * max_sigma)
  if radius == 0:
    return images
  sigma = jnp.asarray(sigma, jnp.float32)

  def filtered(images):
    x = jnp.arange(-radius, radius + 1, dtype=jnp.float32)
    safe_sigma = jnp.maximum(sigma, 1e-8)
    inside = jnp.abs(x) <= jnp.floor(3 * sigma)
    taps = jnp.where(inside, jnp.exp2(-jnp.square(x / safe_sigma)), 0.0)
    taps = jnp.where(sigma > 0, taps, (x == 0).astype(jnp.float32))
    taps = taps / jnp.sum(taps)
    return layers.upfirdn2d(images, taps, padding=(radius, radius, radius, radius))

  return jax.lax.cond(sigma > 0, filtered, lambda images: images, images)
