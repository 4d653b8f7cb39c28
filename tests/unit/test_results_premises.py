"""The page's premise sections (layer rollback, nullspace size) and the committed-records copy."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from application.results_page.collect import collect
from application.results_page.premises import (
    nullspace_section,
    rollback_section,
    sharpness_verdict,
)
from application.results_page.render import build
from robust_vit.records import write_json_atomic


def rollback_report(rho: float | None, p: float | None) -> dict:
    layers = ["patch_embed.proj", "blocks.0.attn.qkv", "head"]
    return {
        "validation": {"examples": 500, "attack": "pgd10_linf", "eps": 8 / 255, "seed": 0},
        "robust_acc": {"last": 0.588, "best": 0.652},
        "layers": [
            {
                "layer": name,
                "sharpness": 0.1 * (i + 1),
                "rollback_gain": 0.002 * i,
                "sharpness_rank": 3 - i,
                "gain_rank": 3 - i,
            }
            for i, name in enumerate(layers)
        ],
        "spearman": {"rho": rho, "permutation_p": p, "permutations": 1000},
        "top_k": {
            "k": 1,
            "sharpest": ["head"],
            "largest_gain": ["head"],
            "overlap": 1,
            "chance_overlap": 0.33,
        },
    }


@pytest.mark.parametrize(
    ("rho", "p", "start"),
    [
        (0.9, 0.01, "Sharpness finds"),
        (0.9, 0.2, "Sharpness does not find"),
        (-0.8, 0.01, "Sharpness does not find"),
        (None, None, "Undecided"),
    ],
)
def test_the_verdict_needs_a_positive_significant_correlation(
    rho: float | None, p: float | None, start: str
) -> None:
    assert sharpness_verdict(rollback_report(rho, p)).startswith(start)


def test_the_rollback_section_tables_every_layer_and_plots(tmp_path: Path) -> None:
    runs, docs = tmp_path / "runs", tmp_path / "docs"
    assert rollback_section(runs, docs)[1] is None
    write_json_atomic(runs / "safer_rollback" / "rollback.json", rollback_report(0.9, 0.01))
    text, summary = rollback_section(runs, docs)
    assert summary is not None and summary["verdict"].startswith("Sharpness finds")
    assert "| blocks.0.attn.qkv | 0.2 | 2 | +0.2 | 2 |" in text
    assert (docs / "results" / "safer_rollback.png").stat().st_size > 0


def nullspace_report(anf: list[float], erm: list[float]) -> dict:
    def arm(norms: list[float], fixed: bool = False) -> dict:
        seeds = {
            str(s): {"largest_passing_norm": n, "random_pass_fraction": {"8.0": n / 100}}
            for s, n in enumerate(norms)
        }
        mean = sum(norms) / len(norms)
        return {
            "fixed_weights": fixed,
            "seeds": seeds,
            "summary": {
                "largest_passing_norm": [mean, 1.0],
                "random_pass_fraction@8": [mean / 100, None],
            },
        }

    return {
        "settings": {
            "num_images": 256,
            "eps": 0.03,
            "max_steps": 100,
            "directions": 64,
            "random_norms": [8.0],
        },
        "arms": {"erm": arm(erm), "anf": arm(anf)},
    }


def test_nullspace_differences_pair_seeds_and_read_only_intervals_that_exclude_0(
    tmp_path: Path,
) -> None:
    runs = tmp_path / "runs"
    assert nullspace_section(runs)[1] is None
    path = runs / "anf_nullspace" / "nullspace_size.json"
    write_json_atomic(path, nullspace_report(anf=[20.0, 21.0, 22.0], erm=[10.0, 11.0, 12.5]))
    text, summary = nullspace_section(runs)
    assert summary is not None
    difference = summary["differences"]["anf - erm: largest_passing_norm"]
    assert difference["mean"] == pytest.approx(29.5 / 3) and difference["seeds"] == 3
    assert difference["excludes_0"] and "| larger |" in text
    write_json_atomic(path, nullspace_report(anf=[20.0, 10.0, 15.0], erm=[15.0, 15.0, 15.0]))
    _, summary = nullspace_section(runs)
    assert summary is not None
    assert not summary["differences"]["anf - erm: largest_passing_norm"]["excludes_0"]


def test_the_page_from_the_collected_records_equals_the_page_from_the_runs(
    tmp_path: Path,
) -> None:
    runs = tmp_path / "runs"
    for arm, acc in (("pgd_at", 0.4), ("safer", 0.45)):
        for seed in range(2):
            folder = runs / "safer" / arm / f"seed{seed}" / "version_0"
            write_json_atomic(
                folder / "results.json",
                {"test": {"metrics": {"test/acc": 0.8, "test/adversarial/pgd20_linf@8/255": acc}}},
            )
            (folder / "metrics.csv").write_text("step,train/loss\n0,1.0\n")
            (folder / "last.ckpt").write_bytes(b"weights are not records")
    write_json_atomic(runs / "safer_rollback" / "rollback.json", rollback_report(0.5, 0.3))
    (runs / "safer_rollback" / "rollback.png").write_bytes(b"png")
    (runs / "bench_seconds").write_text("4000\n")
    (runs / "bench_real_seconds").write_text("7000\n")
    records = tmp_path / "records"
    copied = collect(runs, records)
    assert {p.name for p in copied} == {
        "results.json",
        "metrics.csv",
        "rollback.json",
        "bench_seconds",
        "bench_real_seconds",
    }
    assert not list(records.rglob("*.ckpt"))
    from_runs = build(runs, tmp_path / "a")[1]
    from_records = build(records, tmp_path / "b")[1]
    assert json.dumps(from_runs) == json.dumps(from_records)
    assert from_records["premises"]["safer_rollback"]["spearman"]["rho"] == 0.5
    assert from_records["bench_real_seconds"] == 7000
    assert "`make bench-real` (the real sweep) 117 min" in build(records, tmp_path / "c")[0]


def test_collect_replaces_only_the_folders_the_runs_hold(tmp_path: Path) -> None:
    records = tmp_path / "records"
    write_json_atomic(records / "anf" / "erm" / "seed0" / "results.json", {"kept": True})
    write_json_atomic(records / "real" / "erm" / "seed9" / "results.json", {"stale": True})
    runs = tmp_path / "runs"
    write_json_atomic(
        runs / "real" / "erm" / "seed0" / "results.json",
        {"new": True, "log_dir": "/home/me/clone/runs/real/erm/seed0"},
    )
    (runs / "bench_real_seconds").write_text("6000\n")
    copied = collect(runs, records)
    assert sorted(p.relative_to(records).as_posix() for p in copied) == [
        "bench_real_seconds",
        "real/erm/seed0/results.json",
    ]
    assert (records / "anf" / "erm" / "seed0" / "results.json").is_file()
    assert not (records / "real" / "erm" / "seed9").exists()
    record = json.loads((records / "real" / "erm" / "seed0" / "results.json").read_text())
    assert record["log_dir"] == "runs/real/erm/seed0"  # no machine's absolute path
