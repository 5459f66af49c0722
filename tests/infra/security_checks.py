"""Structural checks of issue 14's infra findings, one function per finding.

Like tests/infra/checks.py, each takes an infra directory and returns its problems, so the
same check runs on the real infra/ and on a copy with the fix taken out (test_security.py).
"""

from __future__ import annotations

from pathlib import Path

from tests.infra.bicep import parse, render, unquoted_keys
from tests.infra.checks import Checks, Problems, _expect, _passes, app_settings

SECURITY_CHECKS = Checks()

APP = "modules/function-app.bicep"

# The app's secret settings (Key Vault references) -> the keyvault module output they name.
HMAC_SECRETS = {
    "USER_HASH_SECRET": "userHashSecretUri",
    "TEAM_KEY_HASH_SECRET": "teamKeyHashSecretUri",
}


@SECURITY_CHECKS.add
def check_entra_auth(root: Path) -> Problems:
    """App Service authentication with Entra ID, a documented switch; the app learns it."""
    infra, problems = parse(root), []
    auth = [
        r
        for r in infra.resources("Microsoft.Web/sites/config")
        if r.body.get("name") == "authsettingsV2"
    ]
    _expect(problems, len(auth) == 1, "the function app needs an authsettingsV2 config")
    if auth:
        config = auth[0].properties
        validation = config.get("globalValidation", {})
        aad = config.get("identityProviders", {}).get("azureActiveDirectory", {})
        _expect(problems, render(auth[0].condition) == "entraAuth", "auth must follow entraAuth")
        _expect(problems, config.get("platform", {}).get("enabled") is True, "auth not enabled")
        # Team keys come without a token (the plain SDK): App Service validates a token when
        # one is sent and the app is the gate (shared/http/team_auth.py, docs/security.md).
        _expect(
            problems,
            validation.get("requireAuthentication") is False
            and validation.get("unauthenticatedClientAction") == "AllowAnonymous",
            "callers with a team key and no token must reach the app, which checks the key",
        )
        _expect(problems, aad.get("enabled") is True, "the Entra ID provider must be enabled")
        _expect(
            problems,
            render(aad.get("registration", {}).get("clientId")) == "entraClientId",
            "the Entra ID provider must use the app registration (entraClientId)",
        )
    _expect(problems, _passes(infra, APP, "entraAuth") == "entraAuth", "entraAuth not passed")
    _expect(
        problems,
        infra.main.param_default("entraAuth") is False,
        "entraAuth must be a switch that defaults to off (it needs an app registration)",
    )
    _expect(
        problems,
        render(app_settings(infra).get("ENTRA_AUTH")) == "entraAuth ? true : false",
        "ENTRA_AUTH must tell the app the switch (it trusts x-ms-client-principal only then)",
    )
    return problems


