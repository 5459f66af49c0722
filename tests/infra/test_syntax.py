"""Every .bicep file is valid Bicep syntax (tree-sitter-bicep) and parses with pycep."""

from __future__ import annotations

from pathlib import Path

import pytest
import tree_sitter
import tree_sitter_bicep
from pycep import BicepParser

from tests.infra.bicep import INFRA_DIR

BICEP_FILES = sorted(INFRA_DIR.rglob("*.bicep"))
_PARSER = tree_sitter.Parser(tree_sitter.Language(tree_sitter_bicep.language()))


def syntax_errors(source: bytes) -> list[str]:
    """ERROR and MISSING nodes of a tree-sitter parse, as 'line:col text'."""
    found: list[str] = []
    stack = [_PARSER.parse(source).root_node]
    while stack:
        node = stack.pop()
        if node.is_error or node.is_missing:
            text = (node.text or b"")[:40].decode(errors="replace")
            found.append(
                f"{node.start_point.row + 1}:{node.start_point.column + 1} {node.type} {text!r}"
            )
        stack.extend(node.children)
    return found


def test_the_infra_has_the_expected_files() -> None:
    names = {p.relative_to(INFRA_DIR).as_posix() for p in BICEP_FILES}
    assert "main.bicep" in names
    assert len(names) >= 9
    assert (INFRA_DIR / "main.parameters.json").is_file()
    assert (INFRA_DIR.parent / "azure.yaml").is_file()


@pytest.mark.parametrize("path", BICEP_FILES, ids=lambda p: p.relative_to(INFRA_DIR).as_posix())
def test_bicep_parses_with_tree_sitter(path: Path) -> None:
    assert syntax_errors(path.read_bytes()) == []


@pytest.mark.parametrize("path", BICEP_FILES, ids=lambda p: p.relative_to(INFRA_DIR).as_posix())
def test_bicep_parses_with_pycep(path: Path) -> None:
    parsed = BicepParser().parse(file_path=path)
    assert parsed["resources"] or parsed["modules"]


def test_the_syntax_gate_catches_broken_bicep() -> None:
    assert (
        syntax_errors(b"resource x 'Microsoft.Storage/storageAccounts@2023-05-01' = {\n  name: \n")
        != []
    )
    assert syntax_errors(b"param location string\n") == []
