// The spill-over Azure OpenAI account (main.bicep's spilloverOpenAi switch, off by default):
// the app's second backend in AOAI_BACKENDS, called when the first answers 429, 5xx or times
// out. Chat and embedding deployments only: Batch API jobs stay on the first account (a batch
// lives on the account that created it). Same posture as modules/openai.bicep: Entra ID only
// (local auth off), private endpoint only, diagnostics to Log Analytics, and the app identity
// holds Cognitive Services OpenAI User on this account alone.
param name string
param location string
param tags object = {}

param customSubDomainName string = name
@description('Region of the VNet: the private endpoint lives there even when the account does not.')
param privateEndpointLocation string = location
param privateEndpointSubnetId string
param openAiZoneId string
param logAnalyticsWorkspaceId string

param appPrincipalId string

param chatDeploymentName string
param chatModelName string
param chatModelVersion string
@description('Chat deployment type: GlobalStandard, DataZoneStandard or Standard, as the region offers it.')
param chatSkuName string = 'GlobalStandard'
@description('Chat deployment capacity, in thousands of tokens per minute.')
param chatCapacity int

param embeddingDeploymentName string
param embeddingModelName string
param embeddingModelVersion string
@description('Standard (regional) or GlobalStandard, whichever the region offers for the model.')
param embeddingSkuName string = 'GlobalStandard'
@description('Embedding deployment capacity, in thousands of tokens per minute.')
param embeddingCapacity int

@description('NoAutoUpgrade, OnceNewDefaultVersionAvailable or OnceCurrentVersionExpired, for every deployment.')
param versionUpgradeOption string = 'NoAutoUpgrade'

var roles = {
  cognitiveServicesOpenAiUser: '5e0bd9bd-7b93-4f28-af87-19fc36ad61bd'
}

resource account 'Microsoft.CognitiveServices/accounts@2024-10-01' = {
  name: name
  location: location
  tags: tags
  kind: 'OpenAI'
  sku: {
    name: 'S0'
  }
  identity: {
    type: 'SystemAssigned'
  }
  properties: {
    customSubDomainName: customSubDomainName
    disableLocalAuth: true
    publicNetworkAccess: 'Disabled'
    networkAcls: {
      defaultAction: 'Deny'
      ipRules: []
      virtualNetworkRules: []
    }
  }
}

resource chatDeployment 'Microsoft.CognitiveServices/accounts/deployments@2024-10-01' = {
  parent: account
  name: chatDeploymentName
  sku: {
    name: chatSkuName
    capacity: chatCapacity
  }
  properties: {
    model: union({
      format: 'OpenAI'
      name: chatModelName
    }, empty(chatModelVersion) ? {} : {
      version: chatModelVersion
    })
    versionUpgradeOption: versionUpgradeOption
  }
}

// One deployment write at a time per account (see modules/openai.bicep).
resource embeddingDeployment 'Microsoft.CognitiveServices/accounts/deployments@2024-10-01' = {
  parent: account
  name: embeddingDeploymentName
  sku: {
    name: embeddingSkuName
    capacity: embeddingCapacity
  }
  properties: {
    model: union({
      format: 'OpenAI'
      name: embeddingModelName
    }, empty(embeddingModelVersion) ? {} : {
      version: embeddingModelVersion
    })
    versionUpgradeOption: versionUpgradeOption
  }
  dependsOn: [
    chatDeployment
  ]
}

resource privateEndpoint 'Microsoft.Network/privateEndpoints@2024-01-01' = {
  name: 'pe-${name}'
  location: privateEndpointLocation
  tags: tags
  properties: {
    subnet: {
      id: privateEndpointSubnetId
    }
    privateLinkServiceConnections: [
      {
        name: 'account'
        properties: {
          privateLinkServiceId: account.id
          groupIds: [
            'account'
          ]
        }
      }
    ]
  }
  dependsOn: [
    embeddingDeployment
  ]
}

resource dnsZoneGroup 'Microsoft.Network/privateEndpoints/privateDnsZoneGroups@2024-01-01' = {
  parent: privateEndpoint
  name: 'default'
  properties: {
    privateDnsZoneConfigs: [
      {
        name: 'openai'
        properties: {
          privateDnsZoneId: openAiZoneId
        }
      }
    ]
  }
}

resource diagnostics 'Microsoft.Insights/diagnosticSettings@2021-05-01-preview' = {
  name: 'to-log-analytics'
  scope: account
  properties: {
    workspaceId: logAnalyticsWorkspaceId
    logs: [
      {
        category: 'RequestResponse'
        enabled: true
      }
      {
        category: 'Audit'
        enabled: true
      }
    ]
    metrics: [
      {
        category: 'AllMetrics'
        enabled: true
      }
    ]
  }
  dependsOn: [
    embeddingDeployment
  ]
}

resource appOpenAiUser 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(account.id, appPrincipalId, roles.cognitiveServicesOpenAiUser)
  scope: account
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.cognitiveServicesOpenAiUser)
    principalId: appPrincipalId
    principalType: 'ServicePrincipal'
  }
}

output id string = account.id
output name string = account.name
output endpoint string = account.properties.endpoint
output chatDeploymentName string = chatDeployment.name
output embeddingDeploymentName string = embeddingDeployment.name
