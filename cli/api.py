"""The app's job API over HTTP: submit, one job page, every result page.

Answers are parsed with the app's models (`SubmitAccepted`, `JobView`). An answer other than
the expected one raises :class:`ApiError` carrying the app's `{"error": {code, message}}`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any, Final

import httpx

from shared.jobs.models import Job, JobView, SubmitAccepted

ROUTES: Final = {"embedding": "jobs/embeddings", "classification": "jobs/classifications"}
KEY_HEADER: Final = "x-functions-key"  # the host's keys (the team registry: its master key)
TEAM_KEY_HEADER: Final = "api-key"  # a team's key: the job routes' credential


class ApiError(RuntimeError):
    """The app answered with an error; `code` is its error code (or `http_<status>`)."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status = status
        self.code = code


class JobsApi:
    """`url` is the app's API root, `https://<app>.azurewebsites.net/api`; `key` a team's key:
    the jobs are that team's."""

    def __init__(self, url: str, key: str | None, *, timeout: float = 60.0) -> None:
        headers = {TEAM_KEY_HEADER: key} if key else {}
        self._http = httpx.AsyncClient(
            base_url=url.rstrip("/") + "/", headers=headers, timeout=timeout
        )

    async def __aenter__(self) -> JobsApi:
        return self

    async def __aexit__(self, *_: object) -> None:
        await self._http.aclose()

    async def submit(self, job: Job) -> SubmitAccepted:
        body = job.model_dump_json(exclude_none=True)
        response = await self._http.post(
            ROUTES[job.kind], content=body, headers={"content-type": "application/json"}
        )
        return SubmitAccepted.model_validate(expect_json(response, 202))

    async def job(
        self, job_id: str, *, page_size: int = 100, continuation: str | None = None
    ) -> JobView:
        """The job and one page of its results."""
        params: dict[str, str | int] = {"page_size": page_size}
        if continuation:
            params["continuation"] = continuation
        response = await self._http.get(f"jobs/{job_id}", params=params)
        return JobView.model_validate(expect_json(response, 200))

    async def result_pages(self, job_id: str, page_size: int = 100) -> AsyncIterator[JobView]:
        """Every page of the job's results, following `continuation` to the end."""
        continuation: str | None = None
        while True:
            view = await self.job(job_id, page_size=page_size, continuation=continuation)
            yield view
            continuation = view.continuation
            if not continuation:
                return


def expect_json(response: httpx.Response, expected: int) -> Any:
    """The body of an `expected` answer; ApiError with the app's code otherwise."""
    if response.status_code == expected:
        return response.json()
    code, message = f"http_{response.status_code}", response.text[:500]
    try:
        error = response.json()["error"]
        code, message = str(error["code"]), str(error.get("message", ""))
    except (ValueError, KeyError, TypeError):
        pass  # not the app's error shape (a proxy, a host page): keep the raw text
    raise ApiError(response.status_code, code, message)
