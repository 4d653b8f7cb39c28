"""One validation path: every typed option refused from Python, and nested keys as typed."""

from __future__ import annotations

import dataclasses
import importlib
import inspect
import pkgutil
import typing
from collections.abc import Callable, Iterator, Sequence
from typing import Any, Literal

import pytest

from lightning_modules.classifier import ViTClassifier
from lightning_modules.methods import ANF, ERM, PGDAT, SAFER, TRADES, Composite, FinetuneMethod
from robust_vit.errors import ConfigError
from robust_vit.ranges import checked_by_owner

PACKAGES = ("lightning_modules", "callbacks", "datamodules", "robust_vit")
METHOD = "model.method.init_args"


def classes() -> Iterator[type]:
    """Every concrete class defined in the packages that configs build objects from.

    Dataclasses are records the code fills, not options a user sets; they are left out.
    """
    for package in PACKAGES:
        root = importlib.import_module(package)
        names = [package] + [
            info.name for info in pkgutil.walk_packages(root.__path__, prefix=f"{package}.")
        ]
        for name in names:
            module = importlib.import_module(name)
            for _, cls in inspect.getmembers(module, inspect.isclass):
                concrete = not inspect.isabstract(cls) and not dataclasses.is_dataclass(cls)
                if cls.__module__ == name and concrete:
                    yield cls


def restricted(hint: Any) -> bool:
    """Whether ``hint`` is a restricted number type (a subclass of int or float, not them)."""
    return (
        isinstance(hint, type) and issubclass(hint, int | float) and hint not in (int, float, bool)
    )


def declared(hint: Any) -> tuple[Any, bool] | None:
    """The Literal or restricted type ``hint`` declares, and whether it types a list's items."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin is typing.Union or str(origin) == "<class 'types.UnionType'>":
        inner = [d for d in (declared(a) for a in args if a is not type(None)) if d]
        return inner[0] if len(inner) == 1 else None
    if isinstance(origin, type) and issubclass(origin, Sequence) and len(args) == 1:
        item = declared(args[0])
        return (item[0], True) if item and not item[1] else None
    return (hint, False) if origin is Literal or restricted(hint) else None


def typed_arguments(cls: type) -> dict[str, tuple[Any, bool]]:
    """The Literal and restricted arguments of ``cls``, its bases' ``**kwargs`` ones included."""
    found: dict[str, tuple[Any, bool]] = {}
    for klass in reversed(cls.__mro__):
        init = vars(klass).get("__init__")
        if init is None or klass.__module__.split(".")[0] not in PACKAGES:
            continue
        for name, hint in typing.get_type_hints(init).items():
            kind = declared(hint)
            if kind is not None:
                found[name] = kind
    return found


def outside(kind: Any) -> Any:
    """A value ``kind`` refuses: an unknown choice, or a number outside the range."""
    if typing.get_origin(kind) is Literal:
        choices = typing.get_args(kind)
        return max(choices) + 1 if isinstance(choices[0], int) else "no-such-choice"
    for value in (-(10**9), -1, 0, 10**9):
        try:
            kind(value)
        except ValueError:
            return int(value) if issubclass(kind, int) else float(value)
    raise AssertionError(f"{kind} refuses none of the probes")


def inside(kind: Any) -> Any:
    """A value ``kind`` accepts."""
    if typing.get_origin(kind) is Literal:
        return typing.get_args(kind)[0]
    for value in (0.5, 1, 8, 0):
        try:
            kind(value)
        except ValueError:
            continue
        return int(value) if issubclass(kind, int) else float(value)
    raise AssertionError(f"{kind} accepts none of the probes")


def required(cls: type, typed: dict[str, tuple[Any, bool]]) -> dict[str, Any]:
    """Placeholders for the arguments without a default (valid ones where they are typed)."""
    out = {}
    for name, parameter in inspect.signature(cls.__init__).parameters.items():
        if name == "self" or parameter.kind in (parameter.VAR_KEYWORD, parameter.VAR_POSITIONAL):
            continue
        if parameter.default is parameter.empty:
            kind = typed.get(name)
            out[name] = None if kind is None else inside(kind[0])
    return out


CASES = [
    pytest.param(cls, name, kind, id=f"{cls.__name__}.{name}")
    for cls in sorted(set(classes()), key=lambda c: (c.__module__, c.__name__))
    for name, kind in typed_arguments(cls).items()
]


def test_the_table_covers_every_kind_of_configured_class() -> None:
    covered = {cls.__name__ for cls, *_ in (case.values for case in CASES)}
    expected = {"ANF", "SAFER", "Composite", "LayerSharpness", "AdversarialEval", "PGD"}
    expected |= {"AutoAttack", "CIFARDataModule", "FashionMNISTDataModule", "ViTClassifier"}
    assert expected <= covered


@pytest.mark.parametrize(("cls", "name", "kind"), CASES)
def test_a_value_outside_a_typed_option_is_refused_naming_it(
    cls: type, name: str, kind: tuple[Any, bool]
) -> None:
    item, each = kind
    value = outside(item)
    kwargs = {**required(cls, typed_arguments(cls)), name: [value] if each else value}
    with pytest.raises(ConfigError) as info:
        cls(**kwargs)
    assert info.value.field.rsplit(".", 1)[-1] == name
    assert repr(value) in info.value.message or str(value) in info.value.message


def build(method: Callable[[], FinetuneMethod]) -> None:
    """Build the method as the CLI does (inner objects first, owners check), then its owner."""
    with checked_by_owner(FinetuneMethod):
        held = method()
    ViTClassifier(method=held)


@pytest.mark.parametrize(
    ("method", "field"),
    [
        (
            lambda: Composite([PGDAT(), ANF(noise_units="token_rms", space="image")]),
            f"{METHOD}.terms[1].init_args.noise_units",
        ),
        (
            lambda: Composite([ERM(), TRADES(random_init=False, start="uniform")]),
            f"{METHOD}.terms[1].init_args.start",
        ),
        (
            lambda: SAFER(loss=ANF(noise_units="token_rms", space="image")),
            f"{METHOD}.loss.init_args.noise_units",
        ),
        (lambda: SAFER(loss=Composite([ERM(), ERM()], [1.0])), f"{METHOD}.loss.init_args.weights"),
        (
            lambda: SAFER(loss=Composite([ERM(), ANF(noise_units="token_rms", space="image")])),
            f"{METHOD}.loss.init_args.terms[1].init_args.noise_units",
        ),
        (lambda: SAFER(loss=Composite([ERM(), SAFER()])), f"{METHOD}.loss.init_args.terms[1]"),
        (lambda: ANF(noise_units="token_rms", space="image"), f"{METHOD}.noise_units"),
    ],
)
def test_a_rule_across_fields_names_the_key_as_typed(
    method: Callable[[], FinetuneMethod], field: str
) -> None:
    with pytest.raises(ConfigError) as info:
        build(method)
    assert info.value.field == field


def test_built_from_python_a_term_refuses_itself_at_once() -> None:
    with pytest.raises(ConfigError) as info:
        Composite([ERM(), ANF(noise_units="token_rms", space="image")])
    assert info.value.field == f"{METHOD}.noise_units"


def test_valid_nested_methods_pass_their_owner() -> None:
    build(lambda: SAFER(loss=Composite([ERM(), ANF(noise_units="token_rms")])))
