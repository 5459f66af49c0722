"""`teams create|list|show|update|new-key|revoke`: the team registry's admin API
(docs/teams.md) with the host's master key.

Bodies are built with the app's own models (`NewTeam`, `TeamChanges`), so a bad id or limit
is refused here with the API's words before any request. A key is printed once, on stdout,
in the answer that issued it; it is never written anywhere else.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Any, TypeVar
from urllib.parse import quote

import httpx
import typer
from pydantic import BaseModel, ValidationError
from rich.markup import escape
from rich.table import Table

from cli import options as opt
from cli.api import KEY_HEADER, expect_json
from cli.console import EXIT_USAGE, echo_json, err, fail, out, run
from cli.ops import plain
from shared.metering.teams import KeyCreated, NewTeam, TeamChanges, TeamCreated, TeamList, TeamView

M = TypeVar("M", bound=BaseModel)

teams_app = typer.Typer(help="The team registry: teams, their limits and their keys.")

AdminKey = Annotated[
    str | None,
    typer.Option(
        "--key",
        envvar="ADMIN_API_KEY",
        help="The host's master key (the registry's routes are admin level), as x-functions-key.",
        show_default=False,
        rich_help_panel=opt.HTTP,
    ),
]
Models = Annotated[
    list[str] | None, typer.Option("--model", help="An allowed model (repeatable; none: all).")
]
Members = Annotated[
    list[str] | None, typer.Option("--member", help="An Entra object or app id (repeatable).")
]
Tpm = Annotated[int | None, typer.Option(help="Tokens per minute.")]
DailyTokens = Annotated[int | None, typer.Option(help="Tokens per UTC day.")]
MonthlyUsd = Annotated[float | None, typer.Option(help="Estimated USD per UTC month.")]
MaxTokens = Annotated[int | None, typer.Option(help="Output tokens per call.")]


class Clearable(StrEnum):
    tpm = "tpm"
    daily_tokens = "daily_tokens"
    monthly_usd = "monthly_usd"
    max_tokens = "max_tokens"
    models = "models"
    members = "members"


class TeamsApi:
    """`url` is the app's API root, `https://<app>.azurewebsites.net/api`."""

    def __init__(self, url: str, key: str | None, *, timeout: float = 30.0) -> None:
        headers = {KEY_HEADER: key} if key else {}
        self._http = httpx.AsyncClient(
            base_url=url.rstrip("/") + "/", headers=headers, timeout=timeout
        )

    async def __aenter__(self) -> TeamsApi:
        return self

    async def __aexit__(self, *_: object) -> None:
        await self._http.aclose()

    async def call(self, method: str, path: str, expected: int, body: Any = None) -> Any:
        """The answer's JSON (None for a 204); ApiError for any other status."""
        response = await self._http.request(method, path, json=body)
        if expected == 204 and response.status_code == 204:
            return None
        return expect_json(response, expected)


def _call(
    url: str | None, key: str | None, method: str, path: str, expected: int, body: Any = None
) -> Any:
    if not url:
        raise typer.BadParameter("needed (or JOBS_API_URL)", param_hint="--url")

    async def go() -> Any:
        async with TeamsApi(url, key) as api:
            return await api.call(method, path, expected, body)

    return run(go())


