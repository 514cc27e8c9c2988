"""Training metrics and writers."""
