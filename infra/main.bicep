// Composes the deployment: a VNet-integrated Flex Consumption function app reaching Storage,
// Cosmos DB and Azure OpenAI through private endpoints with one user-assigned identity. No key,
// no connection string with a secret. Outputs are named like the app settings so azd writes
// the environment the app expects. Details: docs/deploy.md.
targetScope = 'subscription'

@minLength(1)
@maxLength(64)
@description('Name of the azd environment; seeds resource names and the azd-env-name tag.')
param environmentName string

@minLength(1)
@description('Region for every resource (Flex Consumption and the models must be offered there).')
param location string

@description('Object id of the deploying user or principal (azd sets it).')
param principalId string = ''

@allowed([
  'User'
  'ServicePrincipal'
  'Group'
])
@description('What principalId is: User for a person running azd, ServicePrincipal for a CI pipeline.')
param principalType string = 'User'

@description('Give principalId data roles (Storage, Cosmos DB, Azure OpenAI) for debugging from a VNet-connected machine.')
param grantUserDataAccess bool = false

@description('E-mail address for alert notifications. Empty: alerts without an action group.')
param alertEmailAddress string = ''
@description('429-share alert (app metrics): percentage of a deployment\'s upstream requests throttled in 15 minutes above which it fires.')
@minValue(1)
@maxValue(100)
param throttledSharePercent int = 5
@description('Share of the traces the app samples when the caller sends none (OTEL_TRACES_SAMPLER_ARG of parentbased_traceidratio), from 0 to 1; a caller\'s sampled traceparent is always followed. Metrics count every call.')
param traceSampleRatio string = '0.1'

@minValue(1)
@description('Monthly cost budget for the resource group, in the billing currency.')
param budgetAmount int = 100
@description('E-mail address for budget notifications. Empty: no budget.')
param budgetAlertEmail string = ''
@description('First day of the budget (yyyy-MM-dd), set once by the preprovision hook (BUDGET_START_DATE): Azure refuses to change the start date of an existing budget, so it must not follow the clock.')
param budgetStartDate string

param resourceGroupName string = ''

@description('Region of the Azure OpenAI account, when the models are not offered in location.')
param openAiLocation string = location
@description('The Azure OpenAI API the app calls (AZURE_OPENAI_API_VERSION): v1 (<endpoint>/openai/v1/, no api-version), or a dated api-version sent on every call. The one place it is set for Azure.')
param openAiApiVersion string = 'v1'

// Models: open to new customers on 2026-12-06 (a GA version takes new customers for 12 months
// after its release: gpt-5.4 2026-03-05 until 2027-03-05; text-embedding-3-small 1 has no
// such date). The preprovision hook checks name, version and SKU against the region before
// every provision and names a replacement. An empty version lets the service pick the model's
// default version. docs/deploy.md, "Choosing models".
param chatModelName string = 'gpt-5.4'
@description('Pinned model version; empty: the model\'s default version, chosen by the service.')
param chatModelVersion string = '2026-03-05'
param chatDeploymentName string = chatModelName
@description('Chat deployment type: GlobalStandard, DataZoneStandard or Standard.')
param chatSkuName string = 'GlobalStandard'
@minValue(1)
@description('Chat capacity in thousands of tokens per minute.')
param chatCapacity int = 30

param embeddingModelName string = 'text-embedding-3-small'
param embeddingModelVersion string = '1'
param embeddingDeploymentName string = embeddingModelName
@minValue(1)
@description('Embedding capacity in thousands of tokens per minute.')
param embeddingCapacity int = 30
@description('Embedding deployment type. GlobalStandard is offered in more regions than Standard for text-embedding-3-small.')
param embeddingSkuName string = 'GlobalStandard'
@minValue(1)
@description('Vector size the embedding deployment returns (text-embedding-3-small: 1536); the results container indexes this size.')
param embeddingDimensions int = 1536

param batchModelName string = 'gpt-5.4'
param batchModelVersion string = '2026-03-05'
param batchDeploymentName string = '${batchModelName}-batch'
@description('Batch deployment type: GlobalBatch or DataZoneBatch.')
param batchSkuName string = 'GlobalBatch'
@minValue(1)
@description('Batch capacity: enqueued tokens, in thousands (10000: 10M, within the 50M GlobalBatch quota of a pay-as-you-go subscription). BATCH_ENQUEUED_TOKENS tells the app.')
param batchCapacity int = 10000

