"""Averages over ``torch.distributed`` ranks that are no-ops in a single process."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.distributed as dist
from torch import Tensor


def world_size() -> int:
    """Number of ranks (1 outside an initialised process group)."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_world_size()
    return 1


def distributed_mean(t: Tensor) -> Tensor:
    """``t`` averaged over all ranks (``t`` itself outside ``torch.distributed``)."""
    if world_size() == 1:
        return t
    t = t.clone()
    dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return t / world_size()


def average_gradients(params: Sequence[Tensor]) -> None:
    """Average the ``.grad`` of ``params`` over ranks in one all-reduce (in place).

    Every rank must pass the same parameters in the same order, each with a gradient.
    """
    if world_size() == 1:
        return
    grads = [p.grad for p in params if p.grad is not None]
    if len(grads) != len(params):
        raise RuntimeError("average_gradients: every parameter needs a gradient on every rank.")
    flat = distributed_mean(torch.cat([g.reshape(-1) for g in grads]))
    for grad, chunk in zip(grads, flat.split([g.numel() for g in grads]), strict=True):
        grad.copy_(chunk.view_as(grad))
