// Private DNS zones for every private endpoint, each linked to the VNet so the app resolves
// the services' public names to their private addresses.
param name string
param location string = 'global'
param tags object = {}

param vnetId string

// Order matters: the outputs below index into this list.
var zoneNames = [
  'privatelink.openai.azure.com'
  'privatelink.documents.azure.com'
  'privatelink.blob.${environment().suffixes.storage}'
  'privatelink.queue.${environment().suffixes.storage}'
  'privatelink.table.${environment().suffixes.storage}'
  'privatelink.vaultcore.azure.net'
  'privatelink.azurewebsites.net'
]

resource zones 'Microsoft.Network/privateDnsZones@2020-06-01' = [for zoneName in zoneNames: {
  name: zoneName
  location: location
  tags: tags
}]

resource links 'Microsoft.Network/privateDnsZones/virtualNetworkLinks@2020-06-01' = [for (zoneName, i) in zoneNames: {
  parent: zones[i]
  name: '${name}-link'
  location: location
  tags: tags
  properties: {
    registrationEnabled: false
    virtualNetwork: {
      id: vnetId
    }
  }
}]

output openAiZoneId string = zones[0].id
output cosmosZoneId string = zones[1].id
output blobZoneId string = zones[2].id
output queueZoneId string = zones[3].id
output tableZoneId string = zones[4].id
output vaultZoneId string = zones[5].id
output sitesZoneId string = zones[6].id
