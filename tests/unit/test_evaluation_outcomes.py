"""The evaluation callbacks' per-example pieces: shard collection and column names."""

from __future__ import annotations

import pytest
import torch

from callbacks import AdversarialEval
from callbacks.evaluation import ShardOutcomes
from robust_vit.attacks import PGD
from robust_vit.errors import ConfigError
from robust_vit.outcomes import merge_shards


def test_a_rank_without_examples_still_merges() -> None:
    busy, idle = ShardOutcomes(["clean", "fog/1"]), ShardOutcomes(["clean", "fog/1"])
    for start in (0, 4):
        busy.add_index(torch.arange(start, start + 4))
        busy.add("clean", torch.arange(4) % 2 == 0)
        busy.add("fog/1", torch.arange(4) < 2)
    merged = merge_shards([idle.outcomes(), busy.outcomes()])
    assert merged.index.tolist() == list(range(8))
    assert merged.correct["clean"].tolist() == [True, False] * 4
    assert idle.outcomes().n == 0 and set(idle.outcomes().correct) == {"clean", "fog/1"}


def test_a_column_that_missed_a_batch_is_refused() -> None:
    shard = ShardOutcomes(["clean", "fog/1"])
    shard.add_index(torch.arange(3))
    shard.add("clean", torch.ones(3, dtype=torch.bool))
    with pytest.raises(ValueError, match="fog/1"):
        shard.outcomes()


def test_columns_name_each_attack_and_worst_case_per_radius() -> None:
    callback = AdversarialEval(attacks=[PGD(eps=0.0, steps=2)], epsilons=[2 / 255, 0.5])
    assert callback.columns == [
        "clean",
        "pgd2_linf@2/255",
        "worst_case@2/255",
        "pgd2_linf@0.5",
        "worst_case@0.5",
    ]


def test_two_norms_at_one_radius_are_refused_before_compute() -> None:
    attacks = [PGD(eps=0.5, steps=2, norm="linf"), PGD(eps=0.5, steps=2, norm="l2")]
    with pytest.raises(ConfigError, match=r"worst_case@0\.5") as error:
        AdversarialEval(attacks=attacks)
    assert error.value.field == "adversarial.epsilons"
