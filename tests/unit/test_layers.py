"""The house's layers: every import points down (core < data < modules < callbacks < application).

Read from the source with ``ast``, type-only imports included, so a new module that reaches up a
layer fails here before it becomes a habit. Light commands must not pay for Lightning.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO

# Lower rank = lower layer; ``lightning`` (the library) sits with the first Lightning layer.
LAYERS = {
    "robust_vit": 0,
    "datamodules": 1,
    "lightning": 1,
    "pytorch_lightning": 1,
    "lightning_modules": 2,
    "callbacks": 3,
    "application": 4,
}
PACKAGES = ("robust_vit", "datamodules", "lightning_modules", "callbacks", "application")
ENTRY_POINTS = {Path("robust_vit/__main__.py")}  # ``python -m robust_vit``: nothing imports it


def imported_modules(path: Path) -> list[tuple[int, str]]:
    """``(line, module)`` of every absolute import in the file (relative ones stay in a package)."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.append((node.lineno, node.module))
    return found


def upward_imports() -> list[str]:
    """``file:line imports module`` for each import that points up a layer."""
    bad = []
    for package in PACKAGES:
        for path in sorted((REPO / package).rglob("*.py")):
            relative = path.relative_to(REPO)
            if relative in ENTRY_POINTS:
                continue
            for line, module in imported_modules(path):
                rank = LAYERS.get(module.split(".")[0])
                if rank is not None and rank > LAYERS[package]:
                    bad.append(f"{relative}:{line} imports {module}")
    return bad


def test_every_import_points_down_a_layer() -> None:
    assert upward_imports() == []


def test_the_check_sees_an_upward_import(tmp_path: Path) -> None:
    module = tmp_path / "probe.py"
    module.write_text(
        "import torch\nfrom callbacks.results import ResultRecord\n"
        "if True:\n    import lightning.pytorch as pl\n"
    )
    assert imported_modules(module) == [
        (1, "torch"),
        (2, "callbacks.results"),
        (4, "lightning.pytorch"),
    ]


HEAVY = ("lightning", "callbacks", "lightning_modules", "datamodules")


@pytest.mark.parametrize(
    "argv",
    [
        ["sweep", "show", "anf"],
        ["sweep", "make", "anf"],
        ["report", "--help"],
        ["compare", "--help"],
        ["prefetch", "--help"],
    ],
)
def test_light_commands_import_no_lightning(argv: list[str]) -> None:
    probe = (
        "import sys\nfrom application.cli import main\n"
        "try:\n    main(sys.argv[1:])\nexcept SystemExit:\n    pass\n"
        f"print(sorted(m for m in {HEAVY!r} if m in sys.modules))"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe, *argv],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    assert done.stdout.strip().splitlines()[-1] == "[]", done.stdout[-2000:]
