"""Supply chain: the deployed requirements are a full hashed lock, and `make audit` judges
findings against reviewed exceptions (pure logic on pip-audit / npm audit reports)."""

from __future__ import annotations

import re

from devstack.audit import (
    EXCEPTIONS,
    AcceptedFinding,
    Exceptions,
    npm_outcome,
    pip_outcome,
    unaccepted,
)
from tests.support.paths import REPO_ROOT

ROOT = REPO_ROOT
PIN = re.compile(r"^([A-Za-z0-9_.-]+)==([^\s\\;]+)")


def norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def pins(text: str) -> dict[str, str]:
    return {norm(m[1]): m[2] for line in text.splitlines() if (m := PIN.match(line))}


def lock_problems(lock: str, direct: str, constraints: str) -> list[str]:
    """What keeps `lock` from being a full, hashed lock of `direct` within `constraints`."""
    problems = []
    entries = re.split(
        r"\n(?=[A-Za-z0-9])",
        "\n".join(line for line in lock.splitlines() if line and not line.lstrip().startswith("#")),
    )
    for entry in entries:
        if not PIN.match(entry):
            problems.append(f"not pinned with ==: {entry.splitlines()[0]}")
        elif "--hash=sha256:" not in entry:
            problems.append(f"no hash: {entry.splitlines()[0]}")
    locked, fixed = pins(lock), pins(constraints)
    for name, version in pins(direct).items():
        if locked.get(name) != version:
            problems.append(
                f"{name}=={version} of requirements.in is {locked.get(name)} in the lock"
            )
    for name, version in locked.items():
        if fixed.get(name, version) != version:
            problems.append(f"{name}: {version} deployed, {fixed[name]} tested")
    return problems


def read(name: str) -> str:
    return (ROOT / name).read_text()


def test_the_deployed_requirements_are_a_full_hashed_lock() -> None:
    """Finding: Azure installs only requirements.txt, whose indirect packages were unpinned."""
    lock = read("requirements.txt")
    assert lock_problems(lock, read("requirements.in"), read("constraints.txt")) == []
    # Indirect packages are in it too, not only the direct ones.
    assert len(pins(lock)) > len(pins(read("requirements.in"))) + 20
    assert {"starlette", "multidict", "pydantic-core"} <= set(pins(lock))


def test_a_lock_missing_a_hash_or_a_pin_fails() -> None:
    lock, direct, cons = read("requirements.txt"), read("requirements.in"), read("constraints.txt")
    unhashed = re.sub(r"(anyio==[^\n]*?) \\\n(    --hash=[^\n]*\n)+", r"\1\n", lock, count=1)
    assert any("no hash: anyio" in p for p in lock_problems(unhashed, direct, cons))
    loose = lock.replace("anyio==", "anyio>=", 1)
    assert any("anyio" in p for p in lock_problems(loose, direct, cons))
    drifted = cons.replace("anyio==", "anyio==0.0.1\n# was ", 1)
    assert any("anyio" in p for p in lock_problems(lock, direct, drifted))


def test_the_dev_install_does_not_read_the_hashed_lock() -> None:
    """pip would demand hashes for every dev package if requirements-dev.txt pulled it in."""
    assert "-r requirements.in" in read("requirements-dev.txt")
    assert "-r requirements.txt" not in read("requirements-dev.txt")


def test_the_audit_runs_in_ci() -> None:
    assert "make audit" in read(".ci/run")


PIP_REPORT = {
    "dependencies": [
        {
            "name": "requests",
            "version": "2.0.0",
            "vulns": [{"id": "PYSEC-1", "aliases": ["CVE-1"], "fix_versions": ["2.1"]}],
        },
        {"name": "anyio", "version": "4.0", "vulns": []},
    ]
}


def test_pip_findings_fail_unless_a_reviewed_exception_accepts_them() -> None:
    outcome = pip_outcome(PIP_REPORT)
    assert (outcome.audited, outcome.unreachable) == (2, False)
    assert [f.package for f in unaccepted(outcome.findings, Exceptions())] == ["requests"]
    accepted = Exceptions(
        accepted=[
            AcceptedFinding(
                ecosystem="pip",
                package="requests",
                id="CVE-1",
                reason="not reachable: the app never calls the affected API",
                reviewed="2026-11-28",
            )
        ]
    )
    assert unaccepted(outcome.findings, accepted) == []


def test_an_unreachable_database_is_said_not_taken_for_clean() -> None:
    skipped = {"dependencies": [{"name": "x", "version": "1", "skip_reason": "not found"}] * 3}
    assert pip_outcome(skipped).unreachable is True
    refused = {"error": {"summary": ""}, "message": "405 Method Not Allowed - POST ..."}
    assert npm_outcome(refused).unreachable is True
    found = npm_outcome(
        {
            "vulnerabilities": {
                "qs": {
                    "range": "<6.2",
                    "via": [{"url": "https://github.com/advisories/GHSA-x", "source": 1}],
                }
            },
            "metadata": {"dependencies": {"total": 300}},
        }
    )
    assert (found.unreachable, found.audited) == (False, 300)
    assert [f.ids for f in found.findings] == [frozenset({"https://github.com/advisories/GHSA-x"})]


def test_the_exceptions_file_is_valid_and_each_entry_says_why() -> None:
    exceptions = Exceptions.model_validate_json(EXCEPTIONS.read_text())
    assert all(len(e.reason.split()) >= 5 for e in exceptions.accepted)
