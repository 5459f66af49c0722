"""Structural checks of `infra/` for issue 11: what only fails when ARM deploys.

Same shape as `checks.py` (one function per requirement, taking an infra directory and returning
the problems found), so `test_mutations.py` breaks a copy and shows each check catching it.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from pathlib import Path
from typing import Any

from devstack.aoai_simulator.config import default_deployments
from shared.core.settings import DEFAULT_PRICES
from tests.infra.bicep import Infra, Resource, parse, render
from tests.infra.checks import MAIN_FILE, Checks, Problems, _expect, _passes

DEPLOY_CHECKS = Checks()

OPENAI_FILE = "modules/openai.bicep"
SPILLOVER_FILE = "modules/openai-spillover.bicep"
COSMOS_FILE = "modules/cosmos.bicep"

# (model, version) -> (closed to new customers, retired). A GA version takes new customers
# for 12 months after its release ("Deprecation date (no new customers)" in Microsoft's
# retirement table, MicrosoftDocs/azure-ai-docs model-retirements, 2025-12-16), and retires
# per the Foundry retirement schedule (concepts-model-retirement-schedule-content.md,
# 2026-07-07). A fresh subscription is a new customer: a default whose first date is less
# than NEW_CUSTOMER_MARGIN away fails here before it fails `azd up` (the preprovision hook
# checks the live answer of the region at provision time).
MODEL_DATES: dict[tuple[str, str], tuple[dt.date | None, dt.date]] = {
    ("gpt-5.1", "2025-11-13"): (dt.date(2026, 11, 13), dt.date(2027, 5, 15)),
    ("gpt-5.4", "2026-03-05"): (dt.date(2027, 3, 5), dt.date(2027, 3, 5)),
    ("gpt-5.4-mini", "2026-03-17"): (dt.date(2027, 3, 17), dt.date(2027, 3, 18)),
    ("gpt-5.5", "2026-04-24"): (dt.date(2027, 4, 23), dt.date(2027, 4, 23)),
    ("gpt-5-mini", "2025-08-07"): (dt.date(2026, 8, 7), dt.date(2027, 2, 6)),
    ("gpt-4o", "2024-08-06"): (dt.date(2025, 8, 6), dt.date(2026, 10, 1)),
    ("gpt-4o", "2024-11-20"): (dt.date(2025, 11, 20), dt.date(2026, 10, 1)),
    ("gpt-4.1", "2025-04-14"): (dt.date(2026, 4, 14), dt.date(2026, 10, 14)),
    ("text-embedding-3-small", "1"): (None, dt.date(2027, 4, 15)),
    ("text-embedding-3-large", "1"): (None, dt.date(2027, 4, 15)),
}
NEW_CUSTOMER_MARGIN = dt.timedelta(days=30)

# Each deployment: (prefix of its main.bicep parameters, azd variable prefix).
DEPLOYMENTS = {"chat": "CHAT", "embedding": "EMBEDDING", "batch": "BATCH"}

# The Batch API path's data actions: files up/down/delete, batches create/read/cancel.
BATCH_DATA_ACTIONS_REQUIRED = frozenset(
    {
        "Microsoft.CognitiveServices/accounts/OpenAI/files/read",
        "Microsoft.CognitiveServices/accounts/OpenAI/files/write",
        "Microsoft.CognitiveServices/accounts/OpenAI/files/delete",
        "Microsoft.CognitiveServices/accounts/OpenAI/batch-jobs/write",
    }
)
BATCH_DATA_ACTIONS_ALLOWED = BATCH_DATA_ACTIONS_REQUIRED | {
    "Microsoft.CognitiveServices/accounts/OpenAI/batch-jobs/read",
    "Microsoft.CognitiveServices/accounts/OpenAI/batches/read",
    "Microsoft.CognitiveServices/accounts/OpenAI/batches/cancel/action",
}

WORKBOOK_ITEMS = {"tokens-by-deployment", "throttled-requests", "filtered-requests", "job-failures"}


def parameters_json(root: Path) -> dict[str, str]:
    """main.parameters.json: Bicep parameter -> its value text (`${VAR=default}`)."""
    data = json.loads((root / "main.parameters.json").read_text())
    return {name: str(entry["value"]) for name, entry in data["parameters"].items()}


def azd_variable(value: str) -> tuple[str, str | None]:
    """(`VAR`, default or None) of a `${VAR=default}` / `${VAR}` value."""
    match = re.fullmatch(r"\$\{(\w+)(?:=(.*))?\}", value)
    return (match.group(1), match.group(2)) if match else ("", None)


def _depends_on(resource: Resource) -> list[str]:
    return [render(d) for d in resource.body.get("dependsOn", []) or []]


def _main_default(infra: Infra, name: str) -> Any:
    return infra.resolve(MAIN_FILE, infra.main.param_default(name))


@DEPLOY_CHECKS.add
def check_models(root: Path, today: dt.date | None = None) -> Problems:
    """Model defaults are current, reach the deployments, and azd can change each of them."""
    infra, problems = parse(root), []
    today = today or dt.date.today()
    params = parameters_json(root)
    main = infra.main
    for prefix, var in DEPLOYMENTS.items():
        model = _main_default(infra, f"{prefix}ModelName")
        version = _main_default(infra, f"{prefix}ModelVersion")
        dates = MODEL_DATES.get((str(model), str(version)))
        _expect(
            problems,
            dates is not None,
            f"{prefix}: {model} {version} is not in MODEL_DATES (add it with its dates)",
        )
        closes, retires = dates or (None, None)
        _expect(
            problems,
            closes is None or closes > today + NEW_CUSTOMER_MARGIN,
            f"{prefix}: {model} {version} closes to new customers {closes}: a new "
            "subscription's azd up is refused",
        )
        _expect(
            problems,
            retires is None or retires > today,
            f"{prefix}: {model} {version} retires {retires}: new deployments are refused",
        )
        for suffix, azd in (
            ("ModelName", "MODEL_NAME"),
            ("ModelVersion", "MODEL_VERSION"),
            ("SkuName", "SKU"),
            ("Capacity", "CAPACITY"),
        ):
            param = f"{prefix}{suffix}"
            variable, default = azd_variable(params.get(param, ""))
            _expect(
                problems,
                variable == f"{var}_{azd}",
                f"main.parameters.json must map {param} to ${{{var}_{azd}=...}}",
            )
            _expect(
                problems,
                default == str(main.param_default(param)),
                f"{var}_{azd} defaults to {default} in main.parameters.json, "
                f"{main.param_default(param)} in main.bicep",
            )
            _expect(
                problems,
                _passes(infra, OPENAI_FILE, param) == param,
                f"main.bicep does not pass {param} to the openai module",
            )
    by_param = {}
    for d in infra.resources("Microsoft.CognitiveServices/accounts/deployments"):
        if d.file == OPENAI_FILE:
            match = re.search(r"name: (\w+)ModelName", render(d.properties.get("model")))
            by_param[match.group(1) if match else ""] = d
    for prefix in DEPLOYMENTS:
        deployment = by_param.get(prefix)
        if deployment is None:
            problems.append(f"no deployment takes its model from {prefix}ModelName")
            continue
        # Issue 20: the version is optional; empty lets the service pick the default version.
        expected = (
            f"union({{format: OpenAI, name: {prefix}ModelName}}, empty({prefix}ModelVersion) "
            f"? {{}} : {{version: {prefix}ModelVersion}})"
        )
        _expect(
            problems,
            render(deployment.properties.get("model")) == expected
            and render(deployment.body.get("sku", {}).get("name")) == f"{prefix}SkuName",
            f"{deployment}: model must be {expected} and the SKU {prefix}SkuName",
        )
    # The local stack runs the same models, and usage prices them.
    local = {(d.model, d.model_version) for d in default_deployments()}
    for prefix in DEPLOYMENTS:
        pair = (
            str(_main_default(infra, f"{prefix}ModelName")),
            str(_main_default(infra, f"{prefix}ModelVersion")),
        )
        _expect(problems, pair in local, f"the simulator has no default deployment of {pair}")
        _expect(problems, pair[0] in DEFAULT_PRICES, f"DEFAULT_PRICES has no price for {pair[0]}")
    return problems


@DEPLOY_CHECKS.add
def check_openai_ordering(root: Path) -> Problems:
    """The private endpoint and diagnostic settings wait for the last model deployment, on
    each account (the first and the spill-over)."""
    problems: Problems = []
    for file in (OPENAI_FILE, SPILLOVER_FILE):
        problems += _ordering(parse(root), file)
    return problems


def _ordering(infra: Infra, file: str) -> Problems:
    problems: Problems = []
    deployments = {
        d.name: d
        for d in infra.resources("Microsoft.CognitiveServices/accounts/deployments")
        if d.file == file
    }
    waited_for = {dep for d in deployments.values() for dep in _depends_on(d)}
    last = sorted(set(deployments) - waited_for)
    _expect(problems, len(last) == 1, f"deployments must form one chain, ends: {last}")
    if len(last) != 1:
        return problems
    for type_ in ("Microsoft.Network/privateEndpoints", "Microsoft.Insights/diagnosticSettings"):
        for resource in infra.resources(type_):
            if resource.file != file:
                continue
            _expect(
                problems,
                last[0] in _depends_on(resource),
                f"{resource} must dependsOn the last deployment {last[0]} "
                "(AccountProvisioningStateInvalid otherwise)",
            )
    return problems


@DEPLOY_CHECKS.add
def check_cosmos_ordering(root: Path) -> Problems:
    """SQL role assignments wait for every container and for each other (412 otherwise)."""
    infra, problems = parse(root), []
    containers = {
        c.name
        for c in infra.resources("Microsoft.DocumentDB/databaseAccounts/sqlDatabases/containers")
        if c.file == COSMOS_FILE
    }
    assignments = [
        r
        for r in infra.resources("Microsoft.DocumentDB/databaseAccounts/sqlRoleAssignments")
        if r.file == COSMOS_FILE
    ]
    names = {a.name for a in assignments}
    for assignment in assignments:
        missing = sorted(containers - set(_depends_on(assignment)))
        _expect(problems, not missing, f"{assignment} must dependsOn containers {missing}")
    first = [a.name for a in assignments if not names & set(_depends_on(a))]
    _expect(
        problems,
        len(first) <= 1,
        f"SQL role assignments must be chained one after another; {first} start together",
    )
    return problems


@DEPLOY_CHECKS.add
def check_principal_type(root: Path) -> Problems:
    """The deploying principal's type is a parameter (AZURE_PRINCIPAL_TYPE), never 'User'."""
    infra, problems = parse(root), []
    main = infra.main
    principal_type = main.params.get("principalType", {})
    allowed = [
        d["argument"] for d in principal_type.get("decorators", []) if d["type"] == "allowed"
    ]
    _expect(
        problems,
        principal_type.get("default") == "User" and "ServicePrincipal" in (allowed or [[]])[0],
        "main.bicep needs param principalType (default User, ServicePrincipal allowed)",
    )
    _expect(
        problems,
        azd_variable(parameters_json(root).get("principalType", ""))
        == ("AZURE_PRINCIPAL_TYPE", "User"),
        "main.parameters.json must map principalType to ${AZURE_PRINCIPAL_TYPE=User}",
    )
    for ra in infra.resources("Microsoft.Authorization/roleAssignments"):
        principal = render(ra.properties.get("principalId"))
        kind = render(ra.properties.get("principalType"))
        if principal == "userPrincipalId":
            _expect(
                problems,
                kind == "userPrincipalType" and "userPrincipalType" in infra.files[ra.file].params,
                f"{ra}: principalType must be the userPrincipalType parameter, is {kind}",
            )
            _expect(
                problems,
                _passes(infra, ra.file, "userPrincipalType") == "principalType",
                f"main.bicep must pass principalType to {ra.file}",
            )
        else:
            _expect(
                problems,
                kind == "ServicePrincipal",
                f"{ra}: the app identity is a ServicePrincipal",
            )
    return problems


