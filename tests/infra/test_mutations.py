"""A copy of infra/ with one requirement broken fails the same structural checks."""

from __future__ import annotations

import datetime as dt
import json
import re
import shutil
from pathlib import Path

import pytest

from shared.core.settings import required_setting_names
from tests.infra.bicep import INFRA_DIR
from tests.infra.checks import STRUCTURAL_CHECKS, check_required_settings
from tests.infra.deploy_checks import DEPLOY_CHECKS, check_models
from tests.infra.provision_checks import PROVISION_CHECKS
from tests.infra.telemetry_checks import TELEMETRY_CHECKS
from tests.infra.test_syntax import syntax_errors

ALL_CHECKS = {**STRUCTURAL_CHECKS, **DEPLOY_CHECKS, **PROVISION_CHECKS, **TELEMETRY_CHECKS}

ZONE_GROUP = re.compile(r"resource dnsZoneGroup .*?\n}\n", re.DOTALL)
OPENAI_ENDPOINT_WAIT = re.compile(
    r"(resource privateEndpoint .*?\n  \})\n  dependsOn: \[\n    batchDeployment\n  \]\n", re.DOTALL
)
DIAGNOSTICS_WAIT = re.compile(
    r"(resource diagnostics .*?\n  \})\n  dependsOn: \[\n    batchDeployment\n  \]\n", re.DOTALL
)
APP_SQL_ROLE_WAIT = re.compile(
    r"(resource appDataContributor .*?\n  \})\n  dependsOn: \[\n.*?\n  \]\n", re.DOTALL
)
QUEUE_ENDPOINT = re.compile(
    r"resource queuePrivateEndpoint .*?\n}\n\nresource queueDnsZoneGroup .*?\n}\n", re.DOTALL
)

SPILLOVER_ENDPOINT = re.compile(
    r"resource privateEndpoint .*?\n}\n\nresource dnsZoneGroup .*?\n}\n", re.DOTALL
)
SPILLOVER_ROLE = re.compile(r"resource appOpenAiUser .*?\n}\n", re.DOTALL)

