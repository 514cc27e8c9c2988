"""Training: train state, losses, schedules, step functions and the loop (ARCHITECTURE D7)."""
