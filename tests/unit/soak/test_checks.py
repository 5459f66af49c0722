"""The soak's "sent twice" count: a repeat is excused only when every earlier answer went to a
host the soak killed after it (the answer died with the process)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from shared.aoai.quota_share import FELL_BACK, SHARED_AGAIN
from soak.checks import _died_with_its_host, ledger_outages


def send(at: float, peer: int | None) -> dict[str, Any]:
    return {"at": at, "peer": peer, "request_id": "r", "retry_count": 0, "label": "x"}


KILLED = {5001: [100.0], 5002: [50.0, 300.0]}


def test_an_answer_to_a_host_killed_after_it_excuses_the_repeat() -> None:
    assert _died_with_its_host([send(99.0, 5001), send(120.0, 6000)], KILLED)


def test_an_answer_to_a_living_host_does_not() -> None:
    assert not _died_with_its_host([send(99.0, 6000), send(120.0, 6001)], KILLED)


def test_an_answer_after_the_kill_is_a_living_hosts_that_got_the_port_again() -> None:
    assert not _died_with_its_host([send(101.0, 5001), send(120.0, 6000)], KILLED)
    assert _died_with_its_host([send(200.0, 5002), send(310.0, 6000)], KILLED)  # 2nd kill


def test_every_earlier_answer_must_have_died() -> None:
    sends = [send(90.0, 5001), send(110.0, 6000), send(130.0, 6001)]
    assert not _died_with_its_host(sends, KILLED)


def test_a_send_without_a_port_is_never_excused() -> None:
    assert not _died_with_its_host([send(10.0, None), send(20.0, 6000)], KILLED)


def test_the_soak_finds_each_host_s_ledger_falling_back_and_sharing_again(tmp_path: Path) -> None:
    """The lines as the host writes them: `[stamp] message`, with the ledger's own wording."""
    fell = f"quota ledger primary|gpt-4o: {FELL_BACK} (TimeoutError); this instance paces"
    back = f"quota ledger primary|gpt-4o: {SHARED_AGAIN}"
    logs = [tmp_path / "host-0.log", tmp_path / "host-1.log", tmp_path / "host-2.log"]
    logs[0].write_text(f"[2026-12-07T18:00:01Z] {fell}\n[2026-12-07T18:00:09Z] {back}\n")
    logs[1].write_text(f"[2026-12-07T18:00:01Z] {fell}\n[2026-12-07T18:00:09Z] other\n")
    logs[2].write_text("[2026-12-07T18:00:01Z] nothing of the ledger\n")
    found = ledger_outages(logs)
    assert found["host-0"] == {"fell_back": 1, "shared_again": 1, "ends_shared": True}
    assert found["host-1"] == {"fell_back": 1, "shared_again": 0, "ends_shared": False}
    assert found["host-2"] == {"fell_back": 0, "shared_again": 0, "ends_shared": True}
