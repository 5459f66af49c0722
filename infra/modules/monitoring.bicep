// Log Analytics + workspace-based Application Insights with local auth disabled: telemetry is
// accepted only with an Entra token, so the connection string's instrumentation key is an
// identifier, not a secret. The app identity gets Monitoring Metrics Publisher to send it.
//
// Ingestion and query stay on public endpoints, on purpose (docs/security.md): both need an
// Entra token (local auth off here and on Application Insights) and Azure RBAC, and the data
// holds counts, ids and hashes, never prompts. Making them private takes an Azure Monitor
// Private Link Scope, which rewrites DNS for every Azure Monitor resource the VNet resolves
// (all-or-nothing across workspaces) and locks operators out of the portal's queries
// outside the network: a decision for the landing zone, not for this app.
param name string
param location string
param tags object = {}

param appPrincipalId string
param retentionInDays int = 30

var roles = {
  monitoringMetricsPublisher: '3913510d-42f4-4e42-8a64-420c390055eb'
}

resource workspace 'Microsoft.OperationalInsights/workspaces@2023-09-01' = {
  name: 'log-${name}'
  location: location
  tags: tags
  properties: {
    retentionInDays: retentionInDays
    sku: {
      name: 'PerGB2018'
    }
    features: {
      disableLocalAuth: true
    }
    publicNetworkAccessForIngestion: 'Enabled'
    publicNetworkAccessForQuery: 'Enabled'
  }
}

resource appInsights 'Microsoft.Insights/components@2020-02-02' = {
  name: 'appi-${name}'
  location: location
  tags: tags
  kind: 'web'
  properties: {
    Application_Type: 'web'
    WorkspaceResourceId: workspace.id
    DisableLocalAuth: true
  }
}

resource appMetricsPublisher 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(appInsights.id, appPrincipalId, roles.monitoringMetricsPublisher)
  scope: appInsights
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.monitoringMetricsPublisher)
    principalId: appPrincipalId
    principalType: 'ServicePrincipal'
  }
}

output workspaceId string = workspace.id
output appInsightsId string = appInsights.id
output appInsightsName string = appInsights.name
output appInsightsConnectionString string = appInsights.properties.ConnectionString
