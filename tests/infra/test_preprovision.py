"""The preprovision hook, offline: saved answers of `az cognitiveservices model list`, and
stand-in `az` / `azd` scripts on PATH that record their calls (never Azure)."""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.infra.bicep import INFRA_DIR

HOOKS = INFRA_DIR / "hooks"
FIXTURES = Path(__file__).parent / "fixtures"
TODAY = dt.date(2026, 12, 6)

sys.path.insert(0, str(HOOKS))
import preprovision  # noqa: E402


def answer(name: str) -> list[dict[str, Any]]:
    data: list[dict[str, Any]] = json.loads((FIXTURES / f"models-{name}.json").read_text())
    return data


def default_choices(**env: str) -> list[preprovision.Choice]:
    return preprovision.choices(env, preprovision.azd_defaults())


def test_the_defaults_are_deployable_in_a_good_region() -> None:
    for choice in default_choices():
        assert preprovision.decide(answer("good"), choice, TODAY) == []


def test_a_version_closed_to_new_customers_names_a_replacement() -> None:
    (chat, _, _) = default_choices()
    problems = preprovision.decide(answer("deprecated-version"), chat, TODAY)
    assert problems[0] == (
        "chat: gpt-5.4 2026-03-05 GlobalStandard: closed to new deployments (new customers) "
        "since 2026-12-01."
    )
    assert (
        "azd env set CHAT_MODEL_NAME gpt-5.5 && azd env set CHAT_MODEL_VERSION 2026-04-24"
        in (problems[1])
    )


def test_the_old_default_is_refused_for_a_new_customer() -> None:
    (chat, _, _) = default_choices(CHAT_MODEL_NAME="gpt-5.1", CHAT_MODEL_VERSION="2025-11-13")
    problems = preprovision.decide(answer("good"), chat, TODAY)
    assert "since 2026-11-13" in problems[0]
    assert "CHAT_MODEL_NAME gpt-5.4" in problems[1]


def test_a_missing_sku_names_a_model_that_offers_it() -> None:
    (_, embedding, batch) = default_choices()
    problems = preprovision.decide(answer("missing-sku"), batch, TODAY)
    assert problems[0] == (
        "batch: gpt-5.4 2026-03-05 GlobalBatch: SKU GlobalBatch is not offered "
        "(offered: GlobalStandard)."
    )
    assert "BATCH_MODEL_NAME gpt-5.5" in problems[1]
    assert preprovision.decide(answer("missing-sku"), embedding, TODAY) == []


def test_an_unknown_version_lists_what_the_region_offers() -> None:
    (chat, _, _) = default_choices(CHAT_MODEL_VERSION="2030-01-01")
    problems = preprovision.decide(answer("good"), chat, TODAY)
    assert problems[0] == "chat: gpt-5.4 has no version 2030-01-01 here (offered: 2026-03-05)."


def test_an_empty_version_takes_the_default_version() -> None:
    (chat, _, _) = default_choices(CHAT_MODEL_VERSION="")
    assert chat.version == ""
    assert preprovision.decide(answer("good"), chat, TODAY) == []


def test_defaults_come_from_main_parameters_json() -> None:
    defaults = preprovision.azd_defaults()
    assert defaults["CHAT_MODEL_NAME"] == "gpt-5.4"
    assert defaults["BATCH_SKU"] == "GlobalBatch"


# --- the hook as azd runs it, with stand-in CLIs ------------------------------------------


def fake_cli(bin_dir: Path, name: str, body: str) -> None:
    path = bin_dir / name
    path.write_text(f"#!/bin/sh\n{body}\n")
    path.chmod(0o755)


