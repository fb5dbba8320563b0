"""Capture, feedback and drift on the synthesized template: where captures go and for how long, who
may write them, the POST /feedback route on both API types, and the drift alarms built from a
model card's validation baseline.

The session's default template (fast tier) has capture off and the ImageNet export (no baseline);
the templates built here around small model directories (``aws_shape``) have a baseline."""

from __future__ import annotations

import hashlib
import io
import json
import re
from pathlib import Path

import pytest
from aws_cdk.assertions import Template
from PIL import Image

from handler.contract import ROUTES, top_class_metric
from handler.recognition import manifest
from infra.components.api import FEEDBACK
from infra.settings import CAPTURE_PREFIX, Settings
from layers.model import manifest_writer
from tests.support import MODEL_DIR, functions, only, template_for

own_template = pytest.mark.aws_shape  # synthesizes a template beside the session's
COMMANDS = ("handler.app.api_handler", "handler.app.s3_handler", "handler.app.bulk_handler")

# A 3-class model whose labels need sanitizing in metric names, and a 10-class one (the most the
# handler emits TopClass_ metrics for) without a min_confidence (no uncertain rate).
INSECTS = ["ants", "honey bee", "wasps"]
INSECT_BASELINE = {
    "split": "validation",
    "predictions": 120,
    "mean_top1_confidence": 0.91,
    "uncertain_rate": 0.12,
    "top_class_share": {"ants": 0.5, "honey bee": 0.3, "wasps": 0.2},
}
DIGITS = [f"digit {n}" for n in range(10)]
DIGIT_BASELINE = {
    "split": "validation",
    "predictions": 1000,
    "mean_top1_confidence": 0.97,
    "uncertain_rate": None,
    "top_class_share": {label: 0.1 for label in DIGITS},
}


def model_dir(target: Path, name: str, labels: list[str], card: dict | None) -> Path:
    """A model directory ``manifest.validate`` accepts (synth never loads the model itself)."""
    target.mkdir(parents=True)
    (target / "labels.json").write_text(json.dumps(labels))
    (target / "model.tflite").write_bytes(b"not a real model: synth checks its sha256 only")
    fields = {
        "name": name,
        "version": "2.1.0",
        "input": manifest_writer.INPUT,
        "preprocessing": manifest_writer.PREPROCESSING,
        "output": {"classes": len(labels)},
        "artifacts": {"tflite": "model.tflite"},
        **({"card": card} if card is not None else {}),
        # What the ImageNet export measured: synth reads the cost a build recorded, never the model.
        "cost": manifest.read(MODEL_DIR)["cost"],
    }
    written = manifest_writer.write(target, fields, ["labels.json", "model.tflite"])
    manifest.validate(target)
    check_set(target, written, labels)
    return target


def check_set(target: Path, fields: dict, labels: list[str]) -> None:
    """The smallest check set the pre-traffic gate's synth checks accept: two tiny photos."""
    from training import checkset

    (target / checkset.CHECK_DIR).mkdir()
    photos = []
    for index, label in enumerate(labels[:2]):
        buffer = io.BytesIO()
        Image.new("RGB", (8, 8), (index * 90, 40, 200)).save(buffer, "JPEG")
        name = f"{index:03d}.jpg"
        (target / checkset.CHECK_DIR / name).write_bytes(buffer.getvalue())
        photos.append(
            {
                "file": name,
                "label": label,
                "sha256": hashlib.sha256(buffer.getvalue()).hexdigest(),
                "recorded": {"fp32": [{"label": label, "probability": 0.9}]},
            }
        )
    document = {
        "format": checkset.FORMAT,
        "model": checkset.model_identity(target, fields),
        "expected_accuracy": 1.0,
        "accuracy_when_recorded": {"fp32": 1.0},
        "photos": photos,
    }
    (target / checkset.CHECK_DIR / checkset.CHECK_FILE).write_text(json.dumps(document))


