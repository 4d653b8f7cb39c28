"""The results page and docs/results.json, from records written by the test itself."""

from __future__ import annotations

import json
import re
import shutil
import statistics
from pathlib import Path

import numpy as np
import pytest
import torch

from application.aggregate import mean_interval
from application.results_page.__main__ import main as results_page_main
from application.results_page.claims import load_claims
from application.results_page.headline import attack_key, read_family, seed_mean_difference
from application.results_page.render import build, robust_overfitting_plots
from robust_vit.errors import ConfigError
from robust_vit.outcomes import Outcomes, write_outcomes
from robust_vit.paired import Method, paired_difference
from robust_vit.plots import CHARACTERS_PER_INCH, layer_heatmap, plt, wrap_titles
from robust_vit.records import write_json_atomic
from robust_vit.threat import Threat

RADII = (4 / 255, 8 / 255, 12 / 255)


def point(epoch: int, train: float, val: float) -> dict:
    return {"epoch": epoch, "train": {"robust": {"acc": train}}, "val": {"robust": {"acc": val}}}


def adversarial_record(clean: float, pgd: dict[float, float], step: int | None) -> dict:
    """A test record with PGD-20 and the worst case at RADII (pgd: eps -> accuracy)."""
    by_threat = {Threat("linf", eps).key: {"acc": acc} for eps, acc in pgd.items()}
    metrics = {"test/acc": clean}
    for eps, acc in pgd.items():
        metrics[attack_key("pgd20_linf", eps)] = acc
        metrics[attack_key("fgsm_linf", eps)] = acc + 0.05
        metrics[attack_key("worst_case", eps)] = acc
    return {
        "test": {"metrics": metrics, "weights": {"global_step": step}},
        "adversarial": {
            "test": {
                "clean": {"acc": clean},
                "n": 100,
                "attacks": {"pgd20_linf": by_threat},
                "worst_case": by_threat,
            }
        },
    }


def anf_summary(reached: list[bool]) -> dict:
    rounds = [
        {"noise_norm": 19.0, "synth_steps": 50, "synth_reached": float(r), "token_rms": 0.46}
        for r in reached
    ]
    return {"noise_units": "token_rms", "rounds": rounds, "reach_rate": sum(reached) / len(reached)}


@pytest.fixture
def runs(tmp_path: Path) -> Path:
    """An ANF sweep of 3 seeds (pretrained, erm, anf, anf_random) and an overfit stage 1."""
    runs = tmp_path / "runs"
    # the pretrained arm's PGD-20 accuracy: 0.75 at 4/255, 0.45 at 8/255, 0.15 at 12/255
    base = {4 / 255: 0.75, 8 / 255: 0.45, 12 / 255: 0.15}
    shifts = {
        "pretrained": (0.0, 0.0, 0.0),
        "erm": (0.01, 0.00, 0.02),
        "anf": (0.03, 0.05, 0.04),
        "anf_random": (0.02, 0.01, 0.03),
    }
    for arm, by_seed in shifts.items():
        for seed, shift in enumerate(by_seed):
            record = adversarial_record(
                0.87 + shift,
                {e: a + shift for e, a in base.items()},
                None if arm == "pretrained" else 800,
            )
            if arm in ("anf", "anf_random"):
                record["fit"] = {"method": anf_summary([True, True, seed != 1, True])}
            write_json_atomic(
                runs / "anf" / arm / f"seed{seed}" / "version_0" / "results.json", record
            )
    curve = [point(0, 0.3, 0.3), point(1, 0.6, 0.5), point(2, 0.8, 0.56), point(3, 0.9, 0.51)]
    write_json_atomic(
        runs / "safer_stage1" / "version_0" / "results.json",
        {"robust_validation": {"attack": "pgd10_linf", "curve": curve}},
    )
    (runs / "bench_seconds").write_text("5400\n")
    return runs


