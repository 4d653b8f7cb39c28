"""Sweep plans: one YAML per sweep, expanded into the ordered list of runs every engine runs.

A plan (``experiments/sweeps/<name>.yaml``) names the arms (methods), the seeds, the weights the
trained arms finetune from, the evaluation suite and the overlays some arms add. :func:`expand`
turns it into :class:`PlannedRun` entries, method-major and numbered in order, each with the
full ``robust-vit fit|test`` command, its run name and its ``.done-<digest>`` marker, keyed
by the command and the content of the configs it reads. make, wandb sweeps and SLURM job arrays
are all written from that one list (``robust-vit sweep``), and each runs an entry through
``robust-vit sweep run``, which resumes a fit that was killed from its newest checkpoint
(:func:`resume_checkpoint`).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from fnmatch import fnmatch
from itertools import pairwise
from pathlib import Path
from typing import Any

from robust_vit.errors import ConfigError

PLANS_DIR = Path("experiments/sweeps")
METHOD_DIR = Path("experiments/method")
RUNS_DIR = Path("runs")
DONE_MARKER = ".done"
STARTED_MARKER = ".started"
# Lightning's SLURM checkpoints, written in the trainer's default_root_dir on SIGUSR1.
HPC_CHECKPOINTS = "hpc_ckpt_*.ckpt"
LAST_CHECKPOINTS = "version_*/checkpoints/last.ckpt"
CONFIG_FLAGS = ("--config", "-c")
# Method configs that are overlays on another method's config: each safer_<variant>.yaml
# changes options of safer.yaml, which is loaded before it.
OVERLAID_METHODS = ("safer",)


@dataclass(frozen=True)
class Overlay:
    """Arguments some arms add after the plan's own ``args``.

    Args:
        arms: the arms it applies to: names or shell-style patterns (``safer*``).
        args: the command-line arguments they add (``[--config, experiments/regime/x.yaml]``).
    """

    arms: list[str]
    args: list[str]


@dataclass(frozen=True)
class ArmSeeds:
    """Seeds some arms run with instead of the plan's ``seeds``.

    Args:
        arms: the arms it applies to: names or shell-style patterns (``safer_*``).
        seeds: their seeds (``--seed_everything``).
    """

    arms: list[str]
    seeds: list[int]


@dataclass(frozen=True)
class TestOnly:
    """An arm that trains nothing: it tests fixed weights with the plan's evaluation suite.

    Args:
        arm: its name among the plan's ``methods`` (its run folder).
        method: the method config it is tested with (``experiments/method/<method>.yaml``).
        weights: the weights file it tests.
    """

    arm: str
    method: str
    weights: str


@dataclass(frozen=True)
class Plan:
    """A sweep: every arm in ``methods`` runs once per seed in ``seeds``.

    Args:
        name: the sweep's name: its folder ``runs/<name>/`` and its wandb group.
        configs: the configs every run starts from (trainer, data, model).
        fit_configs: the configs the trained arms load after their method's config.
        methods: the arms in run order; each is ``experiments/method/<arm>.yaml`` unless it is
            the test-only arm.
        seeds: the seeds each arm runs with (``--seed_everything``), unless ``arm_seeds`` says
            otherwise.
        weights: the weights file the trained arms finetune from (``--model.weights``).
        eval: the evaluation suite config every run is tested with.
        args: arguments every run adds at the end (regime overlays).
        overlays: arguments some arms add after ``args``, in order.
        test_only: the arms that test fixed weights instead of training.
        arm_seeds: other seeds for some arms (the first entry matching an arm wins).
        threads: CPU threads per run (``--threads``); None leaves torch's default.
    """

    name: str
    configs: list[str]
    fit_configs: list[str]
    methods: list[str]
    seeds: list[int]
    weights: str
    eval: str
    args: list[str] = field(default_factory=list)
    overlays: list[Overlay] = field(default_factory=list)
    test_only: list[TestOnly] = field(default_factory=list)
    arm_seeds: list[ArmSeeds] = field(default_factory=list)
    threads: int | None = None

    def __post_init__(self) -> None:
        """Fail on values that would make a plan with holes or repeats."""
        for key in ("name", "methods", "seeds", "configs"):
            if not getattr(self, key):
                raise ConfigError(key, "must not be empty.")
        lists: dict[str, list[str] | list[int]] = {"methods": self.methods, "seeds": self.seeds}
        lists["test_only"] = [entry.arm for entry in self.test_only]
        for number, entry in enumerate(self.arm_seeds):
            lists[f"arm_seeds[{number}].seeds"] = entry.seeds
            if not entry.seeds:
                raise ConfigError(f"arm_seeds[{number}].seeds", "must not be empty.")
        for key, values in lists.items():
            repeated = sorted({str(v) for v in values if list(values).count(v) > 1})
            if repeated:
                raise ConfigError(
                    key,
                    f"lists {', '.join(repeated)} more than once; each run must be planned once.",
                )
        if self.threads is not None and self.threads < 1:
            raise ConfigError("threads", f"must be at least 1, got {self.threads}.")

    def seeds_of(self, method: str) -> list[int]:
        """The seeds of ``method``: the first matching ``arm_seeds`` entry's, or ``seeds``."""
        for entry in self.arm_seeds:
            if any(fnmatch(method, pattern) for pattern in entry.arms):
                return entry.seeds
        return self.seeds

    def test_only_arm(self, method: str) -> TestOnly | None:
        """The test-only entry of ``method``, or None for a trained arm."""
        return next((entry for entry in self.test_only if entry.arm == method), None)


