"""Every command the sweep plans expand to resolves through the real CLI (``--print_config``)."""

from __future__ import annotations

import pytest
import yaml

from robust_vit.cli import main
from robust_vit.sweeps import PLANS_DIR, expand, load_plan
from tests.conftest import REPO

PLANS = sorted(p.stem for p in (REPO / PLANS_DIR).glob("*.yaml"))


@pytest.mark.parametrize("name", PLANS)
def test_every_planned_command_resolves(name: str, monkeypatch: pytest.MonkeyPatch,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.chdir(REPO)  # the plans name configs relative to the repository root
    for run in expand(load_plan(name, {"threads": 1})):
        with pytest.raises(SystemExit) as exit_info:
            main([*run.argv[1:], "--print_config"])
        assert exit_info.value.code == 0, run.name
        config = yaml.safe_load(capsys.readouterr().out)
        assert (config["name"], config["group"], config["job_type"]) == (
            run.name, name, run.method)
        assert config["seed_everything"] == run.seed
        assert config["model"]["weights"] == str(run.weights)
        assert config["trainer"]["enable_progress_bar"] is False
