from __future__ import annotations

from pathlib import Path

import pytest
import torch

from robust_vit.outcomes import Outcomes, merge_shards, read_outcomes, write_outcomes


def random_outcomes(n: int, seed: int = 0) -> Outcomes:
    generator = torch.Generator().manual_seed(seed)
    index = torch.randperm(5 * n, generator=generator)[:n].sort().values
    return Outcomes(
        index,
        {name: torch.rand(n, generator=generator) < 0.7 for name in ("clean", "pgd20_linf@8/255")},
    )


@pytest.mark.parametrize("n", [0, 1, 7, 8, 9, 1000])
def test_a_file_reads_back_bit_for_bit(tmp_path: Path, n: int) -> None:
    outcomes = random_outcomes(n)
    digest = write_outcomes(tmp_path / "o.outcomes.safetensors", outcomes)
    back = read_outcomes(tmp_path / "o.outcomes.safetensors", digest)
    assert torch.equal(back.index, outcomes.index)
    assert back.correct.keys() == outcomes.correct.keys()
    assert all(torch.equal(back.correct[k], v) for k, v in outcomes.correct.items())


def test_a_file_that_is_not_the_recorded_one_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "o.outcomes.safetensors"
    digest = write_outcomes(path, random_outcomes(10))
    write_outcomes(path, random_outcomes(10, seed=1))
    with pytest.raises(ValueError, match="sha256"):
        read_outcomes(path, digest)


@pytest.mark.parametrize("ranks", [1, 2, 3])
def test_merged_shards_do_not_depend_on_the_split(ranks: int) -> None:
    whole = random_outcomes(50)
    shards = [
        Outcomes(whole.index[r::ranks], {k: v[r::ranks] for k, v in whole.correct.items()})
        for r in range(ranks)
    ]
    merged = merge_shards(shards[::-1])
    assert torch.equal(merged.index, whole.index)
    assert all(torch.equal(merged.correct[k], v) for k, v in whole.correct.items())


def test_misaligned_or_repeated_examples_are_refused() -> None:
    with pytest.raises(ValueError, match="ascending"):
        Outcomes(torch.tensor([3, 3]), {})
    with pytest.raises(ValueError, match="column"):
        Outcomes(torch.tensor([1, 2]), {"clean": torch.tensor([True])})