@pytest.fixture(scope="module")
def insects(tmp_path_factory: pytest.TempPathFactory) -> Template:
    """REST API, capture on in the uploads bucket, every capture, feedback and drift setting changed."""
    directory = model_dir(
        tmp_path_factory.mktemp("models") / "insects", "insects", INSECTS, {"baseline": INSECT_BASELINE}
    )
    context = {
        "modelDir": str(directory),
        "captureRate": "0.05",
        "captureUncertainRate": "0.5",
        "captureExpiryDays": "14",
        "feedbackThrottleRateLimit": "3",
        "feedbackThrottleBurstLimit": "6",
        "feedbackAuth": "none",
        "driftUncertainRatePoints": "10",
        "driftClassSharePoints": "25",
        "driftMinPredictions": "200",
        "driftPeriodMinutes": "120",
    }
    return template_for(context)


@pytest.fixture(scope="module")
def digits(tmp_path_factory: pytest.TempPathFactory) -> Template:
    """HTTP API, captures into an existing bucket, a 10-class model with no uncertain rate."""
    directory = model_dir(
        tmp_path_factory.mktemp("models") / "digits", "digits", DIGITS, {"baseline": DIGIT_BASELINE}
    )
    return template_for(
        {
            "modelDir": str(directory),
            "apiType": "http",
            "enableWaf": "false",
            "captureRate": "0.2",
            "captureBucket": "team-captures",
        }
    )


def as_list(value) -> list:
    return value if isinstance(value, list) else [value]


def env_of(template: Template, command: str) -> dict:
    return functions(template)[command]["Properties"]["Environment"]["Variables"]


def s3_grants(template: Template, command: str) -> dict[str, list[str]]:
    """``{action: [resource as JSON]}`` of the S3 statements of the function running ``command``."""
    role = functions(template)[command]["Properties"]["Role"]["Fn::GetAtt"][0]
    grants: dict[str, list[str]] = {}
    for policy in template.find_resources("AWS::IAM::Policy").values():
        if {"Ref": role} not in policy["Properties"]["Roles"]:
            continue
        for statement in policy["Properties"]["PolicyDocument"]["Statement"]:
            for action in as_list(statement["Action"]):
                if action.startswith("s3:"):
                    grants.setdefault(action, []).extend(
                        json.dumps(r) for r in as_list(statement["Resource"])
                    )
    return grants


def capture_grants(template: Template, command: str) -> dict[str, list[str]]:
    """The S3 object actions of that function on ``capture/*``."""
    found = {
        action: [r for r in resources if r.endswith(f'/{CAPTURE_PREFIX}*"]]}}')]
        for action, resources in s3_grants(template, command).items()
    }
    return {action: resources for action, resources in found.items() if resources}


def uploads_lifecycle(template: Template) -> dict[str, dict]:
    bucket = next(
        b
        for b in template.find_resources("AWS::S3::Bucket").values()
        if "VersioningConfiguration" in b["Properties"]
    )
    return {rule["Id"]: rule for rule in bucket["Properties"]["LifecycleConfiguration"]["Rules"]}


def drift_alarms(template: Template) -> dict[str, dict]:
    return {
        name: alarm["Properties"]
        for logical_id, alarm in template.find_resources("AWS::CloudWatch::Alarm").items()
        for name in ("ModelUncertainRateDrift", "ModelClassMixDrift")
        if name in logical_id
    }


def queries(alarm: dict) -> dict[str, dict]:
    return {query["Id"]: query for query in alarm["Metrics"]}


# --- Capture: storage, expiry, environment, permissions (the session's default template).


def test_every_answering_function_gets_the_capture_settings_off_by_default(template: Template) -> None:
    for command in COMMANDS:
        env = env_of(template, command)
        assert (env["CAPTURE_RATE"], env["CAPTURE_UNCERTAIN_RATE"]) == ("0", "0")
        assert env["CAPTURE_PREFIX"] == CAPTURE_PREFIX == "capture/"
        assert env["CAPTURE_BUCKET"] == env["UPLOADS_BUCKET"], "the uploads bucket, even when off (404s)"


