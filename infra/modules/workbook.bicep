// One Azure Monitor workbook for the operator: tokens by deployment (Azure OpenAI metrics split
// by ModelDeploymentName), throttled requests (429s in the RequestResponse logs), filtered
// requests (the app's "content filter:" log line) and job failures (failed queue and timer
// invocations; every record_poison run is a job that ended failed). The spend by team is
// GET /api/usage; this workbook is the "is something wrong right now" view.
//
// Four more charts read the app's own OpenTelemetry metrics (issue 25), which land in the
// workspace-based Application Insights' AppMetrics table: one row per series and export
// interval, with Name (the metric), Properties (its attributes, every value a string), and,
// as the Azure Monitor exporter sends them, counters as deltas (Sum = the count in the
// interval, ItemCount = 1) and histograms as Sum, ItemCount, Min and Max without buckets.
// Metric names and attribute keys are those of shared/telemetry/names.py, the one list
// tests/infra/telemetry_checks.py holds these queries to.
param name string
param location string
param tags object = {}

param workspaceId string
param openAiId string

var day = 86400000

var tokensByDeployment = {
  type: 10
  name: 'tokens-by-deployment'
  content: {
    chartId: 'tokens-by-deployment'
    version: 'MetricsItem/2.0'
    title: 'Tokens by deployment'
    size: 0
    chartType: 2
    resourceType: 'microsoft.cognitiveservices/accounts'
    metricScope: 0
    resourceIds: [
      openAiId
    ]
    timeContext: {
      durationMs: day
    }
    metrics: [
      {
        namespace: 'microsoft.cognitiveservices/accounts'
        metric: 'microsoft.cognitiveservices/accounts--ProcessedPromptTokens'
        aggregation: 1
        splitBy: 'ModelDeploymentName'
      }
      {
        namespace: 'microsoft.cognitiveservices/accounts'
        metric: 'microsoft.cognitiveservices/accounts--GeneratedTokens'
        aggregation: 1
        splitBy: 'ModelDeploymentName'
      }
    ]
  }
}

var throttledQuery = 'AzureDiagnostics | where ResourceProvider == "MICROSOFT.COGNITIVESERVICES" and Category == "RequestResponse" | where ResultSignature == "429" | extend deployment = tostring(parse_json(properties_s).modelDeploymentName) | summarize throttled = count() by bin(TimeGenerated, 5m), deployment'
var filteredQuery = 'AppTraces | where Message startswith "content filter: " | parse Message with "content filter: " stage " " categories " on " deployment " (request " * | summarize filtered = count() by bin(TimeGenerated, 1h), deployment, stage'
var jobFailuresQuery = 'AppRequests | where Name in ("embed", "classify", "poll_batches", "record_poison") | summarize failed = countif(Success == false), poisoned = countif(Name == "record_poison") by bin(TimeGenerated, 1h), Name'

// Estimated cost: the app's DEFAULT_PRICES (shared/core/settings.py), USD per 1M tokens, as a
// KQL datatable (model, input, cached input, output; cached input is the input price where the
// app has none). tests/infra holds the rows to DEFAULT_PRICES. A deployment prices as the
// app's price_for does: its own name, else the longest model name it starts with plus "-"
// (gpt-5.4-batch -> gpt-5.4); the Batch API route at BATCH_DISCOUNT's default, 0.5. A
// deployment whose MODEL_PRICES setting overrides these shows the default estimate here; the
// figure that settles budgets is GET /api/usage.
var pricesKql = 'let prices = datatable(model: string, pIn: real, pCached: real, pOut: real) ["gpt-5.4", 2.5, 0.25, 15.0, "gpt-5.1", 1.25, 0.125, 10.0, "gpt-4o", 2.5, 1.25, 10.0, "gpt-4o-mini", 0.15, 0.075, 0.6, "gpt-4.1", 2.0, 0.5, 8.0, "gpt-4.1-mini", 0.4, 0.1, 1.6, "text-embedding-3-small", 0.02, 0.02, 0.0, "text-embedding-3-large", 0.13, 0.13, 0.0]; let batchDiscount = 0.5;'

