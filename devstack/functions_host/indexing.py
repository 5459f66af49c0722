"""Index a v2-model app the way the Python worker does.

Import `function_app`, find the one module-level `FunctionApp` (any `FunctionRegister`), call
`get_functions()` once and check every function's bindings against its signature. What this
host cannot run stops start-up with a message that names the function and the binding.
"""

from __future__ import annotations

import importlib.util
import inspect
import json
import sys
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

import azure.functions as func
from azurefunctions.extensions.base import (
    ModuleTrackerMeta,
    RequestTrackerMeta,
    ResponseTrackerMeta,
)

from devstack.functions_host.settings import HostConfigError

SCRIPT_FILE = "function_app.py"
SUPPORTED_TRIGGERS = ("httpTrigger", "queueTrigger", "timerTrigger")
SUPPORTED_OUTPUTS = ("http", "queue")


class IndexingError(HostConfigError):
    """The app cannot be indexed or uses something this host does not support."""


@dataclass(frozen=True)
class FunctionSpec:
    """One indexed function: its trigger, other bindings and how to call it."""

    name: str
    func: Callable[..., Any]
    trigger: dict[str, Any]
    outputs: tuple[dict[str, Any], ...] = ()
    requires_context: bool = False
    http_v2: bool = False
    annotations: dict[str, Any] = field(default_factory=dict)

    @property
    def trigger_type(self) -> str:
        return str(self.trigger["type"])

    @property
    def trigger_param(self) -> str:
        return str(self.trigger["name"])

    @property
    def is_async(self) -> bool:
        return inspect.iscoroutinefunction(self.func)

    def describe(self) -> str:
        """`route`, queue name or schedule: the column of the start-up table."""
        kind = self.trigger_type
        if kind == "httpTrigger":
            methods = ",".join(self.trigger.get("methods") or ["*"])
            return f"[{methods}] {self.trigger.get('route') or self.name}"
        if kind == "queueTrigger":
            return str(self.trigger["queueName"])
        return str(self.trigger["schedule"])


@dataclass(frozen=True)
class IndexedApp:
    module: ModuleType
    functions: tuple[FunctionSpec, ...]
    http_v2: bool

    def of_type(self, trigger_type: str) -> list[FunctionSpec]:
        return [f for f in self.functions if f.trigger_type == trigger_type]

    def without_disabled(self, environ: Mapping[str, str]) -> tuple[IndexedApp, list[str]]:
        """The app less the functions its settings disable, as Azure's runtime reads them:
        `AzureWebJobs.<FUNCTION_NAME>.Disabled` set to true (or 1). No listener starts for a
        disabled trigger and a disabled HTTP function answers 404. (Azure still runs one for
        a caller with the master key; this host does not.) Also the names disabled."""
        off = [f.name for f in self.functions if _disabled(environ, f.name)]
        kept = tuple(f for f in self.functions if f.name not in off)
        return IndexedApp(self.module, kept, self.http_v2), off


def _disabled(environ: Mapping[str, str], name: str) -> bool:
    value = environ.get(f"AzureWebJobs.{name}.Disabled", "")
    return value.strip().lower() in ("true", "1")


