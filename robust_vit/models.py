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
from robust_vit.geometry import check_geometry
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


# Options ViTClassifier sets itself: model_kwargs may not set them a second time.
OWN_OPTIONS = {
    "num_classes": "model.num_classes (linked from data.num_classes)",
    "img_size": "model.img_size (linked from data.img_size)",
    "in_chans": "model.in_chans (linked from data.in_chans)",
    "drop_path_rate": "model.drop_path_rate",
    "patch_size": "model.patch_size",
}


def vit_kwargs(
    *,
    num_classes: int,
    img_size: int,
    in_chans: int,
    patch_size: int | None,
    drop_path_rate: float,
    model_kwargs: dict[str, Any] | None,
) -> dict[str, Any]:
    """The ``timm.create_model`` arguments; ``model_kwargs`` may not repeat a field of its own."""
    kwargs: dict[str, Any] = dict(model_kwargs or {})
    for key, owner in OWN_OPTIONS.items():
        if key in kwargs and (key != "patch_size" or patch_size is not None):
            raise ConfigError(
                f"model.model_kwargs.{key}",
                f"is set by {owner}, which would override it. Remove it from model_kwargs and "
                f"set {owner.split(' ')[0]} instead.",
            )
    kwargs.update(
        num_classes=num_classes, img_size=img_size, in_chans=in_chans, drop_path_rate=drop_path_rate
    )
    if patch_size is not None:
        kwargs["patch_size"] = patch_size
    return kwargs


def check_architecture(model_name: str, kwargs: dict[str, Any]) -> None:
    """Build the architecture on the ``meta`` device (no memory, no weights) and check its shape.

    timm's own refusals (an ``embed_dim`` that ``num_heads`` does not divide, a zero or negative
    size, an unknown option) and shapes that would crash or crop at the first forward pass
    (:mod:`robust_vit.geometry`) fail here, naming the field, before anything is computed.
    """
    try:
        with torch.device("meta"):
            vit = timm.create_model(model_name, pretrained=False, **kwargs)
    except TypeError as err:
        raise ConfigError(
            "model.model_name",
            f"{model_name!r} does not take the ViT options {sorted(kwargs)} ({err}). Use a timm "
            "Vision Transformer (vit_*, deit_*, ...) or model_kwargs it accepts.",
        ) from err
    except (AssertionError, ValueError, RuntimeError, ArithmeticError) as err:
        raise ConfigError(
            "model.model_kwargs",
            f"timm cannot build {model_name!r} with {describe(kwargs)} "
            f"({type(err).__name__}: {err}). Every size must be at least 1 and embed_dim a "
            "multiple of num_heads; change model_kwargs (or model.patch_size).",
        ) from err
    check_geometry(vit, kwargs.get("mlp_ratio"))


def describe(kwargs: dict[str, Any]) -> str:
    """The options of a build, as a user would read them (``embed_dim=50, num_heads=3``)."""
    return ", ".join(f"{k}={v}" for k, v in sorted(kwargs.items()))


def weights_overlay(path: Path) -> dict[str, Any]:
    """The ``pretrained_cfg_overlay`` by which timm loads ``path`` (with its head's size)."""
    overlay: dict[str, Any] = {"file": str(path)}
    if path.suffix == ".safetensors":
        head = read_weights_header(path)["shapes"].get(HEAD_WEIGHT_KEY)
        if head is not None:
            overlay["num_classes"] = head[0]
    return overlay


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

    The architecture is checked first (:func:`check_architecture`). A local file goes through
    ``pretrained_cfg_overlay=dict(file=...)``, the same path real timm weights take: timm drops a
    head of another size and resizes ``pos_embed`` and the patch kernel.
    """
    check_model_name(model_name)
    kwargs = vit_kwargs(
        num_classes=num_classes,
        img_size=img_size,
        in_chans=in_chans,
        patch_size=patch_size,
        drop_path_rate=drop_path_rate,
        model_kwargs=model_kwargs,
    )
    if weights is None and pretrained:
        check_pretrained_available(model_name)  # hf-hub: names read their architecture there
    overlay = None if weights is None else weights_overlay(check_weights_file(weights))
    check_architecture(model_name, kwargs)
    if overlay is not None:
        kwargs["pretrained_cfg_overlay"] = overlay
        pretrained = True
    try:
        vit = timm.create_model(model_name, pretrained=pretrained, **kwargs)
    except LocalEntryNotFoundError as err:
        raise ConfigError(
            "model.pretrained",
            f"the weights of {model_name!r} are neither in the Hugging Face cache nor reachable "
            f"({err}). {prefetch_hint(model_name)}, or load a local file with --model.weights.",
        ) from err
    except Exception as err:
        if weights is None:
            raise
        raise ConfigError(
            "model.weights",
            f"{str(weights)!r} does not fit {model_name!r} with {model_kwargs or {}} ({err}). "
            "Use the model_name and model_kwargs the file was trained with.",
        ) from err
    if weights is not None:
        check_weights_cover(Path(weights), vit, model_name, model_kwargs)
    return vit


def check_weights_cover(
    path: Path, vit: nn.Module, model_name: str, model_kwargs: dict[str, Any] | None
) -> None:
    """Fail unless ``path`` held every tensor of ``vit`` but its classifier.

    timm loads a file whose head is of another size with ``strict=False``, which would also pass
    over a file of unrelated tensors in silence and train from random weights.
    """
    cfg: dict[str, Any] = getattr(vit, "pretrained_cfg", None) or {}
    classifiers = cfg.get("classifier") or ()
    heads = tuple(
        f"{c}." for c in ((classifiers,) if isinstance(classifiers, str) else classifiers)
    )
    held = set(timm.models.load_state_dict(str(path)))
    needed = [k for k in vit.state_dict() if not k.startswith(heads)]
    missing = [k for k in needed if k not in held]
    if missing:
        raise ConfigError(
            "model.weights",
            f"{str(path)!r} lacks {len(missing)} of the {len(needed)} tensors {model_name!r} "
            f"with {model_kwargs or {}} needs (e.g. {', '.join(missing[:3])}), which would start "
            "from random values. Use the model_name and model_kwargs the file was trained with, "
            "or a weights file of this model.",
        )


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