def test_captures_expire_with_their_old_versions(template: Template) -> None:
    rule = uploads_lifecycle(template)["expire-capture"]
    assert rule["Prefix"] == CAPTURE_PREFIX and rule["Status"] == "Enabled"
    assert rule["ExpirationInDays"] == Settings().capture_expiry_days == 90
    assert rule["NoncurrentVersionExpiration"] == {"NoncurrentDays": 1}


def test_captures_never_reach_the_worker(shaped: tuple[Template, Settings]) -> None:
    """The bucket's notifications all filter on the uploads prefix, which is not under capture/."""
    template, settings = shaped
    config = only(template, "Custom::S3BucketNotifications")["Properties"]["NotificationConfiguration"]
    prefixes = {
        rule["Value"]
        for queue in config["QueueConfigurations"]
        for rule in queue["Filter"]["Key"]["FilterRules"]
        if rule["Name"] == "prefix"
    }
    assert prefixes == {settings.uploads_prefix}
    assert len(prefixes) == 1 and len(config["QueueConfigurations"]) == len(
        [q for q in config["QueueConfigurations"] if "prefix" in json.dumps(q)]
    ), "every notification has a prefix filter"
    assert not CAPTURE_PREFIX.startswith(settings.uploads_prefix)


def test_with_capture_off_only_the_api_touches_capture(template: Template) -> None:
    """Feedback on earlier captures still lands and an unknown id is a 404 (ListBucket), while the
    workers, which capture nothing, get no right there."""
    api = capture_grants(template, "handler.app.api_handler")
    assert set(api) == {"s3:GetObject", "s3:PutObject"}
    listing = [
        s
        for p in template.find_resources("AWS::IAM::Policy").values()
        for s in p["Properties"]["PolicyDocument"]["Statement"]
        if s.get("Condition") == {"StringLike": {"s3:prefix": [f"{CAPTURE_PREFIX}*"]}}
    ]
    assert len(listing) == 1 and listing[0]["Action"] == "s3:ListBucket"
    for command in COMMANDS[1:]:
        assert capture_grants(template, command) == {}


def test_the_dashboard_shows_the_model_and_capture(template: Template) -> None:
    body = json.dumps(only(template, "AWS::CloudWatch::Dashboard")["Properties"]["DashboardBody"])
    for needle in ("Top1Confidence", "ModelUncertain", "CaptureStored", "CaptureFailed", "FeedbackStored"):
        assert needle in body, needle
    assert "TopClass_" not in body, "the ImageNet export has 1000 classes: no share per class"
    assert '\\"model\\",\\"mobilenet_v2\\",\\"model_version\\",\\"1.0.0\\"' in body


def test_without_a_card_baseline_there_is_no_drift_alarm(template: Template) -> None:
    assert drift_alarms(template) == {}


# --- POST /feedback on both API types.


def test_feedback_is_a_route_of_the_contract() -> None:
    """The handler's router answers exactly ``ROUTES`` (tests/handler/http/test_openapi.py); the
    stack creates exactly those on either API type."""
    assert FEEDBACK in ROUTES


def test_feedback_on_the_rest_api_validates_a_json_body(template: Template) -> None:
    resources = template.find_resources("AWS::ApiGateway::Resource")
    (feedback_id,) = [i for i, r in resources.items() if r["Properties"]["PathPart"] == "feedback"]
    (method,) = [
        m["Properties"]
        for m in template.find_resources("AWS::ApiGateway::Method").values()
        if m["Properties"]["HttpMethod"] == "POST" and m["Properties"]["ResourceId"] == {"Ref": feedback_id}
    ]
    assert method["Integration"]["Type"] == "AWS_PROXY"
    assert method["RequestParameters"] == {"method.request.header.Content-Type": True}
    assert "RequestValidatorId" in method
    model_ref = method["RequestModels"]["application/json"]
    model = only(template, "AWS::ApiGateway::Model")["Properties"]
    assert model_ref == {"Ref": next(iter(template.find_resources("AWS::ApiGateway::Model")))}
    assert model["ContentType"] == "application/json"
    assert model["Schema"]["required"] == ["prediction_id", "label"]
    assert {p["type"] for p in model["Schema"]["properties"].values()} == {"string"}


