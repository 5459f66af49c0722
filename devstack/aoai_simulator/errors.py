"""Azure OpenAI error bodies, as the real service writes them.

Handlers raise `AzureError`; the app turns it into JSON at the boundary. The bodies are
copied in shape from responses of the real service (api-version 2024-10-21).
"""

from __future__ import annotations

import json
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

_QUOTA_URL = "https://aka.ms/oai/quotaincrease"
_FILTER_URL = "https://go.microsoft.com/fwlink/?linkid=2198766"


class AzureError(Exception):
    """An error answer: HTTP status, the JSON body and extra headers."""

    def __init__(self, status: int, body: dict[str, Any], headers: dict[str, str] | None = None):
        super().__init__(json.dumps(body))
        self.status = status
        self.body = body
        self.headers = headers or {}


def error(status: int, code: str | None, message: str, **extra: Any) -> AzureError:
    """`{"error": {"code", "message", ...}}` - the common Azure shape."""
    return AzureError(status, {"error": {"code": code, "message": message, **extra}})


def invalid_request(message: str, param: str | None = None) -> AzureError:
    """A 400 from request validation (OpenAI-style body, as Azure passes it through)."""
    return AzureError(
        400,
        {
            "error": {
                "message": message,
                "type": "invalid_request_error",
                "param": param,
                "code": None,
            }
        },
    )


def unauthorized(bearer: bool, missing: bool = False) -> AzureError:
    if missing:
        message = (
            "Access denied due to missing subscription key. Make sure to include subscription "
            "key when making requests to an API."
        )
    elif bearer:
        message = (
            "Unauthorized. Access token is missing, invalid, audience is incorrect "
            "(https://cognitiveservices.azure.com), or have expired."
        )
    else:
        message = (
            "Access denied due to invalid subscription key or wrong API endpoint. Make sure to "
            "provide a valid key for an active subscription and use a correct regional API "
            "endpoint for your resource."
        )
    return error(401, "401", message)


def resource_not_found() -> AzureError:
    return error(404, "404", "Resource not found")


def deployment_not_found() -> AzureError:
    return error(
        404,
        "DeploymentNotFound",
        "The API deployment for this resource does not exist. If you created the deployment "
        "within the last 5 minutes, please wait a moment and try again.",
    )


def operation_not_supported(operation: str, model: str) -> AzureError:
    return error(
        400,
        "OperationNotSupported",
        f"The {operation} operation does not work with the specified model, {model}. "
        "Please choose different model and try again. You can learn more about which models "
        "can be used with each operation here: https://go.microsoft.com/fwlink/?linkid=2197993.",
    )


def rate_limited(operation: str, api_version: str, retry_after_ms: int, tokens: bool) -> AzureError:
    seconds = max(1, -(-retry_after_ms // 1000))
    kind = "token rate limit" if tokens else "call rate limit"
    message = (
        f"Requests to the {operation} Operation under Azure OpenAI API version {api_version} "
        f"have exceeded {kind} of your current OpenAI S0 pricing tier. Please retry after "
        f"{seconds} second{'s' if seconds != 1 else ''}. Please go here: {_QUOTA_URL} if you "
        "would like to further increase the default rate limit."
    )
    return AzureError(
        429,
        {"error": {"code": "429", "message": message}},
        {"retry-after": str(seconds), "retry-after-ms": str(retry_after_ms)},
    )


def prompt_filtered(content_filter_result: dict[str, Any]) -> AzureError:
    return AzureError(
        400,
        {
            "error": {
                "message": "The response was filtered due to the prompt triggering Azure "
                "OpenAI's content management policy. Please modify your prompt and retry. To "
                "learn more about our content filtering policies please read our "
                f"documentation: {_FILTER_URL}",
                "type": None,
                "param": "prompt",
                "code": "content_filter",
                "status": 400,
                "innererror": {
                    "code": "ResponsibleAIPolicyViolation",
                    "content_filter_result": content_filter_result,
                },
            }
        },
    )


def responses_prompt_filtered(content_filter_results: dict[str, Any]) -> AzureError:
    """A filtered prompt on the Responses API: chat's message, but the results sit in a
    top-level `content_filters` list (no `innererror`), as Microsoft's Chat Completions to
    Responses migration guide shows the body."""
    chat = prompt_filtered(content_filter_results).body["error"]
    return AzureError(
        400,
        {
            "error": {
                "message": chat["message"],
                "type": "invalid_request_error",
                "param": "prompt",
                "code": "content_filter",
                "content_filters": [
                    {
                        "blocked": True,
                        "source_type": "prompt",
                        "content_filter_results": content_filter_results,
                    }
                ],
            }
        },
    )


def server_error(status: int) -> AzureError:
    if status == 503:
        return error(
            503, "ServiceUnavailable", "The service is temporarily unable to process your request."
        )
    return error(
        status,
        "InternalServerError",
        "The server had an error processing your request. Sorry about that! You can retry your "
        "request, or contact us through an Azure support request if the error persists.",
    )


def to_response(exc: AzureError, request_id: str) -> Response:
    headers = {"apim-request-id": request_id, "x-request-id": request_id, **exc.headers}
    return Response(
        json.dumps(exc.body), status_code=exc.status, headers=headers, media_type="application/json"
    )


async def handle_azure_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, AzureError)
    return to_response(exc, getattr(request.state, "request_id", "") or "")
