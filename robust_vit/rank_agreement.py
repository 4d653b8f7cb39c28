"""Agreement of two per-layer scorings: Spearman's rho, its permutation p-value, top-k overlap."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy.stats import rankdata


def _pearson_rows(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pearson correlation of ``a`` (one vector) with each row of ``b``."""
    a = a - a.mean()
    b = b - b.mean(axis=-1, keepdims=True)
    denom = np.sqrt((a**2).sum() * (b**2).sum(axis=-1))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.asarray((b @ a) / denom)


def spearman(x: Sequence[float], y: Sequence[float]) -> float:
    """Spearman's rank correlation (average ranks for ties; nan when either is constant)."""
    return float(_pearson_rows(rankdata(x), rankdata(y)[None, :])[0])


def spearman_permutation_p(
    x: Sequence[float], y: Sequence[float], permutations: int = 10_000, seed: int = 0
) -> float:
    """Two-sided permutation p-value of Spearman's rho: (1 + #{|rho*| >= |rho|}) / (1 + B).

    Each of the ``permutations`` draws pairs ``x`` with a random reordering of ``y``. When either
    scoring is constant rho is undefined, and so is its p-value: nan.

    Args:
        x: one score per layer.
        y: another score per layer, in the same order.
        permutations: random reorderings drawn (B).
        seed: seeds the reorderings.
    """
    if len(x) != len(y) or len(x) < 3:
        raise ValueError(f"need two equally long scorings of at least 3 layers: {len(x)}, {len(y)}")
    rx, ry = rankdata(x), rankdata(y)
    observed = abs(_pearson_rows(rx, ry[None, :])[0])
    if np.isnan(observed):
        return float("nan")
    rng = np.random.default_rng(seed)
    shuffled = rng.permuted(np.tile(ry, (permutations, 1)), axis=1)
    null = np.abs(_pearson_rows(rx, shuffled))
    hits = int(np.count_nonzero(null >= observed - 1e-12))
    return (1 + hits) / (1 + permutations)


def top_k(scores: dict[str, float], k: int) -> list[str]:
    """The ``k`` highest-scoring names, highest first (ties keep the given order)."""
    return sorted(scores, key=lambda name: scores[name], reverse=True)[:k]


@dataclass(frozen=True)
class Agreement:
    """How far two per-layer scorings agree.

    Attributes:
        rho: Spearman's rank correlation.
        p_value: its two-sided permutation p-value.
        permutations: the reorderings the p-value drew.
        k: size of the top sets compared.
        top_a: the ``k`` highest layers of the first scoring.
        top_b: the ``k`` highest layers of the second scoring.
        overlap: layers in both top sets.
        chance_overlap: the overlap two random top-k sets have on average, k * k / n.
    """

    rho: float
    p_value: float
    permutations: int
    k: int
    top_a: list[str]
    top_b: list[str]
    overlap: int
    chance_overlap: float


def agreement(
    a: dict[str, float], b: dict[str, float], k: int, permutations: int = 10_000, seed: int = 0
) -> Agreement:
    """Spearman's rho of ``a`` against ``b``, its permutation p-value and their top-k overlap.

    Args:
        a: layer name to score (e.g. sharpness).
        b: layer name to score (e.g. rollback gain), for the same layers.
        k: size of the top sets (SAFER's number of selected layers).
        permutations: reorderings for the p-value.
        seed: seeds them.
    """
    if set(a) != set(b):
        raise ValueError(f"the scorings cover different layers: {sorted(set(a) ^ set(b))}")
    if not 1 <= k <= len(a):
        raise ValueError(f"k = {k} is outside [1, {len(a)}] (the number of layers).")
    names = list(a)
    x, y = [a[n] for n in names], [b[n] for n in names]
    top_a, top_b = top_k(a, k), top_k(b, k)
    return Agreement(
        rho=spearman(x, y),
        p_value=spearman_permutation_p(x, y, permutations, seed),
        permutations=permutations,
        k=k,
        top_a=top_a,
        top_b=top_b,
        overlap=len(set(top_a) & set(top_b)),
        chance_overlap=k * k / len(names),
    )
