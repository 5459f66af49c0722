"""A team booking kept in a document, to be settled later by whichever instance learns the
call's usage: a background response's (shared/gateway/responses.py), whose tokens are known only
when a poll finds it done, possibly on another instance (shared/metering/team_limits.py)."""

from __future__ import annotations

from pydantic import BaseModel

from shared.metering.team_limits import Booking
from shared.metering.team_windows import Windows


class HeldBooking(BaseModel):
    """What `TeamLimiter.settle` needs of a booking, as stored."""

    team: str
    tokens: int
    usd_micros: int
    minute: int
    day: str
    month: str
    counts_tokens: bool
    counts_usd: bool

    @staticmethod
    def of(booking: Booking) -> HeldBooking:
        return HeldBooking(
            team=booking.team_id,
            tokens=booking.tokens,
            usd_micros=booking.usd_micros,
            minute=booking.windows.minute,
            day=booking.windows.day,
            month=booking.windows.month,
            counts_tokens=booking.counts_tokens,
            counts_usd=booking.counts_usd,
        )

    def booking(self) -> Booking:
        """The booking again: settled on another instance, its difference goes to the team's
        counters of these windows (a minute or day already past is left as it was)."""
        return Booking(
            self.team,
            self.tokens,
            self.usd_micros,
            Windows(self.minute, self.day, self.month),
            counts_tokens=self.counts_tokens,
            counts_usd=self.counts_usd,
        )