def test_feedback_has_its_own_rest_throttle(template: Template) -> None:
    settings = only(template, "AWS::ApiGateway::Stage")["Properties"]["MethodSettings"]
    limits = {
        f"{m['HttpMethod']} {m['ResourcePath']}": (m["ThrottlingRateLimit"], m["ThrottlingBurstLimit"])
        for m in settings
    }
    assert limits["POST /~1feedback"] == (5, 10)


@own_template
def test_feedback_throttle_follows_the_context(insects: Template) -> None:
    template = insects
    settings = only(template, "AWS::ApiGateway::Stage")["Properties"]["MethodSettings"]
    (feedback,) = [m for m in settings if m["ResourcePath"] == "/~1feedback"]
    assert (feedback["HttpMethod"], feedback["ThrottlingRateLimit"], feedback["ThrottlingBurstLimit"]) == (
        "POST",
        3,
        6,
    )


@own_template
def test_feedback_on_the_http_api_with_its_own_throttle(digits: Template) -> None:
    routes = {r["Properties"]["RouteKey"] for r in digits.find_resources("AWS::ApiGatewayV2::Route").values()}
    assert "POST /feedback" in routes
    stage = only(digits, "AWS::ApiGatewayV2::Stage")["Properties"]
    assert stage["RouteSettings"]["POST /feedback"] == {"ThrottlingRateLimit": 5, "ThrottlingBurstLimit": 10}


# --- POST /feedback is a privileged write: IAM on that route only, on both API types.


def rest_methods(template: Template) -> dict[tuple[str, str], dict]:
    """``{(method, path part): properties}`` of the REST API's methods (CORS preflights aside)."""
    parts = {
        i: r["Properties"]["PathPart"]
        for i, r in template.find_resources("AWS::ApiGateway::Resource").items()
    }
    methods = {}
    for method in template.find_resources("AWS::ApiGateway::Method").values():
        properties = method["Properties"]
        if properties["HttpMethod"] != "OPTIONS":
            resource = properties["ResourceId"]
            methods[(properties["HttpMethod"], parts.get(resource.get("Ref"), "/"))] = properties
    return methods


def reviewer_grant(template: Template) -> tuple[dict, dict]:
    """(the reviewers' managed policy's one statement, the stack outputs naming the grant)."""
    policy_id, policy = next(iter(template.find_resources("AWS::IAM::ManagedPolicy").items()))
    (statement,) = policy["Properties"]["PolicyDocument"]["Statement"]
    outputs = {k: v for k, v in template.find_outputs("*").items() if k.startswith("Feedback")}
    assert outputs["FeedbackReviewerPolicyArn"]["Value"] == {"Ref": policy_id}
    assert outputs["FeedbackInvokeArn"]["Value"] == statement["Resource"]
    return statement, outputs


def test_on_the_rest_api_feedback_needs_iam_and_every_other_route_is_public(template: Template) -> None:
    methods = rest_methods(template)
    assert methods[("POST", "feedback")]["AuthorizationType"] == "AWS_IAM"
    others = {key: m["AuthorizationType"] for key, m in methods.items() if key != ("POST", "feedback")}
    assert len(others) == len(ROUTES) - 1 and set(others.values()) == {"NONE"}
    statement, _ = reviewer_grant(template)
    assert (statement["Effect"], statement["Action"]) == ("Allow", "execute-api:Invoke")
    arn = statement["Resource"]["Fn::Join"][1]
    assert (
        arn[-1] == "/prod/POST/feedback"
        and {"Ref": next(iter(template.find_resources("AWS::ApiGateway::RestApi")))} in arn
    )
    assert env_of(template, "handler.app.api_handler")["FEEDBACK_AUTH"] == "iam"


