"""Declared ranges of the numeric options: jsonargparse restricted types, checked in two places.

A constructor argument annotated with one of these types is checked by jsonargparse when the
CLI parses it (exit code 2, the key named, the range shown in ``--help``), and again by
:func:`check_ranges` when the class is built from Python. Either way the constructor receives a
plain ``int`` or ``float``: jsonargparse's restricted instances do not load back from a
``weights_only`` checkpoint or a safe YAML dump.
"""

from __future__ import annotations

import functools
import inspect
import types
import typing
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, TypeAlias, TypeVar

from robust_vit.errors import ConfigError

if TYPE_CHECKING:  # to mypy they are their base types; at run time they are classes
    PositiveInt: TypeAlias = int
    NonNegativeInt: TypeAlias = int
    AtLeast8: TypeAlias = int
    OneToFive: TypeAlias = int
    PositiveFloat: TypeAlias = float
    NonNegativeFloat: TypeAlias = float
    ClosedUnitInterval: TypeAlias = float
    LeftOpenUnitInterval: TypeAlias = float
    RightOpenUnitInterval: TypeAlias = float
    ZeroToHalf: TypeAlias = float
    PositiveAtMost2: TypeAlias = float
    PositiveAtMost10: TypeAlias = float
else:
    from jsonargparse.typing import (
        ClosedUnitInterval,
        NonNegativeFloat,
        NonNegativeInt,
        PositiveFloat,
        PositiveInt,
        restricted_number_type,
    )

    AtLeast8 = restricted_number_type(
        "AtLeast8", int, (">=", 8), docstring="int restricted to be >=8"
    )
    OneToFive = restricted_number_type(
        "OneToFive", int, [(">=", 1), ("<=", 5)], docstring="int restricted to be >=1 and <=5"
    )
    LeftOpenUnitInterval = restricted_number_type(
        "LeftOpenUnitInterval",
        float,
        [(">", 0), ("<=", 1)],
        docstring="float restricted to be >0 and <=1",
    )
    RightOpenUnitInterval = restricted_number_type(
        "RightOpenUnitInterval",
        float,
        [(">=", 0), ("<", 1)],
        docstring="float restricted to be >=0 and <1",
    )
    ZeroToHalf = restricted_number_type(
        "ZeroToHalf",
        float,
        [(">=", 0), ("<=", 0.5)],
        docstring="float restricted to be >=0 and <=0.5",
    )
    PositiveAtMost2 = restricted_number_type(
        "PositiveAtMost2",
        float,
        [(">", 0), ("<=", 2)],
        docstring="float restricted to be >0 and <=2",
    )
    PositiveAtMost10 = restricted_number_type(
        "PositiveAtMost10",
        float,
        [(">", 0), ("<=", 10)],
        docstring="float restricted to be >0 and <=10",
    )

__all__ = [
    "AtLeast8",
    "ClosedUnitInterval",
    "LeftOpenUnitInterval",
    "NonNegativeFloat",
    "NonNegativeInt",
    "OneToFive",
    "PositiveAtMost2",
    "PositiveAtMost10",
    "PositiveFloat",
    "PositiveInt",
    "RightOpenUnitInterval",
    "ZeroToHalf",
    "check_ranges",
]

Init = TypeVar("Init", bound=Callable[..., None])


def _restricted(hint: Any) -> tuple[type, bool] | None:
    """The restricted number type in ``hint`` and whether it types a sequence's items."""
    args = typing.get_args(hint)
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        kinds = [k for k in (_restricted(a) for a in args if a is not type(None)) if k]
        return kinds[0] if len(kinds) == 1 else None
    if isinstance(origin, type) and issubclass(origin, Sequence) and len(args) == 1:
        item = _restricted(args[0])
        return (item[0], True) if item and not item[1] else None
    if isinstance(hint, type) and issubclass(hint, int | float) and hint not in (int, float, bool):
        return hint, False
    return None


@functools.cache
def _ranged_arguments(init: Callable[..., None]) -> dict[str, tuple[type, bool]]:
    hints = typing.get_type_hints(init)
    found = {name: _restricted(hint) for name, hint in hints.items() if name != "return"}
    return {name: kind for name, kind in found.items() if kind is not None}


def _plain(field: str, value: Any, kind: type) -> int | float:
    """``value`` as a plain int or float, or a :class:`ConfigError` outside ``kind``'s range."""
    try:
        checked = kind(value)
    except (TypeError, ValueError) as err:
        raise ConfigError(field, f"{err} ({kind.__name__}).") from err
    return int(checked) if issubclass(kind, int) else float(checked)


def check_ranges(prefix: str) -> Callable[[Init], Init]:
    """Decorate an ``__init__``: check its restricted-type arguments, pass them on plain.

    An argument outside its range raises :class:`ConfigError` naming ``<prefix>.<argument>``;
    ``None`` passes (``PositiveInt | None``), and a ``list[PositiveInt]`` is checked item by item.
    """

    def decorate(init: Init) -> Init:
        signature = inspect.signature(init)

        @functools.wraps(init)
        def checked(*args: Any, **kwargs: Any) -> None:
            bound = signature.bind(*args, **kwargs)
            for name, (kind, is_sequence) in _ranged_arguments(init).items():
                value = bound.arguments.get(name)
                if value is None:
                    continue
                field = f"{prefix}.{name}"
                bound.arguments[name] = (
                    [_plain(field, v, kind) for v in value]
                    if is_sequence
                    else _plain(field, value, kind)
                )
            init(*bound.args, **bound.kwargs)

        return checked  # type: ignore[return-value]

    return decorate
