"""CodeDeploy pre-traffic hook: the quality gate. Before alias ``live`` sends a single request to a
new version of the API function, this sends that version every photo of the model's check set (as
the API would: ``POST /predict?top_k=5``, a raw JPEG body) and fails the deployment unless

- every answer is a 200 from the expected model (name and version);
- its accuracy on the check photos is at least the expected accuracy (the model card's) minus
  ``ACCURACY_TOLERANCE``: a model worse than its card says never takes traffic;
- for each photo, the probability it gives the class recorded at build time as top-1 is within
  ``PROBABILITY_TOLERANCE`` of the recorded one: a build that is not the evaluated model (shuffled
  labels, another scaling, other weights) never takes traffic, however plausible its labels.

Deployed as its own small function (``infra/components/delivery.py``) whose asset holds this file,
``photo_event.json`` (the committed API fixture ``events/api-http-predict-raw-jpeg.json``, the
event every check photo is sent in) and ``check/`` (the model directory's check set, written by
``training/checkset.py``). It may invoke that one version only. Its verdict, the figures and each
photo's answer are one JSON line in its log. Standard library and the runtime's boto3 only.
"""

from __future__ import annotations

import base64
import hashlib
import json
import math
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
EVENT = HERE / "photo_event.json"
QUALITY_GATE_MARK = (
    "imageRecognitionQualityGate"  # handler.contract.QUALITY_GATE_MARK (a test holds them equal)
)
CHECK_DIR = HERE / "check"
# What the hook keeps for itself from its timeout: enough to report to CodeDeploy. Without a report,
# CodeDeploy would wait its own hour-long hook timeout.
REPORT_MARGIN_S = 30.0

Invoke = Callable[[dict[str, Any]], dict[str, Any]]


@dataclass(frozen=True)
class Gate:
    """What the new version must show."""

    model: dict[str, str]  # name and version
    precision: str = "fp32"  # whose recordings apply (the deployment's MODEL_PRECISION)
    accuracy_tolerance: float = 0.10
    probability_tolerance: float = 0.05


@dataclass
class Verdict:
    passed: bool
    reason: str
    figures: dict[str, Any] = field(default_factory=dict)


def photo_event(template: dict[str, Any], photo: bytes, top_k: int) -> dict[str, Any]:
    """The API event for one check photo: the committed fixture with this photo as its body, asking
    for as many classes as were recorded (a two-class model answers at most two)."""
    event = json.loads(json.dumps(template))
    event["body"] = base64.b64encode(photo).decode()
    event["isBase64Encoded"] = True
    event["rawQueryString"] = f"top_k={top_k}"
    event["queryStringParameters"] = {"top_k": str(top_k)}
    event.setdefault("headers", {})["content-type"] = "image/jpeg"
    # Marks the gate's own requests (API Gateway builds requestContext: no client can set this), so
    # the function neither captures its check photos nor counts them in the model's health metrics.
    event.setdefault("requestContext", {})[QUALITY_GATE_MARK] = True
    return event


def answer_body(answer: dict[str, Any]) -> dict[str, Any]:
    """The JSON of a 200 API answer; raises ``ValueError`` with what was wrong otherwise."""
    if "statusCode" not in answer:
        raise ValueError(f"not an API answer: {json.dumps(answer)[:300]}")
    if answer["statusCode"] != 200:
        raise ValueError(f"status {answer['statusCode']}: {str(answer.get('body', ''))[:300]}")
    body = answer.get("body") or ""
    return json.loads(base64.b64decode(body) if answer.get("isBase64Encoded") else body)


