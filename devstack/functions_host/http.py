"""HTTP triggers as an ASGI app (served by uvicorn).

`/{routePrefix}/{route}` with the host's route templates (`jobs/{job_id}`, `{id:int}`,
`{name?}`, `{*rest}`), methods, auth levels and both programming styles: `func.HttpRequest` in
and `func.HttpResponse` out, or (HTTP streams) the FastAPI extension's `Request` in and any
Starlette/FastAPI response out, which is sent chunk by chunk as the function yields it.
"""

from __future__ import annotations

import hmac
import re
from dataclasses import dataclass
from typing import Any

import azure.functions as func
from fastapi.encoders import jsonable_encoder
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.types import Receive, Scope, Send

from devstack.functions_host.indexing import FunctionSpec
from devstack.functions_host.invocation import InvocationError, Invoker
from devstack.functions_host.logs import log

HTTP_REASON = "This function was programmatically called via the host APIs."
_CONSTRAINTS = {
    "int": r"-?\d+",
    "long": r"-?\d+",
    "alpha": r"[A-Za-z]+",
    "bool": r"(?i:true|false)",
    "guid": r"[0-9A-Fa-f]{8}-?(?:[0-9A-Fa-f]{4}-?){3}[0-9A-Fa-f]{12}",
}
_PARAM = re.compile(r"\{(\*?)([A-Za-z_][A-Za-z0-9_]*)(?::([A-Za-z]+)(?:\([^)]*\))?)?(\?)?\}")


def compile_route(prefix: str, route: str) -> re.Pattern[str]:
    """A route template as a regex over the request path (without query)."""
    parts = [p for p in f"{prefix}/{route}".split("/") if p]
    pattern = ""
    for part in parts:
        segment = ""
        optional = False
        pos = 0
        for match in _PARAM.finditer(part):
            segment += re.escape(part[pos : match.start()])
            catch_all, name, constraint, opt = match.groups()
            inner = ".*" if catch_all else _CONSTRAINTS.get((constraint or "").lower(), "[^/]+")
            segment += f"(?P<{name}>{inner})"
            optional = optional or bool(opt) or bool(catch_all)
            pos = match.end()
        segment += re.escape(part[pos:])
        pattern += f"(?:/{segment})?" if optional else f"/{segment}"
    return re.compile(f"^{pattern or '/'}/?$", re.IGNORECASE)


@dataclass(frozen=True)
class HttpRoute:
    spec: FunctionSpec
    pattern: re.Pattern[str]
    methods: frozenset[str] | None
    auth_level: str

    @property
    def specificity(self) -> tuple[int, int]:
        # Literal routes win over parameterised ones, as in ASP.NET routing.
        return (self.pattern.pattern.count("(?P<"), -len(self.pattern.pattern))


def build_routes(functions: list[FunctionSpec], prefix: str) -> list[HttpRoute]:
    routes = []
    for spec in functions:
        trigger = spec.trigger
        methods = trigger.get("methods")
        routes.append(
            HttpRoute(
                spec=spec,
                pattern=compile_route(prefix, trigger.get("route") or spec.name),
                methods=frozenset(m.upper() for m in methods) if methods else None,
                auth_level=str(trigger.get("authLevel") or "FUNCTION").lower(),
            )
        )
    return sorted(routes, key=lambda r: r.specificity)


def _to_starlette(result: Any) -> Response:
    """What a `func.HttpRequest` function returned, as a response."""
    if isinstance(result, func.HttpResponse):
        headers = dict(result.headers)
        if not any(k.lower() == "content-type" for k in headers):
            headers["Content-Type"] = f"{result.mimetype}; charset={result.charset}"
        return Response(result.get_body(), status_code=result.status_code, headers=headers)
    if result is None:
        return Response(status_code=204)
    if isinstance(result, bytes):
        return Response(result, media_type="application/octet-stream")
    return Response(str(result), media_type="text/plain")


class HttpApp:
    """The ASGI application: route, authorise, invoke, respond."""

    def __init__(
        self,
        functions: list[FunctionSpec],
        prefix: str,
        invoker: Invoker,
        function_key: str,
        master_key: str,
    ) -> None:
        self.routes = build_routes(functions, prefix)
        self._invoker = invoker
        self._key = function_key
        self._master_key = master_key

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        request = Request(scope, receive)
        found = self._match(request)
        if found is None:
            await Response(status_code=404)(scope, receive, send)
            return
        route, params = found
        if route.auth_level != "anonymous" and not self._authorised(request, route.auth_level):
            await Response(status_code=401)(scope, receive, send)
            return
        response = await self._run(route, request, params, scope, receive)
        await response(scope, receive, send)

    def _match(self, request: Request) -> tuple[HttpRoute, dict[str, str]] | None:
        for route in self.routes:
            match = route.pattern.match(request.url.path)
            if match is None:
                continue
            if route.methods is not None and request.method.upper() not in route.methods:
                continue
            params = {k: v for k, v in match.groupdict().items() if v is not None}
            return route, params
        return None

    def _authorised(self, request: Request, level: str) -> bool:
        """The master key opens every level; a function key opens `function` routes only
        (Azure answers an `admin` route called with one 401, as here)."""
        given = request.headers.get("x-functions-key") or request.query_params.get("code") or ""
        master = hmac.compare_digest(given.encode(), self._master_key.encode())
        if level == "admin":
            return master
        return hmac.compare_digest(given.encode(), self._key.encode()) or master

    async def _run(
        self,
        route: HttpRoute,
        request: Request,
        params: dict[str, str],
        scope: Scope,
        receive: Receive,
    ) -> Response:
        spec = route.spec
        try:
            if spec.http_v2:
                scope["path_params"] = params
                result = await self._invoker.invoke(spec, Request(scope, receive), HTTP_REASON)
                if isinstance(result, Response):
                    return result
                return JSONResponse(jsonable_encoder(result))
            body = await request.body()
            req = func.HttpRequest(
                method=request.method,
                url=str(request.url),
                headers=dict(request.headers),
                params=dict(request.query_params),
                route_params=params,
                body=body,
            )
            return _to_starlette(await self._invoker.invoke(spec, req, HTTP_REASON))
        except InvocationError:
            # The host answers 500 with no body: never a stack trace to the caller.
            return Response(status_code=500)
        except Exception:
            log.exception("HTTP pipeline error in %s", spec.name)
            return Response(status_code=500)
