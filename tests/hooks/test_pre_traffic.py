"""The pre-traffic quality gate against the real handler: it lets a good version take traffic and
stops one whose answers fall short of the model's check set (accuracy against the card's, each
photo's probability against the one recorded at build), that reports another model, or that errors;
and it stops each broken build a pipeline can ship (shuffled labels, preprocessing applied twice,
worse weights). Only the AWS clients (Lambda invoke, CodeDeploy) are stand-ins: the invoked
"version" is the real function."""

from __future__ import annotations

import io
import json
import shutil

import pytest

from devtools.bad_builds import BUILDS
from devtools.context import LocalContext
from handler.recognition import model
from hooks import pre_traffic
from tests.support import REPO

ENV = {
    "TARGET_VERSION_ARN": "arn:aws:lambda:us-east-1:123456789012:function:api:7",
    "EXPECTED_MODEL_NAME": "mobilenet_v2",
    "EXPECTED_MODEL_VERSION": "1.0.0",
    "MODEL_PRECISION": "fp32",
    "ACCURACY_TOLERANCE": "0.1",
    "PROBABILITY_TOLERANCE": "0.05",
}
CHECK = REPO / "build" / "model" / "check"  # the ImageNet export's check set (`make model`)
HOOK_EVENT = {"DeploymentId": "d-EXAMPLE", "LifecycleEventHookExecutionId": "hook-1"}


class FakeLambda:
    """Lambda's Invoke at the AWS boundary: runs the real entry point, as the version would."""

    def __init__(self, entry_point, function_error: bool = False) -> None:
        self.entry_point, self.function_error, self.invoked = entry_point, function_error, []

    def invoke(self, FunctionName: str, Payload: bytes) -> dict:
        self.invoked.append(FunctionName)
        answer = self.entry_point(json.loads(Payload), LocalContext())
        response = {"StatusCode": 200, "Payload": io.BytesIO(json.dumps(answer).encode())}
        return response | ({"FunctionError": "Unhandled"} if self.function_error else {})


class FakeCodeDeploy:
    def __init__(self) -> None:
        self.reported: list[dict] = []

    def put_lifecycle_event_hook_execution_status(self, **status) -> None:
        self.reported.append(status)


def run(entry_point, env=ENV, check=CHECK, **fake) -> tuple[str, FakeLambda, FakeCodeDeploy]:
    lambda_client, codedeploy = FakeLambda(entry_point, **fake), FakeCodeDeploy()
    status = pre_traffic.run(HOOK_EVENT, lambda_client, codedeploy, dict(env), check)
    return status, lambda_client, codedeploy


def logged(capsys) -> dict:
    """The hook's verdict line (its log in Lambda)."""
    return json.loads(capsys.readouterr().out.strip().splitlines()[-1])


def test_a_good_version_takes_traffic(app, capsys) -> None:
    status, lambda_client, codedeploy = run(app.api_handler)
    assert status == "Succeeded"
    assert lambda_client.invoked == [ENV["TARGET_VERSION_ARN"]] * 2, "each check photo, to the new version"
    assert codedeploy.reported == [
        {"deploymentId": "d-EXAMPLE", "lifecycleEventHookExecutionId": "hook-1", "status": "Succeeded"}
    ]
    line = logged(capsys)
    assert (line["pre_traffic"], line["photos"], line["accuracy"], line["required_accuracy"]) == (
        "Succeeded",
        2,
        1.0,
        0.9,
    )
    assert line["max_probability_drift"] <= 0.001, "the same model answers what was recorded"
    assert [a["top1"] for a in line["answers"]] == ["military_uniform", "Egyptian_cat"]


def test_a_version_reporting_another_model_is_stopped(app, capsys) -> None:
    status, _, codedeploy = run(app.api_handler, {**ENV, "EXPECTED_MODEL_VERSION": "2.0.0"})
    assert status == "Failed" and codedeploy.reported[0]["status"] == "Failed"
    assert "expected {'name': 'mobilenet_v2', 'version': '2.0.0'}" in logged(capsys)["reason"]


