"""The HTTP API's plumbing: one resolver per event shape, CORS, error mapping, 404/405, HEAD, Vary.

API Gateway delivers two event shapes (REST API v1 proxy and HTTP API v2); Powertools has one
resolver per shape, so the routes (``routes.py``) live on a ``Router`` included in both and
``resolve`` picks the resolver by the event's kind (``handler.contract``). Both resolvers are built
once, where the function starts; each is given what its routes need (the answerer, the settings, the
store, the capture, the OpenAPI document) through ``dependency_overrides``, and its error handlers
close over it: nothing global. Lambda runs one
event at a time per process, so nothing here is per thread.
"""

from __future__ import annotations

import json
from functools import cached_property
from http import HTTPStatus
from typing import Any

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.event_handler import (
    APIGatewayHttpResolver,
    APIGatewayRestResolver,
    CORSConfig,
    Response,
    content_types,
)
from aws_lambda_powertools.event_handler.exceptions import NotFoundError
from aws_lambda_powertools.event_handler.openapi.exceptions import RequestValidationError
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext

from handler.answers.answering import Answerer
from handler.answers.capture import Capture
from handler.config import Settings
from handler.contract import ROUTES, EventKind, kind_of
from handler.errors import BadRequest, Code, Refusal, excerpt
from handler.http import openapi, uploads
from handler.http.routes import (
    current_answerer,
    current_capture,
    current_openapi,
    current_settings,
    current_storage,
    router,
    top_k_rule,
)
from handler.http.web import NO_STORE, json_response
from handler.records.storage import Storage

logger = Logger(child=True)
metrics = Metrics()

Resolver = APIGatewayRestResolver | APIGatewayHttpResolver


def client_error(error: Refusal) -> Response:
    logger.info("client error", extra={"status": int(error.status), "code": error.code})
    metrics.add_metric(name="ClientErrors", unit=MetricUnit.Count, value=1)
    return json_response(error.status, error.to_dict())


def unexpected(error: Exception) -> Response:
    """A bug or an outage, never the client's fault: log the trace, answer without it, and count it
    (``ServerErrors``): Lambda's own Errors metric never sees an exception answered as a 500."""
    logger.exception("unhandled error")
    metrics.add_metric(name="ServerErrors", unit=MetricUnit.Count, value=1)
    return json_response(
        HTTPStatus.INTERNAL_SERVER_ERROR,
        {"error": "Internal error; it has been logged.", "code": Code.INTERNAL_ERROR},
    )


def invalid_parameter(error: RequestValidationError, max_top_k: int) -> Response:
    """Powertools validated a parameter (``top_k``): answer 400 in the project's error shape."""
    problems = []
    for detail in error.errors():
        where = detail.get("loc", ())
        name = where[-1] if where else "request"
        problems.append(f"{name}: {detail.get('msg', 'invalid value')}")
    if any(problem.startswith("top_k:") for problem in problems):  # one wording, whatever was wrong
        return client_error(BadRequest(top_k_rule(max_top_k), Code.INVALID_PARAMETER))
    message = "Invalid parameter: " + "; ".join(problems)
    return client_error(BadRequest(message, Code.INVALID_PARAMETER))


def route_matches(route: str, path: str) -> bool:
    """Whether ``path`` is one of ``route``'s: a ``{name}`` segment matches any one non-empty segment."""
    template, asked = route.split("/"), path.split("/")
    return len(template) == len(asked) and all(
        part == given or (part.startswith("{") and bool(given))
        for part, given in zip(template, asked, strict=True)
    )


def _method(event: dict[str, Any]) -> str:
    if event.get("version") == "2.0":
        return str(event.get("requestContext", {}).get("http", {}).get("method", "")).upper()
    return str(event.get("httpMethod", "")).upper()


def _as_get(event: dict[str, Any]) -> dict[str, Any]:
    """The same request as a GET (both event versions)."""
    context = dict(event.get("requestContext") or {})
    if event.get("version") == "2.0":
        context["http"] = {**context.get("http", {}), "method": "GET"}
        return {**event, "requestContext": context}
    context["httpMethod"] = "GET"
    return {**event, "httpMethod": "GET", "requestContext": context}


def vary_on_origin(result: dict[str, Any]) -> dict[str, Any]:
    """Every answer may carry an ``Access-Control-Allow-Origin`` echoing the request's ``Origin``
    (Powertools echoes it even for ``*``): caches must key on it. Covers preflights too."""
    if isinstance(result.get("multiValueHeaders"), dict):
        result["multiValueHeaders"]["Vary"] = ["Origin"]
    else:
        result["headers"] = {**(result.get("headers") or {}), "Vary": "Origin"}
    return result


