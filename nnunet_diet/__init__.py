"""nnunet-diet: training-dynamics data pruning for medical imaging."""

__version__ = "0.1.0"
