"""Radii as people write them (``8/255``) through the real CLI: exact values, and refusals."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from application.cli import main
from lightning_modules.methods import PGDAT
from robust_vit.threat import parse_radius
from tests.conftest import EXPERIMENTS
from tests.integration.test_cli import CPU_BASE

METHOD_KEY = "model.method.init_args"
EVAL_KEY = "trainer.callbacks.init_args"


def printed_config(argv: list[str], capsys: pytest.CaptureFixture[str]) -> dict:
    """The config ``--print_config`` shows for ``fit`` with these arguments."""
    with pytest.raises(SystemExit) as exit_info:
        main(["fit", *CPU_BASE, *argv, "--print_config"])
    out = capsys.readouterr().out
    assert exit_info.value.code == 0, out
    return yaml.safe_load(out)


def pgd_at(*overrides: str) -> list[str]:
    return ["--config", str(EXPERIMENTS / "method" / "pgd_at.yaml"), *overrides]


SUITE_YAML = """\
trainer:
  inference_mode: false
  callbacks+:
    - class_path: callbacks.AdversarialEval
      init_args:
        epsilons: [2/255, 0.5]
        attacks:
          - class_path: robust_vit.attacks.PGD
            init_args: {eps: 1/255, steps: 2}
"""


def suite(tmp_path: Path, *overrides: str) -> list[str]:
    """An AdversarialEval (the last callback, which overrides reach) with radii in its YAML."""
    path = tmp_path / "suite.yaml"
    path.write_text(SUITE_YAML)
    return ["--config", str(path), *overrides]


def adversarial_eval(config: dict) -> dict:
    """The init_args of the config's AdversarialEval."""
    (found,) = (
        c for c in config["trainer"]["callbacks"] if c["class_path"].endswith("AdversarialEval")
    )
    return found["init_args"]


def test_fractions_from_a_yaml_and_the_command_line_are_exact(
    capsys: pytest.CaptureFixture[str],
) -> None:
    from_yaml = printed_config(pgd_at(), capsys)["model"]["method"]["init_args"]
    assert parse_radius(from_yaml["eps"]) == 4 / 255
    assert parse_radius(from_yaml["alpha"]) == 1 / 255
    given = pgd_at(f"--{METHOD_KEY}.eps=8/255", f"--{METHOD_KEY}.alpha=0.002")
    from_line = printed_config(given, capsys)["model"]["method"]["init_args"]
    assert from_line["eps"] == "8/255" and parse_radius(from_line["eps"]) == 8 / 255
    assert from_line["alpha"] == 0.002


def test_epsilons_and_attack_radii_from_a_yaml_and_the_command_line_are_exact(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from_yaml = adversarial_eval(printed_config(suite(tmp_path), capsys))
    assert [parse_radius(e) for e in from_yaml["epsilons"]] == [2 / 255, 0.5]
    assert parse_radius(from_yaml["attacks"][0]["init_args"]["eps"]) == 1 / 255
    given = suite(tmp_path, f"--{EVAL_KEY}.epsilons=[8/255, 3/255]")
    from_line = adversarial_eval(printed_config(given, capsys))
    assert [parse_radius(e) for e in from_line["epsilons"]] == [8 / 255, 3 / 255]


def test_the_method_gets_a_plain_float() -> None:
    method = PGDAT(eps="8/255", alpha=2 / 255)  # type: ignore[arg-type]
    assert type(method.eps) is float and method.eps == 8 / 255


@pytest.mark.parametrize(
    ("argv", "field"),
    [
        (pgd_at(f"--{METHOD_KEY}.eps=8/0"), f"{METHOD_KEY}.eps"),
        (pgd_at(f"--{METHOD_KEY}.eps=abc"), f"{METHOD_KEY}.eps"),
        (pgd_at(f"--{METHOD_KEY}.alpha=-1/255"), f"{METHOD_KEY}.alpha"),
        (pgd_at(f"--{METHOD_KEY}.eps=300/255"), f"{METHOD_KEY}.eps"),
        (f"--{EVAL_KEY}.epsilons=[1/255, 8/0]", f"{EVAL_KEY}.epsilons"),
        (f"--{EVAL_KEY}.epsilons=[-1/255]", f"{EVAL_KEY}.epsilons"),
        (f"--{EVAL_KEY}.attacks.init_args.eps=abc", f"{EVAL_KEY}.attacks.init_args.eps"),
    ],
    ids=[
        "divide-by-zero",
        "not-a-number",
        "negative",
        "linf-above-1",
        "list-item",
        "list-negative",
        "attack-eps",
    ],
)
def test_malformed_radii_fail_naming_the_key(
    argv: list[str] | str, field: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    given = suite(tmp_path, argv) if isinstance(argv, str) else argv
    with pytest.raises(SystemExit) as exit_info:
        main(["fit", *CPU_BASE, *given, "--print_config"])
    err = capsys.readouterr().err
    assert exit_info.value.code == 2, err
    (line,) = (line for line in err.splitlines() if "error: " in line)
    assert f"error: {field}: " in line, err
    assert "8/255" in line, err
