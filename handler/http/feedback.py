"""``POST /feedback``: a person's correction of a captured answer, checked against the classes of
the model that gave the answer (which may be an earlier version than the one serving now), and
stored beside the capture (``answers.capture``).

A correction is a privileged write. Who sent it is read from what API Gateway puts in the event's
``requestContext`` when its IAM authorization let the request through (HTTP API:
``authorizer.iam``; REST API: ``identity``), never from the body or a header, which the client
writes. With ``FEEDBACK_AUTH=iam`` (the default) a correction without such a caller is refused
(403 ``authentication_required``) before anything is read: defence in depth, should the route ever
lose its authorizer. With ``FEEDBACK_AUTH=none`` it is stored as anonymous, apart from trusted ones.
"""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools import Logger

from handler.answers.capture import Capture, PredictionId, PredictionIdError, caller_record
from handler.errors import BadRequest, Code, Forbidden, NotFound, Unavailable, excerpt
from handler.http import payload

logger = Logger(child=True)


def caller_of(event: Any) -> dict[str, str] | None:
    """The IAM caller API Gateway authenticated for this event (``{"arn", "account"}``), or None:
    payload 2.0 (HTTP API) ``requestContext.authorizer.iam``, 1.0 (REST API)
    ``requestContext.identity``; each read only where its API type puts it, and only an IAM or STS
    principal's ARN counts (``answers.capture.caller_record``). Any other shape is no caller."""
    if not isinstance(event, dict):
        return None
    context = event.get("requestContext")
    if not isinstance(context, dict):
        return None
    if event.get("version") == "2.0":
        authorizer = context.get("authorizer")
        identity = authorizer.get("iam") if isinstance(authorizer, dict) else None
    else:
        identity = context.get("identity")
    if not isinstance(identity, dict):
        return None
    return caller_record(identity.get("userArn"))


def check_caller(caller: dict[str, str] | None, required: bool) -> None:
    if required and caller is None:
        raise Forbidden(
            "A correction is a reviewer's write: send it signed (AWS Signature Version 4) by an IAM "
            "principal allowed to invoke POST /feedback (docs/api.md).",
            Code.AUTHENTICATION_REQUIRED,
        )


def read_request(body: bytes) -> tuple[PredictionId, str]:
    """``{"prediction_id": "...", "label": "..."}`` -> (the id, the label): 400 otherwise."""
    document = payload.parse_json(body)
    if not isinstance(document, dict):
        raise BadRequest(
            'The body must be JSON like {"prediction_id": "...", "label": "..."}.', Code.INVALID_JSON
        )
    try:
        pid = PredictionId.parse(document.get("prediction_id"))
    except PredictionIdError as error:
        raise BadRequest(str(error), Code.INVALID_PREDICTION_ID) from None
    label = document.get("label")
    if not isinstance(label, str):
        raise BadRequest(
            f"label must be a class name (a string), got {type(label).__name__}.", Code.UNKNOWN_LABEL
        )
    return pid, label


def check_label(label: str, labels: list[str], pid: PredictionId) -> None:
    if label not in labels:
        raise BadRequest(
            f"label must be one of the {len(labels)} classes of {pid.model} {pid.version}, the model "
            f"that answered (GET /model lists the served model's); got {excerpt(label)!r}.",
            Code.UNKNOWN_LABEL,
        )


def storage(action: str, work: Any) -> Any:
    """``work()``; a failure of the capture store is a 503 (try again), never a 500."""
    try:
        return work()
    except Exception as error:
        logger.warning(f"feedback: {action} failed", extra={"error": str(error)[:300]})
        raise Unavailable(
            f"The capture store could not be {action}: try again.", Code.STORAGE_UNAVAILABLE
        ) from None


def answered_label(captured: dict) -> str | None:
    """The top-1 label the capture recorded (None when its record has no readable one)."""
    predictions = captured.get("predictions")
    if isinstance(predictions, list) and predictions and isinstance(predictions[0], dict):
        label = predictions[0].get("label")
        return label if isinstance(label, str) else None
    return None


def correct(
    capture: Capture,
    served: tuple[str, str, list[str]],
    body: bytes,
    caller: dict[str, str] | None = None,
    caller_required: bool = True,
) -> dict:
    """Check and store one correction; its stored form plus what the model had answered.
    ``served``: the serving model's name, version and classes; ``caller``: who sent it
    (``caller_of``), required unless ``caller_required`` is False (then None is anonymous)."""
    check_caller(caller, caller_required)  # before the body is even read
    pid, label = read_request(body)
    name, version, labels = served
    same_model = (pid.model, pid.version) == (name, version)
    if same_model:
        check_label(label, labels, pid)  # before any S3 request
    captured = storage("read", lambda: capture.captured(pid))
    if captured is None:
        raise NotFound(
            "No captured answer has this prediction_id: feedback is kept beside a capture, and this "
            "answer was not sampled (CAPTURE_RATE), has expired, or never existed.",
            Code.UNKNOWN_PREDICTION,
        )
    if not same_model:  # an earlier version's answer: its own classes, recorded with its captures
        check_label(label, storage("read", lambda: capture.labels_of(pid)) or labels, pid)
    stored = storage("written", lambda: capture.store_feedback(pid, label, caller))
    answered = answered_label(captured)
    who = caller["arn"] if caller else None
    logger.info(
        "feedback", extra={"prediction_id": str(pid), "label": label, "answered": answered, "caller": who}
    )
    return {**stored, "answered": answered}
