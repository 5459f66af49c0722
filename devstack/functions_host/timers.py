"""Timer triggers: NCRONTAB (6 fields with seconds, or 5), UTC, `run_on_startup`, `use_monitor`.

The schedule monitor keeps `{"Last", "Next", "LastUpdated"}` in blob
`azure-webjobs-hosts/timers/<host id>/Host.Functions.<name>/status`, as the host does. At start
a recorded `Next` already in the past means an occurrence was missed while the app was down:
the function runs at once with `past_due` true. One invocation at a time per timer; a failure
is logged and the schedule goes on.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from azure.core.exceptions import ResourceExistsError, ResourceNotFoundError
from azure.functions.timer import TimerRequest
from azure.storage.blob.aio import BlobServiceClient
from croniter import croniter

from devstack.functions_host.indexing import FunctionSpec
from devstack.functions_host.invocation import InvocationError, Invoker
from devstack.functions_host.logs import log
from devstack.functions_host.settings import HostConfigError, parse_timespan, resolve_references

MONITOR_CONTAINER = "azure-webjobs-hosts"


def utcnow() -> datetime:
    return datetime.now(UTC)


class Schedule:
    """An NCRONTAB expression (`{second} {minute} {hour} {day} {month} {day-of-week}` or the
    5-field form without seconds) or a `hh:mm:ss` interval, evaluated in UTC."""

    def __init__(self, expression: str) -> None:
        self.expression = expression.strip()
        self._interval: timedelta | None = None
        if re.fullmatch(r"[\d.]*\d:\d{2}:\d{2}", self.expression):
            self._interval = parse_timespan(self.expression)
            return
        fields = len(self.expression.split())
        seconds_first = fields == 6
        if fields not in (5, 6) or not croniter.is_valid(
            self.expression, second_at_beginning=seconds_first
        ):
            raise HostConfigError(f"{expression!r} is not a valid NCRONTAB expression")
        self._seconds_first = seconds_first

    def next_after(self, moment: datetime) -> datetime:
        if self._interval is not None:
            return moment + self._interval
        it = croniter(self.expression, moment, second_at_beginning=self._seconds_first)
        nxt: datetime = it.get_next(datetime)
        return nxt

    def default_use_monitor(self, now: datetime) -> bool:
        """The host monitors schedules whose occurrences are at least a minute apart."""
        first = self.next_after(now)
        return self.next_after(first) - first >= timedelta(minutes=1)


@dataclass
class ScheduleStatus:
    last: datetime | None
    next: datetime
    last_updated: datetime

    def to_json(self) -> dict[str, str]:
        default = datetime(1, 1, 1, tzinfo=UTC)
        return {
            "Last": (self.last or default).isoformat(),
            "Next": self.next.isoformat(),
            "LastUpdated": self.last_updated.isoformat(),
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ScheduleStatus:
        last = _utc(data["Last"])
        return cls(
            last=None if last.year == 1 else last,
            next=_utc(data["Next"]),
            last_updated=_utc(data["LastUpdated"]),
        )


def _utc(text: str) -> datetime:
    """An ISO time as the host writes it (7 fraction digits, maybe no offset) in UTC."""
    moment = datetime.fromisoformat(text)
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


class ScheduleMonitor:
    """Schedule status blobs in the `AzureWebJobsStorage` account."""

    def __init__(self, blobs: BlobServiceClient, host_id: str) -> None:
        self._container = blobs.get_container_client(MONITOR_CONTAINER)
        self._host_id = host_id
        self._created = False

    def blob_name(self, function_name: str) -> str:
        return f"timers/{self._host_id}/Host.Functions.{function_name}/status"

    async def get(self, function_name: str) -> ScheduleStatus | None:
        try:
            blob = await self._container.download_blob(self.blob_name(function_name))
            return ScheduleStatus.from_json(json.loads(await blob.readall()))
        except ResourceNotFoundError:
            return None

    async def put(self, function_name: str, status: ScheduleStatus) -> None:
        if not self._created:
            with contextlib.suppress(ResourceExistsError):
                await self._container.create_container()
            self._created = True
        await self._container.upload_blob(
            self.blob_name(function_name), json.dumps(status.to_json()), overwrite=True
        )


class TimerListener:
    def __init__(
        self, spec: FunctionSpec, invoker: Invoker, monitor: ScheduleMonitor | None
    ) -> None:
        self.spec = spec
        self.schedule = Schedule(resolve_references(str(spec.trigger["schedule"])))
        use_monitor = spec.trigger.get("useMonitor")
        self.use_monitor = (
            self.schedule.default_use_monitor(utcnow()) if use_monitor is None else use_monitor
        )
        if self.use_monitor and monitor is None:
            raise HostConfigError(
                f"timer {spec.name!r} uses the schedule monitor, which needs AzureWebJobsStorage"
            )
        self._monitor = monitor if self.use_monitor else None
        self._invoker = invoker
        self._task: asyncio.Task[None] | None = None
        self._stopping = asyncio.Event()
        self.status: ScheduleStatus | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name=f"timer:{self.spec.name}")

    async def stop(self, grace: float) -> None:
        """Let a running invocation finish (up to `grace` s), then stop the schedule."""
        if self._task is None:
            return
        self._stopping.set()
        done, _ = await asyncio.wait({self._task}, timeout=grace)
        if not done:
            self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task

    async def _run(self) -> None:
        now = utcnow()
        if self._monitor is not None:
            try:
                self.status = await self._monitor.get(self.spec.name)
            except Exception:
                log.exception("Reading the schedule status of '%s' failed", self.spec.name)
        if self.status is not None and now > self.status.next:
            log.info(
                "Timer '%s' is past due (was due %s)", self.spec.name, self.status.next.isoformat()
            )
            await self._invoke(now, past_due=True)
        elif self.spec.trigger.get("runOnStartup"):
            await self._invoke(now, past_due=False)
        while not self._stopping.is_set():
            due = self.schedule.next_after(utcnow())
            await self._save(due)
            log.debug("Timer '%s' next runs at %s", self.spec.name, due.isoformat())
            delay = max((due - utcnow()).total_seconds(), 0.0)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), delay)
            if self._stopping.is_set():
                return
            await self._invoke(due, past_due=False)

    async def _save(self, due: datetime) -> None:
        last = self.status.last if self.status else None
        self.status = ScheduleStatus(last=last, next=due, last_updated=utcnow())
        if self._monitor is not None:
            try:
                await self._monitor.put(self.spec.name, self.status)
            except Exception:
                # The schedule goes on; only past-due detection after a restart is affected.
                log.exception("Saving the schedule status of '%s' failed", self.spec.name)

    async def _invoke(self, occurrence: datetime, *, past_due: bool) -> None:
        status = self.status.to_json() if self.status else {}
        request = TimerRequest(
            past_due=past_due, schedule_status=status, schedule={"AdjustForDST": True}
        )
        reason = f"Timer fired at {utcnow().isoformat()}"
        with contextlib.suppress(InvocationError):
            await self._invoker.invoke(self.spec, request, reason)
        if self.status is not None:
            self.status.last = occurrence
