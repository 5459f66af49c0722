"""Odd input at the job routes, through the host: job ids that URLs and blob names would
rewrite, and continuation tokens a caller made up or changed. Each is a 400 in the
`{"error": ...}` shape, never a 500 or a page the caller did not ask for."""

from __future__ import annotations

import uuid

import httpx
import pytest

from shared.core.store import Store
from shared.jobs.store import JobStore
from tests.support.jobs_stack import JobsStack, items, send_raw, stack_fixture, submit, wait_job
from tests.support.records import query_until
from tests.support.samples import LABELS, new_id

stack = stack_fixture("ji")


@pytest.mark.parametrize("job_id", [".", "..", "...", "report."])
async def test_a_job_id_a_url_or_blob_name_would_rewrite_is_a_400(
    http: httpx.AsyncClient, job_id: str
) -> None:
    """`.` and `..` are dot segments: Cosmos DB's and Blob Storage's URLs resolve them away
    (before: a 500 `internal_error`); Blob Storage also drops a path segment's trailing dot,
    so `report.` would name another job's claim-check folder."""
    r = await http.post("/jobs/embeddings", json={"job_id": job_id, "items": items(1)})
    assert r.status_code == 400, r.text
    error = r.json()["error"]
    assert error["code"] == "invalid_request"
    assert [d["loc"] for d in error["details"]] == [["job_id"]]


@pytest.mark.parametrize("job_id", ["..", "report."])
async def test_a_queue_message_naming_such_an_id_ends_as_an_invalid_job_record(
    stack: JobsStack, store: Store, job_id: str
) -> None:
    """The same rule on the queue: a failed-job record under `invalid-<hash>` with the reason
    (before, the job ran under that id)."""
    marker = new_id("dots")
    body = {"job_id": job_id, "items": [{"id": "a", "text": marker}], "labels": LABELS}
    await send_raw(stack.connection_string, stack.classification_queue, body)
    (record,) = await query_until(
        store,
        "jobs",
        "SELECT * FROM c WHERE CONTAINS(c.raw_body, @m)",
        {"@m": marker},
        tries=300,
    )
    assert record["id"].startswith("invalid-")
    assert (record["status"], record["error"]["code"]) == ("failed", "invalid_job")
    assert [d["loc"] for d in record["error"]["details"]] == [["job_id"]]


async def finished_job(http: httpx.AsyncClient) -> str:
    job_id = f"ji-{uuid.uuid4().hex[:8]}"
    await submit(http, "classification", {"job_id": job_id, "items": items(3), "labels": LABELS})
    assert (await wait_job(http, job_id))["status"] == "succeeded"
    return job_id


def tampered(token: str) -> str:
    """`token` with one character in its middle changed."""
    middle = len(token) // 2
    return token[:middle] + ("A" if token[middle] != "A" else "B") + token[middle + 1 :]


async def test_a_continuation_token_made_up_or_changed_is_a_400(http: httpx.AsyncClient) -> None:
    """Before, a made-up token was ignored (the first page came back as if it were the next)
    and a changed one gave another page or an empty last one."""
    job_id = await finished_job(http)
    first = await http.get(f"/jobs/{job_id}", params={"page_size": 1})
    assert first.status_code == 200, first.text
    token = first.json()["continuation"]
    assert token
    other = await finished_job(http)
    theirs = (await http.get(f"/jobs/{other}", params={"page_size": 1})).json()["continuation"]
    for bad in ["garbage", "{}", tampered(token), token[:-4], theirs]:
        r = await http.get(f"/jobs/{job_id}", params={"page_size": 1, "continuation": bad})
        assert r.status_code == 400, (bad, r.text)
        assert r.json()["error"]["code"] == "invalid_request"
    # The real token still pages on.
    second = await http.get(f"/jobs/{job_id}", params={"page_size": 1, "continuation": token})
    assert second.status_code == 200, second.text
    assert second.json()["results"] != first.json()["results"]


async def test_a_token_cosmos_db_refuses_is_a_value_error_for_the_400(store: Store) -> None:
    """Defence behind the seal: the service's own 400 for a token it cannot read (Azure:
    "malformed"; the local server: `{}`) is the caller's 400, not a 500."""
    with pytest.raises(ValueError, match="continuation"):
        await JobStore(store).results_page(new_id("ji"), 1, "{}")
