"""`python -m cli` as an operator runs it: a separate process from the repository root."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def python_m_cli(*args: str) -> subprocess.CompletedProcess[str]:
    """`python -m cli ARGS` from the repository root, in a wide terminal."""
    return subprocess.run(
        [sys.executable, "-m", "cli", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={"COLUMNS": "200", "PATH": "/usr/bin:/bin"},
    )


def test_python_m_cli_lists_every_command() -> None:
    done = python_m_cli("--help")
    assert done.returncode == 0, done.stderr
    for command in ("submit", "watch", "export", "failed", "poison", "teams"):
        assert f" {command} " in done.stdout


def test_no_command_shows_help_and_fails() -> None:
    done = python_m_cli()
    assert done.returncode == 2
    assert "Usage: python -m cli" in done.stdout + done.stderr