@SECURITY_CHECKS.add
def check_inbound_access(root: Path) -> Problems:
    """An option for access restrictions or an inbound private endpoint."""
    infra, problems = parse(root), []
    site = infra.one("Microsoft.Web/sites")
    config = site.properties.get("siteConfig", {})
    _expect(
        problems,
        render(site.properties.get("publicNetworkAccess"))
        == "and(equals(inboundAccess, private), empty(deployerIpRange)) ? Disabled : Enabled",
        "inboundAccess private must turn public network access off (unless a deployer range "
        "keeps the SCM site reachable)",
    )
    _expect(
        problems,
        render(config.get("ipSecurityRestrictionsDefaultAction"))
        == "equals(inboundAccess, public) ? Allow : Deny",
        "inboundAccess restricted and private must deny all but allowedInboundCidrs",
    )
    rules = render(config.get("ipSecurityRestrictions"))
    _expect(
        problems,
        "'operand_2': 'restricted'" in rules and "'true_value': 'allowedInboundCidrs'" in rules,
        "allowedInboundCidrs must open the main site only when inboundAccess is restricted",
    )
    # Issue 20: a deploy path with private inbound access. Without a deployer range the SCM
    # site follows the main site (deploy from inside the network); with one, it admits only it.
    _expect(
        problems,
        render(config.get("scmIpSecurityRestrictionsUseMain")) == "empty(deployerIpRange)"
        and render(config.get("scmIpSecurityRestrictionsDefaultAction"))
        == "equals(inboundAccess, public) ? Allow : Deny"
        and render(config.get("scmIpSecurityRestrictions"))
        == "empty(deployerIpRange) ? [] : [{name: deployer, ipAddress: deployerIpRange, "
        "action: Allow, priority: 100}]",
        "the SCM site must follow the main site, or admit only deployerIpRange",
    )
    _expect(
        problems,
        _passes(infra, APP, "deployerIpRange") == "deployerIpRange"
        and infra.main.param_default("deployerIpRange") == "",
        "deployerIpRange must be a main.bicep parameter (default empty) passed to the app",
    )
    endpoints = [r for r in infra.resources("Microsoft.Network/privateEndpoints") if r.file == APP]
    _expect(
        problems,
        len(endpoints) == 1 and render(endpoints[0].condition) == "equals(inboundAccess, private)",
        "inboundAccess private needs the app's private endpoint",
    )
    allowed = infra.main.params.get("inboundAccess", {})
    _expect(
        problems,
        infra.main.param_default("inboundAccess") == "public"
        and _passes(infra, APP, "inboundAccess") == "inboundAccess",
        f"inboundAccess must be a documented switch passed to the app ({render(allowed)})",
    )
    return problems


@SECURITY_CHECKS.add
def check_key_vault(root: Path) -> Problems:
    """The HMAC secrets live in Key Vault: private endpoint, RBAC, no access policy, and
    Key Vault references resolved with the app identity."""
    infra, problems = parse(root), []
    vault = infra.one("Microsoft.KeyVault/vaults")
    props = vault.properties
    _expect(problems, props.get("enableRbacAuthorization") is True, "Key Vault must use RBAC")
    _expect(problems, props.get("accessPolicies", []) == [], "Key Vault must have no access policy")
    _expect(
        problems, props.get("publicNetworkAccess") == "Disabled", "Key Vault must not be public"
    )
    _expect(
        problems,
        props.get("networkAcls", {}).get("defaultAction") == "Deny"
        and props.get("networkAcls", {}).get("bypass") == "None",
        "Key Vault firewall must deny by default, without bypass",
    )
    # Issue 20: purge protection is a parameter, on by default (Azure takes only true or null).
    _expect(
        problems,
        render(props.get("enablePurgeProtection")) == "purgeProtection ? true : null"
        and _passes(infra, vault.file, "purgeProtection") == "keyVaultPurgeProtection"
        and infra.main.param_default("keyVaultPurgeProtection") is True,
        "Key Vault purge protection must be the keyVaultPurgeProtection parameter, on by default",
    )
    groups = [
        g
        for pe in infra.resources("Microsoft.Network/privateEndpoints")
        if pe.file == vault.file
        for c in pe.properties.get("privateLinkServiceConnections", [])
        for g in c["properties"]["groupIds"]
    ]
    _expect(problems, groups == ["vault"], "Key Vault needs its private endpoint")
    for name, output in HMAC_SECRETS.items():
        setting = render(app_settings(infra).get(name))
        _expect(
            problems,
            setting == f"@Microsoft.KeyVault(SecretUri=${{keyVault.outputs.{output}}})",
            f"{name} must be a Key Vault reference, is {setting}",
        )
    site = infra.one("Microsoft.Web/sites")
    _expect(
        problems,
        render(site.properties.get("keyVaultReferenceIdentity")) == "identityId",
        "Key Vault references must resolve with the app identity",
    )
    readers = [
        ra
        for ra in infra.resources("Microsoft.Authorization/roleAssignments")
        if ra.file == vault.file
    ]
    secrets = [s.name for s in infra.resources("Microsoft.KeyVault/vaults/secrets")]
    _expect(
        problems,
        sorted(render(ra.body.get("scope")) for ra in readers) == sorted(secrets)
        and len(secrets) == len(HMAC_SECRETS),
        "the app may read each of its secrets, not the whole vault",
    )
    return problems