# id: (file, pattern, replacement, check expected to fail)
MUTATIONS = {
    "openai-local-auth-on": (
        "modules/openai.bicep",
        "disableLocalAuth: true",
        "disableLocalAuth: false",
        "openai",
    ),
    "cosmos-dns-zone-group-removed": ("modules/cosmos.bicep", ZONE_GROUP, "", "private_endpoints"),
    "openai-user-wrong-role-guid": (
        "modules/openai.bicep",
        "5e0bd9bd-7b93-4f28-af87-19fc36ad61bd",
        "a97b65f3-24c7-4388-baec-2e87135dc908",
        "role_assignments",
    ),
    "storage-queue-endpoint-removed": (
        "modules/storage.bicep",
        QUEUE_ENDPOINT,
        "",
        "private_endpoints",
    ),
    "runtime-not-python": (
        "modules/function-app.bicep",
        "name: 'python'",
        "name: 'custom'",
        "function_app",
    ),
    "cosmos-public-access-on": (
        "modules/cosmos.bicep",
        "publicNetworkAccess: 'Disabled'",
        "publicNetworkAccess: 'Enabled'",
        "cosmos",
    ),
    "storage-shared-key-on": (
        "modules/storage.bicep",
        "allowSharedKeyAccess: false",
        "allowSharedKeyAccess: true",
        "storage",
    ),
    "user-role-ungated": (
        "modules/storage.bicep",
        "= if (grantUserDataAccess && !empty(userPrincipalId)) {\n  name: guid(storage.id, "
        "userPrincipalId, roles.storageBlobDataOwner)",
        "= if (!empty(userPrincipalId)) {\n  name: guid(storage.id, "
        "userPrincipalId, roles.storageBlobDataOwner)",
        "role_assignments",
    ),
    "storage-key-in-a-setting": (
        "main.bicep",
        "COSMOS_DATABASE: cosmos.outputs.databaseName",
        "COSMOS_DATABASE: cosmos.outputs.databaseName\n"
        "  STORAGE: 'DefaultEndpointsProtocol=https;AccountKey=${deployerIpAddress}'",
        "no_secrets",
    ),
    "openai-endpoint-in-the-openai-region": (
        "modules/openai.bicep",
        "  location: privateEndpointLocation\n",
        "  location: location\n",
        "private_endpoints",
    ),
    "app-subnet-not-delegated": (
        "modules/network.bicep",
        "serviceName: 'Microsoft.App/environments'",
        "serviceName: 'Microsoft.Web/serverFarms'",
        "network",
    ),
    "queue-dns-zone-missing": (
        "modules/private-dns.bicep",
        "  'privatelink.queue.${environment().suffixes.storage}'\n",
        "",
        "private_dns",
    ),
    "blob-endpoint-in-the-queue-zone": (
        "main.bicep",
        "blobZoneId: privateDns.outputs.blobZoneId",
        "blobZoneId: privateDns.outputs.queueZoneId",
        "private_endpoints",
    ),
    "app-insights-local-auth-on": (
        "modules/monitoring.bicep",
        "DisableLocalAuth: true",
        "DisableLocalAuth: false",
        "no_secrets",
    ),
    "poison-queue-missing": (
        "modules/storage.bicep",
        "  '${classificationQueueName}-poison'\n",
        "",
        "storage",
    ),
    "flex-unsupported-worker-runtime-setting": (
        "main.bicep",
        "  PYTHON_ENABLE_INIT_INDEXING: '1'\n",
        "  PYTHON_ENABLE_INIT_INDEXING: '1'\n  FUNCTIONS_WORKER_RUNTIME: 'python'\n",
        "function_app",
    ),
    # Issue 11: what only fails when ARM deploys, and what a deployer must be able to change.
    "storage-public-access-on": (
        "modules/storage.bicep",
        "publicNetworkAccess: 'Disabled'",
        "publicNetworkAccess: 'Enabled'",
        "storage",
    ),
    "storage-bypass-azure-services": (
        "modules/storage.bicep",
        "bypass: 'None'",
        "bypass: 'AzureServices'",
        "storage",
    ),
    "old-chat-model-version": (
        "main.bicep",
        "param chatModelVersion string = '2026-03-05'",
        "param chatModelVersion string = '2024-08-06'",
        "models",
    ),
    "unknown-batch-model-version": (
        "main.bicep",
        "param batchModelVersion string = '2026-03-05'",
        "param batchModelVersion string = '2024-01-01'",
        "models",
    ),
    "chat-sku-hard-coded": (
        "modules/openai.bicep",
        "    name: chatSkuName\n",
        "    name: 'GlobalStandard'\n",
        "models",
    ),
    "openai-endpoint-does-not-wait": (
        "modules/openai.bicep",
        OPENAI_ENDPOINT_WAIT,
        "\\1\n",
        "openai_ordering",
    ),
    "openai-diagnostics-do-not-wait": (
        "modules/openai.bicep",
        DIAGNOSTICS_WAIT,
        "\\1\n",
        "openai_ordering",
    ),
    "cosmos-role-does-not-wait-for-containers": (
        "modules/cosmos.bicep",
        APP_SQL_ROLE_WAIT,
        "\\1\n",
        "cosmos_ordering",
    ),
    "cosmos-roles-in-parallel": (
        "modules/cosmos.bicep",
        "    resultsContainer\n    appDataContributor\n",
        "    resultsContainer\n",
        "cosmos_ordering",
    ),
    "principal-type-hard-coded": (
        "modules/storage.bicep",
        "    principalType: userPrincipalType\n",
        "    principalType: 'User'\n",
        "principal_type",
    ),
    "principal-type-not-passed": (
        "main.bicep",
        "    userPrincipalType: principalType\n    grantUserDataAccess: grantUserDataAccess\n"
        "    chatDeploymentName",
        "    grantUserDataAccess: grantUserDataAccess\n    chatDeploymentName",
        "principal_type",
    ),
    "batch-role-wildcard": (
        "modules/openai.bicep",
        "'Microsoft.CognitiveServices/accounts/OpenAI/batches/read'",
        "'Microsoft.CognitiveServices/accounts/OpenAI/*'",
        "batch_role",
    ),
    "batch-role-fine-tuning": (
        "modules/openai.bicep",
        "'Microsoft.CognitiveServices/accounts/OpenAI/batches/read'",
        "'Microsoft.CognitiveServices/accounts/OpenAI/fine-tunes/write'",
        "batch_role",
    ),
    "batch-role-for-the-user": (
        "modules/openai.bicep",
        "guid(account.id, appPrincipalId, batchFilesRole.id)",
        "guid(account.id, userPrincipalId, batchFilesRole.id)",
        "role_assignments",
    ),
    "vector-capability-missing": (
        "modules/cosmos.bicep",
        "      {\n        name: 'EnableNoSQLVectorSearch'\n      }\n",
        "",
        "vector_search",
    ),
    "embedding-in-the-regular-index": (
        "modules/cosmos.bicep",
        "          {\n            path: '/embedding/*'\n          }\n",
        "",
        "vector_search",
    ),
    "vector-index-flat": (  # flat indexes at most 505 dimensions: the container write fails
        "modules/cosmos.bicep",
        "type: 'quantizedFlat'",
        "type: 'flat'",
        "vector_search",
    ),
    "vector-dimensions-hard-coded": (
        "modules/cosmos.bicep",
        "dimensions: embeddingDimensions",
        "dimensions: 3072",
        "vector_search",
    ),
    "spillover-endpoint-removed": (
        "modules/openai-spillover.bicep",
        SPILLOVER_ENDPOINT,
        "",
        "spillover_openai",
    ),
    "spillover-role-removed": (
        "modules/openai-spillover.bicep",
        SPILLOVER_ROLE,
        "",
        "spillover_openai",
    ),
    "spillover-role-wrong-account": (
        "modules/openai-spillover.bicep",
        "  scope: account\n  properties: {\n    roleDefinitionId",
        "  scope: resourceGroup()\n  properties: {\n    roleDefinitionId",
        "spillover_openai",
    ),
    "spillover-on-by-default": (
        "main.bicep",
        "param spilloverOpenAi bool = false",
        "param spilloverOpenAi bool = true",
        "spillover_openai",
    ),
    "spillover-local-auth-on": (
        "modules/openai-spillover.bicep",
        "disableLocalAuth: true",
        "disableLocalAuth: false",
        "openai",
    ),
    "spillover-not-in-backends": (
        "main.bicep",
        "endpoint: spilloverOpenAi ? openAiSpillover.outputs.endpoint : ''",
        "endpoint: ''",
        "spillover_openai",
    ),
    # Issue 20: azd up succeeds for a new subscription and keeps succeeding.
    "ftps-state-back": (
        "modules/function-app.bicep",
        "      minTlsVersion: '1.2'\n",
        "      minTlsVersion: '1.2'\n      ftpsState: 'Disabled'\n",
        "flex_site_config",
    ),
    "budget-start-follows-the-clock": (
        "modules/alerts.bicep",
        "param budgetStartDate string\n",
        "param budgetStartDate string = '${utcNow('yyyy')}-${utcNow('MM')}-01'\n",
        "budget_start",
    ),
    "secret-only-when-given": (
        "modules/keyvault.bicep",
        "resource userHash 'Microsoft.KeyVault/vaults/secrets@2023-07-01' = {",
        "resource userHash 'Microsoft.KeyVault/vaults/secrets@2023-07-01' = if "
        "(!empty(userHashSecret)) {",
        "user_hash_secret",
    ),
    "team-key-secret-only-when-given": (
        "modules/keyvault.bicep",
        "resource teamKeyHash 'Microsoft.KeyVault/vaults/secrets@2023-07-01' = {",
        "resource teamKeyHash 'Microsoft.KeyVault/vaults/secrets@2023-07-01' = if "
        "(!empty(teamKeyHashSecret)) {",
        "user_hash_secret",
    ),
    "team-key-secret-may-be-empty": (
        "main.bicep",
        "@minLength(32)\n@description('HMAC key team keys",
        "@description('HMAC key team keys",
        "user_hash_secret",
    ),
    "secret-may-be-empty": (
        "main.bicep",
        "@minLength(32)\n@description('HMAC key",
        "@description('HMAC key",
        "user_hash_secret",
    ),
    "batch-role-does-not-wait": (
        "modules/openai.bicep",
        "    principalType: 'ServicePrincipal'\n  }\n  dependsOn: [\n    privateEndpoint\n  ]\n",
        "    principalType: 'ServicePrincipal'\n  }\n",
        "batch_role_ordering",
    ),
    "batch-capacity-too-small": (
        "main.bicep",
        "param batchCapacity int = 10000",
        "param batchCapacity int = 50",
        "batch_capacity",
    ),
    "enqueued-tokens-hard-coded": (
        "main.bicep",
        "  BATCH_ENQUEUED_TOKENS: string(batchCapacity * 1000)\n",
        "  BATCH_ENQUEUED_TOKENS: '50000'\n",
        "batch_capacity",
    ),
    "job-memory-budget-hard-coded": (
        "main.bicep",
        "  JOB_MEMORY_BUDGET_MIB: string(instanceMemoryMB / 4)\n",
        "  JOB_MEMORY_BUDGET_MIB: '2048'\n",
        "job_memory_budget",
    ),
    "api-version-written-twice": (
        "main.bicep",
        "  AZURE_OPENAI_API_VERSION: openAiApiVersion\n",
        "  AZURE_OPENAI_API_VERSION: '2024-10-21'\n",
        "api_version",
    ),
    "api-version-too-old": (
        "main.bicep",
        "param openAiApiVersion string = 'v1'",
        "param openAiApiVersion string = '2024-10-21'",
        "api_version",
    ),
    "hook-without-windows": (
        "../azure.yaml",
        "    windows:\n      shell: pwsh\n",
        "    windows:\n      shell: cmd\n",
        "preprovision_hook",
    ),
    "model-version-mandatory": (
        "modules/openai.bicep",
        "empty(chatModelVersion) ? {} : {",
        "{",
        "models",
    ),
    "budget-always-on": (
        "modules/alerts.bicep",
        "= if (!empty(budgetAlertEmail)) {",
        "= {",
        "budget",
    ),
    "workbook-without-throttling": (
        "modules/workbook.bicep",
        'ResultSignature == "429"',
        'ResultSignature == "500"',
        "workbook",
    ),
    # Issue 25: the workbook and the alert read only what the app emits (shared/telemetry).
    "workbook-metric-renamed": (
        "modules/workbook.bicep",
        'Name == "app.job.items"',
        'Name == "app.job.item"',
        "app_metrics_queries",
    ),
    "workbook-attribute-renamed": (
        "modules/workbook.bicep",
        'Properties["app.team"]',
        'Properties["app.tenant"]',
        "app_metrics_queries",
    ),
    "workbook-attribute-dotted": (
        "modules/workbook.bicep",
        'tostring(Properties["app.backend"])',
        "tostring(Properties.app.backend)",
        "app_metrics_queries",
    ),
    "workbook-parenthesis-unclosed": (
        "modules/workbook.bicep",
        'series = strcat(kind, " ", outcome)',
        'series = strcat(kind, " ", outcome',
        "app_metrics_queries",
    ),
    "workbook-outcome-misspelt": (
        "modules/workbook.bicep",
        'sumif(Sum, outcome == "throttled")',
        'sumif(Sum, outcome == "throttling")',
        "app_metrics_queries",
    ),
    "workbook-price-drifted": (
        "modules/workbook.bicep",
        '"gpt-5.4", 2.5, 0.25, 15.0',
        '"gpt-5.4", 2.5, 0.25, 10.0',
        "metric_charts",
    ),
    "workbook-first-token-p90": (
        "modules/workbook.bicep",
        "percentilew(meanSeconds, ItemCount, 95)",
        "percentilew(meanSeconds, ItemCount, 90)",
        "metric_charts",
    ),
    "alert-metric-renamed": (
        "modules/alerts.bicep",
        'Name == "app.upstream.requests"',
        'Name == "app.upstream.request"',
        "app_metrics_queries",
    ),
    "alert-not-per-deployment": (
        "modules/alerts.bicep",
        "              name: 'deployment'\n",
        "              name: 'outcome'\n",
        "throttle_share_alert",
    ),
    "alert-threshold-hard-coded": (
        "modules/alerts.bicep",
        "          threshold: throttledSharePercent\n",
        "          threshold: 5\n",
        "throttle_share_alert",
    ),
}


