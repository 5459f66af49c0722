"""Structural checks of the workbook charts and the alert that read the app's own metrics
(issue 25, item 3): every query over `AppMetrics` names only metrics and attribute keys that
`shared.telemetry.names` lists, its parentheses and quotes balance, and the four charts and the
429-share alert exist with the shape the docs describe.

Same shape as `checks.py` (one function per requirement, taking an infra directory and
returning the problems found), so `test_mutations.py` breaks a copy and shows each catching it.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from shared.core.settings import DEFAULT_PRICES, Settings
from shared.telemetry import names
from tests.infra.bicep import BicepFile, Infra, parse, render
from tests.infra.checks import Checks, Problems, _expect, _passes

TELEMETRY_CHECKS = Checks()

WORKBOOK_FILE = "modules/workbook.bicep"
ALERTS_FILE = "modules/alerts.bicep"
QUERY_FILES = (WORKBOOK_FILE, ALERTS_FILE)
APP_METRICS = "AppMetrics"
QUERY_RULE = "Microsoft.Insights/scheduledQueryRules"

# Workbook item -> (metric, attribute keys, literals) its query must use.
METRIC_CHARTS: dict[str, tuple[str, tuple[str, ...], tuple[str, ...]]] = {
    "team-tokens-cost": (
        names.TOKEN_USAGE,
        (names.TEAM, names.TOKEN_TYPE, names.DEPLOYMENT, names.ROUTE),
        (*(f'"{t}"' for t in names.TOKEN_TYPES), "bin(TimeGenerated, 1h)"),
    ),
    "throttle-share": (
        names.UPSTREAM_REQUESTS,
        (names.DEPLOYMENT, names.BACKEND, names.OUTCOME),
        ('outcome == "throttled"',),
    ),
    "time-to-first-token": (
        names.TIME_TO_FIRST_CHUNK,
        (names.ROUTE,),
        ('"chat"', '"gateway"', "ItemCount, 50)", "ItemCount, 95)"),
    ),
    "job-items": (
        names.JOB_ITEMS,
        (names.OUTCOME, names.JOB_KIND),
        ("bin(TimeGenerated, 1m)",),
    ),
}

_INTERPOLATION = re.compile(r"\$\{(\w+)\}")
_NAME_IS = re.compile(r'\bName\s*==\s*"([^"]*)"')
_NAME_IN = re.compile(r"\bName\s+in\s*\(([^)]*)\)")
_QUOTED = re.compile(r'"([^"]*)"')
_PROPERTY_INDEX = re.compile(r"""\bProperties\s*\[\s*(["'])(.*?)\1\s*\]""")
_PROPERTY_DOT = re.compile(r"\bProperties\.([A-Za-z_]\w*)")
_ALIAS = re.compile(r"""\b(\w+)\s*=\s*tostring\(\s*Properties\s*\[\s*(["'])(.*?)\2\s*\]\s*\)""")
_PRICES = re.compile(r"datatable\([^)]*\)\s*\[([^\]]*)\]")
_BATCH_DISCOUNT = re.compile(r"\blet batchDiscount = ([0-9.]+);")


def expand(bicep: BicepFile, text: str, depth: int = 0) -> str:
    """`text` with `${variable}` replaced by the same file's string variables (other
    interpolations, of parameters, stay as they are)."""

    def value(match: re.Match[str]) -> str:
        found = bicep.variables.get(match.group(1))
        if isinstance(found, str) and depth < 10:
            return expand(bicep, found, depth + 1)
        return match.group(0)

    return _INTERPOLATION.sub(value, text)


def _strings(node: Any) -> list[str]:
    if isinstance(node, str):
        return [node]
    if isinstance(node, dict):
        return [s for value in node.values() for s in _strings(value)]
    if isinstance(node, list):
        return [s for value in node for s in _strings(value)]
    return []


def app_metrics_queries(infra: Infra) -> dict[str, str]:
    """Every string in the workbook and alerts modules (variables and resource bodies) that
    reads AppMetrics, expanded: `file:variable` (or `file:resource`) -> query text."""
    found: dict[str, str] = {}
    for file in QUERY_FILES:
        bicep = infra.files.get(file)
        if bicep is None:
            continue
        sources = [(name, value) for name, value in bicep.variables.items()]
        sources += [(r.name, r.body) for r in bicep.resources()]
        for label, node in sources:
            for i, text in enumerate(_strings(node)):
                query = expand(bicep, text)
                if APP_METRICS in query:
                    found[f"{file}:{label}" + (f"#{i}" if i else "")] = query
    return found


def metric_names(query: str) -> list[str]:
    """Metric names a query filters on: `Name == "x"` and `Name in ("x", "y")`."""
    found = _NAME_IS.findall(query)
    for group in _NAME_IN.findall(query):
        found += _QUOTED.findall(group)
    return found


def attribute_keys(query: str) -> list[str]:
    """Attribute keys a query reads: `Properties["k"]` and `Properties.k` (a dotted access
    reads its first segment only, so `Properties.app.team` is the key `app`, which is wrong)."""
    return [key for _, key in _PROPERTY_INDEX.findall(query)] + _PROPERTY_DOT.findall(query)


# Attributes with a fixed set of values (shared.telemetry.names): a query comparing one with
# anything else matches nothing, silently.
ATTRIBUTE_VALUES = {
    names.TOKEN_TYPE: names.TOKEN_TYPES,
    names.OUTCOME: names.OUTCOMES,
    names.ROUTE: names.ROUTES,
}


def compared_values(query: str) -> list[tuple[str, str]]:
    """(attribute key, value) for each `alias == "v"` or `alias in ("v", ...)` where the query
    bound `alias = tostring(Properties["key"])`."""
    found = []
    for alias, _, key in _ALIAS.findall(query):
        for value in re.findall(rf'\b{alias}\s*==\s*"([^"]*)"', query):
            found.append((key, value))
        for group in re.findall(rf"\b{alias}\s+in\s*\(([^)]*)\)", query):
            found += [(key, value) for value in _QUOTED.findall(group)]
    return found


def balance_problems(query: str) -> Problems:
    """Unclosed quotes or unbalanced (), [] and {} outside string literals."""
    pairs = {")": "(", "]": "[", "}": "{"}
    stack: list[str] = []
    quote = ""
    escaped = False
    for char in query:
        if quote:
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == quote:
                quote = ""
            continue
        if char in "\"'":
            quote = char
        elif char in "([{":
            stack.append(char)
        elif char in pairs and (not stack or stack.pop() != pairs[char]):
            return [f"unbalanced {char!r}"]
    if quote:
        return [f"unclosed {quote} string"]
    return [f"unclosed {stack[-1]!r}"] if stack else []


def query_problems(query: str) -> Problems:
    """What is wrong with one AppMetrics query, checked against shared.telemetry.names."""
    problems = balance_problems(query)
    metrics = metric_names(query)
    _expect(problems, bool(metrics), "reads AppMetrics without naming a metric (Name == ...)")
    for metric in metrics:
        _expect(problems, metric in names.METRICS, f"metric {metric!r} is not one the app emits")
    for key in attribute_keys(query):
        _expect(problems, key in names.ATTRIBUTES, f"attribute {key!r} is not one the app sets")
    for key, value in compared_values(query):
        allowed = ATTRIBUTE_VALUES.get(key)
        _expect(
            problems,
            allowed is None or value in allowed,
            f"{key} is never {value!r} (the app sets {allowed})",
        )
    return problems


@TELEMETRY_CHECKS.add
def check_app_metrics_queries(root: Path) -> Problems:
    """Every AppMetrics query names only the app's metrics and attributes, and parses."""
    infra = parse(root)
    problems: Problems = []
    queries = app_metrics_queries(infra)
    # The four charts and the alert; an interpolated copy may add more, never fewer.
    _expect(problems, len(queries) >= 5, f"expected 5 AppMetrics queries, found {list(queries)}")
    for label, query in queries.items():
        problems += [f"{label}: {p}" for p in query_problems(query)]
    return problems


def _workbook_items(infra: Infra) -> dict[str, dict[str, Any]]:
    bicep = infra.files[WORKBOOK_FILE]
    content = bicep.variables.get("workbookContent", {})
    items = {}
    for ref in content.get("items", []) if isinstance(content, dict) else []:
        item = infra.resolve(WORKBOOK_FILE, ref)
        if isinstance(item, dict):
            items[str(item.get("name"))] = item
    return items


def price_rows(query: str) -> dict[str, tuple[float, float, float]]:
    """The KQL price datatable: model -> (input, cached input, output), USD per 1M tokens."""
    match = _PRICES.search(query)
    if not match:
        return {}
    cells = [c.strip() for c in match.group(1).split(",")]
    return {
        cells[i].strip('"'): (float(cells[i + 1]), float(cells[i + 2]), float(cells[i + 3]))
        for i in range(0, len(cells) - 3, 4)
    }


def expected_prices() -> dict[str, tuple[float, float, float]]:
    """DEFAULT_PRICES as the datatable holds them: a missing cached price is the input price."""
    return {
        model: (p.input, p.input if p.cached_input is None else p.cached_input, p.output)
        for model, p in DEFAULT_PRICES.items()
    }


@TELEMETRY_CHECKS.add
def check_metric_charts(root: Path) -> Problems:
    """The four charts from the app's metrics, each on the workspace, reading its metric and
    dimensions; the cost estimate priced with the app's DEFAULT_PRICES and batch discount."""
    infra = parse(root)
    problems: Problems = []
    bicep = infra.files[WORKBOOK_FILE]
    items = _workbook_items(infra)
    for item_name, (metric, keys, literals) in METRIC_CHARTS.items():
        item = items.get(item_name)
        if item is None:
            problems.append(f"workbook: chart {item_name} missing")
            continue
        content = item.get("content", {})
        query = expand(bicep, str(infra.resolve(WORKBOOK_FILE, content.get("query", ""))))
        _expect(
            problems,
            metric in metric_names(query),
            f"workbook {item_name}: must read {metric}",
        )
        missing = [k for k in keys if k not in attribute_keys(query)]
        missing += [lit for lit in literals if lit not in query]
        _expect(problems, not missing, f"workbook {item_name}: query lacks {missing}")
        _expect(
            problems,
            content.get("resourceType") == "microsoft.operationalinsights/workspaces"
            and content.get("crossComponentResources") == ["workspaceId"],
            f"workbook {item_name}: must query the Log Analytics workspace",
        )
    cost = expand(bicep, str(bicep.variables.get("teamTokensQuery", "")))
    _expect(
        problems,
        price_rows(cost) == expected_prices(),
        "workbook: the price datatable must equal DEFAULT_PRICES (shared/core/settings.py)",
    )
    discount = _BATCH_DISCOUNT.search(cost)
    _expect(
        problems,
        discount is not None
        and float(discount.group(1)) == Settings.model_fields["batch_discount"].default,
        "workbook: batchDiscount must be the app's BATCH_DISCOUNT default",
    )
    return problems


def _query_rules(infra: Infra) -> list[Any]:
    return [r for r in infra.resources(QUERY_RULE) if r.file == ALERTS_FILE]


@TELEMETRY_CHECKS.add
def check_throttle_share_alert(root: Path) -> Problems:
    """A log search alert per deployment on the 429 share of app.upstream.requests, on the
    workspace, threshold from a parameter main.bicep sets, the optional action group, no
    identity or role of its own."""
    infra = parse(root)
    problems: Problems = []
    rules = _query_rules(infra)
    if len(rules) != 1:
        return [f"{ALERTS_FILE}: one scheduled query rule expected, found {len(rules)}"]
    rule = rules[0]
    bicep = infra.files[ALERTS_FILE]
    props = rule.properties
    _expect(problems, rule.body.get("kind") == "LogAlert", "429-share alert must be a LogAlert")
    _expect(
        problems,
        props.get("scopes") == ["workspaceId"]
        and _passes(infra, ALERTS_FILE, "workspaceId") == "monitoring.outputs.workspaceId",
        "429-share alert must be scoped to the Log Analytics workspace",
    )
    criteria = props.get("criteria", {}).get("allOf", [])
    if len(criteria) != 1:
        return [*problems, "429-share alert: one criterion expected"]
    criterion = criteria[0]
    query = expand(bicep, str(infra.resolve(ALERTS_FILE, criterion.get("query", ""))))
    _expect(
        problems,
        metric_names(query) == [names.UPSTREAM_REQUESTS]
        and {names.DEPLOYMENT, names.OUTCOME} <= set(attribute_keys(query))
        and 'outcome == "throttled"' in query
        and "by deployment" in query,
        "429-share alert: throttled / all app.upstream.requests by gen_ai.request.model",
    )
    measure = str(criterion.get("metricMeasureColumn", ""))
    _expect(
        problems,
        bool(measure) and f"{measure} = " in query,
        f"429-share alert: the measured column {measure!r} is not computed by the query",
    )
    dimensions = criterion.get("dimensions", [])
    _expect(
        problems,
        any(
            d.get("name") == "deployment" and d.get("values") == ["*"] and f"{d['name']} =" in query
            for d in dimensions
        ),
        "429-share alert: the deployment must be a dimension (one alert per deployment)",
    )
    threshold = render(criterion.get("threshold"))
    _expect(
        problems,
        threshold in bicep.params
        and criterion.get("operator") == "GreaterThan"
        and _passes(infra, ALERTS_FILE, threshold) in infra.main.params,
        "429-share alert: threshold must be a parameter main.bicep passes on",
    )
    _expect(
        problems,
        render(props.get("actions")) == "{actionGroups: hasActionGroup ? [actionGroup.id] : []}",
        "429-share alert: must notify the action group when there is one",
    )
    _expect(problems, "identity" not in rule.body, "429-share alert: needs no identity")
    roles = infra.resources("Microsoft.Authorization/roleAssignments")
    _expect(
        problems,
        not [r for r in roles if r.file == ALERTS_FILE],
        "alerts: no role assignment (least privilege)",
    )
    return problems
