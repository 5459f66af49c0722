"""Structural checks of `infra/`, one function per requirement of issue 6.

Each check takes an infra directory and returns the problems it found (empty: the requirement
holds), so the same checks run on the real `infra/` and on a deliberately broken copy.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tests.infra.bicep import Infra, Resource, parse, render, unquoted_keys

ROLE_IDS = {
    "cognitiveServicesOpenAiUser": "5e0bd9bd-7b93-4f28-af87-19fc36ad61bd",
    "storageBlobDataOwner": "b7e6dc6d-f1e8-4753-8033-0f276bb0955b",
    "storageQueueDataContributor": "974c5e8b-45b9-4653-ba55-5f855dd0fb88",
    "storageTableDataContributor": "0a9a7e1f-b9d0-4cc4-a60d-0319b160aaa3",
    "monitoringMetricsPublisher": "3913510d-42f4-4e42-8a64-420c390055eb",
    "keyVaultSecretsUser": "4633458b-17de-408a-b874-0445c86b69e6",
}
COSMOS_DATA_CONTRIBUTOR = "00000000-0000-0000-0000-000000000002"

# (scope resource type, role id) the app identity must hold.
REQUIRED_APP_ROLES = {
    ("Microsoft.CognitiveServices/accounts", ROLE_IDS["cognitiveServicesOpenAiUser"]),
    # Issue 14: on the containers the app uses, never the whole account.
    ("Microsoft.Storage/storageAccounts/blobServices/containers", ROLE_IDS["storageBlobDataOwner"]),
    ("Microsoft.Storage/storageAccounts", ROLE_IDS["storageQueueDataContributor"]),
    ("Microsoft.Insights/components", ROLE_IDS["monitoringMetricsPublisher"]),
    # Issue 14: reads the HMAC secrets (USER_HASH_SECRET; TEAM_KEY_HASH_SECRET, #22), each
    # secret on its own, never the vault.
    ("Microsoft.KeyVault/vaults/secrets", ROLE_IDS["keyVaultSecretsUser"]),
}

# Private endpoint group id -> the private DNS zone its zone group must use.
ZONE_FOR_GROUP = {
    "account": "privatelink.openai.azure.com",
    "Sql": "privatelink.documents.azure.com",
    "blob": "privatelink.blob.${environment().suffixes.storage}",
    "queue": "privatelink.queue.${environment().suffixes.storage}",
    "table": "privatelink.table.${environment().suffixes.storage}",
    "vault": "privatelink.vaultcore.azure.net",
    "sites": "privatelink.azurewebsites.net",
}

# Private endpoint group id -> the resource type it must connect to.
SERVICE_FOR_GROUP = {
    "account": "Microsoft.CognitiveServices/accounts",
    "Sql": "Microsoft.DocumentDB/databaseAccounts",
    "blob": "Microsoft.Storage/storageAccounts",
    "queue": "Microsoft.Storage/storageAccounts",
    "table": "Microsoft.Storage/storageAccounts",
    "vault": "Microsoft.KeyVault/vaults",
    "sites": "Microsoft.Web/sites",
}

COSMOS_CONTAINERS = {
    "jobs": "/job_id",
    "results": "/job_id",
    "content_filter_events": "/day",
    "batches": "/id",
    "usage": "/day",
    "usage_rollups": "/day",
    "caller_minutes": "/id",
    "teams": "/id",
    "team_spend": "/id",
    "responses": "/id",
    "quota_ledger": "/id",
}

MAIN_FILE = "main.bicep"
OPENAI_FILE = "modules/openai.bicep"
SPILLOVER_FILE = "modules/openai-spillover.bicep"
SPILLOVER_SWITCH = "spilloverOpenAi"
APP_PRINCIPAL = "appPrincipalId"
USER_PRINCIPAL = "userPrincipalId"
USER_DATA_FLAG = "grantUserDataAccess"

Problems = list[str]
Check = Callable[[Path], Problems]


class Checks(dict[str, Check]):
    """Checks by name (the function's name without `check_`), filled by `@CHECKS.add`."""

    def add(self, check: Check) -> Check:
        self[check.__name__.removeprefix("check_")] = check
        return check


STRUCTURAL_CHECKS = Checks()


def _expect(problems: Problems, ok: bool, message: str) -> None:
    if not ok:
        problems.append(message)


def _passes(infra: Infra, module_file: str, param: str) -> str:
    """Rendered expression main.bicep passes to `param` of `module_file` ('' if absent)."""
    value = infra.module_call(module_file).params.get(param)
    return "" if value is None else render(value)


@STRUCTURAL_CHECKS.add
def check_network(root: Path) -> Problems:
    infra, problems = parse(root), []
    vnet = infra.one("Microsoft.Network/virtualNetworks")
    subnets = {s["name"]: s["properties"] for s in vnet.properties.get("subnets", [])}
    bicep = infra.files[vnet.file]
    names = {infra.resolve(vnet.file, k): v for k, v in subnets.items()}
    delegated = [
        n
        for n, props in names.items()
        if any(
            d["properties"]["serviceName"] == "Microsoft.App/environments"
            for d in props.get("delegations", [])
        )
    ]
    _expect(
        problems,
        len(delegated) == 1,
        f"one subnet delegated to Microsoft.App/environments, got {delegated}",
    )
    # Network policies on: the NSG's explicit rules apply to the private endpoints (issue 14).
    pe_subnets = [
        n for n, p in names.items() if p.get("privateEndpointNetworkPolicies") == "Enabled"
    ]
    _expect(problems, len(pe_subnets) == 1, f"one private-endpoint subnet, got {pe_subnets}")
    for n, props in names.items():
        _expect(problems, "networkSecurityGroup" in props, f"subnet {n} has no NSG")
    # The app subnet id handed to the function app is the delegated subnet.
    app_subnet_var = next((k for k in subnets if infra.resolve(vnet.file, k) in delegated), None)
    _expect(
        problems,
        render(bicep.outputs.get("appSubnetId")) == f"${{vnet.id}}/subnets/${{{app_subnet_var}}}",
        "network output appSubnetId is not the delegated subnet",
    )
    pe_var = next((k for k in subnets if infra.resolve(vnet.file, k) in pe_subnets), None)
    _expect(
        problems,
        render(bicep.outputs.get("privateEndpointSubnetId"))
        == f"${{vnet.id}}/subnets/${{{pe_var}}}",
        "network output privateEndpointSubnetId is not the private-endpoint subnet",
    )
    _expect(
        problems,
        _passes(infra, "modules/function-app.bicep", "appSubnetId")
        == "network.outputs.appSubnetId",
        "function app is not given the delegated app subnet",
    )
    for module in (
        "modules/storage.bicep",
        "modules/cosmos.bicep",
        OPENAI_FILE,
        SPILLOVER_FILE,
        "modules/keyvault.bicep",
    ):
        _expect(
            problems,
            _passes(infra, module, "privateEndpointSubnetId")
            == "network.outputs.privateEndpointSubnetId",
            f"{module} private endpoints are not in the private-endpoint subnet",
        )
    return problems


def _zone_names(infra: Infra) -> tuple[str, list[str]]:
    zones = infra.one("Microsoft.Network/privateDnsZones")
    assert zones.loop is not None, "private DNS zones are declared in a loop over a name list"
    names = infra.resolve(zones.file, zones.loop["detail"]["array_name"])
    return zones.file, [render(n) for n in names]


@STRUCTURAL_CHECKS.add
def check_private_dns(root: Path) -> Problems:
    infra, problems = parse(root), []
    dns_file, names = _zone_names(infra)
    for zone in ZONE_FOR_GROUP.values():
        _expect(problems, zone in names, f"private DNS zone {zone} missing")
    zones = infra.one("Microsoft.Network/privateDnsZones")
    links = infra.one("Microsoft.Network/privateDnsZones/virtualNetworkLinks")
    zone_loop = zones.loop["detail"] if zones.loop else {}
    link_loop = links.loop["detail"] if links.loop else {}
    _expect(
        problems,
        link_loop.get("array_name") == zone_loop.get("array_name")
        and render(links.body.get("parent")) == f"{zones.name}[{link_loop.get('index_name')}]",
        "every private DNS zone needs its own VNet link",
    )
    _expect(
        problems,
        render(links.properties.get("virtualNetwork", {}).get("id")) == "vnetId"
        and _passes(infra, dns_file, "vnetId") == "network.outputs.id",
        "private DNS zones are not linked to the app VNet",
    )
    _expect(
        problems,
        links.properties.get("registrationEnabled") is False,
        "VNet links must not auto-register",
    )
    return problems


@STRUCTURAL_CHECKS.add
def check_private_endpoints(root: Path) -> Problems:
    """Every private endpoint has a DNS zone group pointing at the zone for its group id."""
    infra, problems = parse(root), []
    dns_file, zone_names = _zone_names(infra)
    dns_outputs = infra.files[dns_file].outputs
    endpoints = infra.resources("Microsoft.Network/privateEndpoints")
    groups = infra.resources("Microsoft.Network/privateEndpoints/privateDnsZoneGroups")
    seen_group_ids = set()
    for pe in endpoints:
        connections = pe.properties.get("privateLinkServiceConnections", [])
        group_ids = [g for c in connections for g in c["properties"]["groupIds"]]
        seen_group_ids.update(group_ids)
        _expect(problems, len(group_ids) == 1, f"{pe}: one group id per endpoint, got {group_ids}")
        _expect(
            problems,
            render(pe.properties.get("subnet", {}).get("id")) == "privateEndpointSubnetId",
            f"{pe}: not in the private-endpoint subnet",
        )
        # A private endpoint must be in its VNet's region, wherever the service is.
        _expect(
            problems,
            _passes(infra, pe.file, render(pe.body.get("location")))
            == _passes(infra, "modules/network.bicep", "location"),
            f"{pe}: not in the VNet's region",
        )
        group = group_ids[0] if group_ids else ""
        linked = (
            render(connections[0]["properties"].get("privateLinkServiceId")) if connections else ""
        )
        by_name = {r.name: r for r in infra.files[pe.file].resources()}
        target = by_name.get(linked.removesuffix(".id"))
        _expect(
            problems,
            target is not None and target.type == SERVICE_FOR_GROUP.get(group),
            f"{pe}: group {group} must connect to a {SERVICE_FOR_GROUP.get(group)}, not {linked}",
        )
        mine = [g for g in groups if g.file == pe.file and render(g.body.get("parent")) == pe.name]
        if len(mine) != 1:
            problems.append(f"{pe}: has {len(mine)} private DNS zone groups, needs exactly 1")
            continue
        configs = mine[0].properties.get("privateDnsZoneConfigs", [])
        if len(configs) != 1 or not group_ids:
            problems.append(f"{pe}: zone group must hold one zone config")
            continue
        zone_param = render(configs[0]["properties"]["privateDnsZoneId"])
        passed = _passes(infra, pe.file, zone_param)
        match = re.fullmatch(r"privateDns\.outputs\.(\w+)", passed)
        if not match:
            problems.append(
                f"{pe}: zone {zone_param} is not a privateDns module output ({passed!r})"
            )
            continue
        index = re.fullmatch(r"zones\[(\d+)\]\.id", render(dns_outputs.get(match.group(1))))
        position = int(index.group(1)) if index else len(zone_names)
        zone = zone_names[position] if position < len(zone_names) else None
        _expect(
            problems,
            zone == ZONE_FOR_GROUP.get(group_ids[0]),
            f"{pe}: group {group_ids[0]} resolves to zone {zone}, "
            f"expected {ZONE_FOR_GROUP.get(group_ids[0])}",
        )
    for required in ("account", "Sql", "blob", "queue"):
        _expect(
            problems, required in seen_group_ids, f"no private endpoint for group id {required}"
        )
    return problems


def _role_of(infra: Infra, file: str, expr: Any) -> tuple[str, str | None]:
    """(variable expression, GUID it resolves to) of a `roles.<name>` reference."""
    text = render(expr)
    match = re.fullmatch(r"(\w+)\.(\w+)", text)
    if not match:
        return text, None
    table = infra.resolve(file, match.group(1))
    return text, table.get(match.group(2)) if isinstance(table, dict) else None


def _check_user_gate(problems: Problems, resource: Resource, principal: str) -> None:
    if principal == USER_PRINCIPAL:
        _expect(
            problems,
            USER_DATA_FLAG in render(resource.condition),
            f"{resource}: the deploying user's role must be behind {USER_DATA_FLAG}",
        )
    else:
        _expect(
            problems, principal == APP_PRINCIPAL, f"{resource}: unexpected principal {principal}"
        )


@STRUCTURAL_CHECKS.add
def check_role_assignments(root: Path) -> Problems:
    infra, problems = parse(root), []
    by_name = {(r.file, r.name): r for r in infra.resources()}
    granted: set[tuple[str, str]] = set()
    for ra in infra.resources("Microsoft.Authorization/roleAssignments"):
        # A role per container of a loop is scoped to `containers[i]`.
        scope = re.sub(r"\[\w+\]$", "", render(ra.body.get("scope")))
        principal = render(ra.properties.get("principalId"))
        custom = by_name.get(
            (ra.file, render(ra.properties.get("roleDefinitionId")).removesuffix(".id"))
        )
        if custom is not None and custom.type == "Microsoft.Authorization/roleDefinitions":
            # A custom role declared beside it (tests/infra/deploy_checks.py judges its actions).
            _expect(
                problems,
                render(ra.body.get("name")) == f"guid({scope}.id, {principal}, {custom.name}.id)",
                f"{ra}: name must be guid({scope}.id, {principal}, {custom.name}.id)",
            )
            _expect(
                problems,
                principal == APP_PRINCIPAL,
                f"{ra}: custom role {custom.name} is for the app identity only",
            )
            continue
        role_def = re.fullmatch(
            r"subscription_resource_id\(Microsoft\.Authorization/roleDefinitions, (.+)\)",
            render(ra.properties.get("roleDefinitionId")),
        )
        if not role_def:
            problems.append(f"{ra}: roleDefinitionId is not a subscription role definition id")
            continue
        role_expr, role_id = _role_of(infra, ra.file, role_def.group(1))
        _expect(
            problems,
            re.sub(r"\[\w+\]\.id", ".id", render(ra.body.get("name")))
            == f"guid({scope}.id, {principal}, {role_expr})",
            f"{ra}: name must be guid({scope}.id, {principal}, {role_expr}), "
            f"is {render(ra.body.get('name'))}",
        )
        _expect(problems, role_id in ROLE_IDS.values(), f"{ra}: unknown role id {role_id}")
        _check_user_gate(problems, ra, principal)
        target = by_name.get((ra.file, scope))
        if target is None:
            problems.append(f"{ra}: scope {scope} is not a resource of {ra.file}")
            continue
        if principal == APP_PRINCIPAL and role_id:
            granted.add((target.type, role_id))
    for scope_type, role_id in sorted(REQUIRED_APP_ROLES - granted):
        problems.append(f"app identity lacks role {role_id} on {scope_type}")
    # Cosmos DB data-plane roles go through sqlRoleAssignments.
    cosmos_app = False
    for ra in infra.resources("Microsoft.DocumentDB/databaseAccounts/sqlRoleAssignments"):
        parent = render(ra.body.get("parent"))
        principal = render(ra.properties.get("principalId"))
        match = re.fullmatch(
            r"\$\{(\w+)\.id\}/sqlRoleDefinitions/\$\{(.+)\}",
            render(ra.properties.get("roleDefinitionId")),
        )
        role_expr, role_id = _role_of(infra, ra.file, match.group(2)) if match else ("", None)
        _expect(
            problems,
            match is not None and match.group(1) == parent,
            f"{ra}: role definition not on its account",
        )
        _expect(
            problems,
            role_id == COSMOS_DATA_CONTRIBUTOR,
            f"{ra}: role {role_id} is not Built-in Data Contributor",
        )
        _expect(
            problems,
            render(ra.body.get("name")) == f"guid({parent}.id, {principal}, {role_expr})",
            f"{ra}: name must be guid({parent}.id, {principal}, {role_expr})",
        )
        _expect(
            problems,
            render(ra.properties.get("scope")) == f"${{{parent}.id}}/dbs/${{database.name}}",
            f"{ra}: scope must be the app's database (issue 14), not the account",
        )
        _check_user_gate(problems, ra, principal)
        cosmos_app |= principal == APP_PRINCIPAL and role_id == COSMOS_DATA_CONTRIBUTOR
    _expect(problems, cosmos_app, "app identity lacks Cosmos DB Built-in Data Contributor")
    # main.bicep: the app principal is the identity; the user principal is azd's principalId.
    main = infra.main
    _expect(
        problems,
        main.param_default(USER_DATA_FLAG) is False,
        f"{USER_DATA_FLAG} must default to false",
    )
    for call in main.modules():
        if APP_PRINCIPAL in call.params:
            _expect(
                problems,
                render(call.params[APP_PRINCIPAL]) == "identity.outputs.principalId",
                f"module {call.name}: {APP_PRINCIPAL} is not the app identity",
            )
        if USER_PRINCIPAL in call.params:
            _expect(
                problems,
                render(call.params[USER_PRINCIPAL]) == "principalId"
                and render(call.params.get(USER_DATA_FLAG)) == USER_DATA_FLAG,
                f"module {call.name}: user roles must come from principalId and {USER_DATA_FLAG}",
            )
    return problems


@STRUCTURAL_CHECKS.add
def check_function_app(root: Path) -> Problems:
    infra, problems = parse(root), []
    plan, site = infra.one("Microsoft.Web/serverfarms"), infra.one("Microsoft.Web/sites")
    _expect(
        problems,
        plan.body.get("sku") == {"name": "FC1", "tier": "FlexConsumption"},
        "plan must be Flex Consumption (FC1)",
    )
    _expect(problems, plan.properties.get("reserved") is True, "plan must be Linux (reserved)")
    _expect(problems, "linux" in str(site.body.get("kind")), "site kind must be functionapp,linux")
    config = site.properties.get("functionAppConfig", {})
    runtime = config.get("runtime", {})
    _expect(
        problems,
        runtime.get("name") == "python"
        and infra.resolve(site.file, runtime.get("version")) == "3.11",
        f"runtime must be python 3.11, is {render(runtime)}",
    )
    _expect(
        problems,
        render(site.properties.get("serverFarmId")) == "plan.id",
        "site must run on the FC1 plan",
    )
    _expect(problems, site.properties.get("httpsOnly") is True, "site must be HTTPS only")
    _expect(
        problems,
        render(site.properties.get("virtualNetworkSubnetId")) == "appSubnetId",
        "site must be VNet integrated (virtualNetworkSubnetId)",
    )
    storage = config.get("deployment", {}).get("storage", {})
    auth = storage.get("authentication", {})
    _expect(
        problems,
        storage.get("type") == "blobContainer"
        and auth.get("type") == "UserAssignedIdentity"
        and render(auth.get("userAssignedIdentityResourceId")) == "identityId",
        "deployment storage must use the user-assigned identity",
    )
    identity = site.body.get("identity", {})
    _expect(
        problems,
        identity.get("type") == "UserAssigned"
        and list(unquoted_keys(identity.get("userAssignedIdentities", {}))) == ["${identityId}"],
        "site must run as the user-assigned identity",
    )
    unsupported = sorted(FLEX_UNSUPPORTED_SETTINGS & set(app_settings(infra)))
    _expect(problems, not unsupported, f"settings Flex Consumption does not support: {unsupported}")
    module = "modules/function-app.bicep"
    _expect(
        problems,
        _passes(infra, module, "identityId") == "identity.outputs.id",
        "identityId is not the app identity",
    )
    _expect(
        problems,
        _passes(infra, module, "deploymentContainerUrl")
        == "storage.outputs.deploymentContainerUrl",
        "deployment container is not in the app's storage account",
    )
    _expect(
        problems,
        "azd-service-name: api" in _passes(infra, module, "tags"),
        "function app must carry the azd-service-name tag 'api'",
    )
    return problems


@STRUCTURAL_CHECKS.add
def check_storage(root: Path) -> Problems:
    infra, problems = parse(root), []
    account = infra.one("Microsoft.Storage/storageAccounts")
    props = account.properties
    _expect(
        problems,
        props.get("allowSharedKeyAccess") is False,
        "storage must disable shared key access",
    )
    _expect(
        problems,
        props.get("allowBlobPublicAccess") is False,
        "storage must disable public blob access",
    )
    _expect(problems, props.get("minimumTlsVersion") == "TLS1_2", "storage must require TLS 1.2")
    _expect(problems, props.get("supportsHttpsTrafficOnly") is True, "storage must be HTTPS only")
    _expect(
        problems,
        props.get("networkAcls", {}).get("defaultAction") == "Deny",
        "storage firewall must deny by default",
    )
    # Code deployment goes through the app, not the public endpoint: no opening at all.
    acls = props.get("networkAcls", {})
    _expect(
        problems,
        props.get("publicNetworkAccess") == "Disabled",
        f"storage public access must be Disabled, is {render(props.get('publicNetworkAccess'))}",
    )
    _expect(
        problems,
        acls.get("bypass") == "None",
        f"storage firewall bypass must be None, is {render(acls.get('bypass'))}",
    )
    _expect(
        problems,
        not acls.get("ipRules") and not acls.get("virtualNetworkRules"),
        "storage firewall must not admit IPs or subnets",
    )
    queues = infra.one("Microsoft.Storage/storageAccounts/queueServices/queues")
    queue_names = (
        [render(q) for q in infra.resolve(queues.file, queues.loop["detail"]["array_name"])]
        if queues.loop
        else []
    )
    main = infra.main
    resolved_queues = []
    for name in queue_names:
        for param in ("embeddingQueueName", "classificationQueueName"):
            name = name.replace(
                f"${{{param}}}", str(main.param_default(_passes(infra, queues.file, param)))
            )
            if name == param:
                name = str(main.param_default(_passes(infra, queues.file, param)))
        resolved_queues.append(name)
    for queue in (
        "embedding-jobs",
        "embedding-jobs-poison",
        "classification-jobs",
        "classification-jobs-poison",
    ):
        _expect(
            problems, queue in resolved_queues, f"queue {queue} missing (have {resolved_queues})"
        )
    containers = infra.one("Microsoft.Storage/storageAccounts/blobServices/containers")
    container_names = (
        infra.resolve(containers.file, containers.loop["detail"]["array_name"])
        if containers.loop
        else []
    )
    _expect(
        problems,
        containers.properties.get("publicAccess") == "None",
        "blob containers must be private",
    )
    for param, default in (
        ("claimCheckContainerName", "job-payloads"),
        ("deploymentContainerName", None),
    ):
        _expect(problems, param in container_names, f"container {param} missing")
        if default:
            _expect(
                problems,
                main.param_default(_passes(infra, containers.file, param)) == default,
                f"{param} must default to {default}",
            )
    return problems


@STRUCTURAL_CHECKS.add
def check_cosmos(root: Path) -> Problems:
    infra, problems = parse(root), []
    account = infra.one("Microsoft.DocumentDB/databaseAccounts")
    props = account.properties
    _expect(
        problems,
        {"name": "EnableServerless"} in props.get("capabilities", []),
        "Cosmos DB must be serverless",
    )
    _expect(problems, props.get("disableLocalAuth") is True, "Cosmos DB local auth must be off")
    _expect(
        problems,
        props.get("publicNetworkAccess") == "Disabled",
        "Cosmos DB public access must be off",
    )
    all_containers = infra.resources(
        "Microsoft.DocumentDB/databaseAccounts/sqlDatabases/containers"
    )
    looped = [c for c in all_containers if c.loop]
    _expect(problems, len(looped) == 1, "the plain containers are declared in one loop")
    containers = looped[0] if looped else all_containers[0]
    declared = (
        infra.resolve(containers.file, containers.loop["detail"]["array_name"])
        if containers.loop
        else []
    )
    found = {c["name"]: c["partitionKey"] for c in declared}
    # Containers with a policy of their own (results: vector search) are declared one by one.
    for single in all_containers:
        if single.loop:
            continue
        resource = single.properties.get("resource", {})
        paths = resource.get("partitionKey", {}).get("paths", [])
        single_name = infra.resolve(single.file, render(resource.get("id")))
        _expect(
            problems,
            infra.resolve(single.file, render(single.body.get("name"))) == single_name,
            f"{single}: name and resource id differ",
        )
        found[str(single_name)] = paths[0] if len(paths) == 1 else render(paths)
    _expect(
        problems, found == COSMOS_CONTAINERS, f"Cosmos containers {found} != {COSMOS_CONTAINERS}"
    )
    item = containers.loop["detail"]["item_name"] if containers.loop else ""
    resource = containers.properties.get("resource", {})
    _expect(
        problems,
        render(resource.get("partitionKey", {}).get("paths")) == f"[{item}.partitionKey]"
        and render(resource.get("id")) == f"{item}.name",
        "containers must be created with their partition keys",
    )
    _expect(
        problems,
        infra.main.param_default(_passes(infra, account.file, "databaseName")) == "aoai",
        "Cosmos database must default to aoai",
    )
    return problems


@STRUCTURAL_CHECKS.add
def check_openai(root: Path) -> Problems:
    """Every Azure OpenAI account (the first and the spill-over): Entra ID only, private
    only. The first holds the chat, embedding and GlobalBatch deployments."""
    infra, problems = parse(root), []
    for account in infra.resources("Microsoft.CognitiveServices/accounts"):
        props = account.properties
        _expect(problems, account.body.get("kind") == "OpenAI", f"{account}: kind must be OpenAI")
        _expect(
            problems,
            props.get("customSubDomainName") not in (None, ""),
            f"{account}: needs a custom subdomain",
        )
        _expect(
            problems,
            props.get("disableLocalAuth") is True,
            f"{account}: Azure OpenAI local auth must be off",
        )
        _expect(
            problems,
            props.get("publicNetworkAccess") == "Disabled",
            f"{account}: Azure OpenAI public access must be off",
        )
    all_deployments = infra.resources("Microsoft.CognitiveServices/accounts/deployments")
    deployments = [d for d in all_deployments if d.file == OPENAI_FILE]
    skus = sorted(
        str(infra.resolve(d.file, d.body.get("sku", {}).get("name", ""))) for d in deployments
    )
    _expect(
        problems,
        len(deployments) == 3 and "GlobalBatch" in skus,
        f"need chat, embedding, GlobalBatch deployments: {skus}",
    )
    main_params = infra.main.params
    for d in all_deployments:
        capacity = render(d.body.get("sku", {}).get("capacity"))
        passed = _passes(infra, d.file, capacity)
        _expect(
            problems,
            capacity in infra.files[d.file].params
            and main_params.get(passed, {}).get("type") == "int",
            f"{d}: capacity must be an int parameter of main.bicep",
        )
    # One at a time per account: each deployment after the first waits for another.
    for file in sorted({d.file for d in all_deployments}):
        independent = [
            d.name for d in all_deployments if d.file == file and not d.body.get("dependsOn")
        ]
        _expect(
            problems,
            len(independent) == 1,
            f"{file}: deployments must be created one at a time: {independent} start together",
        )
    return problems


@STRUCTURAL_CHECKS.add
def check_spillover_openai(root: Path) -> Problems:
    """The optional second account (issue 13): off by default; when on, reachable only through
    its private endpoint (with its DNS zone group), the app identity holds Cognitive Services
    OpenAI User on it, and AOAI_BACKENDS names both accounts."""
    infra, problems = parse(root), []
    main = infra.main
    _expect(
        problems,
        main.params.get(SPILLOVER_SWITCH, {}).get("type") == "bool"
        and main.param_default(SPILLOVER_SWITCH) is False,
        f"{SPILLOVER_SWITCH} must be a bool parameter defaulting to false",
    )
    calls = [m for m in main.modules() if m.path == SPILLOVER_FILE]
    _expect(
        problems,
        len(calls) == 1 and render(calls[0].condition) == SPILLOVER_SWITCH,
        f"main.bicep must call {SPILLOVER_FILE} once, if ({SPILLOVER_SWITCH})",
    )
    mine = [r for r in infra.resources() if r.file == SPILLOVER_FILE]
    accounts = [r for r in mine if r.type == "Microsoft.CognitiveServices/accounts"]
    if len(accounts) != 1:
        return [*problems, f"{SPILLOVER_FILE} must declare one Azure OpenAI account"]
    account = accounts[0].name
    endpoints = [
        pe
        for pe in mine
        if pe.type == "Microsoft.Network/privateEndpoints"
        and any(
            render(c["properties"].get("privateLinkServiceId")) == f"{account}.id"
            and c["properties"].get("groupIds") == ["account"]
            for c in pe.properties.get("privateLinkServiceConnections", [])
        )
    ]
    _expect(problems, len(endpoints) == 1, "the spill-over account needs its private endpoint")
    zone_groups = [
        g
        for g in mine
        if g.type == "Microsoft.Network/privateEndpoints/privateDnsZoneGroups"
        and any(render(g.body.get("parent")) == pe.name for pe in endpoints)
        and [
            render(c["properties"]["privateDnsZoneId"])
            for c in g.properties.get("privateDnsZoneConfigs", [])
        ]
        == ["openAiZoneId"]
    ]
    _expect(
        problems,
        len(zone_groups) == 1
        and _passes(infra, SPILLOVER_FILE, "openAiZoneId") == "privateDns.outputs.openAiZoneId",
        "the spill-over private endpoint needs a zone group in the openai private DNS zone",
    )
    roles = [
        ra
        for ra in mine
        if ra.type == "Microsoft.Authorization/roleAssignments"
        and render(ra.body.get("scope")) == account
        and render(ra.properties.get("principalId")) == APP_PRINCIPAL
        and _role_of(infra, SPILLOVER_FILE, _subscription_role(ra))[1]
        == ROLE_IDS["cognitiveServicesOpenAiUser"]
    ]
    _expect(
        problems,
        len(roles) == 1,
        "the app identity needs Cognitive Services OpenAI User on the spill-over account",
    )
    settings = app_settings(infra)
    _expect(
        problems,
        render(settings.get("AOAI_BACKENDS")) == f"{SPILLOVER_SWITCH} ? string(aoaiBackends) : ",
        f"AOAI_BACKENDS must be set from aoaiBackends when {SPILLOVER_SWITCH} is on",
    )
    backends = render(main.variables.get("aoaiBackends"))
    for endpoint in ("openAi.outputs.endpoint", "openAiSpillover.outputs.endpoint"):
        _expect(problems, endpoint in backends, f"aoaiBackends must name {endpoint}")
    return problems


def _subscription_role(ra: Resource) -> str:
    """`roles.x` of `subscriptionResourceId('...roleDefinitions', roles.x)`, else ''."""
    match = re.fullmatch(
        r"subscription_resource_id\(Microsoft\.Authorization/roleDefinitions, (.+)\)",
        render(ra.properties.get("roleDefinitionId")),
    )
    return match.group(1) if match else ""


@STRUCTURAL_CHECKS.add
def check_monitoring(root: Path) -> Problems:
    infra, problems = parse(root), []
    workspace = infra.one("Microsoft.OperationalInsights/workspaces")
    insights = infra.one("Microsoft.Insights/components")
    _expect(
        problems,
        render(insights.properties.get("WorkspaceResourceId")) == f"{workspace.name}.id",
        "Application Insights must be workspace-based",
    )
    _expect(
        problems,
        insights.properties.get("DisableLocalAuth") is True,
        "Application Insights must require Entra auth",
    )
    diagnostics = infra.resources("Microsoft.Insights/diagnosticSettings")
    accounts = infra.resources("Microsoft.CognitiveServices/accounts")
    on_openai = []
    for account in accounts:
        mine = [
            d
            for d in diagnostics
            if account.name == render(d.body.get("scope")) and d.file == account.file
        ]
        _expect(problems, len(mine) == 1, f"{account}: Azure OpenAI needs diagnostic settings")
        on_openai += mine
    for d in on_openai:
        logs = {entry["category"] for entry in d.properties.get("logs", []) if entry.get("enabled")}
        metrics = {
            entry["category"] for entry in d.properties.get("metrics", []) if entry.get("enabled")
        }
        _expect(
            problems,
            "RequestResponse" in logs and "AllMetrics" in metrics,
            "diagnostics: RequestResponse + AllMetrics",
        )
        _expect(
            problems,
            _passes(infra, d.file, render(d.properties.get("workspaceId")))
            == "monitoring.outputs.workspaceId",
            "diagnostics must go to the Log Analytics workspace",
        )
    alerts = infra.resources("Microsoft.Insights/metricAlerts")
    criteria = [c for a in alerts for c in a.properties.get("criteria", {}).get("allOf", [])]
    throttling = [
        c
        for c in criteria
        if c.get("metricName") == "AzureOpenAIRequests"
        and any(
            dim.get("name") == "StatusCode" and "429" in dim.get("values", [])
            for dim in c.get("dimensions", [])
        )
    ]
    errors = [c for c in criteria if c.get("metricName") in ("ServerErrors", "requests/failed")]
    _expect(problems, bool(throttling), "need a metric alert on Azure OpenAI throttling (429)")
    _expect(problems, bool(errors), "need a metric alert on errors")
    groups = infra.resources("Microsoft.Insights/actionGroups")
    _expect(
        problems,
        len(groups) == 1 and groups[0].condition is not None,
        "the action group must be optional",
    )
    return problems


def app_settings(infra: Infra) -> dict[str, Any]:
    """The function app's settings: main.bicep's object, as the function-app module applies it."""
    module = "modules/function-app.bicep"
    config = [
        r
        for r in infra.resources("Microsoft.Web/sites/config")
        if r.file == module and r.body.get("name") == "appsettings"
    ]
    assert len(config) == 1, "the function app needs one appsettings config resource"
    assert (
        render(config[0].properties) == "appSettings"
        or config[0].body.get("properties") == "appSettings"
    )
    passed = infra.module_call(module).params["appSettings"]
    value = infra.resolve(MAIN_FILE, passed)
    assert isinstance(value, dict), f"appSettings must be an object, is {render(passed)}"
    return unquoted_keys(value)


def check_required_settings(root: Path, required: frozenset[str]) -> Problems:
    infra, problems = parse(root), []
    settings = app_settings(infra)
    missing = sorted(required - set(settings))
    _expect(
        problems, not missing, f"settings the app requires but the Bicep does not set: {missing}"
    )
    expected_literals = {
        "AzureWebJobsStorage__credential": "managedidentity",
        "PYTHON_ENABLE_INIT_INDEXING": "1",
        "AZURE_CLIENT_ID": "identity.outputs.clientId",
        "AzureWebJobsStorage__clientId": "identity.outputs.clientId",
        "APPLICATIONINSIGHTS_AUTHENTICATION_STRING": (
            "ClientId=${identity.outputs.clientId};Authorization=AAD"
        ),
        # The app's traces are sampled (docs/telemetry.md): a ratio of those without a caller's.
        "OTEL_TRACES_SAMPLER": "parentbased_traceidratio",
        "OTEL_TRACES_SAMPLER_ARG": "traceSampleRatio",
    }
    for name, value in expected_literals.items():
        _expect(
            problems,
            render(settings.get(name)) == value,
            f"{name} must be {value}, is {render(settings.get(name))}",
        )
    defaults = {
        "EMBEDDING_QUEUE": "embedding-jobs",
        "CLASSIFICATION_QUEUE": "classification-jobs",
        "OUTBOX_QUEUE": "cosmos-outbox",
        "CLAIM_CHECK_CONTAINER": "job-payloads",
        "BATCH_POLL_SCHEDULE": "0 */5 * * * *",
        "POISON_SWEEP_SCHEDULE": "0 */1 * * * *",
    }
    for name, value in defaults.items():
        _expect(
            problems,
            infra.resolve(MAIN_FILE, settings.get(name)) == value,
            f"{name} must default to {value}",
        )
    for suffix in ("blob", "queue", "table"):
        name = f"AzureWebJobsStorage__{suffix}ServiceUri"
        _expect(
            problems,
            render(settings.get(name)) == f"storage.outputs.{suffix}Endpoint",
            f"{name} must be the storage endpoint",
        )
    return problems


# Flex Consumption sets the runtime in functionAppConfig and has no Azure Files content share.
FLEX_UNSUPPORTED_SETTINGS = frozenset(
    {
        "FUNCTIONS_WORKER_RUNTIME",
        "FUNCTIONS_EXTENSION_VERSION",
        "FUNCTIONS_WORKER_RUNTIME_VERSION",
        "WEBSITE_RUN_FROM_PACKAGE",
        "WEBSITE_CONTENTAZUREFILECONNECTIONSTRING",
        "WEBSITE_CONTENTSHARE",
        "AzureWebJobsStorage",
    }
)

SECRET_PATTERNS = [
    r"AccountKey=",
    r"listKeys",
    r"listConnectionStrings",
    r"listAccountSas",
    r"listServiceSas",
    r"SharedAccessSignature",
    r"\bsig=",
    r"primaryMasterKey",
    r"InstrumentationKey=",
]
SECRET_NAME = re.compile(r"key|password|secret|token|sas", re.IGNORECASE)


@STRUCTURAL_CHECKS.add
def check_no_secrets(root: Path) -> Problems:
    """No app setting carries a secret; no Bicep reads a key at all."""
    infra, problems = parse(root), []
    text = infra.text()
    for pattern in SECRET_PATTERNS:
        _expect(
            problems, re.search(pattern, text, re.IGNORECASE) is None, f"Bicep contains {pattern!r}"
        )
    settings = app_settings(infra)
    main = infra.main
    secure = {
        name
        for name, p in main.params.items()
        if any(d["type"] == "secure" for d in p["decorators"])
    }
    for name, value in settings.items():
        rendered = render(value)
        for pattern in SECRET_PATTERNS:
            _expect(
                problems,
                re.search(pattern, rendered, re.IGNORECASE) is None,
                f"setting {name} carries {pattern!r}",
            )
        referenced = set(re.findall(r"[A-Za-z_]\w*", rendered))
        for param in referenced & set(main.params):
            _expect(
                problems,
                param not in secure and not SECRET_NAME.search(param),
                f"setting {name} comes from parameter {param}, which looks like a secret",
            )
    # The App Insights connection string is only an identifier when local auth is off.
    if "APPLICATIONINSIGHTS_CONNECTION_STRING" in settings:
        insights = infra.one("Microsoft.Insights/components")
        _expect(
            problems,
            insights.properties.get("DisableLocalAuth") is True,
            "APPLICATIONINSIGHTS_CONNECTION_STRING is a secret unless App Insights local auth "
            "is disabled",
        )
    return problems
