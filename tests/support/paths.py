"""The repository's root, for tests that read its files (docs, settings examples, scripts)."""

from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