@own_template
def test_on_the_http_api_feedback_has_an_iam_authorizer_and_nothing_else_has(digits: Template) -> None:
    routes = {
        r["Properties"]["RouteKey"]: r["Properties"].get("AuthorizationType", "NONE")
        for r in digits.find_resources("AWS::ApiGatewayV2::Route").values()
    }
    assert routes.pop("POST /feedback") == "AWS_IAM"
    assert len(routes) == len(ROUTES) - 1 and set(routes.values()) == {"NONE"}
    statement, _ = reviewer_grant(digits)
    assert statement["Action"] == "execute-api:Invoke"
    assert statement["Resource"]["Fn::Join"][1][-1] == "/$default/POST/feedback"
    assert env_of(digits, "handler.app.api_handler")["FEEDBACK_AUTH"] == "iam"


@own_template
def test_feedback_auth_none_takes_the_authorizer_off_and_tells_the_function(insects: Template) -> None:
    assert rest_methods(insects)[("POST", "feedback")]["AuthorizationType"] == "NONE"
    insects.resource_count_is("AWS::IAM::ManagedPolicy", 0)
    assert not [k for k in insects.find_outputs("*") if k.startswith("Feedback")]
    assert env_of(insects, "handler.app.api_handler")["FEEDBACK_AUTH"] == "none"


# --- Capture switched on (own templates).


@own_template
def test_capture_settings_reach_every_answering_function(insects: Template) -> None:
    template = insects
    for command in COMMANDS:
        env = env_of(template, command)
        assert (env["CAPTURE_RATE"], env["CAPTURE_UNCERTAIN_RATE"]) == ("0.05", "0.5")
        assert env["CAPTURE_BUCKET"] == env["UPLOADS_BUCKET"]
    assert uploads_lifecycle(template)["expire-capture"]["ExpirationInDays"] == 14


@own_template
def test_with_capture_on_the_workers_may_only_put_under_capture(insects: Template) -> None:
    template = insects
    assert set(capture_grants(template, "handler.app.api_handler")) == {"s3:GetObject", "s3:PutObject"}
    for command in COMMANDS[1:]:
        assert set(capture_grants(template, command)) == {"s3:PutObject"}, command


@own_template
def test_an_existing_capture_bucket_is_imported_by_name(digits: Template) -> None:
    for command in COMMANDS:
        assert env_of(digits, command)["CAPTURE_BUCKET"] == "team-captures"
    expected = ':s3:::team-captures/capture/*"]]}'
    api = capture_grants(digits, "handler.app.api_handler")
    assert set(api) == {"s3:GetObject", "s3:PutObject"}
    assert all(r.endswith(expected) for resources in api.values() for r in resources)
    assert set(capture_grants(digits, "handler.app.s3_handler")) == {"s3:PutObject"}
    assert "expire-capture" not in uploads_lifecycle(digits), "that bucket's owner sets its lifecycle"
    assert len(digits.find_resources("AWS::S3::Bucket")) == 2, "no bucket created for it"


# --- Drift alarms from a card baseline (own templates).


def numbers(expression: str) -> list[float]:
    return [float(n) for n in re.findall(r"\d+\.\d+", expression)]


def check_metric(query: dict, name: str, stat: str, model: str, period: int) -> None:
    stat_block = query["MetricStat"]
    assert stat_block["Metric"]["MetricName"] == name
    assert stat_block["Metric"]["Namespace"] == "ImageRecognition"
    assert {d["Name"]: d["Value"] for d in stat_block["Metric"]["Dimensions"]} == {
        "service": "image-recognition",
        "model": model,
        "model_version": "2.1.0",
    }
    assert (stat_block["Stat"], stat_block["Period"]) == (stat, period)


@own_template
def test_uncertain_rate_drift_alarm(insects: Template) -> None:
    template = insects
    alarm = drift_alarms(template)["ModelUncertainRateDrift"]
    assert alarm["Threshold"] == 0.10  # driftUncertainRatePoints=10
    assert alarm["ComparisonOperator"] == "GreaterThanThreshold"
    assert alarm["TreatMissingData"] == "notBreaching"
    assert (alarm["EvaluationPeriods"], alarm["DatapointsToAlarm"]) == (3, 2)
    assert alarm["AlarmActions"] and alarm["OKActions"]
    by_id = queries(alarm)
    (watched,) = [q for q in by_id.values() if q.get("ReturnData", True) and "Expression" in q]
    assert watched["Expression"] == "IF(predictions >= 200, ABS(uncertain - 0.120000), 0)"
    check_metric(by_id["uncertain"], "ModelUncertain", "Average", "insects", 7200)
    check_metric(by_id["predictions"], "Top1Confidence", "SampleCount", "insects", 7200)