@SECURITY_CHECKS.add
def check_blob_owner_scope(root: Path) -> Problems:
    """Storage Blob Data Owner for the app on its containers, never on the account."""
    infra, problems = parse(root), []
    account = infra.one("Microsoft.Storage/storageAccounts")
    containers = infra.one("Microsoft.Storage/storageAccounts/blobServices/containers")
    for ra in infra.resources("Microsoft.Authorization/roleAssignments"):
        if ra.file != account.file or render(ra.properties.get("principalId")) != "appPrincipalId":
            continue
        if "storageBlobDataOwner" not in render(ra.properties.get("roleDefinitionId")):
            continue
        scope = render(ra.body.get("scope"))
        _expect(
            problems,
            scope.startswith(f"{containers.name}[") and ra.loop is not None,
            f"{ra}: Blob Data Owner must be scoped to each container, is {scope}",
        )
    names = infra.resolve(account.file, "containerNames")
    rendered = [render(n) for n in names] if isinstance(names, list) else []
    for needed in ("azure-webjobs-hosts", "azure-webjobs-secrets"):
        _expect(problems, needed in rendered, f"container {needed} must be declared (and scoped)")
    return problems


@SECURITY_CHECKS.add
def check_nsg_rules(root: Path) -> Problems:
    """Explicit NSG rules: the private endpoints take HTTPS from the app subnet only."""
    infra, problems = parse(root), []
    nsgs = {n.name: n for n in infra.resources("Microsoft.Network/networkSecurityGroups")}
    for nsg in nsgs.values():
        _expect(problems, bool(nsg.properties.get("securityRules")), f"{nsg}: no explicit rules")
    pe = nsgs.get("privateEndpointNsg")
    rules = [r["properties"] for r in (pe.properties.get("securityRules", []) if pe else [])]
    allow = [r for r in rules if r.get("access") == "Allow" and r.get("direction") == "Inbound"]
    _expect(
        problems,
        len(allow) == 1
        and allow[0].get("destinationPortRange") == "443"
        and "appSubnetPrefix" in render(allow[0].get("sourceAddressPrefixes")),
        "private endpoints: allow 443 from the app subnet (and callerPrefixes) only",
    )
    _expect(
        problems,
        any(
            r.get("access") == "Deny"
            and r.get("direction") == "Inbound"
            and r.get("sourceAddressPrefix") == "*"
            for r in rules
        ),
        "private endpoints: deny every other inbound flow",
    )
    return problems


@SECURITY_CHECKS.add
def check_models_pinned(root: Path) -> Problems:
    """Pinned by default (NoAutoUpgrade), and the upgrade option one main.bicep parameter."""
    infra, problems = parse(root), []
    for deployment in infra.resources("Microsoft.CognitiveServices/accounts/deployments"):
        _expect(
            problems,
            deployment.properties.get("versionUpgradeOption") == "versionUpgradeOption"
            and infra.files[deployment.file].param_default("versionUpgradeOption")
            == "NoAutoUpgrade",
            f"{deployment}: versionUpgradeOption must be the module's parameter (NoAutoUpgrade)",
        )
        _expect(
            problems,
            _passes(infra, deployment.file, "versionUpgradeOption") == "modelVersionUpgradeOption",
            f"main.bicep must pass modelVersionUpgradeOption to {deployment.file}",
        )
    _expect(
        problems,
        infra.main.param_default("modelVersionUpgradeOption") == "NoAutoUpgrade",
        "modelVersionUpgradeOption must default to NoAutoUpgrade (answers stay stable)",
    )
    return problems


