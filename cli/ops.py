"""Operator commands on what went wrong: `failed` (jobs in Cosmos DB) and `poison list|requeue`
(messages in the `<queue>-poison` queues)."""

from __future__ import annotations

from dataclasses import asdict
from datetime import UTC, datetime, timedelta
from typing import Annotated

import typer
from rich.table import Table
from rich.text import Text

from cli import options as opt
from cli.console import echo_json, err, out, run
from cli.failed import CosmosOptions, failed_jobs, open_store
from cli.poison import PEEK_MAX, PoisonMessage, Requeued, peek, requeue, requeue_record
from cli.storage import StorageOptions, open_storage
from shared.jobs.models import JobDoc

poison_app = typer.Typer(help="Poisoned messages: list them, requeue them after a fix.")

PREVIEW_CHARS = 120


def failed_command(
    hours: Annotated[float, typer.Option(min=0, help="Jobs updated in the last N hours.")] = 24,
    limit: Annotated[int, typer.Option(min=1, help="Newest N jobs.")] = 50,
    as_json: opt.Json = False,
    cosmos_endpoint: opt.CosmosEndpoint = "",
    cosmos_key: opt.CosmosKey = None,
    cosmos_database: opt.CosmosDatabase = "aoai",
    cosmos_verify_tls: opt.CosmosVerifyTls = True,
) -> None:
    """List jobs that ended failed or partially_failed, newest first."""
    if not cosmos_endpoint:
        raise typer.BadParameter("needed (or COSMOS_ENDPOINT)", param_hint="--cosmos-endpoint")
    cosmos = CosmosOptions(cosmos_endpoint, cosmos_key, cosmos_database, cosmos_verify_tls)
    since = datetime.now(UTC) - timedelta(hours=hours)

    async def go() -> list[JobDoc]:
        async with open_store(cosmos) as store:
            return await failed_jobs(store, since=since, limit=limit)

    jobs = run(go())
    if as_json:
        echo_json([job.model_dump(mode="json", exclude={"etag"}) for job in jobs])
        return
    table = Table("job", "kind", "status", "failed / total", "error", "source", "updated")
    for job in jobs:
        source = job.source
        where = (
            f"{source.via} {source.queue or ''} {source.message_id or ''}".strip() if source else ""
        )
        error = f"{job.error.code}: {job.error.message}" if job.error else ""
        failed = job.counts.failed + job.counts.content_filtered
        table.add_row(
            *plain(
                job.job_id,
                job.kind or "?",
                job.status,
                f"{failed} / {job.counts.total}",
                error,
                where,
                job.updated_at.isoformat(timespec="seconds"),
            ),
        )
    out().print(table)
    err().print(f"{len(jobs)} failed jobs in the last {hours:g} hours")


def plain(*cells: str) -> list[Text]:
    """Table cells shown as they are: message text may hold `[...]` that is not markup."""
    return [Text(cell) for cell in cells]


def _storage(
    connection_string: str | None, queue_url: str | None, claim_check_container: str
) -> StorageOptions:
    return StorageOptions(connection_string, queue_url, None, claim_check_container)


def _row(message: PoisonMessage) -> dict[str, object]:
    return {**asdict(message), "inserted_on": message.inserted_on}


@poison_app.command("list")
def list_command(
    queue: Annotated[
        list[str] | None,
        typer.Option(help="Main queue(s) whose -poison queue to read. Default: both job queues."),
    ] = None,
    as_json: opt.Json = False,
    connection_string: opt.ConnectionString = None,
    queue_url: opt.QueueUrl = None,
    embedding_queue: opt.EmbeddingQueue = "embedding-jobs",
    classification_queue: opt.ClassificationQueue = "classification-jobs",
) -> None:
    """Peek up to 32 messages of each poison queue (nothing is hidden or changed)."""
    names = queue or [embedding_queue, classification_queue]
    storage = _storage(connection_string, queue_url, "job-payloads")

    async def go() -> list[PoisonMessage]:
        async with open_storage(storage) as opened:
            found: list[PoisonMessage] = []
            for name in names:
                found += await peek(opened, name)
            return found

    messages = run(go())
    if as_json:
        echo_json([_row(m) for m in messages])
        return
    table = Table("queue", "message", "encoding", "dequeued", "inserted", "text")
    for m in messages:
        preview = m.text if len(m.text) <= PREVIEW_CHARS else m.text[:PREVIEW_CHARS] + "..."
        inserted = m.inserted_on.isoformat(timespec="seconds") if m.inserted_on else ""
        table.add_row(
            *plain(m.queue, m.id, m.encoding, str(m.dequeue_count or ""), inserted, preview)
        )
    out().print(table)
    err().print(f"{len(messages)} poisoned messages (at most {PEEK_MAX} a queue are shown)")


