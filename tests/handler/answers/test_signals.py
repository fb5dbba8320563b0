"""The rollout signals: one EMF blob per invocation, dimensioned by the version that ran it, 0 or 1
per sample (so a rollback alarm's Average is a rate and its SampleCount the requests)."""

from __future__ import annotations

import json

from localaws.context import LocalContext
from localaws.events import http_event, rest_event, s3_event, sqs_event


def signals_in(printed: str) -> list[dict]:
    """The EMF blobs that carry a version (the function's other metrics are a blob of their own)."""
    blobs = [json.loads(line) for line in printed.splitlines() if line.startswith('{"_aws"')]
    return [blob for blob in blobs if "version" in blob]


def dimensions(blob: dict) -> list[list[str]]:
    return [d for metric in blob["_aws"]["CloudWatchMetrics"] for d in metric["Dimensions"]]


def test_each_answer_is_a_sample_of_its_version(app, grace_hopper, monkeypatch, capsys) -> None:
    monkeypatch.setenv("AWS_LAMBDA_FUNCTION_VERSION", "7")
    capsys.readouterr()
    body = {"body": grace_hopper, "headers": {"Content-Type": "image/jpeg"}}
    assert app.api_handler(rest_event("POST", "/predict", **body), LocalContext())["statusCode"] == 200
    assert app.api_handler(http_event("GET", "/nope"), LocalContext())["statusCode"] == 404
    (ok, not_found) = signals_in(capsys.readouterr().out)
    assert (ok["version"], ok["service"], ok["AnswerFailed"]) == ("7", "image-recognition", [0.0])
    assert not_found["AnswerFailed"] == [0.0], "a client's mistake is not the version's failure"
    assert [sorted(d) for d in dimensions(ok)] == [["function", "service", "version"]], "no backend"
    assert ok["function"] == "local", "outside Lambda (AWS_LAMBDA_FUNCTION_NAME names it there)"
    assert "ModelUncertain" not in ok, "no confidence threshold: no uncertainty to count"


def test_a_handled_500_is_a_failure_of_the_version_that_answered_it(app, grace_hopper, monkeypatch, capsys):
    def explode(*args, **kwargs):
        raise RuntimeError("a bug")

    monkeypatch.setattr(app.runtime.recognizer, "classify", explode)
    monkeypatch.setenv("AWS_LAMBDA_FUNCTION_VERSION", "8")
    capsys.readouterr()
    body = {"body": grace_hopper, "headers": {"Content-Type": "image/jpeg"}}
    assert app.api_handler(rest_event("POST", "/predict", **body), LocalContext())["statusCode"] == 500
    (blob,) = signals_in(capsys.readouterr().out)
    assert (blob["version"], blob["AnswerFailed"]) == ("8", [1.0])


def test_each_prediction_under_a_threshold_is_a_sample(configure, grace_hopper, cat, capsys) -> None:
    """With a confidence threshold, one sample per image of a batch: uncertain (1) or not (0)."""
    import base64

    function = configure(min_confidence=0.9)  # grace_hopper ~0.92, the cat ~0.78
    images = [base64.b64encode(photo).decode() for photo in (grace_hopper, cat)]
    event = rest_event("POST", "/predict", body=json.dumps({"images": images}).encode(),
                       headers={"Content-Type": "application/json"})  # fmt: skip
    capsys.readouterr()
    assert function.api_handler(event, LocalContext())["statusCode"] == 200
    answered, blob = signals_in(capsys.readouterr().out)
    assert blob["ModelUncertain"] == [0.0, 1.0] and blob["version"] == "$LATEST"
    # One metric, two views: the rollout alarm's (this version) and the drift alarm's (this model),
    # in a blob of its own: the model's view is not given to the answers' other signals.
    assert [sorted(d) for d in dimensions(blob)] == [
        ["function", "service", "version"],
        ["model", "model_version", "service"],
    ]
    assert (blob["model"], blob["model_version"]) == ("mobilenet_v2", "1.0.0")
    assert answered["AnswerFailed"] == [0.0] and "model" not in answered


def test_an_invocation_never_publishes_under_the_last_ones_dimensions(configure, grace_hopper, capsys):
    """Past Powertools' own flush at 100 values, the blob is empty but keeps its dimensions; the
    next invocation (another model, another version) must not inherit them."""
    from handler.answers import signals

    first = {"name": "old-model", "version": "1"}
    exactly_100 = signals.measured(
        lambda event, context: signals.predictions([{"uncertain": True}] * 100, first)
    )
    exactly_100({}, LocalContext())  # Powertools printed at 100: nothing left for the end to print
    capsys.readouterr()
    function = configure(min_confidence=0.9)
    body = {"body": grace_hopper, "headers": {"Content-Type": "image/jpeg"}}
    assert function.api_handler(rest_event("POST", "/predict", **body), LocalContext())["statusCode"] == 200
    blob = next(b for b in signals_in(capsys.readouterr().out) if "ModelUncertain" in b)
    assert (blob["model"], blob["model_version"], blob["ModelUncertain"]) == ("mobilenet_v2", "1.0.0", [0.0])


def test_a_stored_photo_under_a_threshold_is_a_sample_too(
    configure, s3_client, bucket, grace_hopper, capsys
) -> None:
    """Every door's predictions are sampled, not only the API's: the worker's records too."""
    function = configure(min_confidence=0.99)
    s3_client.put_object(Bucket=bucket, Key="uploads/g.jpg", Body=grace_hopper)
    etag = s3_client.head_object(Bucket=bucket, Key="uploads/g.jpg")["ETag"].strip('"')
    capsys.readouterr()
    function.s3_handler(
        sqs_event([s3_event(bucket, [("uploads/g.jpg", etag, len(grace_hopper))])]), LocalContext()
    )
    batch, blob = signals_in(capsys.readouterr().out)
    assert blob["ModelUncertain"] == [1.0] and batch["BatchFailed"] == [0.0]


def test_a_worker_batch_is_a_sample_failed_only_when_it_could_not_run(app, monkeypatch, capsys) -> None:
    """A batch whose objects are gone still ran (error records): 0. One that raised: 1."""
    event = sqs_event([s3_event("no-such-bucket", [("uploads/missing.jpg", "etag", 10)])])
    capsys.readouterr()
    app.s3_handler(event, LocalContext())
    monkeypatch.setattr("handler.records.notifications.process", lambda *args, **kwargs: 1 / 0)
    app.s3_handler(event, LocalContext())
    ran, raised = signals_in(capsys.readouterr().out)
    assert (ran["BatchFailed"], raised["BatchFailed"]) == ([0.0], [1.0])


def test_metrics_off_keeps_no_signal(app, grace_hopper, monkeypatch, capsys) -> None:
    """With POWERTOOLS_METRICS_DISABLED (``imgrec serve``), nothing is kept, even past the 100
    values at which Powertools prints a blob by itself."""
    monkeypatch.setenv("POWERTOOLS_METRICS_DISABLED", "true")
    event = rest_event("POST", "/predict", body=grace_hopper, headers={"Content-Type": "image/jpeg"})
    capsys.readouterr()
    for _ in range(101):
        app.api_handler(http_event("GET", "/health"), LocalContext())
    assert app.api_handler(event, LocalContext())["statusCode"] == 200
    assert not signals_in(capsys.readouterr().out)
