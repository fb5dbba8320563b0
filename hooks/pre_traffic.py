"""CodeDeploy pre-traffic hook: the quality gate. Before alias ``live`` sends a single request to a
new version of the API function, this sends that version every photo of the model's check set (as
the API would: ``POST /predict?top_k=5``, a raw JPEG body) and fails the deployment unless

- every answer is a 200 from the expected model (name and version);
- its accuracy on the check photos is at least the expected accuracy (the model card's) minus
  ``ACCURACY_TOLERANCE``: a model worse than its card says never takes traffic;
- for each photo, the probability it gives the class recorded at build time as top-1 is within
  ``PROBABILITY_TOLERANCE`` of the recorded one: a build that is not the evaluated model (shuffled
  labels, another scaling, other weights) never takes traffic, however plausible its labels;
- its cost, as Lambda itself reports it (each invocation's ``REPORT`` line: ``Duration`` and ``Max
  Memory Used``, read with ``LogType=Tail``; the model cannot write them), on the check photos one
  at a time and on one request of the largest batch a client may send, is within the limits
  (``BATCH_BUDGET_MS``: the request's share of the API timeout and API Gateway's 29 s; ``MEMORY_MB``),
  within what the build recorded (``EXPECTED_*``: the manifest's ``cost`` as synth estimated it for
  this function; a manifest is written by whoever made the directory, so this is checked, not
  trusted) and, when ``LIVE_ARN`` names the version serving now, within ``LIVE_MARGIN`` of that
  version's figures on the same requests (unset when the deploy accepts a slower model).

Deployed as its own small function (``infra/components/delivery.py``) whose asset holds this file,
``photo_event.json`` (the committed API fixture ``events/api-http-predict-raw-jpeg.json``, the
event every check photo is sent in) and ``check/`` (the model directory's check set, written by
``training/checkset.py``). It may invoke that version and alias live only. Its verdict, the
figures and each photo's answer are one JSON line in its log. Standard library and the runtime's
boto3 only.
"""

from __future__ import annotations

import base64
import hashlib
import json
import math
import os
import re
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

# What a request may take beyond the model's recorded time: the event, the answer, the logs; and each
# image its decode in a sandbox worker (a check photo: a few ms on Lambda at 2,048 MB).
REQUEST_OVERHEAD_MS, IMAGE_OVERHEAD_MS = 25.0, 10.0
# What two runs of the same version differ by, at least: a comparison with the live version never
# fails on noise below these.
LIVE_SLACK_MS, LIVE_SLACK_MB = 10.0, 32.0
REPORT_FIGURES = {
    "duration_ms": r"\tDuration: ([0-9.]+) ms",
    "max_memory_mb": r"Max Memory Used: ([0-9]+) MB",
}

Figures = dict[str, float]  # duration_ms, max_memory_mb: what Lambda reported for one invocation
# One invocation: the function's answer and Lambda's figures for it (empty when it reported none).
Invoke = Callable[[dict[str, Any]], tuple[dict[str, Any], Figures]]


@dataclass(frozen=True)
class Gate:
    """What the new version must show."""

    model: dict[str, str]  # name and version
    precision: str = "fp32"  # whose recordings apply (the deployment's MODEL_PRECISION)
    accuracy_tolerance: float = 0.10
    probability_tolerance: float = 0.05
    cost: Cost | None = None


@dataclass(frozen=True)
class Cost:
    """What the new version may cost, as Lambda measures it (``Duration``, ``Max Memory Used``)."""

    largest_batch: int  # the most images a request may carry (MAX_IMAGES_PER_REQUEST)
    batch_budget_ms: float  # that request's budget: the API's time left once decoding had its bound
    memory_mb: float  # the function's memory size: past it, Lambda ends the invocation
    expected_image_ms: float  # the model's recorded time for one photo, on this function (synth's estimate)
    expected_batch_ms: float  # ... for the largest batch
    expected_peak_mb: float  # the function's peak memory with the recorded model at the largest batch
    live_margin: float | None = None  # the new version may cost this much more than live (0.5: +50 %)

    @property
    def image_budget_ms(self) -> float:
        """The per-image budget the limits give: the largest request's budget, shared."""
        return self.batch_budget_ms / self.largest_batch


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


