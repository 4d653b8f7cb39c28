"""``python -m robust_vit``: the same command as ``robust-vit``."""

from robust_vit.cli import main

if __name__ == "__main__":
    main()
