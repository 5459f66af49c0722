"""Team keys: format, parsing, the keyed hash and its constant-time check."""

from __future__ import annotations

import base64
import hashlib
import hmac
import re

import pytest

from shared.metering.team_keys import (
    issue_key,
    key_hash,
    key_matches,
    parse_key,
    visible_prefix,
)

SECRET = b"unit-test-team-key-hash-secret-0123456789"


def test_a_new_key_has_the_documented_shape_and_32_random_bytes() -> None:
    issued = issue_key(SECRET, "search")
    assert re.fullmatch(r"tk_search_[0-9a-f]{8}_[A-Za-z0-9_-]{43}", issued.key)
    assert issued.prefix == f"tk_search_{issued.key_id}"
    assert issued.key.startswith(issued.prefix + "_")
    secret = issued.key[len(issued.prefix) + 1 :]
    assert len(base64.urlsafe_b64decode(secret + "=")) == 32
    assert issue_key(SECRET, "search").key != issued.key


def test_only_the_keyed_hash_is_stored_and_it_is_hmac_sha256_of_the_whole_key() -> None:
    issued = issue_key(SECRET, "search")
    expected = hmac.new(SECRET, issued.key.encode(), hashlib.sha256).hexdigest()
    assert issued.hash == expected == key_hash(SECRET, issued.key)
    assert issued.key not in repr(issued)
    assert key_hash(b"another-secret-another-secret-0123456789", issued.key) != issued.hash


def test_a_key_id_already_taken_by_the_team_is_not_issued_again() -> None:
    first = issue_key(SECRET, "search")
    taken = {first.key_id}
    assert all(issue_key(SECRET, "search", taken).key_id not in taken for _ in range(50))


def test_a_key_parses_into_team_key_id_and_back_even_with_underscores_in_the_secret() -> None:
    key = "tk_team-2_0a1b2c3d_" + "_" * 10 + "-" * 10 + "A" * 23
    parsed = parse_key(key)
    assert parsed is not None
    assert (parsed.team_id, parsed.key_id, parsed.key) == ("team-2", "0a1b2c3d", key)
    assert parsed.prefix == visible_prefix("team-2", "0a1b2c3d") == "tk_team-2_0a1b2c3d"
    assert key not in repr(parsed)


@pytest.mark.parametrize(
    "key",
    [
        "",
        "sk-abc",
        "tk_search_0a1b2c3d",  # the visible prefix alone
        "tk_search_0a1b2c3d_" + "A" * 42,  # secret one short
        "tk_search_0a1b2c3d_" + "A" * 44,  # one long
        "tk_search_0a1b2c3d_" + "A" * 43 + "\n",  # a trailing newline
        "tk_search_0A1B2C3D_" + "A" * 43,  # key id not lowercase hex
        "tk_Search_0a1b2c3d_" + "A" * 43,  # team id not lowercase
        "tk_s_0a1b2c3d_" + "A" * 43,  # team id too short
        "tk_" + "a" * 41 + "_0a1b2c3d_" + "A" * 43,  # team id too long
        "tk_search_0a1b2c3d_" + "A" * 42 + "=",  # not URL-safe base64
        "TK_search_0a1b2c3d_" + "A" * 43,
    ],
)
def test_a_malformed_key_does_not_parse(key: str) -> None:
    assert parse_key(key) is None


def test_verification_takes_the_right_key_only() -> None:
    issued = issue_key(SECRET, "search")
    assert key_matches(SECRET, issued.key, issued.hash)
    other = issue_key(SECRET, "search")
    assert not key_matches(SECRET, other.key, issued.hash)
    tampered = issued.key[:-1] + ("A" if issued.key[-1] != "A" else "B")
    assert not key_matches(SECRET, tampered, issued.hash)


def test_verification_compares_in_constant_time(monkeypatch: pytest.MonkeyPatch) -> None:
    """The comparison is hmac.compare_digest's (not `==`, which stops at the first
    difference and so leaks how much of a guess was right)."""
    import shared.metering.team_keys as team_keys

    seen: list[tuple[str, str]] = []
    original = hmac.compare_digest

    def compare(a: str, b: str) -> bool:
        seen.append((a, b))
        return original(a, b)

    monkeypatch.setattr(team_keys.hmac, "compare_digest", compare)
    issued = issue_key(SECRET, "search")
    assert key_matches(SECRET, issued.key, issued.hash)
    assert seen == [(issued.hash, issued.hash)]