class Api:
    """The API over its collaborators: a resolver per event shape, built once (a resolver keeps the
    event it serves on itself, which is safe because a process serves one event at a time)."""

    def __init__(self, answerer: Answerer, settings: Settings, storage: Storage, capture: Capture) -> None:
        self.settings = settings
        self.provided = {
            current_answerer: lambda: answerer,
            current_settings: lambda: settings,
            current_storage: lambda: storage,
            current_capture: lambda: capture,
            current_openapi: lambda: self.openapi_document,
        }
        # (default, most) top_k a request may give: DEFAULT_TOP_K bounded by the model's class count,
        # and MAX_TOP_K. A top_k above the class count is not an error: the answer clamps it.
        self.top_k_limits = (answerer.default_top_k(settings.default_top_k), settings.max_top_k)
        self.rest = self._build(APIGatewayRestResolver)
        self.http = self._build(APIGatewayHttpResolver)

    @cached_property
    def openapi_document(self) -> dict[str, Any]:
        """The OpenAPI document of these routes (the same for both event shapes); built on first use."""
        return openapi.document(self.rest, self.top_k_limits)

    def _cors(self) -> CORSConfig:
        first, *extra = self.settings.allowed_origins
        return CORSConfig(
            allow_origin=first, extra_origins=extra, allow_headers=["Content-Type"], max_age=600
        )

    def _build(self, resolver_class: type[Resolver]) -> Resolver:
        resolver = resolver_class(cors=self._cors(), enable_validation=True)
        resolver.include_router(router)
        resolver.dependency_overrides.update(self.provided)
        max_top_k = self.settings.max_top_k
        resolver.exception_handler(Refusal)(client_error)
        resolver.exception_handler(RequestValidationError)(lambda error: invalid_parameter(error, max_top_k))
        resolver.exception_handler(NotFoundError)(lambda error: self._not_found(resolver))
        resolver.exception_handler(Exception)(unexpected)
        return resolver

    @staticmethod
    def allowed_methods(path: str) -> list[str]:
        """The methods a known path answers, from the one route table (``contract.ROUTES``), with
        HEAD where GET is and OPTIONS for CORS."""
        methods = {method for method, route in ROUTES if route_matches(route, path)}
        if "GET" in methods:
            methods.add("HEAD")
        return sorted(methods | {"OPTIONS"}) if methods else []

    def _not_found(self, resolver: Resolver) -> Response:
        event = resolver.current_event
        path = event.path
        allowed = self.allowed_methods(path)
        if allowed:  # a known path asked with another method
            message = f"{excerpt(event.http_method)} is not allowed here; use {', '.join(allowed)}."
            response = json_response(
                HTTPStatus.METHOD_NOT_ALLOWED, {"error": message, "code": Code.METHOD_NOT_ALLOWED}
            )
            response.headers["Allow"] = ", ".join(allowed)
            return response
        if path.startswith("/results/"):
            # An id with a slash in it ("../x", "/etc/passwd") matches no route: it is still a bad id.
            try:
                uploads.validate_id(path.removeprefix("/results/"))
            except Refusal as error:
                return client_error(error)
        return json_response(HTTPStatus.NOT_FOUND, {"error": "No such route.", "code": Code.NOT_FOUND})

    def resolve(self, event: Any, context: LambdaContext) -> dict[str, Any]:
        """Route one API Gateway event (REST v1 or HTTP v2) to its handler."""
        resolver = {EventKind.REST_API: self.rest, EventKind.HTTP_API: self.http}.get(kind_of(event))
        if resolver is None:
            # A direct invoke (console test, misconfigured trigger): answer in API shape rather than crash.
            logger.warning("not an API Gateway proxy event", extra={"event_type": type(event).__name__})
            return {
                "statusCode": HTTPStatus.BAD_REQUEST,
                "headers": {"Content-Type": content_types.APPLICATION_JSON, **NO_STORE},
                "body": json.dumps({"error": "Not an API Gateway proxy event.", "code": Code.INVALID_EVENT}),
                "isBase64Encoded": False,
            }
        head = _method(event) == "HEAD"
        result = vary_on_origin(resolver.resolve(_as_get(event) if head else event, context))
        if head:  # HEAD is GET without the body (its Content-Length is the server's to say)
            result["body"], result["isBase64Encoded"] = "", False
        return result
