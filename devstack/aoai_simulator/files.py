"""The Files API routes (`/openai/files`): upload (multipart), list, get, content, delete.

Files live in a `FileStore` (file_store.py); these handlers only speak HTTP.
"""

from __future__ import annotations

from starlette.datastructures import UploadFile
from starlette.responses import Response

from . import errors
from .gateway import Call
from .paging import page, query_limit

_PURPOSES = {"batch", "fine-tune", "assistants", "user_data", "vision"}


async def upload(call: Call) -> Response:
    async with call.request.form() as form:
        purpose = form.get("purpose")
        upload_file = form.get("file")
        if not isinstance(purpose, str) or purpose not in _PURPOSES:
            raise errors.invalid_request(
                f"Invalid value for purpose: {purpose!r}. Supported values are "
                f"{sorted(_PURPOSES)}.",
                "purpose",
            )
        if not isinstance(upload_file, UploadFile):
            raise errors.invalid_request("'file' is a required property", "file")
        data = await upload_file.read()
        filename = upload_file.filename or "upload"
    if purpose == "batch" and not filename.endswith(".jsonl"):
        raise errors.error(
            400, "invalidPayload", "Invalid file format for Batch API. Must be .jsonl"
        )
    if not data:
        raise errors.error(400, "invalidPayload", "The file is empty.")
    meta = call.state.files.add(filename, purpose, data)
    call.record(200)
    return call.json(meta)


async def list_files(call: Call) -> Response:
    items = call.state.files.all()
    purpose = call.request.query_params.get("purpose")
    if purpose:
        items = [i for i in items if i["purpose"] == purpose]
    if call.request.query_params.get("order", "desc") == "desc":
        items.reverse()
    limit = query_limit(call.request, 10000, 10000)
    result = page(items, call.request.query_params.get("after"), limit)
    call.record(200)
    return call.json(result)


async def retrieve(call: Call) -> Response:
    meta = call.state.files.get(call.request.path_params["file_id"])
    call.record(200)
    return call.json(meta)


async def content(call: Call) -> Response:
    data = call.state.files.content(call.request.path_params["file_id"])
    call.record(200)
    return Response(data, headers=call.headers(), media_type="application/octet-stream")


async def delete(call: Call) -> Response:
    file_id = call.request.path_params["file_id"]
    call.state.files.delete(file_id)
    call.record(200)
    return call.json({"id": file_id, "object": "file", "deleted": True})
