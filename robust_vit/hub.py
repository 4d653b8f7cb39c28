"""Pretrained weights from the Hugging Face hub cache, for compute nodes without network.

``--model.pretrained true`` loads timm's published weights through ``huggingface_hub``: a timm
name (``vit_small_patch16_224.augreg_in21k_ft_in1k``, or without its tag for the default one) or
an ``hf-hub:org/name[@revision]`` name. With ``HF_HUB_OFFLINE=1`` (usual on cluster compute nodes)
they must already be in the cache (``HF_HUB_CACHE``, by default ``~/.cache/huggingface/hub``),
which ``robust-vit prefetch NAME`` (``make prefetch MODEL=NAME``) fills on a machine with network.
"""

from __future__ import annotations

from dataclasses import dataclass

import timm
from huggingface_hub import constants, try_to_load_from_cache
from timm.models import get_pretrained_cfg

from robust_vit.errors import ConfigError

HUB_PREFIX = "hf-hub:"
CONFIG_FILE = "config.json"
# timm's hub loader takes the safetensors file when the repository has one, else the pickle.
WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")


@dataclass(frozen=True)
class HubWeights:
    """Where a model's pretrained weights live on the hub.

    Args:
        repo_id: the hub repository (``timm/vit_small_patch16_224.augreg_in21k_ft_in1k``).
        revision: a branch, tag or commit (None: the default branch).
        needs_config: whether timm reads the repository's ``config.json`` (``hf-hub:`` names).
        weight_files: the files timm may load the weights from, any one of which will do.
    """

    repo_id: str
    revision: str | None
    needs_config: bool
    weight_files: tuple[str, ...]


def hub_weights(model_name: str) -> HubWeights | None:
    """The hub location of ``model_name``'s pretrained weights (None: not hub-hosted in timm)."""
    if model_name.startswith(HUB_PREFIX):
        repo_id, _, revision = model_name.removeprefix(HUB_PREFIX).partition("@")
        return HubWeights(repo_id, revision or None, True, WEIGHT_FILES)
    cfg = get_pretrained_cfg(model_name)
    if cfg is None or not cfg.hf_hub_id:
        return None
    repo_id, _, revision = cfg.hf_hub_id.partition("@")
    files = (cfg.hf_hub_filename,) if cfg.hf_hub_filename else WEIGHT_FILES
    return HubWeights(repo_id, revision or None, False, files)


def is_cached(repo_id: str, filename: str, revision: str | None) -> bool:
    """Whether the hub cache holds ``filename`` of ``repo_id`` at ``revision``."""
    return isinstance(try_to_load_from_cache(repo_id, filename, revision=revision), str)


def missing_files(weights: HubWeights) -> list[str]:
    """The files a load of ``weights`` needs that the cache lacks."""
    missing = []
    if weights.needs_config and not is_cached(weights.repo_id, CONFIG_FILE, weights.revision):
        missing.append(CONFIG_FILE)
    if not any(is_cached(weights.repo_id, f, weights.revision) for f in weights.weight_files):
        missing.append(" or ".join(weights.weight_files))
    return missing


def prefetch_hint(model_name: str) -> str:
    """The command that fills the cache for ``model_name`` on a machine with network."""
    return (
        f"On a machine with network that shares this HF_HUB_CACHE (a login node), run "
        f"`make prefetch MODEL={model_name}` (or `robust-vit prefetch {model_name}`)"
    )


def check_pretrained_available(model_name: str) -> None:
    """Fail at once, with the fix, when offline and the cache lacks ``model_name``'s weights.

    Online, or for weights timm does not host on the hub, this checks nothing: timm downloads.
    """
    if not model_name.startswith(HUB_PREFIX) and not timm.is_model(model_name):
        return  # the model-name check says what is wrong
    weights = hub_weights(model_name)
    if weights is None or not constants.HF_HUB_OFFLINE:
        return
    missing = missing_files(weights)
    if missing:
        raise ConfigError(
            "model.pretrained",
            f"HF_HUB_OFFLINE=1 and the Hugging Face cache {constants.HF_HUB_CACHE} has no "
            f"{' and no '.join(missing)} for {weights.repo_id}"
            f"{'@' + weights.revision if weights.revision else ''} ({model_name!r}). "
            f"{prefetch_hint(model_name)}, or load a local file with --model.weights.",
        )
