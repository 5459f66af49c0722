"""What the quota ledger cost the hosts of a run (shared/aoai/quota_share.py): each host logs
one line per ledger as it stops (`quota ledger ID: round_trips=... doc_bytes=...`); this sums
them over the hosts' logs and states them per upstream request.

Request units: the local Cosmos DB server charges none, so they are estimated with the figures
Azure's documentation gives for point operations ("Optimize request cost in Azure Cosmos DB"):
a point read of a 1 KB item costs 1 RU and a write of one 5 RU, both growing with the item's
size (per started KB here). A refused replace (412) is counted as a write, to be safe.
"""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Any

LINE = re.compile(r"quota ledger (?P<id>\S+): (?P<fields>(?:\w+=\d+ ?)+)")
READ_RU_PER_KB = 1.0
WRITE_RU_PER_KB = 5.0


def ledger_lines(logs: tuple[Path, ...]) -> list[dict[str, int]]:
    """Every host's last stats line per ledger."""
    found: list[dict[str, int]] = []
    for log in logs:
        last: dict[str, dict[str, int]] = {}
        text = log.read_text(errors="replace") if log.exists() else ""
        for match in LINE.finditer(text):
            fields = dict(pair.split("=") for pair in match["fields"].split())
            last[match["id"]] = {k: int(v) for k, v in fields.items()}
        found.extend(last.values())
    return found


def ledger_cost(logs: tuple[Path, ...], upstream_requests: int) -> dict[str, Any]:
    """Round trips and estimated RUs per upstream request, summed over the hosts."""
    lines = ledger_lines(logs)
    if not lines:
        return {"hosts_reporting": 0}
    total = {key: sum(line.get(key, 0) for line in lines) for key in lines[0]}
    kb = math.ceil(max(line.get("doc_bytes", 0) for line in lines) / 1024) or 1
    units = kb * (
        total["reads"] * READ_RU_PER_KB + (total["writes"] + total["conflicts"]) * WRITE_RU_PER_KB
    )
    per = max(1, upstream_requests)
    return {
        "hosts_reporting": len(lines),
        "upstream_requests": upstream_requests,
        **{key: total[key] for key in ("round_trips", "reads", "writes", "conflicts", "failures")},
        "holds_granted": total["grants"],
        "holds_refused": total["refusals"],
        "requests_from_holds": total["taken"],
        "requests_while_away": total["fallback"],
        "document_bytes": max(line.get("doc_bytes", 0) for line in lines),
        "round_trips_per_upstream_request": round(total["round_trips"] / per, 2),
        "request_units_per_upstream_request_estimated": round(units / per, 1),
    }
