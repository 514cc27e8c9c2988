"""Flax NNX modules of the Head360 generator and discriminator (parameters only; math in pure functions)."""
