"""Paired comparison of two arms on per-example correct bits: by example, and by seed.

Arm A and arm B evaluated the same examples; each side holds one row of correct bits per seed
(``[seeds, n]``). The difference is A's accuracy minus B's, and its 95% interval carries both
sources of variation the comparison has:

- One run per arm: the exact McNemar test (a two-sided binomial test of the A-right-B-wrong count
  among the discordant examples) and Newcombe's hybrid score interval for a paired difference of
  proportions (Newcombe 1998, method 10). That interval combines the two arms' Wilson intervals
  with their correlation; Fagerland, Lydersen and Laake (2013) recommend it for paired binary
  data because its coverage stays close to 95% at small counts, where the Wald interval does not.
- Several seeds per arm, paired by seed number: a two-level bootstrap. Each replicate resamples
  the seeds, then the examples; the same examples for every seed and for both arms, since every
  model saw the same test set. The interval is the replicates' 2.5% and 97.5% quantiles and the
  p-value twice the smaller share of replicates on either side of 0, so it is below 0.05 just
  when the interval excludes 0. The random generator is seeded: the result is reproducible.
- A side with one run and the other with several: the one run is a single fixed model
  (pretrained or early-stopped weights) compared with every seed of the other; it carries no
  training variance, and :attr:`PairedDifference.fixed` says which side it is.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray
from scipy import stats

Z95 = float(stats.norm.ppf(0.975))
ROWS_PER_CHUNK = 2_000_000  # replicates x examples held at once by the bootstrap


class Method(enum.Enum):
    """How a difference's interval and p-value were computed."""

    MCNEMAR = "exact McNemar test, Newcombe score interval"
    BOOTSTRAP = "two-level bootstrap over seeds and examples"


@dataclass(frozen=True)
class PairedDifference:
    """Arm A's accuracy minus arm B's, with its 95% interval and p-value.

    Args:
        difference: A's accuracy minus B's (a fraction, not points).
        low: the 95% interval's lower end.
        high: its upper end.
        p_value: two-sided, for "no difference".
        a_only: examples A got right and B wrong (summed over the paired seeds).
        b_only: examples A got wrong and B right (summed over the paired seeds).
        n: evaluated examples.
        seeds: how many seed pairs (1 for one run per arm).
        fixed: ``"A"`` or ``"B"`` when that side is one fixed model used for every seed.
        method: how the interval and p-value were computed.
    """

    difference: float
    low: float
    high: float
    p_value: float
    a_only: int
    b_only: int
    n: int
    seeds: int
    fixed: str | None
    method: Method

    @property
    def reading(self) -> str:
        """``better`` or ``worse`` (A against B) only when the interval excludes 0."""
        if self.low > 0:
            return "better"
        if self.high < 0:
            return "worse"
        return "no clear difference"


def mcnemar_p(a_only: int, b_only: int) -> float:
    """Exact two-sided McNemar p-value: A-right-B-wrong among the discordant, against p = 1/2."""
    discordant = a_only + b_only
    if discordant == 0:
        return 1.0
    return float(stats.binomtest(a_only, discordant, 0.5).pvalue)


def wilson(correct: NDArray[np.float64], n: int) -> tuple[NDArray[np.float64], ...]:
    """Wilson score 95% interval ``(low, high)`` of ``correct / n``."""
    centre = (correct + Z95**2 / 2) / (n + Z95**2)
    half = Z95 / (n + Z95**2) * np.sqrt(correct * (n - correct) / n + Z95**2 / 4)
    return centre - half, centre + half


