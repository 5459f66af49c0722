"""The command table: `submit`, `watch`, `export`, `failed` and `poison list|requeue`.

Each command parses its options, runs one coroutine of the modules beside this one and turns
errors into a message on stderr and an exit code (docs/jobs-cli.md lists them).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape

from cli import options as opt
from cli.api import JobsApi
from cli.console import echo_json, err, failures, run
from cli.export import ExportFormat, detect_format, export_pages
from cli.items import ItemFormat, read_items
from cli.ops import failed_command, poison_app
from cli.storage import StorageOptions, open_storage
from cli.submit import JobOptions, Submitted, build_job, submit_over_http, submit_to_queue
from cli.teams import teams_app
from cli.watch import EXIT_TIMEOUT, WatchTimeout, exit_code, watch
from shared.jobs.models import TERMINAL

app = typer.Typer(
    help="Operate the app: queue jobs (submit, watch, export, failed jobs, poisoned messages) "
    "and the team registry.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
app.command("failed")(failed_command)
app.add_typer(poison_app, name="poison")
app.add_typer(teams_app, name="teams")


def parse_tags(values: list[str]) -> dict[str, str]:
    tags: dict[str, str] = {}
    for value in values:
        key, sep, text = value.partition("=")
        if not sep or not key:
            raise typer.BadParameter(f"{value!r}: expected key=value", param_hint="--tag")
        tags[key] = text
    return tags


@app.command()
def submit(
    file: Annotated[Path, typer.Argument(exists=True, dir_okay=False, help="JSONL or CSV.")],
    kind: Annotated[opt.Kind, typer.Option("--kind", "-k", help="The job's kind.")],
    label: Annotated[
        list[str] | None, typer.Option("--label", "-l", help="A label (classification).")
    ] = None,
    multi_label: Annotated[bool, typer.Option(help="Allow several labels an item.")] = False,
    instructions: Annotated[str | None, typer.Option(help="Extra classification text.")] = None,
    dimensions: Annotated[int | None, typer.Option(help="Embedding dimensions.")] = None,
    model: Annotated[str | None, typer.Option(help="Model alias (default: the app's).")] = None,
    batch: Annotated[bool, typer.Option(help='mode "batch" instead of "realtime".')] = False,
    tag: Annotated[list[str] | None, typer.Option(help="key=value, repeatable.")] = None,
    job_id: Annotated[str | None, typer.Option(help="Default: a new UUID.")] = None,
    fmt: Annotated[ItemFormat | None, typer.Option("--format", help="Default: by suffix.")] = None,
    id_field: Annotated[str, typer.Option(help="Column or key of the item id.")] = "id",
    text_field: Annotated[str, typer.Option(help="Column or key of the item text.")] = "text",
    via: Annotated[
        opt.Via, typer.Option(help="auto: http when --url is set, else the queue.")
    ] = opt.Via.auto,
    then_watch: Annotated[bool, typer.Option("--watch", help="Then watch (needs --url).")] = False,
    url: opt.Url = None,
    key: opt.Key = None,
    connection_string: opt.ConnectionString = None,
    queue_url: opt.QueueUrl = None,
    blob_url: opt.BlobUrl = None,
    claim_check_container: opt.ClaimCheckContainer = "job-payloads",
    embedding_queue: opt.EmbeddingQueue = "embedding-jobs",
    classification_queue: opt.ClassificationQueue = "classification-jobs",
) -> None:
    """Submit a file of items as one job. Prints the job id on stdout."""
    with failures():
        items = read_items(file, fmt, id_field=id_field, text_field=text_field)
        job = build_job(
            JobOptions(
                kind=kind.value,
                job_id=job_id,
                model=model,
                mode="batch" if batch else "realtime",
                tags=parse_tags(tag or []),
                dimensions=dimensions,
                labels=tuple(label or ()),
                multi_label=multi_label,
                instructions=instructions,
            ),
            items,
        )
        use_http = via == opt.Via.http or (via == opt.Via.auto and url is not None)
        if then_watch and not url:
            raise ValueError("--watch needs --url (or JOBS_API_URL): it polls the job API")

    async def send() -> Submitted:
        if use_http:
            if not url:
                raise ValueError("--via http needs --url (or JOBS_API_URL)")
            async with JobsApi(url, key) as api:
                return await submit_over_http(api, job)
        storage = StorageOptions(connection_string, queue_url, blob_url, claim_check_container)
        queue = embedding_queue if kind == opt.Kind.embedding else classification_queue
        async with open_storage(storage) as opened:
            return await submit_to_queue(opened, queue, job)

    sent = run(send())
    how = "a claim check (the job in a blob)" if sent.claim_check else "one message"
    where = "HTTP" if sent.via == "http" else f"the queue, as {how}"
    err().print(escape(f"submitted {len(items)} items as job {sent.job_id} over {where}"))
    typer.echo(sent.job_id)
    if then_watch:
        assert url is not None
        _watch(url, key, sent.job_id, interval=2.0, timeout=None, wait=60.0, as_json=False)


@app.command("watch")
def watch_command(
    job_id: Annotated[str, typer.Argument(help="The job to watch.")],
    interval: Annotated[float, typer.Option(min=0.1, help="Seconds between polls.")] = 2.0,
    timeout: Annotated[float | None, typer.Option(help="Give up after this many seconds.")] = None,
    wait_for_record: Annotated[
        float,
        typer.Option(
            min=0,
            help="Seconds a 404 means 'not yet': a queued job has no record "
            "until a worker takes its message.",
        ),
    ] = 60.0,
    as_json: opt.Json = False,
    url: opt.Url = None,
    key: opt.Key = None,
) -> None:
    """Show a job's progress until it ends; the exit code tells how it ended."""
    if not url:
        raise typer.BadParameter("needed (or JOBS_API_URL)", param_hint="--url")
    _watch(
        url,
        key,
        job_id,
        interval=interval,
        timeout=timeout,
        wait=wait_for_record,
        as_json=as_json,
    )


