"""Issue 14's infra findings: each check holds on infra/ and fails on a copy without the fix."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.infra.bicep import INFRA_DIR
from tests.infra.checks import STRUCTURAL_CHECKS, Problems
from tests.infra.security_checks import SECURITY_CHECKS
from tests.infra.test_mutations import mutate

CHECKS = {**STRUCTURAL_CHECKS, **SECURITY_CHECKS}
PE_RULES = re.compile(
    r"(resource privateEndpointNsg .*?securityRules: )\[\n.*?\n    \]\n", re.DOTALL
)

# id: (file, pattern, replacement, check expected to fail)
MUTATIONS: dict[str, tuple[str, str | re.Pattern[str], str, str]] = {
    "payloads-kept-forever": (
        "modules/storage.bicep",
        "          enabled: true\n          type: 'Lifecycle'",
        "          enabled: false\n          type: 'Lifecycle'",
        "payloads_expire",
    ),
    "payloads-of-another-container": (
        "modules/storage.bicep",
        "'${claimCheckContainerName}/'",
        "'${batchFilesContainerName}/'",
        "payloads_expire",
    ),
    "payload-retention-not-passed": (
        "main.bicep",
        "    payloadRetentionDays: payloadRetentionDays\n",
        "",
        "payloads_expire",
    ),
    "caller-minutes-kept-forever": (
        "modules/cosmos.bicep",
        "      defaultTtl: 300\n",
        "",
        "caller_minutes_expire",
    ),
    "response-homes-kept-forever": (
        "modules/cosmos.bicep",
        "      defaultTtl: 2592000\n",
        "",
        "caller_minutes_expire",
    ),
    "team-keys-refused-with-sign-in-on": (
        "modules/function-app.bicep",
        "unauthenticatedClientAction: 'AllowAnonymous'",
        "unauthenticatedClientAction: 'Return401'",
        "entra_auth",
    ),
    "tokens-not-validated": (
        "modules/function-app.bicep",
        "    platform: {\n      enabled: true",
        "    platform: {\n      enabled: false",
        "entra_auth",
    ),
    "entra-auth-not-told-to-the-app": (
        "main.bicep",
        "ENTRA_AUTH: entraAuth ? 'true' : 'false'",
        "ENTRA_AUTH: 'true'",
        "entra_auth",
    ),
    "restriction-option-gone": (
        "modules/function-app.bicep",
        "ipSecurityRestrictionsDefaultAction: (inboundAccess == 'public') ? 'Allow' : 'Deny'",
        "ipSecurityRestrictionsDefaultAction: 'Allow'",
        "inbound_access",
    ),
    "private-option-keeps-public-access": (
        "modules/function-app.bicep",
        "publicNetworkAccess: ((inboundAccess == 'private') && empty(deployerIpRange)) ? "
        "'Disabled' : 'Enabled'",
        "publicNetworkAccess: 'Enabled'",
        "inbound_access",
    ),
    "vault-with-access-policies": (
        "modules/keyvault.bicep",
        "enableRbacAuthorization: true",
        "enableRbacAuthorization: false",
        "key_vault",
    ),
    "vault-public": (
        "modules/keyvault.bicep",
        "publicNetworkAccess: 'Disabled'",
        "publicNetworkAccess: 'Enabled'",
        "key_vault",
    ),
    "secret-in-plain-setting": (
        "main.bicep",
        "USER_HASH_SECRET: '@Microsoft.KeyVault(SecretUri=${keyVault.outputs.userHashSecretUri})'",
        "USER_HASH_SECRET: keyVault.outputs.userHashSecretUri",
        "key_vault",
    ),
    "vault-wide-reader": (
        "modules/keyvault.bicep",
        "  scope: userHash\n",
        "  scope: vault\n",
        "key_vault",
    ),
    "team-key-secret-in-plain-setting": (
        "main.bicep",
        "TEAM_KEY_HASH_SECRET: '@Microsoft.KeyVault(SecretUri=${keyVault.outputs."
        "teamKeyHashSecretUri})'",
        "TEAM_KEY_HASH_SECRET: keyVault.outputs.teamKeyHashSecretUri",
        "key_vault",
    ),
    "team-key-vault-wide-reader": (
        "modules/keyvault.bicep",
        "  scope: teamKeyHash\n",
        "  scope: vault\n",
        "key_vault",
    ),
    "blob-owner-on-the-account": (
        "modules/storage.bicep",
        "  scope: containers[i]\n",
        "  scope: storage\n",
        "blob_owner_scope",
    ),
    "cosmos-role-on-the-account": (
        "modules/cosmos.bicep",
        "    scope: '${account.id}/dbs/${database.name}'\n",
        "    scope: account.id\n",
        "role_assignments",
    ),
    "private-endpoint-nsg-empty": ("modules/network.bicep", PE_RULES, r"\1[]\n", "nsg_rules"),
    "nsg-rules-do-not-reach-endpoints": (
        "modules/network.bicep",
        "privateEndpointNetworkPolicies: 'Enabled'",
        "privateEndpointNetworkPolicies: 'Disabled'",
        "network",
    ),
    "model-upgrades-itself": (
        "main.bicep",
        "param modelVersionUpgradeOption string = 'NoAutoUpgrade'",
        "param modelVersionUpgradeOption string = 'OnceNewDefaultVersionAvailable'",
        "models_pinned",
    ),
    "upgrade-option-ignored": (
        "modules/openai.bicep",
        "versionUpgradeOption: versionUpgradeOption",
        "versionUpgradeOption: 'OnceCurrentVersionExpired'",
        "models_pinned",
    ),
    # Issue 20: private inbound access keeps a deploy path, purge protection a parameter.
    "scm-open-to-everyone": (
        "modules/function-app.bicep",
        "scmIpSecurityRestrictionsDefaultAction: (inboundAccess == 'public') ? 'Allow' : 'Deny'",
        "scmIpSecurityRestrictionsDefaultAction: 'Allow'",
        "inbound_access",
    ),
    "scm-ignores-the-deployer": (
        "modules/function-app.bicep",
        "scmIpSecurityRestrictionsUseMain: empty(deployerIpRange)",
        "scmIpSecurityRestrictionsUseMain: true",
        "inbound_access",
    ),
    "deployer-range-not-passed": (
        "main.bicep",
        "    deployerIpRange: deployerIpRange\n",
        "",
        "inbound_access",
    ),
    "purge-protection-off-by-default": (
        "main.bicep",
        "param keyVaultPurgeProtection bool = true",
        "param keyVaultPurgeProtection bool = false",
        "key_vault",
    ),
    "purge-protection-hard-coded": (
        "modules/keyvault.bicep",
        "enablePurgeProtection: purgeProtection ? true : null",
        "enablePurgeProtection: true",
        "key_vault",
    ),
    "log-analytics-takes-keys": (
        "modules/monitoring.bicep",
        "disableLocalAuth: true",
        "disableLocalAuth: false",
        "log_analytics",
    ),
}


@pytest.mark.parametrize("check", SECURITY_CHECKS.values(), ids=list(SECURITY_CHECKS))
def test_requirement_holds(check: Callable[[Path], Problems]) -> None:
    assert check(INFRA_DIR) == []


@pytest.mark.parametrize(
    ("file", "pattern", "replacement", "expected"), MUTATIONS.values(), ids=list(MUTATIONS)
)
def test_a_copy_without_the_fix_fails(
    tmp_path: Path, file: str, pattern: str | re.Pattern[str], replacement: str, expected: str
) -> None:
    copy = mutate(tmp_path, file, pattern, replacement)
    assert CHECKS[expected](copy) != []
    assert CHECKS[expected](INFRA_DIR) == []
