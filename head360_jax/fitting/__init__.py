"""Fitting the model to photographs (ARCHITECTURE D9, paper §3.4)."""