def _valid(model: type[M], data: dict[str, Any]) -> M:
    """The body as the API's model would take it: a bad id or limit stops here (exit 2)."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        for problem in exc.errors(include_input=False):
            field = ".".join(map(str, problem["loc"])) or exc.title
            fail("invalid team:", f"{field}: {problem['msg']}")
        raise typer.Exit(EXIT_USAGE) from None


def _team(team_id: str, *rest: str) -> str:
    return "/".join(["teams", *(quote(part, safe="") for part in (team_id, *rest))])


def _shown_once() -> None:
    err().print("[yellow]the key is shown this once:[/] store it now (a secret store, not a file)")


@teams_app.command()
def create(
    team_id: Annotated[str, typer.Argument(metavar="ID", help="2-40 of a-z, 0-9, '-'.")],
    model: Models = None,
    member: Members = None,
    tpm: Tpm = None,
    daily_tokens: DailyTokens = None,
    monthly_usd: MonthlyUsd = None,
    max_tokens: MaxTokens = None,
    disabled: Annotated[bool, typer.Option(help="Create it disabled.")] = False,
    url: opt.Url = None,
    key: AdminKey = None,
) -> None:
    """Create a team and its first key; prints `{"team", "key_id", "key"}` as JSON."""
    given = {
        "id": team_id,
        "models": model or [],
        "members": member or [],
        "tpm": tpm,
        "daily_tokens": daily_tokens,
        "monthly_usd": monthly_usd,
        "max_tokens": max_tokens,
        "disabled": disabled,
    }
    body = _valid(NewTeam, given).model_dump(mode="json", exclude_none=True)
    created = TeamCreated.model_validate(_call(url, key, "POST", "teams", 201, body))
    echo_json(created.model_dump(mode="json"))
    _shown_once()


@teams_app.command("list")
def list_command(as_json: opt.Json = False, url: opt.Url = None, key: AdminKey = None) -> None:
    """Every team, with its limits and live keys."""
    teams = TeamList.model_validate(_call(url, key, "GET", "teams", 200)).teams
    if as_json:
        echo_json([t.model_dump(mode="json") for t in teams])
        return
    table = Table("team", "models", "tpm", "daily tokens", "monthly USD", "max tokens", "keys")
    for team in teams:
        live = [k.id for k in team.keys if k.revoked_at is None]
        table.add_row(
            *plain(
                team.id + (" (disabled)" if team.disabled else ""),
                ", ".join(team.models) or "all",
                *(_limit(v) for v in (team.tpm, team.daily_tokens, team.monthly_usd)),
                _limit(team.max_tokens),
                ", ".join(live) or "none",
            )
        )
    out().print(table)


def _limit(value: float | None) -> str:
    return "-" if value is None else f"{value:g}"


@teams_app.command()
def show(
    team_id: Annotated[str, typer.Argument(metavar="ID")],
    url: opt.Url = None,
    key: AdminKey = None,
) -> None:
    """One team as JSON (its keys by id and prefix)."""
    team = TeamView.model_validate(_call(url, key, "GET", _team(team_id), 200))
    echo_json(team.model_dump(mode="json"))


@teams_app.command()
def update(
    team_id: Annotated[str, typer.Argument(metavar="ID")],
    model: Models = None,
    member: Members = None,
    tpm: Tpm = None,
    daily_tokens: DailyTokens = None,
    monthly_usd: MonthlyUsd = None,
    max_tokens: MaxTokens = None,
    clear: Annotated[
        list[Clearable] | None, typer.Option(help="Clear a limit, or empty a list (repeatable).")
    ] = None,
    disabled: Annotated[
        bool | None, typer.Option("--disable/--enable", help="Refuse or accept its calls.")
    ] = None,
    url: opt.Url = None,
    key: AdminKey = None,
) -> None:
    """Change what the options name; `--model`/`--member` replace the whole list."""
    given: dict[str, Any] = {
        "models": model,
        "members": member,
        "tpm": tpm,
        "daily_tokens": daily_tokens,
        "monthly_usd": monthly_usd,
        "max_tokens": max_tokens,
        "disabled": disabled,
    }
    body = {name: value for name, value in given.items() if value is not None}
    for name in clear or []:
        if name.value in body:
            raise typer.BadParameter(f"{name.value} is both set and cleared", param_hint="--clear")
        body[name.value] = None
    if not body:
        raise typer.BadParameter("name at least one change", param_hint="options")
    _valid(TeamChanges, body)
    team = TeamView.model_validate(_call(url, key, "PATCH", _team(team_id), 200, body))
    echo_json(team.model_dump(mode="json"))


@teams_app.command("new-key")
def new_key(
    team_id: Annotated[str, typer.Argument(metavar="ID")],
    url: opt.Url = None,
    key: AdminKey = None,
) -> None:
    """Another key (at most two live: revoke one first); prints `{"key_id", "key"}`."""
    created = KeyCreated.model_validate(_call(url, key, "POST", _team(team_id, "keys"), 201))
    echo_json(created.model_dump(mode="json"))
    _shown_once()


@teams_app.command()
def revoke(
    team_id: Annotated[str, typer.Argument(metavar="ID")],
    key_id: Annotated[str, typer.Argument(metavar="KEY_ID")],
    url: opt.Url = None,
    key: AdminKey = None,
) -> None:
    """Revoke a key: refused everywhere within seconds; kept, revoked, for audit."""
    _call(url, key, "DELETE", _team(team_id, "keys", key_id), 204)
    err().print(escape(f"key {key_id} of team {team_id} revoked"))
