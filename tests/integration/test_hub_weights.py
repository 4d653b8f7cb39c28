"""--model.pretrained from a filled Hugging Face cache with HF_HUB_OFFLINE=1 (no network)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import timm
import torch
from huggingface_hub import constants
from safetensors.torch import save

from application.cli import main
from robust_vit.errors import ConfigError
from robust_vit.hub import hub_weights
from robust_vit.models import create_vit
from tests.conftest import EXPERIMENTS, REPO
from tests.fakes import write_hub_repo

TINY_ARGS = {"embed_dim": 16, "depth": 1, "num_heads": 2}
TAGGED = "vit_tiny_patch16_224.augreg_in21k_ft_in1k"
HUB_NAME = "hf-hub:robust-vit-tests/tiny-vit"
TARGET = {"num_classes": 10, "img_size": 32, "in_chans": 1, "patch_size": 8}
BLOCK_KEY = "blocks.0.attn.qkv.weight"


def published_state(seed: int = 1) -> dict[str, torch.Tensor]:
    """A tiny ViT's weights at timm's published shapes (224 px, 16 px patches, 3 channels)."""
    torch.manual_seed(seed)
    return timm.create_model("vit_tiny_patch16_224", **TINY_ARGS).state_dict()


def hub_config() -> bytes:
    """The config.json timm writes beside ``hf-hub:`` weights."""
    return json.dumps(
        {
            "architecture": "vit_tiny_patch16_224",
            "num_classes": 1000,
            "model_args": TINY_ARGS,
            "pretrained_cfg": {
                "input_size": [3, 224, 224],
                "num_classes": 1000,
                "first_conv": "patch_embed.proj",
                "classifier": "head",
                "mean": [0.5] * 3,
                "std": [0.5] * 3,
            },
        }
    ).encode()


@pytest.fixture
def offline_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty hub cache in tmp, offline (huggingface_hub reads both from its constants)."""
    cache = tmp_path / "hub"
    cache.mkdir()
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    return cache


def test_tagged_timm_name_loads_from_the_cache_offline(offline_cache: Path) -> None:
    state = published_state()
    write_hub_repo(offline_cache, f"timm/{TAGGED}", {"model.safetensors": save(state)})
    vit = create_vit(TAGGED, pretrained=True, model_kwargs=TINY_ARGS, **TARGET)
    assert torch.equal(vit.state_dict()[BLOCK_KEY], state[BLOCK_KEY])
    fresh = create_vit(TAGGED, pretrained=False, model_kwargs=TINY_ARGS, **TARGET)
    assert not torch.equal(fresh.state_dict()[BLOCK_KEY], state[BLOCK_KEY])


def test_hub_name_at_a_revision_loads_its_config_and_weights(offline_cache: Path) -> None:
    state = published_state()
    repo = HUB_NAME.removeprefix("hf-hub:")
    write_hub_repo(
        offline_cache,
        repo,
        {"config.json": hub_config(), "model.safetensors": save(state)},
        revision="v1",
    )
    vit = create_vit(f"{HUB_NAME}@v1", pretrained=True, **TARGET)
    assert torch.equal(vit.state_dict()[BLOCK_KEY], state[BLOCK_KEY])
    assert vit.embed_dim == TINY_ARGS["embed_dim"]  # the architecture came from config.json


def test_missing_cache_entry_fails_at_once_with_the_prefetch_command(offline_cache: Path) -> None:
    with pytest.raises(ConfigError, match=r"model\.pretrained") as error:
        create_vit(TAGGED, pretrained=True, model_kwargs=TINY_ARGS, **TARGET)
    assert f"make prefetch MODEL={TAGGED}" in str(error.value)
    assert str(offline_cache) in str(error.value)


def test_hub_repo_with_weights_but_no_config_is_incomplete(offline_cache: Path) -> None:
    write_hub_repo(
        offline_cache,
        HUB_NAME.removeprefix("hf-hub:"),
        {"model.safetensors": save(published_state())},
    )
    with pytest.raises(ConfigError, match=r"no config\.json"):
        create_vit(HUB_NAME, pretrained=True, **TARGET)


def test_untagged_name_means_timm_default_tag() -> None:
    weights = hub_weights("vit_tiny_patch16_224")
    assert weights is not None and weights.repo_id == f"timm/{TAGGED}"
    assert hub_weights(f"{HUB_NAME}@v2").revision == "v2"  # type: ignore[union-attr]


def test_prefetch_refuses_to_download_offline(
    offline_cache: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["prefetch", TAGGED])
    assert exit_info.value.code == 2
    assert "without HF_HUB_OFFLINE" in capsys.readouterr().err


def cli_validate(tmp_path: Path, fmnist_dir: Path, cache: Path) -> subprocess.CompletedProcess:
    """``robust-vit validate`` of the hub model on a compute node: offline, the cache given."""
    env = {
        **os.environ,
        "HF_HUB_OFFLINE": "1",
        "HF_HUB_CACHE": str(cache),
        "WANDB_MODE": "disabled",
        "PYTHONPATH": str(REPO),
    }
    args = [
        "validate",
        "--config",
        str(EXPERIMENTS / "base.yaml"),
        "--config",
        str(EXPERIMENTS / "data" / "fashion_mnist.yaml"),
        "--config",
        str(EXPERIMENTS / "model" / "vit_cpu.yaml"),
        f"--model.model_name={HUB_NAME}",
        "--model.pretrained=true",
        "--model.model_kwargs=null",
        f"--data.init_args.data_dir={fmnist_dir}",
        "--trainer.limit_val_batches=1",
        "--trainer.accelerator=cpu",
        "--trainer.enable_progress_bar=false",
        "--threads=1",
    ]
    return subprocess.run(
        [sys.executable, "-m", "robust_vit", *args],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_cli_on_an_offline_node_uses_the_filled_cache_or_says_how_to_fill_it(
    tmp_path: Path, fmnist_dir: Path
) -> None:
    cache = tmp_path / "hub"
    empty = cli_validate(tmp_path, fmnist_dir, cache)
    assert empty.returncode == 2, empty.stderr
    assert f"make prefetch MODEL={HUB_NAME}" in empty.stderr

    write_hub_repo(
        cache,
        HUB_NAME.removeprefix("hf-hub:"),
        {"config.json": hub_config(), "model.safetensors": save(published_state())},
    )
    filled = cli_validate(tmp_path, fmnist_dir, cache)
    assert filled.returncode == 0, filled.stderr
    (record,) = [json.loads(p.read_text()) for p in tmp_path.rglob("results.json")]
    assert record["validate"]["metrics"]["val/acc"] >= 0.0


def test_evaluate_takes_a_hub_name_from_the_filled_cache(
    offline_cache: Path, tmp_path: Path, fmnist_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``robust-vit evaluate hf-hub:...``: the published weights, offline, under a preset."""
    from tests.integration.test_evaluate_cli import run_tail

    write_hub_repo(
        offline_cache,
        HUB_NAME.removeprefix("hf-hub:"),
        {"config.json": hub_config(), "model.safetensors": save(published_state())},
    )
    monkeypatch.chdir(tmp_path)
    main(["evaluate", HUB_NAME, "--data", "fashion_mnist", "--name", "evaluate/hub", "--",
          *run_tail(fmnist_dir)])  # fmt: skip
    (record_file,) = (tmp_path / "runs" / "evaluate" / "hub").rglob("results.json")
    card = json.loads((record_file.parent / "model_info.json").read_text())
    assert card["architecture"] == HUB_NAME and card["protocol"] == "quick"
    assert json.loads(record_file.read_text())["run"]["config"]["model"]["pretrained"] is True
