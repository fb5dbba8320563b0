"""The HTTP API: routes, answer shapes, error mapping, CORS and headers.

API Gateway delivers two event shapes (REST API v1 proxy and HTTP API v2); Powertools has one
resolver per shape, so the routes live on a ``Router`` included in both and ``resolve`` picks the
resolver by the event's ``version``. Routes take Powertools' ``Request`` rather than reading
``app.current_event``, so they work under either resolver.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
import threading
from contextvars import ContextVar
from functools import cache
from http import HTTPStatus
from typing import Annotated, Any

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.event_handler import (
    APIGatewayHttpResolver,
    APIGatewayRestResolver,
    CORSConfig,
    Request,
    Response,
    content_types,
)
from aws_lambda_powertools.event_handler.api_gateway import Router
from aws_lambda_powertools.event_handler.exceptions import NotFoundError
from aws_lambda_powertools.event_handler.openapi.exceptions import RequestValidationError
from aws_lambda_powertools.event_handler.openapi.params import Query
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.data_classes.common import BaseProxyEvent
from aws_lambda_powertools.utilities.typing import LambdaContext

from handler import config, model, openapi, page, payload, recognition, uploads
from handler.errors import BadRequest, ClientError, Code, excerpt
from handler.schemas import ErrorAnswer, HealthAnswer, PredictionAnswer

logger = Logger(child=True)
metrics = Metrics()
settings = config.settings()
router = Router()

# Predictions are per request: no shared cache may keep them. nosniff: JSON is never sniffed as HTML.
NO_STORE = {"Cache-Control": "no-store", "X-Content-Type-Options": "nosniff"}
LOOPBACK_HOSTS = ("localhost", "127.0.0.1", "[::1]")


def error_responses(*statuses: int) -> dict[int, dict[str, Any]]:
    """OpenAPI entries for error answers: every one is ``{"error", "code"}``."""
    return {
        status: {
            "description": HTTPStatus(status).phrase,
            "content": {"application/json": {"model": ErrorAnswer}},
        }
        for status in statuses
    }


def json_response(status: int, body: dict[str, Any]) -> Response:
    return Response(
        status_code=status, content_type=content_types.APPLICATION_JSON, body=body, headers=NO_STORE
    )


def request_body(event: BaseProxyEvent) -> bytes:
    """The raw body bytes: API Gateway base64-encodes binary media types (``isBase64Encoded``).

    Powertools' ``decoded_body`` also UTF-8-decodes, which fails on images, so decode here.
    """
    body = event.body
    if not body:
        return b""
    if event.is_base64_encoded:
        try:
            return base64.b64decode(body)
        except (binascii.Error, ValueError) as error:
            raise BadRequest(
                "The request body is marked base64 but is not valid base64.", Code.INVALID_BASE64
            ) from error
    return body.encode("utf-8", "surrogatepass")


@router.post(
    "/predict",
    summary="Classify an image",
    description="Multipart field `image`, JSON base64 / data URL, or a raw `image/*` body.",
    tags=["classification"],
    responses={
        200: {"description": "Ranked classes", "content": {"application/json": {"model": PredictionAnswer}}},
        **error_responses(400, 413, 415, 422, 500),
    },
)
def predict(
    request: Request,
    top_k: Annotated[
        int,
        Query(ge=1, le=settings.max_top_k, description="How many classes to return, best first."),
    ] = settings.default_top_k,
):
    """Classify one image (multipart field ``image``, JSON base64/data URL, raw bytes), or a batch:
    several ``image`` fields or JSON ``{"images": [...]}``, answered in order, one model call."""
    event = request.resolved_event
    body = request_body(event)
    images = payload.parse(
        body, event.headers.get("content-type"), settings.max_image_bytes, settings.max_images_per_request
    )
    info = model.classifier().info.to_dict()
    if images.batch:
        outcomes = recognition.classify(images.images, top_k)
        logger.info("classified a batch", extra={"images": len(outcomes)})
        return json_response(HTTPStatus.OK, {"results": [o.to_dict() for o in outcomes], "model": info})
    (image,) = images.images
    predictions = recognition.classify_one(image, top_k)
    best = predictions[0]
    logger.info(
        "classified", extra={"image_bytes": len(image), "top1": best.label, "probability": best.probability}
    )
    return json_response(HTTPStatus.OK, {"predictions": [p.to_dict() for p in predictions], "model": info})


def base_url(event: BaseProxyEvent) -> str:
    """The API's public base URL for this request (scheme, host, and the stage path if any).

    Built from what API Gateway itself puts in the request context (its domain name and the path
    it received), never from a client's ``Host`` or ``X-Forwarded-*`` headers.
    """
    host = event.request_context.domain_name or "localhost"
    scheme = "http" if host.rsplit(":", 1)[0] in LOOPBACK_HOSTS else "https"
    full_path = event.get("requestContext", {}).get("path") or event.get("rawPath") or event.path
    prefix = full_path[: len(full_path) - len(event.path)] if full_path.endswith(event.path) else ""
    return f"{scheme}://{host}{prefix}/"


@router.post(
    "/uploads",
    summary="Upload a large photo to S3",
    description="A presigned S3 POST form for one photo up to MAX_UPLOAD_BYTES; then poll `result_url`.",
    tags=["classification"],
    responses={
        201: {"description": "The form to POST the photo to, and the id of its result"},
        **error_responses(400, 415, 501),
    },
)
def create_upload(request: Request):
    """Body (optional): ``{"content_type": "image/png"}``; JPEG by default."""
    event = request.resolved_event
    body = request_body(event)
    declared = "image/jpeg"
    if body:
        document = payload.parse_json(body)
        if not isinstance(document, dict):
            raise BadRequest('The body must be JSON like {"content_type": "image/png"}.', Code.INVALID_JSON)
        declared = document.get("content_type", declared)
    if not isinstance(declared, str):
        raise BadRequest('"content_type" must be a string.', Code.INVALID_JSON)
    form = uploads.new_upload(declared)
    form["result_url"] = f"{base_url(event)}results/{form['id']}"
    metrics.add_metric(name="UploadsIssued", unit=MetricUnit.Count, value=1)
    return json_response(HTTPStatus.CREATED, form)


@router.get(
    "/results/<upload_id>",
    summary="The result of an upload",
    tags=["classification"],
    responses={
        200: {"description": "The result record (predictions) or the error record"},
        202: {"description": "Not classified yet: poll again"},
        **error_responses(400, 404, 501),
    },
)
def upload_result(upload_id: str):
    done, record = uploads.result(upload_id)
    return json_response(HTTPStatus.OK if done else HTTPStatus.ACCEPTED, record)


@router.get(
    "/health",
    summary="What is loaded",
    tags=["operations"],
    responses={
        200: {"description": "The model and limits", "content": {"application/json": {"model": HealthAnswer}}}
    },
)
def health():
    """Liveness and what is loaded: the model is loaded at cold start, so this is cheap."""
    current = config.settings()
    return json_response(
        HTTPStatus.OK,
        {
            "status": "ok",
            "model": model.classifier().info.to_dict(),
            "limits": {
                "max_image_bytes": current.max_image_bytes,
                "max_image_pixels": current.max_image_pixels,
                "max_images_per_request": current.max_images_per_request,
                "max_upload_bytes": current.max_upload_bytes,
            },
            "uploads": current.uploads_bucket is not None,
        },
    )


@router.get(
    "/",
    summary="Demo page",
    tags=["operations"],
    responses={200: {"description": "A page to try the API", "content": {"text/html": {}}}},
)
def demo_page():
    return Response(
        status_code=HTTPStatus.OK,
        content_type="text/html; charset=utf-8",
        body=page.HTML,
        headers=page.headers(uploads.upload_origin()),
    )


@router.get(
    "/openapi.json",
    summary="This API's OpenAPI document",
    tags=["operations"],
    responses={200: {"description": "OpenAPI 3.1", "content": {"application/json": {}}}},
)
def openapi_document():
    return Response(
        status_code=HTTPStatus.OK,
        content_type=content_types.APPLICATION_JSON,
        body=openapi.document(resolvers()[0]),
        headers={"X-Content-Type-Options": "nosniff", "Cache-Control": "max-age=300"},
    )


@router.exception_handler(ClientError)
def client_error(error: ClientError) -> Response:
    logger.info("client error", extra={"status": int(error.status), "code": error.code})
    metrics.add_metric(name="ClientErrors", unit=MetricUnit.Count, value=1)
    return json_response(error.status, error.to_dict())


@router.exception_handler(RequestValidationError)
def invalid_parameter(error: RequestValidationError) -> Response:
    """Powertools validated a parameter (``top_k``): answer 400 in the project's error shape."""
    problems = []
    for detail in error.errors():
        where = detail.get("loc", ())
        name = where[-1] if where else "request"
        problems.append(f"{name}: {detail.get('msg', 'invalid value')}")
    message = "Invalid parameter: " + "; ".join(problems)
    if any("top_k" in problem for problem in problems):
        message += f" (top_k must be an integer from 1 to {settings.max_top_k})"
    return client_error(BadRequest(message, Code.INVALID_PARAMETER))