// Tokens per team and hour: input + output is the total; cached (part of input) and reasoning
// (part of output) are shown apart and never added to it.
var teamTokensQuery = '${pricesKql} let usage = AppMetrics | where Name == "gen_ai.client.token.usage" | extend team = tostring(Properties["app.team"]), deployment = tostring(Properties["gen_ai.request.model"]), route = tostring(Properties["app.route"]), tokenType = tostring(Properties["gen_ai.token.type"]) | summarize inputTokens = sumif(Sum, tokenType == "input"), outputTokens = sumif(Sum, tokenType == "output"), cachedTokens = sumif(Sum, tokenType == "cached"), reasoningTokens = sumif(Sum, tokenType == "reasoning") by hour = bin(TimeGenerated, 1h), team, deployment, route; let priced = usage | extend k = 1 | join kind=inner (prices | extend k = 1) on k | where deployment == model or deployment startswith strcat(model, "-") | summarize arg_max(strlen(model), pIn, pCached, pOut) by hour, team, deployment, route; usage | join kind=leftouter priced on hour, team, deployment, route | extend share = iff(route == "batch", batchDiscount, 1.0) | extend costUsd = share * ((inputTokens - cachedTokens) * coalesce(pIn, 0.0) + cachedTokens * coalesce(pCached, 0.0) + outputTokens * coalesce(pOut, 0.0)) / 1000000.0 | summarize totalTokens = sum(inputTokens + outputTokens), inputTokens = sum(inputTokens), outputTokens = sum(outputTokens), cachedTokens = sum(cachedTokens), reasoningTokens = sum(reasoningTokens), estimatedCostUsd = round(sum(costUsd), 4), unpricedDeployments = make_set_if(deployment, isnull(pIn)) by hour, team | order by hour desc, estimatedCostUsd desc'

// 429 share per deployment and backend: every HTTP attempt upstream counts once.
var throttleShareQuery = 'AppMetrics | where Name == "app.upstream.requests" | extend deployment = tostring(Properties["gen_ai.request.model"]), backend = tostring(Properties["app.backend"]), outcome = tostring(Properties["app.outcome"]) | summarize throttled = sumif(Sum, outcome == "throttled"), requests = sum(Sum) by bin(TimeGenerated, 5m), deployment, backend | where requests > 0 | project TimeGenerated, series = strcat(deployment, " @ ", backend), throttledShare = throttled / requests'

// Time to first token, p50/p95. The exporter sends no histogram buckets (Sum, ItemCount, Min,
// Max per series and interval), so the percentiles are estimated: percentiles of each row's
// mean (Sum / ItemCount) weighted by its ItemCount, as if every call in a row took the row's
// mean. That is exact for rows of one call and pulls the tail in for busy rows, so p95 reads
// low under load; the largest Max in the bin is shown beside it as the upper bound.
var firstTokenQuery = 'AppMetrics | where Name == "gen_ai.client.operation.time_to_first_chunk" | extend route = tostring(Properties["app.route"]) | where route in ("chat", "gateway") and ItemCount > 0 | extend meanSeconds = Sum / ItemCount | summarize p50Seconds = percentilew(meanSeconds, ItemCount, 50), p95Seconds = percentilew(meanSeconds, ItemCount, 95), maxSeconds = max(Max) by bin(TimeGenerated, 15m), route'

// Job items per minute, done and failed, by kind (embedding, classification).
var jobItemsQuery = 'AppMetrics | where Name == "app.job.items" | extend kind = tostring(Properties["app.job.kind"]), outcome = tostring(Properties["app.outcome"]) | summarize items = sum(Sum) by bin(TimeGenerated, 1m), series = strcat(kind, " ", outcome)'