def test_records_without_per_example_files_keep_the_seed_means_unread(
    runs: Path, tmp_path: Path
) -> None:
    """Records written before per-example files: the old seed-paired interval, never a reading."""
    page, result = build(runs, tmp_path / "docs")
    radius = result["headline_radius"]["anf"]
    assert radius["label"] == "8/255" and radius["in_band"]
    assert radius["reference_pgd20_acc"] == pytest.approx(0.45)
    rows = {(r["method"], r["baseline"], r["metric"]): r for r in result["headline"]}
    row = rows[("anf", "pretrained", "PGD-20 8/255")]
    mean, half = mean_interval([0.03, 0.05, 0.04])
    assert row["difference"] == pytest.approx(mean)
    assert row["ci95"] == pytest.approx([mean - half, mean + half])
    assert row["seeds"] == [0, 1, 2]
    # was: "anf better (interval above 0)"; seed means alone no longer read as better
    assert row["reading"] == "seed means only: interval above 0, not read as a difference"
    assert row["note"].startswith("no per-example files: seed-paired t-interval over seed means")
    assert row["p"] is None and row["holm_p"] is None and row["n"] is None
    assert row["claim"] == "not reported"
    assert rows[("anf", "pretrained", "FGSM 8/255")]["claim"].startswith("ViT-S + NS vs ViT-S")
    versus_random = rows[("anf", "anf_random", "PGD-20 8/255")]
    assert versus_random["difference"] == pytest.approx(statistics.fmean([0.01, 0.04, 0.01]))
    assert "spans 0" in versus_random["reading"]
    assert "0.0313725" not in page and "| 8/255" not in page.split("## Headline")[0]
    assert "PGD-20 8/255" in page and "pgd20_linf@8/255" in page


def with_old_keys(text: str) -> str:
    """A record's text with its radii as keys were written before Threat (``@0.0313725``)."""
    return re.sub(r"@(\d+)/255", lambda m: f"@{int(m.group(1)) / 255:.6g}", text)


def test_records_with_old_keys_give_the_same_results(runs: Path, tmp_path: Path) -> None:
    _, new = build(runs, tmp_path / "new")
    for path in runs.rglob("results.json"):
        old_text = with_old_keys(path.read_text())
        assert "@0.0313725" in old_text or "adversarial" not in old_text
        path.write_text(old_text)
    _, old = build(runs, tmp_path / "old")
    assert old["headline_radius"] == new["headline_radius"]
    assert old["headline"] == new["headline"]


def test_json_carries_the_diagnostics(runs: Path, tmp_path: Path) -> None:
    _, result = build(runs, tmp_path / "docs")
    json.dumps(result, allow_nan=False)
    reach = result["diagnostics"]["anf_reach"]["anf"]["anf"]
    assert reach["rounds"] == 12 and reach["reach_rate"] == pytest.approx(11 / 12)
    curve = result["diagnostics"]["safer_stage1"]
    assert curve["peak_epoch"] == 2 and curve["fall"] == pytest.approx(0.05)
    assert curve["gap"] == pytest.approx(0.39)
    steps = result["diagnostics"]["tested_steps"]["anf"]
    assert steps["anf"] == {"0": 800, "1": 800, "2": 800}
    assert steps["pretrained"]["0"].startswith("weights file")
    assert result["bench_seconds"] == 5400
    assert result["bench_real_seconds"] is None


