"""Exporting a job's results to JSON Lines or Parquet, one API page at a time.

Pages are written as they arrive, so a job of any size exports in bounded memory. JSONL keeps
each result exactly as the API returns it. Parquet has a fixed schema (RESULT_SCHEMA) so
files from different jobs concatenate; embeddings are float32, the precision the embedding
models produce.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, Literal, Protocol

import pyarrow as pa
import pyarrow.parquet as pq

from shared.jobs.models import JobView, ResultDoc

ExportFormat = Literal["jsonl", "parquet"]

RESULT_SCHEMA: Final = pa.schema(
    [
        ("job_id", pa.string()),
        ("item_id", pa.string()),
        ("kind", pa.string()),
        ("status", pa.string()),
        ("deployment", pa.string()),
        ("embedding", pa.list_(pa.float32())),
        ("labels", pa.list_(pa.string())),
        ("error_code", pa.string()),
        ("error_message", pa.string()),
        ("categories", pa.string()),  # JSON text: its keys vary with the filter's verdict
        ("prompt_tokens", pa.int64()),
        ("completion_tokens", pa.int64()),
        ("total_tokens", pa.int64()),
        ("created_at", pa.timestamp("us", tz="UTC")),
    ]
)


@dataclass
class ExportSummary:
    job_id: str
    status: str
    rows: int
    pages: int
    path: Path


class _Writer(Protocol):
    def write(self, rows: list[dict[str, Any]]) -> None: ...
    def close(self) -> None: ...


def detect_format(path: Path, given: ExportFormat | None = None) -> ExportFormat:
    if given is not None:
        return given
    if path.suffix.lower() == ".parquet":
        return "parquet"
    if path.suffix.lower() in {".jsonl", ".ndjson"}:
        return "jsonl"
    raise ValueError(f"{path}: name it .jsonl or .parquet, or pass --format")


def parquet_row(result: dict[str, Any]) -> dict[str, Any]:
    """One API result as a row of RESULT_SCHEMA (validated with the app's ResultDoc)."""
    doc = ResultDoc.model_validate(result)
    return {
        "job_id": doc.job_id,
        "item_id": doc.item_id,
        "kind": doc.kind,
        "status": doc.status,
        "deployment": doc.deployment,
        "embedding": doc.embedding,
        "labels": doc.labels,
        "error_code": doc.error.code if doc.error else None,
        "error_message": doc.error.message if doc.error else None,
        "categories": (
            json.dumps({k: v.model_dump(exclude_none=True) for k, v in doc.categories.items()})
            if doc.categories
            else None
        ),
        "prompt_tokens": doc.usage.prompt_tokens,
        "completion_tokens": doc.usage.completion_tokens,
        "total_tokens": doc.usage.total_tokens,
        "created_at": doc.created_at,
    }


class _JsonlWriter:
    def __init__(self, path: Path) -> None:
        self._file = path.open("w", encoding="utf-8")

    def write(self, rows: list[dict[str, Any]]) -> None:
        for row in rows:
            self._file.write(json.dumps(row, ensure_ascii=False) + "\n")

    def close(self) -> None:
        self._file.close()


class _ParquetWriter:
    def __init__(self, path: Path) -> None:
        self._writer = pq.ParquetWriter(str(path), RESULT_SCHEMA)

    def write(self, rows: list[dict[str, Any]]) -> None:
        if rows:
            table = pa.Table.from_pylist([parquet_row(r) for r in rows], schema=RESULT_SCHEMA)
            self._writer.write_table(table)

    def close(self) -> None:
        # Closing writes the footer: a job with no results still gives a readable empty file.
        self._writer.close()


def _open(path: Path, fmt: ExportFormat) -> _Writer:
    return _ParquetWriter(path) if fmt == "parquet" else _JsonlWriter(path)


async def export_pages(
    pages: AsyncIterator[JobView], path: Path, fmt: ExportFormat
) -> ExportSummary:
    """Write every page's results to `path`. A partial file is removed if a page fails, so
    an existing file is always a whole export."""
    writer = _open(path, fmt)
    rows = count = 0
    view: JobView | None = None
    try:
        async for view in pages:
            writer.write(view.results)
            rows += len(view.results)
            count += 1
    except BaseException:
        writer.close()
        await asyncio.to_thread(path.unlink, missing_ok=True)
        raise
    writer.close()
    assert view is not None  # result_pages yields at least once or raises
    return ExportSummary(view.job_id, view.status, rows, count, path)


def read_parquet_rows(path: Path) -> Iterable[dict[str, Any]]:
    """The rows of an exported Parquet file (tests and quick checks)."""
    rows: list[dict[str, Any]] = pq.read_table(str(path)).to_pylist()
    return rows