@DEPLOY_CHECKS.add
def check_batch_role(root: Path) -> Problems:
    """A custom role with only the files and batch data actions, for the app identity only."""
    infra, problems = parse(root), []
    roles = infra.resources("Microsoft.Authorization/roleDefinitions")
    _expect(problems, len(roles) == 1, f"one custom role expected, found {[str(r) for r in roles]}")
    if len(roles) != 1:
        return problems
    role = roles[0]
    _expect(problems, role.file == OPENAI_FILE, f"{role} belongs with the Azure OpenAI account")
    props = role.properties
    permissions = props.get("permissions", [])
    actions: set[str] = set()
    data_actions: set[str] = set()
    for permission in permissions:
        actions.update(permission.get("actions", []))
        resolved = infra.resolve(role.file, permission.get("dataActions", []))
        data_actions.update(str(a) for a in resolved)
        _expect(
            problems,
            not permission.get("notDataActions") and not permission.get("notActions"),
            f"{role}: grant exactly what is needed instead of subtracting",
        )
    _expect(problems, not actions, f"{role}: no control-plane actions, got {sorted(actions)}")
    _expect(
        problems,
        not any("*" in a for a in data_actions),
        f"{role}: no wildcard data actions: {sorted(data_actions)}",
    )
    missing = sorted(BATCH_DATA_ACTIONS_REQUIRED - data_actions)
    extra = sorted(data_actions - BATCH_DATA_ACTIONS_ALLOWED)
    _expect(problems, not missing, f"{role}: missing data actions {missing}")
    _expect(problems, not extra, f"{role}: data actions beyond the Batch API path {extra}")
    _expect(
        problems,
        render(props.get("assignableScopes")) == "[resource_group().id]",
        f"{role}: assignable in its resource group only",
    )
    assignments = [
        ra
        for ra in infra.resources("Microsoft.Authorization/roleAssignments")
        if render(ra.properties.get("roleDefinitionId")) == f"{role.name}.id"
    ]
    (account,) = [
        a for a in infra.resources("Microsoft.CognitiveServices/accounts") if a.file == OPENAI_FILE
    ]
    _expect(
        problems,
        len(assignments) == 1
        and render(assignments[0].properties.get("principalId")) == "appPrincipalId"
        and render(assignments[0].body.get("scope")) == account.name
        and assignments[0].condition is None,
        f"{role}: assigned once, to the app identity, on the Azure OpenAI account",
    )
    return problems


