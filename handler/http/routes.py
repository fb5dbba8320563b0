"""The API's routes, as small plain functions; what each needs arrives through ``Depends``: the
``Answerer`` (the one road to answers), the ``Settings``, the uploads' ``Storage``, the ``Capture``
(feedback), the OpenAPI document. Each ``current_*`` is a placeholder every resolver ``api.Api``
builds overrides (``dependency_overrides``); no route sees the whole runtime.
"""

from __future__ import annotations

from http import HTTPStatus
from typing import Annotated

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.event_handler import Request, Response, content_types
from aws_lambda_powertools.event_handler.api_gateway import Router
from aws_lambda_powertools.event_handler.depends import Depends
from aws_lambda_powertools.event_handler.openapi.params import Query
from aws_lambda_powertools.metrics import MetricUnit

from handler.answers.answering import Answerer
from handler.answers.capture import Capture
from handler.config import Settings
from handler.contract import QUALITY_GATE_MARK, QUALITY_GATE_SOURCE
from handler.errors import BadRequest, Code
from handler.http import feedback as corrections
from handler.http import page, payload, uploads
from handler.http.schemas import FeedbackAnswer, HealthAnswer, ModelAnswer, PredictionAnswer
from handler.http.web import base_url, error_responses, json_response, request_body, request_text
from handler.records.storage import Storage

logger = Logger(child=True)
metrics = Metrics()
router = Router()


def _provided_by_api(what: str):
    def placeholder():
        raise LookupError(f"no {what}: resolvers are built by api.Api, which provides it")

    placeholder.__name__ = f"current_{what}"
    return placeholder


current_answerer = _provided_by_api("answerer")
current_settings = _provided_by_api("settings")
current_storage = _provided_by_api("storage")
current_capture = _provided_by_api("capture")
current_openapi = _provided_by_api("openapi")

AnswererDep = Annotated[Answerer, Depends(current_answerer)]
SettingsDep = Annotated[Settings, Depends(current_settings)]
StorageDep = Annotated[Storage, Depends(current_storage)]
CaptureDep = Annotated[Capture, Depends(current_capture)]


def top_k_rule(most: int) -> str:
    """The one wording of every refused ``top_k``: 0, negative, not a number, above ``MAX_TOP_K``."""
    return (
        f"top_k must be a whole number from 1 to {most} (above the model's class count, every class "
        "is answered)."
    )


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
    answerer: AnswererDep,
    settings: SettingsDep,
    top_k: Annotated[int | None, Query(ge=1, description="How many classes to return, best first.")] = None,
):
    """Classify one image (multipart field ``image``, JSON base64/data URL, raw bytes), or a batch:
    several ``image`` fields or JSON ``{"images": [...]}``, answered in order, one model call. A
    single image's refusal is the request's (its status); a batch answers each image in its place."""
    asked = answerer.default_top_k(settings.default_top_k) if top_k is None else top_k
    if asked > settings.max_top_k:
        raise BadRequest(top_k_rule(settings.max_top_k), Code.INVALID_PARAMETER)
    served = min(asked, len(answerer.labels))  # every class, when a client asks for more than there are
    clamped = {"top_k_clamped": True} if served < asked else {}
    event = request.resolved_event
    images = payload.parse(
        request_text(event),
        event.headers.get("content-type"),
        settings.max_image_bytes,
        settings.max_images_per_request,
    )
    answers = answerer.answer(images.images, served, answer_source(event))
    if images.batch:
        logger.info("classified a batch", extra={"images": len(answers)})
        return json_response(
            HTTPStatus.OK, {"results": [a.body for a in answers], "model": answerer.model, **clamped}
        )
    (answer,) = answers
    if answer.refusal:
        raise answer.refusal
    best = answer.body["predictions"][0]
    logger.info("classified", extra={"top1": best["label"], "probability": best["probability"]})
    return json_response(HTTPStatus.OK, {**answer.body, "model": answerer.model, **clamped})


def answer_source(event) -> str:
    """``api``, or the pre-traffic gate's mark (set by the hook's direct invoke, never by a client)."""
    context = event.raw_event.get("requestContext")
    marked = isinstance(context, dict) and context.get(QUALITY_GATE_MARK) is True
    return QUALITY_GATE_SOURCE if marked else "api"


