"""Declared option ranges: the Python-side check, plain values, and the parse-error summary."""

from __future__ import annotations

import io

import pytest
import torch
from jsonargparse.typing import ClosedUnitInterval

from application.parser import summarise
from robust_vit.errors import ConfigError
from robust_vit.ranges import NonNegativeFloat, PositiveInt, check_ranges
from robust_vit.schedules import WarmupCosineLR


class Options:
    @check_ranges("thing")
    def __init__(
        self,
        count: PositiveInt = 1,
        limit: PositiveInt | None = None,
        radii: list[NonNegativeFloat] | None = None,
        name: str = "x",
    ) -> None:
        self.count, self.limit, self.radii = count, limit, radii


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"count": 0}, "thing.count"),
        ({"limit": -2}, "thing.limit"),
        ({"radii": [0.1, -0.5]}, "thing.radii"),
        ({"count": True}, "thing.count"),
    ],
)
def test_a_value_outside_its_range_names_the_field(kwargs: dict, field: str) -> None:
    with pytest.raises(ConfigError, match=r"does not conform|not a number") as info:
        Options(**kwargs)
    assert info.value.field == field


def test_none_passes_and_values_arrive_plain() -> None:
    options = Options(PositiveInt(3), radii=[NonNegativeFloat(0.5)])
    assert options.limit is None
    assert type(options.count) is int and type(options.radii[0]) is float


def test_a_scheduler_built_from_restricted_values_loads_back_weights_only() -> None:
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1)
    scheduler = WarmupCosineLR(optimizer, warmup_fraction=ClosedUnitInterval(0.1))
    buffer = io.BytesIO()
    torch.save(scheduler.state_dict(), buffer)
    buffer.seek(0)
    assert torch.load(buffer, weights_only=True)["warmup_fraction"] == 0.1


NESTED = """Parser key "trainer.callbacks":
  Does not validate against any of the Union subtypes
  Errors:
    - Problem with given class_path 'callbacks.AdversarialEval':
        Parser key "attacks":
          Problem with given class_path 'robust_vit.attacks.PGD':
            Parser key "restarts":
              Not of type PositiveInt: 0 does not conform to restriction v>0
    - Expected a <class 'NoneType'>
"""
OPTIONAL = """Parser key "threads":
  Does not validate against any of the Union subtypes
  Errors:
    - Not of type PositiveInt: does not conform to restriction v>0
    - Expected a <class 'NoneType'>
  Given value type: <class 'str'>
  Given value: -3
"""
CALLABLE = """Parser key "model.lr_scheduler":
  - Type typing.Callable[[Optimizer], LRScheduler] expects a function or a callable class:
    Parser key "warmup_fraction":
      Not of type ClosedUnitInterval: 2 does not conform to restriction v>=0 and v<=1. Got value: x
"""

CHOICE = """Parser key "data":
  Does not validate against any of the Union subtypes
  Errors:
    - Problem with given class_path 'datamodules.FashionMNISTDataModule':
        Parser key "in_chans":
          Expected a typing.Literal[1, 3]. Got value: 2
    - Expected a <class 'NoneType'>
"""


@pytest.mark.parametrize(
    ("message", "summary"),
    [
        (
            NESTED,
            "trainer.callbacks.init_args.attacks.init_args.restarts: 0 does not conform to "
            "restriction v>0 (PositiveInt)",
        ),
        (OPTIONAL, "threads: -3 does not conform to restriction v>0 (PositiveInt)"),
        (
            CALLABLE,
            "model.lr_scheduler.init_args.warmup_fraction: 2 does not conform to "
            "restriction v>=0 and v<=1 (ClosedUnitInterval)",
        ),
        (CHOICE, "data.init_args.in_chans: 2 is not one of 1, 3 (Literal)"),
        ("unrecognized arguments: --model.no_such 1", None),
    ],
)
def test_parse_errors_are_summarised_under_the_dotted_key(
    message: str, summary: str | None
) -> None:
    assert summarise(message) == summary
