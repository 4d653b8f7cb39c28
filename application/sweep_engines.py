"""The inputs of the engines that run a sweep plan: a make fragment, a wandb sweep, a SLURM array.

Each is written from the same :func:`application.sweeps.expand` list, so they cannot drift. wandb
and SLURM, like make's recipes, run one entry per job through ``robust-vit sweep run`` (which
resumes a killed fit from its checkpoint), given ``rerun`` (the plan and its overrides as
``sweep run`` takes them) and ``extra`` (the arguments after ``--``).
"""

from __future__ import annotations

import shlex
from typing import Any

from application.sweeps import RUNS_DIR, Plan, PlannedRun


def make_quote(arg: str) -> str:
    """``arg`` quoted for a make recipe: for the shell, with make's ``$`` escaped."""
    return shlex.quote(arg).replace("$", "$$")


def makefile(plan: Plan, runs: list[PlannedRun], rerun: list[str], extra: list[str]) -> str:
    """A makefile whose targets are the runs' ``.done-<digest>`` markers, then the sweep's report.

    Each recipe is ``robust-vit sweep run ... --index I``, which writes the marker (and resumes
    a killed fit), so make skips a run whose marker exists and runs independent runs in parallel
    under ``-j``. ``CLI`` (default ``robust-vit``) is the command the recipes call; ``BASELINE``
    adds the report's paired differences.
    """
    markers = " ".join(make_quote(str(run.marker)) for run in runs)
    tail = ["--", *extra] if extra else []
    lines = [
        f"# The {len(runs)} runs of sweep {plan.name}, written by `robust-vit sweep make`.",
        "CLI ?= robust-vit",
        "",
        ".PHONY: sweep",
        f"sweep: {markers}",
        f"\t$(CLI) report {make_quote(str(RUNS_DIR / plan.name))} --group "
        "$(if $(BASELINE),--baseline $(BASELINE))",
    ]
    for run in runs:
        args = ["sweep", "run", *rerun, "--index", str(run.index), *tail]
        command = " ".join(["$(CLI)", *map(make_quote, args)])
        lines += ["", f"{make_quote(str(run.marker))}:", f"\t{command}"]
    return "\n".join(lines) + "\n"


def wandb_sweep(
    plan: Plan, runs: list[PlannedRun], rerun: list[str], extra: list[str]
) -> dict[str, Any]:
    """A wandb grid sweep over the plan's entries, each run by ``robust-vit sweep run``.

    The grid is the entries' indices (arms may run with different seeds, so methods x seeds
    need not be the plan). wandb's agent expands ``${env}``, ``${program}`` and ``${args}``
    (``--index=I``).
    """
    separator = ["--", *extra] if extra else []
    return {
        "name": plan.name,
        "description": f"robust-vit sweep plan {plan.name}: each entry once, its run in "
        f"{RUNS_DIR / plan.name}/<method>/seed<seed>/.",
        "program": "robust-vit",
        "method": "grid",
        "parameters": {"index": {"values": [run.index for run in runs]}},
        "command": ["${env}", "${program}", "sweep", "run", *rerun, "${args}", *separator],
    }


def slurm_script(plan: Plan, runs: list[PlannedRun], rerun: list[str], extra: list[str]) -> str:
    """An ``sbatch`` job array whose task ``i`` runs plan entry ``i`` under ``srun``."""
    command = ["srun", "robust-vit", "sweep", "run", *rerun]
    tail = ["--", *extra] if extra else []
    run_line = " ".join(
        [*map(shlex.quote, command), '--index "$SLURM_ARRAY_TASK_ID"', *map(shlex.quote, tail)]
    )
    folder = RUNS_DIR / plan.name
    return "\n".join(
        [
            "#!/bin/bash",
            f"# Sweep {plan.name} as a SLURM job array: task i runs entry i of "
            f"`robust-vit sweep show {' '.join(map(shlex.quote, rerun))}`.",
            f"# Submit from the repository root, robust-vit on PATH: sbatch {folder}/sweep.sbatch",
            "# A finished run (its .done-<digest> marker exists) is skipped: resubmitting reruns",
            "# the rest, and a fit that was stopped resumes from its newest checkpoint. Near the",
            "# time limit SLURM sends SIGUSR1: Lightning saves a checkpoint in the run folder and",
            "# requeues the task; a preempted task (SIGTERM) saves last.ckpt and is requeued.",
            "# Edit the resources to your cluster:",
            f"#SBATCH --job-name={plan.name}",
            f"#SBATCH --array=0-{len(runs) - 1}",
            "#SBATCH --ntasks=1",
            "#SBATCH --gpus=1",
            "#SBATCH --cpus-per-task=8",
            "#SBATCH --time=04:00:00",
            "#SBATCH --requeue",
            "#SBATCH --signal=SIGUSR1@120",
            "#SBATCH --open-mode=append",
            f"#SBATCH --output={folder}/slurm-%A_%a.out",
            "set -euo pipefail",
            "# srun makes the task a SLURM step: Lightning's SLURMEnvironment reads its variables.",
            run_line,
            "",
        ]
    )
