"""A copy of infra/ with one requirement broken fails the same structural checks."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest

from shared.settings import required_setting_names
from tests.infra.bicep import INFRA_DIR
from tests.infra.checks import STRUCTURAL_CHECKS, check_required_settings
from tests.infra.test_syntax import syntax_errors

ZONE_GROUP = re.compile(r"resource dnsZoneGroup .*?\n}\n", re.DOTALL)
QUEUE_ENDPOINT = re.compile(
    r"resource queuePrivateEndpoint .*?\n}\n\nresource queueDnsZoneGroup .*?\n}\n", re.DOTALL
)

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
    "storage-public-by-default": (
        "main.bicep",
        "param deployerIpAddress string = ''",
        "param deployerIpAddress string = '203.0.113.7'",
        "storage",
    ),
}


def mutate(tmp_path: Path, file: str, pattern: str | re.Pattern[str], replacement: str) -> Path:
    copy = tmp_path / "infra"
    shutil.copytree(INFRA_DIR, copy)
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
    assert syntax_errors(mutated.encode()) == []
    return copy


@pytest.mark.parametrize("mutation", MUTATIONS.values(), ids=list(MUTATIONS))
def test_a_broken_copy_fails_the_checks(
    tmp_path: Path, mutation: tuple[str, str | re.Pattern[str], str, str]
) -> None:
    file, pattern, replacement, expected = mutation
    copy = mutate(tmp_path, file, pattern, replacement)
    failing = {name for name, check in STRUCTURAL_CHECKS.items() if check(copy)}
    assert expected in failing
    # The untouched original passes the same check.
    assert STRUCTURAL_CHECKS[expected](INFRA_DIR) == []


def test_a_copy_missing_a_required_setting_fails(tmp_path: Path) -> None:
    copy = mutate(tmp_path, "main.bicep", "  COSMOS_ENDPOINT: cosmos.outputs.endpoint\n", "")
    problems = check_required_settings(copy, required_setting_names())
    assert any("COSMOS_ENDPOINT" in p for p in problems)
