"""Attack radii as people read them: ``4/255`` rather than ``0.0156863``.

Records key a threat model as ``<norm>@<eps>`` with eps to 6 significant digits (see
``callbacks.AdversarialEval``); these helpers make the number of such a key, and any radius, a
label for tables and plots.
"""

from __future__ import annotations

import re

NORM_LABELS = {"linf": "L-inf", "l2": "L2"}
_THREAT_SUFFIX = re.compile(r"@(\d+(?:\.\d*)?(?:e-?\d+)?)$")


def radius_label(eps: float) -> str:
    """``k/255`` when eps is a whole number of 255ths (to the records' 6 digits), else ``%g``."""
    steps = eps * 255
    if eps > 0 and abs(steps - round(steps)) < 1e-4 * max(1.0, steps):
        return f"{round(steps)}/255"
    return f"{eps:g}"


def threat_radius(threat: str) -> tuple[str, float]:
    """``(norm, eps)`` of a threat key ``<norm>@<eps>``."""
    norm, eps = threat.rsplit("@", 1)
    return norm, float(eps)


def threat_label(threat: str) -> str:
    """``L-inf 4/255`` for the threat key ``linf@0.0156863``."""
    norm, eps = threat_radius(threat)
    return f"{NORM_LABELS.get(norm, norm)} {radius_label(eps)}"


def metric_label(key: str) -> str:
    """A logged metric key with its radius as a label: ``.../pgd20_linf@4/255``."""
    match = _THREAT_SUFFIX.search(key)
    if match is None:
        return key
    return key[: match.start()] + "@" + radius_label(float(match.group(1)))