var throttledRequests = {
  type: 3
  name: 'throttled-requests'
  content: {
    version: 'KqlItem/1.0'
    title: 'Throttled requests (429) by deployment'
    query: throttledQuery
    size: 0
    queryType: 0
    resourceType: 'microsoft.operationalinsights/workspaces'
    crossComponentResources: [
      workspaceId
    ]
    timeContext: {
      durationMs: day
    }
    visualization: 'timechart'
  }
}

var filteredRequests = {
  type: 3
  name: 'filtered-requests'
  content: {
    version: 'KqlItem/1.0'
    title: 'Filtered prompts and completions by deployment'
    query: filteredQuery
    size: 0
    queryType: 0
    resourceType: 'microsoft.operationalinsights/workspaces'
    crossComponentResources: [
      workspaceId
    ]
    timeContext: {
      durationMs: day
    }
    visualization: 'timechart'
  }
}

var jobFailures = {
  type: 3
  name: 'job-failures'
  content: {
    version: 'KqlItem/1.0'
    title: 'Job failures: failed queue and timer invocations, poisoned messages'
    query: jobFailuresQuery
    size: 0
    queryType: 0
    resourceType: 'microsoft.operationalinsights/workspaces'
    crossComponentResources: [
      workspaceId
    ]
    timeContext: {
      durationMs: day
    }
    visualization: 'timechart'
  }
}

var teamTokens = {
  type: 3
  name: 'team-tokens-cost'
  content: {
    version: 'KqlItem/1.0'
    title: 'Tokens and estimated cost (USD) per team per hour (app metrics)'
    query: teamTokensQuery
    size: 0
    queryType: 0
    resourceType: 'microsoft.operationalinsights/workspaces'
    crossComponentResources: [
      workspaceId
    ]
    timeContext: {
      durationMs: day
    }
    visualization: 'table'
  }
}

var throttleShare = {
  type: 3
  name: 'throttle-share'
  content: {
    version: 'KqlItem/1.0'
    title: '429 share of upstream requests by deployment @ backend (app metrics)'
    query: throttleShareQuery
    size: 0
    queryType: 0
    resourceType: 'microsoft.operationalinsights/workspaces'
    crossComponentResources: [
      workspaceId
    ]
    timeContext: {
      durationMs: day
    }
    visualization: 'timechart'
  }
}

var firstToken = {
  type: 3
  name: 'time-to-first-token'
  content: {
    version: 'KqlItem/1.0'
    title: 'Chat time to first token p50/p95, seconds (app metrics, estimated)'
    query: firstTokenQuery
    size: 0
    queryType: 0
    resourceType: 'microsoft.operationalinsights/workspaces'
    crossComponentResources: [
      workspaceId
    ]
    timeContext: {
      durationMs: day
    }
    visualization: 'timechart'
  }
}

var jobItems = {
  type: 3
  name: 'job-items'
  content: {
    version: 'KqlItem/1.0'
    title: 'Job items per minute by kind and outcome (app metrics)'
    query: jobItemsQuery
    size: 0
    queryType: 0
    resourceType: 'microsoft.operationalinsights/workspaces'
    crossComponentResources: [
      workspaceId
    ]
    timeContext: {
      durationMs: day
    }
    visualization: 'timechart'
  }
}

var workbookContent = {
  version: 'Notebook/1.0'
  items: [
    tokensByDeployment
    throttledRequests
    filteredRequests
    jobFailures
    teamTokens
    throttleShare
    firstToken
    jobItems
  ]
  fallbackResourceIds: [
    workspaceId
  ]
}

resource workbook 'Microsoft.Insights/workbooks@2023-06-01' = {
  name: guid(resourceGroup().id, name, 'operations-workbook')
  location: location
  tags: tags
  kind: 'shared'
  properties: {
    displayName: 'Azure OpenAI app operations (${name})'
    category: 'workbook'
    sourceId: workspaceId
    serializedData: string(workbookContent)
    version: '1.0'
  }
}

output id string = workbook.id
