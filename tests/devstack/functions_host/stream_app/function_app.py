"""Fixture app for HTTP streams (azurefunctions-extensions-http-fastapi)."""

import asyncio
from collections.abc import AsyncIterator

import azure.functions as func
from azurefunctions.extensions.http.fastapi import JSONResponse, Request, StreamingResponse

app = func.FunctionApp(http_auth_level=func.AuthLevel.ANONYMOUS)

release = asyncio.Event()
state = {"finished": False}


@app.route(route="stream", methods=["POST"])
async def stream(req: Request) -> StreamingResponse:
    body = await req.json()

    async def chunks() -> AsyncIterator[bytes]:
        yield f"data: first {body['n']}\n\n".encode()
        await release.wait()
        yield b"data: last\n\n"
        state["finished"] = True

    return StreamingResponse(chunks(), media_type="text/event-stream")


@app.route(route="items/{item_id}", methods=["GET"], auth_level=func.AuthLevel.FUNCTION)
async def item(req: Request) -> JSONResponse:
    return JSONResponse({"id": req.path_params["item_id"], "q": req.query_params.get("q")})
