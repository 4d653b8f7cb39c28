"""The papers' claims as data: ``claims.yaml`` read into typed sweeps and comparisons."""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import yaml

from robust_vit.errors import ConfigError

CLAIMS_FILE = Path(__file__).with_name("claims.yaml")


@dataclass(frozen=True)
class Sweep:
    """One sweep of runs/<name>: its arms' headline metrics and the arm that picks the radius.

    Args:
        name: the sweep's folder under runs/.
        command: the command that runs it.
        setting: what its runs did, in words.
        reference: the arm whose PGD-20 accuracy places the headline radius in the band.
        attacks: attack name in the records -> label.
        corruptions: whether its arms ran the corruption suite.
        family: the study its headline rows belong to: Holm's correction runs over each
            family's rows (default: the sweep alone).
    """

    name: str
    command: str
    setting: str
    reference: str
    attacks: dict[str, str]
    corruptions: bool
    family: str = ""

    def __post_init__(self) -> None:
        """A sweep without a family is a study of its own."""
        if not self.family:
            object.__setattr__(self, "family", self.name)


@dataclass(frozen=True)
class Comparison:
    """``method - baseline`` in one sweep, what it tests, and the paper's claim per metric."""

    sweep: str
    method: str
    baseline: str
    role: str
    claims: dict[str, str] = field(default_factory=dict)
    """Metric label -> the paper's claim, with the comparison the paper made."""


@dataclass(frozen=True)
class Claims:
    """Every sweep of the page, and the comparisons its headline makes."""

    sweeps: dict[str, Sweep]
    comparisons: list[Comparison]


def _build(kind: type, where: str, values: Any, **extra: Any) -> Any:
    """``kind(**values, **extra)``, or a ConfigError naming the entry and its fields."""
    known = sorted({f.name for f in fields(kind)} - set(extra))
    if not isinstance(values, dict) or set(values) - set(known):
        raise ConfigError(where, f"expected a mapping of the fields {known}, got {values!r}.")
    try:
        return kind(**values, **extra)
    except TypeError as err:  # a required field is missing
        raise ConfigError(where, f"{err}; its fields: {known}.") from err


def load_claims(path: Path = CLAIMS_FILE) -> Claims:
    """The claims file, checked: unknown fields or a comparison of an unknown sweep fail."""
    try:
        data = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as err:
        raise ConfigError(str(path), f"cannot read the claims file: {err}") from err
    if not isinstance(data, dict):
        raise ConfigError(str(path), "expected a mapping with `sweeps` and `comparisons`.")
    sweeps = {
        name: _build(Sweep, f"{path}: sweeps.{name}", values, name=name)
        for name, values in (data.get("sweeps") or {}).items()
    }
    comparisons = [
        _build(Comparison, f"{path}: comparisons[{i}]", values)
        for i, values in enumerate(data.get("comparisons") or [])
    ]
    for i, comparison in enumerate(comparisons):
        if comparison.sweep not in sweeps:
            raise ConfigError(
                f"{path}: comparisons[{i}].sweep",
                f"{comparison.sweep!r} is none of the sweeps {sorted(sweeps)}.",
            )
    return Claims(sweeps, comparisons)
