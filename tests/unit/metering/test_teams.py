"""The team document and the admin API's bodies: what they take, what they refuse."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from pydantic import ValidationError

from shared.metering.teams import NewTeam, Team, TeamChanges, TeamKey

GUID = "0F8FAD5B-D9CB-469F-A165-70867728950E"
WHEN = datetime(2026, 12, 7, tzinfo=UTC)


def team(**fields: Any) -> Team:
    return Team(id="search", created_at=WHEN, updated_at=WHEN, **fields)


def test_the_issue_s_example_body_is_a_team() -> None:
    new = NewTeam.model_validate_json(
        '{"id": "search", "models": ["gpt-4o"], "tpm": 100000, '
        '"daily_tokens": 2000000, "monthly_usd": 500}'
    )
    assert (new.tpm, new.daily_tokens, new.monthly_usd, new.max_tokens) == (
        100000,
        2000000,
        500.0,
        None,
    )
    assert new.models == ["gpt-4o"]
    assert new.members == []
    assert new.disabled is False


def test_only_an_id_is_needed_and_no_limit_means_none() -> None:
    new = NewTeam.model_validate_json('{"id": "ab"}')
    assert new.model_dump(exclude={"id", "models", "members", "disabled"}) == {
        "tpm": None,
        "daily_tokens": None,
        "monthly_usd": None,
        "max_tokens": None,
    }


@pytest.mark.parametrize(
    "team_id",
    ["a", "1team", "-team", "Search", "team_a", "team a", "t" * 41, "team\n", "", "tëam"],
)
def test_a_bad_team_id_is_refused(team_id: str) -> None:
    with pytest.raises(ValidationError):
        NewTeam(id=team_id)


@pytest.mark.parametrize("team_id", ["ab", "search", "team-2", "t" * 40, "a-"])
def test_a_good_team_id_is_taken(team_id: str) -> None:
    assert NewTeam(id=team_id).id == team_id


@pytest.mark.parametrize(
    "body",
    [
        '{"id": "search", "tpm": 0}',
        '{"id": "search", "tpm": -5}',
        '{"id": "search", "tpm": "100"}',
        '{"id": "search", "tpm": 1.5}',
        '{"id": "search", "tpm": true}',
        '{"id": "search", "daily_tokens": 0}',
        '{"id": "search", "max_tokens": 10000000000000}',
        '{"id": "search", "monthly_usd": 0}',
        '{"id": "search", "monthly_usd": "500"}',
        '{"id": "search", "monthly_usd": 1e400}',
        '{"id": "search", "disabled": "yes"}',
        '{"id": "search", "members": ["not-a-guid"]}',
        '{"id": "search", "models": ["gpt 4o"]}',
        '{"id": "search", "models": "gpt-4o"}',
        '{"id": "search", "tmp": 100}',  # a typo must not pass as "no limit"
        '{"id": "search", "keys": []}',  # keys are issued, never given
    ],
)
def test_a_bad_limit_or_an_unknown_field_is_refused(body: str) -> None:
    with pytest.raises(ValidationError):
        NewTeam.model_validate_json(body)


def test_members_are_normalised_guids_and_lists_lose_repeats() -> None:
    new = NewTeam.model_validate(
        {"id": "search", "members": [GUID, GUID.lower()], "models": ["gpt-4o", "gpt-4o"]}
    )
    assert new.members == [GUID.lower()]
    assert new.models == ["gpt-4o"]


def test_a_change_sets_what_it_names_and_null_clears_a_limit() -> None:
    before = team(tpm=100, daily_tokens=1000, models=["gpt-4o"], members=[GUID.lower()])
    changes = TeamChanges.model_validate_json('{"tpm": null, "monthly_usd": 5, "models": null}')
    after = changes.apply(before)
    assert (after.tpm, after.daily_tokens, after.monthly_usd) == (None, 1000, 5.0)
    assert after.models == []
    assert after.members == [GUID.lower()]
    assert after.disabled is False


def test_a_change_can_disable_and_enable_but_not_null_the_flag() -> None:
    assert TeamChanges(disabled=True).apply(team()).disabled is True
    assert TeamChanges.model_validate_json("{}").apply(team(disabled=True)).disabled is True
    with pytest.raises(ValidationError):
        TeamChanges.model_validate_json('{"disabled": null}')


@pytest.mark.parametrize("body", ['{"id": "other"}', '{"keys": []}', '{"tpm": 0}'])
def test_a_change_cannot_rename_a_team_or_touch_its_keys(body: str) -> None:
    with pytest.raises(ValidationError):
        TeamChanges.model_validate_json(body)


def test_the_view_of_a_team_carries_no_hash() -> None:
    key = TeamKey(id="0a1b2c3d", prefix="tk_search_0a1b2c3d", hash="ab" * 32, created_at=WHEN)
    view = team(keys=[key]).view()
    dumped = view.model_dump_json()
    assert "hash" not in dumped
    assert "ab" * 32 not in dumped
    assert view.keys[0].prefix == "tk_search_0a1b2c3d"


def test_the_stored_document_refuses_fields_it_does_not_know() -> None:
    with pytest.raises(ValidationError):
        Team.model_validate({"id": "search", "created_at": WHEN, "updated_at": WHEN, "budget": 5})


def test_a_team_s_repr_carries_no_hash() -> None:
    key = TeamKey(id="0a1b2c3d", prefix="tk_search_0a1b2c3d", hash="ab" * 32, created_at=WHEN)
    assert "ab" * 32 not in repr(team(keys=[key]))
    assert "ab" * 32 not in str(team(keys=[key]))
