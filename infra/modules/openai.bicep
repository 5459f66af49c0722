// Azure OpenAI: Entra ID only (local auth off), private endpoint only, three deployments
// (chat, embeddings, global batch) created one at a time (the service rejects concurrent
// deployment writes on one account). The private endpoint and the diagnostic settings wait for
// the last deployment: while a deployment is being written the account is not 'Succeeded' and
// either write fails with AccountProvisioningStateInvalid (AVM orders them the same way).
// Diagnostic settings send RequestResponse logs and all metrics to Log Analytics. The app
// identity gets Cognitive Services OpenAI User (inference) plus a custom role holding only the
// files and batch data actions the Batch API path uses.
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
@allowed([
  'User'
  'ServicePrincipal'
  'Group'
])
@description('Principal type of userPrincipalId: ServicePrincipal when a CI pipeline deploys.')
param userPrincipalType string = 'User'
param grantUserDataAccess bool = false

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
@description('Embedding deployment capacity, in thousands of tokens per minute.')
param embeddingCapacity int
@description('Standard (regional) or GlobalStandard, whichever the region offers for the model.')
param embeddingSkuName string = 'GlobalStandard'

param batchDeploymentName string
param batchModelName string
param batchModelVersion string
@description('GlobalBatch, or DataZoneBatch to keep batch processing in the data zone.')
param batchSkuName string = 'GlobalBatch'
@description('Global batch deployment capacity: enqueued tokens, in thousands.')
param batchCapacity int
@description('NoAutoUpgrade, OnceNewDefaultVersionAvailable or OnceCurrentVersionExpired, for every deployment.')
param versionUpgradeOption string = 'NoAutoUpgrade'

var roles = {
  cognitiveServicesOpenAiUser: '5e0bd9bd-7b93-4f28-af87-19fc36ad61bd'
}

// The Batch API path (upload JSONL, create / poll / cancel a batch, read and delete the files).
// Cognitive Services OpenAI User does not include the files actions; OpenAI Contributor would
// add deployments, fine-tuning and more. Names from the Azure RBAC permissions reference
// (Microsoft.CognitiveServices: accounts/OpenAI/files/*) and the Foundry RBAC guide
// (accounts/OpenAI/batch-jobs/*, accounts/OpenAI/batches/*); see docs/deploy.md.
var batchDataActions = [
  'Microsoft.CognitiveServices/accounts/OpenAI/files/read'
  'Microsoft.CognitiveServices/accounts/OpenAI/files/write'
  'Microsoft.CognitiveServices/accounts/OpenAI/files/delete'
  'Microsoft.CognitiveServices/accounts/OpenAI/batch-jobs/read'
  'Microsoft.CognitiveServices/accounts/OpenAI/batch-jobs/write'
  'Microsoft.CognitiveServices/accounts/OpenAI/batches/read'
  'Microsoft.CognitiveServices/accounts/OpenAI/batches/cancel/action'
]

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
    // NoAutoUpgrade by default: a new default version must not change answers under users
    // (docs/security.md); an empty version takes the default version once, at creation.
    versionUpgradeOption: versionUpgradeOption
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

resource batchDeployment 'Microsoft.CognitiveServices/accounts/deployments@2024-10-01' = {
  parent: account
  name: batchDeploymentName
  sku: {
    name: batchSkuName
    capacity: batchCapacity
  }
  properties: {
    model: union({
      format: 'OpenAI'
      name: batchModelName
    }, empty(batchModelVersion) ? {} : {
      version: batchModelVersion
    })
    versionUpgradeOption: versionUpgradeOption
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
  dependsOn: [
    batchDeployment
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
    batchDeployment
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

resource userOpenAiUser 'Microsoft.Authorization/roleAssignments@2022-04-01' = if (grantUserDataAccess && !empty(userPrincipalId)) {
  name: guid(account.id, userPrincipalId, roles.cognitiveServicesOpenAiUser)
  scope: account
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.cognitiveServicesOpenAiUser)
    principalId: userPrincipalId
    principalType: userPrincipalType
  }
}

// Custom roles cannot be assignable at a single resource, so the role is assignable in this
// resource group; its one assignment below is scoped to this account and to the app identity.
resource batchFilesRole 'Microsoft.Authorization/roleDefinitions@2022-04-01' = {
  name: guid(account.id, 'batch-files-data-actions')
  properties: {
    roleName: 'Azure OpenAI batch and files (${account.name})'
    description: 'Upload, read and delete files; create, read and cancel batches. Data actions only.'
    type: 'CustomRole'
    assignableScopes: [
      resourceGroup().id
    ]
    permissions: [
      {
        actions: []
        notActions: []
        dataActions: batchDataActions
        notDataActions: []
      }
    ]
  }
}

// A new role definition replicates with a delay; assigned right after its write, the
// assignment fails now and then (RoleDefinitionDoesNotExist). It waits for the private endpoint,
// which waits for the three model deployments: minutes, not seconds. If it still fails, re-run
// `azd provision` (docs/deploy.md).
resource appBatchFiles 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(account.id, appPrincipalId, batchFilesRole.id)
  scope: account
  properties: {
    roleDefinitionId: batchFilesRole.id
    principalId: appPrincipalId
    principalType: 'ServicePrincipal'
  }
  dependsOn: [
    privateEndpoint
  ]
}

output id string = account.id
output name string = account.name
output endpoint string = account.properties.endpoint
output chatDeploymentName string = chatDeployment.name
output embeddingDeploymentName string = embeddingDeployment.name
output batchDeploymentName string = batchDeployment.name