@allowed([
  'NoAutoUpgrade'
  'OnceNewDefaultVersionAvailable'
  'OnceCurrentVersionExpired'
])
@description('versionUpgradeOption of every model deployment: NoAutoUpgrade keeps answers stable (a new version is a deployment); the others let Azure move the deployment to a newer version.')
param modelVersionUpgradeOption string = 'NoAutoUpgrade'

// --- spill-over backend (docs/deploy.md) --------------------------------------------------
@description('A second Azure OpenAI account (chat and embeddings) as the spill-over backend: AOAI_BACKENDS sends a call there when the first answers 429, 5xx or times out. Off by default.')
param spilloverOpenAi bool = false
@description('Region of the spill-over account; another region than openAiLocation also rides out a regional outage.')
param spilloverOpenAiLocation string = openAiLocation
@minValue(1)
@description('Spill-over chat capacity in thousands of tokens per minute.')
param spilloverChatCapacity int = 30
@minValue(1)
@description('Spill-over embedding capacity in thousands of tokens per minute.')
param spilloverEmbeddingCapacity int = 30

param cosmosDatabaseName string = 'aoai'
param embeddingQueueName string = 'embedding-jobs'
param classificationQueueName string = 'classification-jobs'
param outboxQueueName string = 'cosmos-outbox'
param claimCheckContainerName string = 'job-payloads'
@minValue(1)
@description('Days a job payload blob (claim check, Batch API items, poisoned message) is kept after its last write.')
param payloadRetentionDays int = 30
param batchPollSchedule string = '0 */5 * * * *'
param poisonSweepSchedule string = '0 */1 * * * *'
param contentFilterStoreText bool = false
@allowed([
  512
  2048
  4096
])
@description('Memory of each Flex Consumption instance (MB). A quarter of it is JOB_MEMORY_BUDGET_MIB, the answers queue jobs may hold at once on one instance; the rest is the host, the app and chat streams.')
param instanceMemoryMB int = 2048

// --- security switches (docs/security.md) -------------------------------------------------
@secure()
@minLength(32)
@description('HMAC key for the chat user hash (USER_HASH_SECRET), stored in Key Vault. Generated once by the preprovision hook and kept in the azd environment, so every provision writes the same value.')
param userHashSecret string

@secure()
@minLength(32)
@description('HMAC key team keys are stored under (TEAM_KEY_HASH_SECRET), stored in Key Vault. Generated once by the preprovision hook and kept in the azd environment: a new value invalidates every team key.')
param teamKeyHashSecret string

@description('Key Vault purge protection. On (the default, for production): a deleted vault and its secret stay recoverable for 90 days, and its name cannot be reused until then. Off for throw-away environments (azd down --purge then frees the name); once on, Azure never turns it off.')
param keyVaultPurgeProtection bool = true

@description('App Service authentication with Entra ID in front of the app (callers need a token with an app role, and still a function key).')
param entraAuth bool = false
@description('Client id of the app registration that defines the app roles Chat.Invoke, Jobs.Submit and Usage.Read (needed when entraAuth).')
param entraClientId string = ''

@allowed([
  'public'
  'restricted'
  'private'
])
@description('Inbound access to the app: public (keys and, with entraAuth, tokens), restricted (only allowedInboundCidrs), private (a private endpoint in the VNet; public access off).')
param inboundAccess string = 'public'
@description('CIDR ranges allowed in when inboundAccess is restricted.')
param allowedInboundCidrs array = []
@description('With inboundAccess restricted or private: a CIDR (your public IP /32, or a CI runner range) that may still reach the deployment (SCM) site, so azd deploy works from outside the VNet. Empty: deploy from inside the network.')
param deployerIpRange string = ''

@minValue(0)
@description('Tokens per minute one caller may spend on /api/chat and the gateway routes, across instances (CHAT_CALLER_TPM); 0 turns the limit off.')
param chatCallerTpm int = 10000
param usageRollupSchedule string = '0 */5 * * * *'

var tags = {
  'azd-env-name': environmentName
}
var resourceToken = toLower(uniqueString(subscription().id, environmentName, location))
var functionAppName = 'func-${resourceToken}'
var deploymentContainerName = 'app-package-${resourceToken}'

resource rg 'Microsoft.Resources/resourceGroups@2024-03-01' = {
  name: !empty(resourceGroupName) ? resourceGroupName : 'rg-${environmentName}'
  location: location
  tags: tags
}

module identity 'modules/identity.bicep' = {
  name: 'identity'
  scope: rg
  params: {
    name: 'id-${resourceToken}'
    location: location
    tags: tags
  }
}

