"""Timer triggers: NCRONTAB with seconds, the schedule monitor blob, past-due after a restart."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from azure.storage.blob.aio import BlobServiceClient

from devstack.emulators import EmulatorStack
from devstack.functions_host import FunctionsHost
from devstack.functions_host.host import host_id
from devstack.functions_host.settings import HostConfigError
from devstack.functions_host.timers import Schedule, ScheduleStatus
from tests.devstack.functions_host.conftest import MakeApp
from tests.devstack.functions_host.helpers import wait_until

StartHost = Callable[..., Any]


async def _status(emulators: EmulatorStack, host: FunctionsHost) -> dict[str, str] | None:
    name = f"timers/{host_id(host.app_dir)}/Host.Functions.tick/status"
    async with BlobServiceClient.from_connection_string(
        emulators.storage_connection_string
    ) as blobs:
        container = blobs.get_container_client("azure-webjobs-hosts")
        try:
            data = await (await container.download_blob(name)).readall()
        except Exception:
            return None
    status: dict[str, str] = json.loads(data)
    return status


def _seen(host: FunctionsHost) -> list[bool]:
    return host.app.module.seen["timer"]  # type: ignore[union-attr,no-any-return]


async def test_seconds_level_timer_fires_on_schedule_and_records_status(
    make_app: MakeApp, start_host: StartHost, emulators: EmulatorStack
) -> None:
    host = await start_host(make_app(values={"TICK_SCHEDULE": "*/1 * * * * *"}))

    await wait_until(lambda: len(_seen(host)) >= 2, what="two ticks")

    assert _seen(host)[:2] == [False, False]
    status = await _status(emulators, host)
    assert status is not None
    last = datetime.fromisoformat(status["Last"])
    nxt = datetime.fromisoformat(status["Next"])
    assert last.microsecond == 0  # occurrences are whole seconds, as scheduled
    assert nxt - last == timedelta(seconds=1)


async def test_missed_occurrence_is_reported_past_due_after_a_restart(
    make_app: MakeApp, emulators: EmulatorStack
) -> None:
    app_dir = make_app(values={"TICK_SCHEDULE": "*/2 * * * * *"})
    first = FunctionsHost(app_dir, port=0)
    await first.start()
    try:
        await wait_until(lambda: _seen(first), what="first tick")
    finally:
        await first.stop()
    status = await _status(emulators, first)
    assert status is not None
    due = datetime.fromisoformat(status["Next"])
    # Stay down until the recorded next occurrence has passed.
    await wait_until(lambda: datetime.now(UTC) > due + timedelta(milliseconds=200), what="due")

    second = FunctionsHost(app_dir, port=0)
    await second.start()
    try:
        await wait_until(lambda: _seen(second), what="tick after restart")
        assert _seen(second)[0] is True
    finally:
        await second.stop()


async def test_run_on_startup_runs_once_at_start(make_app: MakeApp, start_host: StartHost) -> None:
    host = await start_host(make_app())
    seen = host.app.module.seen  # type: ignore[union-attr]
    await wait_until(lambda: "startup" in seen, what="startup run")
    assert seen["startup"] == [False]


async def test_failing_timer_is_logged_and_keeps_its_schedule(
    make_app: MakeApp, start_host: StartHost, caplog: pytest.LogCaptureFixture
) -> None:
    host = await start_host(make_app(values={"FLAKY_SCHEDULE": "*/1 * * * * *"}))
    seen = host.app.module.seen  # type: ignore[union-attr]
    await wait_until(lambda: len(seen.get("flaky", [])) >= 2, what="two runs despite failures")
    assert "Executed 'Functions.flaky' (Failed, Id=" in caplog.text


@pytest.mark.parametrize(
    ("expression", "after", "expected"),
    [
        ("0 */5 * * * *", "2026-01-01T00:03:10+00:00", "2026-01-01T00:05:00+00:00"),
        ("*/15 * * * * *", "2026-01-01T00:00:16+00:00", "2026-01-01T00:00:30+00:00"),
        ("30 9 * * 1-5", "2026-01-02T10:00:00+00:00", "2026-01-05T09:30:00+00:00"),
        ("00:00:10", "2026-01-01T00:00:00+00:00", "2026-01-01T00:00:10+00:00"),
    ],
)
def test_ncrontab_six_and_five_fields_in_utc(expression: str, after: str, expected: str) -> None:
    nxt = Schedule(expression).next_after(datetime.fromisoformat(after))
    assert nxt == datetime.fromisoformat(expected)


def test_invalid_schedule_is_a_clear_error() -> None:
    with pytest.raises(HostConfigError, match="not a valid NCRONTAB"):
        Schedule("every minute")


def test_status_written_by_the_real_host_is_read() -> None:
    status = ScheduleStatus.from_json(
        {
            "Last": "0001-01-01T00:00:00",
            "Next": "2024-03-06T10:05:00.0069567+00:00",
            "LastUpdated": "2024-03-06T10:00:00.0069567+01:00",
        }
    )
    assert status.last is None
    assert status.next == datetime(2024, 3, 6, 10, 5, 0, 6956, tzinfo=UTC)
    assert status.last_updated.utcoffset() == timedelta(0)
