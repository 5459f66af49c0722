"""The soak's end checks, read straight from Cosmos DB, the queues and the simulator.

- Every item of every accepted job has exactly one result, or its job failed as a whole with
  a reason (a batch embedding job: `not_supported`). Anything else is **lost**.
- Every job is terminal, and its counts (as `GET /api/jobs` answers them) equal its results.
- **Duplicated**: an item with two results; a usage id twice in the container (partitions are
  days: an id is unique only within one); more usage records than requests the simulator
  served (a record without a call of its own).
- **Re-billed**, reported apart: a job's usage records (status ok) add up to more tokens than
  its results carry (each result holds its share of the request that produced it). That is an
  item sent to Azure OpenAI again because its first answer could not be saved (Cosmos DB
  failing, or a host killed, between the answer and its result): Azure bills both calls, and
  the records say so. The reverse, fewer records than calls served, is a request repeated with
  the same items, whose record the repeat overwrote (deterministic ids).
- **Sent twice**: an item input (an embeddings input, or a classification item's line) that
  the simulator answered in more than one request (`GET /sim/inputs`): an item billed twice.
- No message left in any queue, visible or not, once every job is done and a lease has passed.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
from azure.core.exceptions import AzureError
from azure.cosmos.aio import CosmosClient
from azure.storage.queue.aio import QueueServiceClient

from shared.aoai.quota_share import FELL_BACK, SHARED_AGAIN
from shared.core.settings import load_settings
from shared.core.store import JOBS, RESULTS, USAGE, Store
from shared.jobs.models import TERMINAL
from soak.load import Submission
from soak.stack import SoakStack

CONTINUED = re.compile(r"items continue in [\d.]+s \((\w+), attempt \d+\)")
# shared/aoai/quota_share.py: the ledger away (the host on its own limiter), and back.
LEDGER = re.compile(
    rf"^\[(?P<at>[^\]]+)\] quota ledger (?P<id>\S+): "
    rf"(?P<what>{re.escape(FELL_BACK)}|{re.escape(SHARED_AGAIN)})",
    re.MULTILINE,
)


@dataclass
class Figures:
    jobs: int = 0
    items: int = 0
    continuations: int = 0
    retries: int = 0
    poisoned: int = 0
    recorded_failures: int = 0
    lost: int = 0
    duplicated: int = 0
    sent_twice: int = 0
    share_429: float = 0.0
    details: dict[str, Any] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)

    def table(self) -> str:
        rows = [
            ("jobs", self.jobs),
            ("items", self.items),
            ("continuations", self.continuations),
            ("retries", self.retries),
            ("poisoned", self.poisoned),
            ("recorded failures", self.recorded_failures),
            ("lost", self.lost),
            ("duplicated", self.duplicated),
            ("sent twice", self.sent_twice),
            ("429 share", f"{self.share_429:.1%}"),
            ("re-billed tokens", self.details.get("tokens_rebilled", 0)),
        ]
        return "\n".join(f"  {name:<18} {value:>10}" for name, value in rows)

    def as_json(self) -> dict[str, Any]:
        keys = (
            "jobs",
            "items",
            "continuations",
            "retries",
            "poisoned",
            "recorded_failures",
            "lost",
            "duplicated",
            "sent_twice",
            "share_429",
        )
        return {**{k: getattr(self, k) for k in keys}, **self.details, "problems": self.problems}


def open_store(stack: SoakStack) -> Store:
    """The database, reached directly and patiently: the local server stalls while it saves
    a large store, and the app's short timeouts (right for the app) would fail the checks."""
    settings = load_settings(stack.cosmos_direct)
    assert settings.cosmos_key is not None
    client = CosmosClient(
        str(settings.cosmos_endpoint),
        credential=settings.cosmos_key.get_secret_value(),
        connection_verify=settings.cosmos_verify_tls,
        connection_timeout=60,
        timeout=600,
    )
    return Store(client, settings.cosmos_database)


async def unfinished(store: Store, job_ids: set[str]) -> set[str]:
    """The jobs among `job_ids` not yet in a terminal state (or not there at all; all of them
    while Cosmos DB does not answer)."""
    try:
        rows = await store.query(JOBS, "SELECT c.id, c.status FROM c")
    except AzureError:
        return job_ids
    done = {r["id"] for r in rows if r["status"] in TERMINAL}
    return job_ids - done


async def queue_depths(stack: SoakStack) -> dict[str, int]:
    """Messages in each queue, visible or not (leased, or delayed continuations); -1 for a
    queue Azurite did not answer for."""
    async with QueueServiceClient.from_connection_string(stack.connection_string) as service:
        depths = {}
        for name in stack.queues():
            try:
                props = await service.get_queue_client(name).get_queue_properties()
            except AzureError:
                depths[name] = -1
                continue
            depths[name] = int(props.approximate_message_count or 0)
        return depths


