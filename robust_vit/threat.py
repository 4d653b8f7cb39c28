"""A threat model as one typed value, ``Threat(norm, eps)``, and radii as people write them.

Radii are in pixel units of images in [0, 1]. They are written ``8/255`` (or a plain number) in
YAMLs, on the command line, in logged keys and in records; inside, they are floats. A key is made
from a :class:`Threat` only where it is logged or written (``linf@8/255``, ``l2@0.5``) and read
back by :func:`parse_threat`, which also reads the keys written before the type existed
(``linf@0.0313725``, eps to 6 significant digits) as the same threat.

:class:`PixelRadius` and :class:`UnitPixelRadius` type the constructor options that are radii or
steps: jsonargparse parses ``8/255`` for them and refuses a malformed value with the key named;
:func:`robust_vit.ranges.check_ranges` passes them on as plain floats.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal, TypeAlias, get_args

from jsonargparse.typing import register_type

NormName = Literal["linf", "l2"]
NORM_LABELS: dict[NormName, str] = {"linf": "L-inf", "l2": "L2"}
DENOMINATOR = 255  # one grey level of an 8-bit image
OLD_DIGITS = 6  # significant digits of the radii in keys written before Threat
SHORT_DIGITS = 4  # a radius with at most this many significant digits is written as it is
_FRACTION = re.compile(r"^\s*([0-9.eE+-]+)\s*/\s*([0-9.eE+-]+)\s*$")


def parse_radius(text: str | float) -> float:
    """The radius a number or a fraction (``8/255``) stands for; ValueError if it is neither.

    A number written to 6 significant digits that matches a whole number of 255ths
    (``0.0313725``, as keys were written before :class:`Threat`) stands for that fraction.
    """
    if isinstance(text, bool) or not isinstance(text, str | int | float):
        raise ValueError(f"{text!r} is not a number or a fraction such as 8/255")
    if isinstance(text, int | float):
        return float(text)
    fraction = _FRACTION.match(text)
    try:
        if fraction is None:
            return _snapped(float(text))
        numerator, denominator = (float(part) for part in fraction.groups())
    except ValueError:
        raise ValueError(f"{text!r} is not a number or a fraction such as 8/255") from None
    if denominator == 0 or not math.isfinite(numerator / denominator):
        raise ValueError(f"{text!r} divides by zero; write a fraction such as 8/255")
    return numerator / denominator


def _snapped(eps: float) -> float:
    """``k/255`` when ``eps`` is that fraction rounded to 6 significant digits, else ``eps``."""
    if not math.isfinite(eps) or _is_short(eps):
        return eps
    steps = round(eps * DENOMINATOR)
    whole = steps / DENOMINATOR
    return whole if steps >= 1 and f"{whole:.{OLD_DIGITS}g}" == f"{eps:.{OLD_DIGITS}g}" else eps


def _is_short(eps: float) -> bool:
    return float(f"{eps:.{SHORT_DIGITS}g}") == eps


def radius_text(eps: float) -> str:
    """``8/255`` for a whole number of 255ths, else the number itself (``0.5``, ``0.03``).

    A radius with a short decimal form keeps it (``0.2``, not ``51/255``; ``1``, not
    ``255/255``); any other is written exactly, so that :func:`parse_radius` reads it back.
    """
    if _is_short(eps):
        return f"{eps:.{SHORT_DIGITS}g}"
    steps = round(eps * DENOMINATOR)
    if _snapped(eps) == steps / DENOMINATOR:
        return f"{steps}/{DENOMINATOR}"
    return repr(eps)


@dataclass(frozen=True, order=True)
class Threat:
    """A threat model: perturbations of ``norm`` at most ``eps`` (pixel units).

    Args:
        norm: ``linf`` or ``l2``.
        eps: the radius.
    """

    norm: NormName
    eps: float

    @property
    def key(self) -> str:
        """The key logged and written for this threat: ``linf@8/255``."""
        return f"{self.norm}@{radius_text(self.eps)}"

    def __str__(self) -> str:
        """The key, so that messages name a threat as records do."""
        return self.key

    @property
    def label(self) -> str:
        """The label of tables and plots: ``L-inf 8/255``."""
        return f"{NORM_LABELS[self.norm]} {radius_text(self.eps)}"


def parse_threat(key: str) -> Threat:
    """The :class:`Threat` of a key ``<norm>@<radius>``, in the current or the old form."""
    norm, sep, radius = key.rpartition("@")
    if not sep or norm not in get_args(NormName):
        raise ValueError(f"{key!r} is not a threat key such as linf@8/255 or l2@0.5")
    return Threat(norm, parse_radius(radius))  # type: ignore[arg-type]


def canonical_metric_key(key: str) -> str:
    """A logged metric key ``.../<attack>@<radius>`` with its radius as written now.

    ``test/adversarial/pgd20_linf@0.0313725`` (an old record) reads
    ``test/adversarial/pgd20_linf@8/255``; keys without a radius are returned as they are.
    """
    head, sep, radius = key.rpartition("@")
    if not sep:
        return key
    try:
        return f"{head}@{radius_text(parse_radius(radius))}"
    except ValueError:
        return key


def _checked_radius(value: object, high: float) -> float:
    """The radius ``value`` stands for, or a ValueError saying what is wrong and the fix."""
    bounds = "v>=0" if math.isinf(high) else f"v>=0 and v<={high:g}"
    try:
        eps = parse_radius(value)  # type: ignore[arg-type]
    except ValueError as err:
        raise ValueError(f"{err} ({bounds}, pixel units)") from None
    if not 0 <= eps <= high:
        raise ValueError(
            f"{value} does not conform to restriction {bounds}: a radius in pixel units of "
            "images in [0, 1], as a number or a fraction such as 8/255"
        )
    return eps


if TYPE_CHECKING:  # to mypy they are floats; at run time, float subclasses jsonargparse parses
    PixelRadius: TypeAlias = float
    UnitPixelRadius: TypeAlias = float
else:

    class PixelRadius(float):
        """A radius or step >= 0 in pixel units: a number or a fraction such as ``8/255``."""

        high = math.inf

        def __new__(cls, value: object) -> PixelRadius:
            """Parse and check ``value``; ValueError names the restriction and the fix."""
            return super().__new__(cls, _checked_radius(value, cls.high))

    class UnitPixelRadius(PixelRadius):
        """A radius or step in [0, 1] in pixel units: a number or a fraction such as ``8/255``."""

        high = 1.0

    for _radius_type in (PixelRadius, UnitPixelRadius):
        register_type(_radius_type, serializer=lambda eps: _written(float(eps)))


def _written(eps: float) -> str | float:
    """A radius as a dumped config holds it: ``8/255`` as text, any other as a number."""
    text = radius_text(eps)
    return text if "/" in text else eps
