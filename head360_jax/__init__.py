"""head360-jax: a JAX/Flax reimplementation of Head360 (ECCV 2024)."""