@dataclass(frozen=True)
class PlannedRun:
    """One run of a plan: what it runs, where its results and its ``.done-<digest>`` marker go.

    Args:
        index: its place in the plan (the SLURM array index).
        method: its arm (the wandb job_type).
        seed: its seed.
        name: its run name, ``<sweep>/<method>/seed<seed>`` (its folder under ``runs/``).
        argv: the full command, ``robust-vit fit ...`` or ``robust-vit test ...``.
        weights: the weights file it loads, which must exist before it runs.
        weights_field: the plan field that names ``weights``.
    """

    index: int
    method: str
    seed: int
    name: str
    argv: tuple[str, ...]
    weights: Path
    weights_field: str

    @property
    def marker(self) -> Path:
        """The file written when the run finished: a restart skips the run while it exists.

        Its name holds :func:`inputs_digest` of the command, so a run whose command or configs
        changed since it finished is run again rather than skipped.
        """
        return RUNS_DIR / self.name / f"{DONE_MARKER}-{inputs_digest(self.argv)}"

    @property
    def started(self) -> Path:
        """The file written when the run first started with these inputs.

        Only checkpoints written after it are resumed, so a run whose command or configs changed
        starts over instead of resuming another run's training.
        """
        return RUNS_DIR / self.name / f"{STARTED_MARKER}-{inputs_digest(self.argv)}"

    @property
    def trainer_root(self) -> Path:
        """The trainer's root folder for these inputs, where Lightning's SLURM checkpoints go.

        It is named by the inputs' digest, because on SLURM Lightning itself resumes from a
        checkpoint it finds there: a run whose command or configs changed finds none.
        """
        return RUNS_DIR / self.name / f"hpc-{inputs_digest(self.argv)}"

    @property
    def trains(self) -> bool:
        """Whether the run is a fit (a test-only run has nothing to resume)."""
        return self.argv[1] == "fit"

    def check_inputs(self) -> None:
        """Fail before any compute when the weights file is missing, naming what makes it."""
        if not self.weights.is_file():
            raise ConfigError(
                self.weights_field,
                f"{self.weights} does not exist. Build it "
                f"first (`make {self.weights}`: the Makefile has a rule for each "
                "weights file the committed plans use), or point the plan at an "
                "existing file.",
            )


