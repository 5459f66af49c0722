"""Operator CLI for queue jobs: submit, watch, export, failed jobs and poisoned messages.

Run as `python -m cli`. Never deployed (see .funcignore and docs/jobs-cli.md): it is an
operator's tool that imports the app's own models, so what it sends cannot drift from what the
app accepts.
"""
