"""Export writers: pages in, one JSONL line or Parquet row per result out (pure logic; the
end-to-end export through the app is in test_end_to_end.py)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest

from cli.export import RESULT_SCHEMA, detect_format, export_pages, read_parquet_rows
from shared.core.models import Usage
from shared.jobs.models import Counts, JobView

NOW = datetime(2026, 11, 28, 1, 2, 3, tzinfo=UTC)


def result(item_id: str, **fields: Any) -> dict[str, Any]:
    return {
        "id": f"j1:{item_id}",
        "job_id": "j1",
        "item_id": item_id,
        "kind": "embedding",
        "status": "succeeded",
        "deployment": "text-embedding-3-small",
        "usage": {"prompt_tokens": 2, "completion_tokens": 0, "total_tokens": 2},
        "created_at": NOW.isoformat(),
        **fields,
    }


def page(results: list[dict[str, Any]], continuation: str | None) -> JobView:
    return JobView(
        job_id="j1",
        kind="embedding",
        mode="realtime",
        status="partially_failed",
        counts=Counts(total=3, succeeded=2, failed=1),
        usage=Usage(),
        error=None,
        tags={},
        created_at=NOW,
        updated_at=NOW,
        results=results,
        continuation=continuation,
    )


FILTERED = result(
    "c",
    status="content_filtered",
    embedding=None,
    error={"code": "content_filter", "message": "filtered"},
    categories={"hate": {"filtered": True, "severity": "high"}},
)
PAGES = [
    page([result("a", embedding=[0.25, -0.5]), result("b", embedding=[1.0, 0.0])], "t1"),
    page([FILTERED], None),
]


async def pages_of(views: list[JobView], fail_after: int | None = None) -> AsyncIterator[JobView]:
    for n, view in enumerate(views):
        if fail_after is not None and n == fail_after:
            raise ConnectionError("the app went away")
        yield view


async def test_jsonl_keeps_each_result_as_the_api_returned_it(tmp_path: Path) -> None:
    out = tmp_path / "r.jsonl"
    summary = await export_pages(pages_of(PAGES), out, "jsonl")
    assert (summary.rows, summary.pages, summary.status) == (3, 2, "partially_failed")
    lines = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    assert lines == [*PAGES[0].results, *PAGES[1].results]


async def test_parquet_has_the_fixed_schema_and_one_row_per_result(tmp_path: Path) -> None:
    out = tmp_path / "r.parquet"
    await export_pages(pages_of(PAGES), out, "parquet")
    rows = list(read_parquet_rows(out))
    assert [r["item_id"] for r in rows] == ["a", "b", "c"]
    assert rows[0]["embedding"] == [0.25, -0.5]  # exact in float32
    assert rows[2]["embedding"] is None
    assert (rows[2]["error_code"], rows[2]["status"]) == ("content_filter", "content_filtered")
    assert json.loads(rows[2]["categories"])["hate"] == {"filtered": True, "severity": "high"}
    assert rows[1]["total_tokens"] == 2
    assert rows[0]["created_at"] == NOW
    assert pq.read_schema(str(out)).equals(RESULT_SCHEMA)


async def test_a_job_without_results_gives_a_readable_empty_file(tmp_path: Path) -> None:
    out = tmp_path / "empty.parquet"
    await export_pages(pages_of([page([], None)]), out, "parquet")
    assert list(read_parquet_rows(out)) == []


async def test_a_failed_page_leaves_no_partial_file(tmp_path: Path) -> None:
    out = tmp_path / "r.jsonl"
    with pytest.raises(ConnectionError):
        await export_pages(pages_of(PAGES, fail_after=1), out, "jsonl")
    assert not out.exists()


def test_format_from_the_suffix_or_the_option() -> None:
    assert detect_format(Path("x.PARQUET")) == "parquet"
    assert detect_format(Path("x.ndjson")) == "jsonl"
    assert detect_format(Path("x.out"), "jsonl") == "jsonl"
    with pytest.raises(ValueError, match="--format"):
        detect_format(Path("x.csv"))
