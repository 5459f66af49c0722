"""The least settings the app loads with, for unit tests that build Settings themselves."""

BASE = {
    "CHAT_DEPLOYMENT": "gpt-4o",
    "USER_HASH_SECRET": "unit-test-user-hash-secret-0123456789",
    "TEAM_KEY_HASH_SECRET": "unit-test-team-key-hash-secret-0123456789",
    "EMBEDDING_DEPLOYMENT": "text-embedding-3-small",
    "COSMOS_ENDPOINT": "https://127.0.0.1:8081",
    "AzureWebJobsStorage": "UseDevelopmentStorage=true",
}
