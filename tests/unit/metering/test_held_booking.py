"""A booking kept in a document comes back as the booking it was."""

from __future__ import annotations

from shared.metering.held_booking import HeldBooking
from shared.metering.team_limits import Booking
from shared.metering.team_windows import Windows


def test_a_held_booking_round_trips_through_json() -> None:
    booking = Booking("search", 1200, 3400, Windows(29_000_000, "2026-12-07", "2026-12"))
    held = HeldBooking.model_validate_json(HeldBooking.of(booking).model_dump_json())
    again = held.booking()
    assert (again.team_id, again.tokens, again.usd_micros, again.windows) == (
        booking.team_id,
        booking.tokens,
        booking.usd_micros,
        booking.windows,
    )
    assert (again.counts_tokens, again.counts_usd, again.offline) == (True, True, False)
