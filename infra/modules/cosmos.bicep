// Cosmos DB for NoSQL, serverless: Entra ID only (local auth off), private endpoint only.
// The app identity gets the Built-in Data Contributor SQL role (a data-plane role assignment,
// not an Azure RBAC one). SQL role assignments wait for the containers and for each other:
// a write while the account is busy answers 412 (AVM chains them the same way).
// `results` is ready for vector search: embeddings live in `embedding` as float arrays, with a
// vector embedding policy and a vector index, and kept out of the regular index.
param name string
param location string
param tags object = {}

param privateEndpointSubnetId string
param cosmosZoneId string

param appPrincipalId string
@description('Principal id of the deploying user; gets the data role only when grantUserDataAccess is true.')
param userPrincipalId string = ''
param grantUserDataAccess bool = false

param databaseName string = 'aoai'

@description('Dimensions of the embedding deployment (text-embedding-3-small: 1536); the vector policy of results.')
param embeddingDimensions int = 1536

// Container name -> partition key, as in docs/architecture.md. `results` is declared on its own
// below because of its vector policy.
var containers = [
  {
    name: 'jobs'
    partitionKey: '/job_id'
  }
  {
    name: 'content_filter_events'
    partitionKey: '/day'
  }
  {
    name: 'batches'
    partitionKey: '/id'
  }
  {
    name: 'usage'
    partitionKey: '/day'
  }
  {
    name: 'usage_rollups'
    partitionKey: '/day'
  }
  // The team registry (docs/teams.md): one document per team, its keys' hashes in it.
  {
    name: 'teams'
    partitionKey: '/id'
  }
  // Team limits (shared/metering/team_limits.py): one document per team with its minute, day
  // and month counters, each stamped with its window; bounded by the teams, so no TTL. The app's
  // database-scoped data role covers it: no new grant.
  {
    name: 'team_spend'
    partitionKey: '/id'
  }
]

var resultsContainerName = 'results'

var roles = {
  cosmosBuiltInDataContributor: '00000000-0000-0000-0000-000000000002'
}

resource account 'Microsoft.DocumentDB/databaseAccounts@2024-11-15' = {
  name: name
  location: location
  tags: tags
  kind: 'GlobalDocumentDB'
  properties: {
    databaseAccountOfferType: 'Standard'
    locations: [
      {
        locationName: location
        failoverPriority: 0
        isZoneRedundant: false
      }
    ]
    consistencyPolicy: {
      defaultConsistencyLevel: 'Session'
    }
    capabilities: [
      {
        name: 'EnableServerless'
      }
      // Vector indexes and VectorDistance need this capability on serverless accounts.
      {
        name: 'EnableNoSQLVectorSearch'
      }
    ]
    disableLocalAuth: true
    disableKeyBasedMetadataWriteAccess: true
    publicNetworkAccess: 'Disabled'
    enableMultipleWriteLocations: false
    isVirtualNetworkFilterEnabled: false
    minimalTlsVersion: 'Tls12'
  }
}

resource database 'Microsoft.DocumentDB/databaseAccounts/sqlDatabases@2024-11-15' = {
  parent: account
  name: databaseName
  properties: {
    resource: {
      id: databaseName
    }
  }
}

resource sqlContainers 'Microsoft.DocumentDB/databaseAccounts/sqlDatabases/containers@2024-11-15' = [for container in containers: {
  parent: database
  name: container.name
  properties: {
    resource: {
      id: container.name
      partitionKey: {
        paths: [
          container.partitionKey
        ]
        kind: 'Hash'
      }
    }
  }
}]

resource resultsContainer 'Microsoft.DocumentDB/databaseAccounts/sqlDatabases/containers@2024-11-15' = {
  parent: database
  name: resultsContainerName
  properties: {
    resource: {
      id: resultsContainerName
      partitionKey: {
        paths: [
          '/job_id'
        ]
        kind: 'Hash'
      }
      indexingPolicy: {
        indexingMode: 'consistent'
        automatic: true
        includedPaths: [
          {
            path: '/*'
          }
        ]
        // A 1536-float array in the range index costs RUs on every write and helps no query.
        excludedPaths: [
          {
            path: '/"_etag"/?'
          }
          {
            path: '/embedding/*'
          }
        ]
        vectorIndexes: [
          {
            path: '/embedding'
            type: 'quantizedFlat'
          }
        ]
      }
      vectorEmbeddingPolicy: {
        vectorEmbeddings: [
          {
            path: '/embedding'
            dataType: 'float32'
            distanceFunction: 'cosine'
            dimensions: embeddingDimensions
          }
        ]
      }
    }
  }
}

