"""Through the real CLI, a rule across a nested method's fields names the key as typed."""

from __future__ import annotations

from pathlib import Path

import pytest

from application.cli import main
from tests.integration.test_cli import CPU_BASE, tiny_overrides

COMPOSITE = """model:
  method:
    class_path: lightning_modules.methods.Composite
    init_args:
      terms:
        - class_path: lightning_modules.methods.PGDAT
        - class_path: lightning_modules.methods.ANF
          init_args: {noise_units: token_rms, space: image}
"""


def test_a_composite_term_is_refused_under_its_own_key(
    tmp_path: Path,
    fmnist_dir: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    overlay = tmp_path / "composite.yaml"
    overlay.write_text(COMPOSITE)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as exit_info:
        main(["fit", *CPU_BASE, *tiny_overrides(fmnist_dir), "--config", str(overlay)])
    err = capsys.readouterr().err
    assert exit_info.value.code == 2, err
    assert "model.method.init_args.terms[1].init_args.noise_units: token_rms" in err, err
