"""One job request's share of a deployment's quota, from the limiter's `acquire` to the
service's answer (shared/aoai/quota.py): settled to what the service charged, then the answer's
rate-limit headers observed, in that order."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from shared.aoai.quota import DeploymentLimiter


@dataclass
class Reservation:
    """One request's share of the quota, from `acquire` to the service's answer.

    The order matters (see `DeploymentLimiter.observe`): the reservation is settled first,
    then the answer's headers are observed, so requests still in flight are not taken for
    other hosts' usage. A request that got no answer at all (a timeout) stays reserved: the
    service may have counted it.
    """

    limiter: DeploymentLimiter
    tokens: int
    settled: bool = False

    def answered(self, headers: Mapping[str, str], charged: int | None = None) -> None:
        """The service answered and charged `charged` tokens (default: what was reserved,
        as for chat, where the quota charges the prompt estimate plus max tokens)."""
        self._settle(self.tokens if charged is None else charged)
        self.limiter.observe(headers)

    def refused(self, headers: Mapping[str, str]) -> None:
        """The service refused the request (429, 400): it was not charged."""
        self._settle(0)
        self.limiter.observe(headers)

    def _settle(self, used: int) -> None:
        # A split request answers several times; only its first answer settles.
        if not self.settled:
            self.limiter.settle(self.tokens, used)
            self.settled = True