def _continuations(logs: list[Path]) -> Counter[str]:
    reasons: Counter[str] = Counter()
    for path in logs:
        for match in CONTINUED.finditer(path.read_text(errors="replace")):
            reasons[match.group(1)] += 1
    return reasons


def ledger_outages(logs: list[Path]) -> dict[str, Any]:
    """Per host, how often its quota ledgers fell back to the host's own limiter (Cosmos DB
    away) and came back; a host still on its own limiter after its last fall is a problem."""
    hosts: dict[str, Any] = {}
    for n, path in enumerate(logs):
        events = [
            (match["at"], match["what"] == FELL_BACK)
            for match in LEDGER.finditer(path.read_text(errors="replace"))
        ]
        fell = sum(1 for _, failed in events if failed)
        back = sum(1 for _, failed in events if not failed)
        hosts[f"host-{n}"] = {
            "fell_back": fell,
            "shared_again": back,
            "ends_shared": not events or not events[-1][1],
        }
    return hosts


async def check(stack: SoakStack, store: Store, submissions: list[Submission]) -> Figures:
    figures = Figures()
    accepted = [s for s in submissions if s.accepted]
    never = [s.job_id for s in submissions if not s.accepted]
    figures.jobs, figures.items = len(accepted), sum(len(s.item_ids) for s in accepted)
    jobs = {r["id"]: r for r in await store.query(JOBS, "SELECT * FROM c")}
    results: dict[str, Counter[str]] = {}
    result_tokens: Counter[str] = Counter()
    failures: Counter[str] = Counter()
    statuses: dict[str, Counter[str]] = {}
    query = "SELECT c.job_id, c.item_id, c.status, c.error, c.usage FROM c"
    async for row in store.iterate(RESULTS, query):
        job_id = row["job_id"]
        results.setdefault(job_id, Counter())[row["item_id"]] += 1
        statuses.setdefault(job_id, Counter())[row["status"]] += 1
        result_tokens[job_id] += int((row.get("usage") or {}).get("total_tokens", 0))
        if row["status"] == "failed":
            error = row.get("error") or {}
            if not error.get("code") or not error.get("message"):
                figures.problems.append(f"result {job_id}:{row['item_id']} failed without reason")
            failures[str(error.get("code"))] += 1
    lost_examples: list[str] = []
    for sub in accepted:
        doc, got = jobs.get(sub.job_id), results.get(sub.job_id) or Counter()
        if doc is None:
            figures.lost += len(sub.item_ids)
            lost_examples.append(f"{sub.job_id}: no job")
            continue
        if doc["status"] not in TERMINAL:
            figures.problems.append(f"job {sub.job_id} is {doc['status']}")
        figures.duplicated += sum(n - 1 for n in got.values() if n > 1)
        strangers = set(got) - set(sub.item_ids)
        if strangers:
            figures.problems.append(f"job {sub.job_id}: results for unknown items {strangers}")
        missing = [i for i in sub.item_ids if i not in got]
        if missing and doc["status"] == "failed" and (doc.get("error") or {}).get("code"):
            code = doc["error"]["code"]
            failures[f"job:{code}"] += len(missing)  # failed as a whole, with its reason
            if code != sub.expected_failure:
                figures.problems.append(f"job {sub.job_id} failed: {doc['error']}")
        elif missing and doc["status"] != "cancelled":
            figures.lost += len(missing)
            lost_examples.append(f"{sub.job_id}: {len(missing)} of {len(sub.item_ids)} items")
        # A terminal job's counts, as GET /api/jobs answers them, are the stored ones.
        counts, seen = doc["counts"], statuses.get(sub.job_id, Counter())
        if doc["status"] in TERMINAL and not missing:
            expected = {k: seen[k] for k in ("succeeded", "failed", "content_filtered")}
            expected["total"], expected["pending"] = len(sub.item_ids), 0
            if {k: counts[k] for k in expected} != expected:
                figures.problems.append(f"job {sub.job_id}: counts {counts} != results {expected}")
    figures.recorded_failures = sum(failures.values())
    figures.poisoned = failures["poisoned"] + failures["job:poisoned"]
    await _check_usage(store, figures, result_tokens, {s.job_id for s in accepted})
    await _check_simulator(stack, figures)
    reasons = _continuations([h.log for h in stack.hosts])
    figures.continuations = sum(reasons.values())
    figures.retries += sum(n for reason, n in reasons.items() if reason != "slice")
    figures.details.update(
        jobs_by_kind_mode_via=dict(Counter(f"{s.kind}/{s.mode}/{s.via}" for s in accepted)),
        never_accepted=len(never),
        failures_by_code=dict(failures),
        continuations_by_reason=dict(reasons),
        lost_examples=lost_examples[:10],
        queues=await queue_depths(stack),
    )
    if any(figures.details["queues"].values()):
        figures.problems.append(f"messages left in queues: {figures.details['queues']}")
    ledger = figures.details["quota_ledger"] = ledger_outages([h.log for h in stack.hosts])
    if not any(host["fell_back"] for host in ledger.values()):
        figures.problems.append("no quota ledger fell back to its host's limiter: untested")
    if stuck := [name for name, host in ledger.items() if not host["ends_shared"]]:
        figures.problems.append(f"quota ledger never shared again after Cosmos DB on {stuck}")
    return figures


