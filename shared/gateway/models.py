"""The gateway's request bodies: permissive models of what the openai SDK, LangChain and
LlamaIndex send to `/chat/completions`, `/embeddings` and `/responses`, and the
`x-usage-tags` header.

Unlike `/api/chat` these bodies are not ours: the service defines them and grows them. The
models check only what the app itself relies on (the model, `stream`, the caller identifiers,
that there is something to send) and keep every other field as given (`extra="allow"`), so
tools, `response_format`, content parts, `n`, `seed`, `logprobs` and fields added next year all
reach the service unchanged. The service stays the judge of the rest: its 400 passes through.
Two exceptions (docs/security.md): an Azure extension that makes the account call out on the
caller's word (`data_sources`) is refused unless GATEWAY_ALLOWED_EXTENSIONS names it, and the
fields that identify the caller go upstream as their HMAC.
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

from shared.core.errors import InvalidRequest
from shared.core.models import Tags

_TAGS: TypeAdapter[dict[str, str]] = TypeAdapter(Tags)

# Fields that name the caller (an e-mail, a tenant): Azure gets their HMAC, a stable id for
# abuse monitoring and prompt-cache routing that is never the caller's own.
IDENTIFIER_FIELDS = ("user", "safety_identifier", "prompt_cache_key")
# Azure extensions with which the account calls endpoints the body names, with the account's
# own identity (On Your Data: a search index, a database): each name, with the spellings the
# service has taken. Forwarded only when GATEWAY_ALLOWED_EXTENSIONS lists the name.
EXTENSIONS: dict[str, tuple[str, ...]] = {"data_sources": ("data_sources", "dataSources")}


class Passthrough(BaseModel):
    """A body the service defines: unknown fields are kept and forwarded."""

    model_config = ConfigDict(extra="allow")

    model: str | None = Field(default=None, min_length=1, max_length=128)
    user: str | None = Field(default=None, max_length=256)
    safety_identifier: str | None = Field(default=None, max_length=256)
    prompt_cache_key: str | None = Field(default=None, max_length=256)

    def upstream(
        self,
        deployment: str,
        hashed: Callable[[str | None], str | None],
        allowed_extensions: Collection[str] = (),
    ) -> dict[str, Any]:
        """The body to forward: as given, with the deployment as its model and each caller
        identifier as `hashed` makes it. Raises InvalidRequest (400, nothing sent) for an
        extension `allowed_extensions` does not name."""
        body = self.model_dump(exclude_unset=True)
        for extension, spellings in EXTENSIONS.items():
            named = next((field for field in spellings if field in body), None)
            if named is not None and extension not in allowed_extensions:
                raise InvalidRequest(
                    f"{named} is not forwarded by this gateway: it would have the Azure OpenAI "
                    "account call the endpoints it names (GATEWAY_ALLOWED_EXTENSIONS)",
                    details={"param": named},
                )
        body["model"] = deployment
        for field in IDENTIFIER_FIELDS:
            if body.get(field) is not None:
                body[field] = hashed(body[field])
        return body


class StreamOptions(BaseModel):
    model_config = ConfigDict(extra="allow")

    include_usage: bool | None = None


class ChatCompletionsBody(Passthrough):
    """`POST .../chat/completions`: the service's own body."""

    messages: list[dict[str, Any]] = Field(min_length=1)
    stream: bool | None = None
    stream_options: StreamOptions | None = None

    def wants_usage_chunk(self) -> bool:
        return bool(self.stream_options and self.stream_options.include_usage)


class EmbeddingsBody(Passthrough):
    """`POST .../embeddings`: the service's own body."""

    input: str | list[str] | list[int] | list[list[int]]


class ResponsesBody(Passthrough):
    """`POST .../responses`: the service's own body. `input` and `instructions` are read for
    the booking's estimate and a filter event; `previous_response_id` for the backend it
    lives on (shared/gateway/affinity.py)."""

    input: str | list[Any] | None = None
    instructions: str | None = None
    stream: bool | None = None
    background: bool | None = None
    store: bool | None = None
    previous_response_id: str | None = Field(default=None, min_length=1, max_length=256)

    def prompt_text(self) -> str:
        """The text of the instructions and the input items (message content, text parts,
        tool outputs), for the estimate and a filter event."""
        texts = [self.instructions] if self.instructions else []
        items = [self.input] if isinstance(self.input, str) else self.input or []
        for item in items:
            if isinstance(item, str):
                texts.append(item)
                continue
            if not isinstance(item, dict):
                continue
            content = item.get("content", item.get("output"))
            if isinstance(content, str):
                texts.append(content)
            elif isinstance(content, list):
                texts.extend(
                    str(part["text"])
                    for part in content
                    if isinstance(part, dict) and isinstance(part.get("text"), str)
                )
        return "\n".join(texts)


class ServiceErrorDetail(BaseModel):
    model_config = ConfigDict(extra="allow")

    code: str | None = None
    message: str


class ServiceErrorResponse(BaseModel):
    """An error answer of these routes: the service's own, passed through in Azure's shape
    (`code`, `message`, `param`, `type`, `innererror`...), or the app's (`code`, `message`,
    `details`), which fits the same shape."""

    model_config = ConfigDict(extra="allow")

    error: ServiceErrorDetail


def parse_tags(header: str | None) -> dict[str, str]:
    """`x-usage-tags: team=search,feature=qa` -> `{"team": "search", "feature": "qa"}`, with
    the limits of `/api/chat`'s `tags` (a bad header is a 400, not silently dropped)."""
    if header is None or not header.strip():
        return {}
    pairs: dict[str, str] = {}
    for part in header.split(","):
        key, sep, value = part.partition("=")
        if not sep:
            raise InvalidRequest("x-usage-tags must be key=value pairs separated by commas")
        pairs[key.strip()] = value.strip()
    try:
        return _TAGS.validate_python(pairs)
    except ValidationError:
        raise InvalidRequest(
            "x-usage-tags: at most 20 tags; keys of letters, digits and _.:- (up to 64), "
            "values up to 256 characters"
        ) from None