@router.post(
    "/feedback",
    summary="Correct an answer",
    description=(
        '`{"prediction_id": "...", "label": "..."}`: the right class for a captured answer, '
        "stored beside its capture for the next training (`imgrec dataset export`)."
    ),
    tags=["feedback"],
    responses={
        201: {"description": "Stored", "content": {"application/json": {"model": FeedbackAnswer}}},
        **error_responses(400, 403, 404, 503),
    },
)
def feedback(request: Request, answerer: AnswererDep, capture: CaptureDep, settings: SettingsDep):
    """A correction for an answer that was captured: the label must be one of the classes of the
    model that answered. A privileged write: its caller is the one API Gateway authenticated."""
    served = (answerer.model["name"], answerer.model["version"], answerer.labels)
    event = request.resolved_event
    caller = corrections.caller_of(event.raw_event)
    required = settings.feedback_auth == "iam"
    body = request_body(event)
    stored = corrections.correct(capture, served, body, caller, caller_required=required)
    return json_response(HTTPStatus.CREATED, stored)


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
def create_upload(request: Request, storage: StorageDep):
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
    form = uploads.new_upload(storage, declared)
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
def upload_result(upload_id: str, storage: StorageDep):
    done, record = uploads.result(storage, upload_id)
    return json_response(HTTPStatus.OK if done else HTTPStatus.ACCEPTED, record)


@router.get(
    "/health",
    summary="What is loaded",
    tags=["operations"],
    responses={
        200: {"description": "The model and limits", "content": {"application/json": {"model": HealthAnswer}}}
    },
)
def health(answerer: AnswererDep, settings: SettingsDep):
    """Liveness and what is loaded: the model is loaded at cold start, so this is cheap."""
    return json_response(
        HTTPStatus.OK,
        {
            "status": "ok",
            "model": answerer.model,
            "classes": len(answerer.labels),
            "limits": {
                "max_image_bytes": settings.max_image_bytes,
                "max_image_pixels": settings.max_image_pixels,
                "max_images_per_request": settings.max_images_per_request,
                "max_upload_bytes": settings.max_upload_bytes,
            },
            "uploads": settings.uploads_bucket is not None,
        },
    )


@router.get(
    "/model",
    summary="The model served and its card",
    tags=["operations"],
    responses={
        200: {"description": "Model metadata", "content": {"application/json": {"model": ModelAnswer}}}
    },
)
def model_metadata(answerer: AnswererDep):
    """What TensorFlow Serving's metadata API says of a model, plus its card: classes, input,
    preprocessing, and (for a trained model) its data, settings and test (and validation) metrics."""
    model, manifest = answerer.model, answerer.manifest
    return json_response(
        HTTPStatus.OK,
        {
            "model_spec": {"name": model["name"], "version": model["version"]},
            "backend": model["backend"],
            "classes": answerer.labels,
            "input": manifest.get("input", {}),
            "preprocessing": manifest.get("preprocessing", {}),
            "min_confidence": answerer.min_confidence,
            "card": manifest.get("card", {}),
        },
    )


@router.get(
    "/",
    summary="Demo page",
    tags=["operations"],
    responses={200: {"description": "A page to try the API", "content": {"text/html": {}}}},
)
def demo_page(settings: SettingsDep, storage: StorageDep):
    return Response(
        status_code=HTTPStatus.OK,
        content_type="text/html; charset=utf-8",
        body=page.render(settings.feedback_auth),
        headers=page.headers(storage.post_origin),
    )


@router.get(
    "/openapi.json",
    summary="This API's OpenAPI document",
    tags=["operations"],
    responses={200: {"description": "OpenAPI 3.1", "content": {"application/json": {}}}},
)
def openapi_document(document: Annotated[dict, Depends(current_openapi)]):
    return Response(
        status_code=HTTPStatus.OK,
        content_type=content_types.APPLICATION_JSON,
        body=document,
        headers={"X-Content-Type-Options": "nosniff", "Cache-Control": "max-age=300"},
    )