async def _check_usage(
    store: Store, figures: Figures, result_tokens: Counter[str], job_ids: set[str]
) -> None:
    ids: Counter[str] = Counter()
    billed: Counter[str] = Counter()
    records = 0
    query = "SELECT c.id, c.job_id, c.status, c.total_tokens, c.mode FROM c"
    async for row in store.iterate(USAGE, query):
        ids[row["id"]] += 1
        if row.get("job_id") in job_ids and row.get("status") == "ok":
            billed[row["job_id"]] += int(row.get("total_tokens") or 0)
            records += row.get("mode") != "batch"
    duplicated_ids = sum(n - 1 for n in ids.values() if n > 1)
    over = {j: billed[j] - result_tokens[j] for j in job_ids if billed[j] > result_tokens[j]}
    examples = []
    for job_id in sorted(over)[:3]:  # what was billed, to see why
        rows = await store.query(
            USAGE, "SELECT c.id, c.total_tokens FROM c WHERE c.job_id = @j", {"@j": job_id}
        )
        examples.append({"job_id": job_id, "results_tokens": result_tokens[job_id], "usage": rows})
    figures.details["rebilled_examples"] = examples
    under = {j for j in job_ids if billed[j] < result_tokens[j]}
    figures.duplicated += duplicated_ids
    figures.details.update(
        usage_records=sum(ids.values()),
        usage_duplicated_ids=duplicated_ids,
        jobs_rebilled=len(over),
        tokens_rebilled=sum(over.values()),
        tokens_in_results=sum(result_tokens[j] for j in job_ids),
        jobs_under_billed=len(under),
        realtime_usage_records_ok=records,
    )
    if under:
        figures.problems.append(f"{len(under)} jobs carry tokens without a usage record")


def _died_with_its_host(sends: list[dict[str, Any]], killed: dict[int, list[float]]) -> bool:
    """Every send but the last went to a connection of a host killed after it."""
    return all(
        any(at >= send["at"] for at in killed.get(send.get("peer") or -1, []))
        for send in sends[:-1]
    )


def _sends(sends: list[dict[str, Any]]) -> dict[str, Any]:
    def when(at: float) -> str:
        return datetime.fromtimestamp(at, UTC).strftime("%H:%M:%S.%f")[:-3]

    return {
        "input": sends[0]["label"] if sends else "",
        "answered": [
            f"{when(s['at'])} {s['request_id'][:8]} retry {s['retry_count']}" for s in sends
        ],
    }


async def _check_simulator(stack: SoakStack, figures: Figures) -> None:
    async with httpx.AsyncClient(base_url=stack.sim_url, timeout=60) as sim:
        stats = (await sim.get("/sim/stats")).json()
        inputs = (await sim.get("/sim/inputs")).json()
    repeats: dict[str, list[dict[str, Any]]] = inputs["repeats"]
    # An input answered to a host that was killed before it could write the answer is asked
    # again by the next: no design avoids that (the answer died with the process). Any other
    # repeat is a living host asking twice.
    twice = {k: s for k, s in repeats.items() if not _died_with_its_host(s, stack.killed_ports)}
    figures.sent_twice = len(twice)
    figures.details.update(
        item_inputs_answered=inputs["distinct"],
        item_input_sends=inputs["sends"],
        extra_sends=sum(len(s) - 1 for s in twice.values()),
        asked_again_after_a_kill=len(repeats) - len(twice),
        # Which inputs, and when each send was answered: to tie a repeat to the host logs.
        sent_twice_examples=[_sends(sends) for sends in list(twice.values())[:20]],
    )
    routes = stats["routes"]
    total = stats["total"]
    served = sum(routes.get(r, {}).get("status", {}).get("200", 0) for r in ("chat", "embeddings"))
    figures.share_429 = round(total["throttled"] / total["requests"], 4) if total["requests"] else 0
    figures.retries += int(total["retries"])
    figures.details.update(
        simulator_requests=total["requests"],
        simulator_429=total["throttled"],
        simulator_status=total["status"],
        served_realtime_requests=served,
    )
    records = figures.details["realtime_usage_records_ok"]
    figures.details["calls_sharing_a_record"] = max(0, served - records)
    if records > served:
        figures.duplicated += records - served
        figures.problems.append(f"{records} usage records for {served} requests served")
