// The one user-assigned identity the function app runs as: every data-plane call (storage,
// Cosmos DB, Azure OpenAI, Application Insights) authenticates with it; no key exists anywhere.
param name string
param location string
param tags object = {}

resource identity 'Microsoft.ManagedIdentity/userAssignedIdentities@2023-01-31' = {
  name: name
  location: location
  tags: tags
}

output id string = identity.id
output name string = identity.name
output clientId string = identity.properties.clientId
output principalId string = identity.properties.principalId
