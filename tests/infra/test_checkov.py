"""checkov's Bicep framework over infra/: it parses everything, sees every resource, and fails
no check outside infra/checkov-allowlist.json (each entry with its reason)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.infra.bicep import INFRA_DIR, parse

ALLOWLIST = INFRA_DIR / "checkov-allowlist.json"
CHECKOV = Path(sys.executable).with_name("checkov")

pytestmark = pytest.mark.slow


def run_checkov(directory: Path) -> dict[str, Any]:
    """checkov's JSON report for the Bicep files under `directory` (offline)."""
    proc = subprocess.run(
        [
            str(CHECKOV),
            "-d",
            str(directory),
            "--framework",
            "bicep",
            "--skip-download",
            "-o",
            "json",
        ],
        capture_output=True,
        text=True,
        timeout=110,
        check=False,
    )
    # Exit code 1 means failed checks (judged below); anything else is checkov itself failing.
    assert proc.returncode in (0, 1), proc.stderr[-2000:]
    report = json.loads(proc.stdout)
    assert isinstance(report, dict), "one framework, one report"
    return report


@pytest.fixture(scope="module")
def report() -> dict[str, Any]:
    return run_checkov(INFRA_DIR)


def _key(check_id: str, file: str, resource: str) -> tuple[str, str, str]:
    return check_id, file.lstrip("/"), resource


def allowlisted() -> dict[tuple[str, str, str], str]:
    entries = json.loads(ALLOWLIST.read_text())["accepted"]
    return {_key(e["check_id"], e["file"], e["resource"]): e["reason"] for e in entries}


def test_checkov_parses_every_file(report: dict[str, Any]) -> None:
    # checkov exits 0 when it cannot parse a file: the summary is the only witness.
    assert report["summary"]["parsing_errors"] == 0
    assert report["results"]["parsing_errors"] == []


def test_checkov_sees_every_resource(report: dict[str, Any]) -> None:
    declared = [r for r in parse().resources() if not r.existing]
    assert len(declared) >= 45
    assert report["summary"]["resource_count"] >= len(declared)
    assert report["summary"]["passed"] >= 30


def test_no_failed_check_outside_the_allowlist(report: dict[str, Any]) -> None:
    failed = {
        _key(c["check_id"], c["file_path"], c["resource"]): c["check_name"]
        for c in report["results"]["failed_checks"]
    }
    unexpected = {k: v for k, v in failed.items() if k not in allowlisted()}
    assert unexpected == {}


def test_every_allowlist_entry_is_still_needed(report: dict[str, Any]) -> None:
    failed = {
        _key(c["check_id"], c["file_path"], c["resource"])
        for c in report["results"]["failed_checks"]
    }
    stale = sorted(set(allowlisted()) - failed)
    assert stale == []


def test_every_allowlist_entry_gives_a_reason() -> None:
    for key, reason in allowlisted().items():
        assert len(reason.split()) >= 5, key
