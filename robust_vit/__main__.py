"""``python -m robust_vit``: the ``robust-vit`` command (an entry point, above the layers)."""

from application.cli import main

if __name__ == "__main__":
    main()