@DEPLOY_CHECKS.add
def check_vector_search(root: Path) -> Problems:
    """`results` can answer VectorDistance over `embedding` on a serverless account."""
    infra, problems = parse(root), []
    account = infra.one("Microsoft.DocumentDB/databaseAccounts")
    _expect(
        problems,
        {"name": "EnableNoSQLVectorSearch"} in account.properties.get("capabilities", []),
        "Cosmos DB needs the EnableNoSQLVectorSearch capability",
    )
    results = [
        c
        for c in infra.resources("Microsoft.DocumentDB/databaseAccounts/sqlDatabases/containers")
        if not c.loop
        and infra.resolve(c.file, render(c.properties.get("resource", {}).get("id"))) == "results"
    ]
    if len(results) != 1:
        return [*problems, "the results container must be declared on its own with its policies"]
    resource = results[0].properties["resource"]
    embeddings = resource.get("vectorEmbeddingPolicy", {}).get("vectorEmbeddings", [])
    policy = embeddings[0] if len(embeddings) == 1 else {}
    dimensions = render(policy.get("dimensions"))
    _expect(
        problems,
        policy.get("path") == "/embedding"
        and policy.get("dataType") == "float32"
        and policy.get("distanceFunction") == "cosine",
        f"results: vector policy must be /embedding, float32, cosine: {render(policy)}",
    )
    passed = _passes(infra, COSMOS_FILE, dimensions)
    _expect(
        problems,
        passed == "embeddingDimensions" and infra.main.param_default(passed) == 1536,
        "results: vector dimensions must be main.bicep's embeddingDimensions (1536)",
    )
    index = resource.get("indexingPolicy", {})
    _expect(
        problems,
        {"path": "/embedding", "type": "quantizedFlat"} in index.get("vectorIndexes", [])
        or {"path": "/embedding", "type": "diskANN"} in index.get("vectorIndexes", []),
        "results: needs a vector index on /embedding (quantizedFlat or diskANN: 1536 > flat's 505)",
    )
    _expect(
        problems,
        {"path": "/embedding/*"} in index.get("excludedPaths", []),
        "results: /embedding/* must be excluded from the regular index",
    )
    return problems


