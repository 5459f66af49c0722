"""checkov's Bicep framework over infra/: it parses everything, sees every resource, and fails
no check outside infra/checkov-allowlist.json (each entry with its reason)."""

from __future__ import annotations

import json
import shutil
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


def unexpected_failures(report: dict[str, Any]) -> dict[tuple[str, str, str], str]:
    """Failed checks not accepted in the allowlist: (check id, file, resource) -> check name."""
    failed = {
        _key(c["check_id"], c["file_path"], c["resource"]): c["check_name"]
        for c in report["results"]["failed_checks"]
    }
    return {k: v for k, v in failed.items() if k not in allowlisted()}


def test_no_failed_check_outside_the_allowlist(report: dict[str, Any]) -> None:
    assert unexpected_failures(report) == {}


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


def test_the_checkov_gate_fails_a_broken_copy(tmp_path: Path) -> None:
    copy = tmp_path / "infra"
    shutil.copytree(INFRA_DIR, copy)
    openai = copy / "modules" / "openai.bicep"
    openai.write_text(
        openai.read_text().replace("disableLocalAuth: true", "disableLocalAuth: false")
    )
    # Syntax pycep 0.5.1 cannot parse: checkov skips the file and still exits 0.
    (copy / "modules" / "newer-syntax.bicep").write_text(
        "param x string?\noutput y string = x ?? 'a'\n"
    )
    report = run_checkov(copy)
    assert report["summary"]["parsing_errors"] == 1
    assert (
        "CKV_AZURE_236",
        "modules/openai.bicep",
        "Microsoft.CognitiveServices/accounts.account",
    ) in (unexpected_failures(report))