def batch_event(template: dict[str, Any], photos: list[bytes]) -> dict[str, Any]:
    """One API request carrying ``photos`` as a JSON batch (``{"images": [...]}``)."""
    event = photo_event(template, b"", 1)
    event["body"] = json.dumps({"images": [base64.b64encode(photo).decode() for photo in photos]})
    event["isBase64Encoded"] = False
    event["headers"]["content-type"] = "application/json"
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
    invoke: Invoke,
    gate: Gate,
    check_dir: Path = CHECK_DIR,
    seconds_left: Callable[[], float] | None = None,
    live: Invoke | None = None,
) -> Verdict:
    """Send every check photo through ``invoke`` (the new version); the verdict and its figures.
    ``seconds_left``: the hook's remaining time; it stops (Failed) while it can still report.
    ``live``: the version serving now, whose cost on the same requests the new one is held to."""
    check_set = json.loads((check_dir / "check.json").read_text())
    template = json.loads(EVENT.read_text())
    photos = check_set["photos"]
    correct, drifts, answers, sent = 0, [], [], []
    for entry in photos:
        if seconds_left is not None and seconds_left() < REPORT_MARGIN_S:
            return Verdict(False, f"out of time after {len(answers)} of {len(photos)} check photos")
        name = Path(entry["file"]).name  # inside the check folder, whatever the file says
        photo = (check_dir / name).read_bytes()
        if hashlib.sha256(photo).hexdigest() != entry["sha256"]:
            return Verdict(False, f"{name}: not the photo that was recorded")
        recorded_top = entry["recorded"][gate.precision]
        event = photo_event(template, photo, len(recorded_top))
        try:
            result = answer_body(invoke(event)[0])
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
        sent.append((event, photo))
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
    if not passed or gate.cost is None:
        return Verdict(passed, summary, figures)
    try:
        return within_cost(invoke, live, gate.cost, template, sent, Verdict(True, summary, figures))
    except ValueError as error:  # the cost could not be measured: never a pass
        return Verdict(False, f"cost: {error}", figures)


def median(values: list[float]) -> float:
    ordered = sorted(values)
    middle = len(ordered) // 2
    return ordered[middle] if len(ordered) % 2 else (ordered[middle - 1] + ordered[middle]) / 2


def measured(photos: list[Figures], batch: Figures) -> dict[str, float]:
    """The version's cost figures: the median check photo, the largest batch, the peak memory."""
    if not all(
        f.get("duration_ms") is not None and f.get("max_memory_mb") is not None for f in [*photos, batch]
    ):
        raise ValueError("Lambda reported no Duration or Max Memory Used: the cost cannot be checked")
    return {
        "photo_ms": round(median([f["duration_ms"] for f in photos]), 1),
        "batch_ms": round(batch["duration_ms"], 1),
        "peak_mb": max(f["max_memory_mb"] for f in [*photos, batch]),
    }


def warm_cost(
    invoke: Invoke, template: dict[str, Any], sent: list[tuple[dict[str, Any], bytes]], size: int
) -> dict[str, float]:
    """A version's cost, warm: a request that warms it (its figures discarded: a new version's first
    requests pay for first allocations, as live's did long ago), each check photo again, then one
    request of ``size`` images (the check photos, repeated)."""
    invoke(sent[0][0])
    photos = [invoke(event)[1] for event, _ in sent]
    batch = [sent[i % len(sent)][1] for i in range(size)]
    answer, figures = invoke(batch_event(template, batch))
    results = answer_body(answer).get("results")
    if not isinstance(results, list) or len(results) != size or any("predictions" not in r for r in results):
        raise ValueError(f"the batch of {size} check photos was not answered image by image")
    return measured(photos, figures)


def cost_limits(cost: Cost, new: dict[str, float]) -> list[str]:
    """Each limit or recorded figure the new version's cost exceeds, with by how much."""
    checks = [
        ("photo_ms", cost.image_budget_ms, "ms a photo: the per-image budget"),
        ("batch_ms", cost.batch_budget_ms, f"ms for a batch of {cost.largest_batch}: the request's budget"),
        ("peak_mb", cost.memory_mb, "MB: the function's memory size"),
        (
            "photo_ms",
            cost.expected_image_ms + REQUEST_OVERHEAD_MS + IMAGE_OVERHEAD_MS,
            "ms a photo: the recorded cost",
        ),
        (
            "batch_ms",
            cost.expected_batch_ms + REQUEST_OVERHEAD_MS + IMAGE_OVERHEAD_MS * cost.largest_batch,
            f"ms for a batch of {cost.largest_batch}: the recorded cost",
        ),
        ("peak_mb", cost.expected_peak_mb, "MB: the recorded peak memory"),
    ]
    return [
        f"{key} {new[key]:g} over {allowed:.0f} {what} (by {new[key] - allowed:.0f})"
        for key, allowed, what in checks
        if new[key] > allowed
    ]