@DEPLOY_CHECKS.add
def check_budget(root: Path) -> Problems:
    """A monthly resource-group budget, amount and e-mail from azd, off without an e-mail."""
    infra, problems = parse(root), []
    budgets = infra.resources("Microsoft.Consumption/budgets")
    _expect(problems, len(budgets) == 1, "one Microsoft.Consumption/budgets expected")
    if len(budgets) != 1:
        return problems
    budget = budgets[0]
    props = budget.properties
    email_param = render(budget.condition).removeprefix("!empty(").removesuffix(")")
    _expect(
        problems,
        render(budget.condition) == f"!empty({email_param})" and email_param != "",
        f"{budget}: the budget must be off when no e-mail is given",
    )
    _expect(
        problems,
        props.get("timeGrain") == "Monthly" and props.get("category") == "Cost",
        "budget: monthly cost",
    )
    notifications = props.get("notifications", {})
    emails = {render(n.get("contactEmails")) for n in notifications.values()}
    _expect(
        problems,
        bool(notifications) and emails == {f"[{email_param}]"},
        f"budget: every notification mails {email_param}",
    )
    params = parameters_json(root)
    for bicep_param, variable in (
        (render(props.get("amount")), "BUDGET_AMOUNT"),
        (email_param, "BUDGET_ALERT_EMAIL"),
    ):
        main_param = _passes(infra, budget.file, bicep_param)
        _expect(
            problems,
            azd_variable(params.get(main_param, ""))[0] == variable,
            f"budget: {bicep_param} must come from ${{{variable}}} (main param {main_param!r})",
        )
    _expect(
        problems,
        azd_variable(params.get("budgetAlertEmail", ""))[1] == "",
        "budget: BUDGET_ALERT_EMAIL must default to empty (no budget)",
    )
    return problems


