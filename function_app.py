"""The trigger table. Each function is wiring only: the work lives in `shared/`.

HTTP functions use the HTTP streaming extension's FastAPI types (`Request` in, `Response` or
`StreamingResponse` out): with the extension enabled the worker serves every HTTP function
that way, and it is what lets `/api/chat` stream on Azure (`PYTHON_ENABLE_INIT_INDEXING=1`).
"""

import azure.functions as func
from azurefunctions.extensions.http.fastapi import Request, Response

from shared import api
from shared.bookkeeping import OutboxMessage
from shared.http import guarded
from shared.runtime import get_runtime
from shared.settings import get_settings

# Read every setting now: a missing or invalid one stops start-up with its name.
get_settings()

app = func.FunctionApp(http_auth_level=func.AuthLevel.FUNCTION)


@app.route(route="chat", methods=["POST"])
async def chat(req: Request) -> Response:
    return await guarded(req, lambda rid: api.chat(get_runtime(), req, rid))


@app.route(route="usage", methods=["GET"])
async def usage(req: Request) -> Response:
    return await guarded(req, lambda rid: api.usage(get_runtime(), req, rid))


@app.route(route="health", methods=["GET"], auth_level=func.AuthLevel.ANONYMOUS)
async def health(req: Request) -> Response:
    return await guarded(req, lambda rid: api.health(get_runtime(), req, rid))


@app.route(route="openapi.json", methods=["GET"], auth_level=func.AuthLevel.ANONYMOUS)
async def openapi(req: Request) -> Response:
    return await guarded(req, lambda rid: api.openapi(get_runtime(), req, rid))


@app.queue_trigger(arg_name="msg", queue_name="%OUTBOX_QUEUE%", connection="AzureWebJobsStorage")
async def drain_outbox(msg: func.QueueMessage) -> None:
    await get_runtime().books.drain(OutboxMessage.model_validate_json(msg.get_body()))