def mutate(tmp_path: Path, file: str, pattern: str | re.Pattern[str], replacement: str) -> Path:
    copy = tmp_path / "infra"
    shutil.copytree(INFRA_DIR, copy)
    shutil.copy(INFRA_DIR.parent / "azure.yaml", tmp_path / "azure.yaml")
    target = copy / file
    text = target.read_text()
    if isinstance(pattern, re.Pattern):
        mutated, count = pattern.subn(replacement, text, count=1)
    else:
        count = text.count(pattern)
        mutated = text.replace(pattern, replacement, 1)
    assert count >= 1, f"mutation pattern not found in {file}"
    target.write_text(mutated)
    # Still valid syntax: the checks must catch the meaning, not a parse error.
    assert not file.endswith(".bicep") or syntax_errors(mutated.encode()) == []
    return copy


@pytest.mark.parametrize("mutation", MUTATIONS.values(), ids=list(MUTATIONS))
def test_a_broken_copy_fails_the_checks(
    tmp_path: Path, mutation: tuple[str, str | re.Pattern[str], str, str]
) -> None:
    file, pattern, replacement, expected = mutation
    copy = mutate(tmp_path, file, pattern, replacement)
    failing = {name for name, check in ALL_CHECKS.items() if check(copy)}
    assert expected in failing
    # The untouched original passes the same check.
    assert ALL_CHECKS[expected](INFRA_DIR) == []