def newcombe_interval(
    both: NDArray[np.float64],
    a_only: NDArray[np.float64],
    b_only: NDArray[np.float64],
    n: int,
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Newcombe's hybrid score 95% interval for a paired difference of accuracies.

    Args:
        both: examples both arms got right.
        a_only: examples only A got right.
        b_only: examples only B got right.
        n: evaluated examples (the rest both got wrong).

    Returns:
        ``(low, high)`` for A's accuracy minus B's; arrays broadcast like the counts.
    """
    neither = n - both - a_only - b_only
    acc_a, acc_b = (both + a_only) / n, (both + b_only) / n
    low_a, high_a = wilson(both + a_only, n)
    low_b, high_b = wilson(both + b_only, n)
    margins = (both + a_only) * (b_only + neither) * (both + b_only) * (a_only + neither)
    with np.errstate(divide="ignore", invalid="ignore"):
        phi = np.where(margins > 0, (both * neither - a_only * b_only) / np.sqrt(margins), 0.0)
    below = np.sqrt(
        (acc_a - low_a) ** 2 - 2 * phi * (acc_a - low_a) * (high_b - acc_b) + (high_b - acc_b) ** 2
    )
    above = np.sqrt(
        (high_a - acc_a) ** 2 - 2 * phi * (high_a - acc_a) * (acc_b - low_b) + (acc_b - low_b) ** 2
    )
    return acc_a - acc_b - below, acc_a - acc_b + above


def effects(diff: NDArray[np.int8]) -> tuple[NDArray[np.float64], ...]:
    """The crossed seeds x examples decomposition of ``diff`` and its rescaling factors.

    ``diff = mean + seed effect + example effect + residual``. Returns ``(mean, seed, example,
    residual, scale_seed, scale_example, scale_residual)``; each scale makes its part's bootstrap
    variance equal the unbiased two-way ANOVA estimate of that part's share of the variance of
    the mean: seed share ``(MS_seed - MS_res) / (S n)``, example share ``(MS_ex - MS_res) / (S n)``
    (each at least 0), residual share ``MS_res / (S n)``.
    """
    *_, n_seeds, n = diff.shape
    values = diff.astype(np.float64)
    mean = values.mean(axis=(-2, -1), keepdims=True)
    seed = values.mean(axis=-1, keepdims=True) - mean
    example = values.mean(axis=-2, keepdims=True) - mean
    residual = values - mean - seed - example
    ss_seed, ss_example = (seed**2).sum((-2, -1)), (example**2).sum((-2, -1))
    ss_residual = (residual**2).sum((-2, -1))
    ms_residual = ss_residual / max((n_seeds - 1) * (n - 1), 1)
    ms_seed = n * ss_seed / (n_seeds - 1)
    ms_example = n_seeds * ss_example / max(n - 1, 1)
    with np.errstate(divide="ignore", invalid="ignore"):
        # bootstrap variances: ss_seed / S^2, ss_example / n^2, ss_residual / (S n)^2
        scale_seed = np.sqrt(np.maximum(ms_seed - ms_residual, 0) * n_seeds / (n * ss_seed))
        scale_example = np.sqrt(
            np.maximum(ms_example - ms_residual, 0) * n / (n_seeds * ss_example)
        )
        scale_residual = np.sqrt(ms_residual * n_seeds * n / ss_residual)
    scales = [
        np.nan_to_num(s, nan=0.0, posinf=0.0) for s in (scale_seed, scale_example, scale_residual)
    ]
    return (mean[..., 0, 0], seed[..., 0], example[..., 0, :], residual, *scales)


def bootstrap_differences(
    diff: NDArray[np.int8], replicates: int, seed: int
) -> NDArray[np.float64]:
    """Two-level bootstrap replicates of the mean of ``diff`` over seeds and examples.

    Each replicate resamples the seeds, and the examples once for all seeds and both arms (the
    test set is shared: a crossed design), and weights ``diff`` with those counts. Plain weighting
    (Owen's pigeonhole bootstrap, 2007) counts the seed-by-example residual three times over,
    once in the seed means, once in the example means and once itself, and resampling S seeds
    shrinks the seed variance by (S - 1) / S; with per-seed flips of borderline examples its
    interval covers about 99%, not 95%. So the replicate rescales the seed effects, the example
    effects and the residual, each resampled with those same counts, to the unbiased two-way
    ANOVA estimate of their share of the variance (the rescaled residual bootstrap of Carpenter,
    Goldstein and Rasbash, 2003, for a crossed design).

    Args:
        diff: ``[..., seeds, n]``, A's correct bit minus B's, paired by seed and example; leading
            dimensions are independent comparisons that share the resampling.
        replicates: how many bootstrap replicates.
        seed: the random generator's seed.

    Returns:
        ``[..., replicates]``, the replicates of A's accuracy minus B's.
    """
    rng = np.random.default_rng(seed)
    *_, n_seeds, n = diff.shape
    mean, seed_effect, example_effect, residual, *scales = effects(diff)
    seed_counts = rng.multinomial(n_seeds, np.full(n_seeds, 1 / n_seeds), size=replicates)
    chunk = max(1, ROWS_PER_CHUNK // max(n, 1))
    parts = []
    for start in range(0, replicates, chunk):
        size = min(chunk, replicates - start)
        draws = rng.integers(0, n, size=(size, n))
        rows = np.arange(size)[:, None] * n
        example_counts = np.bincount((draws + rows).ravel(), minlength=size * n).reshape(size, n)
        counts = seed_counts[start : start + size]
        seed_part = seed_effect @ counts.T / n_seeds
        example_part = example_effect @ example_counts.T / n
        residual_part = np.einsum("...sr,rs->...r", residual @ example_counts.T, counts)
        parts.append(
            scales[0][..., None] * seed_part
            + scales[1][..., None] * example_part
            + scales[2][..., None] * residual_part / (n_seeds * n)
        )
    return mean[..., None] + np.concatenate(parts, axis=-1)


def bootstrap_summary(
    replicates: NDArray[np.float64],
) -> tuple[NDArray[np.float64], NDArray[np.float64], NDArray[np.float64]]:
    """``(low, high, p)``: the 95% percentile interval and the two-sided bootstrap p-value."""
    low, high = np.quantile(replicates, [0.025, 0.975], axis=-1)
    count = replicates.shape[-1]
    tail = np.minimum((replicates <= 0).sum(-1), (replicates >= 0).sum(-1))
    return low, high, np.minimum(1.0, 2 * (tail + 1) / (count + 1))


def paired_difference(
    a: NDArray[np.bool_], b: NDArray[np.bool_], replicates: int = 2000, seed: int = 0
) -> PairedDifference:
    """Compare arm A with arm B on the same examples, paired by example and by seed.

    Args:
        a: ``[seeds, n]`` correct bits of arm A, one row per seed.
        b: ``[seeds, n]`` correct bits of arm B, its rows in the same seed order as ``a``; or
            ``[1, n]``, a single fixed model compared with every seed of A (and likewise ``a``).
        replicates: bootstrap replicates (with several seeds).
        seed: the bootstrap's random seed.

    Returns:
        The difference, interval, p-value and discordant counts (see the module docstring).
    """
    if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[1]:
        raise ValueError(f"a and b must be [seeds, n] over the same n, got {a.shape}, {b.shape}")
    if a.shape[0] != b.shape[0] and 1 not in (a.shape[0], b.shape[0]):
        raise ValueError(f"{a.shape[0]} seeds of A cannot pair with {b.shape[0]} of B")
    fixed = None
    if a.shape[0] != b.shape[0]:
        fixed = "A" if a.shape[0] == 1 else "B"
    a, b = np.broadcast_arrays(a, b)
    n_seeds, n = a.shape
    a_only, b_only = int((a & ~b).sum()), int((~a & b).sum())
    difference = (a_only - b_only) / (n_seeds * n)
    if n_seeds == 1:
        low, high = newcombe_interval(
            np.array((a & b).sum(), float), np.array(a_only, float), np.array(b_only, float), n
        )
        return PairedDifference(
            difference,
            float(low),
            float(high),
            mcnemar_p(a_only, b_only),
            a_only,
            b_only,
            n,
            1,
            fixed,
            Method.MCNEMAR,
        )
    diff = a.astype(np.int8) - b.astype(np.int8)
    low, high, p = bootstrap_summary(bootstrap_differences(diff, replicates, seed))
    return PairedDifference(
        difference,
        float(low),
        float(high),
        float(p),
        a_only,
        b_only,
        n,
        n_seeds,
        fixed,
        Method.BOOTSTRAP,
    )


def holm(p_values: Sequence[float]) -> list[float]:
    """Holm's step-down adjusted p-values, in the order given (family-wise error control)."""
    order = np.argsort(p_values, kind="stable")
    m = len(p_values)
    adjusted = np.empty(m)
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * p_values[i]))
        adjusted[i] = running
    return adjusted.tolist()