def test_main_writes_page_json_and_plots(
    runs: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "docs" / "results.md"
    stale = out.parent / "results" / "a_plot_no_longer_made.png"
    stale.parent.mkdir(parents=True)
    stale.write_bytes(b"png")
    monkeypatch.setattr("sys.argv", ["results_page", "--runs", str(runs), "--out", str(out)])
    results_page_main()
    assert not stale.exists()
    assert json.loads(out.with_suffix(".json").read_text())["headline"]
    assert (out.parent / "results" / "anf_anf_adversarial.png").stat().st_size
    assert (out.parent / "results" / "robust_overfitting_safer_stage1_version_0.png").is_file()


def test_robust_overfitting_plot_per_group(tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    for seed, shift in ((0, 0.0), (1, 0.02)):
        curve = [point(0, 0.3 + shift, 0.3), point(1, 0.6 + shift, 0.4), point(2, 0.9, 0.35)]
        write_json_atomic(
            runs / "stage1" / "pgd_at" / f"seed{seed}" / "version_0" / "results.json",
            {"robust_validation": {"curve": curve}},
        )
    write_json_atomic(runs / "anf" / "erm" / "seed0" / "results.json", {"fit": {}})
    links = robust_overfitting_plots(runs, tmp_path / "docs")
    assert links == [
        "![robust overfitting stage1_pgd_at](results/robust_overfitting_stage1_pgd_at.png)"
    ]
    assert (tmp_path / "docs" / "results" / "robust_overfitting_stage1_pgd_at.png").stat().st_size


def test_the_claims_file_names_every_sweep_its_comparisons_use() -> None:
    claims = load_claims()
    assert set(claims.sweeps) == {"anf", "safer", "real"}
    assert {c.sweep for c in claims.comparisons} <= set(claims.sweeps)
    assert all(c.claims or c.role for c in claims.comparisons)


@pytest.mark.parametrize(
    ("text", "where"),
    [
        (
            "sweeps: {anf: {command: x, setting: y, reference: z, attacks: {}, corruptions: true,"
            " colour: red}}",
            "sweeps.anf",
        ),
        (
            "sweeps: {}\ncomparisons: [{sweep: anf, method: a, baseline: b, role: r}]",
            "comparisons[0].sweep",
        ),
        ("comparisons: [{sweep: anf, method: a}]", "comparisons[0]"),
        ("- just a list", "claims.yaml"),
        ("sweeps: {anf: [unclosed", "claims.yaml"),
    ],
)
def test_a_bad_claims_file_names_the_entry(tmp_path: Path, text: str, where: str) -> None:
    path = tmp_path / "claims.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=re.escape(where)):
        load_claims(path)


N = 400
EPS = 8 / 255


def flip(bits: np.ndarray, rng: np.random.Generator, up: int, down: int) -> np.ndarray:
    """``bits`` with ``up`` wrong examples turned right and ``down`` right ones turned wrong."""
    out = bits.copy()
    out[rng.choice(np.flatnonzero(~bits), up, replace=False)] = True
    out[rng.choice(np.flatnonzero(bits), down, replace=False)] = False
    return out


def write_paired_run(folder: Path, bits: dict[str, np.ndarray], weights: str, fit: bool) -> None:
    """A run as the callbacks leave it: adversarial.test references its per-example file."""
    outcomes = Outcomes(torch.arange(N), {k: torch.from_numpy(v) for k, v in bits.items()})
    digest = write_outcomes(folder / "adversarial_test.outcomes.safetensors", outcomes)
    threat = Threat("linf", EPS).key
    metrics = {"test/acc": float(bits["clean"].mean())}
    for attack in ("pgd20_linf", "fgsm_linf"):
        metrics[attack_key(attack, EPS)] = float(bits[f"{attack}@8/255"].mean())
    record = {
        "test": {"metrics": metrics, "weights_sha256": weights},
        "adversarial": {
            "test": {
                "clean": {"acc": metrics["test/acc"]},
                "n": N,
                "attacks": {
                    a: {threat: {"acc": metrics[attack_key(a, EPS)]}}
                    for a in ("pgd20_linf", "fgsm_linf")
                },
                "worst_case": {threat: {"acc": metrics[attack_key("pgd20_linf", EPS)]}},
                "per_example": {
                    "file": "adversarial_test.outcomes.safetensors",
                    "sha256": digest,
                    "n": N,
                },
            }
        },
    }
    if fit:
        record["fit"] = {"global_step": 800, "seconds": 80.0}
    write_json_atomic(folder / "results.json", record)


@pytest.fixture
def paired_runs(tmp_path: Path) -> Path:
    """An ANF sweep with per-example files: pretrained is one fixed model tested with 3 seeds.

    Against pretrained, per seed and column: anf and anf_random each turn 60 examples right and 5
    wrong, at random (a clear gain, and none between them); erm turns 8 right and 8 wrong.
    """
    runs = tmp_path / "runs"
    rng = np.random.default_rng(0)
    columns = ("clean", "pgd20_linf@8/255", "fgsm_linf@8/255")
    accuracy = {"clean": 0.85, "pgd20_linf@8/255": 0.45, "fgsm_linf@8/255": 0.5}
    pretrained = {c: rng.random(N) < accuracy[c] for c in columns}
    moves = {"anf": (60, 5), "erm": (8, 8), "anf_random": (60, 5)}
    for seed in range(3):
        folder = runs / "anf" / "pretrained" / f"seed{seed}" / "version_0"
        write_paired_run(folder, pretrained, "pretrained-digest", fit=False)
        for arm, (up, down) in moves.items():
            bits = {c: flip(pretrained[c], rng, up, down) for c in columns}
            folder = runs / "anf" / arm / f"seed{seed}" / "version_0"
            write_paired_run(folder, bits, f"{arm}-{seed}", fit=True)
    return runs


def test_a_test_only_arm_run_once_is_one_fixed_model_against_every_seed(
    paired_runs: Path, tmp_path: Path
) -> None:
    for seed in (1, 2):
        shutil.rmtree(paired_runs / "anf" / "pretrained" / f"seed{seed}")
    _, result = build(paired_runs, tmp_path / "docs")
    rows = {(r["method"], r["baseline"], r["metric"]): r for r in result["headline"]}
    gain = rows[("anf", "pretrained", "PGD-20 8/255")]
    assert gain["fixed"] == "baseline" and gain["seeds"] == [0, 1, 2]
    assert (gain["method_only"], gain["baseline_only"]) == (3 * 60, 3 * 5)


def test_a_fixed_arm_tested_once_gives_its_seed_mean_row_every_seed_of_the_other() -> None:
    """The seed-means fallback (the corruption mean): one fixed model against 3 trained seeds."""
    key = "test/corruptions/mean_acc"
    groups = {
        "anf": {0: {key: 0.70}, 1: {key: 0.72}, 2: {key: 0.74}},
        "pretrained": {0: {key: 0.69}},
    }
    paired_once = seed_mean_difference(groups, "anf", "pretrained", key)
    assert paired_once["seeds"] == [0] and paired_once["ci95"] is None
    fixed = seed_mean_difference(groups, "anf", "pretrained", key, fixed="baseline")
    mean, half = mean_interval([0.01, 0.03, 0.05])
    assert fixed["seeds"] == [0, 1, 2]
    assert fixed["difference"] == pytest.approx(mean)
    assert fixed["half_width"] == pytest.approx(half)
    flipped = seed_mean_difference(groups, "pretrained", "anf", key, fixed="method")
    assert flipped["difference"] == pytest.approx(-mean)


def test_a_clear_paired_difference_reads_better_and_none_reads_no_difference(
    paired_runs: Path, tmp_path: Path
) -> None:
    page, result = build(paired_runs, tmp_path / "docs")
    rows = {(r["method"], r["baseline"], r["metric"]): r for r in result["headline"]}
    assert result["headline_radius"]["anf"]["label"] == "8/255"
    gain = rows[("anf", "pretrained", "PGD-20 8/255")]
    assert gain["reading"] == "anf better"
    assert gain["ci95"][0] > 0 and gain["holm_p"] < 0.05 and gain["note"] is None
    assert gain["difference"] == pytest.approx((60 - 5) / N)
    assert (gain["method_only"], gain["baseline_only"]) == (3 * 60, 3 * 5)
    assert gain["n"] == N and gain["seeds"] == [0, 1, 2]
    assert gain["fixed"] == "baseline"  # pretrained: the same weights for every seed
    assert gain["inference"] == Method.BOOTSTRAP.value
    for metric in ("clean", "PGD-20 8/255", "FGSM 8/255"):
        none = rows[("anf", "anf_random", metric)]
        assert none["reading"] == "no clear difference"
        assert none["ci95"][0] < 0 < none["ci95"][1]
        assert none["fixed"] is None and none["seeds"] == [0, 1, 2]
    assert all(r["holm_p"] >= r["p"] for r in result["headline"] if r["p"] is not None)
    corruptions = [r for r in result["headline"] if r["metric"] == "corruptions"]
    assert corruptions and all(r["note"].startswith("corruption mean") for r in corruptions)
    assert "3 (pretrained fixed)" in page and "| anf better |" in page
    json.dumps(result, allow_nan=False)
    assert (tmp_path / "docs" / "results" / "anf_differences.png").stat().st_size


def test_a_changed_per_example_file_is_refused_naming_the_arm(
    paired_runs: Path, tmp_path: Path
) -> None:
    target = paired_runs / "anf" / "erm" / "seed1" / "version_0"
    (target / "adversarial_test.outcomes.safetensors").write_bytes(b"not the file")
    with pytest.raises(ConfigError, match=re.escape(str(paired_runs / "anf" / "erm"))):
        build(paired_runs, tmp_path / "docs")


def mcnemar_row(method: str, sweep: str = "anf") -> dict:
    """A one-run-per-arm headline row whose McNemar p is about 0.012 (16 against 4 discordant)."""
    a = np.zeros((1, 100), bool)
    b = np.zeros((1, 100), bool)
    a[0, :16] = True
    b[0, 16:20] = True
    result = paired_difference(a, b)
    return {
        "sweep": sweep,
        "method": method,
        "p": result.p_value,
        "ci95": [result.low, result.high],
        "result": result,
    }


def test_holm_turns_a_lone_reading_into_not_after_holm_in_a_family() -> None:
    alone = read_family([mcnemar_row("anf")])
    assert alone[0]["p"] < 0.05 and alone[0]["ci95"][0] > 0
    assert alone[0]["reading"] == "anf better"
    family = read_family([mcnemar_row(f"arm{i}") for i in range(5)])
    assert all(row["holm_p"] > 0.05 for row in family)
    assert [row["reading"] for row in family] == [
        f"arm{i} better alone, not after Holm" for i in range(5)
    ]
    assert all("result" not in row for row in family)


def test_holm_runs_within_each_family_of_sweeps() -> None:
    rows = [mcnemar_row("anf", "anf"), mcnemar_row("safer", "safer"), mcnemar_row("anf", "real")]
    apart = read_family(rows)
    assert [row["holm_p"] for row in apart] == [row["p"] for row in apart]
    assert [row["reading"] for row in apart] == ["anf better", "safer better", "anf better"]
    studies = read_family(rows, {"anf": "cpu", "safer": "cpu"})
    assert all(row["holm_p"] > row["p"] for row in studies[:2])
    assert studies[2]["holm_p"] == studies[2]["p"]


def test_the_cpu_sweeps_are_one_study_and_the_real_vit_another() -> None:
    families = {name: sweep.family for name, sweep in load_claims().sweeps.items()}
    assert families == {"anf": "cpu", "safer": "cpu", "real": "real"}


def test_layer_scores_are_a_heatmap_and_long_titles_wrap(tmp_path: Path) -> None:
    scores = {"patch_embed.proj": [(10.0, 0.5), (20.0, 0.7)], "head": [(20.0, 0.2)]}
    path = layer_heatmap(scores, tmp_path / "scores.png", "SAFER layer sharpness " * 8, "score")
    assert path.stat().st_size
    fig, ax = plt.subplots(figsize=(4, 3))
    ax.set_title("a long title that would not fit on one line of a small figure " * 3)
    wrap_titles(fig)
    lines = ax.get_title().splitlines()
    assert len(lines) > 1 and all(len(line) <= 4 * CHARACTERS_PER_INCH for line in lines)
    plt.close(fig)


def test_the_cost_table_puts_the_radius_on_attacks_only() -> None:
    from application.results_page.claims import Sweep
    from application.results_page.diagnostics import cost_table

    sweep = Sweep("s", "make s", "setting", "erm", {"pgd20_linf": "PGD-20"}, corruptions=True)
    costs = {"erm": {"trainable_params": 10, "seconds_per_step": 0.5}}
    groups = {"erm": {0: {"test/acc": 0.9, "test/corruptions/mean_acc": 0.7}}}
    header = cost_table(costs, groups, sweep, {"eps": 1 / 255}).splitlines()[0]
    assert header.endswith("| clean | PGD-20 1/255 | corruptions |")
