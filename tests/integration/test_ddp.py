"""experiments/ddp.yaml on two CPU processes (gloo): the real multi-process path, no speed-up.

Each rank sees different batches, so the ranks stay identical only if everything that is not a
plain gradient step is synchronised too: ANF's synthesised noise and its stopping step, SAFER's
layer scores, selection and SAM step. The runs dump every rank's module state at the start of fit
and after every training batch (tests/ddp_probe.py) and the test compares them step by step.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from tests.conftest import EXPERIMENTS, REPO, TINY_MODEL

# Two ANF rounds of two steps (the second round's noise is synthesised by the trained model);
# SAFER re-selects every epoch, so the selection is made twice.
METHOD_ARGS = {
    "erm": [],
    "anf": [
        "--model.method.init_args.rounds=2",
        "--model.method.init_args.steps_per_round=2",
        "--model.method.init_args.max_synthesis_steps=3",
    ],
    "safer": [
        "--model.method.init_args.reselect_every_n_epochs=1",
        "--model.method.init_args.fraction=0.3",
    ],
}
# SAFER with LoRA: random selection, so the adapters move at the second epoch's re-selection.
METHOD_ARGS["safer_lora"] = [*METHOD_ARGS["safer"], "--model.method.init_args.selection=random"]
METHOD_YAMLS = {"safer_lora": ["method/safer.yaml", "method/safer_lora.yaml"]}


def load_states(directory: Path) -> tuple[list[dict], list[dict]]:
    """The two ranks' module states saved by tests.ddp_probe.RankStateDump, step by step."""
    first, second = (
        torch.load(directory / f"rank{rank}.pt", weights_only=False) for rank in (0, 1)
    )
    return first, second


def assert_same_state(first: dict, second: dict, step: int) -> None:
    """Every tensor bit-identical and every extra state (SAFER's selection) equal."""
    assert first.keys() == second.keys()
    for key, value in first.items():
        if torch.is_tensor(value):
            assert torch.equal(value, second[key]), f"ranks differ in {key} after step {step}"
        else:
            assert value == second[key], f"ranks differ in {key} after step {step}"


@pytest.mark.ddp
@pytest.mark.parametrize("method", ["erm", "anf", "safer", "safer_lora"])
def test_two_process_cpu_ddp_fit_and_test(method: str, tmp_path: Path, fmnist_dir: Path) -> None:
    layers = [
        "base.yaml",
        "data/fashion_mnist.yaml",
        "model/vit_cpu.yaml",
        *METHOD_YAMLS.get(method, [f"method/{method}.yaml"]),
        "ddp.yaml",
    ]
    args = [sys.executable, "-m", "robust_vit", "fit"]
    for layer in layers:
        args += ["--config", str(EXPERIMENTS / layer)]
    args += [
        f"--model.model_kwargs={TINY_MODEL}",
        f"--data.init_args.data_dir={fmnist_dir}",
        "--data.init_args.batch_size=16",
        "--trainer.accelerator=cpu",
        "--trainer.devices=2",
        "--trainer.max_epochs=2",
        "--trainer.limit_train_batches=3",
        "--trainer.enable_progress_bar=false",
        "--test_after_fit=true",
        "--threads=1",
        f"--name={method}",
        "--trainer.callbacks+=tests.ddp_probe.RankStateDump",
        f"--trainer.callbacks.out_dir={tmp_path / 'states'}",
        *METHOD_ARGS[method],
    ]
    env = {**os.environ, "WANDB_MODE": "disabled", "PYTHONPATH": str(REPO)}
    done = subprocess.run(args, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    (record_file,) = (tmp_path / "runs" / method).rglob("results.json")
    record = json.loads(record_file.read_text())
    assert record["run"]["world_size"] == 2
    assert 0.0 <= record["test"]["metrics"]["test/acc"] <= 1.0

    first, second = load_states(tmp_path / "states")
    assert len(first) == len(second) == 1 + 6  # the start, then 2 epochs x 3 batches
    for step, (state, other) in enumerate(zip(first, second, strict=True)):
        assert_same_state(state, other, step)
    start, end = first[0], first[-1]
    moved = [
        key
        for key, value in end.items()
        if key.startswith("model.")
        and key in start
        and torch.is_tensor(value)
        and not torch.equal(value, start[key])
    ]
    assert moved, "training did not change any weight: the comparison would be vacuous"
    if method == "anf":
        assert int(end["method.current_round"]) == 1
        assert not torch.equal(first[2]["method.noise"], first[3]["method.noise"])
    if method.startswith("safer"):
        assert end["method._extra_state"]["selected"]
    if method == "safer_lora":  # adapters trained on both ranks alike, and moved once
        adapter_keys = [sorted(k for k in state if ".lora_" in k) for state in first]
        assert adapter_keys[1] and adapter_keys[1] != adapter_keys[-1]
        assert first[1]["method._extra_state"]["selected"] != end["method._extra_state"]["selected"]


@pytest.mark.ddp
def test_a_lost_rank_stops_the_job_promptly_and_it_resumes(
    tmp_path: Path, fmnist_dir: Path
) -> None:
    """Rank 1 dies in the second epoch: rank 0 fails fast with a clear message, not a hang, and
    the job resumes on two processes from the checkpoint rank 0 saved (the step before the loss,
    or the first epoch's end if that save failed too)."""
    args = [sys.executable, "-m", "robust_vit", "fit"]
    for layer in [
        "base.yaml",
        "data/fashion_mnist.yaml",
        "model/vit_cpu.yaml",
        "method/erm.yaml",
        "ddp.yaml",
    ]:
        args += ["--config", str(EXPERIMENTS / layer)]
    args += [
        f"--model.model_kwargs={TINY_MODEL}",
        f"--data.init_args.data_dir={fmnist_dir}",
        "--data.init_args.batch_size=16",
        "--trainer.accelerator=cpu",
        "--trainer.devices=2",
        "--trainer.max_epochs=2",
        "--trainer.limit_train_batches=3",
        "--trainer.enable_progress_bar=false",
        "--threads=1",
        "--name=lost",
    ]
    env = {**os.environ, "WANDB_MODE": "disabled", "PYTHONPATH": str(REPO)}
    lose = ["--trainer.callbacks+=tests.ddp_probe.LoseRank", "--trainer.callbacks.at_step=4"]
    lost = subprocess.run(
        [*args, *lose], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=180
    )
    assert lost.returncode == 1
    assert "robust-vit: a distributed process was lost" in lost.stderr
    (last,) = (tmp_path / "runs" / "lost").rglob("last.ckpt")
    assert torch.load(last, weights_only=True)["global_step"] in (3, 4)
    resumed = subprocess.run(
        [*args, f"--ckpt_path={last}"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    records = [
        json.loads(p.read_text()) for p in (tmp_path / "runs" / "lost").rglob("results.json")
    ]
    assert [r["fit"]["global_step"] for r in records if "fit" in r] == [6]
