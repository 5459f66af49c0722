"""`make audit`: known vulnerabilities in the pinned Python packages and the npm stand-ins.

- `pip-audit` on `requirements.txt` (the hashed lock Azure installs) and on `constraints.txt`
  (the whole dev set), against PyPI's vulnerability data (its JSON API);
- `npm audit` on `devstack/emulators` (dev only, never deployed).

A finding fails the run unless `audit-exceptions.json` accepts it with a reason and a review
date. Where a vulnerability database cannot be reached (CI reaches the registries' package
downloads, not always their audit APIs), the run says NOT AUDITED for that part and does
not fail: an unreachable database proves nothing either way.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field

ROOT = Path(__file__).resolve().parents[1]
EXCEPTIONS = ROOT / "audit-exceptions.json"
EMULATORS = ROOT / "devstack" / "emulators"

Ecosystem = Literal["pip", "npm"]


class AcceptedFinding(BaseModel):
    """A reviewed exception: this advisory in this package is accepted, and why."""

    ecosystem: Ecosystem
    package: str
    id: str = Field(description="Advisory id (PYSEC-, GHSA-, CVE-) or npm advisory URL.")
    reason: str = Field(min_length=20)
    reviewed: str = Field(pattern=r"^\d{4}-\d{2}-\d{2}$")


class Exceptions(BaseModel):
    accepted: list[AcceptedFinding] = Field(default_factory=list)


@dataclass(frozen=True)
class Finding:
    ecosystem: Ecosystem
    package: str
    version: str
    ids: frozenset[str]


@dataclass(frozen=True)
class Outcome:
    findings: list[Finding]
    audited: int
    unreachable: bool
    note: str = ""


def pip_outcome(report: Mapping[str, Any]) -> Outcome:
    """Read `pip-audit -f json`. Every package skipped as 'not found' means the vulnerability
    data could not be fetched (PyPI's per-version JSON), not that nothing is known."""
    deps = report.get("dependencies", [])
    skipped = [d for d in deps if d.get("skip_reason")]
    findings = [
        Finding("pip", d["name"], d.get("version", ""), frozenset({v["id"], *v.get("aliases", [])}))
        for d in deps
        for v in d.get("vulns", [])
    ]
    unreachable = bool(deps) and len(skipped) == len(deps)
    note = f"{len(skipped)} of {len(deps)} packages skipped" if skipped else ""
    return Outcome(findings, len(deps) - len(skipped), unreachable, note)


def npm_outcome(report: Mapping[str, Any]) -> Outcome:
    """Read `npm audit --json`; an `error` object means the registry's audit API refused."""
    if "error" in report or "vulnerabilities" not in report:
        return Outcome([], 0, True, str(report.get("message") or report.get("error")))
    findings = []
    for name, vuln in report["vulnerabilities"].items():
        ids = {
            str(v.get("url") or v.get("source")) for v in vuln.get("via", []) if isinstance(v, dict)
        }
        findings.append(Finding("npm", name, str(vuln.get("range", "")), frozenset(ids)))
    total = report.get("metadata", {}).get("dependencies", {}).get("total", 0)
    return Outcome(findings, int(total), False)


def unaccepted(findings: Iterable[Finding], exceptions: Exceptions) -> list[Finding]:
    """Findings no reviewed exception covers (an npm finding reached only through another
    package has no id of its own and is covered by that package's exception)."""
    accepted = {(e.ecosystem, e.package.lower(), e.id) for e in exceptions.accepted}
    packages = {(e.ecosystem, e.package.lower()) for e in exceptions.accepted}
    left = []
    for f in findings:
        if any((f.ecosystem, f.package.lower(), i) in accepted for i in f.ids):
            continue
        if not f.ids and (f.ecosystem, f.package.lower()) in packages:
            continue
        left.append(f)
    return left


def _run(argv: list[str], cwd: Path = ROOT) -> dict[str, Any]:
    proc = subprocess.run(argv, cwd=cwd, capture_output=True, text=True, check=False)
    try:
        parsed: dict[str, Any] = json.loads(proc.stdout)
    except json.JSONDecodeError:
        return {"error": "no JSON", "message": (proc.stderr or proc.stdout)[-500:]}
    return parsed


def audits() -> list[tuple[str, Outcome]]:
    pip_audit = [
        sys.executable,
        "-m",
        "pip_audit",
        "-f",
        "json",
        "--progress-spinner",
        "off",
        "--disable-pip",
    ]
    return [
        (
            "requirements.txt (deployed)",
            pip_outcome(_run([*pip_audit, "--require-hashes", "-r", "requirements.txt"])),
        ),
        (
            "constraints.txt (dev)",
            pip_outcome(_run([*pip_audit, "--no-deps", "-r", "constraints.txt"])),
        ),
        (
            "devstack/emulators (npm)",
            npm_outcome(_run(["npm", "audit", "--json", "--omit=optional"], cwd=EMULATORS)),
        ),
    ]


def main() -> int:
    exceptions = Exceptions.model_validate_json(EXCEPTIONS.read_text())
    failed = False
    for name, outcome in audits():
        if outcome.unreachable:
            print(
                f"NOT AUDITED  {name}: the vulnerability database is unreachable from here "
                f"({outcome.note})"
            )
            continue
        left = unaccepted(outcome.findings, exceptions)
        accepted = len(outcome.findings) - len(left)
        note = f"; {outcome.note}" if outcome.note else ""
        print(
            f"audited      {name}: {outcome.audited} packages, {len(outcome.findings)} "
            f"findings, {accepted} accepted{note}"
        )
        for f in left:
            print(f"  VULNERABLE {f.package} {f.version}: {', '.join(sorted(f.ids))}")
        failed |= bool(left)
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