// One document per caller and minute for the shared per-caller token limit
// (shared/metering/caller_limit.py); a bucket is worth nothing once its minute is over, so Cosmos DB
// deletes it after five minutes instead of the app.
resource callerMinutesContainer 'Microsoft.DocumentDB/databaseAccounts/sqlDatabases/containers@2024-11-15' = {
  parent: database
  name: 'caller_minutes'
  properties: {
    resource: {
      id: 'caller_minutes'
      partitionKey: {
        paths: [
          '/id'
        ]
        kind: 'Hash'
      }
      defaultTtl: 300
    }
  }
}

// Where each stored response of the Responses API lives (shared/gateway/affinity.py): response
// id -> the backend that created it and the team that owns it. Azure OpenAI keeps a response 30
// days; its record goes with it. The app's database-scoped data role covers it: no new grant.
resource responsesContainer 'Microsoft.DocumentDB/databaseAccounts/sqlDatabases/containers@2024-11-15' = {
  parent: database
  name: 'responses'
  properties: {
    resource: {
      id: 'responses'
      partitionKey: {
        paths: [
          '/id'
        ]
        kind: 'Hash'
      }
      defaultTtl: 2592000
    }
  }
}

// The quota ledgers (shared/aoai/quota_ledger.py): one small document per backend and deployment
// that every instance reads and replaces under its ETag to share the deployment's quota. Only
// point reads and replaces touch it, so nothing is indexed: a write costs the fewest RUs.
// Bounded by the deployments, so no TTL. The app's database-scoped data role covers it.
resource quotaLedgerContainer 'Microsoft.DocumentDB/databaseAccounts/sqlDatabases/containers@2024-11-15' = {
  parent: database
  name: 'quota_ledger'
  properties: {
    resource: {
      id: 'quota_ledger'
      partitionKey: {
        paths: [
          '/id'
        ]
        kind: 'Hash'
      }
      indexingPolicy: {
        indexingMode: 'none'
        automatic: false
      }
    }
  }
}

resource privateEndpoint 'Microsoft.Network/privateEndpoints@2024-01-01' = {
  name: 'pe-${name}'
  location: location
  tags: tags
  properties: {
    subnet: {
      id: privateEndpointSubnetId
    }
    privateLinkServiceConnections: [
      {
        name: 'sql'
        properties: {
          privateLinkServiceId: account.id
          groupIds: [
            'Sql'
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
        name: 'documents'
        properties: {
          privateDnsZoneId: cosmosZoneId
        }
      }
    ]
  }
}

resource appDataContributor 'Microsoft.DocumentDB/databaseAccounts/sqlRoleAssignments@2024-11-15' = {
  parent: account
  name: guid(account.id, appPrincipalId, roles.cosmosBuiltInDataContributor)
  properties: {
    roleDefinitionId: '${account.id}/sqlRoleDefinitions/${roles.cosmosBuiltInDataContributor}'
    principalId: appPrincipalId
    // The app's database only, not every database the account may ever hold.
    scope: '${account.id}/dbs/${database.name}'
  }
  dependsOn: [
    sqlContainers
    callerMinutesContainer
    responsesContainer
    quotaLedgerContainer
    resultsContainer
  ]
}

resource userDataContributor 'Microsoft.DocumentDB/databaseAccounts/sqlRoleAssignments@2024-11-15' = if (grantUserDataAccess && !empty(userPrincipalId)) {
  parent: account
  name: guid(account.id, userPrincipalId, roles.cosmosBuiltInDataContributor)
  properties: {
    roleDefinitionId: '${account.id}/sqlRoleDefinitions/${roles.cosmosBuiltInDataContributor}'
    principalId: userPrincipalId
    scope: '${account.id}/dbs/${database.name}'
  }
  dependsOn: [
    sqlContainers
    callerMinutesContainer
    responsesContainer
    quotaLedgerContainer
    resultsContainer
    appDataContributor
  ]
}

output id string = account.id
output name string = account.name
output endpoint string = account.properties.documentEndpoint
output databaseName string = database.name
