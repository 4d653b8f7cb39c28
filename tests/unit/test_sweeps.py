"""Sweep plans: expansion, the engines' inputs (make, wandb, SLURM) and restart skips."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
from pathlib import Path

import pytest
import yaml
from wandb.sdk.launch.sweeps.utils import create_sweep_command_args

from application import cli
from application.sweep_cli import main as sweep_main
from application.sweep_cli import parser, split_extra
from application.sweep_engines import makefile, slurm_script, wandb_sweep
from application.sweeps import (
    PLANS_DIR,
    expand,
    find_run,
    inputs_digest,
    launch_args,
    load_plan,
    resume_checkpoint,
)
from robust_vit.errors import ConfigError
from tests.conftest import REPO

PLANS = sorted(p.stem for p in (REPO / PLANS_DIR).glob("*.yaml"))
# The top-level keys wandb's sweep-config JSON schema (wandb/sweeps, config/schema.json) allows.
WANDB_KEYS = {
    "apiVersion",
    "kind",
    "controller",
    "description",
    "program",
    "job",
    "image_uri",
    "entity",
    "project",
    "method",
    "command",
    "name",
    "run_cap",
    "metric",
    "metrics",
    "scheduler",
    "early_terminate",
    "parameters",
}
WANDB_PARAMETER_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_.-]*$")


@pytest.fixture(autouse=True)
def _in_repo(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(REPO)


def option(argv: tuple[str, ...], name: str) -> list[str]:
    """Every value given to ``name`` in ``argv``."""
    return [argv[i + 1] for i, arg in enumerate(argv) if arg == name]


def write_plan(folder: Path, weights: Path, **fields: object) -> Path:
    plan = {
        "configs": ["experiments/base.yaml"],
        "fit_configs": ["experiments/finetune.yaml"],
        "methods": ["erm", "anf"],
        "seeds": [0, 1],
        "weights": str(weights),
        "eval": "experiments/eval/fashion_mnist.yaml",
        **fields,
    }
    path = folder / "tiny.yaml"
    path.write_text(yaml.safe_dump(plan))
    return path


def test_the_committed_plans_are_the_ones_make_runs() -> None:
    assert PLANS == [
        "anf",
        "real",
        "real_warm",
        "safer",
        "sweep",
    ]  # make sweep-anf, sweep-real, sweep SWEEP=real_warm, sweep-safer, sweep


@pytest.mark.parametrize("name", PLANS)
def test_indices_cover_every_method_and_seed_once(name: str) -> None:
    plan = load_plan(name)
    runs = expand(plan)
    assert [run.index for run in runs] == list(range(len(runs)))
    pairs = [(run.method, run.seed) for run in runs]
    assert sorted(pairs) == sorted((m, s) for m in plan.methods for s in plan.seeds_of(m))
    assert len({run.marker for run in runs}) == len(runs)
    for run in runs:
        assert find_run(runs, index=run.index) == run
        assert find_run(runs, method=run.method, seed=run.seed) == run


@pytest.mark.parametrize("name", PLANS)
def test_each_command_names_its_run_group_arm_and_seed(name: str) -> None:
    plan = load_plan(name)
    for run in expand(plan):
        assert run.name == f"{plan.name}/{run.method}/seed{run.seed}"
        assert run.marker.parent == Path("runs", run.name)
        assert run.marker.name == f".done-{inputs_digest(run.argv)}"
        assert option(run.argv, "--name") == [run.name]
        assert option(run.argv, "--group") == [plan.name]
        assert option(run.argv, "--job_type") == [run.method]
        assert option(run.argv, "--seed_everything") == [str(run.seed)]
        configs = option(run.argv, "--config")
        assert configs[: len(plan.configs)] == plan.configs and plan.eval in configs
        is_test = plan.test_only_arm(run.method) is not None
        assert run.argv[1] == ("test" if is_test else "fit")
        assert option(run.argv, "--model.weights") == [str(run.weights)]
        if not is_test:
            assert f"experiments/method/{run.method}.yaml" in configs
            assert set(plan.fit_configs) <= set(configs)


@pytest.mark.parametrize("name", PLANS)
def test_seeds_of_one_arm_differ_only_in_their_name_seed_and_run(name: str) -> None:
    runs = expand(load_plan(name))
    for run in runs:
        first = next(r for r in runs if r.method == run.method)
        relabel = {first.name: run.name, str(first.seed): str(run.seed)}
        assert tuple(relabel.get(arg, arg) for arg in first.argv) == run.argv


def test_overlays_go_to_matching_arms_in_order() -> None:
    runs = {run.method: run for run in expand(load_plan("safer", {"seeds": [0]}))}
    tail = {method: option(run.argv, "--config")[-2:] for method, run in runs.items()}
    attack = "experiments/regime/safer_stage2_attack.yaml"
    assert tail["safer_lora"] == ["experiments/regime/safer_selection.yaml", attack]
    assert tail["pgd_at"] == ["experiments/regime/safer_stage2.yaml", attack]
    assert tail["pgd_at_anf"][-1] == "experiments/regime/pgd_at_anf_stage2.yaml"
    assert attack not in runs["pgd_at_anf"].argv and attack not in runs["early_stopped"].argv
    assert option(runs["safer_lora"].argv, "--config")[3:5] == [
        "experiments/method/safer.yaml",
        "experiments/method/safer_lora.yaml",
    ]


def test_overrides_and_extra_arguments_reach_every_run() -> None:
    plan = load_plan(
        "sweep", {"methods": ["trades"], "seeds": [5], "threads": 3}, ["--trainer.max_epochs", "1"]
    )
    (run,) = expand(plan)
    assert run.name == "sweep/trades/seed5"
    assert option(run.argv, "--threads") == ["3"]
    assert run.argv[-2:] == ("--trainer.max_epochs", "1")


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"seeds": [0, 0]}, "seeds"),
        ({"methods": []}, "methods"),
        ({"overlays": [{"arms": ["saferr"], "args": []}]}, "overlays[0].arms"),
        (
            {"test_only": [{"arm": "pretrained", "method": "erm", "weights": "w"}]},
            "test_only[0].arm",
        ),
        ({"arm_seeds": [{"arms": ["erm"], "seeds": []}]}, "arm_seeds[0].seeds"),
        ({"arm_seeds": [{"arms": ["ermm"], "seeds": [0]}]}, "arm_seeds[0].arms"),
    ],
)
def test_bad_plans_fail_naming_the_field(tmp_path: Path, fields: dict, field: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_plan(str(write_plan(tmp_path, tmp_path / "w.safetensors", **fields)))
    assert info.value.field == field


def test_a_wrongly_typed_field_is_named(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="seeds"):
        load_plan(str(write_plan(tmp_path, tmp_path / "w", seeds=["zero"])))


def test_an_unknown_plan_lists_the_known_ones() -> None:
    with pytest.raises(ConfigError, match="anf, real, real_warm, safer, sweep"):
        load_plan("nope")


def make_dry_run(fragment: str, folder: Path) -> list[str]:
    """The commands ``make -n`` would run for ``fragment`` in ``folder``."""
    result = subprocess.run(
        ["make", "-n", "-f", "-", "CLI=robust-vit"],
        input=fragment,
        cwd=folder,
        capture_output=True,
        text=True,
        check=True,
    )
    return result.stdout.splitlines()


@pytest.mark.parametrize("name", PLANS)
def test_make_runs_each_unfinished_run_once_then_reports(name: str, tmp_path: Path) -> None:
    plan = load_plan(name)
    runs = expand(plan)
    finished = runs[1::2]
    for run in finished:
        (tmp_path / run.marker).parent.mkdir(parents=True)
        (tmp_path / run.marker).touch()
    lines = make_dry_run(makefile(plan, runs, [name, "--threads", "1"], ["-x"]), tmp_path)
    commands = [shlex.split(line) for line in lines if line.startswith("robust-vit ")]
    chosen = []
    for argv in commands[:-1]:  # each through `sweep run`, which resumes a killed fit
        assert argv[:5] == ["robust-vit", "sweep", "run", name, "--threads"]
        args, extra = split_extra(argv[2:])
        assert extra == ["-x"]
        chosen.append(find_run(runs, index=parser().parse_args(args).index))
    assert chosen == [run for run in runs if run not in finished]
    assert commands[-1][:3] == ["robust-vit", "report", f"runs/{plan.name}"]


def wandb_agent_command(command: list[str], index: int) -> list[str]:
    """The command wandb's agent starts for one grid point: its macros filled in."""
    values = create_sweep_command_args({"args": {"index": {"value": index}}})
    values |= {"env": ["/usr/bin/env"], "program": ["robust-vit"]}
    return [
        part
        for chunk in command
        for part in (values[chunk[2:-1]] if chunk.startswith("${") else [chunk])
    ]