@cache
def route_methods() -> tuple[tuple[re.Pattern[str], frozenset[str]], ...]:
    """Each route's path pattern and the methods it answers, from the OpenAPI document."""
    paths = openapi.document(resolvers()[0])["paths"]
    return tuple(
        (
            re.compile(re.sub(r"\\\{[^/]+?\\\}", "[^/]+", re.escape(path)) + "$"),
            frozenset(method.upper() for method in operations),
        )
        for path, operations in paths.items()
    )


def allowed_methods(path: str) -> list[str]:
    """The methods a known path answers (with HEAD where GET is, and OPTIONS for CORS)."""
    methods = {m for pattern, found in route_methods() if pattern.match(path) for m in found}
    if "GET" in methods:
        methods.add("HEAD")
    return sorted(methods | {"OPTIONS"}) if methods else []


@router.exception_handler(NotFoundError)
def not_found(error: NotFoundError) -> Response:
    event = active_resolver.get().current_event
    path = event.path
    allowed = allowed_methods(path)
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
        except ClientError as error:
            return client_error(error)
    return json_response(HTTPStatus.NOT_FOUND, {"error": "No such route.", "code": Code.NOT_FOUND})


@router.exception_handler(Exception)
def unexpected(error: Exception) -> Response:
    """A bug or an outage, never the client's fault: log the trace, answer without it."""
    logger.exception("unhandled error")
    return json_response(
        HTTPStatus.INTERNAL_SERVER_ERROR,
        {"error": "Internal error; it has been logged.", "code": Code.INTERNAL_ERROR},
    )


