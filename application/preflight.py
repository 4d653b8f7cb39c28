"""Checks the CLI runs before any compute: wandb credentials and the checkpoint to resume from."""

from __future__ import annotations

import netrc
import os
import zipfile
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import torch
from torch import nn

from robust_vit.adapters import without_adapters
from robust_vit.errors import ConfigError

ONLINE_MODES = ("online", "run")
CKPT_KEYWORDS = ("last", "best", "hpc", "registry")
WANDB_LOGGER = "WandbLogger"


def wandb_online() -> bool:
    """Whether ``WANDB_MODE`` asks wandb to log online."""
    return os.environ.get("WANDB_MODE", "").lower() in ONLINE_MODES


def has_wandb_credentials() -> bool:
    """An API key in the environment, or the netrc entry ``wandb login`` writes for the host."""
    if os.environ.get("WANDB_API_KEY"):
        return True
    host = urlparse(os.environ.get("WANDB_BASE_URL", "https://api.wandb.ai")).hostname or ""
    path = Path(os.environ.get("NETRC") or Path.home() / ".netrc")
    try:
        return path.is_file() and netrc.netrc(str(path)).authenticators(host) is not None
    except (OSError, netrc.NetrcParseError):
        return False


def wandb_logger_configs(loggers: Any) -> list[Any]:
    """The ``WandbLogger`` entries of a parsed ``trainer.logger`` value."""
    entries = loggers if isinstance(loggers, list) else [loggers]
    return [e for e in entries if str(getattr(e, "class_path", "")).endswith(WANDB_LOGGER)]


def prepare_wandb(loggers: Any) -> None:
    """Make ``WANDB_MODE=online`` the one switch to online logging, and require credentials.

    Lightning's ``WandbLogger(offline=True)`` would force offline mode over the environment, so
    the configs are switched to ``offline: false`` when the environment asks for online logging.
    """
    configs = wandb_logger_configs(loggers)
    if not configs or not wandb_online():
        return
    if not has_wandb_credentials():
        raise ConfigError(
            "trainer.logger",
            "WANDB_MODE=online but wandb has no credentials (no WANDB_API_KEY, no api.wandb.ai "
            "entry in ~/.netrc). Run `wandb login` first, or set WANDB_MODE=offline to log "
            "locally and `wandb sync` the run later. Nothing was run.",
        )
    for config in configs:
        config.init_args.offline = False


def label_wandb_run(
    loggers: Any, *, group: str | None, job_type: str | None, seed: int | bool | None
) -> None:
    """Give the wandb run its sweep ``group``, its arm as ``job_type`` and ``seed<N>`` as a tag.

    They go to ``wandb.init`` through ``WandbLogger``'s keyword arguments, so wandb's UI groups
    a sweep's seeds into one line per arm.
    """
    labels = {k: v for k, v in {"group": group, "job_type": job_type}.items() if v is not None}
    seed_tags = [f"seed{seed}"] if isinstance(seed, int) and not isinstance(seed, bool) else []
    for config in wandb_logger_configs(loggers):
        kwargs = dict(getattr(config, "dict_kwargs", None) or {})
        kwargs.update(labels)
        tags = [t for t in kwargs.get("tags") or [] if not t.startswith("seed")]
        if tags or seed_tags:
            kwargs["tags"] = tags + seed_tags
        config.dict_kwargs = kwargs


def read_checkpoint(ckpt_path: str | None) -> dict[str, Any] | None:
    """The state dict of the Lightning checkpoint at ``ckpt_path``; anything else fails clearly.

    Keywords Lightning resolves itself (``last``, ``best``, ...) and None give None. The file is
    read with ``weights_only=True``, so loading it executes no code.
    """
    if ckpt_path is None or ckpt_path in CKPT_KEYWORDS:
        return None
    path = Path(ckpt_path)
    if not path.is_file():
        raise ConfigError(
            "ckpt_path",
            f"{ckpt_path!r} does not exist. Point it at a .ckpt file "
            "under runs/<name>/version_N/checkpoints/, or use `last`.",
        )
    if not zipfile.is_zipfile(path):
        raise ConfigError(
            "ckpt_path",
            f"{ckpt_path!r} is not a Lightning checkpoint (not a "
            "torch.save zip archive); point it at a .ckpt file the trainer wrote.",
        )
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:
        raise ConfigError(
            "ckpt_path",
            f"{ckpt_path!r} does not load with weights_only=True "
            f"({str(err).splitlines()[-1][:200]}); only checkpoints of tensors and "
            "plain values are loaded, so no code from the file runs.",
        ) from err
    state = checkpoint.get("state_dict") if isinstance(checkpoint, dict) else None
    if not isinstance(state, dict):
        raise ConfigError(
            "ckpt_path",
            f"{ckpt_path!r} has no state_dict: it is not a Lightning "
            "checkpoint (a weights file goes in model.weights instead).",
        )
    return state


def check_state_fits(ckpt_path: str, state: dict[str, Any], model: nn.Module) -> None:
    """Fail naming the first tensors that are missing or shaped differently in the checkpoint.

    Adapters (SAFER's LoRA/DoRA) are compared by the plain layers they sit on: the method puts
    them back on load.
    """
    expected = without_adapters(model.state_dict())
    state = without_adapters(state)
    wrong = [
        f"{k} {tuple(state[k].shape)} vs {tuple(v.shape)}"
        for k, v in expected.items()
        if k in state and hasattr(state[k], "shape") and v.numel() and state[k].shape != v.shape
    ]
    missing = [k for k in expected if k not in state and not k.endswith("_extra_state")]
    if wrong or missing:
        detail = "; ".join(wrong[:3]) or f"missing {', '.join(missing[:3])}"
        raise ConfigError(
            "ckpt_path",
            f"{ckpt_path!r} does not fit this model ({detail}). Use "
            "the model, data (num_classes, img_size) and method config it was "
            "trained with.",
        )