module network 'modules/network.bicep' = {
  name: 'network'
  scope: rg
  params: {
    name: 'vnet-${resourceToken}'
    location: location
    tags: tags
  }
}

module privateDns 'modules/private-dns.bicep' = {
  name: 'private-dns'
  scope: rg
  params: {
    name: 'vnet-${resourceToken}'
    tags: tags
    vnetId: network.outputs.id
  }
}

module monitoring 'modules/monitoring.bicep' = {
  name: 'monitoring'
  scope: rg
  params: {
    name: resourceToken
    location: location
    tags: tags
    appPrincipalId: identity.outputs.principalId
  }
}

module storage 'modules/storage.bicep' = {
  name: 'storage'
  scope: rg
  params: {
    name: 'st${resourceToken}'
    location: location
    tags: tags
    privateEndpointSubnetId: network.outputs.privateEndpointSubnetId
    blobZoneId: privateDns.outputs.blobZoneId
    queueZoneId: privateDns.outputs.queueZoneId
    tableZoneId: privateDns.outputs.tableZoneId
    appPrincipalId: identity.outputs.principalId
    userPrincipalId: principalId
    userPrincipalType: principalType
    grantUserDataAccess: grantUserDataAccess
    deploymentContainerName: deploymentContainerName
    claimCheckContainerName: claimCheckContainerName
    payloadRetentionDays: payloadRetentionDays
    embeddingQueueName: embeddingQueueName
    classificationQueueName: classificationQueueName
    outboxQueueName: outboxQueueName
  }
}

module cosmos 'modules/cosmos.bicep' = {
  name: 'cosmos'
  scope: rg
  params: {
    name: 'cosmos-${resourceToken}'
    location: location
    tags: tags
    privateEndpointSubnetId: network.outputs.privateEndpointSubnetId
    cosmosZoneId: privateDns.outputs.cosmosZoneId
    appPrincipalId: identity.outputs.principalId
    userPrincipalId: principalId
    grantUserDataAccess: grantUserDataAccess
    databaseName: cosmosDatabaseName
    embeddingDimensions: embeddingDimensions
  }
}

module keyVault 'modules/keyvault.bicep' = {
  name: 'keyvault'
  scope: rg
  params: {
    name: 'kv-${resourceToken}'
    location: location
    tags: tags
    privateEndpointSubnetId: network.outputs.privateEndpointSubnetId
    vaultZoneId: privateDns.outputs.vaultZoneId
    appPrincipalId: identity.outputs.principalId
    userHashSecret: userHashSecret
    teamKeyHashSecret: teamKeyHashSecret
    purgeProtection: keyVaultPurgeProtection
  }
}

module openAi 'modules/openai.bicep' = {
  name: 'openai'
  scope: rg
  params: {
    name: 'oai-${resourceToken}'
    location: openAiLocation
    tags: tags
    privateEndpointLocation: location
    privateEndpointSubnetId: network.outputs.privateEndpointSubnetId
    openAiZoneId: privateDns.outputs.openAiZoneId
    logAnalyticsWorkspaceId: monitoring.outputs.workspaceId
    appPrincipalId: identity.outputs.principalId
    userPrincipalId: principalId
    userPrincipalType: principalType
    grantUserDataAccess: grantUserDataAccess
    chatDeploymentName: chatDeploymentName
    chatModelName: chatModelName
    chatModelVersion: chatModelVersion
    chatSkuName: chatSkuName
    chatCapacity: chatCapacity
    embeddingDeploymentName: embeddingDeploymentName
    embeddingModelName: embeddingModelName
    embeddingModelVersion: embeddingModelVersion
    embeddingCapacity: embeddingCapacity
    embeddingSkuName: embeddingSkuName
    batchDeploymentName: batchDeploymentName
    batchModelName: batchModelName
    batchModelVersion: batchModelVersion
    batchSkuName: batchSkuName
    batchCapacity: batchCapacity
    versionUpgradeOption: modelVersionUpgradeOption
  }
}

module openAiSpillover 'modules/openai-spillover.bicep' = if (spilloverOpenAi) {
  name: 'openai-spillover'
  scope: rg
  params: {
    name: 'oai-${resourceToken}-spill'
    location: spilloverOpenAiLocation
    tags: tags
    privateEndpointLocation: location
    privateEndpointSubnetId: network.outputs.privateEndpointSubnetId
    openAiZoneId: privateDns.outputs.openAiZoneId
    logAnalyticsWorkspaceId: monitoring.outputs.workspaceId
    appPrincipalId: identity.outputs.principalId
    chatDeploymentName: chatDeploymentName
    chatModelName: chatModelName
    chatModelVersion: chatModelVersion
    chatSkuName: chatSkuName
    chatCapacity: spilloverChatCapacity
    embeddingDeploymentName: embeddingDeploymentName
    embeddingModelName: embeddingModelName
    embeddingModelVersion: embeddingModelVersion
    embeddingSkuName: embeddingSkuName
    embeddingCapacity: spilloverEmbeddingCapacity
    versionUpgradeOption: modelVersionUpgradeOption
  }
}

