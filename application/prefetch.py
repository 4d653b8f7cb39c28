"""``robust-vit prefetch NAME``: fill the Hugging Face cache on a machine with network.

Compute nodes without network then load the weights with ``--model.pretrained true`` under
``HF_HUB_OFFLINE=1`` (:mod:`robust_vit.hub` checks the cache before any compute).
"""

from __future__ import annotations

import argparse

import timm
from huggingface_hub import constants
from huggingface_hub.errors import LocalEntryNotFoundError

from robust_vit.hub import HubWeights, hub_weights, missing_files


def prefetch(model_name: str) -> HubWeights | None:
    """Download ``model_name``'s pretrained weights into the hub cache, as a load reads them.

    It builds the model once with ``pretrained=True``, so every file timm's loader reads is
    fetched, then checks that an offline load would find them.
    """
    timm.create_model(model_name, pretrained=True)
    weights = hub_weights(model_name)
    if weights is not None and missing_files(weights):
        raise RuntimeError(f"{model_name!r} loaded, but not from {constants.HF_HUB_CACHE}.")
    return weights


def main(argv: list[str] | None = None) -> None:
    """``robust-vit prefetch NAME [NAME ...]``: fill the hub cache for offline compute nodes."""
    parser = argparse.ArgumentParser(
        prog="robust-vit prefetch",
        description="Download timm pretrained weights (timm names, with or without a tag, or "
        "hf-hub:org/name[@revision]) into the Hugging Face cache, so that --model.pretrained "
        "true works under HF_HUB_OFFLINE=1. Needs network.",
    )
    parser.add_argument("models", nargs="+", metavar="NAME")
    args = parser.parse_args(argv)
    for name in args.models:
        known = hub_weights(name)
        if constants.HF_HUB_OFFLINE and known is not None and missing_files(known):
            parser.error(
                f"{name}: HF_HUB_OFFLINE=1 here, so nothing can be downloaded. Run "
                "it on a machine with network, without HF_HUB_OFFLINE."
            )
        try:
            weights = prefetch(name)
        except LocalEntryNotFoundError as err:
            parser.error(
                f"{name}: the hub did not answer ({err}). Run it where huggingface.co is reachable."
            )
        where = weights.repo_id if weights else "timm's download cache"
        print(f"{name}: cached ({where} in {constants.HF_HUB_CACHE})")