def answering(probabilities: dict[str, list[tuple[str, float]]]):
    """A version that answers each check photo (by its recorded top-1) with these predictions."""
    recorded = json.loads((CHECK / "check.json").read_text())["photos"]
    by_body = {(CHECK / p["file"]).read_bytes(): p["recorded"]["fp32"][0]["label"] for p in recorded}

    def entry_point(event, context):
        import base64

        label = by_body[base64.b64decode(event["body"])]
        predictions = [{"label": name, "probability": value} for name, value in probabilities[label]]
        body = {"predictions": predictions, "model": {"name": "mobilenet_v2", "version": "1.0.0"}}
        return {"statusCode": 200, "body": json.dumps(body)}

    return entry_point


def recorded_top1() -> dict[str, float]:
    photos = json.loads((CHECK / "check.json").read_text())["photos"]
    return {p["recorded"]["fp32"][0]["label"]: p["recorded"]["fp32"][0]["probability"] for p in photos}


@pytest.mark.parametrize(
    ("shift", "verdict"), [(0.049, "Succeeded"), (-0.049, "Succeeded"), (0.051, "Failed")]
)
def test_a_probability_may_move_within_the_tolerance_only(shift, verdict, capsys) -> None:
    """The recorded top-1 probability of each photo, moved by ``shift``: right labels throughout."""
    answers = {
        label: [(label, p + shift if label == "Egyptian_cat" else p)] for label, p in recorded_top1().items()
    }
    status, _, _ = run(answering(answers))
    line = logged(capsys)
    assert status == verdict, line
    assert line["max_probability_drift"] == pytest.approx(abs(shift), abs=1e-3)


def test_a_recorded_class_missing_from_the_answer_counts_as_probability_zero(capsys) -> None:
    answers = {label: [(label, p)] for label, p in recorded_top1().items()}
    answers["Egyptian_cat"] = [("tabby", 0.9)]  # a wrong top-1, and its recorded class absent
    status, _, _ = run(answering(answers))
    line = logged(capsys)
    assert status == "Failed" and line["accuracy"] == 0.5 and line["required_accuracy"] == 0.9
    assert line["max_probability_drift"] == pytest.approx(recorded_top1()["Egyptian_cat"], abs=1e-4)


def test_accuracy_may_fall_below_the_cards_by_the_tolerance_only(tmp_path, capsys) -> None:
    """An expected accuracy of 0.6 with a 0.1 tolerance: 1 photo of 2 right (0.5) passes, as it is
    the required 0.5; with a 0.05 tolerance it does not."""
    check = tmp_path / "check"
    shutil.copytree(CHECK, check)
    document = json.loads((check / "check.json").read_text())
    document["expected_accuracy"] = 0.6
    (check / "check.json").write_text(json.dumps(document))
    answers = {label: [(label, p)] for label, p in recorded_top1().items()}
    answers["Egyptian_cat"] = [("tabby", 0.5), ("Egyptian_cat", recorded_top1()["Egyptian_cat"])]
    assert run(answering(answers), check=check)[0] == "Succeeded"
    assert run(answering(answers), {**ENV, "ACCURACY_TOLERANCE": "0.05"}, check=check)[0] == "Failed"
    assert logged(capsys)["required_accuracy"] == 0.55


def test_a_version_that_errors_is_stopped(app, capsys) -> None:
    def broken(event, context):
        raise RuntimeError("model file missing")

    status, _, _ = run(broken)
    assert status == "Failed" and "RuntimeError: model file missing" in capsys.readouterr().out
    status, _, _ = run(app.api_handler, function_error=True)  # Lambda reports a function error
    assert status == "Failed"


def test_a_version_that_answers_an_error_status_is_stopped(app, capsys) -> None:
    def refusing(event, context):
        return {"statusCode": 503, "body": '{"error": "warming up", "code": "unavailable"}'}

    status, _, _ = run(refusing)
    assert status == "Failed" and "status 503" in capsys.readouterr().out


@pytest.fixture(scope="module")
def bad_builds(tmp_path_factory) -> dict:
    """Each broken build of the ImageNet export, under its name and version (TensorFlow rebuilds two)."""
    root = tmp_path_factory.mktemp("bad-builds")
    good = REPO / "build" / "model"
    return {name: make(good, root / name.replace(" ", "-")) for name, make in BUILDS.items()}