def check(
    invoke: Invoke, gate: Gate, check_dir: Path = CHECK_DIR, seconds_left: Callable[[], float] | None = None
) -> Verdict:
    """Send every check photo through ``invoke`` (the new version); the verdict and its figures.
    ``seconds_left``: the hook's remaining time; it stops (Failed) while it can still report."""
    check_set = json.loads((check_dir / "check.json").read_text())
    template = json.loads(EVENT.read_text())
    photos = check_set["photos"]
    correct, drifts, answers = 0, [], []
    for entry in photos:
        if seconds_left is not None and seconds_left() < REPORT_MARGIN_S:
            return Verdict(False, f"out of time after {len(answers)} of {len(photos)} check photos")
        name = Path(entry["file"]).name  # inside the check folder, whatever the file says
        photo = (check_dir / name).read_bytes()
        if hashlib.sha256(photo).hexdigest() != entry["sha256"]:
            return Verdict(False, f"{name}: not the photo that was recorded")
        recorded_top = entry["recorded"][gate.precision]
        try:
            result = answer_body(invoke(photo_event(template, photo, len(recorded_top))))
        except ValueError as error:
            return Verdict(False, f"{name}: {error}")
        model = {key: result.get("model", {}).get(key) for key in ("name", "version")}
        if model != gate.model:
            return Verdict(False, f"model {model}, expected {gate.model}")
        answered = {p["label"]: p["probability"] for p in result["predictions"]}
        if not all(isinstance(p, (int, float)) and math.isfinite(p) for p in answered.values()):
            return Verdict(False, f"{name}: a probability that is not a number: {answered}")
        top1 = result["predictions"][0]["label"]
        recorded = recorded_top[0]
        drift = abs(answered.get(recorded["label"], 0.0) - recorded["probability"])
        correct += top1 == entry["label"]
        drifts.append((round(drift, 4), name))
        answers.append({"file": name, "label": entry["label"], "top1": top1, "drift": round(drift, 4)})
    accuracy = correct / len(photos)
    required = round(check_set["expected_accuracy"] - gate.accuracy_tolerance, 4)
    drift, worst = max(drifts)
    figures = {
        "photos": len(photos),
        "accuracy": round(accuracy, 4),
        "required_accuracy": required,
        "max_probability_drift": drift,
        "allowed_drift": gate.probability_tolerance,
        "answers": answers,
    }
    summary = (
        f"accuracy {accuracy:.3f} on {len(photos)} check photos (required {required:.3f}: expected "
        f"{check_set['expected_accuracy']:.3f} - {gate.accuracy_tolerance}); largest probability drift "
        f"{drift:.3f} ({worst}, allowed {gate.probability_tolerance})"
    )
    passed = accuracy >= required and drift <= gate.probability_tolerance
    return Verdict(passed, summary, figures)


def lambda_invoker(client: Any, function_arn: str) -> Invoke:
    """Invoke ``function_arn`` synchronously; a function error becomes a 500-like answer."""

    def invoke(event: dict[str, Any]) -> dict[str, Any]:
        response = client.invoke(FunctionName=function_arn, Payload=json.dumps(event).encode())
        payload = json.loads(response["Payload"].read() or b"{}")
        if response.get("FunctionError"):
            return {"statusCode": 500, "body": json.dumps(payload)}
        return payload

    return invoke


def gate_from(environ: dict[str, str]) -> Gate:
    return Gate(
        model={"name": environ["EXPECTED_MODEL_NAME"], "version": environ["EXPECTED_MODEL_VERSION"]},
        precision=environ.get("MODEL_PRECISION", "fp32"),
        accuracy_tolerance=float(environ.get("ACCURACY_TOLERANCE", "0.10")),
        probability_tolerance=float(environ.get("PROBABILITY_TOLERANCE", "0.05")),
    )


def run(
    event: dict[str, Any],
    lambda_client: Any,
    codedeploy_client: Any,
    environ: dict[str, str],
    check_dir: Path = CHECK_DIR,
    seconds_left: Callable[[], float] | None = None,
) -> str:
    """Check the new version and tell CodeDeploy: ``Succeeded`` lets traffic shift, ``Failed`` rolls
    the deployment back."""
    try:
        invoke = lambda_invoker(lambda_client, environ["TARGET_VERSION_ARN"])
        verdict = check(invoke, gate_from(environ), check_dir, seconds_left)
    except Exception as error:  # an unreadable answer fails the deployment; it must never pass
        verdict = Verdict(False, f"{type(error).__name__}: {error}")
    status = "Succeeded" if verdict.passed else "Failed"
    line = {"pre_traffic": status, "reason": verdict.reason, "version": environ["TARGET_VERSION_ARN"]}
    print(json.dumps(line | verdict.figures))
    codedeploy_client.put_lifecycle_event_hook_execution_status(
        deploymentId=event["DeploymentId"],
        lifecycleEventHookExecutionId=event["LifecycleEventHookExecutionId"],
        status=status,
    )
    return status


def handler(event: dict[str, Any], context: Any) -> str:
    import boto3
    from botocore.config import Config

    # One attempt per photo, waiting as long as the API function may run (29 s) and a little more.
    invoking = Config(read_timeout=40, connect_timeout=5, retries={"max_attempts": 1, "mode": "standard"})
    return run(
        event,
        boto3.client("lambda", config=invoking),
        boto3.client("codedeploy"),
        dict(os.environ),
        seconds_left=lambda: context.get_remaining_time_in_millis() / 1000,
    )
