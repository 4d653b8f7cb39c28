"""robust-vit core: pure PyTorch models, attacks, SAM, ANF, nullspace, sharpness and samplers.

Nothing in this package imports Lightning or the layers above it (``datamodules``,
``lightning_modules``, ``callbacks``, ``application``); ``__main__`` is only the entry point.
"""

__version__ = "0.1.0"
