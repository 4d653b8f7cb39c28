"""robust-vit core: pure PyTorch models, attacks, SAM, nullspace and sharpness tools.

Nothing in this package imports Lightning except the command-line entry point (``cli``).
"""

__version__ = "0.1.0"
