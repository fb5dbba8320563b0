"""CodeDeploy pre-traffic hook: the quality gate. Before alias ``live`` sends a single request to a
new version of the API function, this sends that version every photo of the model's check set (as
the API would: ``POST /predict?top_k=5``, a raw JPEG body) and fails the deployment unless

- every answer is a 200 from the expected model (name and version);
- its accuracy on the check photos is at least the expected accuracy (the model card's) minus
  ``ACCURACY_TOLERANCE``: a model worse than its card says never takes traffic;
- for each photo, the probability it gives the class recorded at build time as top-1 is within
  ``PROBABILITY_TOLERANCE`` of the recorded one: a build that is not the evaluated model (shuffled
  labels, a graph that scales its pixels wrong, other weights) never takes traffic, however
  plausible its labels;
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
import statistics
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
    "init_ms": r"Init Duration: ([0-9.]+) ms",  # on a new environment's first request only
}
# Lambda's init phase must end within 10 s; what init holds besides loading the model (imports, the
# decode sandbox's zygote and spare workers: 0.7 s measured at 2,048 MB) is given this much.
INIT_LIMIT_MS, INIT_OVERHEAD_MS = 10_000.0, 3_000.0

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
    api_ms: float  # what a request may take: the API function's timeout, at most API Gateway's 29 s
    batch_budget_ms: float  # that request's budget: the API's time left once decoding had its bound
    memory_mb: float  # the function's memory size: past it, Lambda ends the invocation
    expected_image_ms: float  # the model's recorded time for one photo, on this function (synth's estimate)
    expected_batch_ms: float  # ... for the largest batch
    expected_peak_mb: float  # the function's peak memory with the recorded model at the largest batch
    expected_load_ms: float  # the model's recorded load time, on this function
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


class OutOfTime(ValueError):
    """The hook's own time is nearly spent: it stops (Failed) while it can still report."""


@dataclass(frozen=True)
class Sent:
    """A check photo as sent: its event, its bytes and the top-1 label recorded for it."""

    event: dict[str, Any]
    photo: bytes
    top1: str


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
    correct, drifts, answers, sent, cold = 0, [], [], [], {}
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
            answer, figures = invoke(event)
            result = answer_body(answer)
        except ValueError as error:
            return Verdict(False, f"{name}: {error}")
        if not sent:
            cold = figures  # the new version's first request: its cold start
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
        sent.append(Sent(event, photo, top1))
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
    measuring = Measuring(gate, template, sent, seconds_left)
    try:
        return within_cost(measuring, invoke, live, cold, Verdict(True, summary, figures))
    except ValueError as error:  # the cost could not be measured, or the time ran out: never a pass
        return Verdict(False, f"cost: {error}", figures)


def figure(figures: Figures, key: str) -> float:
    value = figures.get(key)
    if value is None or not math.isfinite(value) or value < 0:
        raise ValueError("Lambda reported no Duration or Max Memory Used: the cost cannot be checked")
    return value


@dataclass
class Measuring:
    """What measuring a version's cost needs: the gate, the event template, the check photos as
    sent (and their top-1, which every later answer must repeat) and the hook's remaining time."""

    gate: Gate
    template: dict[str, Any]
    sent: list[Sent]
    seconds_left: Callable[[], float] | None = None

    def call(self, invoke: Invoke, event: dict[str, Any]) -> tuple[dict[str, Any], Figures]:
        if self.seconds_left is not None and self.seconds_left() < REPORT_MARGIN_S:
            raise OutOfTime("out of time while measuring the cost")
        answer, figures = invoke(event)
        return answer_body(answer), figures

    def photos(self, invoke: Invoke) -> dict[str, float]:
        """Warm: a request that warms the version (its figures discarded), then each check photo
        again, each answer the same top-1 as before: the median photo and the peak memory."""
        self.call(invoke, self.sent[0].event)
        durations, peaks = [], []
        for item in self.sent:
            result, figures = self.call(invoke, item.event)
            self.same_answer(result, item, "a check photo answered again")
            durations.append(figure(figures, "duration_ms"))
            peaks.append(figure(figures, "max_memory_mb"))
        return {"photo_ms": round(statistics.median(durations), 1), "peak_mb": max(peaks)}

    def batch(self, invoke: Invoke) -> dict[str, float]:
        """One request of the largest batch (the check photos, repeated), every image answered with
        its photo's top-1 by the expected model."""
        size = self.gate.cost.largest_batch if self.gate.cost else 1
        items = [self.sent[i % len(self.sent)] for i in range(size)]
        result, figures = self.call(invoke, batch_event(self.template, [item.photo for item in items]))
        results = result.get("results")
        if not isinstance(results, list) or len(results) != size:
            raise ValueError(f"the batch of {size} check photos was not answered image by image")
        for item, answered in zip(items, results, strict=True):
            if not isinstance(answered, dict):
                raise ValueError(f"the batch of {size}: an image was not answered")
            self.same_answer({**answered, "model": result.get("model")}, item, f"the batch of {size}")
        return {"batch_ms": figure(figures, "duration_ms"), "peak_mb": figure(figures, "max_memory_mb")}

    def same_answer(self, result: Any, item: Sent, where: str) -> None:
        """``result`` answers ``item`` as the first round did (model, top-1, finite probabilities)."""
        predictions = result.get("predictions") if isinstance(result, dict) else None
        model = result.get("model") if isinstance(result, dict) else None
        if not isinstance(predictions, list) or not predictions or not isinstance(predictions[0], dict):
            raise ValueError(f"{where}: an image was not answered")
        if not isinstance(model, dict) or {k: model.get(k) for k in ("name", "version")} != self.gate.model:
            raise ValueError(f"{where}: answered by model {model}, expected {self.gate.model}")
        probabilities = [p.get("probability") if isinstance(p, dict) else None for p in predictions]
        if not all(isinstance(v, (int, float)) and math.isfinite(v) for v in probabilities):
            raise ValueError(f"{where}: a probability that is not a number")
        if predictions[0].get("label") != item.top1:
            raise ValueError(f"{where}: top-1 {predictions[0].get('label')!r}, first answered {item.top1!r}")