def over_live(cost: Cost, new: dict[str, float], old: dict[str, float]) -> list[str]:
    """Each figure of the new version over the live version's on the same requests by more than
    the margin (and the noise slack)."""
    margin = cost.live_margin or 0.0
    slack = {
        "photo_ms": LIVE_SLACK_MS,
        "batch_ms": LIVE_SLACK_MS * cost.largest_batch,
        "peak_mb": LIVE_SLACK_MB,
    }
    return [
        f"{key} {new[key]:g} over the live version's {old[key]:g} + {margin:.0%}"
        for key in ("photo_ms", "batch_ms", "peak_mb")
        if new[key] > old[key] * (1 + margin) + slack[key]
    ]


def within_cost(
    invoke: Invoke,
    live: Invoke | None,
    cost: Cost,
    template: dict[str, Any],
    sent: list[tuple[dict[str, Any], bytes]],
    verdict: Verdict,
) -> Verdict:
    """``verdict`` (the answers passed) unless the new version's cost is over a limit, its recorded
    cost or the live version's."""
    new = warm_cost(invoke, template, sent, cost.largest_batch)
    verdict.figures["cost"] = new
    problems = cost_limits(cost, new)
    if live is not None and cost.live_margin is not None:
        try:
            old = warm_cost(live, template, sent, cost.largest_batch)
        except ValueError as error:  # the live version's trouble is not the new one's: noted, not held
            verdict.figures["live_cost"] = f"not measured: {error}"
        else:
            verdict.figures["live_cost"] = old
            problems += over_live(cost, new, old)
    if problems:
        return Verdict(False, "cost: " + "; ".join(problems), verdict.figures)
    return Verdict(True, f"{verdict.reason}; cost {new} within its limits", verdict.figures)


def reported(log_tail: str) -> Figures:
    """``Duration`` and ``Max Memory Used`` from the invocation's ``REPORT`` line (Lambda writes it
    after the function returned; the last 4 KB of the log come back with ``LogType=Tail``)."""
    report = next((line for line in reversed(log_tail.splitlines()) if line.startswith("REPORT ")), "")
    figures = {}
    for key, pattern in REPORT_FIGURES.items():
        found = re.search(pattern, report)
        if found:
            figures[key] = float(found.group(1))
    return figures


def lambda_invoker(client: Any, function_arn: str) -> Invoke:
    """Invoke ``function_arn`` synchronously: its answer (a function error becomes a 500-like
    answer) and Lambda's figures for the invocation."""

    def invoke(event: dict[str, Any]) -> tuple[dict[str, Any], Figures]:
        response = client.invoke(
            FunctionName=function_arn, Payload=json.dumps(event).encode(), LogType="Tail"
        )
        payload = json.loads(response["Payload"].read() or b"{}")
        figures = reported(base64.b64decode(response.get("LogResult") or b"").decode("utf-8", "replace"))
        if response.get("FunctionError"):
            return {"statusCode": 500, "body": json.dumps(payload)}, figures
        return payload, figures

    return invoke


def cost_from(environ: dict[str, str]) -> Cost | None:
    """The cost limits synth wrote into the hook's environment (none: the cost is not checked)."""
    if "BATCH_BUDGET_MS" not in environ:
        return None
    margin = environ.get("LIVE_MARGIN", "")
    return Cost(
        largest_batch=int(environ["LARGEST_BATCH"]),
        batch_budget_ms=float(environ["BATCH_BUDGET_MS"]),
        memory_mb=float(environ["MEMORY_MB"]),
        expected_image_ms=float(environ["EXPECTED_IMAGE_MS"]),
        expected_batch_ms=float(environ["EXPECTED_BATCH_MS"]),
        expected_peak_mb=float(environ["EXPECTED_PEAK_MB"]),
        live_margin=float(margin) if margin else None,
    )


def gate_from(environ: dict[str, str]) -> Gate:
    return Gate(
        model={"name": environ["EXPECTED_MODEL_NAME"], "version": environ["EXPECTED_MODEL_VERSION"]},
        precision=environ.get("MODEL_PRECISION", "fp32"),
        accuracy_tolerance=float(environ.get("ACCURACY_TOLERANCE", "0.10")),
        probability_tolerance=float(environ.get("PROBABILITY_TOLERANCE", "0.05")),
        cost=cost_from(environ),
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
        live = lambda_invoker(lambda_client, environ["LIVE_ARN"]) if environ.get("LIVE_ARN") else None
        verdict = check(invoke, gate_from(environ), check_dir, seconds_left, live)
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
