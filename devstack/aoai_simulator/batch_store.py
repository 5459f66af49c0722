"""The batch store behind `/openai/batches`: validation, the status timeline, output files.

A batch's status is computed from the clock whenever it is read (no background task):
validating -> in_progress -> finalizing -> completed, each state lasting the configured
seconds; `failed` after validating when the input file is bad; cancel -> cancelling ->
cancelled; `expired` when `expire_after_seconds` passes first. Every line is answered by the
same code as the real-time routes (`chat.plan_chat`, `embeddings.create`), filters included.
"""

from __future__ import annotations

import json
import math
import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from . import batch_quota, chat, embeddings, errors
from .batch_input import BatchLine, parse_input
from .config import SimulatorConfig
from .file_store import FileStore
from .prompt_cache import PromptCache
from .stats import Stats

_ENDPOINTS = {"/chat/completions", "/embeddings", "/v1/chat/completions", "/v1/embeddings"}
_TERMINAL = {"completed", "failed", "cancelled", "expired"}
_QUEUED = {"validating", "in_progress", "finalizing", "cancelling"}  # holding enqueued tokens
_DAY = 24 * 3600
_LINE_ERROR = {
    "error": {
        "code": "internal_error",
        "message": "The server had an error processing this request. Please retry it.",
    }
}


@dataclass
class _Batch:
    id: str
    input_file_id: str
    endpoint: str
    metadata: dict[str, str] | None
    t0: float
    config: SimulatorConfig
    lines: list[BatchLine]
    model: str | None
    validation_errors: list[dict[str, Any]]
    stop_at: float | None = None  # cancel requested at this time
    results: list[tuple[BatchLine, int, dict[str, Any]]] | None = None
    output_file_id: str | None = None
    error_file_id: str | None = None
    files_written: bool = False
    tokens: int = 0  # enqueued input tokens, counted against the deployment's quota
    extra: dict[str, Any] = field(default_factory=dict)


def _metadata(raw: Any) -> dict[str, str] | None:
    """The batch's `metadata` as the API takes it: at most 16 pairs of strings, keys up to 64
    characters, values up to 512 (OpenAI's and Azure's limits); else a 400."""
    if raw is None:
        return None
    if not isinstance(raw, dict) or len(raw) > 16:
        raise errors.invalid_request(
            "Invalid 'metadata': expected an object with at most 16 pairs.", "metadata"
        )
    for key, value in raw.items():
        if not isinstance(value, str) or len(key) > 64 or len(value) > 512:
            raise errors.invalid_request(
                f"Invalid 'metadata.{key[:64]}': keys are strings of at most 64 characters, "
                "values strings of at most 512.",
                "metadata",
            )
    return dict(raw)


