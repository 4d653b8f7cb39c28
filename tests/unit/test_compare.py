from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from application.cli import main
from application.compare import family_reading
from robust_vit.outcomes import Outcomes, write_outcomes
from robust_vit.paired import Method, PairedDifference

COLUMNS = ("clean", "pgd20_linf@8/255", "worst_case@8/255")


def write_run(
    folder: Path,
    seed: int,
    accuracy: float,
    n: int = 400,
    columns: tuple[str, ...] = COLUMNS,
    first_index: int = 0,
) -> Path:
    """A run folder: results.json whose adversarial.test section references its outcomes."""
    rng = np.random.default_rng(seed)
    easy = np.random.default_rng(99).random(n)  # the same examples are easy for every run
    bits = {c: torch.from_numpy(easy * 0.5 + rng.random(n) * 0.5 < accuracy) for c in columns}
    outcomes = Outcomes(torch.arange(first_index, first_index + n), bits)
    digest = write_outcomes(folder / "adversarial_test.outcomes.safetensors", outcomes)
    reference = {"file": "adversarial_test.outcomes.safetensors", "sha256": digest, "n": n}
    record = {"test": {"metrics": {}}, "adversarial": {"test": {"per_example": reference}}}
    (folder / "results.json").write_text(json.dumps(record))
    return folder


def write_group(root: Path, seeds: list[int], accuracy: float) -> Path:
    for seed in seeds:
        write_run(root / f"seed{seed}" / "version_0", seed + int(100 * accuracy), accuracy)
    return root


def test_compare_prints_a_row_per_outcome_with_its_interval(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    a = write_group(tmp_path / "anf", [0, 1, 2], 0.8)
    b = write_group(tmp_path / "erm", [0, 1, 2], 0.5)
    main(["compare", str(a), str(b), "--replicates", "300"])
    out = capsys.readouterr().out
    assert "seeds 0, 1, 2" in out and "two-level bootstrap" in out
    rows = [line for line in out.splitlines() if line.startswith("| adversarial.test")]
    assert sorted(row.split(" | ")[1] for row in rows) == sorted(COLUMNS)
    assert all(row.rstrip(" |").endswith("better") for row in rows)
    assert all(row.split(" | ")[-2] == "3" for row in rows)  # seeds


def test_a_single_run_against_a_group_is_a_fixed_model(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    a = write_group(tmp_path / "anf", [0, 1], 0.6)
    b = write_run(tmp_path / "pretrained", 5, 0.6)
    main(["compare", str(a), str(b), "--replicates", "300"])
    out = capsys.readouterr().out
    assert "single fixed model, no training variance" in out
    assert "2 (B fixed)" in out


def test_one_run_per_arm_is_mcnemar(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    a = write_run(tmp_path / "a", 1, 0.6)
    b = write_run(tmp_path / "b", 2, 0.6)
    main(["compare", str(a), str(b)])
    assert "exact McNemar" in capsys.readouterr().out


def refusal(capsys: pytest.CaptureFixture[str], a: Path, b: Path) -> str:
    with pytest.raises(SystemExit) as exit_info:
        main(["compare", str(a), str(b), "--replicates", "50"])
    assert exit_info.value.code == 2
    return capsys.readouterr().err


def test_different_examples_are_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    a = write_run(tmp_path / "a", 1, 0.6)
    b = write_run(tmp_path / "b", 2, 0.6, first_index=3)
    err = refusal(capsys, a, b)
    assert "robust-vit: error: B:" in err and "different examples" in err
    assert "6 dataset indices in one only, first [0, 1, 2, 400, 401]" in err


def test_different_attacks_are_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    a = write_run(tmp_path / "a", 1, 0.6)
    b = write_run(tmp_path / "b", 2, 0.6, columns=("clean", "pgd20_linf@4/255", "worst_case@8/255"))
    err = refusal(capsys, a, b)
    assert "only A has ['pgd20_linf@8/255'], only B has ['pgd20_linf@4/255']" in err


def test_a_seed_that_evaluated_other_examples_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    a = write_group(tmp_path / "anf", [0, 1], 0.6)
    write_run(tmp_path / "anf" / "seed1" / "version_0", 1, 0.6, n=300)
    err = refusal(capsys, a, write_group(tmp_path / "erm", [0, 1], 0.6))
    assert "of A seed 1" in err and "A 400, B 300" in err


def test_different_seeds_are_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    a = write_group(tmp_path / "anf", [0, 1], 0.6)
    b = write_group(tmp_path / "erm", [0, 2], 0.6)
    assert "only A has ['1'], only B has ['2']" in refusal(capsys, a, b)


def test_a_missing_file_is_named(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    a = write_run(tmp_path / "a", 1, 0.6)
    b = write_run(tmp_path / "b", 2, 0.6)
    (b / "adversarial_test.outcomes.safetensors").unlink()
    err = refusal(capsys, a, b)
    assert "adversarial.test.per_example.file names" in err
    assert str(b / "adversarial_test.outcomes.safetensors") in err


def test_a_record_without_per_example_outcomes_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    a = write_run(tmp_path / "a", 1, 0.6)
    (tmp_path / "old").mkdir()
    old = {"adversarial": {"test": {"pgd20_linf": {"acc": 0.5}}}}
    (tmp_path / "old" / "results.json").write_text(json.dumps(old))
    err = refusal(capsys, a, tmp_path / "old")
    assert "B:" in err and "adversarial.test.per_example is missing" in err


def test_a_reading_holds_only_if_it_survives_holm() -> None:
    better = PairedDifference(0.07, 0.01, 0.13, 0.04, 8, 1, 100, 1, None, Method.MCNEMAR)
    none = PairedDifference(0.01, -0.02, 0.04, 0.6, 3, 2, 100, 1, None, Method.MCNEMAR)
    assert family_reading(better, 0.04) == "better"
    assert family_reading(better, 0.5) == "better alone, not after Holm"
    assert family_reading(none, 1.0) == "no clear difference"


def add_shift_set(folder: Path, name: str, accuracy: float) -> None:
    """Give the record a shift set with examples and an outcomes file of its own (ShiftEval)."""
    bits = torch.from_numpy(np.random.default_rng(7).random(50) < accuracy)
    file = f"shifts_test_{name}.outcomes.safetensors"
    digest = write_outcomes(folder / file, Outcomes(torch.arange(1000, 1050), {name: bits}))
    record = json.loads((folder / "results.json").read_text())
    entry = {"per_example": {"file": file, "sha256": digest, "n": 50}}
    record["shifts"] = {"test": {"sets": {name: entry}}}
    (folder / "results.json").write_text(json.dumps(record))


def test_each_shift_set_is_compared_on_its_own_examples(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    a, b = write_run(tmp_path / "a", 0, 0.7), write_run(tmp_path / "b", 1, 0.7)
    add_shift_set(a, "imagenet_r", 0.9)
    add_shift_set(b, "imagenet_r", 0.2)
    main(["compare", str(a), str(b)])
    (row,) = [r for r in capsys.readouterr().out.splitlines() if r.startswith("| shifts.test")]
    assert row.startswith("| shifts.test.imagenet_r | imagenet_r |") and "| 50 |" in row