def test_a_copy_missing_a_required_setting_fails(tmp_path: Path) -> None:
    copy = mutate(tmp_path, "main.bicep", "  COSMOS_ENDPOINT: cosmos.outputs.endpoint\n", "")
    problems = check_required_settings(copy, required_setting_names())
    assert any("COSMOS_ENDPOINT" in p for p in problems)


def test_a_model_past_its_retirement_date_fails() -> None:
    # gpt-5.4 2026-03-05 retires 2027-03-05: the check is an alarm that goes off by itself.
    assert DEPLOY_CHECKS["models"](INFRA_DIR) == []
    problems = check_models(INFRA_DIR, today=dt.date(2027, 6, 1))
    assert any("gpt-5.4 2026-03-05 retires 2027-03-05" in p for p in problems)


def test_a_model_closing_to_new_customers_fails_a_month_ahead() -> None:
    # Issue 20: gpt-5.1 closed to new customers on 2026-11-13 while its retirement was months
    # away; the check compares that date (less a 30-day margin), not only the retirement.
    problems = check_models(INFRA_DIR, today=dt.date(2027, 2, 10))
    assert any("gpt-5.4 2026-03-05 closes to new customers 2027-03-05" in p for p in problems)
    assert check_models(INFRA_DIR, today=dt.date(2026, 12, 6)) == []


