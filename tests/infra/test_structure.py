"""Structural requirements of issues 6 and 11 on the real infra/ (pycep-parser)."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml

from shared.core.settings import required_setting_names
from tests.infra.bicep import INFRA_DIR, parse, render
from tests.infra.checks import STRUCTURAL_CHECKS, Problems, app_settings, check_required_settings
from tests.infra.deploy_checks import DEPLOY_CHECKS
from tests.infra.provision_checks import PROVISION_CHECKS
from tests.infra.telemetry_checks import TELEMETRY_CHECKS

ALL_CHECKS = {**STRUCTURAL_CHECKS, **DEPLOY_CHECKS, **PROVISION_CHECKS, **TELEMETRY_CHECKS}


@pytest.mark.parametrize("check", ALL_CHECKS.values(), ids=list(ALL_CHECKS))
def test_requirement_holds(check: Callable[[Path], Problems]) -> None:
    assert check(INFRA_DIR) == []


def test_every_setting_the_app_requires_is_set() -> None:
    required = required_setting_names()
    assert "AZURE_OPENAI_ENDPOINT" in required
    assert check_required_settings(INFRA_DIR, required) == []


def test_required_settings_check_names_a_missing_setting() -> None:
    problems = check_required_settings(INFRA_DIR, frozenset({"NOT_SET_BY_BICEP"}))
    assert any("NOT_SET_BY_BICEP" in p for p in problems)


def test_aoai_deployments_maps_aliases_to_the_three_deployments() -> None:
    infra = parse()
    settings = app_settings(infra)
    assert render(settings["AOAI_DEPLOYMENTS"]) == "string(aoaiDeployments)"
    mapping = render(infra.main.variables["aoaiDeployments"])
    for output in ("chatDeploymentName", "embeddingDeploymentName", "batchDeploymentName"):
        assert f"openAi.outputs.{output}" in mapping


def test_main_outputs_are_named_like_the_settings() -> None:
    outputs = parse().main.outputs
    assert all(re.fullmatch(r"[A-Z][A-Z0-9_]*", name) for name in outputs)
    for name in (
        "AZURE_OPENAI_ENDPOINT",
        "COSMOS_ENDPOINT",
        "COSMOS_DATABASE",
        "CHAT_DEPLOYMENT",
        "EMBEDDING_DEPLOYMENT",
        "BATCH_DEPLOYMENT",
        "AZURE_FUNCTION_APP_NAME",
        "AZURE_RESOURCE_GROUP",
    ):
        assert name in outputs


def test_modules_follow_the_house_conventions() -> None:
    for path, bicep in parse().files.items():
        if not path.startswith("modules/"):
            continue
        params = list(bicep.params)
        assert params[:3] == ["name", "location", "tags"], path
        assert all(re.fullmatch(r"[a-z][A-Za-z0-9]*", name) for name in bicep.outputs), path


def test_main_uses_azd_conventions() -> None:
    main = parse().main
    for name in ("environmentName", "location", "principalId"):
        assert name in main.params
    parameters = json.loads((INFRA_DIR / "main.parameters.json").read_text())["parameters"]
    assert parameters["environmentName"]["value"] == "${AZURE_ENV_NAME}"
    assert parameters["location"]["value"] == "${AZURE_LOCATION}"
    assert parameters["principalId"]["value"] == "${AZURE_PRINCIPAL_ID}"
    assert set(parameters) <= set(main.params)
    service = yaml.safe_load((INFRA_DIR.parent / "azure.yaml").read_text())["services"]["api"]
    assert service["host"] == "function"
    assert service["language"] == "python"
