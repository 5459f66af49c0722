"""The one clock: every timestamp the app writes is timezone-aware UTC from here."""

from datetime import UTC, datetime


def now() -> datetime:
    return datetime.now(UTC)
