"""Build timm Vision Transformers that take images in [0, 1] and hold their own normalisation."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import timm
import torch
from huggingface_hub.errors import LocalEntryNotFoundError
from safetensors import safe_open
from safetensors.torch import save_file
from torch import Tensor, nn

from robust_vit.errors import ConfigError
from robust_vit.hub import HUB_PREFIX, check_pretrained_available, prefetch_hint

HEAD_WEIGHT_KEY = "head.weight"
METADATA_KEY = "robust_vit"


class NormalizedViT(nn.Module):
    """A timm ViT behind a fixed input normalisation, so that every epsilon is in pixel units.

    Args:
        vit: the timm model (``patch_embed``, ``blocks``, ``head`` stay reachable as ``.vit``).
        mean: per-channel mean subtracted from the [0, 1] input.
        std: per-channel standard deviation the input is divided by.
    """

    mean: Tensor
    std: Tensor

    def __init__(self, vit: nn.Module, mean: Sequence[float], std: Sequence[float]) -> None:
        super().__init__()
        self.vit = vit
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1))
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1))

    def normalize(self, x: Tensor) -> Tensor:
        """Map a [0, 1] image batch to the model's input space."""
        return (x - self.mean) / self.std

    def forward(self, x: Tensor) -> Tensor:
        """Logits for a batch of images in [0, 1]."""
        return self.vit(self.normalize(x))


def default_normalization(
    vit: nn.Module, in_chans: int
) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """The model's own pretrained-config mean and std, averaged down to one channel if needed."""
    cfg = getattr(vit, "pretrained_cfg", {}) or {}
    mean = tuple(float(v) for v in cfg.get("mean", (0.5, 0.5, 0.5)))
    std = tuple(float(v) for v in cfg.get("std", (0.5, 0.5, 0.5)))
    if len(mean) == in_chans:
        return mean, std
    return (sum(mean) / len(mean),) * in_chans, (sum(std) / len(std),) * in_chans


def check_model_name(model_name: str) -> None:
    """Fail with the fix when timm does not know ``model_name`` (``hf-hub:`` names go unchecked)."""
    if model_name.startswith(HUB_PREFIX) or timm.is_model(model_name):
        return
    close = timm.list_models(f"*{model_name.split('_')[0]}*")[:8]
    hint = f" Close names: {', '.join(close)}." if close else ""
    raise ConfigError(
        "model.model_name",
        f"timm has no model called {model_name!r}.{hint} `timm.list_models('vit_*')` lists them.",
    )


def read_weights_header(path: Path) -> dict[str, Any]:
    """Shapes and metadata of a safetensors weights file, without loading the tensors."""
    with safe_open(str(path), framework="pt") as f:
        shapes = {k: tuple(f.get_slice(k).get_shape()) for k in f.keys()}
        metadata = f.metadata() or {}
    return {"shapes": shapes, "metadata": json.loads(metadata.get(METADATA_KEY, "{}"))}


def check_weights_file(weights: str | Path) -> Path:
    """Return ``weights`` as a path, failing clearly if it is missing or not a weights file."""
    path = Path(weights)
    if not path.is_file():
        raise ConfigError(
            "model.weights",
            f"weights file {str(path)!r} does not exist. Run `make pretrain` to create the default "
            "one, or point model.weights at a .safetensors/.pth file.",
        )
    if path.suffix == ".safetensors":
        try:
            read_weights_header(path)
        except Exception as err:
            raise ConfigError(
                "model.weights", f"{str(path)!r} is not a readable safetensors file ({err})."
            ) from err
    return path


def create_vit(
    model_name: str,
    *,
    num_classes: int,
    img_size: int,
    in_chans: int,
    patch_size: int | None = None,
    pretrained: bool = False,
    weights: str | Path | None = None,
    drop_path_rate: float = 0.0,
    model_kwargs: dict[str, Any] | None = None,
) -> nn.Module:
    """Create a timm ViT, optionally loading a local weights file through timm's own loader.

    A local file goes through ``pretrained_cfg_overlay=dict(file=...)``, the same path real timm
    weights take: timm drops a head of another size and resizes ``pos_embed`` and the patch kernel.
    """
    check_model_name(model_name)
    kwargs: dict[str, Any] = dict(model_kwargs or {})
    kwargs.update(
        num_classes=num_classes, img_size=img_size, in_chans=in_chans, drop_path_rate=drop_path_rate
    )
    if patch_size is not None:
        kwargs["patch_size"] = patch_size
    if weights is not None:
        path = check_weights_file(weights)
        overlay: dict[str, Any] = {"file": str(path)}
        if path.suffix == ".safetensors":
            head = read_weights_header(path)["shapes"].get(HEAD_WEIGHT_KEY)
            if head is not None:
                overlay["num_classes"] = head[0]
        kwargs["pretrained_cfg_overlay"] = overlay
        pretrained = True
    elif pretrained:
        check_pretrained_available(model_name)
    try:
        return timm.create_model(model_name, pretrained=pretrained, **kwargs)
    except TypeError as err:
        raise ConfigError(
            "model.model_name",
            f"{model_name!r} does not take the ViT options {sorted(kwargs)} ({err}). Use a timm "
            "Vision Transformer (vit_*, deit_*, ...) or model_kwargs it accepts.",
        ) from err
    except LocalEntryNotFoundError as err:
        raise ConfigError(
            "model.pretrained",
            f"the weights of {model_name!r} are neither in the Hugging Face cache nor reachable "
            f"({err}). {prefetch_hint(model_name)}, or load a local file with --model.weights.",
        ) from err
    except RuntimeError as err:
        if weights is None:
            raise
        raise ConfigError(
            "model.weights",
            f"{str(weights)!r} does not fit {model_name!r} with {model_kwargs or {}} ({err}). "
            "Use the model_name and model_kwargs the file was trained with.",
        ) from err


def save_vit_weights(vit: nn.Module, path: str | Path, metadata: dict[str, Any]) -> Path:
    """Save a timm ViT's state dict as safetensors that timm's local-file loader reads back."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().contiguous().cpu() for k, v in vit.state_dict().items()}
    tmp = path.with_suffix(path.suffix + ".tmp")
    save_file(state, str(tmp), metadata={METADATA_KEY: json.dumps(metadata)})
    tmp.replace(path)
    return path


def weights_digest(module: nn.Module) -> str:
    """SHA-256 of a module's state dict tensors (see :func:`state_digest`)."""
    return state_digest(module.state_dict())


def state_digest(state: Mapping[str, Any]) -> str:
    """SHA-256 of a state dict's tensors (names, dtypes, shapes and bytes), in key order."""
    digest = hashlib.sha256()
    for name, value in sorted(state.items()):
        if torch.is_tensor(value):
            flat = value.detach().cpu().contiguous().reshape(-1)
            digest.update(f"{name}:{flat.dtype}:{tuple(value.shape)}".encode())
            digest.update(flat.view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()