@own_template
def test_class_mix_drift_alarm(insects: Template) -> None:
    template = insects
    alarm = drift_alarms(template)["ModelClassMixDrift"]
    assert alarm["Threshold"] == 0.25  # driftClassSharePoints=25
    assert (alarm["EvaluationPeriods"], alarm["DatapointsToAlarm"]) == (3, 2)
    by_id = queries(alarm)
    watched = [q for q in by_id.values() if q.get("ReturnData") is not False]
    assert len(watched) == 1
    assert watched[0]["Expression"] == "IF(predictions >= 200, MAX([d0, d1]), 0)"
    # Each class against its own baseline share; "honey bee" is TopClass_honey_bee_<8 hex of it>.
    assert top_class_metric("honey bee").startswith("TopClass_honey_bee_")
    for i, label in enumerate(("ants", "honey bee", "wasps")):
        check_metric(by_id[f"c{i}"], top_class_metric(label), "Average", "insects", 7200)
        assert (
            f"ABS(c{i} - {INSECT_BASELINE['top_class_share'][label]:.6f})"
            in by_id[f"d{i // 2}"]["Expression"]
        )
    assert by_id["d0"]["Expression"] == (
        "(ABS(c0 - 0.500000) + ABS(c1 - 0.300000) + ABS(ABS(c0 - 0.500000) - ABS(c1 - 0.300000))) / 2"
    )
    assert by_id["d1"]["Expression"] == "ABS(c2 - 0.200000)"


@own_template
def test_ten_classes_fit_an_alarms_limits_and_no_rate_means_no_uncertain_alarm(digits: Template) -> None:
    alarms = drift_alarms(digits)
    assert set(alarms) == {"ModelClassMixDrift"}, "the baseline has no uncertain rate"
    alarm = alarms["ModelClassMixDrift"]
    assert alarm["Threshold"] == 0.20
    by_id = queries(alarm)
    metric_queries = [q for q in by_id.values() if "MetricStat" in q]
    expressions = [q for q in by_id.values() if "Expression" in q]
    assert len(metric_queries) <= 10 and len(expressions) <= 10, "CloudWatch's limits for one alarm"
    # Nine classes measured, the tenth is 1 minus the others (every prediction has one top class).
    assert {q["MetricStat"]["Metric"]["MetricName"] for q in metric_queries} == {
        *(top_class_metric(f"digit {n}") for n in range(9)),
        "Top1Confidence",
    }
    last = by_id["d4"]["Expression"]
    assert "ABS(1 - c0 - c1 - c2 - c3 - c4 - c5 - c6 - c7 - c8 - 0.100000)" in last
    assert by_id[next(i for i, q in by_id.items() if q.get("ReturnData") is not False)]["Expression"] == (
        "IF(predictions >= 100, MAX([d0, d1, d2, d3, d4]), 0)"
    )
    body = json.dumps(only(digits, "AWS::CloudWatch::Dashboard")["Properties"]["DashboardBody"])
    assert all(top_class_metric(f"digit {n}") in body for n in range(10)), (
        "every class's share on the dashboard"
    )


@own_template
def test_a_model_dir_without_baseline_has_no_drift_alarm(tmp_path: Path) -> None:
    directory = model_dir(tmp_path / "plain", "plain", ["cats", "dogs"], {"min_confidence": None})
    template = template_for({"modelDir": str(directory), "enableBackfill": "false"})
    assert drift_alarms(template) == {}
    body = json.dumps(only(template, "AWS::CloudWatch::Dashboard")["Properties"]["DashboardBody"])
    assert "TopClass_cats" in body and "TopClass_dogs" in body


