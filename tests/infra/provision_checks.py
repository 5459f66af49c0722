"""Structural checks of issue 20: `azd up` succeeds for a new subscription and keeps succeeding.

Same shape as `deploy_checks.py`: each takes an infra directory and returns its problems, so
`test_mutations.py` shows each one failing on a copy with the fix taken out.
"""

from __future__ import annotations

from pathlib import Path

import yaml

from shared.core.settings import DEFAULT_API_VERSION
from tests.infra.bicep import parse, render
from tests.infra.checks import MAIN_FILE, Checks, Problems, _expect, _passes, app_settings
from tests.infra.deploy_checks import OPENAI_FILE, azd_variable, parameters_json

PROVISION_CHECKS = Checks()

APP = "modules/function-app.bicep"
VAULT = "modules/keyvault.bicep"
ALERTS = "modules/alerts.bicep"

# main.bicep parameter -> the azd variable the preprovision hook generates once for it.
GENERATED_SECRETS = {
    "userHashSecret": "USER_HASH_SECRET",
    "teamKeyHashSecret": "TEAM_KEY_HASH_SECRET",
}


def _decorators(root: Path, name: str) -> dict[str, object]:
    param = parse(root).main.params.get(name, {})
    return {d["type"]: d.get("argument") for d in param.get("decorators", [])}


@PROVISION_CHECKS.add
def check_preprovision_hook(root: Path) -> Problems:
    """azure.yaml runs the preprovision hook in sh and pwsh, and both scripts exist."""
    problems: Problems = []
    config = yaml.safe_load((root.parent / "azure.yaml").read_text())
    hook = (config.get("hooks") or {}).get("preprovision") or {}
    for os_name, shell, script in (
        ("posix", "sh", "infra/hooks/preprovision.sh"),
        ("windows", "pwsh", "infra/hooks/preprovision.ps1"),
    ):
        entry = hook.get(os_name) or {}
        _expect(
            problems,
            entry.get("shell") == shell
            and entry.get("run") == f"./{script}"
            and entry.get("continueOnError") is False,
            f"azure.yaml: preprovision.{os_name} must run ./{script} with shell {shell} "
            "and stop the provision on failure",
        )
        _expect(problems, (root.parent / script).is_file(), f"{script} is missing")
    _expect(problems, (root / "hooks" / "preprovision.py").is_file(), "preprovision.py is missing")
    return problems


@PROVISION_CHECKS.add
def check_user_hash_secret(root: Path) -> Problems:
    """USER_HASH_SECRET and TEAM_KEY_HASH_SECRET always reach Key Vault (and the app's role
    on each) from the azd environment, where the hook generated them once: no reference left
    unresolved."""
    infra, problems = parse(root), []
    secrets = infra.resources("Microsoft.KeyVault/vaults/secrets")
    readers = [
        r for r in infra.resources("Microsoft.Authorization/roleAssignments") if r.file == VAULT
    ]
    _expect(
        problems,
        len(secrets) == len(GENERATED_SECRETS)
        and all(s.condition is None for s in secrets)
        and all(r.condition is None for r in readers),
        "the HMAC secrets and their role assignments must always be deployed (the app "
        "settings always refer to the secrets)",
    )
    for param, variable in GENERATED_SECRETS.items():
        _expect(
            problems,
            infra.main.params.get(param, {}).get("default", "") is None
            and _decorators(root, param).get("min_length") == 32,
            f"{param} must be required with @minLength(32): an empty secret fails the "
            "deployment, not the app's start",
        )
        _expect(
            problems,
            azd_variable(parameters_json(root).get(param, "")) == (variable, None),
            f"main.parameters.json must map {param} to ${{{variable}}} (no default)",
        )
    return problems


@PROVISION_CHECKS.add
def check_budget_start(root: Path) -> Problems:
    """The budget's start date is an azd variable set once, never utcNow()."""
    infra, problems = parse(root), []
    _expect(problems, "utcNow" not in infra.text(), "no utcNow(): a budget start cannot move")
    alerts = infra.files[ALERTS].params.get("budgetStartDate", {})
    _expect(
        problems,
        bool(alerts) and alerts.get("default") is None,
        "alerts: budgetStartDate required",
    )
    _expect(
        problems,
        _passes(infra, ALERTS, "budgetStartDate") == "budgetStartDate"
        and infra.main.params.get("budgetStartDate", {}).get("default", "") is None,
        "main.bicep must pass its required budgetStartDate parameter to alerts",
    )
    _expect(
        problems,
        azd_variable(parameters_json(root).get("budgetStartDate", ""))
        == ("BUDGET_START_DATE", None),
        "main.parameters.json must map budgetStartDate to ${BUDGET_START_DATE} (no default)",
    )
    return problems


