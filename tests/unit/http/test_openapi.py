"""The OpenAPI document: complete, consistent, generated from the models."""

from __future__ import annotations

import json
from typing import Any

from shared.http.openapi import openapi_document
from tests.support.routes import GATEWAY_ROUTES, ROUTES, TEAM_ROUTES


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


ANONYMOUS = {"/health", "/openapi.json"}
GATEWAY = GATEWAY_ROUTES
# The host's routes (function key), and the platform's (master key); the rest is the data
# plane, on a team's key.
FUNCTION_LEVEL = {"/health/details"}
MASTER_LEVEL = {*TEAM_ROUTES, "/usage/all"}
TEAM_KEY = [{"teamKey": []}, {"teamBearer": []}]


def test_paths_and_auth() -> None:
    doc = openapi_document()
    assert doc["openapi"].startswith("3.")
    assert set(doc["paths"]) == ROUTES
    for path, operations in doc["paths"].items():
        for operation in operations.values():
            expected: list[dict[str, list[str]]] = TEAM_KEY
            if path in ANONYMOUS:
                expected = []
            elif path in FUNCTION_LEVEL:
                expected = [{"functionKey": []}]
            elif path in MASTER_LEVEL:
                expected = [{"masterKey": []}]
            assert operation["security"] == expected, path
            if expected == TEAM_KEY:
                assert "401" in operation["responses"], path


def test_gateway_bodies_are_permissive_and_errors_azure_shaped() -> None:
    """The service defines these bodies: a field the app does not know is forwarded."""
    doc = openapi_document()
    schemas = doc["components"]["schemas"]
    assert schemas["ChatCompletionsBody"]["additionalProperties"] is True
    assert schemas["EmbeddingsBody"]["additionalProperties"] is True
    assert schemas["ResponsesBody"]["additionalProperties"] is True
    assert schemas["ServiceErrorDetail"]["additionalProperties"] is True
    for path in GATEWAY:
        for method, operation in doc["paths"][path].items():
            if method == "post" and "{response_id}" not in path:
                body = operation["requestBody"]["content"]["application/json"]["schema"]
                assert body["$ref"].endswith("Body"), path
            error = operation["responses"]["429"]["content"]["application/json"]["schema"]
            assert error == {"$ref": "#/components/schemas/ServiceErrorResponse"}, path


def test_every_shape_of_the_responses_api_has_its_stored_response_routes() -> None:
    paths = openapi_document()["paths"]
    for prefix in ("/openai/v1", "/openai", "/v1"):
        assert set(paths[f"{prefix}/responses/{{response_id}}"]) == {"get", "delete"}
        assert set(paths[f"{prefix}/responses/{{response_id}}/input_items"]) == {"get"}
        assert set(paths[f"{prefix}/responses/{{response_id}}/cancel"]) == {"post"}
        create = paths[f"{prefix}/responses"]["post"]
        assert "text/event-stream" in create["responses"]["200"]["content"]
    # Only Azure's preview shape takes an api-version.
    names = [p["name"] for p in paths["/openai/responses"]["post"]["parameters"]]
    assert "api-version" in names
    names = [p["name"] for p in paths["/openai/v1/responses"]["post"]["parameters"]]
    assert "api-version" not in names


def test_job_bodies_are_the_validation_models() -> None:
    doc = openapi_document()
    assert doc["components"]["schemas"]["EmbeddingJob"]["additionalProperties"] is False
    submit = doc["paths"]["/jobs/classifications"]["post"]
    schema = submit["requestBody"]["content"]["application/json"]["schema"]
    assert schema == {"$ref": "#/components/schemas/ClassificationJob"}
    assert set(submit["responses"]) >= {"202", "400", "413"}


def test_the_key_is_offered_as_a_header_never_in_the_url() -> None:
    """Finding: `?code=` puts keys into URLs and logs; the document offers the header only."""
    schemes = openapi_document()["components"]["securitySchemes"]
    assert set(schemes) == {"functionKey", "masterKey", "teamKey", "teamBearer"}
    for name in ("functionKey", "masterKey"):
        scheme = schemes[name]
        assert (scheme["type"], scheme["in"], scheme["name"]) == (
            "apiKey",
            "header",
            "x-functions-key",
        )
    # A team's key goes where the openai SDKs put theirs: `api-key`, or a bearer token.
    assert (schemes["teamKey"]["in"], schemes["teamKey"]["name"]) == ("header", "api-key")
    assert (schemes["teamBearer"]["type"], schemes["teamBearer"]["scheme"]) == ("http", "bearer")
    assert '"in": "query", "name": "code"' not in json.dumps(openapi_document())


def test_chat_schema_is_the_validation_model() -> None:
    schema = openapi_document()["components"]["schemas"]["ChatRequest"]
    assert schema["required"] == ["messages"]
    assert schema["additionalProperties"] is False
    role = openapi_document()["components"]["schemas"]["ChatMessage"]["properties"]["role"]
    assert set(role["enum"]) == {"system", "developer", "user", "assistant"}


def test_document_is_json_serialisable() -> None:
    assert json.loads(json.dumps(openapi_document())) == openapi_document()


def test_the_team_registry_is_documented_with_its_bodies_and_statuses() -> None:
    doc = openapi_document()
    teams = doc["paths"]["/teams"]
    create = teams["post"]
    schema = create["requestBody"]["content"]["application/json"]["schema"]
    assert schema == {"$ref": "#/components/schemas/NewTeam"}
    assert set(create["responses"]) >= {"201", "400", "409"}
    assert set(doc["paths"]["/teams/{team_id}"]) == {"get", "patch"}
    assert set(doc["paths"]["/teams/{team_id}/keys"]["post"]["responses"]) >= {"201", "409"}
    assert "204" in doc["paths"]["/teams/{team_id}/keys/{key_id}"]["delete"]["responses"]
    schemas = doc["components"]["schemas"]
    assert schemas["NewTeam"]["additionalProperties"] is False
    assert "hash" not in json.dumps(schemas["TeamView"])
