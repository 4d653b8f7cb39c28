"""``robust-vit sweep show|run|make|wandb|slurm PLAN``: one sweep plan, run by any engine.

``PLAN`` names a plan in ``experiments/sweeps/`` (``anf``) or is a plan YAML's path. Options
override its fields, and arguments after ``--`` are added to every run. ``show`` prints the runs;
``run`` runs one (``--index I``, or ``--method M --seed S``) unless it finished, resuming a fit
that was killed from its newest checkpoint; ``make``, ``wandb`` and ``slurm`` write the input of
that engine, whose jobs each call ``run``.
"""

from __future__ import annotations

import argparse
import shlex
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from application.sweep_engines import makefile, slurm_script, wandb_sweep
from application.sweeps import (
    RUNS_DIR,
    Plan,
    PlannedRun,
    expand,
    find_run,
    launch_args,
    load_plan,
)
from robust_vit.errors import ConfigError
from robust_vit.records import write_text_atomic

# The plan fields the command line overrides (each option is named as its field).
OVERRIDES = ("name", "methods", "seeds", "weights", "eval", "threads")


def plan_options() -> argparse.ArgumentParser:
    """The options every subcommand takes: the plan and overrides of its fields."""
    options = argparse.ArgumentParser(add_help=False, allow_abbrev=False)
    options.add_argument("plan", help="a plan in experiments/sweeps/ (anf) or a plan YAML path")
    options.add_argument("--name", help="the sweep's name (its runs/ folder, its wandb group)")
    options.add_argument("--methods", nargs="+", help="the arms to run, in order")
    options.add_argument("--seeds", nargs="+", type=int, help="the seeds each arm runs with")
    options.add_argument("--weights", help="the weights file the trained arms finetune from")
    options.add_argument("--eval", help="the evaluation suite config")
    options.add_argument("--threads", type=int, help="CPU threads per run")
    return options


def parser() -> argparse.ArgumentParser:
    """``robust-vit sweep`` and its subcommands."""
    top = argparse.ArgumentParser(
        prog="robust-vit sweep",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    commands = top.add_subparsers(dest="command", required=True)
    shared = [plan_options()]
    commands.add_parser("show", parents=shared, help="print the runs, each with its command")
    run = commands.add_parser(
        "run",
        parents=shared,
        allow_abbrev=False,
        help="run one entry of the plan unless its .done-<digest> marker exists",
    )
    run.add_argument("--index", type=int, help="the entry's index (SLURM_ARRAY_TASK_ID)")
    run.add_argument("--method", help="the entry's method (with --seed; wandb's agent)")
    run.add_argument("--seed", type=int, help="the entry's seed (with --method)")
    commands.add_parser("make", parents=shared, help="print a makefile of the runs' markers")
    for name, what in (("wandb", "a wandb sweep YAML"), ("slurm", "an sbatch job-array script")):
        engine = commands.add_parser(name, parents=shared, help=f"write {what}")
        engine.add_argument("--out", type=Path, help="where (default: in runs/<name>/)")
    return top


def split_extra(argv: list[str]) -> tuple[list[str], list[str]]:
    """The arguments before ``--``, and those after it (added to every run)."""
    if "--" not in argv:
        return argv, []
    cut = argv.index("--")
    return argv[:cut], argv[cut + 1 :]


def rerun_args(ns: argparse.Namespace) -> list[str]:
    """The plan and its overrides as ``robust-vit sweep run`` takes them."""
    args = [ns.plan]
    for option in OVERRIDES:
        value = getattr(ns, option)
        if value is not None:
            args += [f"--{option}", *map(str, value if isinstance(value, list) else [value])]
    return args


def show(plan: Plan, runs: list[PlannedRun], ns: argparse.Namespace, extra: list[str]) -> None:
    """Print each run (index, done or todo, command)."""
    done = sum(run.marker.exists() for run in runs)
    print(
        f"# sweep {plan.name}: {len(runs)} runs ({len(plan.methods)} methods, "
        f"seeds {', '.join(map(str, sorted({run.seed for run in runs})))}), {done} done"
    )
    for run in runs:
        state = "done" if run.marker.exists() else "todo"
        print(f"{run.index:3d} {state} {' '.join(map(shlex.quote, run.argv))}")


def run_entry(plan: Plan, runs: list[PlannedRun], ns: argparse.Namespace, extra: list[str]) -> None:
    """Run the chosen entry in this process, then write its marker; skip it if it finished."""
    from application import cli

    if ns.index is None and (ns.method is None or ns.seed is None):
        raise ConfigError("index", "give --index I, or --method M with --seed S.")
    run = find_run(runs, index=ns.index, method=ns.method, seed=ns.seed)
    if run.marker.exists():
        print(f"robust-vit sweep: {run.name} finished ({run.marker} exists): skipped.")
        return
    run.check_inputs()
    launch = launch_args(run)
    command = " ".join(map(shlex.quote, [*run.argv, *launch]))
    resumed = " (resuming an unfinished fit)" if "--ckpt_path" in launch else ""
    print(f"robust-vit sweep: entry {run.index}{resumed}: {command}", flush=True)
    cli.main([*run.argv[1:], *launch])
    run.marker.parent.mkdir(parents=True, exist_ok=True)
    run.marker.touch()


def write_makefile(
    plan: Plan, runs: list[PlannedRun], ns: argparse.Namespace, extra: list[str]
) -> None:
    """Print the makefile of the plan's markers."""
    print(makefile(plan, runs, rerun_args(ns), extra), end="")


def write_wandb(
    plan: Plan, runs: list[PlannedRun], ns: argparse.Namespace, extra: list[str]
) -> None:
    """Write the wandb sweep YAML and say how to start it."""
    out = write(
        ns.out or RUNS_DIR / plan.name / "wandb_sweep.yaml",
        yaml.safe_dump(wandb_sweep(plan, runs, rerun_args(ns), extra), sort_keys=False),
    )
    print(
        f"{out}: create the sweep with `wandb sweep --project robust-vit {out}`, then run "
        "`WANDB_MODE=online wandb agent ENTITY/robust-vit/SWEEP_ID` from the repository root "
        "on each machine."
    )


def write_slurm(
    plan: Plan, runs: list[PlannedRun], ns: argparse.Namespace, extra: list[str]
) -> None:
    """Write the sbatch job-array script and say how to submit it."""
    out = write(
        ns.out or RUNS_DIR / plan.name / "sweep.sbatch",
        slurm_script(plan, runs, rerun_args(ns), extra),
    )
    print(f"{out}: edit its #SBATCH resources, then `sbatch {out}` from the repository root.")


def write(path: Path, text: str) -> Path:
    """Write ``text`` to ``path`` (its folder created, never half a file)."""
    write_text_atomic(path, text)
    return path


COMMANDS: dict[str, Callable[[Plan, list[PlannedRun], argparse.Namespace, list[str]], None]] = {
    "show": show,
    "run": run_entry,
    "make": write_makefile,
    "wandb": write_wandb,
    "slurm": write_slurm,
}


def main(argv: list[str]) -> None:
    """Entry point of ``robust-vit sweep``."""
    args, extra = split_extra(argv)
    ns = parser().parse_args(args)
    overrides: dict[str, Any] = {
        field: getattr(ns, field) for field in OVERRIDES if getattr(ns, field) is not None
    }
    try:
        plan = load_plan(ns.plan, overrides, extra)
        COMMANDS[ns.command](plan, expand(plan), ns, extra)
    except ConfigError as err:
        print(f"robust-vit: error: {err}", file=sys.stderr)
        raise SystemExit(2) from err
