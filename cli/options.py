"""Command-line options shared by several commands, each with the environment variable it
falls back to. Storage, Cosmos DB and queue options read the app's own setting names, so an
operator with the app's settings exported needs no flags."""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated

import typer

HTTP = "HTTP (the app's job API)"
STORAGE = "Storage (straight to the queues)"
COSMOS = "Cosmos DB (read access to the jobs container)"


class Kind(StrEnum):
    embedding = "embedding"
    classification = "classification"


class Via(StrEnum):
    auto = "auto"
    http = "http"
    queue = "queue"


Url = Annotated[
    str | None,
    typer.Option(
        envvar="JOBS_API_URL",
        help="The app's API root, https://<app>.azurewebsites.net/api.",
        rich_help_panel=HTTP,
    ),
]
Key = Annotated[
    str | None,
    typer.Option(
        envvar="JOBS_API_KEY",
        help="A team's key, sent as api-key: the jobs are that team's.",
        show_default=False,
        rich_help_panel=HTTP,
    ),
]
ConnectionString = Annotated[
    str | None,
    typer.Option(
        envvar="AzureWebJobsStorage",
        help="Storage connection string (Azurite, or a key in an emergency).",
        show_default=False,
        rich_help_panel=STORAGE,
    ),
]
QueueUrl = Annotated[
    str | None,
    typer.Option(
        envvar="AzureWebJobsStorage__queueServiceUri",
        help="Queue service URL, used with DefaultAzureCredential when no connection string.",
        rich_help_panel=STORAGE,
    ),
]
BlobUrl = Annotated[
    str | None,
    typer.Option(
        envvar="AzureWebJobsStorage__blobServiceUri",
        help="Blob service URL for claim checks (default: the queue URL's account).",
        rich_help_panel=STORAGE,
    ),
]
ClaimCheckContainer = Annotated[
    str,
    typer.Option(
        envvar="CLAIM_CHECK_CONTAINER", help="Claim-check blob container.", rich_help_panel=STORAGE
    ),
]
EmbeddingQueue = Annotated[
    str,
    typer.Option(
        envvar="EMBEDDING_QUEUE", help="Queue of embedding jobs.", rich_help_panel=STORAGE
    ),
]
ClassificationQueue = Annotated[
    str,
    typer.Option(
        envvar="CLASSIFICATION_QUEUE", help="Queue of classification jobs.", rich_help_panel=STORAGE
    ),
]
CosmosEndpoint = Annotated[
    str,
    typer.Option(
        envvar="COSMOS_ENDPOINT", help="Cosmos DB account endpoint.", rich_help_panel=COSMOS
    ),
]
CosmosKey = Annotated[
    str | None,
    typer.Option(
        envvar="COSMOS_KEY",
        help="Account key; without it DefaultAzureCredential (a data-plane reader role).",
        show_default=False,
        rich_help_panel=COSMOS,
    ),
]
CosmosDatabase = Annotated[
    str, typer.Option(envvar="COSMOS_DATABASE", help="Database.", rich_help_panel=COSMOS)
]
CosmosVerifyTls = Annotated[
    bool,
    typer.Option(
        envvar="COSMOS_VERIFY_TLS",
        help="Verify TLS; turn off only for the local self-signed server.",
        rich_help_panel=COSMOS,
    ),
]
Json = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]
