"""Reading item files: JSONL and CSV, checked with the app's Item model."""

from __future__ import annotations

from pathlib import Path

import pytest

from cli.items import ItemsError, read_items


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_jsonl_items_in_order_blank_lines_skipped_numeric_ids_as_text(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "items.jsonl",
        '{"id": "a", "text": "first", "extra": 1}\n\n{"id": 7, "text": "second"}\n',
    )
    items = read_items(path)
    assert [(i.id, i.text) for i in items] == [("a", "first"), ("7", "second")]


def test_csv_with_bom_quoted_newlines_and_other_columns(tmp_path: Path) -> None:
    path = write(tmp_path, "items.csv", '\ufeffid,lang,text\nx1,en,"two\nlines"\nx2,fr,"a, b"\n')
    items = read_items(path)
    assert [(i.id, i.text) for i in items] == [("x1", "two\nlines"), ("x2", "a, b")]


def test_custom_field_names(tmp_path: Path) -> None:
    path = write(tmp_path, "items.ndjson", '{"key": "k1", "body": "hello"}\n')
    (item,) = read_items(path, id_field="key", text_field="body")
    assert (item.id, item.text) == ("k1", "hello")


@pytest.mark.parametrize(
    ("name", "text", "message"),
    [
        ("a.jsonl", '{"id": "a", "text": "x"}\nnot json\n', "a.jsonl:2: not JSON"),
        ("a.jsonl", '["a", "x"]\n', "a.jsonl:1: expected a JSON object"),
        ("a.jsonl", '{"id": "a"}\n', "a.jsonl:1: needs the fields 'id' and 'text'"),
        ("a.jsonl", '{"id": "a", "text": ""}\n', "a.jsonl:1: text:"),
        ("a.jsonl", '{"id": "a/b", "text": "x"}\n', "a.jsonl:1: id:"),
        ("a.csv", "id,text\na,x\nb,y\na,z\n", "a.csv:4: id 'a' already on line 2"),
        ("a.csv", "id,body\na,x\n", "needs the fields 'id' and 'text'"),
        ("a.csv", "id,text\n", "a.csv: no items"),
        ("a.txt", "a,x\n", "cannot tell the format from '.txt'"),
    ],
)
def test_bad_files_name_the_line(tmp_path: Path, name: str, text: str, message: str) -> None:
    with pytest.raises(ItemsError) as caught:
        read_items(write(tmp_path, name, text))
    assert message in str(caught.value)
