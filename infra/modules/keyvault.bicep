// Key Vault for the app's one secret: the HMAC key of the chat `user` hash (USER_HASH_SECRET).
// RBAC only (no access policy), public network access off, reached through its private
// endpoint; the app identity may read that one secret (Key Vault Secrets User on the secret),
// through a Key Vault reference in the app settings. docs/security.md: rotation.
param name string
param location string
param tags object = {}

param privateEndpointSubnetId string
param vaultZoneId string

@description('Principal id of the app identity: reads the user-hash secret, nothing else.')
param appPrincipalId string

@secure()
@description('HMAC key for USER_HASH_SECRET (at least 32 characters). Empty: the secret is left as it is (set it once: docs/security.md).')
param userHashSecret string = ''

var secretName = 'user-hash-secret'
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
    enablePurgeProtection: true
    publicNetworkAccess: 'Disabled'
    networkAcls: {
      defaultAction: 'Deny'
      bypass: 'None'
      ipRules: []
      virtualNetworkRules: []
    }
  }
}

// Written only when a value is given, so a later `azd provision` without it keeps the secret
// (and every stored user hash) as it is.
resource userHash 'Microsoft.KeyVault/vaults/secrets@2023-07-01' = if (!empty(userHashSecret)) {
  parent: vault
  name: secretName
  properties: {
    value: userHashSecret
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

resource appSecretsUser 'Microsoft.Authorization/roleAssignments@2022-04-01' = if (!empty(userHashSecret)) {
  name: guid(userHash.id, appPrincipalId, roles.keyVaultSecretsUser)
  scope: userHash
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
