"""Distribution-shift folders (WordNet-id and index class folders, class masks) and ShiftEval."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import lightning as L
import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

from callbacks import ResultRecord, ShiftEval
from datamodules.shifts import ShiftFolder, imagenet_class_index
from lightning_modules import ViTClassifier
from robust_vit.errors import ConfigError
from robust_vit.outcomes import Outcomes
from tests.fakes import write_image_folder
from tests.per_example import read_per_example

WNIDS = ["n01440764", "n01443537", "n01484850", "n01491361", "n01494475", "n01496331"]


def write_set(root: Path, names: list[str], per_class: int = 3, seed: int = 1) -> Path:
    """Random PNG class folders renamed to ``names``."""
    write_image_folder(root, classes=len(names), per_class=per_class, splits=("x",), seed=seed)
    folder = root / "x"
    for i, name in enumerate(names):
        (folder / f"class_{i}").rename(folder / name)
    return folder


@pytest.fixture
def train_dir(tmp_path: Path) -> Path:
    return write_set(tmp_path / "imagenet", list(reversed(WNIDS)), per_class=1)


def test_class_index_from_folder_and_file_agree(train_dir: Path, tmp_path: Path) -> None:
    listing = tmp_path / "classes.txt"
    listing.write_text("\n".join(sorted(WNIDS)) + "\n")
    assert imagenet_class_index(train_dir) == imagenet_class_index(listing)
    assert imagenet_class_index(train_dir) == {w: i for i, w in enumerate(sorted(WNIDS))}
    with pytest.raises(ConfigError, match="class_index"):
        imagenet_class_index(tmp_path / "missing")


def test_wordnet_and_index_folders_map_to_the_full_class_order(
    train_dir: Path, tmp_path: Path
) -> None:
    index = imagenet_class_index(train_dir)
    subset = write_set(tmp_path / "a", [WNIDS[4], WNIDS[1]])
    data = ShiftFolder(subset, index, img_size=16)
    assert sorted(set(data.targets)) == [1, 4]
    assert data.class_mask(len(WNIDS)).nonzero().flatten().tolist() == [1, 4]
    x, y = data[0]
    assert x.shape == (3, 16, 16) and 0 <= x.min() and x.max() <= 1 and y in (1, 4)
    v2 = ShiftFolder(write_set(tmp_path / "v2", ["0", "5"]), index, img_size=16)
    assert sorted(set(v2.targets)) == [0, 5]
    with pytest.raises(ConfigError, match="neither a WordNet id"):
        ShiftFolder(write_set(tmp_path / "bad", ["n99999999"]), index, img_size=16)


def test_callback_records_masked_and_full_accuracy(train_dir: Path, tmp_path: Path) -> None:
    subset = write_set(tmp_path / "a", [WNIDS[0], WNIDS[3]], per_class=6)
    callback = ShiftEval(
        sets={"imagenet_a": str(subset), "imagenet_sketch": str(subset)},
        class_index=str(train_dir),
        batch_size=5,
    )
    torch.manual_seed(0)
    module = ViTClassifier(
        num_classes=len(WNIDS),
        img_size=16,
        in_chans=3,
        patch_size=8,
        model_kwargs={"embed_dim": 16, "depth": 1, "num_heads": 2},
    )
    trainer = L.Trainer(
        accelerator="cpu",
        logger=False,
        default_root_dir=tmp_path / "run",
        callbacks=[ResultRecord(), callback],
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    loader = DataLoader(TensorDataset(torch.rand(4, 3, 16, 16), torch.arange(4)), batch_size=4)
    trainer.test(module, dataloaders=loader)
    record = json.loads((tmp_path / "run" / "results.json").read_text())
    sets = record["shifts"]["test"]["sets"]
    masked, full = sets["imagenet_a"], sets["imagenet_sketch"]
    assert masked["n"] == full["n"] == 12
    assert (masked["classes"], masked["masked"]) == (2, True)
    assert (full["classes"], full["masked"]) == (len(WNIDS), False)
    # the argmax over a subset holding the label is right whenever the full argmax is
    assert masked["acc"] >= full["acc"]
    for entry in (masked, full):
        assert entry["correct"] == round(entry["acc"] * entry["n"])
        assert entry["ci"][0] <= entry["acc"] <= entry["ci"][1]
    assert record["test"]["metrics"]["test/shifts/imagenet_a"] == pytest.approx(masked["acc"])
    assert (tmp_path / "run" / "shifts_test.md").read_text().startswith("| set")
    files = {
        name: read_per_example(tmp_path / "run", entry["per_example"])
        for name, entry in sets.items()
    }
    assert files["imagenet_a"].index.tolist() == files["imagenet_sketch"].index.tolist()
    assert files["imagenet_a"].index.tolist() == list(range(12))
    for name, outcomes in files.items():
        assert entry_matches(outcomes, name, sets[name])
    # per example too: masking can only turn a wrong prediction right
    masked_bits, full_bits = files["imagenet_a"].correct, files["imagenet_sketch"].correct
    assert bool((masked_bits["imagenet_a"] >= full_bits["imagenet_sketch"]).all())


def entry_matches(outcomes: Outcomes, name: str, entry: dict[str, Any]) -> bool:
    """The set's one column sums to its recorded count, and its accuracy is that count / n."""
    correct = int(torch.count_nonzero(outcomes.correct[name]))
    return list(outcomes.correct) == [name] and (correct, outcomes.n, correct / outcomes.n) == (
        entry["correct"],
        entry["n"],
        entry["acc"],
    )


def test_unknown_set_names_are_refused(train_dir: Path) -> None:
    with pytest.raises(ConfigError, match=r"shifts\.sets"):
        ShiftEval(sets={"imagenet_b": str(train_dir)}, class_index=str(train_dir))
