"""Make a JSON value valid against a JSON schema (the subset structured outputs allow).

Handles objects, arrays, strings (with `format`), numbers, integers, booleans, null, `enum`,
`const`, `anyOf`/`oneOf`/`allOf`, `required`, nesting and `$defs`/`$ref` as pydantic emits
them. Enum values are picked by the user's words: the first value whose words all appear in
the text wins, else the first value. Everything else is deterministic from the seed.
"""

from __future__ import annotations

import random
import re
from typing import Any

_MAX_DEPTH = 8


class _Filler:
    def __init__(self, root: dict[str, Any], context: str, seed: int) -> None:
        self.root = root
        self.words = set(re.findall(r"[a-z0-9]+", context.lower()))
        self.rng = random.Random(seed)

    def resolve(self, schema: dict[str, Any]) -> dict[str, Any]:
        ref = schema.get("$ref")
        if not isinstance(ref, str) or not ref.startswith("#/"):
            return schema
        node: Any = self.root
        for part in ref[2:].split("/"):
            node = node[part.replace("~1", "/").replace("~0", "~")]
        merged = {**node, **{k: v for k, v in schema.items() if k != "$ref"}}
        return self.resolve(merged)

    def pick(self, options: list[Any]) -> Any:
        for option in options:
            tokens = re.findall(r"[a-z0-9]+", str(option).lower())
            if tokens and all(token in self.words for token in tokens):
                return option
        return options[0]

    def matching(self, options: list[Any]) -> list[Any]:
        found = []
        for option in options:
            tokens = re.findall(r"[a-z0-9]+", str(option).lower())
            if tokens and all(token in self.words for token in tokens):
                found.append(option)
        return found or [options[0]]

    def fill(self, schema: Any, depth: int = 0, name: str = "value") -> Any:
        if not isinstance(schema, dict):
            return None
        schema = self.resolve(schema)
        if "const" in schema:
            return schema["const"]
        if isinstance(schema.get("enum"), list) and schema["enum"]:
            return self.pick(schema["enum"])
        for key in ("anyOf", "oneOf"):
            options = schema.get(key)
            if isinstance(options, list) and options:
                non_null = [o for o in options if self.resolve(o).get("type") != "null"]
                return self.fill((non_null or options)[0], depth, name)
        if isinstance(schema.get("allOf"), list):
            merged: dict[str, Any] = {}
            for part in schema["allOf"]:
                merged.update(self.resolve(part))
            return self.fill(merged, depth, name)
        kind = schema.get("type")
        if isinstance(kind, list):
            kind = next((k for k in kind if k != "null"), "null")
        if kind is None:
            kind = "object" if "properties" in schema else "string"
        return self._typed(str(kind), schema, depth, name)

    def _typed(self, kind: str, schema: dict[str, Any], depth: int, name: str) -> Any:
        if kind == "object":
            return self._object(schema, depth)
        if kind == "array":
            return self._array(schema, depth, name)
        if kind == "string":
            return self._string(schema, name)
        if kind == "integer":
            low = int(schema.get("minimum", 0))
            high = int(schema.get("maximum", max(low, 0) + 10))
            return self.rng.randint(low, max(low, high))
        if kind == "number":
            floor = float(schema.get("minimum", 0.0))
            ceiling = float(schema.get("maximum", floor + 1.0))
            return round(self.rng.uniform(floor, max(floor, ceiling)), 3)
        if kind == "boolean":
            return self.rng.random() < 0.5
        return None

    def _object(self, schema: dict[str, Any], depth: int) -> dict[str, Any]:
        properties = schema.get("properties") or {}
        if depth >= _MAX_DEPTH:
            required = set(schema.get("required") or [])
            properties = {k: v for k, v in properties.items() if k in required}
        return {key: self.fill(sub, depth + 1, key) for key, sub in properties.items()}

    def _array(self, schema: dict[str, Any], depth: int, name: str) -> list[Any]:
        items = self.resolve(schema.get("items") or {})
        low = int(schema.get("minItems", 1 if depth < _MAX_DEPTH else 0))
        high = int(schema.get("maxItems", max(low, 2)))
        enum = items.get("enum")
        if isinstance(enum, list) and enum:
            chosen = self.matching(enum)
            while len(chosen) < low:
                chosen.append(enum[len(chosen) % len(enum)])
            return chosen[: max(high, 1)]
        count = max(low, min(high, 2))
        return [self.fill(items, depth + 1, name) for _ in range(count)]

    def _string(self, schema: dict[str, Any], name: str) -> str:
        fmt = schema.get("format")
        if fmt == "date-time":
            return "2024-10-21T12:00:00Z"
        if fmt == "date":
            return "2024-10-21"
        if fmt == "time":
            return "12:00:00"
        if fmt == "email":
            return "user@example.com"
        if fmt == "uuid":
            return f"00000000-0000-4000-8000-{self.rng.getrandbits(48):012x}"
        if fmt in ("uri", "url"):
            return "https://example.com/item"
        text = f"{name} {self.rng.getrandbits(24):06x}"
        min_len = int(schema.get("minLength", 0))
        max_len = schema.get("maxLength")
        text = text.ljust(min_len, "x")
        return text[: int(max_len)] if max_len is not None else text


def fill_schema(schema: dict[str, Any], context: str, seed: int) -> Any:
    """A value valid against `schema`; enum choices follow the words in `context`."""
    return _Filler(schema, context, seed).fill(schema)
