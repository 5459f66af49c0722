// Key Vault for the app's two secrets: the HMAC key of the chat `user` hash (USER_HASH_SECRET)
// and the HMAC key team keys are stored under (TEAM_KEY_HASH_SECRET).
// RBAC only (no access policy), public network access off, reached through its private
// endpoint; the app identity may read those two secrets (Key Vault Secrets User on each
// secret), through Key Vault references in the app settings. docs/security.md: rotation.
param name string
param location string
param tags object = {}

param privateEndpointSubnetId string
param vaultZoneId string

@description('Principal id of the app identity: reads the two secrets, nothing else.')
param appPrincipalId string

@secure()
@minLength(32)
@description('HMAC key for USER_HASH_SECRET (at least 32 characters), generated once by the preprovision hook and kept in the azd environment: every provision writes the same value.')
param userHashSecret string

@secure()
@minLength(32)
@description('HMAC key for TEAM_KEY_HASH_SECRET (at least 32 characters), generated once by the preprovision hook and kept in the azd environment: a new value would invalidate every team key.')
param teamKeyHashSecret string

@description('Purge protection: on in production (a deleted vault stays recoverable, and its name taken, for 90 days); once on, Azure never turns it off.')
param purgeProtection bool = true

var secretName = 'user-hash-secret'
var teamKeySecretName = 'team-key-hash-secret'
var roles = {
  keyVaultSecretsUser: '4633458b-17de-408a-b874-0445c86b69e6'
}

resource vault 'Microsoft.KeyVault/vaults@2023-07-01' = {
  name: name
  location: location
  tags: tags
  properties: {
    tenantId: tenant().tenantId
    sku: {
      family: 'A'
      name: 'standard'
    }
    enableRbacAuthorization: true
    accessPolicies: []
    enableSoftDelete: true
    softDeleteRetentionInDays: 90
    // Azure accepts only true or no value: off means the property is left out.
    enablePurgeProtection: purgeProtection ? true : null
    publicNetworkAccess: 'Disabled'
    networkAcls: {
      defaultAction: 'Deny'
      bypass: 'None'
      ipRules: []
      virtualNetworkRules: []
    }
  }
}

// Always written, and always with the same value (the azd environment keeps it), so the Key
// Vault reference in the app settings always resolves and stored user hashes stay valid.
resource userHash 'Microsoft.KeyVault/vaults/secrets@2023-07-01' = {
  parent: vault
  name: secretName
  properties: {
    value: userHashSecret
    contentType: 'text/plain'
  }
}

// The same: always written with the azd environment's value, so every team key stays valid.
resource teamKeyHash 'Microsoft.KeyVault/vaults/secrets@2023-07-01' = {
  parent: vault
  name: teamKeySecretName
  properties: {
    value: teamKeyHashSecret
    contentType: 'text/plain'
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
        name: 'vault'
        properties: {
          privateLinkServiceId: vault.id
          groupIds: [
            'vault'
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
        name: 'vault'
        properties: {
          privateDnsZoneId: vaultZoneId
        }
      }
    ]
  }
}

resource appSecretsUser 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(userHash.id, appPrincipalId, roles.keyVaultSecretsUser)
  scope: userHash
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.keyVaultSecretsUser)
    principalId: appPrincipalId
    principalType: 'ServicePrincipal'
  }
}

resource appTeamKeySecretUser 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(teamKeyHash.id, appPrincipalId, roles.keyVaultSecretsUser)
  scope: teamKeyHash
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.keyVaultSecretsUser)
    principalId: appPrincipalId
    principalType: 'ServicePrincipal'
  }
}

output id string = vault.id
output name string = vault.name
// Versionless: the app picks up a rotated secret when App Service refreshes references.
output userHashSecretUri string = '${vault.properties.vaultUri}secrets/${secretName}'
output teamKeyHashSecretUri string = '${vault.properties.vaultUri}secrets/${teamKeySecretName}'