@pytest.fixture
def tools(tmp_path: Path) -> Path:
    """A PATH with sh essentials, python3, and stand-in `az` and `azd` that log their calls."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("cat", "dirname", "sh"):
        found = shutil.which(tool)
        assert found
        (bin_dir / tool).symlink_to(found)
    (bin_dir / "python3").symlink_to(sys.executable)
    log = tmp_path / "calls.log"
    fake_cli(bin_dir, "azd", f'echo "azd $*" >> {log}')
    fake_cli(bin_dir, "az", f'echo "az $*" >> {log}\ncat "$FAKE_AZ_ANSWER"')
    return bin_dir


def run_hook(bin_dir: Path, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["/bin/sh", str(HOOKS / "preprovision.sh")],
        env={"PATH": str(bin_dir), **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def calls(bin_dir: Path) -> list[str]:
    log = bin_dir.parent / "calls.log"
    return log.read_text().splitlines() if log.exists() else []


def test_without_az_the_hook_says_what_to_install(tools: Path) -> None:
    (tools / "az").unlink()
    proc = run_hook(tools, AZURE_LOCATION="swedencentral")
    assert proc.returncode == 1
    assert "the Azure CLI (az) is not on PATH" in proc.stderr
    assert "https://learn.microsoft.com/cli/azure/install-azure-cli" in proc.stderr
    assert calls(tools) == []  # nothing generated, nothing asked


def test_a_new_environment_gets_its_secret_and_budget_start_once(tools: Path) -> None:
    proc = run_hook(
        tools,
        AZURE_ENV_NAME="dev",
        AZURE_LOCATION="swedencentral",
        FAKE_AZ_ANSWER=str(FIXTURES / "models-good.json"),
    )
    assert proc.returncode == 0, proc.stderr
    made = calls(tools)
    secret = [c for c in made if c.startswith("azd env set USER_HASH_SECRET ")]
    assert len(secret) == 1
    assert secret[0].endswith(" --environment dev")
    assert len(secret[0].split()[4]) >= 32
    team = [c for c in made if c.startswith("azd env set TEAM_KEY_HASH_SECRET ")]
    assert len(team) == 1
    assert team[0].endswith(" --environment dev")
    assert len(team[0].split()[4]) >= 32
    assert team[0].split()[4] != secret[0].split()[4]
    first = dt.datetime.now(dt.UTC).date().replace(day=1).isoformat()
    assert f"azd env set BUDGET_START_DATE {first} --environment dev" in made
    assert "az cognitiveservices model list --location swedencentral --output json" in made


def stored(budget_start: str) -> dict[str, str]:
    """What an azd environment holds after its first provision."""
    return {
        "USER_HASH_SECRET": "x" * 64,
        "TEAM_KEY_HASH_SECRET": "y" * 64,
        "BUDGET_START_DATE": budget_start,
    }


def test_a_reprovision_keeps_the_stored_values(tools: Path) -> None:
    proc = run_hook(
        tools,
        AZURE_LOCATION="swedencentral",
        **stored("2026-11-01"),
        FAKE_AZ_ANSWER=str(FIXTURES / "models-good.json"),
    )
    assert proc.returncode == 0, proc.stderr
    assert [c for c in calls(tools) if c.startswith("azd")] == []


def test_an_environment_from_before_teams_gets_only_the_team_key_secret(tools: Path) -> None:
    older = {k: v for k, v in stored("2026-11-01").items() if k != "TEAM_KEY_HASH_SECRET"}
    proc = run_hook(
        tools,
        AZURE_LOCATION="swedencentral",
        **older,
        FAKE_AZ_ANSWER=str(FIXTURES / "models-good.json"),
    )
    assert proc.returncode == 0, proc.stderr
    made = [c for c in calls(tools) if c.startswith("azd")]
    assert len(made) == 1
    assert made[0].startswith("azd env set TEAM_KEY_HASH_SECRET ")


def test_an_undeployable_choice_stops_the_provision(tools: Path) -> None:
    proc = run_hook(
        tools,
        AZURE_LOCATION="eastus2",
        **stored("2026-12-01"),
        FAKE_AZ_ANSWER=str(FIXTURES / "models-missing-sku.json"),
    )
    assert proc.returncode == 1
    assert "preprovision [eastus2] batch: gpt-5.4 2026-03-05 GlobalBatch: SKU GlobalBatch" in (
        proc.stderr
    )
    assert "azd env set BATCH_MODEL_NAME gpt-5.5" in proc.stderr


def test_the_spillover_region_is_checked_without_batch(tools: Path) -> None:
    proc = run_hook(
        tools,
        AZURE_LOCATION="swedencentral",
        SPILLOVER_OPENAI="true",
        SPILLOVER_OPENAI_LOCATION="eastus2",
        **stored("2026-12-01"),
        FAKE_AZ_ANSWER=str(FIXTURES / "models-missing-sku.json"),
    )
    # swedencentral's batch choice fails; eastus2 (spill-over: chat and embeddings) passes.
    assert proc.returncode == 1
    assert "[swedencentral] batch" in proc.stderr
    assert "[eastus2]" not in proc.stderr
    assert sum("cognitiveservices model list" in c for c in calls(tools)) == 2


def test_the_powershell_hook_checks_the_same_tools() -> None:
    script = (HOOKS / "preprovision.ps1").read_text()
    assert "Get-Command az" in script
    assert "install-azure-cli" in script
    assert "preprovision.py" in script
    assert os.access(HOOKS / "preprovision.sh", os.X_OK)
