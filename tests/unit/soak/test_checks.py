"""The soak's "sent twice" count: a repeat is excused only when every earlier answer went to a
host the soak killed after it (the answer died with the process)."""

from __future__ import annotations

from typing import Any

from soak.checks import _died_with_its_host


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