class BatchStore:
    def __init__(self, files: FileStore, stats: Stats, prompt_cache: PromptCache) -> None:
        self._files = files
        self._stats = stats
        self._prompt_cache = prompt_cache  # lines reuse the prefixes of the lines before them
        self._lock = threading.Lock()
        self._admit = threading.Lock()  # one create at a time checks and takes the quota
        self._batches: dict[str, _Batch] = {}

    def create(self, body: Any, config: SimulatorConfig) -> dict[str, Any]:
        if not isinstance(body, dict):
            raise errors.invalid_request("The request body must be a JSON object.")
        for key in ("input_file_id", "endpoint", "completion_window"):
            if not isinstance(body.get(key), str):
                raise errors.invalid_request(f"'{key}' is a required property", key)
        window = body["completion_window"]
        if window != "24h":
            raise errors.error(
                400,
                "invalid_value",
                f"Invalid value for 'completion_window': {window!r}. Supported values are: '24h'.",
                param="completion_window",
            )
        endpoint = body["endpoint"]
        if endpoint.endswith("/embeddings") and not config.batch.allow_embeddings:
            # Azure's Batch API takes no embeddings (no embedding model has a global-batch
            # deployment); the OpenAI API does, which `batch.allow_embeddings` simulates.
            raise errors.error(
                400,
                "invalid_value",
                f"Invalid value for 'endpoint': {endpoint!r}. Supported values are: "
                "'/chat/completions'.",
                param="endpoint",
            )
        if endpoint not in _ENDPOINTS:
            raise errors.error(
                400,
                "invalid_value",
                f"Invalid value for 'endpoint': {endpoint!r}. Supported values are: "
                "'/chat/completions', '/embeddings'.",
                param="endpoint",
            )
        metadata = _metadata(body.get("metadata"))
        meta = self._files.get(body["input_file_id"])
        if meta["purpose"] != "batch":
            raise errors.error(
                400,
                "invalid_request",
                f"The file {meta['id']} has purpose {meta['purpose']!r}; a batch input file "
                "must be uploaded with purpose 'batch'.",
                param="input_file_id",
            )
        parsed = parse_input(self._files.content(meta["id"]), endpoint, config)
        with self._admit:
            batch = _Batch(
                id="batch_" + str(uuid.uuid4()),
                input_file_id=meta["id"],
                endpoint=endpoint,
                metadata=metadata,
                t0=time.time(),
                config=config,
                lines=parsed.lines,
                model=parsed.model,
                validation_errors=parsed.errors,
                tokens=sum(batch_quota.line_tokens(line) for line in parsed.lines),
            )
            if not parsed.errors and parsed.model is not None:
                self._check_quota(batch, parsed.model)
            with self._lock:
                self._batches[batch.id] = batch
        return self._view(batch, batch.t0)

    def _check_quota(self, batch: _Batch, model: str) -> None:
        deployment = batch.config.deployment(model)
        limit = deployment.enqueued_token_limit if deployment is not None else 0
        if not limit:
            return
        with self._lock:
            # A batch bound to fail after validating holds no tokens.
            others = [
                b for b in self._batches.values() if b.model == model and not b.validation_errors
            ]
        queued = sum(b.tokens for b in others if self._view(b, batch.t0)["status"] in _QUEUED)
        refused = batch_quota.admit(limit, model, queued, batch.tokens)
        if refused is not None:
            batch.validation_errors = [refused]

    def release_quota(self) -> None:
        """Existing batches stop counting against enqueued-token quotas (`/sim/reset`)."""
        with self._lock:
            for batch in self._batches.values():
                batch.tokens = 0

    def get(self, batch_id: str) -> dict[str, Any]:
        with self._lock:
            batch = self._batches.get(batch_id)
        if batch is None:
            raise errors.error(404, "404", f"Batch with id '{batch_id}' not found.")
        return self._view(batch, time.time())

    def list(self) -> list[dict[str, Any]]:
        """Newest first."""
        with self._lock:
            batches = list(self._batches.values())
        now = time.time()
        return [self._view(b, now) for b in reversed(batches)]

    def cancel(self, batch_id: str) -> dict[str, Any]:
        view = self.get(batch_id)
        if view["status"] in _TERMINAL or view["status"] == "cancelling":
            raise errors.error(
                409, "invalid_request", f"Cannot cancel a batch with status '{view['status']}'."
            )
        with self._lock:
            batch = self._batches[batch_id]
            batch.stop_at = time.time()
        return self._view(batch, batch.stop_at)

    # -- the timeline ---------------------------------------------------------------------

    def _view(self, batch: _Batch, now: float) -> dict[str, Any]:
        pace = batch.config.batch
        v_end = batch.t0 + pace.validating_seconds
        p_end = v_end + pace.in_progress_seconds
        f_end = p_end + pace.finalizing_seconds
        expire = (
            batch.t0 + pace.expire_after_seconds if pace.expire_after_seconds is not None else None
        )
        stamps: dict[str, float | None] = {}
        total = len(batch.lines)
        done = 0
        if batch.validation_errors and batch.stop_at is None:
            status = "validating" if now < v_end else "failed"
            stamps["failed_at"] = v_end if status == "failed" else None
        elif batch.stop_at is not None and batch.stop_at < f_end:
            stop = batch.stop_at
            done = self._done_by(batch, stop, v_end, p_end)
            stamps["cancelling_at"] = stop
            finished = stop + pace.cancelling_seconds
            status = "cancelled" if now >= finished else "cancelling"
            if status == "cancelled":
                stamps["cancelled_at"] = finished
                self._write_files(batch, done, expired=False)
            stamps["in_progress_at"] = v_end if stop >= v_end else None
        elif expire is not None and expire < f_end and now >= expire:
            done = self._done_by(batch, expire, v_end, p_end)
            status = "expired"
            stamps.update(expired_at=expire, in_progress_at=v_end if expire >= v_end else None)
            self._write_files(batch, done, expired=True)
        else:
            if now < v_end:
                status = "validating"
            elif now < p_end:
                status = "in_progress"
                done = self._done_by(batch, now, v_end, p_end)
            elif now < f_end:
                status, done = "finalizing", total
            else:
                status, done = "completed", total
                stamps["completed_at"] = f_end
                self._write_files(batch, total, expired=False)
            stamps["in_progress_at"] = v_end if now >= v_end else None
            stamps["finalizing_at"] = p_end if now >= p_end else None
        failed = sum(1 for _, status_code, _ in (batch.results or [])[:done] if status_code != 200)
        view: dict[str, Any] = {
            "id": batch.id,
            "object": "batch",
            "endpoint": batch.endpoint,
            "errors": {"object": "list", "data": batch.validation_errors}
            if batch.validation_errors
            else None,
            "input_file_id": batch.input_file_id,
            "completion_window": "24h",
            "status": status,
            "output_file_id": self._file_id(batch, batch.output_file_id),
            "error_file_id": self._file_id(batch, batch.error_file_id),
            "created_at": int(batch.t0),
            "expires_at": int(batch.t0) + _DAY,
            "request_counts": {
                "total": total if status != "failed" else 0,
                "completed": done - failed if batch.results else done,
                "failed": failed,
            },
            "metadata": batch.metadata,
            "model": batch.model,
        }
        for key in (
            "in_progress_at",
            "finalizing_at",
            "completed_at",
            "failed_at",
            "expired_at",
            "cancelling_at",
            "cancelled_at",
        ):
            value = stamps.get(key)
            view[key] = int(value) if value is not None else None
        return view

    @staticmethod
    def _file_id(batch: _Batch, file_id: str | None) -> str | None:
        """An absent file is `null`, or `""` as the service sometimes writes it."""
        if file_id is None and batch.config.batch.empty_file_ids:
            return ""
        return file_id

    def _done_by(self, batch: _Batch, moment: float, v_end: float, p_end: float) -> int:
        """How many lines were answered by `moment` (spread evenly over in_progress)."""
        if moment < v_end:
            return 0
        span = p_end - v_end
        fraction = 1.0 if span <= 0 else min(1.0, (moment - v_end) / span)
        done = math.floor(len(batch.lines) * fraction)
        if done:
            self._run(batch)
        return done

    # -- running lines and writing files ---------------------------------------------------

    def _run(self, batch: _Batch) -> None:
        with self._lock:
            if batch.results is not None:
                return
            batch.results = [self._answer(batch, line) for line in batch.lines]

    def _answer(self, batch: _Batch, line: BatchLine) -> tuple[BatchLine, int, dict[str, Any]]:
        config = batch.config
        deployment = config.deployment(line.model)
        assert deployment is not None  # parse_input checked it
        marker = config.batch.fail_lines_containing
        if marker is not None and marker in json.dumps(line.body):
            self._stats.record("batch", deployment.name, 500)
            return line, 500, _LINE_ERROR
        try:
            if deployment.kind == "chat":
                plan = chat.plan_chat(line.body, deployment, config)
                plan.cached_tokens = self._prompt_cache.cached_tokens(
                    deployment, line.body, config.prompt_cache
                )
                body = chat.completion_body(plan)
                body["object"] = "chat.completion"
            else:
                body = embeddings.create(line.body, deployment, config)
        except errors.AzureError as exc:
            self._stats.record("batch", deployment.name, exc.status)
            return line, exc.status, exc.body
        usage = body["usage"]
        self._stats.record(
            "batch",
            deployment.name,
            200,
            0,
            usage["prompt_tokens"],
            usage.get("completion_tokens", 0),
            cached_tokens=usage.get("prompt_tokens_details", {}).get("cached_tokens", 0),
            reasoning_tokens=usage.get("completion_tokens_details", {}).get("reasoning_tokens", 0),
        )
        return line, 200, body

    def _claim_write(self, batch: _Batch) -> bool:
        """True for exactly one caller: the one that writes the batch's files."""
        with self._lock:
            if batch.files_written:
                return False
            batch.files_written = True
            return True

    def _write_files(self, batch: _Batch, done: int, *, expired: bool) -> None:
        if batch.files_written or not self._claim_write(batch):
            return
        if done:
            self._run(batch)
        results = (batch.results or [])[:done]
        output: list[str] = []
        failures: list[str] = []
        for line, status, body in results:
            record = {
                "id": "batch_req_" + uuid.uuid4().hex,
                "custom_id": line.custom_id,
                "response": {"status_code": status, "request_id": str(uuid.uuid4()), "body": body},
                "error": None,
            }
            (output if status == 200 else failures).append(json.dumps(record))
        if expired:
            for line in batch.lines[done:]:
                failures.append(
                    json.dumps(
                        {
                            "id": "batch_req_" + uuid.uuid4().hex,
                            "custom_id": line.custom_id,
                            "response": None,
                            "error": {
                                "code": "batch_expired",
                                "message": "This request could not be executed before "
                                "the completion window expired.",
                            },
                        }
                    )
                )
        with self._lock:
            if output:
                data = ("\n".join(output) + "\n").encode()
                batch.output_file_id = self._files.add(
                    f"{batch.id}_output.jsonl", "batch_output", data
                )["id"]
            if failures or batch.config.batch.empty_error_file:
                data = ("\n".join(failures) + "\n").encode() if failures else b""
                batch.error_file_id = self._files.add(
                    f"{batch.id}_error.jsonl", "batch_output", data
                )["id"]