@pytest.mark.parametrize(
    ("parameter", "value", "expected"),
    [
        ("chatModelVersion", "${CHAT_MODEL_VERSION=2024-08-06}", "CHAT_MODEL_VERSION defaults to"),
        ("userHashSecret", "${USER_HASH_SECRET=}", "USER_HASH_SECRET"),
        ("teamKeyHashSecret", "${TEAM_KEY_HASH_SECRET=}", "TEAM_KEY_HASH_SECRET"),
        ("budgetStartDate", "${BUDGET_START_DATE=2026-12-01}", "BUDGET_START_DATE"),
        ("openAiApiVersion", "2024-10-21", "AZURE_OPENAI_API_VERSION"),
        ("embeddingSkuName", "Standard", "must map embeddingSkuName"),
        ("principalType", "User", "AZURE_PRINCIPAL_TYPE"),
        ("budgetAlertEmail", "${BUDGET_ALERT_EMAIL=ops@example.com}", "default to empty"),
    ],
)
def test_a_broken_parameters_file_fails(
    tmp_path: Path, parameter: str, value: str, expected: str
) -> None:
    copy = tmp_path / "infra"
    shutil.copytree(INFRA_DIR, copy)
    shutil.copy(INFRA_DIR.parent / "azure.yaml", tmp_path / "azure.yaml")
    path = copy / "main.parameters.json"
    data = json.loads(path.read_text())
    data["parameters"][parameter]["value"] = value
    path.write_text(json.dumps(data))
    checks = {**DEPLOY_CHECKS, **PROVISION_CHECKS}
    problems = [p for check in checks.values() for p in check(copy)]
    assert any(expected in p for p in problems), problems
