"""The CLI reads the app's own setting names, with the app's defaults: a test, not a hand-kept
list that drifts."""

from __future__ import annotations

from typing import Any

import typer

from cli.app import app
from shared.core.settings import Settings

# The only variables of the CLI's own (where the app is and the keys that call it: the app
# never reads them); every other one is an app setting.
CLI_ONLY = {"JOBS_API_URL", "JOBS_API_KEY", "ADMIN_API_KEY"}


def env_names(field: str) -> set[str]:
    """Every environment name the app accepts for `field`."""
    info = Settings.model_fields[field]
    alias = info.validation_alias
    names = {field.upper()}
    if alias is not None and hasattr(alias, "choices"):
        names |= {c for c in alias.choices if isinstance(c, str)}
    return names


def options() -> list[Any]:
    """Every option with an environment fallback, in every command and subcommand (typer
    carries its own click, so this goes by attributes rather than click's classes)."""
    found: list[Any] = []

    def walk(command: Any) -> None:
        found.extend(p for p in command.params if p.param_type_name == "option" and p.envvar)
        for sub in getattr(command, "commands", {}).values():
            walk(sub)

    walk(typer.main.get_command(app))
    return found


def test_every_variable_is_an_app_setting_with_the_apps_default() -> None:
    by_env = {name: field for field in Settings.model_fields for name in env_names(field)}
    checked = set()
    for option in options():
        (envvar,) = [option.envvar] if isinstance(option.envvar, str) else option.envvar
        if envvar in CLI_ONLY:
            continue
        assert envvar in by_env, f"{option.name}: {envvar} is not an app setting"
        field = Settings.model_fields[by_env[envvar]]
        if option.default is not None and not field.is_required():
            default = field.get_default(call_default_factory=True)
            assert option.default == default, f"{option.name}: {option.default!r} != {default!r}"
        checked.add(envvar)
    assert {"AzureWebJobsStorage", "COSMOS_ENDPOINT", "EMBEDDING_QUEUE"} <= checked
