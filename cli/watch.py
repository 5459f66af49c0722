"""Watching a job until it ends: polls `GET /api/jobs/{id}`, shows a progress bar.

The exit code tells a script how the job ended (see EXIT_CODES); the bar goes to stderr so
stdout stays free for the final summary.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Final

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from cli.api import ApiError, JobsApi
from shared.jobs.models import TERMINAL, JobView

# 2 is click's code for a bad command line, so the job outcomes skip it.
EXIT_CODES: Final = {"succeeded": 0, "failed": 1, "partially_failed": 3, "cancelled": 4}
EXIT_TIMEOUT: Final = 5


class WatchTimeout(TimeoutError):
    def __init__(self, job_id: str, status: str) -> None:
        super().__init__(f"job {job_id} still {status}")
        self.status = status


def done_items(view: JobView) -> int:
    return view.counts.total - view.counts.pending


async def poll(
    api: JobsApi,
    job_id: str,
    *,
    interval: float = 2.0,
    give_up_after: float | None = None,
    wait_for_record: float = 0.0,
    on_update: Callable[[JobView | None], None] = lambda _: None,
) -> JobView:
    """Poll until the job reaches a terminal status; raises WatchTimeout after
    `give_up_after` seconds. A job sent straight to a queue has no record until a worker
    takes its message: its 404 counts as "not yet" for `wait_for_record` seconds
    (`on_update(None)`), then is raised as the ApiError it is."""
    started = time.monotonic()
    status = "unrecorded"
    while True:
        try:
            # One result a page: the poll wants the counts, not the results.
            view = await api.job(job_id, page_size=1)
        except ApiError as exc:
            if exc.status != 404 or time.monotonic() - started >= wait_for_record:
                raise
            on_update(None)
        else:
            on_update(view)
            if view.status in TERMINAL:
                return view
            status = view.status
        if give_up_after is not None and time.monotonic() - started >= give_up_after:
            raise WatchTimeout(job_id, status)
        await asyncio.sleep(interval)


async def watch(
    api: JobsApi,
    job_id: str,
    *,
    interval: float = 2.0,
    give_up_after: float | None = None,
    wait_for_record: float = 0.0,
    console: Console | None = None,
) -> JobView:
    """`poll` with a progress bar of items done (succeeded, failed or filtered) over total."""
    columns = (
        TextColumn("[bold]{task.fields[job]}[/] {task.fields[status]}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("ok {task.fields[ok]}  failed {task.fields[failed]}"),
        TimeElapsedColumn(),
    )
    with Progress(*columns, console=console or Console(stderr=True)) as progress:
        task = progress.add_task("job", total=None, job=job_id, status="...", ok=0, failed=0)

        def show(view: JobView | None) -> None:
            if view is None:
                progress.update(task, status="waiting for a worker to record it")
                return
            progress.update(
                task,
                total=view.counts.total or None,
                completed=done_items(view),
                status=view.status,
                ok=view.counts.succeeded,
                failed=view.counts.failed + view.counts.content_filtered,
            )

        return await poll(
            api,
            job_id,
            interval=interval,
            give_up_after=give_up_after,
            wait_for_record=wait_for_record,
            on_update=show,
        )


def exit_code(status: str) -> int:
    """The exit code of a terminal status (EXIT_TIMEOUT for one still open)."""
    return EXIT_CODES.get(status, EXIT_TIMEOUT)