@pytest.mark.parametrize("name", PLANS)
def test_wandb_sweep_is_a_valid_grid_whose_points_are_the_plan(name: str) -> None:
    plan = load_plan(name)
    runs = expand(plan)
    config = yaml.safe_load(
        yaml.safe_dump(wandb_sweep(plan, runs, [name, "--threads", "1"], ["-x"]))
    )
    assert set(config) <= WANDB_KEYS and config["method"] == "grid"
    assert isinstance(config["program"], str) and isinstance(config["command"], list)
    for key, parameter in config["parameters"].items():
        assert WANDB_PARAMETER_NAME.match(key) and list(parameter) == ["values"]
        assert len(parameter["values"]) >= 1
    chosen = []
    for index in config["parameters"]["index"]["values"]:
        argv = wandb_agent_command(config["command"], index)
        assert argv[:5] == ["/usr/bin/env", "robust-vit", "sweep", "run", name]
        args, extra = split_extra(argv[3:])
        assert extra == ["-x"]
        run_ns = parser().parse_args(args)
        assert run_ns.threads == 1
        chosen.append(find_run(runs, index=run_ns.index).index)
    assert sorted(chosen) == list(range(len(runs)))


@pytest.mark.parametrize("name", PLANS)
def test_slurm_array_task_i_runs_entry_i(name: str, tmp_path: Path) -> None:
    plan = load_plan(name)
    runs = expand(plan)
    script = slurm_script(plan, runs, [name], [])
    assert f"#SBATCH --array=0-{len(runs) - 1}\n" in script
    (srun_line,) = [line for line in script.splitlines() if line.startswith("srun ")]
    path = tmp_path / "sweep.sbatch"
    path.write_text(script)
    subprocess.run(["bash", "-n", str(path)], check=True)
    for index in range(len(runs)):
        argv = shlex.split(srun_line.replace("$SLURM_ARRAY_TASK_ID", str(index)))
        assert argv[:4] == ["srun", "robust-vit", "sweep", "run"]
        run_ns = parser().parse_args(argv[3:])
        assert find_run(runs, index=run_ns.index) == runs[index]


