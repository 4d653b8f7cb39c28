"""Export the trained ViT as safetensors that timm's local-file loader reads back."""

from __future__ import annotations

from pathlib import Path

import lightning as L
from lightning.pytorch.utilities import rank_zero_info, rank_zero_only

from robust_vit.models import save_vit_weights


class ExportWeights(L.Callback):
    """At the end of fit, save the timm model's weights (``vit.*``) to ``path`` and the log dir.

    The file loads with ``model.weights: <path>`` through ``timm.create_model(...,
    pretrained_cfg_overlay=dict(file=...))``, the path a user with real timm weights takes.

    Args:
        path: where to write the ``.safetensors`` file (also copied into the run's log dir).
    """

    def __init__(self, path: str = "artifacts/weights.safetensors") -> None:
        self.path = Path(path)

    @rank_zero_only
    def on_fit_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """Write the weights with the hyperparameters needed to rebuild the model."""
        hp = pl_module.hparams
        metadata = {k: hp.get(k) for k in ("model_name", "num_classes", "img_size", "in_chans",
                                            "patch_size", "model_kwargs")}
        metadata.update(mean=list(pl_module.model.mean.flatten().tolist()),
                        std=list(pl_module.model.std.flatten().tolist()))
        for target in (self.path, Path(trainer.log_dir or ".") / self.path.name):
            save_vit_weights(pl_module.model.vit, target, metadata)
        rank_zero_info(f"Exported weights to {self.path}")
