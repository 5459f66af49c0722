// Azure OpenAI: Entra ID only (local auth off), private endpoint only, three deployments
// (chat, embeddings, global batch) created one at a time (the service rejects concurrent
// deployment writes on one account). Diagnostic settings send RequestResponse logs and all
// metrics to Log Analytics.
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
@description('Principal id of the deploying user; gets the data role only when grantUserDataAccess is true.')
param userPrincipalId string = ''
param grantUserDataAccess bool = false

param chatDeploymentName string
param chatModelName string
param chatModelVersion string
@description('Chat deployment capacity, in thousands of tokens per minute (GlobalStandard).')
param chatCapacity int

param embeddingDeploymentName string
param embeddingModelName string
param embeddingModelVersion string
@description('Embedding deployment capacity, in thousands of tokens per minute.')
param embeddingCapacity int
@description('Standard (regional) or GlobalStandard, whichever the region offers for the model.')
param embeddingSkuName string = 'Standard'

param batchDeploymentName string
param batchModelName string
param batchModelVersion string
@description('Global batch deployment capacity: enqueued tokens, in thousands.')
param batchCapacity int

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
  // Unused by the app today; ready for customer-managed keys without redeploying the account.
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
    name: 'GlobalStandard'
    capacity: chatCapacity
  }
  properties: {
    model: {
      format: 'OpenAI'
      name: chatModelName
      version: chatModelVersion
    }
    versionUpgradeOption: 'OnceNewDefaultVersionAvailable'
  }
}

resource embeddingDeployment 'Microsoft.CognitiveServices/accounts/deployments@2024-10-01' = {
  parent: account
  name: embeddingDeploymentName
  sku: {
    name: embeddingSkuName
    capacity: embeddingCapacity
  }
  properties: {
    model: {
      format: 'OpenAI'
      name: embeddingModelName
      version: embeddingModelVersion
    }
  }
  dependsOn: [
    chatDeployment
  ]
}

resource batchDeployment 'Microsoft.CognitiveServices/accounts/deployments@2024-10-01' = {
  parent: account
  name: batchDeploymentName
  sku: {
    name: 'GlobalBatch'
    capacity: batchCapacity
  }
  properties: {
    model: {
      format: 'OpenAI'
      name: batchModelName
      version: batchModelVersion
    }
  }
  dependsOn: [
    embeddingDeployment
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

resource userOpenAiUser 'Microsoft.Authorization/roleAssignments@2022-04-01' = if (grantUserDataAccess && !empty(userPrincipalId)) {
  name: guid(account.id, userPrincipalId, roles.cognitiveServicesOpenAiUser)
  scope: account
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.cognitiveServicesOpenAiUser)
    principalId: userPrincipalId
    principalType: 'User'
  }
}

output id string = account.id
output name string = account.name
output endpoint string = account.properties.endpoint
output chatDeploymentName string = chatDeployment.name
output embeddingDeploymentName string = embeddingDeployment.name
output batchDeploymentName string = batchDeployment.name
