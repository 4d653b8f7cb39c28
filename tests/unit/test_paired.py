from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from robust_vit.paired import (
    Method,
    bootstrap_differences,
    bootstrap_summary,
    holm,
    newcombe_interval,
    paired_difference,
)


def pairs(both: int, a_only: int, b_only: int, neither: int) -> tuple[np.ndarray, np.ndarray]:
    """One run per arm with the given cell counts, shuffled."""
    a = np.array([1] * both + [1] * a_only + [0] * b_only + [0] * neither, bool)
    b = np.array([1] * both + [0] * a_only + [1] * b_only + [0] * neither, bool)
    order = np.random.default_rng(0).permutation(a.size)
    return a[order][None], b[order][None]


@pytest.mark.parametrize(("a_only", "b_only"), [(0, 0), (3, 9), (20, 5), (12, 13), (0, 7)])
def test_mcnemar_p_is_the_exact_binomial_test_on_the_discordant(a_only: int, b_only: int) -> None:
    result = paired_difference(*pairs(100, a_only, b_only, 40))
    assert (result.a_only, result.b_only, result.n, result.seeds) == (
        a_only,
        b_only,
        140 + a_only + b_only,
        1,
    )
    assert result.method is Method.MCNEMAR
    expected = stats.binomtest(a_only, a_only + b_only).pvalue if a_only + b_only else 1.0
    assert result.p_value == pytest.approx(expected)
    assert result.difference == pytest.approx((a_only - b_only) / result.n)


def test_a_clear_difference_excludes_zero_and_none_includes_it() -> None:
    clear = paired_difference(*pairs(500, 60, 10, 430))
    assert clear.low > 0 and clear.reading == "better" and clear.p_value < 0.001
    worse = paired_difference(*pairs(500, 10, 60, 430))
    assert worse.high < 0 and worse.reading == "worse"
    none = paired_difference(*pairs(500, 30, 30, 440))
    assert none.low < 0 < none.high and none.reading == "no clear difference"
    assert none.p_value == pytest.approx(1.0)


def simulate(sims: int, seeds: int, n: int, tau: float, sigma: float, rng: np.random.Generator):
    """Crossed seeds x examples: example difficulty, a per-seed shift per arm, per-seed flips."""
    difficulty = rng.standard_normal((sims, 1, n))

    def arm(shift: float) -> np.ndarray:
        per_seed = tau * rng.standard_normal((sims, seeds, 1))
        flips = sigma * rng.standard_normal((sims, seeds, n))
        return difficulty + shift + per_seed + flips > 0

    scale = np.sqrt(1 + tau**2 + sigma**2)
    truth = stats.norm.cdf(0.3 / scale) - stats.norm.cdf(0.2 / scale)
    return arm(0.3), arm(0.2), truth


def test_the_two_level_bootstrap_covers_a_known_difference_95_percent_of_the_time() -> None:
    a, b, truth = simulate(1000, 5, 200, 0.05, 0.5, np.random.default_rng(1))
    diff = a.astype(np.int8) - b.astype(np.int8)
    low, high, _ = bootstrap_summary(bootstrap_differences(diff, 1000, 0))
    coverage = np.mean((low <= truth) & (truth <= high))
    assert 0.93 <= coverage <= 0.97


def test_the_score_interval_covers_a_known_difference_95_percent_of_the_time() -> None:
    a, b, truth = simulate(20000, 1, 100, 0.0, 0.5, np.random.default_rng(2))
    a, b = a[:, 0], b[:, 0]
    count = lambda bits: bits.sum(-1).astype(float)  # noqa: E731
    low, high = newcombe_interval(count(a & b), count(a & ~b), count(~a & b), 100)
    assert 0.93 <= np.mean((low <= truth) & (truth <= high)) <= 0.97


def test_several_seeds_use_the_bootstrap_reproducibly_and_agree_with_its_interval() -> None:
    a, b, _ = simulate(1, 3, 300, 0.05, 0.5, np.random.default_rng(3))
    first = paired_difference(a[0], b[0], 500, seed=7)
    assert first == paired_difference(a[0], b[0], 500, seed=7)
    assert first.method is Method.BOOTSTRAP and first.seeds == 3 and first.fixed is None
    assert first.low <= first.difference <= first.high
    assert (first.p_value < 0.05) == (first.low > 0 or first.high < 0)
    assert first.a_only == int((a[0] & ~b[0]).sum())


def test_a_single_fixed_model_is_used_for_every_seed_and_said_to_be() -> None:
    a, b, _ = simulate(1, 4, 300, 0.05, 0.5, np.random.default_rng(4))
    fixed = paired_difference(a[0], b[0, :1])
    assert fixed.fixed == "B" and fixed.seeds == 4
    assert fixed.a_only == int((a[0] & ~b[0, :1]).sum())
    assert paired_difference(b[0, :1], a[0]).fixed == "A"


def test_identical_arms_differ_by_exactly_zero() -> None:
    a, _, _ = simulate(1, 3, 100, 0.05, 0.5, np.random.default_rng(5))
    same = paired_difference(a[0], a[0])
    assert (same.difference, same.low, same.high, same.p_value) == (0.0, 0.0, 0.0, 1.0)


def test_seed_counts_that_cannot_pair_are_refused() -> None:
    with pytest.raises(ValueError, match="cannot pair"):
        paired_difference(np.ones((3, 5), bool), np.ones((2, 5), bool))


def test_holm_matches_a_hand_checked_family() -> None:
    # sorted: 0.005 x4 = 0.02, 0.01 x3 = 0.03, 0.03 x2 = 0.06, 0.04 x1 = 0.04 -> max(0.06, 0.04)
    assert holm([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert holm([0.5, 0.9]) == pytest.approx([1.0, 1.0])
    assert holm([]) == []