@SECURITY_CHECKS.add
def check_log_analytics(root: Path) -> Problems:
    """Ingestion and query stay public on purpose (infra/modules/monitoring.bicep says why);
    so both must need Entra ID, and the choice must be written down, not defaulted."""
    infra, problems = parse(root), []
    workspace = infra.one("Microsoft.OperationalInsights/workspaces")
    props = workspace.properties
    _expect(
        problems,
        unquoted_keys(props.get("features", {})).get("disableLocalAuth") is True,
        "Log Analytics must refuse shared keys (features.disableLocalAuth)",
    )
    for name in ("publicNetworkAccessForIngestion", "publicNetworkAccessForQuery"):
        _expect(problems, name in props, f"Log Analytics {name} must be set explicitly")
    _expect(
        problems,
        "Private Link Scope" in infra.files[workspace.file].path
        or "Private Link Scope" in (root / workspace.file).read_text(),
        "monitoring.bicep must say why ingestion and query are not private",
    )
    return problems


@SECURITY_CHECKS.add
def check_caller_minutes_expire(root: Path) -> Problems:
    """The shared per-caller limit's minute buckets expire by themselves (defaultTtl): the app
    never deletes them, and a bucket past its minute limits nobody."""
    infra, problems = parse(root), []
    ttl = {
        str(
            infra.resolve(c.file, render(c.properties.get("resource", {}).get("id")))
        ): c.properties.get("resource", {}).get("defaultTtl")
        for c in infra.resources("Microsoft.DocumentDB/databaseAccounts/sqlDatabases/containers")
        if not c.loop
    }
    value = ttl.get("caller_minutes")
    _expect(
        problems,
        isinstance(value, int) and 120 <= value <= 3600,
        f"caller_minutes needs a defaultTtl of 2 to 60 minutes, not {value!r}",
    )
    # A stored response's record (id -> backend, team) lives as long as Azure keeps the
    # response (30 days), and no longer.
    value = ttl.get("responses")
    _expect(
        problems,
        value == 30 * 24 * 3600,
        f"responses needs a defaultTtl of 30 days (2592000 s), not {value!r}",
    )
    return problems


@SECURITY_CHECKS.add
def check_payloads_expire(root: Path) -> Problems:
    """Job payload blobs (the items' text) are deleted by a lifecycle rule on the claim-check
    container, after a retention main.bicep sets, instead of being kept forever."""
    infra, problems = parse(root), []
    account = infra.one("Microsoft.Storage/storageAccounts")
    policies = [
        p
        for p in infra.resources("Microsoft.Storage/storageAccounts/managementPolicies")
        if p.file == account.file and render(p.body.get("parent")) == account.name
    ]
    rules = [
        rule
        for policy in policies
        for rule in policy.properties.get("policy", {}).get("rules", [])
        if rule.get("enabled") is True
    ]
    deleting = [
        rule
        for rule in rules
        if "${claimCheckContainerName}/" in rule["definition"]["filters"].get("prefixMatch", [])
        and "blockBlob" in rule["definition"]["filters"].get("blobTypes", [])
    ]
    days = [
        rule["definition"]["actions"].get("baseBlob", {}).get("delete", {}) for rule in deleting
    ]
    _expect(
        problems,
        [d.get("daysAfterModificationGreaterThan") for d in days] == ["payloadRetentionDays"],
        "one enabled lifecycle rule must delete the claim-check container's blobs after "
        f"payloadRetentionDays days, found {days}",
    )
    _expect(
        problems,
        _passes(infra, account.file, "payloadRetentionDays") == "payloadRetentionDays",
        "main.bicep must pass payloadRetentionDays to the storage module",
    )
    default = infra.main.param_default("payloadRetentionDays")
    _expect(
        problems,
        isinstance(default, int) and 1 <= default <= 90,
        f"payloadRetentionDays must default to 1-90 days, not {default!r}",
    )
    return problems
