"""The LightningCLI subcommands of ``robust-vit`` (fit, validate, test, predict)."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

from lightning.pytorch import Trainer
from lightning.pytorch.callbacks import ProgressBar, RichProgressBar
from lightning.pytorch.cli import ArgsType, LightningArgumentParser, LightningCLI
from lightning.pytorch.utilities.exceptions import SIGTERMException

from application.parser import RobustViTParser
from application.preflight import (
    check_state_fits,
    label_wandb_run,
    prepare_wandb,
    read_checkpoint,
)
from callbacks.results import ResultRecord
from callbacks.selection import Rule, ValidationLedger, monitored_checkpoint, select_weights
from lightning_modules.methods import FinetuneMethod
from robust_vit.errors import ConfigError, TrainingFault
from robust_vit.ranges import PositiveInt, checked_by_owner
from robust_vit.records import RECORD_NAME


class RobustViTCLI(LightningCLI):
    """LightningCLI with the data-to-model links and a CPU thread-count option."""

    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        """Link the sizes the data decides into the model, and add ``--threads``."""
        for name in ("num_classes", "img_size", "in_chans"):
            parser.link_arguments(f"data.{name}", f"model.{name}", apply_on="instantiate")
        parser.add_argument(
            "--threads",
            type=PositiveInt | None,
            default=None,
            help="CPU threads for torch, at least 1 (default: torch's own choice). Set it on "
            "shared machines.",
        )

        parser.add_argument(
            "--name",
            type=str | None,
            default=None,
            help="Run name: the folder under each logger's save_dir and the wandb run name.",
        )
        parser.add_argument(
            "--group",
            type=str | None,
            default=None,
            help="The sweep this run belongs to: wandb's group, so that a sweep's seeds "
            "collapse into one line with a band (the seed is a wandb tag, seed<N>).",
        )
        parser.add_argument(
            "--job_type",
            type=str | None,
            default=None,
            help="The sweep arm (method) this run is: wandb's job_type.",
        )

        parser.add_argument(
            "--test_after_fit",
            type=bool,
            default=False,
            help="After fit, test the weights --test_weights picks in the same run folder, so "
            "that one result record holds both.",
        )
        parser.add_argument(
            "--test_weights",
            type=Rule,
            default="last",
            help="Which weights --test_after_fit tests: 'last' (the end of training, what a "
            "finetuning comparison tests) or 'best' (the checkpoint of the best value of the "
            "monitored ModelCheckpoint, among the validations that ran).",
        )
        parser.add_argument(
            "--test_monitor",
            type=str | None,
            default=None,
            help="The metric --test_weights best ranks by (e.g. val/robust_acc): a "
            "ModelCheckpoint must monitor it. Default: the first monitored ModelCheckpoint's.",
        )

    def before_instantiate_classes(self) -> None:
        """Apply the thread count and the run name before anything is built."""
        import torch

        config = self.config[self.subcommand] if self.subcommand else self.config
        if config.get("threads"):
            torch.set_num_threads(config.threads)
        loggers = config.trainer.get("logger")
        prepare_wandb(loggers)
        label_wandb_run(
            loggers,
            group=config.get("group"),
            job_type=config.get("job_type"),
            seed=config.get("seed_everything"),
        )
        if config.get("name") and isinstance(loggers, list):
            for logger in loggers:
                logger.init_args.name = config.name

    def instantiate_classes(self) -> None:
        """Build the configured objects; each method's rules across fields are checked by its owner.

        jsonargparse builds a Composite's terms before the Composite, so only the owner knows the
        key a term's error must name (``model.method.init_args.terms[1].init_args...``).
        """
        with checked_by_owner(FinetuneMethod):
            super().instantiate_classes()

    def _parse_ckpt_path(self) -> None:
        """Check ``--ckpt_path`` (exists, a checkpoint, loads safely) before Lightning reads it."""
        subcommand = self.config.get("subcommand")
        ckpt_path = self.config[subcommand].get("ckpt_path") if subcommand else None
        self._ckpt_state = read_checkpoint(ckpt_path)
        super()._parse_ckpt_path()

    def _check_ckpt_path(self) -> None:
        """Fail before any compute unless the ``--ckpt_path`` weights fit the model."""
        if self._ckpt_state is not None:
            ckpt_path = self.config_init[self.subcommand].get("ckpt_path")
            check_state_fits(ckpt_path, self._ckpt_state, self.model)

    def before_fit(self) -> None:
        """Check the resume checkpoint, and that a 'best' test has a monitored checkpoint."""
        self._check_ckpt_path()
        config = self.config.fit
        if config.get("test_after_fit") and config.get("test_weights") == "best":
            monitored_checkpoint(self.trainer, "test_weights", config.get("test_monitor"))

    before_validate = before_test = before_predict = _check_ckpt_path

    def _run_subcommand(self, subcommand: str) -> None:
        """Run the subcommand, then finish this process's wandb run.

        Lightning leaves the run open until the interpreter exits, where wandb abandons it with
        its last records unwritten; finishing it here writes them (exit code 1 if it raised).
        """
        try:
            super()._run_subcommand(subcommand)
        except SIGTERMException:  # preempted: a wandb sweep requeues the run, which resumes
            finish_wandb_run(exit_code=143, preempted=True)
            raise
        except BaseException:
            finish_wandb_run(exit_code=1)
            raise
        finish_wandb_run(exit_code=0)

    def instantiate_trainer(self, **kwargs: Any) -> Trainer:
        """The trainer, with a rich progress bar unless the config disables or sets one."""
        config = self._get(self.config_init, "trainer", default={})
        callbacks = list(config.get("callbacks") or [])
        wants_bar = config.get("enable_progress_bar") is not False
        if wants_bar and not any(isinstance(c, ProgressBar) for c in callbacks):
            callbacks.append(RichProgressBar())
        if not any(isinstance(c, ValidationLedger) for c in callbacks):
            callbacks.append(ValidationLedger())
        return super().instantiate_trainer(callbacks=callbacks, **kwargs)

    def after_fit(self) -> None:
        """Test the weights ``--test_weights`` picks when asked; say where the record is."""
        if self.config.fit.get("test_after_fit"):
            config = self.config.fit
            weights = select_weights(
                self.trainer, config.test_weights, "test_weights", config.get("test_monitor")
            )
            # Lightning's callback connector sets Trainer.callbacks; the class does not declare it.
            for callback in self.trainer.callbacks:  # type: ignore[attr-defined]
                if isinstance(callback, ResultRecord):
                    callback.expect_test_weights(weights)
            self.trainer.test(self.model, datamodule=self.datamodule, ckpt_path=weights.checkpoint)
        log_dir = Path(self.trainer.log_dir or ".")  # a collective under DDP: every rank asks
        if self.trainer.is_global_zero:
            print(f"Result record: {log_dir / RECORD_NAME}")


def finish_wandb_run(exit_code: int, preempted: bool = False) -> None:
    """Finish the wandb run a ``WandbLogger`` started in this process, if there is one.

    A ``preempted`` run is marked so first: a wandb sweep's controller then hands its entry to
    an agent again (``robust-vit sweep run`` resumes it from its checkpoint).
    """
    import wandb

    if wandb.run is not None:
        if preempted:
            wandb.run.mark_preempting()
        wandb.finish(exit_code=exit_code)


def run_cli(args: ArgsType = None) -> RobustViTCLI:
    """Build and run the CLI (tests call this with an argument list)."""
    from datamodules import ImageClassificationDataModule
    from lightning_modules import ViTClassifier

    os.environ.setdefault("WANDB_MODE", "offline")
    return RobustViTCLI(
        ViTClassifier,
        ImageClassificationDataModule,
        subclass_mode_data=True,
        save_config_kwargs={"overwrite": True},
        seed_everything_default=0,
        auto_configure_optimizers=False,
        parser_class=RobustViTParser,
        args=args,
    )


def run(args: ArgsType = None) -> None:
    """Run a LightningCLI subcommand; a bad input, a fault or a lost rank ends in one line."""
    try:
        run_cli(args)
    except SIGTERMException as err:
        print(
            "robust-vit: stopped by SIGTERM; checkpoint callbacks with save_on_exception "
            "(experiments/base.yaml) saved one: resume with --ckpt_path "
            "runs/<name>/version_N/checkpoints/last.ckpt.",
            file=sys.stderr,
        )
        raise SystemExit(143) from err
    except TrainingFault as err:
        print(f"robust-vit: training stopped: {err}", file=sys.stderr)
        raise SystemExit(1) from err
    except Exception as err:
        if lost_process(err):
            print(
                f"robust-vit: a distributed process was lost, so every rank stopped ({err}). "
                "Resume with --ckpt_path runs/<name>/version_N/checkpoints/last.ckpt.",
                file=sys.stderr,
            )
            raise SystemExit(1) from err
        config_error = find_config_error(err)
        if config_error is None:
            raise
        print(f"robust-vit: error: {config_error}", file=sys.stderr)
        raise SystemExit(2) from err


LOST_PEER = (
    "Connection reset by peer",
    "Connection closed by peer",
    "NCCL communicator was aborted",
    "Socket Timeout",
)


def lost_process(err: BaseException) -> bool:
    """Whether ``err`` is a collective failing because another rank's process is gone."""
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()):
        return False
    return isinstance(err, dist.DistError) or any(text in str(err) for text in LOST_PEER)


def find_config_error(err: BaseException) -> ConfigError | None:
    """The :class:`ConfigError` behind ``err``, also when jsonargparse wrapped it."""
    seen: set[int] = set()
    stack: list[BaseException | None] = [err]
    while stack:
        current = stack.pop()
        if current is None or id(current) in seen:
            continue
        seen.add(id(current))
        if isinstance(current, ConfigError):
            return current
        stack += [current.__cause__, current.__context__]
    return None