def cold_figures(cold: Figures) -> dict[str, float]:
    """The new version's first request: Lambda's init (when it reported one) and that request."""
    init = cold.get("init_ms", 0.0)
    return {"init_ms": init, "cold_ms": round(init + figure(cold, "duration_ms"), 1)}


def cost_limits(cost: Cost, new: dict[str, float]) -> list[str]:
    """Each limit or recorded figure the new version's cost exceeds, with by how much."""
    largest = cost.largest_batch
    checks = [
        ("photo_ms", cost.image_budget_ms, "ms a photo: the per-image budget"),
        ("batch_ms", cost.batch_budget_ms, f"ms for a batch of {largest}: the request's budget"),
        ("peak_mb", cost.memory_mb, "MB: the function's memory size"),
        ("init_ms", INIT_LIMIT_MS, "ms of init: Lambda's init phase"),
        ("cold_ms", cost.api_ms, "ms for a new environment's first request: the API's limit"),
        (
            "photo_ms",
            cost.expected_image_ms + REQUEST_OVERHEAD_MS + IMAGE_OVERHEAD_MS,
            "ms a photo: the recorded cost",
        ),
        (
            "batch_ms",
            cost.expected_batch_ms + REQUEST_OVERHEAD_MS + IMAGE_OVERHEAD_MS * largest,
            f"ms for a batch of {largest}: the recorded cost",
        ),
        ("peak_mb", cost.expected_peak_mb, "MB: the recorded peak memory"),
        ("init_ms", cost.expected_load_ms + INIT_OVERHEAD_MS, "ms of init: the recorded load time"),
    ]
    return [
        f"{key} {new[key]:g} over {allowed:.0f} {what} (by {new[key] - allowed:.0f})"
        for key, allowed, what in checks
        if key in new and new[key] > allowed
    ]


def over_live(cost: Cost, new: dict[str, float], old: dict[str, float]) -> list[str]:
    """Each figure of the new version over the live version's on the same requests by more than
    the margin (and the noise slack); only the figures live could be measured for."""
    margin = cost.live_margin or 0.0
    slack = {
        "photo_ms": LIVE_SLACK_MS,
        "batch_ms": LIVE_SLACK_MS * cost.largest_batch,
        "peak_mb": LIVE_SLACK_MB,
    }
    return [
        f"{key} {new[key]:g} over the live version's {old[key]:g} + {margin:.0%}"
        for key in ("photo_ms", "batch_ms", "peak_mb")
        if key in old and new[key] > old[key] * (1 + margin) + slack[key]
    ]


def live_cost(measuring: Measuring, live: Invoke) -> tuple[dict[str, float], list[str]]:
    """What could be measured of the live version (its photos and its batch apart: a live version
    that refuses the new largest batch is still compared on its photos), and what could not."""
    figures, notes = {}, []
    for part in (measuring.photos, measuring.batch):
        try:
            measured_part = part(live)
        except OutOfTime:
            raise
        except ValueError as error:  # the live version's trouble is not the new one's: noted
            notes.append(f"{part.__name__}: {error}")
            continue
        figures.update({k: max(v, figures.get(k, v)) for k, v in measured_part.items()})
    return figures, notes


def within_cost(
    measuring: Measuring, invoke: Invoke, live: Invoke | None, cold: Figures, verdict: Verdict
) -> Verdict:
    """``verdict`` (the answers passed) unless the new version's cost is over a limit, its recorded
    cost or the live version's."""
    cost = measuring.gate.cost
    assert cost is not None
    new = cold_figures(cold)
    for part in (measuring.photos(invoke), measuring.batch(invoke)):
        new.update({k: max(v, new.get(k, v)) for k, v in part.items()})
    verdict.figures["cost"] = new
    problems = cost_limits(cost, new)
    if live is not None and cost.live_margin is not None:
        old, notes = live_cost(measuring, live)
        verdict.figures["live_cost"] = old
        if notes:
            verdict.figures["live_not_measured"] = notes
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
        api_ms=float(environ["API_MS"]),
        batch_budget_ms=float(environ["BATCH_BUDGET_MS"]),
        memory_mb=float(environ["MEMORY_MB"]),
        expected_image_ms=float(environ["EXPECTED_IMAGE_MS"]),
        expected_batch_ms=float(environ["EXPECTED_BATCH_MS"]),
        expected_peak_mb=float(environ["EXPECTED_PEAK_MB"]),
        expected_load_ms=float(environ["EXPECTED_LOAD_MS"]),
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
    try:  # whatever happens here, CodeDeploy is told: otherwise it waits an hour for the hook
        line = {"pre_traffic": status, "reason": verdict.reason, "version": environ.get("TARGET_VERSION_ARN")}
        print(json.dumps(line | verdict.figures, default=str))
    finally:
        codedeploy_client.put_lifecycle_event_hook_execution_status(
            deploymentId=event.get("DeploymentId"),
            lifecycleEventHookExecutionId=event.get("LifecycleEventHookExecutionId"),
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