def import_app_module(app_dir: Path) -> ModuleType:
    """Import `<app_dir>/function_app.py` as module `function_app`, app_dir on sys.path."""
    path = (app_dir / SCRIPT_FILE).absolute()
    if not path.is_file():
        raise IndexingError(f"{path} is missing: the v2 programming model needs a {SCRIPT_FILE}")
    if str(path.parent) not in sys.path:
        sys.path.insert(0, str(path.parent))
    existing = sys.modules.get("function_app")
    # Another app already imported in this process (tests host several) keeps its name.
    name = "function_app"
    if existing is not None and getattr(existing, "__file__", None) != str(path):
        name = f"function_app_{abs(hash(str(path)))}"
    elif existing is not None:
        return existing
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise IndexingError(f"cannot import {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except Exception:
        del sys.modules[name]
        raise
    return module


def find_function_app(module: ModuleType) -> func.FunctionRegister:
    """The single module-level FunctionApp; two or none is an error, as in the worker."""
    found = [v for v in vars(module).values() if isinstance(v, func.FunctionRegister)]
    unique = list({id(v): v for v in found}.values())
    if not unique:
        raise IndexingError(f"no top-level FunctionApp instance found in {module.__file__}")
    if len(unique) > 1:
        raise IndexingError("more than one top-level FunctionApp instance is defined")
    return unique[0]


def _is_out(annotation: Any) -> bool:
    origin = typing.get_origin(annotation) or annotation
    return inspect.isclass(origin) and issubclass(origin, func.Out)


def _check_trigger_annotation(spec_name: str, trigger: dict[str, Any], anno: Any, v2: bool) -> None:
    kind = trigger["type"]
    if anno is inspect.Parameter.empty or (anno in (str, bytes) and kind != "httpTrigger"):
        return
    ok: bool
    if kind == "httpTrigger":
        ok = bool(RequestTrackerMeta.check_type(anno)) if v2 else _subclass(anno, func.HttpRequest)
        if not ok and v2:
            raise IndexingError(
                f"function {spec_name!r}: with HTTP streams on (azurefunctions-extensions-http-"
                "fastapi imported) every HTTP trigger must take the extension's Request; "
                f"{getattr(anno, '__name__', anno)!r} is not supported, as on Azure"
            )
    elif kind == "queueTrigger":
        ok = _subclass(anno, func.QueueMessage)
    else:
        ok = _subclass(anno, func.TimerRequest)
    if not ok:
        raise IndexingError(
            f"function {spec_name!r}: the {kind} parameter {trigger['name']!r} is annotated "
            f"{getattr(anno, '__name__', anno)!r}, which that trigger cannot bind"
        )


def _subclass(anno: Any, base: type) -> bool:
    return inspect.isclass(anno) and issubclass(anno, base)


def _check_return(spec_name: str, anno: Any, v2: bool) -> None:
    if anno is inspect.Signature.empty or anno is None:
        return
    if v2:
        ok = bool(ResponseTrackerMeta.check_type(anno))
    else:
        ok = _subclass(anno, func.HttpResponse) or anno in (str, bytes)
    if not ok:
        mode = "an HTTP streams (FastAPI) response" if v2 else "func.HttpResponse or str"
        raise IndexingError(
            f"function {spec_name!r}: return annotation {getattr(anno, '__name__', anno)!r} "
            f"is not {mode}"
        )


def _build_spec(fn: func.decorators.function_app.Function, v2: bool) -> FunctionSpec:
    name = str(fn.get_function_name())
    bindings = [json.loads(raw) for raw in fn.get_raw_bindings()]
    user_func = fn.get_user_function()
    triggers = [b for b in bindings if str(b["type"]).endswith("Trigger")]
    if len(triggers) != 1:
        raise IndexingError(f"function {name!r} must have exactly one trigger")
    trigger = triggers[0]
    if trigger["type"] not in SUPPORTED_TRIGGERS:
        raise IndexingError(
            f"function {name!r}: trigger {trigger['type']!r} is not supported by this local host "
            f"(supported: {', '.join(SUPPORTED_TRIGGERS)}); use `func start` for it"
        )
    outputs: list[dict[str, Any]] = []
    for binding in bindings:
        if binding is trigger:
            continue
        if binding["direction"] != "OUT" or binding["type"] not in SUPPORTED_OUTPUTS:
            raise IndexingError(
                f"function {name!r}: binding {binding['name']!r} of type {binding['type']!r} "
                f"({binding['direction']}) is not supported by this local host "
                f"(supported outputs: {', '.join(SUPPORTED_OUTPUTS)}); use `func start` for it"
            )
        if binding["type"] == "http" and trigger["type"] != "httpTrigger":
            raise IndexingError(f"function {name!r}: an http output needs an http trigger")
        outputs.append(binding)

    signature = inspect.signature(user_func)
    hints = typing.get_type_hints(user_func)
    params = {p: hints.get(p, inspect.Parameter.empty) for p in signature.parameters}
    bound = {b["name"] for b in bindings if b["name"] != "$return"}
    requires_context = "context" in params and "context" not in bound
    declared = set(params) - ({"context"} if requires_context else set())
    if declared != bound:
        raise IndexingError(
            f"function {name!r}: parameters {sorted(declared)} do not match bindings "
            f"{sorted(bound)}"
        )
    _check_trigger_annotation(name, trigger, params[trigger["name"]], v2)
    for out in outputs:
        if out["name"] != "$return" and not _is_out(params[out["name"]]):
            raise IndexingError(
                f"function {name!r}: output binding {out['name']!r} must be annotated func.Out[...]"
            )
    if trigger["type"] == "httpTrigger":
        _check_return(name, hints.get("return", inspect.Signature.empty), v2)
    return FunctionSpec(
        name=name,
        func=user_func,
        trigger=trigger,
        outputs=tuple(outputs),
        requires_context=requires_context,
        http_v2=v2 and trigger["type"] == "httpTrigger",
        annotations=params,
    )


def _uses_http_v2(fn: func.decorators.function_app.Function) -> bool:
    hints = typing.get_type_hints(fn.get_user_function())
    return any(RequestTrackerMeta.check_type(h) for h in hints.values() if inspect.isclass(h))


def index_app(app_dir: Path) -> IndexedApp:
    """Import the app (its settings must already be in the environment) and index it."""
    extension_before = ModuleTrackerMeta.module_imported()
    module = import_app_module(app_dir)
    functions = find_function_app(module).get_functions()
    # On Azure importing the extension switches the whole worker to HTTP streams. Several apps
    # share one process in tests, so an app is in that mode if its import brought the
    # extension in or one of its functions takes the extension's Request.
    v2 = (ModuleTrackerMeta.module_imported() and not extension_before) or any(
        _uses_http_v2(f) for f in functions
    )
    specs = tuple(_build_spec(f, v2) for f in functions)
    return IndexedApp(module=module, functions=specs, http_v2=v2)