def resume_checkpoint(run: PlannedRun) -> Path | None:
    """The newest checkpoint the unfinished fit of ``run`` left, or None to start it afresh.

    Candidates: each version's ``last.ckpt`` (rewritten after every epoch, and when a SIGTERM
    stops the run) and Lightning's SLURM checkpoints in its trainer root (``hpc_ckpt_N.ckpt``, on
    SIGUSR1 before a requeue), written since the run first started with its current inputs.
    """
    if not run.trains or not run.started.is_file():
        return None
    since = run.started.stat().st_mtime
    found = [*(RUNS_DIR / run.name).glob(LAST_CHECKPOINTS), *run.trainer_root.glob(HPC_CHECKPOINTS)]
    fresh = [path for path in found if path.stat().st_mtime >= since]
    return max(fresh, key=lambda path: path.stat().st_mtime, default=None)


def launch_args(run: PlannedRun) -> list[str]:
    """What ``sweep run`` adds to the planned command: the trainer's root, and where to resume.

    The trainer's root is :attr:`PlannedRun.trainer_root` (where Lightning's SLURM checkpoints
    go); ``--ckpt_path`` is added when the fit resumes. The first start of a run with its current
    inputs writes its ``started`` marker.
    """
    args = ["--trainer.default_root_dir", str(run.trainer_root)]
    checkpoint = resume_checkpoint(run)
    if checkpoint is not None:
        return [*args, "--ckpt_path", str(checkpoint)]
    if run.trains and not run.started.is_file():
        run.started.parent.mkdir(parents=True, exist_ok=True)
        run.started.touch()
    return args


def inputs_digest(argv: Sequence[str]) -> str:
    """12 hex digits of the sha256 of a command and of every config file it reads."""
    digest = hashlib.sha256("\0".join(argv).encode())
    for flag, value in pairwise(argv):
        if flag in CONFIG_FLAGS and Path(value).is_file():
            digest.update(Path(value).read_bytes())
    return digest.hexdigest()[:12]


def plan_path(plan: str) -> Path:
    """The YAML of ``plan``: a file path, or the name of a plan in ``experiments/sweeps/``."""
    path = Path(plan) if plan.endswith((".yaml", ".yml")) else PLANS_DIR / f"{plan}.yaml"
    if not path.is_file():
        known = ", ".join(sorted(p.stem for p in PLANS_DIR.glob("*.yaml")))
        raise ConfigError(
            "plan",
            f"no plan file {path}. Name a plan in {PLANS_DIR}/ "
            f"({known or 'none found here'}) or give the path of a plan YAML.",
        )
    return path


def load_plan(
    plan: str, overrides: dict[str, Any] | None = None, extra_args: list[str] | None = None
) -> Plan:
    """Read and check the plan ``plan`` names, then apply ``overrides`` (field: value).

    The name defaults to the file's stem; ``extra_args`` go after the plan's ``args``. Every
    field is type-checked (jsonargparse) and the error names the field. The file's overlays, arm
    seeds and test-only arms must name its methods; overridden ``methods`` may be any subset or
    others. Overridden ``seeds`` hold for every arm (the file's ``arm_seeds`` are dropped).
    """
    import yaml

    path = plan_path(plan)
    try:
        with path.open() as text:
            data = yaml.safe_load(text) or {}
    except yaml.YAMLError as err:
        raise ConfigError(
            "plan", f"{path} is not valid YAML ({' '.join(str(err).split())}). Fix it there."
        ) from err
    if not isinstance(data, dict):
        raise ConfigError("plan", f"{path} must hold a mapping of plan fields.")
    data = {"name": path.stem, **data}
    check_references(build_plan(data, path))
    overrides = dict(overrides or {})
    if "seeds" in overrides:  # seeds given on the command line hold for every arm
        overrides.setdefault("arm_seeds", [])
    return build_plan(
        {**data, **overrides, "args": [*data.get("args", []), *(extra_args or [])]}, path
    )


def build_plan(data: dict[str, Any], path: Path) -> Plan:
    """The :class:`Plan` of ``data`` (read from ``path``), every field type-checked."""
    from jsonargparse import ArgumentParser

    parser = ArgumentParser(exit_on_error=False)
    parser.add_class_arguments(Plan, "plan")
    try:
        parsed = parser.parse_object({"plan": data})
    except Exception as err:  # jsonargparse's ArgumentError names the key
        message = " ".join(str(err).split())
        raise ConfigError("plan", f"{path}: {message}") from err
    built = parser.instantiate(parsed).plan
    assert isinstance(built, Plan)
    return built