@pytest.mark.slow
@pytest.mark.parametrize(
    ("build", "why"),
    [
        ("shuffled labels", "accuracy"),  # right weights: every answer names another class
        ("double-scaled input", "accuracy"),  # garbage in: no photo right, nothing confident
        ("worse weights", "drift"),  # right labels here, far less sure of them than the card's model
    ],
)
def test_a_bad_build_never_takes_traffic(configure, bad_builds, build, why, capsys) -> None:
    """The rehearsal: the real function serving the broken build, the hook holding it to the good
    build's check set (what synth put in its asset)."""
    function = configure(model=model.load_classifier(bad_builds[build], "litert", threads=2))
    status, _, codedeploy = run(function.api_handler)
    line = logged(capsys)
    assert status == "Failed" and codedeploy.reported[0]["status"] == "Failed", line
    assert line["max_probability_drift"] > line["allowed_drift"], line
    if why == "accuracy":
        assert line["accuracy"] == 0.0 and line["required_accuracy"] == 0.9, line
    else:
        assert line["accuracy"] == 1.0 and line["max_probability_drift"] > 0.3, line


def test_a_probability_that_is_not_a_number_is_stopped(capsys) -> None:
    """NaN compares false with everything: never let it through a max() or a threshold."""
    answers = {label: [(label, p)] for label, p in recorded_top1().items()}
    answers["Egyptian_cat"] = [("Egyptian_cat", float("nan"))]
    status, _, _ = run(answering(answers))
    assert status == "Failed" and "not a number" in logged(capsys)["reason"]


def test_a_check_photo_swapped_in_the_asset_is_stopped(tmp_path, capsys) -> None:
    check = tmp_path / "check"
    shutil.copytree(CHECK, check)
    first = json.loads((check / "check.json").read_text())["photos"][0]["file"]
    (check / first).write_bytes((CHECK / "001-Egyptian_cat.jpg").read_bytes())
    status, lambda_client, _ = run(answering({}), check=check)
    assert status == "Failed" and "not the photo that was recorded" in logged(capsys)["reason"]
    assert not lambda_client.invoked, "nothing sent"


def test_the_hook_reports_before_its_own_timeout(app, capsys) -> None:
    """With less than its margin left, it stops and reports Failed (CodeDeploy would otherwise wait
    an hour for a hook that timed out)."""
    lambda_client, codedeploy = FakeLambda(app.api_handler), FakeCodeDeploy()
    left = iter([300.0, pre_traffic.REPORT_MARGIN_S - 1])
    status = pre_traffic.run(HOOK_EVENT, lambda_client, codedeploy, dict(ENV), CHECK, lambda: next(left))
    assert status == "Failed" and codedeploy.reported[0]["status"] == "Failed"
    assert logged(capsys)["reason"] == "out of time after 1 of 2 check photos"


def test_the_hook_asks_for_as_many_classes_as_were_recorded() -> None:
    event = pre_traffic.photo_event({"headers": {}}, b"\xff\xd8\xff", 2)
    assert event["queryStringParameters"] == {"top_k": "2"} and event["rawQueryString"] == "top_k=2"


def test_the_gates_check_photos_are_neither_captured_nor_counted_as_production(
    configure, s3_client, bucket, capsys
) -> None:
    """With capture on, the gate's own requests (marked in requestContext, which API Gateway builds
    and no client can set) leave nothing in S3 and no model-health sample."""
    from handler.contract import QUALITY_GATE_MARK

    assert pre_traffic.QUALITY_GATE_MARK == QUALITY_GATE_MARK, "the hook and the function agree"
    capturing = configure(s3_client=s3_client, uploads_bucket=bucket, capture_rate=1.0)
    capsys.readouterr()
    status, _, _ = run(capturing.api_handler)
    assert status == "Succeeded"
    assert s3_client.list_objects_v2(Bucket=bucket, Prefix="capture/")["KeyCount"] == 0
    printed = capsys.readouterr().out
    assert "model_version" not in printed and "Top1Confidence" not in printed