def _cors() -> CORSConfig:
    first, *extra = settings.allowed_origins
    return CORSConfig(allow_origin=first, extra_origins=extra, allow_headers=["Content-Type"], max_age=600)


def _resolver(resolver_class: type[APIGatewayRestResolver] | type[APIGatewayHttpResolver]):
    resolver = resolver_class(cors=_cors(), enable_validation=True)
    resolver.include_router(router)
    return resolver


_per_thread = threading.local()


def resolvers() -> tuple[APIGatewayRestResolver, APIGatewayHttpResolver]:
    """This thread's REST (v1) and HTTP (v2) resolvers.

    A resolver keeps the event it is serving on itself: Lambda runs one event at a time, the local
    server several in threads, so each thread gets its own pair (the routes are shared).
    """
    pair = getattr(_per_thread, "pair", None)
    if pair is None:
        pair = _per_thread.pair = (_resolver(APIGatewayRestResolver), _resolver(APIGatewayHttpResolver))
    return pair


# The resolver serving the current event: exception handlers are shared and need its event.
active_resolver: ContextVar[APIGatewayRestResolver | APIGatewayHttpResolver] = ContextVar("active_resolver")


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


def resolve(event: Any, context: LambdaContext) -> dict[str, Any]:
    """Route one API Gateway event (REST v1 or HTTP v2) to its handler."""
    resolver = None
    rest, http = resolvers()
    if isinstance(event, dict) and event.get("version") == "2.0" and "requestContext" in event:
        resolver = http
    elif isinstance(event, dict) and "httpMethod" in event:
        resolver = rest
    if resolver is not None:
        active_resolver.set(resolver)
        head = _method(event) == "HEAD"
        result = vary_on_origin(resolver.resolve(_as_get(event) if head else event, context))
        if head:  # HEAD is GET without the body (its Content-Length is the server's to say)
            result["body"], result["isBase64Encoded"] = "", False
        return result
    # A direct invoke (console test, misconfigured trigger): answer in API shape rather than crash.
    logger.warning("not an API Gateway proxy event", extra={"event_type": type(event).__name__})
    return {
        "statusCode": HTTPStatus.BAD_REQUEST,
        "headers": {"Content-Type": content_types.APPLICATION_JSON, **NO_STORE},
        "body": json.dumps({"error": "Not an API Gateway proxy event.", "code": Code.INVALID_EVENT}),
        "isBase64Encoded": False,
    }