module alerts 'modules/alerts.bicep' = {
  name: 'alerts'
  scope: rg
  params: {
    name: resourceToken
    tags: tags
    openAiId: openAi.outputs.id
    appInsightsId: monitoring.outputs.appInsightsId
    workspaceId: monitoring.outputs.workspaceId
    ruleLocation: location
    alertEmailAddress: alertEmailAddress
    throttledSharePercent: throttledSharePercent
    budgetAmount: budgetAmount
    budgetAlertEmail: budgetAlertEmail
    budgetStartDate: budgetStartDate
  }
}

module workbook 'modules/workbook.bicep' = {
  name: 'workbook'
  scope: rg
  params: {
    name: resourceToken
    location: location
    tags: tags
    workspaceId: monitoring.outputs.workspaceId
    openAiId: openAi.outputs.id
  }
}

// Model alias -> deployment name, read by the app as AOAI_DEPLOYMENTS.
var aoaiDeployments = {
  '${chatModelName}': openAi.outputs.chatDeploymentName
  '${embeddingModelName}': openAi.outputs.embeddingDeploymentName
  '${batchModelName}-batch': openAi.outputs.batchDeploymentName
}

// With the spill-over account on: both accounts as AOAI_BACKENDS (Entra ID for both, one token).
// The first takes every call; the second takes chat and embeddings it refuses. Batch API jobs
// stay on the first (AOAI_BATCH_BACKEND defaults to it). Off: AOAI_BACKENDS is empty (unset)
// and AZURE_OPENAI_ENDPOINT is the one backend.
var aoaiBackends = [
  {
    name: 'primary'
    endpoint: openAi.outputs.endpoint
    priority: 1
  }
  {
    name: 'spillover'
    endpoint: spilloverOpenAi ? openAiSpillover.outputs.endpoint : ''
    priority: 2
    deployments: {
      '${chatDeploymentName}': chatDeploymentName
      '${embeddingDeploymentName}': embeddingDeploymentName
    }
  }
]

// Every app setting, in one place. Connections use the identity (AZURE_CLIENT_ID and the
// AzureWebJobsStorage__* identity settings); nothing here is a key or a secret. The Application
// Insights connection string only identifies the resource: local auth is disabled on it, so
// ingestion needs the Entra token described by APPLICATIONINSIGHTS_AUTHENTICATION_STRING.
var appSettings = {
  AZURE_CLIENT_ID: identity.outputs.clientId
  AzureWebJobsStorage__credential: 'managedidentity'
  AzureWebJobsStorage__clientId: identity.outputs.clientId
  AzureWebJobsStorage__blobServiceUri: storage.outputs.blobEndpoint
  AzureWebJobsStorage__queueServiceUri: storage.outputs.queueEndpoint
  AzureWebJobsStorage__tableServiceUri: storage.outputs.tableEndpoint
  APPLICATIONINSIGHTS_CONNECTION_STRING: monitoring.outputs.appInsightsConnectionString
  APPLICATIONINSIGHTS_AUTHENTICATION_STRING: 'ClientId=${identity.outputs.clientId};Authorization=AAD'
  // The app's traces (docs/telemetry.md): a tenth by default, so ingestion and the host's CPU
  // stay small; every metric is sent whatever the sampling.
  OTEL_TRACES_SAMPLER: 'parentbased_traceidratio'
  OTEL_TRACES_SAMPLER_ARG: traceSampleRatio
  // HTTP streaming (azurefunctions-extensions-http-fastapi) needs the worker to index at init.
  PYTHON_ENABLE_INIT_INDEXING: '1'
  AZURE_OPENAI_ENDPOINT: openAi.outputs.endpoint
  AZURE_OPENAI_API_VERSION: openAiApiVersion
  AOAI_DEPLOYMENTS: string(aoaiDeployments)
  AOAI_BACKENDS: spilloverOpenAi ? string(aoaiBackends) : ''
  CHAT_DEPLOYMENT: openAi.outputs.chatDeploymentName
  EMBEDDING_DEPLOYMENT: openAi.outputs.embeddingDeploymentName
  CLASSIFY_DEPLOYMENT: openAi.outputs.chatDeploymentName
  BATCH_DEPLOYMENT: openAi.outputs.batchDeploymentName
  // The batch deployment's enqueued-token quota, derived from its capacity (thousands).
  BATCH_ENQUEUED_TOKENS: string(batchCapacity * 1000)
  // What job answers may hold on one instance, sized from the instance (docs/jobs.md, Memory).
  JOB_MEMORY_BUDGET_MIB: string(instanceMemoryMB / 4)
  COSMOS_ENDPOINT: cosmos.outputs.endpoint
  COSMOS_DATABASE: cosmos.outputs.databaseName
  EMBEDDING_QUEUE: embeddingQueueName
  CLASSIFICATION_QUEUE: classificationQueueName
  OUTBOX_QUEUE: outboxQueueName
  CLAIM_CHECK_CONTAINER: claimCheckContainerName
  BATCH_POLL_SCHEDULE: batchPollSchedule
  POISON_SWEEP_SCHEDULE: poisonSweepSchedule
  CONTENT_FILTER_STORE_TEXT: contentFilterStoreText ? 'true' : 'false'
  // The one secret: a Key Vault reference, resolved by App Service with the app identity.
  USER_HASH_SECRET: '@Microsoft.KeyVault(SecretUri=${keyVault.outputs.userHashSecretUri})'
  TEAM_KEY_HASH_SECRET: '@Microsoft.KeyVault(SecretUri=${keyVault.outputs.teamKeyHashSecretUri})'
  ENTRA_AUTH: entraAuth ? 'true' : 'false'
  CHAT_CALLER_TPM: string(chatCallerTpm)
  USAGE_ROLLUP_SCHEDULE: usageRollupSchedule
}

