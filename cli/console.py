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
from rich.markup import escape

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
    except ValidationError as exc:
        # The app's own model refused the job: one line per problem, as the API would say.
        for problem in exc.errors():
            field = ".".join(map(str, problem["loc"])) or exc.title
            fail("invalid job:", f"{field}: {problem['msg']}")
        raise typer.Exit(EXIT_USAGE) from None
    except (ItemsError, StorageOptionsError, ValueError) as exc:
        fail("error:", str(exc))
        raise typer.Exit(EXIT_USAGE) from None
    except ApiError as exc:
        fail("the app answered", str(exc))
        raise typer.Exit(EXIT_SERVICE) from None
    except httpx.HTTPError as exc:
        url = exc.request.url if isinstance(exc, httpx.RequestError) else ""
        fail("cannot reach the app", f"{url}: {exc}")
        raise typer.Exit(EXIT_SERVICE) from None
    except AzureError as exc:
        # The SDK's message names the operation and the service's error code.
        first = str(exc).splitlines()[0] if str(exc) else ""
        fail(f"{type(exc).__name__}:", first)
        raise typer.Exit(EXIT_SERVICE) from None


def fail(headline: str, detail: str) -> None:
    """One red headline and the detail verbatim (escaped: brackets are not markup)."""
    err().print(f"[red]{escape(headline)}[/] {escape(detail)}")


def run(coro: Coroutine[Any, Any, T]) -> T:
    with failures():
        return asyncio.run(coro)
