// The function app on Flex Consumption (FC1, Linux), Python 3.11, integrated with the VNet.
// Its code package lives in a blob container reached with the user-assigned identity, and
// every app setting is passed in from main.bicep (merged in one place there).
param name string
param location string
param tags object = {}

param identityId string
param appSubnetId string
@description('Blob container URL holding the deployment package (https://<account>.blob.<suffix>/<container>).')
param deploymentContainerUrl string
@description('Every app setting, name -> value. None may carry a secret: connections use the identity.')
param appSettings object

param pythonVersion string = '3.11'

@description('App Service authentication with Entra ID: callers need a token of entraClientId (and an app role, checked by the app with ENTRA_AUTH).')
param entraAuth bool = false
param entraClientId string = ''

@allowed([
  'public'
  'restricted'
  'private'
])
@description('public: open to the internet (keys, tokens); restricted: allowedInboundCidrs only; private: a private endpoint, public access off.')
param inboundAccess string = 'public'
param allowedInboundCidrs array = []
@description('restricted or private: a CIDR that may still reach the deployment (SCM) site, for azd deploy from outside the VNet. Empty: the SCM site follows the main site.')
param deployerIpRange string = ''
param privateEndpointSubnetId string
param sitesZoneId string
param instanceMemoryMB int = 2048
param maximumInstanceCount int = 40

resource plan 'Microsoft.Web/serverfarms@2024-04-01' = {
  name: 'plan-${name}'
  location: location
  tags: tags
  kind: 'functionapp'
  sku: {
    name: 'FC1'
    tier: 'FlexConsumption'
  }
  properties: {
    reserved: true
  }
}

resource site 'Microsoft.Web/sites@2024-04-01' = {
  name: name
  location: location
  tags: tags
  kind: 'functionapp,linux'
  identity: {
    type: 'UserAssigned'
    userAssignedIdentities: {
      '${identityId}': {}
    }
  }
  properties: {
    serverFarmId: plan.id
    httpsOnly: true
    clientCertMode: 'Optional'
    virtualNetworkSubnetId: appSubnetId
    // Key Vault references (USER_HASH_SECRET) resolve with the app identity.
    keyVaultReferenceIdentity: identityId
    // private without a deployer range: no public path at all (deploy from inside the VNet).
    // private with one: the public endpoint stays on but the main site denies everything, and
    // only the SCM site admits deployerIpRange (docs/deploy.md, "Deploying with private inbound").
    publicNetworkAccess: ((inboundAccess == 'private') && empty(deployerIpRange)) ? 'Disabled' : 'Enabled'
    siteConfig: {
      // No ftpsState: Flex Consumption refuses it in some regions (ARM error 51021), as the
      // official FC1 samples show; FTP is off through basicPublishingCredentialsPolicies below.
      minTlsVersion: '1.2'
      http20Enabled: true
      ipSecurityRestrictionsDefaultAction: (inboundAccess == 'public') ? 'Allow' : 'Deny'
      ipSecurityRestrictions: [for (cidr, i) in ((inboundAccess == 'restricted') ? allowedInboundCidrs : []): {
        name: 'allowed-${i}'
        ipAddress: cidr
        action: 'Allow'
        priority: 100 + i
      }]
      // The SCM (deployment) site follows the main site's rules unless a deployer range is
      // given: then it admits only that range.
      scmIpSecurityRestrictionsUseMain: empty(deployerIpRange)
      scmIpSecurityRestrictionsDefaultAction: (inboundAccess == 'public') ? 'Allow' : 'Deny'
      scmIpSecurityRestrictions: empty(deployerIpRange) ? [] : [
        {
          name: 'deployer'
          ipAddress: deployerIpRange
          action: 'Allow'
          priority: 100
        }
      ]
    }
    functionAppConfig: {
      deployment: {
        storage: {
          type: 'blobContainer'
          value: deploymentContainerUrl
          authentication: {
            type: 'UserAssignedIdentity'
            userAssignedIdentityResourceId: identityId
          }
        }
      }
      scaleAndConcurrency: {
        instanceMemoryMB: instanceMemoryMB
        maximumInstanceCount: maximumInstanceCount
      }
      runtime: {
        name: 'python'
        version: pythonVersion
      }
    }
  }
}

resource settings 'Microsoft.Web/sites/config@2024-04-01' = {
  parent: site
  name: 'appsettings'
  properties: appSettings
}

// Entra ID sign-in beside team keys (docs/security.md). App Service validates a token when one
// is sent and passes the principal (with its app roles) in x-ms-client-principal, a header it
// strips from what callers send; it does not refuse callers without a token, because a product
// team's plain SDK sends a team key instead. The app is the gate: a data-plane call needs a team
// key or a signed-in member of one team with the route's app role (ENTRA_AUTH,
// shared/http/team_auth.py), and the other routes keep their host keys.
resource auth 'Microsoft.Web/sites/config@2024-04-01' = if (entraAuth) {
  parent: site
  name: 'authsettingsV2'
  properties: {
    platform: {
      enabled: true
    }
    globalValidation: {
      requireAuthentication: false
      unauthenticatedClientAction: 'AllowAnonymous'
    }
    httpSettings: {
      requireHttps: true
    }
    identityProviders: {
      azureActiveDirectory: {
        enabled: true
        registration: {
          clientId: entraClientId
          openIdIssuer: '${environment().authentication.loginEndpoint}${tenant().tenantId}/v2.0'
        }
        validation: {
          allowedAudiences: [
            'api://${entraClientId}'
            entraClientId
          ]
        }
      }
    }
    login: {
      tokenStore: {
        enabled: false
      }
    }
  }
}

// inboundAccess 'private': callers reach the app only through this endpoint in the VNet.
resource privateEndpoint 'Microsoft.Network/privateEndpoints@2024-01-01' = if (inboundAccess == 'private') {
  name: 'pe-${name}'
  location: location
  tags: tags
  properties: {
    subnet: {
      id: privateEndpointSubnetId
    }
    privateLinkServiceConnections: [
      {
        name: 'sites'
        properties: {
          privateLinkServiceId: site.id
          groupIds: [
            'sites'
          ]
        }
      }
    ]
  }
}

resource dnsZoneGroup 'Microsoft.Network/privateEndpoints/privateDnsZoneGroups@2024-01-01' = if (inboundAccess == 'private') {
  parent: privateEndpoint
  name: 'default'
  properties: {
    privateDnsZoneConfigs: [
      {
        name: 'sites'
        properties: {
          privateDnsZoneId: sitesZoneId
        }
      }
    ]
  }
}

// No publishing password: code is deployed with an Entra token (azd, az functionapp deploy).
resource ftpCredentials 'Microsoft.Web/sites/basicPublishingCredentialsPolicies@2024-04-01' = {
  parent: site
  name: 'ftp'
  properties: {
    allow: false
  }
}

resource scmCredentials 'Microsoft.Web/sites/basicPublishingCredentialsPolicies@2024-04-01' = {
  parent: site
  name: 'scm'
  properties: {
    allow: false
  }
}

output id string = site.id
output name string = site.name
output uri string = 'https://${site.properties.defaultHostName}'