module functionApp 'modules/function-app.bicep' = {
  name: 'function-app'
  scope: rg
  params: {
    name: functionAppName
    location: location
    tags: union(tags, {
      'azd-service-name': 'api'
    })
    identityId: identity.outputs.id
    appSubnetId: network.outputs.appSubnetId
    deploymentContainerUrl: storage.outputs.deploymentContainerUrl
    appSettings: appSettings
    entraAuth: entraAuth
    entraClientId: entraClientId
    inboundAccess: inboundAccess
    allowedInboundCidrs: allowedInboundCidrs
    deployerIpRange: deployerIpRange
    privateEndpointSubnetId: network.outputs.privateEndpointSubnetId
    sitesZoneId: privateDns.outputs.sitesZoneId
    instanceMemoryMB: instanceMemoryMB
  }
}

output AZURE_LOCATION string = location
output AZURE_TENANT_ID string = tenant().tenantId
output AZURE_RESOURCE_GROUP string = rg.name
output AZURE_FUNCTION_APP_NAME string = functionApp.outputs.name
output SERVICE_API_NAME string = functionApp.outputs.name
output SERVICE_API_URI string = functionApp.outputs.uri
output AZURE_OPENAI_ENDPOINT string = openAi.outputs.endpoint
output AZURE_OPENAI_API_VERSION string = openAiApiVersion
output AOAI_DEPLOYMENTS string = string(aoaiDeployments)
output CHAT_DEPLOYMENT string = openAi.outputs.chatDeploymentName
output EMBEDDING_DEPLOYMENT string = openAi.outputs.embeddingDeploymentName
output CLASSIFY_DEPLOYMENT string = openAi.outputs.chatDeploymentName
output BATCH_DEPLOYMENT string = openAi.outputs.batchDeploymentName
output BATCH_ENQUEUED_TOKENS string = string(batchCapacity * 1000)
output COSMOS_ENDPOINT string = cosmos.outputs.endpoint
output COSMOS_DATABASE string = cosmos.outputs.databaseName
output AZURE_STORAGE_ACCOUNT_NAME string = storage.outputs.name
output AZURE_STORAGE_BLOB_ENDPOINT string = storage.outputs.blobEndpoint
output AZURE_DEPLOYMENT_CONTAINER string = storage.outputs.deploymentContainerName
output EMBEDDING_QUEUE string = embeddingQueueName
output CLASSIFICATION_QUEUE string = classificationQueueName
output OUTBOX_QUEUE string = outboxQueueName
output CLAIM_CHECK_CONTAINER string = claimCheckContainerName
output APPLICATIONINSIGHTS_NAME string = monitoring.outputs.appInsightsName
output AZURE_KEY_VAULT_NAME string = keyVault.outputs.name
