"""Output and failures of the commands: results on stdout, messages on stderr, exit codes.

Exit codes (docs/jobs-cli.md): 0 done / succeeded, 1 job failed, 2 bad command line or input
file, 3 job partially_failed, 4 job cancelled, 5 watch timed out, 6 a service answered with
an error.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Coroutine, Iterator
from contextlib import contextmanager
from typing import Any, Final, TypeVar

import httpx
import typer
from azure.core.exceptions import AzureError
from pydantic import ValidationError
from rich.console import Console

from cli.api import ApiError
from cli.items import ItemsError
from cli.storage import StorageOptionsError

EXIT_USAGE: Final = 2  # click's own code for a bad command line
EXIT_SERVICE: Final = 6

T = TypeVar("T")


def err() -> Console:
    """Messages and progress; created per use so it writes to the current sys.stderr.
    Soft wrap: a message stays one line, whole for grep and copy."""
    return Console(stderr=True, highlight=False, soft_wrap=True)


def out() -> Console:
    return Console(highlight=False)


def echo_json(value: Any) -> None:
    typer.echo(json.dumps(value, default=str, ensure_ascii=False))


@contextmanager
def failures() -> Iterator[None]:
    """Known failures as one line on stderr and an exit code, never a traceback."""
    try:
        yield
    except (ItemsError, StorageOptionsError, ValidationError, ValueError) as exc:
        err().print(f"[red]error:[/] {exc}", markup=True)
        raise typer.Exit(EXIT_USAGE) from None
    except ApiError as exc:
        err().print(f"[red]the app answered[/] {exc}")
        raise typer.Exit(EXIT_SERVICE) from None
    except httpx.HTTPError as exc:
        where = exc.request.url if isinstance(exc, httpx.RequestError) else ""
        err().print(f"[red]cannot reach the app[/] {where}: {exc}")
        raise typer.Exit(EXIT_SERVICE) from None
    except AzureError as exc:
        # The SDK's message names the operation and the service's error code.
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        err().print(f"[red]{type(exc).__name__}:[/] {first}")
        raise typer.Exit(EXIT_SERVICE) from None


def run(coro: Coroutine[Any, Any, T]) -> T:
    with failures():
        return asyncio.run(coro)
