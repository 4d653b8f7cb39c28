"""Every global RNG state as tensors and plain values, so that checkpoints load ``weights_only``."""

from __future__ import annotations

import random
from typing import Any, cast

import numpy as np
import torch


def capture_rng_states() -> dict[str, Any]:
    """The torch (CPU and CUDA), numpy and Python RNG states."""
    legacy = tuple[str, np.ndarray, int, int, float]  # get_state's default, legacy=True
    kind, keys, position, has_gauss, gauss = cast(legacy, np.random.get_state())
    version, internal, gauss_next = random.getstate()
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_initialized() else [],
        "numpy": {
            "kind": kind,
            "keys": torch.from_numpy(keys.astype(np.int64)),
            "position": int(position),
            "has_gauss": int(has_gauss),
            "gauss": float(gauss),
        },
        "python": {"version": version, "internal": list(internal), "gauss_next": gauss_next},
    }


def restore_rng_states(states: dict[str, Any]) -> None:
    """Set every RNG to the states :func:`capture_rng_states` returned."""
    torch.set_rng_state(states["torch"])
    if states["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["cuda"])
    n = states["numpy"]
    np.random.set_state(
        (n["kind"], n["keys"].numpy().astype(np.uint32), n["position"], n["has_gauss"], n["gauss"])
    )
    p = states["python"]
    random.setstate((p["version"], tuple(p["internal"]), p["gauss_next"]))
