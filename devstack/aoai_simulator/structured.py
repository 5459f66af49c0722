"""Make a JSON value valid against a JSON schema (the subset structured outputs allow).

Handles objects, arrays, strings (with `format`), numbers, integers, booleans, null, `enum`,
`const`, `anyOf`/`oneOf`/`allOf`, `required`, nesting and `$defs`/`$ref` as pydantic emits
them. Everything is deterministic from the seed and the text.

Enum values follow the user's words, so a test can check that labels follow the text: one
value takes the value sharing the most words with the text (then the larger share of its own
words, then the earlier value; no shared word: the first value); an array of enum values
takes every value sharing a word (at least the first value). Words are lowercase letters and
digits, a plural `s` dropped.

An array of objects with an `id` property answers one object per `[id] text` line of the
user messages, with that id, its other fields filled from that line's text alone: the shape
of a classification request carrying several items.
"""

from __future__ import annotations

import random
import re
from typing import Any

_MAX_DEPTH = 8
_ITEM_LINE = re.compile(r"^[ \t]*\[([^\]\n]+)\][ \t]*(.*)$", re.MULTILINE)


def word_set(text: str) -> set[str]:
    """The words of `text` as enum matching compares them."""
    found = set()
    for token in re.findall(r"[a-z0-9]+", text.lower()):
        if len(token) > 3 and token.endswith("s") and not token.endswith("ss"):
            token = token[:-1]
        found.add(token)
    return found


def item_lines(text: str) -> list[tuple[str, str]]:
    """The `[id] text` lines of `text`, as (id, text) pairs in order."""
    return [(m.group(1).strip(), m.group(2)) for m in _ITEM_LINE.finditer(text)]


class _Filler:
    def __init__(self, root: dict[str, Any], context: str, seed: int) -> None:
        self.root = root
        self.context = context
        self.words = word_set(context)
        self.rng = random.Random(seed)

    def about(self, context: str) -> _Filler:
        """A filler for the same schema whose choices follow `context` instead."""
        return _Filler(self.root, context, self.rng.getrandbits(64))

    def resolve(self, schema: dict[str, Any]) -> dict[str, Any]:
        ref = schema.get("$ref")
        if not isinstance(ref, str) or not ref.startswith("#/"):
            return schema
        node: Any = self.root
        for part in ref[2:].split("/"):
            node = node[part.replace("~1", "/").replace("~0", "~")]
        merged = {**node, **{k: v for k, v in schema.items() if k != "$ref"}}
        return self.resolve(merged)

    def overlap(self, option: Any) -> tuple[int, float]:
        """Words `option` shares with the text, and the share of its own words that is."""
        own = word_set(str(option))
        shared = len(own & self.words)
        return shared, shared / len(own) if own else 0.0

    def pick(self, options: list[Any]) -> Any:
        scores = [self.overlap(option) for option in options]
        best = max(range(len(options)), key=lambda i: (*scores[i], -i))
        return options[best] if scores[best][0] else options[0]

    def matching(self, options: list[Any]) -> list[Any]:
        found = [option for option in options if self.overlap(option)[0]]
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
        per_line = self._per_line(items, depth)
        if per_line is not None:
            return per_line
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

    def _per_line(self, items: dict[str, Any], depth: int) -> list[Any] | None:
        """One object per `[id] text` line, if the items are objects with an `id`."""
        properties = items.get("properties")
        if not isinstance(properties, dict) or "id" not in properties:
            return None
        lines = item_lines(self.context)
        if not lines:
            return None
        answers = []
        for item_id, text in lines:
            filler = self.about(text)
            answer = {}
            for key, sub in properties.items():
                if key == "id":
                    answer[key] = self._id(item_id, self.resolve(sub))
                else:
                    answer[key] = filler.fill(sub, depth + 2, key)
            answers.append(answer)
        return answers

    @staticmethod
    def _id(item_id: str, schema: dict[str, Any]) -> Any:
        kind = schema.get("type")
        if kind in ("integer", "number") and item_id.lstrip("-").isdigit():
            return int(item_id)
        return item_id

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