@poison_app.command("requeue")
def requeue_command(
    queue: Annotated[str, typer.Argument(help="The main queue, e.g. embedding-jobs.")],
    message_id: Annotated[
        list[str] | None, typer.Option("--id", help="Only these message ids (repeatable).")
    ] = None,
    max_messages: Annotated[int, typer.Option("--max", min=1, help="At most N.")] = PEEK_MAX,
    dry_run: Annotated[bool, typer.Option(help="Show what would move; change nothing.")] = False,
    as_json: opt.Json = False,
    connection_string: opt.ConnectionString = None,
    queue_url: opt.QueueUrl = None,
) -> None:
    """Move poisoned messages back onto their queue, base64-encoded; run it after a fix."""
    storage = _storage(connection_string, queue_url, "job-payloads")

    async def go() -> list[Requeued]:
        async with open_storage(storage) as opened:
            return await requeue(
                opened,
                queue,
                ids=set(message_id or ()),
                max_messages=max_messages,
                dry_run=dry_run,
            )

    moved = run(go())
    if as_json:
        echo_json([{**_row(r.message), "new_id": r.new_id, "problem": r.problem} for r in moved])
    else:
        for r in moved:
            if dry_run:
                typer.echo(f"would requeue {r.message.id} ({r.message.encoding}) to {queue}")
            elif r.problem:
                typer.echo(f"kept {r.message.id}: {r.problem}")
            else:
                typer.echo(f"requeued {r.message.id} to {queue} as {r.new_id}")
    problems = sum(1 for r in moved if r.problem)
    verb = "would requeue" if dry_run else "requeued"
    err().print(f"{verb} {len(moved) - problems} of {len(moved)} messages")
    if problems:
        raise typer.Exit(1)


@poison_app.command("requeue-record")
def requeue_record_command(
    job_id: Annotated[str, typer.Argument(help="A failed job the poison sweep recorded.")],
    dry_run: Annotated[bool, typer.Option(help="Show what would be sent; send nothing.")] = False,
    connection_string: opt.ConnectionString = None,
    queue_url: opt.QueueUrl = None,
    blob_url: opt.BlobUrl = None,
    claim_check_container: opt.ClaimCheckContainer = "job-payloads",
    cosmos_endpoint: opt.CosmosEndpoint = "",
    cosmos_key: opt.CosmosKey = None,
    cosmos_database: opt.CosmosDatabase = "aoai",
    cosmos_verify_tls: opt.CosmosVerifyTls = True,
) -> None:
    """Send again, after a fix, the whole message the app's poison sweep kept for a failed job."""
    if not cosmos_endpoint:
        raise typer.BadParameter("needed (or COSMOS_ENDPOINT)", param_hint="--cosmos-endpoint")
    cosmos = CosmosOptions(cosmos_endpoint, cosmos_key, cosmos_database, cosmos_verify_tls)
    storage = StorageOptions(connection_string, queue_url, blob_url, claim_check_container)

    async def go() -> tuple[PoisonMessage, str | None]:
        async with open_store(cosmos) as store, open_storage(storage) as opened:
            return await requeue_record(store, opened, job_id, dry_run=dry_run)

    message, new_id = run(go())
    if dry_run:
        typer.echo(f"would requeue job {job_id}'s message ({message.encoding}) to {message.queue}")
    else:
        typer.echo(f"requeued job {job_id}'s message to {message.queue} as {new_id}")
