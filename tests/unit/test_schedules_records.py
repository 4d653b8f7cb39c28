from __future__ import annotations

import itertools
import json
from pathlib import Path

import pytest
import torch

from robust_vit.records import update_record, write_json_atomic
from robust_vit.schedules import WarmupCosineLR


def test_warmup_then_cosine_to_min_ratio() -> None:
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    sched = WarmupCosineLR(opt, warmup_fraction=0.1, min_lr_ratio=0.1)
    sched.set_total_steps(100)
    lrs = []
    for _ in range(100):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert lrs[0] < 0.2
    assert max(lrs) == pytest.approx(1.0)
    assert lrs.index(max(lrs)) == 10
    assert lrs[-1] == pytest.approx(0.1, abs=0.01)
    assert all(a >= b for a, b in itertools.pairwise(lrs[10:]))


def test_record_updates_merge_and_nan_becomes_null(tmp_path: Path) -> None:
    path = tmp_path / "results.json"
    update_record(path, "fit", {"metrics": {"val/acc": 0.5}})
    update_record(path, "test", {"metrics": {"test/acc": torch.tensor(0.25), "bad": float("nan")}})
    record = json.loads(path.read_text())
    assert record["fit"]["metrics"]["val/acc"] == 0.5
    assert record["test"]["metrics"] == {"test/acc": 0.25, "bad": None}


def test_atomic_write_leaves_no_temporary_files(tmp_path: Path) -> None:
    write_json_atomic(tmp_path / "r.json", {"a": 1})
    assert [p.name for p in tmp_path.iterdir()] == ["r.json"]


def test_figures_are_saved_through_a_temporary_file(tmp_path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from robust_vit.records import save_figure_atomic

    fig, _ = plt.subplots()
    target = tmp_path / "plots" / "a.png"
    target.parent.mkdir()
    target.write_bytes(b"earlier")
    fig.savefig = lambda *a, **k: (_ for _ in ()).throw(OSError("disk full"))  # type: ignore
    with pytest.raises(OSError):
        save_figure_atomic(fig, target)
    assert target.read_bytes() == b"earlier" and list(target.parent.iterdir()) == [target]
    del fig.savefig
    save_figure_atomic(fig, target)
    assert target.read_bytes().startswith(b"\x89PNG") and len(list(target.parent.iterdir())) == 1
    plt.close(fig)
