"""A protocol reports one test-time evaluation with one threat, or refuses before compute."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest

from callbacks import AdversarialEval, ProtocolRecord
from callbacks.protocol import model_card
from robust_vit.attacks import PGD
from robust_vit.errors import ConfigError
from robust_vit.threat import Threat


def suite(**kwargs: Any) -> AdversarialEval:
    return AdversarialEval(attacks=[PGD(eps=8 / 255, steps=2)], **kwargs)


def trainer(*callbacks: object) -> Any:
    return SimpleNamespace(callbacks=list(callbacks), ckpt_path=None, datamodule=None)


def test_one_evaluation_with_one_threat_is_the_protocols() -> None:
    protocol = ProtocolRecord(name="quick")
    protocol.setup(trainer(protocol, suite()), None, "test")  # type: ignore[arg-type]
    assert protocol.threat == Threat("linf", 8 / 255)


@pytest.mark.parametrize(
    ("evaluations", "message"),
    [
        ([], "the run has 0 such evaluations"),
        ([suite(section="autoattack")], "the run has 0 such evaluations"),
        ([suite(stages=["fit"])], "run at test"),
        ([suite(epsilons=[4 / 255, 8 / 255])], "linf@4/255, linf@8/255"),
    ],
)
def test_anything_else_is_refused(evaluations: list[AdversarialEval], message: str) -> None:
    protocol = ProtocolRecord(name="quick")
    with pytest.raises(ConfigError, match=message) as info:
        protocol.setup(trainer(protocol, *evaluations), None, "test")  # type: ignore[arg-type]
    assert info.value.field.startswith("trainer.callbacks.ProtocolRecord.section")


def test_the_card_reports_autoattack_when_it_ran() -> None:
    protocol = ProtocolRecord(name="robustbench_cifar10_linf", section="autoattack")
    protocol.threat = Threat("linf", 8 / 255)
    section = {
        "n": 4,
        "seed": 0,
        "clean": {"acc": 0.75},
        "attacks": {"autoattack-standard_linf": {"linf@8/255": {"acc": 0.5}}},
        "worst_case": {"linf@8/255": {"acc": 0.5}},
    }
    module = SimpleNamespace(hparams={"model_name": "vit_small_patch16_224", "weights": "w.pt"})
    card = model_card(protocol, section, module, trainer(), True)  # type: ignore[arg-type]
    assert card["clean_acc"] == "75.00" and card["autoattack_acc"] == "50.00"
    assert card["threat_model"] == "Linf" and card["eps"] == "8/255"
    assert card["weights"] == "w.pt" and card["number_of_examples"] == 4
