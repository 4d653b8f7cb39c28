"""LoRA / DoRA adapters on chosen layers of a model, through Hugging Face ``peft``.

Adapters are injected in place on named ``nn.Linear`` / ``nn.Conv2d`` modules and merged back
into plain modules (the original names and types), so a model with adapters exports as an
ordinary timm state dict. ``peft`` is an optional extra (``pip install 'robust-vit[peft]'``),
imported only when adapters are used.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

import torch
from torch import Tensor, nn

from robust_vit.errors import ConfigError

AdapterKind = Literal["lora", "dora"]
ADAPTER_KEY = ".lora_A."  # present in the state-dict keys of every adapted module (LoRA and DoRA)
ADAPTER_TENSOR = re.compile(r"\.lora_[A-Za-z_]+\.")  # A, B and DoRA's magnitude vector


@dataclass(frozen=True)
class AdapterConfig:
    """What the adapters are: LoRA or DoRA (Liu et al. 2024), rank, alpha and dropout.

    Attributes:
        kind: ``lora`` or ``dora`` (weight-decomposed LoRA: a learned magnitude per output).
        rank: the rank r of the update ``B A``.
        alpha: the update is scaled by ``alpha / rank``.
        dropout: dropout on the adapter's input during training.
    """

    kind: AdapterKind
    rank: int
    alpha: float
    dropout: float


def _peft(field: str) -> Any:
    """The ``peft`` module, or a ConfigError naming the extra to install."""
    try:
        import peft
    except ImportError as error:
        raise ConfigError(
            field,
            "LoRA/DoRA adapters need the `peft` package: install the extra "
            "with `pip install 'robust-vit[peft]'` (or `make install`).",
        ) from error
    return peft


def check_available(field: str) -> None:
    """Fail at configuration time, naming ``field``, when ``peft`` is not installed."""
    _peft(field)


def inject_adapters(
    model: nn.Module,
    module_names: Iterable[str],
    config: AdapterConfig,
    seed: int,
    field: str = "adapter",
) -> None:
    """Put one adapter on each named module of ``model``, in place.

    The adapters' random initialisation is drawn from ``seed`` (the same on every rank) without
    touching the global RNG, and every other parameter keeps its ``requires_grad`` (``peft``
    would freeze them; who trains what is the optimizer's business here).
    """
    peft = _peft(field)
    names = sorted(set(module_names))
    if not names:
        return
    pattern = "^(" + "|".join(re.escape(name) for name in names) + ")$"
    lora = peft.LoraConfig(
        r=config.rank,
        lora_alpha=config.alpha,
        lora_dropout=config.dropout,
        use_dora=config.kind == "dora",
        target_modules=pattern,
        bias="none",
    )
    flags = {name: p.requires_grad for name, p in model.named_parameters()}
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        peft.inject_adapter_in_model(lora, model)
    for name, param in model.named_parameters():
        param.requires_grad_(flags.get(name, True))


def adapter_layers(model: nn.Module) -> dict[str, Any]:
    """The adapted modules of ``model`` by name (empty when it has none or peft is absent)."""
    try:
        from peft.tuners.lora import LoraLayer
    except ImportError:
        return {}
    return {name: m for name, m in model.named_modules() if isinstance(m, LoraLayer)}


def has_adapters(model: nn.Module) -> bool:
    """Whether any module of ``model`` carries an adapter."""
    return bool(adapter_layers(model))


def adapter_parameter_names(model: nn.Module) -> set[str]:
    """Full names of the adapters' own parameters (A, B and DoRA's magnitude)."""
    prefixes = [f"{name}." for name in adapter_layers(model)]
    return {
        n
        for n, _ in model.named_parameters()
        if any(n.startswith(p) for p in prefixes) and ".base_layer." not in n
    }


def merge_adapters(model: nn.Module) -> list[str]:
    """Merge every adapter into its base module and put the plain module back, in place.

    Returns the names of the modules that had adapters. The merged model has exactly the
    parameter names and module types it had before :func:`inject_adapters`.
    """
    layers = adapter_layers(model)
    for name, layer in layers.items():
        with torch.no_grad():
            layer.merge()
        parent_name, _, child = name.rpartition(".")
        parent = model.get_submodule(parent_name) if parent_name else model
        setattr(parent, child, layer.get_base_layer())
    if "peft_config" in vars(model):  # what inject_adapter_in_model left on the model
        del model.peft_config
    return list(layers)


def adapted_module_names(state: Mapping[str, Tensor], prefix: str = "") -> list[str]:
    """Names (relative to ``prefix``) of the modules that hold adapters in a state dict."""
    names = {
        key[len(prefix) : key.index(ADAPTER_KEY)]
        for key in state
        if key.startswith(prefix) and ADAPTER_KEY in key
    }
    return sorted(names)


def without_adapters(state: Mapping[str, Any]) -> dict[str, Any]:
    """A state dict's entries under the plain model's names, the adapters' own tensors left out.

    (Unmerged: a base weight keeps its value; this is for comparing keys and shapes.)
    """
    return {
        key.replace(".base_layer.", "."): value
        for key, value in state.items()
        if not ADAPTER_TENSOR.search(key)
    }


def merged_copy(
    model: nn.Module, state: Mapping[str, Tensor] | None = None, config: AdapterConfig | None = None
) -> nn.Module:
    """A CPU copy of ``model`` with plain modules, holding its weights with adapters merged.

    With ``state`` (e.g. a checkpoint's weights, with or without adapters), the copy first takes
    that state, adapted as the state is (``config`` says how), and then merges.
    """
    clone = copy.deepcopy(model).cpu()
    merge_adapters(clone)
    if state is not None:
        names = adapted_module_names(state)
        if names:
            if config is None:
                raise ValueError("the state holds adapters: pass their AdapterConfig")
            inject_adapters(clone, names, config, seed=0)
        clone.load_state_dict(dict(state))
        merge_adapters(clone)
    return clone
