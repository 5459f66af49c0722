"""The JSON Schema subset strict structured outputs accept, refused as Azure refuses it.

A strict schema (`response_format: {type: json_schema, json_schema: {strict: true}}`, or a
function tool with `strict: true`) must have an object at its root, and every object in it
must be closed (`additionalProperties: false`) with `required` naming every property. The
keywords in Azure's "unsupported type-specific keywords" table are refused wherever they
appear; so are more than 100 properties in all, or objects nested more than five deep.
Anything else is a 400 with OpenAI's `invalid_json_schema` body, which Azure passes on.
"""

from __future__ import annotations

from typing import Any, NoReturn

from . import errors

# https://learn.microsoft.com/azure/ai-foundry/openai/how-to/structured-outputs, the table
# "Unsupported type-specific keywords" (strings, numbers, objects, arrays in that order).
UNSUPPORTED_KEYWORDS = (
    "minLength",
    "maxLength",
    "pattern",
    "format",
    "minimum",
    "maximum",
    "multipleOf",
    "patternProperties",
    "unevaluatedProperties",
    "propertyNames",
    "minProperties",
    "maxProperties",
    "unevaluatedItems",
    "contains",
    "minContains",
    "maxContains",
    "minItems",
    "maxItems",
    "uniqueItems",
)
MAX_PROPERTIES = 100
MAX_NESTING = 5

Path = tuple[str | int, ...]


class _Refused(Exception):
    def __init__(self, path: Path, problem: str) -> None:
        super().__init__(problem)
        self.path = path
        self.problem = problem


class _Checker:
    def __init__(self) -> None:
        self.properties = 0

    def walk(self, node: Any, path: Path, depth: int) -> None:
        if not isinstance(node, dict):
            return
        for keyword in UNSUPPORTED_KEYWORDS:
            if keyword in node:
                raise _Refused(path, f"'{keyword}' is not permitted.")
        kind = node.get("type")
        kinds = kind if isinstance(kind, list) else [kind]
        if "object" in kinds or "properties" in node:
            depth += 1
            if depth > MAX_NESTING + 1:  # the root object and five levels below it
                raise _Refused(path, f"the schema nests objects more than {MAX_NESTING} deep.")
            self.object(node, path, depth)
        if "items" in node:
            self.walk(node["items"], (*path, "items"), depth)
        for key in ("anyOf", "oneOf", "allOf"):
            options = node.get(key)
            if isinstance(options, list):
                for index, option in enumerate(options):
                    self.walk(option, (*path, key, index), depth)
        for key in ("$defs", "definitions"):
            defs = node.get(key)
            if isinstance(defs, dict):
                for name, sub in defs.items():
                    self.walk(sub, (*path, key, name), 0)

    def object(self, node: dict[str, Any], path: Path, depth: int) -> None:
        if node.get("additionalProperties") is not False:
            raise _Refused(
                path, "'additionalProperties' is required to be supplied and to be false."
            )
        properties = node.get("properties") or {}
        required = node.get("required") or []
        need = (
            "'required' is required to be supplied and to be an array including every key "
            "in properties."
        )
        missing = [name for name in properties if name not in required]
        if missing:
            raise _Refused(path, f"{need} Missing '{missing[0]}'.")
        extra = [name for name in required if name not in properties]
        if extra:
            raise _Refused(path, f"{need} Extra required key '{extra[0]}' supplied.")
        self.properties += len(properties)
        if self.properties > MAX_PROPERTIES:
            raise _Refused(path, f"the schema has more than {MAX_PROPERTIES} properties.")
        for name, sub in properties.items():
            self.walk(sub, (*path, "properties", name), depth)


def check_strict(schema: Any, owner: str, param: str) -> None:
    """Raise Azure's 400 if `schema` is outside the strict subset.

    `owner` names the schema in the message (`response_format 'Label'`, `function 'f'`);
    `param` is the error's `param` (`response_format`).
    """
    kind = schema.get("type") if isinstance(schema, dict) else None
    if kind != "object":
        _raise(
            owner,
            param,
            f"schema must be a JSON Schema of 'type: \"object\"', got 'type: \"{kind}\"'.",
        )
    try:
        _Checker().walk(schema, (), 0)
    except _Refused as refused:
        _raise(owner, param, f"In context={refused.path!r}, {refused.problem}")


def _raise(owner: str, param: str, problem: str) -> NoReturn:
    raise errors.AzureError(
        400,
        {
            "error": {
                "message": f"Invalid schema for {owner}: {problem}",
                "type": "invalid_request_error",
                "param": param,
                "code": "invalid_json_schema",
            }
        },
    )
