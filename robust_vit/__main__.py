"""``python -m robust_vit``: the same command as ``robust-vit`` (an entry point above the layers)."""

from application.cli import main

if __name__ == "__main__":
    main()