def test_the_engine_files_land_in_the_sweep_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    plans = tmp_path / "experiments" / "sweeps"
    plans.mkdir(parents=True)
    (plans / "anf.yaml").write_text((REPO / PLANS_DIR / "anf.yaml").read_text())
    monkeypatch.chdir(tmp_path)
    sweep_main(["wandb", "anf"])
    sweep_main(["slurm", "anf", "--seeds", "0"])
    config = yaml.safe_load((tmp_path / "runs/anf/wandb_sweep.yaml").read_text())
    assert config["parameters"]["index"]["values"] == list(range(13))  # pretrained once
    assert "#SBATCH --array=0-4\n" in (tmp_path / "runs/anf/sweep.sbatch").read_text()


class FakeCLI:
    """Stands in for ``application.cli.main``: records each call, optionally fails."""

    def __init__(self, exit_code: int = 0) -> None:
        self.calls: list[list[str]] = []
        self.exit_code = exit_code

    def __call__(self, argv: list[str]) -> None:
        self.calls.append(argv)
        if self.exit_code:
            raise SystemExit(self.exit_code)


@pytest.fixture
def tiny_plan(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """The tiny plan's file, its weights present, the working directory beside them."""
    weights = tmp_path / "w.safetensors"
    weights.touch()
    monkeypatch.chdir(tmp_path)
    return str(write_plan(tmp_path, weights))


def test_run_skips_a_finished_entry_and_marks_a_new_one(
    tiny_plan: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    plan_file = tiny_plan
    fake = FakeCLI()
    monkeypatch.setattr(cli, "main", fake)
    run = expand(load_plan(plan_file))[3]
    sweep_main(["run", plan_file, "--method", "anf", "--seed", "1"])
    root = ["--trainer.default_root_dir", str(run.trainer_root)]  # Lightning's SLURM checkpoints
    assert fake.calls == [[*run.argv[1:], *root]] and run.marker.exists()
    sweep_main(["run", plan_file, "--index", "3"])
    assert len(fake.calls) == 1


def test_run_leaves_no_marker_when_the_run_fails(
    tiny_plan: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    plan_file = tiny_plan
    monkeypatch.setattr(cli, "main", FakeCLI(exit_code=1))
    with pytest.raises(SystemExit) as info:
        sweep_main(["run", plan_file, "--index", "0"])
    assert info.value.code == 1
    assert not list((tmp_path / "runs").rglob(".done-*"))


def test_run_without_its_weights_fails_naming_the_make_target(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    plan_file = str(write_plan(tmp_path, Path("artifacts/missing.safetensors")))
    monkeypatch.chdir(tmp_path)
    fake = FakeCLI()
    monkeypatch.setattr(cli, "main", fake)
    with pytest.raises(SystemExit) as info:
        sweep_main(["run", plan_file, "--index", "0"])
    assert info.value.code == 2 and not fake.calls
    assert "weights: artifacts/missing.safetensors does not exist" in capsys.readouterr().err
    assert "`make artifacts/missing.safetensors`" in str(info.value.__cause__)


def test_every_weights_file_the_plans_need_has_a_make_rule() -> None:
    for name in PLANS:
        for weights in {run.weights for run in expand(load_plan(name))}:
            result = subprocess.run(
                ["make", "-n", "-B", str(weights)], cwd=REPO, capture_output=True, text=True
            )
            assert result.returncode == 0, f"{name}: no make rule for {weights}: {result.stderr}"


def test_overridden_methods_may_leave_out_the_test_only_arm_and_overlaid_arms() -> None:
    runs = expand(load_plan("anf", {"methods": ["erm", "gaussian_noise"]}))
    assert [run.method for run in runs] == ["erm"] * 3 + ["gaussian_noise"] * 3
    assert all(run.argv[1] == "fit" for run in runs)


def test_arm_seeds_give_some_arms_other_seeds_until_seeds_are_overridden(tmp_path: Path) -> None:
    path = str(write_plan(tmp_path, tmp_path / "w", arm_seeds=[{"arms": ["an*"], "seeds": [5]}]))
    runs = expand(load_plan(path))
    assert [(run.method, run.seed) for run in runs] == [("erm", 0), ("erm", 1), ("anf", 5)]
    assert [run.index for run in runs] == [0, 1, 2]
    pilot = expand(load_plan(path, {"seeds": [3]}))
    assert [(run.method, run.seed) for run in pilot] == [("erm", 3), ("anf", 3)]


def test_a_marker_changes_with_the_command_and_the_configs_it_reads(tmp_path: Path) -> None:
    config = tmp_path / "regime.yaml"
    config.write_text("trainer: {max_epochs: 1}\n")
    argv = ["robust-vit", "fit", "--config", str(config), "--name", "x"]
    first = inputs_digest(argv)
    assert inputs_digest(argv) == first
    assert inputs_digest([*argv, "--threads", "2"]) != first
    config.write_text("trainer: {max_epochs: 2}\n")
    assert inputs_digest(argv) != first


def aged(path: Path, seconds_ago: float) -> Path:
    """``path`` created (folders too) with its modification time ``seconds_ago`` in the past."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.touch()
    stamp = path.stat().st_mtime - seconds_ago
    os.utime(path, (stamp, stamp))
    return path


def test_a_restart_resumes_the_newest_checkpoint_of_its_own_inputs(tiny_plan: str) -> None:
    run = expand(load_plan(tiny_plan))[0]
    folder = Path("runs") / run.name
    old = aged(folder / "version_0/checkpoints/last.ckpt", 300)  # a run with other inputs
    assert launch_args(run) == ["--trainer.default_root_dir", str(run.trainer_root)]  # fresh
    assert run.started.is_file() and resume_checkpoint(run) is None
    aged(run.started, 200)
    last = aged(folder / "version_1/checkpoints/last.ckpt", 100)
    assert resume_checkpoint(run) == last
    hpc = aged(run.trainer_root / "hpc_ckpt_1.ckpt", 50)  # Lightning's, on SLURM's SIGUSR1
    assert run.trainer_root.parent == folder and run.trainer_root.name.startswith("hpc-")
    assert launch_args(run)[-2:] == ["--ckpt_path", str(hpc)]
    os.utime(last)  # the resumed run wrote a newer last.ckpt
    assert resume_checkpoint(run) == last and old != last


def test_a_test_only_run_starts_over(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    weights = aged(tmp_path / "w.safetensors", 0)
    monkeypatch.chdir(tmp_path)
    test_only = [{"arm": "pretrained", "method": "erm", "weights": str(weights)}]
    plan = write_plan(tmp_path, weights, methods=["pretrained", "erm"], test_only=test_only)
    run = expand(load_plan(str(plan)))[0]
    aged(Path("runs") / run.name / "version_0/checkpoints/last.ckpt", 0)
    assert not run.trains and resume_checkpoint(run) is None
    assert "--ckpt_path" not in launch_args(run) and not run.started.exists()


def test_a_preempted_run_is_marked_so_for_wandbs_sweep_controller(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import wandb

    from application.lightning_cli import finish_wandb_run

    calls: list[str] = []

    class Run:
        def mark_preempting(self) -> None:
            calls.append("mark_preempting")

    monkeypatch.setattr(wandb, "run", Run())
    monkeypatch.setattr(wandb, "finish", lambda exit_code: calls.append(f"finish {exit_code}"))
    finish_wandb_run(exit_code=143, preempted=True)
    finish_wandb_run(exit_code=1)
    assert calls == ["mark_preempting", "finish 143", "finish 1"]
