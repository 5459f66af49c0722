// One Azure Monitor workbook for the operator: tokens by deployment (Azure OpenAI metrics split
// by ModelDeploymentName), throttled requests (429s in the RequestResponse logs), filtered
// requests (the app's "content filter:" log line) and job failures (failed queue and timer
// invocations; every record_poison run is a job that ended failed). The spend by team is
// GET /api/usage; this workbook is the "is something wrong right now" view.
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

var workbookContent = {
  version: 'Notebook/1.0'
  items: [
    tokensByDeployment
    throttledRequests
    filteredRequests
    jobFailures
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