def check_references(plan: Plan) -> None:
    """Fail when an overlay, arm seeds or a test-only arm name no method of ``plan`` (a typo)."""
    patterns = [(f"overlays[{i}].arms", entry.arms) for i, entry in enumerate(plan.overlays)]
    patterns += [(f"arm_seeds[{i}].arms", entry.arms) for i, entry in enumerate(plan.arm_seeds)]
    for key, arms in patterns:
        for pattern in arms:
            if not any(fnmatch(method, pattern) for method in plan.methods):
                raise ConfigError(
                    key, f"{pattern!r} matches none of the methods ({', '.join(plan.methods)})."
                )
    for number, entry in enumerate(plan.test_only):
        if entry.arm not in plan.methods:
            raise ConfigError(
                f"test_only[{number}].arm",
                f"{entry.arm!r} is not among the methods "
                f"({', '.join(plan.methods)}); add it where it should run.",
            )


def method_configs(method: str) -> list[str]:
    """The config files of a trained arm, the overlaid base method's first."""
    bases = [base for base in OVERLAID_METHODS if method.startswith(f"{base}_")]
    return [str(METHOD_DIR / f"{name}.yaml") for name in (*bases, method)]


def overlay_args(plan: Plan, method: str) -> list[str]:
    """The arguments the overlays matching ``method`` add, in the plan's order."""
    return [
        arg
        for overlay in plan.overlays
        if any(fnmatch(method, pattern) for pattern in overlay.arms)
        for arg in overlay.args
    ]


def expand(plan: Plan) -> list[PlannedRun]:
    """Every run of ``plan``, method-major (all seeds of the first method first)."""
    runs: list[PlannedRun] = []
    for method in plan.methods:
        for seed in plan.seeds_of(method):
            runs.append(planned_run(plan, len(runs), method, seed))
    return runs


def planned_run(plan: Plan, index: int, method: str, seed: int) -> PlannedRun:
    """The run of ``method`` with ``seed``: a test of fixed weights or a finetuning run."""
    name = f"{plan.name}/{method}/seed{seed}"
    layers = [*plan.configs]
    test_only = plan.test_only_arm(method)
    if test_only is not None:
        number = plan.test_only.index(test_only)
        subcommand, weights = "test", test_only.weights
        weights_field = f"test_only[{number}].weights"
        layers += [str(METHOD_DIR / f"{test_only.method}.yaml"), plan.eval]
    else:
        subcommand, weights, weights_field = "fit", plan.weights, "weights"
        layers += [*method_configs(method), *plan.fit_configs, plan.eval]
    argv = ["robust-vit", subcommand]
    for layer in layers:
        argv += ["--config", layer]
    argv += [
        "--model.weights",
        weights,
        "--name",
        name,
        "--group",
        plan.name,
        "--job_type",
        method,
        "--seed_everything",
        str(seed),
    ]
    if plan.threads is not None:
        argv += ["--threads", str(plan.threads)]
    argv += ["--trainer.enable_progress_bar", "false", *plan.args, *overlay_args(plan, method)]
    return PlannedRun(
        index=index,
        method=method,
        seed=seed,
        name=name,
        argv=tuple(argv),
        weights=Path(weights),
        weights_field=weights_field,
    )


def find_run(
    runs: list[PlannedRun],
    *,
    index: int | None = None,
    method: str | None = None,
    seed: int | None = None,
) -> PlannedRun:
    """The run at ``index``, or the run of ``method`` with ``seed``."""
    if index is not None:
        if not 0 <= index < len(runs):
            raise ConfigError("index", f"{index} is outside the plan's runs 0..{len(runs) - 1}.")
        return runs[index]
    for run in runs:
        if run.method == method and run.seed == seed:
            return run
    methods = sorted({run.method for run in runs})
    seeds = sorted({run.seed for run in runs})
    raise ConfigError(
        "method" if method not in methods else "seed",
        f"the plan has no run of method {method!r} with seed {seed} "
        f"(methods: {', '.join(methods)}; seeds: {', '.join(map(str, seeds))}).",
    )