@PROVISION_CHECKS.add
def check_flex_site_config(root: Path) -> Problems:
    """No ftpsState on the Flex Consumption site (ARM error 51021); FTP and SCM basic auth
    are off through basicPublishingCredentialsPolicies."""
    infra, problems = parse(root), []
    site = infra.one("Microsoft.Web/sites")
    _expect(
        problems,
        "ftpsState" not in site.properties.get("siteConfig", {}),
        "siteConfig.ftpsState is refused on Flex Consumption in some regions",
    )
    policies = {
        p.body.get("name"): p.properties.get("allow")
        for p in infra.resources("Microsoft.Web/sites/basicPublishingCredentialsPolicies")
    }
    _expect(problems, policies == {"ftp": False, "scm": False}, f"FTP/SCM basic auth: {policies}")
    return problems


@PROVISION_CHECKS.add
def check_batch_role_ordering(root: Path) -> Problems:
    """The Batch role's assignment waits for the private endpoint (after the three model
    deployments), giving the new role definition minutes to replicate."""
    infra, problems = parse(root), []
    role = infra.one("Microsoft.Authorization/roleDefinitions")
    (assignment,) = [
        r
        for r in infra.resources("Microsoft.Authorization/roleAssignments")
        if render(r.properties.get("roleDefinitionId")) == f"{role.name}.id"
    ] or [None]
    endpoint = [
        r
        for r in infra.resources("Microsoft.Network/privateEndpoints")
        if r.file == OPENAI_FILE and r.name == "privateEndpoint"
    ]
    waits = [render(d) for d in (assignment.body.get("dependsOn") or [])] if assignment else []
    _expect(
        problems,
        bool(endpoint) and "privateEndpoint" in waits,
        f"the Batch role assignment must dependsOn privateEndpoint (waits: {waits})",
    )
    _expect(
        problems,
        bool(endpoint)
        and "batchDeployment" in [render(d) for d in (endpoint[0].body.get("dependsOn") or [])],
        "the Azure OpenAI private endpoint must wait for the last model deployment",
    )
    return problems


@PROVISION_CHECKS.add
def check_job_memory_budget(root: Path) -> Problems:
    """The app's job memory budget follows the instance's memory, from the same parameter."""
    infra, problems = parse(root), []
    expected = "string(divide(instanceMemoryMB, 4))"
    _expect(
        problems,
        render(app_settings(infra).get("JOB_MEMORY_BUDGET_MIB")) == expected,
        f"JOB_MEMORY_BUDGET_MIB must be {expected}",
    )
    _expect(
        problems,
        _passes(infra, "modules/function-app.bicep", "instanceMemoryMB") == "instanceMemoryMB",
        "the plan's instance memory must be instanceMemoryMB",
    )
    return problems


@PROVISION_CHECKS.add
def check_batch_capacity(root: Path) -> Problems:
    """A realistic enqueued-token quota, told to the app from the same parameter."""
    infra, problems = parse(root), []
    capacity = infra.main.param_default("batchCapacity")
    _expect(
        problems,
        isinstance(capacity, int) and 1000 <= capacity <= 50000,
        f"batchCapacity {capacity}: 1M-50M enqueued tokens (pay-as-you-go GlobalBatch quota 50M)",
    )
    expected = "string(multiply(batchCapacity, 1000))"
    _expect(
        problems,
        render(app_settings(infra).get("BATCH_ENQUEUED_TOKENS")) == expected
        and render(infra.main.outputs.get("BATCH_ENQUEUED_TOKENS")) == expected,
        f"BATCH_ENQUEUED_TOKENS (setting and output) must be {expected}",
    )
    _expect(
        problems,
        _passes(infra, OPENAI_FILE, "batchCapacity") == "batchCapacity",
        "the batch deployment's capacity must be batchCapacity",
    )
    return problems


@PROVISION_CHECKS.add
def check_api_version(root: Path) -> Problems:
    """The api-version the app sends comes from one parameter (AZURE_OPENAI_API_VERSION)."""
    infra, problems = parse(root), []
    default = infra.main.param_default("openAiApiVersion")
    _expect(
        problems,
        render(app_settings(infra).get("AZURE_OPENAI_API_VERSION")) == "openAiApiVersion"
        and render(infra.main.outputs.get("AZURE_OPENAI_API_VERSION")) == "openAiApiVersion",
        "AZURE_OPENAI_API_VERSION (setting and output) must be the openAiApiVersion parameter",
    )
    _expect(
        problems,
        azd_variable(parameters_json(root).get("openAiApiVersion", ""))
        == ("AZURE_OPENAI_API_VERSION", default),
        "main.parameters.json must map openAiApiVersion to "
        f"${{AZURE_OPENAI_API_VERSION={default}}}",
    )
    _expect(
        problems,
        (root / MAIN_FILE).read_text().count(f"'{default}'") == 1,
        f"the api-version {default} must be written once, as the parameter's default",
    )
    _expect(
        problems,
        str(default) >= "2025-04-01" or str(default) == "v1",
        f"api-version {default} predates the reasoning models the defaults deploy",
    )
    # Locally (and wherever the setting is unset) the app sends its own default: the same
    # version, so the simulator's checks of it mean what Azure's would.
    _expect(
        problems,
        default == DEFAULT_API_VERSION,
        f"the app's DEFAULT_API_VERSION {DEFAULT_API_VERSION} is not openAiApiVersion {default}",
    )
    return problems