def test_the_alarms_watch_as_many_classes_as_the_handler_emits() -> None:
    from handler.contract import WATCHED_CLASSES
    from infra.components.drift import MAX_TOP_CLASSES

    assert MAX_TOP_CLASSES == WATCHED_CLASSES  # the metric names come from handler.contract for both


# --- Bad settings fail the synth with a clear message.


@pytest.mark.parametrize(
    ("context", "message"),
    [
        ({"capture_rate": 1.5}, r"captureRate must be from 0 to 1"),
        ({"capture_rate": -0.1}, r"captureRate must be from 0 to 1"),
        ({"capture_uncertain_rate": "2"}, r"captureUncertainRate must be from 0 to 1"),
        ({"capture_uncertain_rate": "often"}, r"captureUncertainRate must be a number from 0 to 1 or empty"),
        ({"capture_expiry_days": 0}, r"captureExpiryDays must be at least 1"),
        ({"capture_bucket": "bucket/capture"}, r"captureBucket must be a bucket name"),
        ({"uploads_prefix": "capture/in/"}, r"uploadsPrefix 'capture/in/' overlaps the capture prefix"),
        ({"results_prefix": "capture/results/"}, r"resultsPrefix 'capture/results/' overlaps"),
        (
            {"feedback_throttle_rate_limit": 500},
            r"feedbackThrottleRateLimit must not exceed throttleRateLimit",
        ),
        ({"feedback_auth": "apikey"}, r"feedbackAuth must be one of \('iam', 'none'\)"),
        ({"drift_uncertain_rate_points": 0}, r"driftUncertainRatePoints must be above 0 and below 100"),
        ({"drift_class_share_points": 100}, r"driftClassSharePoints must be above 0 and below 100"),
        ({"drift_min_predictions": 0}, r"driftMinPredictions must be at least 1"),
        ({"drift_period_minutes": 481}, r"driftPeriodMinutes must be from 1 to 480"),
    ],
)
def test_bad_capture_and_drift_settings_are_refused(context: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Settings(**context)


def test_an_empty_uncertain_rate_follows_the_capture_rate() -> None:
    assert Settings(capture_rate=0.25).uncertain_rate == 0.25
    assert Settings(capture_rate=0.25, capture_uncertain_rate="1").uncertain_rate == 1.0
    assert not Settings().capture_on and Settings(capture_uncertain_rate="0.5").capture_on


def test_a_capture_bucket_elsewhere_frees_the_uploads_prefixes() -> None:
    Settings(uploads_prefix="capture/in/", capture_bucket="team-captures")  # no overlap in another bucket


def test_context_strings_become_rates(tmp_path: Path) -> None:
    from tests.support import app_with

    app = app_with({"captureRate": "0.3", "captureUncertainRate": "0.9", "driftClassSharePoints": "12.5"})
    settings = Settings.from_context(app.node)
    assert (settings.capture_rate, settings.uncertain_rate) == (0.3, 0.9)
    assert settings.drift_class_share_points == 12.5


@pytest.mark.parametrize(
    ("baseline", "message"),
    [
        ({**INSECT_BASELINE, "uncertain_rate": 1.5}, r"card\.baseline\.uncertain_rate' must be a number"),
        ({**INSECT_BASELINE, "top_class_share": {"ants": 0.5, "moths": 0.5}}, r"classes the model does not"),
        ({**INSECT_BASELINE, "top_class_share": {"ants": 0.5, "wasps": 0.1}}, r"must sum to 1, got 0\.6000"),
        ({**INSECT_BASELINE, "predictions": 0}, r"card\.baseline\.predictions' must be a positive integer"),
    ],
)
def test_a_malformed_baseline_fails_the_synth(tmp_path: Path, baseline: dict, message: str) -> None:
    from infra.components.drift import ServedModel

    directory = model_dir(tmp_path / "bad", "insects", INSECTS, {"baseline": baseline})
    with pytest.raises(
        ValueError, match=rf"modelDir {re.escape(str(directory))}: manifest field .*{message}"
    ):
        ServedModel.of(Settings(model_dir=str(directory)))