@DEPLOY_CHECKS.add
def check_workbook(root: Path) -> Problems:
    """The operator's workbook: tokens by deployment, throttling, filtering, job failures."""
    infra, problems = parse(root), []
    workbooks = infra.resources("Microsoft.Insights/workbooks")
    _expect(problems, len(workbooks) == 1, "one Azure Monitor workbook expected")
    if len(workbooks) != 1:
        return problems
    workbook = workbooks[0]
    data = render(workbook.properties.get("serializedData"))
    match = re.fullmatch(r"string\((\w+)\)", data)
    content = infra.resolve(workbook.file, match.group(1)) if match else {}
    items = {}
    for ref in content.get("items", []) if isinstance(content, dict) else []:
        item = infra.resolve(workbook.file, ref)
        if isinstance(item, dict):
            items[item.get("name")] = item
    missing = sorted(WORKBOOK_ITEMS - set(items))
    _expect(problems, not missing, f"workbook items missing: {missing}")
    tokens = items.get("tokens-by-deployment", {}).get("content", {})
    _expect(
        problems,
        all(m.get("splitBy") == "ModelDeploymentName" for m in tokens.get("metrics", []))
        and any("ProcessedPromptTokens" in m.get("metric", "") for m in tokens.get("metrics", [])),
        "workbook: tokens must be split by ModelDeploymentName",
    )

    def query(name: str) -> str:
        text = items.get(name, {}).get("content", {}).get("query", "")
        return str(infra.resolve(workbook.file, text))

    _expect(problems, '"429"' in query("throttled-requests"), "workbook: throttling is 429s")
    _expect(
        problems,
        '"content filter: "' in query("filtered-requests"),
        "workbook: filtered requests come from the app's 'content filter:' log line",
    )
    _expect(
        problems,
        "record_poison" in query("job-failures") and "Success == false" in query("job-failures"),
        "workbook: job failures count failed invocations and poisoned messages",
    )
    _expect(
        problems,
        _passes(infra, workbook.file, "openAiId") == "openAi.outputs.id"
        and _passes(infra, workbook.file, "workspaceId") == "monitoring.outputs.workspaceId",
        "workbook: must read the Azure OpenAI account and the Log Analytics workspace",
    )
    return problems