def _watch(
    url: str,
    key: str | None,
    job_id: str,
    *,
    interval: float,
    timeout: float | None,
    wait: float,
    as_json: bool,
) -> None:
    async def go() -> Any:
        async with JobsApi(url, key) as api:
            try:
                return await watch(
                    api,
                    job_id,
                    interval=interval,
                    give_up_after=timeout,
                    wait_for_record=wait,
                    console=err(),
                )
            except WatchTimeout as exc:
                return exc

    outcome = run(go())
    if isinstance(outcome, WatchTimeout):
        err().print(f"[yellow]timed out:[/] {escape(str(outcome))}")
        raise typer.Exit(EXIT_TIMEOUT)
    summary = outcome.model_dump(mode="json", exclude={"results", "continuation"})
    if as_json:
        echo_json(summary)
    else:
        counts = outcome.counts
        line = (
            f"job {outcome.job_id} {outcome.status}: {counts.succeeded} succeeded, "
            f"{counts.failed} failed, {counts.content_filtered} filtered of {counts.total}; "
            f"{outcome.usage.total_tokens} tokens"
        )
        if outcome.error:
            line += f"; {outcome.error.code}: {outcome.error.message}"
        typer.echo(line)
    raise typer.Exit(exit_code(outcome.status))


@app.command()
def export(
    job_id: Annotated[str, typer.Argument(help="The job whose results to export.")],
    out: Annotated[Path, typer.Argument(dir_okay=False, help="A .jsonl or .parquet file.")],
    fmt: Annotated[
        ExportFormat | None, typer.Option("--format", help="Default: by suffix.")
    ] = None,
    page_size: Annotated[int, typer.Option(min=1, max=1000, help="Results a request.")] = 100,
    url: opt.Url = None,
    key: opt.Key = None,
) -> None:
    """Write every result of a job to a file, following the continuation pages."""
    if not url:
        raise typer.BadParameter("needed (or JOBS_API_URL)", param_hint="--url")
    with failures():
        kind = detect_format(out, fmt)

    async def go() -> Any:
        async with JobsApi(url, key) as api:
            return await export_pages(api.result_pages(job_id, page_size), out, kind)

    summary = run(go())
    if summary.status not in TERMINAL:
        err().print(f"[yellow]job is still {summary.status}: the export is partial[/]")
    err().print(escape(f"{summary.rows} results in {summary.pages} pages -> {summary.path}"))
