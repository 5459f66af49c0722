"""A small read model over `infra/` parsed with pycep-parser: files, resources, module calls.

pycep turns Bicep into JSON where functions and operators are nested dicts; `render` turns an
expression back into compact Bicep-like text (`guid(storage.id, appPrincipalId, roles.x)`) so
checks can compare expressions as strings. Note that pycep does not tell a bare identifier
from a string literal: both are plain strings. `Infra.resolve` looks names up in params/vars.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pycep import BicepParser

INFRA_DIR = Path(__file__).resolve().parents[2] / "infra"
MAIN = "main.bicep"


@functools.cache
def _parser() -> BicepParser:
    return BicepParser()


def render(expr: Any) -> str:
    """Bicep-like text of a pycep expression (stable enough to compare, not to compile)."""
    if expr is None:
        return "null"
    if isinstance(expr, bool):
        return "true" if expr else "false"
    if isinstance(expr, int | str):
        return str(expr)
    if isinstance(expr, list):
        return "[" + ", ".join(render(item) for item in expr) + "]"
    if isinstance(expr, dict) and set(expr) == {"function"}:
        function = expr["function"]
        args = ", ".join(
            render(v) for v in function.get("parameters", {}).values() if v is not None
        )
        text = f"{function['type']}({args})"
        if function.get("property_name"):
            text += "." + function["property_name"]
        return text
    if isinstance(expr, dict) and set(expr) == {"operator"}:
        operator = expr["operator"]
        kind, operands = operator["type"], operator["operands"]
        values = [render(v) for v in operands.values()]
        if kind == "property_accessor":
            return f"{values[0]}.{values[1]}"
        if kind == "index_accessor":
            return f"{values[0]}[{values[1]}]"
        if kind == "conditional":
            return f"{values[0]} ? {values[1]} : {values[2]}"
        if kind == "not":
            return f"!{values[0]}"
        return f"{kind}({', '.join(values)})"
    if isinstance(expr, dict):
        return "{" + ", ".join(f"{unquote(k)}: {render(v)}" for k, v in expr.items()) + "}"
    raise TypeError(f"unexpected pycep node {expr!r}")


def unquote(key: str) -> str:
    """Object keys keep their quotes in pycep output when quoted in Bicep."""
    return key[1:-1] if len(key) >= 2 and key[0] == key[-1] == "'" else key


def unquoted_keys(obj: dict[str, Any]) -> dict[str, Any]:
    return {unquote(k): v for k, v in obj.items()}


@dataclass(frozen=True)
class Resource:
    file: str
    name: str
    type: str
    api_version: str
    existing: bool
    body: dict[str, Any]
    condition: Any
    loop: dict[str, Any] | None

    @property
    def properties(self) -> dict[str, Any]:
        value = self.body.get("properties", {})
        return value if isinstance(value, dict) else {}

    def __str__(self) -> str:
        return f"{self.file}:{self.name} ({self.type})"


@dataclass(frozen=True)
class ModuleCall:
    name: str
    path: str
    params: dict[str, Any]
    condition: Any


def _unwrap(config: dict[str, Any]) -> tuple[dict[str, Any], Any, dict[str, Any] | None]:
    """(body, condition, loop) of a resource or module: pycep nests `if`/`for` around it."""
    if "config" in config and ("condition" in config or "loop_type" in config):
        return config["config"], config.get("condition"), config.get("loop_type")
    return config, None, None


class BicepFile:
    def __init__(self, rel_path: str, data: dict[str, Any]) -> None:
        self.path = rel_path
        self.data = data

    @property
    def params(self) -> dict[str, Any]:
        return dict(self.data.get("parameters", {}))

    @property
    def variables(self) -> dict[str, Any]:
        return {k: v["value"] for k, v in self.data.get("variables", {}).items()}

    @property
    def outputs(self) -> dict[str, Any]:
        return {k: v["value"] for k, v in self.data.get("outputs", {}).items()}

    def param_default(self, name: str) -> Any:
        return self.params[name]["default"]

    def resources(self) -> list[Resource]:
        found = []
        for name, attrs in self.data.get("resources", {}).items():
            body, condition, loop = _unwrap(attrs["config"])
            found.append(
                Resource(
                    file=self.path,
                    name=name,
                    type=attrs["type"],
                    api_version=attrs["api_version"],
                    existing=attrs["existing"],
                    body=body,
                    condition=condition,
                    loop=loop,
                )
            )
        return found

    def modules(self) -> list[ModuleCall]:
        found = []
        for name, attrs in self.data.get("modules", {}).items():
            body, condition, _ = _unwrap(attrs["config"])
            found.append(
                ModuleCall(
                    name=name,
                    path=attrs["detail"]["path"],
                    params=unquoted_keys(body.get("params", {})),
                    condition=condition,
                )
            )
        return found


class Infra:
    """Every .bicep file under one infra directory (the real one or a mutated copy)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.files = {
            path.relative_to(root).as_posix(): BicepFile(
                path.relative_to(root).as_posix(), _parser().parse(file_path=path)
            )
            for path in sorted(root.rglob("*.bicep"))
        }

    @property
    def main(self) -> BicepFile:
        return self.files[MAIN]

    def resources(self, type_: str | None = None) -> list[Resource]:
        return [
            r
            for f in self.files.values()
            for r in f.resources()
            if type_ is None or r.type.lower() == type_.lower()
        ]

    def one(self, type_: str) -> Resource:
        found = self.resources(type_)
        assert len(found) == 1, f"expected one {type_}, found {[str(r) for r in found]}"
        return found[0]

    def module_call(self, module_file: str) -> ModuleCall:
        """The single call of modules/<x>.bicep from main.bicep."""
        calls = [m for m in self.main.modules() if m.path == module_file]
        assert len(calls) == 1, f"main.bicep must call {module_file} once, calls: {calls}"
        return calls[0]

    def resolve(self, file: str, expr: Any) -> Any:
        """A literal value behind a name: a variable's value or a parameter's default."""
        bicep = self.files[file]
        if isinstance(expr, str) and expr in bicep.variables:
            return self.resolve(file, bicep.variables[expr])
        if isinstance(expr, str) and expr in bicep.params:
            return bicep.param_default(expr)
        return expr

    def text(self) -> str:
        return "\n".join(p.read_text() for p in sorted(self.root.rglob("*.bicep")))


def parse(root: Path = INFRA_DIR) -> Infra:
    """The parsed infra under `root`, re-parsed only when a .bicep file there changes."""
    signature = tuple(
        (p.as_posix(), p.stat().st_mtime_ns, p.stat().st_size)
        for p in sorted(root.rglob("*.bicep"))
    )
    return _parse(root, signature)


@functools.lru_cache(maxsize=32)
def _parse(root: Path, signature: tuple[tuple[str, int, int], ...]) -> Infra:
    del signature  # part of the cache key only
    return Infra(root)
