"""Nullspace analysis of a model (exact patch nullspace, ANF noise): numbers, table, plot."""

from __future__ import annotations

import itertools
from typing import Any, Literal

import torch
from torch import Tensor

from robust_vit.anf import noise_shape, noisy_forward, prob_change, synthesize_noise, token_rms
from robust_vit.attacks.pgd import eval_mode
from robust_vit.models import NormalizedViT
from robust_vit.nullspace import model_label, patch_nullspace, sample_nullspace_noise


def _change(model: NormalizedViT, x: Tensor, clean: Tensor, noise: Tensor) -> dict[str, float]:
    noisy = noisy_forward(model, x, noise)
    agree = (noisy.argmax(-1) == clean.argmax(-1)).float().mean()
    return {
        "agreement": float(agree),
        "prob_change": float(prob_change(clean, noisy)),
        "max_abs_logit_diff": float((noisy - clean).abs().max()),
    }


def nullspace_report(
    model: NormalizedViT,
    x: Tensor,
    *,
    noise_scale: float = 1.0,
    eps: float = 0.03,
    max_steps: int = 100,
    noise_units: Literal["absolute", "token_rms"] = "absolute",
    init_lim: float = 3.0,
    noise_lr: float = 0.1,
    batch_size: int = 64,
    tol: float = 1e-6,
    seed: int = 0,
) -> dict[str, Any]:
    """Measure how far a model ignores its exact and approximate nullspace on images ``x``.

    Args:
        model: the classifier (images in [0, 1]).
        x: evaluation images in [0, 1] on the model's device.
        noise_scale: std of the coefficients of the exact-nullspace noise (model input space).
        eps: stop threshold of the ANF noise synthesis.
        max_steps: synthesis budget.
        noise_units: what ``init_lim`` and ``noise_lr`` are measured in: absolute, or the
            clean patch tokens' RMS on ``x`` (as ANF's ``noise_units: token_rms``).
        init_lim: the synthesis start's Uniform(-init_lim, init_lim) bound.
        noise_lr: the synthesis learning rate.
        batch_size: synthesis batch size (batches cycle over ``x``).
        tol: relative singular-value tolerance of the nullspace.
        seed: seeds every random draw.

    Returns:
        A JSON-ready dict (see :func:`markdown_table` for the quantities).
    """
    gen = torch.Generator().manual_seed(seed)
    space = patch_nullspace(model.vit, tol=tol)
    with eval_mode(model), torch.no_grad():
        clean = model(x)
        exact = (
            sample_nullspace_noise(
                space, len(x), (x.shape[-2], x.shape[-1]), scale=noise_scale, generator=gen
            ).to(x)
            * model.std
        )
        unclamped, clamped = model(x + exact), model((x + exact).clamp(0, 1))
    scale = token_rms(model, x) if noise_units == "token_rms" else 1.0
    result = synthesize_noise(
        model,
        itertools.cycle(x.split(batch_size)),
        noise_shape(model, x, "token"),
        eps=eps,
        init_lim=init_lim,
        lr=noise_lr,
        max_steps=max_steps,
        generator=gen,
        scale=scale,
    )
    control = torch.randn(result.noise.shape, generator=gen).to(result.noise)
    control = control * result.norm / control.norm()
    with eval_mode(model), torch.no_grad():
        anf, rand = _change(model, x, clean, result.noise), _change(model, x, clean, control)
    return {
        "model": model_label(model.vit),
        "patch_dim": space.patch_dim,
        "embed_dim": int(space.singular_values.numel()),
        "nullspace_dim": space.dim,
        "tol": tol,
        "singular_values": space.singular_values.tolist(),
        "exact_noise_l2_per_image": float(exact.flatten(1).norm(dim=1).mean()),
        "exact_max_abs_logit_diff_unclamped": float((unclamped - clean).abs().max()),
        "exact_max_abs_logit_diff_clamped": float((clamped - clean).abs().max()),
        "exact_agreement_clamped": float((clamped.argmax(-1) == clean.argmax(-1)).float().mean()),
        "anf_noise": {
            "l2": result.norm,
            "steps": result.steps,
            "reached": result.reached,
            "criterion": result.criterion,
            "noise_units": noise_units,
            "scale": scale,
            "init_lim": init_lim,
            "noise_lr": noise_lr,
            **anf,
        },
        "random_same_norm": {"l2": float(control.norm()), **rand},
        "num_images": len(x),
    }


def markdown_table(report: dict[str, Any]) -> str:
    """The report as markdown: the exact nullspace, then ANF noise against random noise."""
    r, a, c = report, report["anf_noise"], report["random_same_norm"]
    s = r["singular_values"]
    lines = [
        f"Nullspace analysis of `{r['model']}` on {r['num_images']} images",
        "",
        "| patch values | embed dim | nullspace dim | s_max | s_min | max abs logit diff "
        "(unclamped) | max abs logit diff (clamped to [0,1]) | agreement (clamped) |",
        "|---|---|---|---|---|---|---|---|",
        f"| {r['patch_dim']} | {r['embed_dim']} | {r['nullspace_dim']} | {max(s):.4g} | "
        f"{min(s):.4g} | {r['exact_max_abs_logit_diff_unclamped']:.3g} | "
        f"{r['exact_max_abs_logit_diff_clamped']:.3g} | {r['exact_agreement_clamped']:.4f} |",
        "",
        "| token noise | L2 norm | agreement | prob change | max abs logit diff |",
        "|---|---|---|---|---|",
    ]
    for name, row in (("ANF (synthesised)", a), ("random, same norm", c)):
        lines.append(
            f"| {name} | {row['l2']:.3g} | {row['agreement']:.4f} | "
            f"{row['prob_change']:.4g} | {row['max_abs_logit_diff']:.3g} |"
        )
    lines.append(
        f"\nANF synthesis: {a['steps']} steps, eps reached: {a['reached']} (init_lim "
        f"{a['init_lim']:g}, lr {a['noise_lr']:g}, in {a['noise_units']} units of "
        f"{a['scale']:.3g})."
    )
    return "\n".join(lines) + "\n"
