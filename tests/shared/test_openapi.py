"""The OpenAPI document: complete, consistent, generated from the models."""

from __future__ import annotations

import json
from typing import Any

from shared.openapi import openapi_document


def refs(node: Any) -> list[str]:
    if isinstance(node, dict):
        found = [node["$ref"]] if isinstance(node.get("$ref"), str) else []
        return found + [r for v in node.values() for r in refs(v)]
    if isinstance(node, list):
        return [r for v in node for r in refs(v)]
    return []


def test_every_reference_resolves() -> None:
    doc = openapi_document()
    schemas = doc["components"]["schemas"]
    missing = [r for r in refs(doc) if r.split("/")[-1] not in schemas]
    assert missing == []


def test_paths_and_auth() -> None:
    doc = openapi_document()
    assert doc["openapi"].startswith("3.")
    assert set(doc["paths"]) == {"/chat", "/usage", "/health", "/health/details", "/openapi.json"}
    assert doc["paths"]["/health"]["get"]["security"] == []
    assert doc["paths"]["/chat"]["post"]["security"] == [{"functionKey": []}]
    assert doc["paths"]["/health/details"]["get"]["security"] == [{"functionKey": []}]


def test_the_key_is_offered_as_a_header_never_in_the_url() -> None:
    """Finding: `?code=` puts keys into URLs and logs; the document offers the header only."""
    schemes = openapi_document()["components"]["securitySchemes"]
    assert schemes == {"functionKey": {"type": "apiKey", "in": "header", "name": "x-functions-key"}}
    assert '"in": "query", "name": "code"' not in json.dumps(openapi_document())


def test_chat_schema_is_the_validation_model() -> None:
    schema = openapi_document()["components"]["schemas"]["ChatRequest"]
    assert schema["required"] == ["messages"]
    assert schema["additionalProperties"] is False
    role = openapi_document()["components"]["schemas"]["ChatMessage"]["properties"]["role"]
    assert set(role["enum"]) == {"system", "developer", "user", "assistant"}


def test_document_is_json_serialisable() -> None:
    assert json.loads(json.dumps(openapi_document())) == openapi_document()
