"""The soak's fault schedule: one cycle of every fault kind, spread over the run at set times,
repeated for long runs. A line is printed as each fault starts and ends.

- 429s with a short (1 s) and a long (20 s) retry-after: the simulator's `error_429`;
- 500s, 503s, hung requests, dropped connections: the simulator's faults on a share of
  requests for a few seconds;
- Cosmos DB unreachable for 20 s: the fault proxy refuses and resets connections (every other
  cycle the server is paused instead: connections hang);
- the Cosmos DB server restarted, and Azurite restarted, their data kept;
- a host killed with SIGKILL and started again 3 s later: its leased messages come back when
  the (shortened) lease runs out;
- the store paused under the answer path (`store_paused_answers`): the Cosmos DB server is
  paused (SIGSTOP) while a JSON chat, a streamed chat and a gateway call are sent; each must be
  answered (the stream up to its `[DONE]`) before the server resumes, within a client timeout
  far below the 22-88 s a paused store held answers before STORE_ANSWER_TIMEOUT, and each
  call's usage document must land (through the outbox) once it resumes. What fails is a
  problem of the run.

After the cycles, two long outages, one after the other, while the load goes on: Azure OpenAI
answering 503 to everything, then Cosmos DB unreachable, each `long_outage` seconds (60: an
hour in the soak's compressed time, longer than the jobs' retry budget; docs/soak.md).
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any

import httpx

from devstack.emulators.outage import (
    FaultMode,
    pause_cosmos,
    restart_azurite,
    restart_cosmos,
    resume_cosmos,
)
from soak.checks import open_store
from soak.ports import local_ports
from soak.stack import SoakStack

AOAI = ("chat", "embeddings")
ALL_ROUTES = ("chat", "embeddings", "files", "batches")
OUTAGE_SECONDS = 20.0
BURST_SECONDS = 8.0
CYCLE_SECONDS = 200.0
# store_paused_answers: how long a caller waits for an answer while the store is paused, and
# how long a usage document may take to land once it resumes (the outbox drains it).
ANSWER_SECONDS = 10.0
LANDING_SECONDS = 120.0
LONG_OUTAGE_SECONDS = 60.0
LONG_OUTAGE_GAP_SECONDS = 15.0


@dataclass
class Faults:
    stack: SoakStack
    started: float
    long_outage: float = LONG_OUTAGE_SECONDS
    events: list[dict[str, Any]] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    def say(self, text: str) -> None:
        line = f"[{time.monotonic() - self.started:7.1f}s] {text}"
        print(line, flush=True)
        self.events.append({"t": round(time.monotonic() - self.started, 1), "event": text})

    async def _patch(self, routes: tuple[str, ...], fault: dict[str, Any]) -> None:
        async with httpx.AsyncClient(base_url=self.stack.sim_url, timeout=10) as sim:
            patch = {"faults": dict.fromkeys(routes, fault)}
            (await sim.patch("/sim/config", json=patch)).raise_for_status()

    async def simulator(self, name: str, routes: tuple[str, ...], fault: dict[str, Any]) -> None:
        self.say(f"fault: {name} on {'+'.join(routes)} for {BURST_SECONDS:.0f}s")
        await self._patch(routes, fault)
        await asyncio.sleep(BURST_SECONDS)
        cleared = {k: 0.0 for k in fault if k not in ("retry_after_ms", "hang_seconds")}
        await self._patch(routes, cleared)
        self.say(f"  end: {name}")

    async def cosmos_cut(self) -> None:
        self.say(
            f"fault: Cosmos DB unreachable (proxy refuses and resets) for {OUTAGE_SECONDS:.0f}s"
        )
        await asyncio.to_thread(self.stack.proxy.cut, FaultMode.REFUSE)
        await asyncio.sleep(OUTAGE_SECONDS)
        await asyncio.to_thread(self.stack.proxy.restore)
        self.say("  end: Cosmos DB reachable again")

    async def cosmos_pause(self) -> None:
        self.say(f"fault: Cosmos DB paused (SIGSTOP, nothing answers) for {OUTAGE_SECONDS:.0f}s")
        pause_cosmos(self.stack.emulators)
        try:
            await asyncio.sleep(OUTAGE_SECONDS)
        finally:
            resume_cosmos(self.stack.emulators)
        self.say("  end: Cosmos DB resumed")

    async def cosmos_restart(self) -> None:
        self.say("fault: Cosmos DB server restarted (data kept)")
        began = time.monotonic()
        await asyncio.to_thread(restart_cosmos, self.stack.emulators)
        self.say(f"  end: Cosmos DB back after {time.monotonic() - began:.1f}s")

    async def azurite_restart(self) -> None:
        self.say("fault: Azurite restarted (data kept)")
        began = time.monotonic()
        await asyncio.to_thread(restart_azurite, self.stack.emulators)
        self.say(f"  end: Azurite back after {time.monotonic() - began:.1f}s")

    async def aoai_long_outage(self) -> None:
        self.say(f"fault: Azure OpenAI answers 503 to everything for {self.long_outage:.0f}s")
        await self._patch(ALL_ROUTES, {"error_503": 1.0})
        try:
            await asyncio.sleep(self.long_outage)
        finally:
            await self._patch(ALL_ROUTES, {"error_503": 0.0})
        self.say("  end: Azure OpenAI answers again")

    async def cosmos_long_outage(self) -> None:
        self.say(f"fault: Cosmos DB unreachable (proxy refuses) for {self.long_outage:.0f}s")
        await asyncio.to_thread(self.stack.proxy.cut, FaultMode.REFUSE)
        try:
            await asyncio.sleep(self.long_outage)
        finally:
            await asyncio.to_thread(self.stack.proxy.restore)
        self.say("  end: Cosmos DB reachable again")

    async def kill_host(self, index: int) -> None:
        process = self.stack.hosts[index % len(self.stack.hosts)]
        self.say(
            f"fault: host {index % len(self.stack.hosts)} (pid {process.pid}) killed (SIGKILL)"
        )
        killed_at = time.time()
        held = local_ports(process.pid) if process.pid is not None else set()
        for port in held:  # read before the kill: then they are gone
            self.stack.killed_ports.setdefault(port, []).append(killed_at)
        process.kill()
        await asyncio.sleep(3)
        await asyncio.to_thread(process.start)
        self.say(f"  end: host {index % len(self.stack.hosts)} started again (pid {process.pid})")

    async def store_paused_answers(self, n: int) -> None:
        # Not the host the kill_host fault of this cycle takes down.
        host = self.stack.hosts[(n + 1) % len(self.stack.hosts)].host
        ids = {kind: f"soak-paused-{kind}-{uuid.uuid4().hex[:8]}" for kind in _PROBES}
        self.say("fault: Cosmos DB paused (SIGSTOP) while chat and the gateway answer")
        await self._pause_cosmos_once_up()
        try:
            async with httpx.AsyncClient(
                base_url=host.url, headers=host.headers(), timeout=ANSWER_SECONDS
            ) as http:
                answers = await asyncio.gather(
                    *(_probe(http, kind, request_id) for kind, request_id in ids.items())
                )
        finally:
            resume_cosmos(self.stack.emulators)
        for kind, answer in zip(ids, answers, strict=True):
            if not answer.startswith("answered"):
                self.problems.append(f"store_paused_answers: {kind} {ids[kind]} {answer}")
        self.say(f"  resumed: {', '.join(f'{k} {a}' for k, a in zip(ids, answers, strict=True))}")
        missing = await self._await_usage(set(ids.values()))
        self.problems.extend(f"store_paused_answers: no usage for {rid}" for rid in missing)
        self.say(f"  end: usage of the answers {f'missing: {missing}' if missing else 'landed'}")

    async def _pause_cosmos_once_up(self) -> None:
        """Pause the server; a restart still under way (no pid recorded yet) is waited for."""
        for _ in range(30):
            try:
                pause_cosmos(self.stack.emulators)
                return
            except RuntimeError:
                await asyncio.sleep(1)
        pause_cosmos(self.stack.emulators)

    async def _await_usage(self, request_ids: set[str]) -> list[str]:
        """The client request ids with no usage document after LANDING_SECONDS."""
        store = open_store(self.stack)
        query = "SELECT c.id FROM c WHERE c.client_request_id = @rid"
        left = set(request_ids)
        try:
            deadline = time.monotonic() + LANDING_SECONDS
            while left and time.monotonic() < deadline:
                for request_id in sorted(left):
                    try:
                        if await store.query("usage", query, {"@rid": request_id}):
                            left.discard(request_id)
                    except Exception:  # another fault may have the store away for a while
                        break
                if left:
                    await asyncio.sleep(2)
            return sorted(left)
        finally:
            await store.aclose()

    def cycle(self, n: int) -> list[tuple[float, str, Callable[[], Coroutine[Any, Any, None]]]]:
        """(fraction of the cycle, name, action) for every fault kind, cycle number `n`."""
        outage = self.cosmos_pause if n % 2 else self.cosmos_cut
        short = {"error_429": 0.4, "retry_after_ms": 1000}
        long = {"error_429": 0.4, "retry_after_ms": 20000}
        return [
            (0.04, "429_short", lambda: self.simulator("429 retry-after 1s (40%)", AOAI, short)),
            (0.13, "500", lambda: self.simulator("500s (10%)", ALL_ROUTES, {"error_500": 0.1})),
            (0.22, "cosmos_outage", outage),
            (
                0.36,
                "hang",
                lambda: self.simulator(
                    "hung requests 15s (5%)", AOAI, {"hang": 0.05, "hang_seconds": 15}
                ),
            ),
            (0.45, "kill_host", lambda: self.kill_host(n)),
            (0.54, "503", lambda: self.simulator("503s (10%)", ALL_ROUTES, {"error_503": 0.1})),
            (0.63, "cosmos_restart", self.cosmos_restart),
            # After the restart, and far enough from every other Cosmos DB fault that nothing
            # but the app's own bound can end the pause before the client's timeout.
            (0.67, "store_paused_answers", lambda: self.store_paused_answers(n)),
            (0.72, "429_long", lambda: self.simulator("429 retry-after 20s (40%)", AOAI, long)),
            (
                0.81,
                "drop",
                lambda: self.simulator("dropped connections (10%)", AOAI, {"drop": 0.1}),
            ),
            (0.90, "azurite_restart", self.azurite_restart),
        ]

    async def run(self, duration: float) -> list[str]:
        """Run the schedule over `duration` seconds from `started`; the kinds that ran."""
        cycles = max(1, round(duration / CYCLE_SECONDS))
        length = duration / cycles
        plan = [
            (n * length + fraction * length, name, action)
            for n in range(cycles)
            for fraction, name, action in self.cycle(n)
        ]
        done: list[str] = []
        running: set[asyncio.Task[None]] = set()
        for at, name, action in sorted(plan, key=lambda p: p[0]):
            await asyncio.sleep(max(0.0, self.started + at - time.monotonic()))
            running.add(asyncio.create_task(action()))
            done.append(name)
        await asyncio.gather(*running)
        if self.long_outage > 0:
            await self.aoai_long_outage()
            done.append("aoai_long_outage")
            await asyncio.sleep(LONG_OUTAGE_GAP_SECONDS)
            await self.cosmos_long_outage()
            done.append("cosmos_long_outage")
        return done


_PROBES = ("json", "sse", "gateway")


async def _probe(http: httpx.AsyncClient, kind: str, request_id: str) -> str:
    """One call the caller waits for: "answered <status>" when it came whole within the
    client's timeout (any status: a simulator fault may make it a 502), else what happened."""
    headers = {"x-request-id": request_id}
    # Each probe is its own question: the soak counts any input answered twice as sent twice.
    messages = [{"role": "user", "content": f"soak probe {kind} {request_id}"}]
    try:
        if kind == "gateway":
            body: dict[str, Any] = {"model": "gpt-4o", "messages": messages}
            answer = await http.post("/v1/chat/completions", json=body, headers=headers)
        else:
            body = {"messages": messages, "stream": kind == "sse"}
            answer = await http.post("/chat", json=body, headers=headers)
    except httpx.TimeoutException:
        return f"held past {ANSWER_SECONDS:g}s"
    except httpx.HTTPError as error:
        return f"failed ({type(error).__name__})"
    if kind == "sse" and answer.status_code == 200 and "data: [DONE]" not in answer.text:
        return "stream ended without [DONE]"
    return f"answered {answer.status_code}"
