"""The app factory: routes, state and error handling in one Starlette app."""

from __future__ import annotations

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from . import batches, control, errors, files, inference, responses
from .batch_store import BatchStore
from .config import SimulatorConfig
from .file_store import FileStore
from .gateway import endpoint
from .prompt_cache import PromptCache
from .state import SimState
from .stats import Stats


async def _not_found(request: Request, exc: Exception) -> Response:
    return errors.to_response(errors.resource_not_found(), "")


def _v1_routes() -> list[Route]:
    """Azure's v1 shape of chat and embeddings: no api-version, the deployment as `model`."""
    return [
        Route(
            "/openai/v1/chat/completions",
            endpoint("chat", inference.v1_chat_completions, v1=True),
            methods=["POST"],
        ),
        Route(
            "/openai/v1/embeddings",
            endpoint("embeddings", inference.v1_embeddings, v1=True),
            methods=["POST"],
        ),
    ]


def _responses_routes(base: str, *, v1: bool) -> list[Route]:
    """The Responses API under `base`: create, and retrieve/delete/input items/cancel by id."""
    one = f"{base}/{{response_id}}"
    return [
        Route(base, endpoint("responses", responses.create, v1=v1), methods=["POST"]),
        Route(one, endpoint("responses", responses.retrieve, v1=v1), methods=["GET"]),
        Route(one, endpoint("responses", responses.delete, v1=v1), methods=["DELETE"]),
        Route(
            f"{one}/input_items",
            endpoint("responses", responses.list_input_items, v1=v1),
            methods=["GET"],
        ),
        Route(f"{one}/cancel", endpoint("responses", responses.cancel, v1=v1), methods=["POST"]),
    ]


def create_app(config: SimulatorConfig | None = None) -> Starlette:
    """A Starlette app simulating one Azure OpenAI resource with `config`."""
    config = config or SimulatorConfig()
    d = "/openai/deployments/{deployment}"
    routes = [
        Route(
            f"{d}/chat/completions", endpoint("chat", inference.chat_completions), methods=["POST"]
        ),
        Route(
            f"{d}/embeddings", endpoint("embeddings", inference.create_embeddings), methods=["POST"]
        ),
        *_v1_routes(),
        *_responses_routes("/openai/v1/responses", v1=True),
        *_responses_routes("/openai/responses", v1=False),
        Route("/openai/files", endpoint("files", files.upload), methods=["POST"]),
        Route("/openai/files", endpoint("files", files.list_files), methods=["GET"]),
        Route("/openai/files/{file_id}", endpoint("files", files.retrieve), methods=["GET"]),
        Route("/openai/files/{file_id}", endpoint("files", files.delete), methods=["DELETE"]),
        Route("/openai/files/{file_id}/content", endpoint("files", files.content), methods=["GET"]),
        Route("/openai/batches", endpoint("batches", batches.create_batch), methods=["POST"]),
        Route("/openai/batches", endpoint("batches", batches.list_batches), methods=["GET"]),
        Route(
            "/openai/batches/{batch_id}",
            endpoint("batches", batches.retrieve_batch),
            methods=["GET"],
        ),
        Route(
            "/openai/batches/{batch_id}/cancel",
            endpoint("batches", batches.cancel_batch),
            methods=["POST"],
        ),
        Route("/sim/config", control.get_config, methods=["GET"]),
        Route("/sim/config", control.patch_config, methods=["PATCH"]),
        Route("/sim/stats", control.get_stats, methods=["GET"]),
        Route("/sim/requests/{deployment}/last", control.last_request, methods=["GET"]),
        Route("/sim/inputs", control.get_inputs, methods=["GET"]),
        Route("/sim/inputs", control.count_inputs, methods=["POST"]),
        Route("/sim/reset", control.reset, methods=["POST"]),
    ]
    app = Starlette(routes=routes, exception_handlers={404: _not_found, 405: _not_found})
    stats = Stats()
    file_store = FileStore()
    prompt_cache = PromptCache()
    batch_store = BatchStore(file_store, stats, prompt_cache)
    app.state.sim = SimState(
        config=config,
        files=file_store,
        batches=batch_store,
        prompt_cache=prompt_cache,
        stats=stats,
    )
    app.state.initial_config = config
    return app
