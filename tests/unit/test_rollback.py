"""Layer rollback (robust_vit.rollback) and the rank agreement of two scorings."""

from __future__ import annotations

import numpy as np
import pytest
import timm
import torch
from scipy.stats import spearmanr
from torch import nn

from robust_vit.layers import candidate_layers
from robust_vit.models import NormalizedViT
from robust_vit.rank_agreement import agreement, spearman, spearman_permutation_p, top_k
from robust_vit.rollback import rollback, rollback_gains


def tiny_vit(seed: int) -> NormalizedViT:
    torch.manual_seed(seed)
    vit = timm.create_model(
        "vit_tiny_patch16_224",
        num_classes=10,
        img_size=16,
        in_chans=1,
        patch_size=8,
        embed_dim=16,
        depth=2,
        num_heads=2,
    )
    return NormalizedViT(vit, (0.5,), (0.5,))


def snapshot(model: nn.Module) -> dict[str, torch.Tensor]:
    return {name: t.detach().clone() for name, t in model.state_dict().items()}


@pytest.fixture
def pair() -> tuple[NormalizedViT, dict[str, torch.Tensor]]:
    """An 'overfit' model and a reference state that differs from it in every value."""
    model = tiny_vit(0)
    generator = torch.Generator().manual_seed(1)
    reference = {
        name: value + 0.1 + 0.1 * torch.rand(value.shape, generator=generator)
        for name, value in model.state_dict().items()
    }
    return model, reference


@pytest.mark.parametrize("index", [0, 3, -1])  # patch embedding, a block's linear, the head
def test_rollback_changes_exactly_the_chosen_layer(
    pair: tuple[NormalizedViT, dict[str, torch.Tensor]], index: int
) -> None:
    model, reference = pair
    before = snapshot(model)
    layer = candidate_layers(model)[index]
    with rollback(model, reference, layer) as rolled:
        inside = snapshot(rolled)
    for name, value in inside.items():
        expected = reference[name] if name in layer.param_names else before[name]
        assert torch.equal(value, expected), name
    assert not any(torch.equal(before[n], reference[n]) for n in layer.param_names)
    after = snapshot(model)
    assert all(torch.equal(after[n], before[n]) for n in before)


def test_rollback_restores_after_an_exception(
    pair: tuple[NormalizedViT, dict[str, torch.Tensor]],
) -> None:
    model, reference = pair
    before = snapshot(model)
    with (
        pytest.raises(RuntimeError, match="inside"),
        rollback(model, reference, candidate_layers(model)[1]),
    ):
        raise RuntimeError("inside")
    assert all(torch.equal(v, before[n]) for n, v in snapshot(model).items())


def test_rollback_refuses_a_reference_without_the_layer(
    pair: tuple[NormalizedViT, dict[str, torch.Tensor]],
) -> None:
    model, reference = pair
    head = candidate_layers(model)[-1]
    partial_state = {k: v for k, v in reference.items() if not k.startswith("vit.head.")}
    with (
        pytest.raises(ValueError, match=r"vit\.head\.weight"),
        rollback(model, partial_state, head),
    ):
        pass
    wrong = {**reference, "vit.head.weight": torch.zeros(3, 16)}
    with pytest.raises(ValueError, match="same architecture"), rollback(model, wrong, head):
        pass


def test_gains_are_the_evaluation_with_each_layer_rolled_back_minus_without(
    pair: tuple[NormalizedViT, dict[str, torch.Tensor]],
) -> None:
    """With evaluate = -(squared distance to the reference), a layer's gain is its own distance."""
    model, reference = pair
    layers = candidate_layers(model)
    before = snapshot(model)

    def closeness(m: nn.Module) -> float:
        return -sum(
            float((p.detach() - reference[n]).pow(2).sum()) for n, p in m.named_parameters()
        )

    result = rollback_gains(model, reference, layers, closeness)
    assert list(result.rolled) == [layer.name for layer in layers]
    assert result.base == pytest.approx(closeness(model))
    for layer in layers:
        own = sum(float((before[n] - reference[n]).pow(2).sum()) for n in layer.param_names)
        assert result.gains()[layer.name] == pytest.approx(own, rel=1e-4)
    assert all(torch.equal(v, before[n]) for n, v in snapshot(model).items())


def test_spearman_and_its_permutation_p_match_scipy() -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=40)
    y = np.round(2 * (0.5 * x + rng.normal(size=40))) / 2  # 9 distinct values: ties
    reference = spearmanr(x, y)
    assert spearman(x, y) == pytest.approx(reference.statistic, abs=1e-12)
    p = spearman_permutation_p(x, y, permutations=20_000, seed=1)
    assert 0.005 < reference.pvalue < 0.5  # neither extreme, so the comparison means something
    assert p == pytest.approx(reference.pvalue, abs=0.02)
    assert p == spearman_permutation_p(x, y, permutations=20_000, seed=1)


def test_permutation_p_is_small_for_a_perfect_ranking_and_large_for_none() -> None:
    x = np.arange(10.0)
    assert spearman_permutation_p(x, x**3, permutations=5_000) < 0.002
    assert spearman_permutation_p(x, np.array([4, 9, 0, 7, 2, 5, 8, 1, 6, 3.0])) > 0.3


def test_rank_correlation_with_a_constant_scoring_is_undefined() -> None:
    x, flat = np.arange(6.0), np.zeros(6)
    assert np.isnan(spearman(x, flat))
    assert np.isnan(spearman_permutation_p(x, flat, permutations=100))


def test_agreement_top_k_overlap() -> None:
    a = {"l0": 5.0, "l1": 4.0, "l2": 3.0, "l3": 2.0, "l4": 1.0}
    b = {"l0": 0.1, "l1": 0.5, "l2": 0.4, "l3": 0.9, "l4": 0.0}
    assert top_k(b, 2) == ["l3", "l1"]
    stats = agreement(a, b, k=2, permutations=500)
    assert (stats.top_a, stats.top_b, stats.overlap) == (["l0", "l1"], ["l3", "l1"], 1)
    assert stats.chance_overlap == pytest.approx(2 * 2 / 5)
    assert stats.rho == pytest.approx(spearmanr(list(a.values()), list(b.values())).statistic)
    with pytest.raises(ValueError, match="different layers"):
        agreement(a, {**b, "l5": 1.0}, k=2)
    with pytest.raises(ValueError, match="outside"):
        agreement(a, b, k=6)
