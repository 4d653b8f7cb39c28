"""The one validation path of the options: declared types, and rules across fields per class.

A single-field rule is a type: a jsonargparse restricted number type below, or a ``Literal``. A
constructor argument annotated with one is checked by jsonargparse when the CLI parses it (exit
code 2, the key named, the choices or range shown in ``--help``), and again by
:func:`check_ranges` when the class is built from Python. Either way the constructor receives a
plain ``int`` or ``float``: jsonargparse's restricted instances do not load back from a
``weights_only`` checkpoint or a safe YAML dump.

A rule across fields lives in one place per class, its ``check_fields()`` method, which raises
:class:`ConfigError` with a field relative to the class's arguments; :func:`check_ranges` runs it
after construction and an owner (the classifier, a Composite, SAFER) runs it for what it holds
under :func:`fields_under`, so the error names the dotted key the user typed.
"""

from __future__ import annotations

import functools
import inspect
import types
import typing
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any, Literal, TypeAlias, TypeVar

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
    "checked_by_owner",
    "declared_fields",
    "fields_under",
]

Init = TypeVar("Init", bound=Callable[..., None])
Check = Callable[[str, Any], Any]
"""Checks one value for the field it names; returns it plain, or raises :class:`ConfigError`."""

_checked_by_owner: ContextVar[tuple[type, ...]] = ContextVar("checked_by_owner", default=())


def _check_number(kind: type) -> Check:
    def check(field: str, value: Any) -> int | float:
        try:
            checked = kind(value)
        except (TypeError, ValueError) as err:
            raise ConfigError(field, f"{err} ({kind.__name__}).") from err
        return int(checked) if issubclass(kind, int) else float(checked)

    return check


def _check_choice(choices: tuple[Any, ...]) -> Check:
    def check(field: str, value: Any) -> Any:
        if not any(value == c and type(value) is type(c) for c in choices):
            listed = ", ".join(repr(c) for c in choices)
            raise ConfigError(field, f"must be one of {listed}; got {value!r}.")
        return value

    return check


def _rule(hint: Any) -> tuple[Check, bool] | None:
    """The check ``hint`` declares for one field, and whether it applies to each item of it."""
    args = typing.get_args(hint)
    origin = typing.get_origin(hint)
    if origin is Literal:
        return _check_choice(args), False
    if origin in (typing.Union, types.UnionType):
        rules = [r for r in (_rule(a) for a in args if a is not type(None)) if r]
        return rules[0] if len(rules) == 1 else None
    if isinstance(origin, type) and issubclass(origin, Sequence) and len(args) == 1:
        item = _rule(args[0])
        return (item[0], True) if item and not item[1] else None
    if isinstance(hint, type) and issubclass(hint, int | float) and hint not in (int, float, bool):
        return _check_number(hint), False
    return None


@functools.cache
def _declared_rules(init: Callable[..., None]) -> dict[str, tuple[Check, bool]]:
    hints = typing.get_type_hints(init)
    found = {name: _rule(hint) for name, hint in hints.items() if name != "return"}
    return {name: rule for name, rule in found.items() if rule is not None}


def declared_fields(init: Callable[..., None]) -> list[str]:
    """The arguments of ``init`` typed by a restricted number type or a Literal."""
    return list(_declared_rules(init))


def join(prefix: str, field: str) -> str:
    """``prefix.field``; ``field`` alone when there is no prefix."""
    return f"{prefix}.{field}" if prefix else field


@contextmanager
def fields_under(prefix: str) -> Iterator[None]:
    """Re-raise a :class:`ConfigError` of the block with its field under ``prefix``.

    An owner checks what it holds this way: a Composite its ``terms[i].init_args``, the
    classifier its ``method.init_args``, so the error names the key the user typed.
    """
    try:
        yield
    except ConfigError as err:
        raise ConfigError(join(prefix, err.field), err.message) from err


@contextmanager
def checked_by_owner(*kinds: type) -> Iterator[None]:
    """Within the block, objects of ``kinds`` leave their ``check_fields`` to their owner.

    jsonargparse builds nested objects first (a Composite's terms before the Composite), so a
    term checking itself could only name a guessed key; its owner, built after it, checks it
    under the real one.
    """
    token = _checked_by_owner.set(_checked_by_owner.get() + kinds)
    try:
        yield
    finally:
        _checked_by_owner.reset(token)


def check_ranges(prefix: str) -> Callable[[Init], Init]:
    """Decorate an ``__init__``: check its typed arguments, then the rules across its fields.

    An argument typed by a restricted number type or a Literal is checked against it before
    ``__init__`` runs; outside its range or choices it raises :class:`ConfigError` naming
    ``<prefix>.<argument>``. ``None`` passes (``PositiveInt | None``), a ``list[PositiveInt]`` is
    checked item by item, and numbers arrive plain. After the most derived ``__init__``, the
    object's ``check_fields()`` (its rules across fields, with fields relative to ``prefix``) runs,
    unless :func:`checked_by_owner` leaves it to the object's owner.
    """

    def decorate(init: Init) -> Init:
        signature = inspect.signature(init)

        @functools.wraps(init)
        def checked(*args: Any, **kwargs: Any) -> None:
            bound = signature.bind(*args, **kwargs)
            for name, (check, each) in _declared_rules(init).items():
                value = bound.arguments.get(name)
                if value is None:
                    continue
                field = join(prefix, name)
                bound.arguments[name] = (
                    [check(field, v) for v in value] if each else check(field, value)
                )
            init(*bound.args, **bound.kwargs)
            self = args[0]
            rules = getattr(self, "check_fields", None)
            owned = isinstance(self, _checked_by_owner.get())
            if rules is not None and type(self).__init__ is checked and not owned:
                with fields_under(prefix):
                    rules()

        return checked  # type: ignore[return-value]

    return decorate
