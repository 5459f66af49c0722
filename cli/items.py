"""Reading a file of job items: JSON Lines or CSV, each item an id and a text.

Every item is validated with the app's own `Item` model, so a bad id or an empty text is
reported with its line number before anything is sent.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

from pydantic import ValidationError

from shared.jobs.models import Item

ItemFormat = Literal["jsonl", "csv"]

SUFFIXES: dict[str, ItemFormat] = {".jsonl": "jsonl", ".ndjson": "jsonl", ".csv": "csv"}


class ItemsError(ValueError):
    """The items file cannot be read; the message names the file and the line."""


def detect_format(path: Path, given: ItemFormat | None = None) -> ItemFormat:
    if given is not None:
        return given
    found = SUFFIXES.get(path.suffix.lower())
    if found is None:
        raise ItemsError(
            f"{path}: cannot tell the format from {path.suffix!r}; "
            f"name it {', '.join(SUFFIXES)} or pass --format"
        )
    return found


def read_items(
    path: Path,
    fmt: ItemFormat | None = None,
    *,
    id_field: str = "id",
    text_field: str = "text",
) -> list[Item]:
    """All items of `path`; raises ItemsError naming the first bad line.

    JSONL: one object a line, `{"id": "a1", "text": "..."}` (other keys are ignored; blank
    lines are skipped). CSV: a header row naming the id and text columns. A numeric JSON id
    is taken as its text (`7` -> `"7"`).
    """
    kind = detect_format(path, fmt)
    rows = _jsonl_rows(path) if kind == "jsonl" else _csv_rows(path)
    items: list[Item] = []
    seen: dict[str, int] = {}
    for line, row in rows:
        if id_field not in row or text_field not in row:
            raise ItemsError(f"{path}:{line}: needs the fields {id_field!r} and {text_field!r}")
        raw_id = row[id_field]
        item_id = (
            str(raw_id) if isinstance(raw_id, int) and not isinstance(raw_id, bool) else raw_id
        )
        try:
            item = Item(id=item_id, text=row[text_field])
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors()
            )
            raise ItemsError(f"{path}:{line}: {problems}") from None
        if item.id in seen:
            raise ItemsError(f"{path}:{line}: id {item.id!r} already on line {seen[item.id]}")
        seen[item.id] = line
        items.append(item)
    if not items:
        raise ItemsError(f"{path}: no items")
    return items


def _jsonl_rows(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    with path.open(encoding="utf-8") as lines:
        for number, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise ItemsError(f"{path}:{number}: not JSON ({exc.msg})") from None
            if not isinstance(row, dict):
                raise ItemsError(f"{path}:{number}: expected a JSON object")
            yield number, row


def _csv_rows(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    # newline="" lets the csv module handle quoted newlines inside a text.
    with path.open(encoding="utf-8-sig", newline="") as handle:
        reader = csv.DictReader(handle)
        for row in reader:
            yield reader.line_num, row
