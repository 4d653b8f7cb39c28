"""An evaluation protocol's name in the record, and the model card it produces."""

from __future__ import annotations

from datetime import date
from importlib import metadata
from typing import Any

import lightning as L
from lightning.pytorch.utilities import rank_zero_info, rank_zero_warn

from callbacks.adversarial import AdversarialEval
from callbacks.results import record_path
from robust_vit.errors import ConfigError
from robust_vit.records import read_record, update_record, write_json_atomic
from robust_vit.threat import Threat, radius_text

CARD_NAME = "model_info.json"
NORM_NAMES = {"linf": "Linf", "l2": "L2"}


class ProtocolRecord(L.Callback):
    """Name the protocol in the run's record and write a RobustBench-style model card.

    A protocol preset (``experiments/protocols/``) fixes the examples, seeds, attacks and
    versions of one :class:`~callbacks.AdversarialEval`; this callback, after it in the list,
    checks at setup that the evaluation is there with one threat, and after testing writes the
    record's ``protocol`` section and ``model_info.json`` beside the record: dataset,
    architecture, threat model, eps, clean and AutoAttack (or worst-case) accuracy in percent on
    the evaluated examples, their number, the seed, the date and the framework's version.

    Args:
        name: the preset's name, written in the record and the card.
        description: what the preset fixes, in words.
        section: the record section of the AdversarialEval that the card reports.
        versions: package -> version the preset was written for; a different installed version
            is warned about and recorded (``versions_match: false``), so that runs are compared
            knowingly.
    """

    def __init__(
        self,
        name: str,
        description: str = "",
        section: str = "adversarial",
        versions: dict[str, str] | None = None,
    ) -> None:
        self.name, self.description, self.section = name, description, section
        self.versions = dict(versions or {})

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        """Fail before compute unless one test AdversarialEval of ``section`` has one threat."""
        self.threat = self._threat(trainer)

    def _threat(self, trainer: L.Trainer) -> Threat:
        field = f"trainer.callbacks.ProtocolRecord.section ({self.name})"
        found = [
            cb
            for cb in trainer.callbacks  # type: ignore[attr-defined]
            if isinstance(cb, AdversarialEval) and cb.section == self.section
        ]
        if len(found) != 1 or "test" not in found[0].stages:
            raise ConfigError(
                field,
                f"the protocol reports the AdversarialEval whose section is {self.section!r}, "
                f"run at test; the run has {len(found)} such evaluations. Add the evaluation or "
                "set section to the one the run has.",
            )
        threats = list(found[0].suites)
        if len(threats) != 1:
            raise ConfigError(
                field,
                f"a model card reports one threat model; section {self.section!r} runs "
                f"{', '.join(t.key for t in threats)}. Use one preset per threat.",
            )
        return threats[0]

    def on_test_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """Write the record's ``protocol`` section and the model card beside the record."""
        path = record_path(trainer)
        if not trainer.is_global_zero:
            return
        mismatched = {
            name: {"preset": want, "installed": installed_version(name)}
            for name, want in self.versions.items()
            if installed_version(name) != want
        }
        for name, versions in mismatched.items():
            rank_zero_warn(
                f"protocol {self.name}: {name} {versions['installed']} is installed, the preset "
                f"was written for {versions['preset']}; the record says so."
            )
        section = (read_record(path).get(self.section) or {}).get("test") or {}
        card = model_card(self, section, pl_module, trainer, not mismatched)
        update_record(
            path,
            "protocol",
            {
                "name": self.name,
                "description": self.description,
                "section": self.section,
                "threat": self.threat.key,
                "versions": self.versions,
                "versions_match": not mismatched,
                "mismatched_versions": mismatched,
                "model_card": card,
            },
        )
        write_json_atomic(path.parent / CARD_NAME, card)
        rank_zero_info(f"Protocol {self.name}: model card written to {path.parent / CARD_NAME}")


def installed_version(package: str) -> str:
    """The installed version of ``package``, or ``not installed``."""
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "not installed"


def percent(acc: float | None) -> str | None:
    """An accuracy as RobustBench writes it: percent with two decimals."""
    return None if acc is None else f"{100 * acc:.2f}"


def model_card(
    protocol: ProtocolRecord,
    section: dict[str, Any],
    pl_module: L.LightningModule,
    trainer: L.Trainer,
    versions_match: bool,
) -> dict[str, Any]:
    """The RobustBench-style model information of one protocol run."""
    threat = protocol.threat
    attacks = {
        name: by_threat[threat.key]["acc"]
        for name, by_threat in (section.get("attacks") or {}).items()
        if threat.key in by_threat
    }
    autoattack = [acc for name, acc in attacks.items() if name.startswith("autoattack")]
    worst = (section.get("worst_case") or {}).get(threat.key, {}).get("acc")
    hparams = getattr(pl_module, "hparams", {})
    datamodule = getattr(trainer, "datamodule", None)
    return {
        "protocol": protocol.name,
        "dataset": type(datamodule).__name__ if datamodule is not None else None,
        "architecture": hparams.get("model_name"),
        "weights": trainer.ckpt_path or hparams.get("weights") or "timm pretrained",
        "threat_model": NORM_NAMES[threat.norm],
        "eps": radius_text(threat.eps),
        "clean_acc": percent((section.get("clean") or {}).get("acc")),
        "autoattack_acc": percent(autoattack[0]) if autoattack else None,
        "worst_case_acc": percent(worst),
        "attacks": {name: percent(acc) for name, acc in attacks.items()},
        "number_of_examples": section.get("n"),
        "seed": section.get("seed"),
        "date": date.today().isoformat(),
        "framework": f"robust-vit {installed_version('robust-vit')}",
        "versions_match": versions_match,
    }
