"""The pre-traffic hook against the real handler: it lets a good version take traffic and stops one
whose model answers the wrong label, the wrong model version, or an error. Only the AWS clients
(Lambda invoke, CodeDeploy) are stand-ins: the invoked "version" is the real function."""

from __future__ import annotations

import io
import json

import pytest

from devtools.context import LocalContext
from hooks import pre_traffic

ENV = {
    "TARGET_VERSION_ARN": "arn:aws:lambda:us-east-1:123456789012:function:api:7",
    "EXPECTED_TOP1": "military_uniform",
    "EXPECTED_MODEL_NAME": "mobilenet_v2",
    "EXPECTED_MODEL_VERSION": "1.0.0",
}
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


def run(entry_point, env=ENV, **fake) -> tuple[str, FakeLambda, FakeCodeDeploy]:
    lambda_client, codedeploy = FakeLambda(entry_point, **fake), FakeCodeDeploy()
    status = pre_traffic.run(HOOK_EVENT, lambda_client, codedeploy, dict(env))
    return status, lambda_client, codedeploy


def test_a_good_version_takes_traffic(app) -> None:
    status, lambda_client, codedeploy = run(app.api_handler)
    assert status == "Succeeded"
    assert lambda_client.invoked == [ENV["TARGET_VERSION_ARN"]], "the new version, by its ARN"
    assert codedeploy.reported == [
        {"deploymentId": "d-EXAMPLE", "lifecycleEventHookExecutionId": "hook-1", "status": "Succeeded"}
    ]


@pytest.mark.parametrize(
    ("env", "reason"),
    [
        (
            {**ENV, "EXPECTED_TOP1": "golden_retriever"},
            "top-1 'military_uniform', expected 'golden_retriever'",
        ),
        ({**ENV, "EXPECTED_MODEL_VERSION": "2.0.0"}, "expected {'name': 'mobilenet_v2', 'version': '2.0.0'}"),
    ],
)
def test_a_version_with_the_wrong_label_or_model_is_stopped(app, env, reason, capsys) -> None:
    status, _, codedeploy = run(app.api_handler, env)
    assert status == "Failed" and codedeploy.reported[0]["status"] == "Failed"
    assert reason in capsys.readouterr().out


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


def test_without_an_expected_label_status_and_model_still_count(app) -> None:
    status, _, _ = run(app.api_handler, {**ENV, "EXPECTED_TOP1": ""})
    assert status == "Succeeded"
