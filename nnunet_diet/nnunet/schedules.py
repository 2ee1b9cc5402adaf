"""Epoch and iteration counts of the short DAD trainer variants (no torch import: the CLI reads them)."""

EPOCHS = (5, 6, 10, 20, 30, 50, 100, 250, 500)
ITERATIONS = (3, 5, 10, 25, 50)
