"""Signs of gradient masking that make a robust-accuracy number untrustworthy.

Croce and Hein (AutoAttack, ICML 2020) list checks a defence should pass before its robust
accuracy is believed; three of them are per-example flags here: a forward pass that is not
deterministic in eval mode, an input gradient of the loss that is exactly zero, and an iterative
attack that does worse than single-step FGSM at the same radius.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from robust_vit.attacks.core import eval_mode


def randomized_forward(model: nn.Module, x: Tensor, rtol: float = 1e-5) -> Tensor:
    """Examples whose logits differ between two eval-mode forward passes beyond ``rtol``."""
    with eval_mode(model), torch.no_grad():
        first, second = model(x), model(x)
    scale = first.abs().amax(-1).clamp_min(1.0)
    return (first - second).abs().amax(-1) > rtol * scale


def zero_input_gradient(model: nn.Module, x: Tensor, y: Tensor) -> Tensor:
    """Examples whose cross-entropy gradient with respect to the input is exactly zero."""
    with eval_mode(model), torch.enable_grad():
        inputs = x.detach().clone().requires_grad_(True)
        loss = F.cross_entropy(model(inputs), y, reduction="sum")
        (grad,) = torch.autograd.grad(loss, inputs)
    return grad.flatten(1).abs().amax(1) == 0


def beaten_by_fgsm(robust: dict[str, Tensor], fgsm: list[str]) -> dict[str, Tensor]:
    """Per non-FGSM attack: examples that an FGSM in ``fgsm`` breaks and that attack does not."""
    broken = torch.zeros_like(next(iter(robust.values())))
    for name in fgsm:
        broken |= ~robust[name]
    return {name: broken & flags for name, flags in robust.items() if name not in fgsm}


def masking_warnings(
    sanity: dict[str, Any],
    attacks: dict[str, dict[str, Any]],
    fgsm: list[str],
    averaged: bool = False,
) -> list[str]:
    """Human-readable warnings from the counts in ``sanity`` and the per-attack accuracies.

    ``averaged``: every attack averaged its gradients over random draws (EOT).
    """
    overestimate = "gradient-based attacks may overestimate robustness"
    randomised = (
        "every attack averaged its gradients over draws (EOT); accuracies are one draw per example"
        if averaged
        else f"{overestimate} (try EOT, or a gradient-free attack)"
    )
    checks = (
        ("randomized_forward", "the eval-mode forward pass is randomised", randomised),
        (
            "zero_input_gradient",
            "the input gradient of the loss is exactly zero",
            f"{overestimate} (try a gradient-free attack)",
        ),
    )
    warnings = []
    for key, what, advice in checks:
        count, n = sanity[key]["examples"], sanity[key]["n"]
        if count:
            warnings.append(f"{what} on {count}/{n} examples: {advice}.")
    for name, by_threat in attacks.items():
        if name in fgsm:
            continue
        for threat, result in by_threat.items():
            fgsm_accs = [attacks[f][threat]["acc"] for f in fgsm if threat in attacks[f]]
            if fgsm_accs and result["acc"] > min(fgsm_accs):
                warnings.append(
                    f"{name} is weaker than FGSM at {threat} ({result['acc']:.4f} vs "
                    f"{min(fgsm_accs):.4f} robust accuracy): a sign of gradient "
                    "masking."
                )
    return warnings
