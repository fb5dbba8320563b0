"""CodeDeploy rollouts of alias live (config per context value, rollback alarms, the pre-traffic
hook and its permissions), the HTTP API flavour, and stages as separate stacks.

Assertions on the session's default template are the fast tier; every test that synthesizes a
template or an app of its own is ``aws_shape``."""

from __future__ import annotations

import json

import pytest
from aws_cdk.assertions import Template

from handler.contract import ROUTES
from tests.support import REPO, alias_of, app_with, only, template_for

own_template = pytest.mark.aws_shape  # synthesizes a template beside the session's


def groups(template: Template) -> dict[str, dict]:
    """Deployment groups by the alias they shift: ``api`` or ``worker``."""
    found = {
        "api" if logical_id.startswith("DeliveryApi") else "worker": group["Properties"]
        for logical_id, group in template.find_resources("AWS::CodeDeploy::DeploymentGroup").items()
    }
    assert len(found) == 2 and set(found) == {"api", "worker"}
    return found


@pytest.mark.parametrize(
    ("deployment", "config"),
    [
        ("canary", "CodeDeployDefault.LambdaCanary10Percent5Minutes"),
        pytest.param("linear", "CodeDeployDefault.LambdaLinear10PercentEvery1Minute", marks=own_template),
        pytest.param("all-at-once", "CodeDeployDefault.LambdaAllAtOnce", marks=own_template),
    ],
)
def test_each_deployment_value_picks_its_config(template: Template, deployment: str, config: str) -> None:
    chosen = template if deployment == "canary" else template_for({"deployment": deployment})
    for group in groups(chosen).values():
        assert group["DeploymentConfigName"] == config


def alarm_ids(group: dict) -> set[str]:
    return {a["Name"]["Ref"] for a in group["AlarmConfiguration"]["Alarms"]}


def test_alarms_roll_back_each_group(template: Template) -> None:
    found = groups(template)
    api, worker = alarm_ids(found["api"]), alarm_ids(found["worker"])
    names = ("Api5xxRate", "ApiP99Latency", "ApiServerErrors", "ApiErrors")
    assert {next(k for k in names if k in a) for a in api} == set(names)
    assert len(worker) == 1 and "WorkerErrors" in next(iter(worker))
    for group in found.values():
        assert group["AlarmConfiguration"]["Enabled"] is True
        events = set(group["AutoRollbackConfiguration"]["Events"])
        assert events == {"DEPLOYMENT_FAILURE", "DEPLOYMENT_STOP_ON_REQUEST", "DEPLOYMENT_STOP_ON_ALARM"}


def hook(template: Template) -> tuple[str, dict]:
    return next(
        (logical_id, f)
        for logical_id, f in template.find_resources("AWS::Lambda::Function").items()
        if f["Properties"].get("Handler") == "pre_traffic.handler"
    )


def test_the_alias_update_waits_for_the_pre_traffic_hook(template: Template) -> None:
    hook_id, _ = hook(template)
    _, api_alias = alias_of(template, "handler.app.api_handler")
    update = api_alias["UpdatePolicy"]["CodeDeployLambdaAliasUpdate"]
    assert update["BeforeAllowTrafficHook"] == {"Ref": hook_id}
    _, worker_alias = alias_of(template, "handler.app.s3_handler")
    assert "BeforeAllowTrafficHook" not in worker_alias["UpdatePolicy"]["CodeDeployLambdaAliasUpdate"]


def test_the_hook_may_invoke_the_new_api_version_only(template: Template) -> None:
    _, function = hook(template)
    env = function["Properties"]["Environment"]["Variables"]
    _, api_alias = alias_of(template, "handler.app.api_handler")
    version = api_alias["Properties"]["FunctionVersion"]  # {"Fn::GetAtt": [VersionId, "Version"]}
    version_id = version["Fn::GetAtt"][0]
    assert env["TARGET_VERSION_ARN"] == {"Ref": version_id}
    assert (env["EXPECTED_TOP1"], env["EXPECTED_MODEL_NAME"], env["EXPECTED_MODEL_VERSION"]) == (
        "military_uniform",
        "mobilenet_v2",
        "1.0.0",
    )
    role_id = function["Properties"]["Role"]["Fn::GetAtt"][0]
    statements = [
        s
        for p in template.find_resources("AWS::IAM::Policy").values()
        if {"Ref": role_id} in p["Properties"]["Roles"]
        for s in p["Properties"]["PolicyDocument"]["Statement"]
    ]
    invokes = [s for s in statements if "lambda:InvokeFunction" in json.dumps(s["Action"])]
    assert [s["Resource"] for s in invokes] == [{"Ref": version_id}], "the new version, nothing else"
    (report,) = [s for s in statements if s["Action"] == "codedeploy:PutLifecycleEventHookExecutionStatus"]
    assert "deploymentgroup" in json.dumps(report["Resource"])


@own_template
def test_the_hooks_photo_is_the_committed_fixture(tmp_path) -> None:
    """The hook's asset, as synth stages it, holds its code and the fixture itself (not a link)."""
    from infra.settings import Settings
    from infra.stack import ImageRecognitionStack

    app = app_with(outdir=str(tmp_path))
    ImageRecognitionStack(app, "ImageRecognition", settings=Settings.from_context(app.node))
    app.synth()
    (asset,) = [p for p in tmp_path.glob("asset.*") if (p / "pre_traffic.py").is_file()]
    assert sorted(p.name for p in asset.iterdir()) == ["photo_event.json", "pre_traffic.py"]
    staged = asset / "photo_event.json"
    assert not staged.is_symlink()
    assert staged.read_bytes() == (REPO / "events" / "api-http-predict-raw-jpeg.json").read_bytes()


@pytest.fixture(scope="module")
def http_template() -> Template:
    return template_for({"apiType": "http", "enableWaf": "false"})


@own_template
def test_http_api_routes_cors_throttling_and_logs(http_template: Template) -> None:
    assert not http_template.find_resources("AWS::ApiGateway::RestApi")
    assert not http_template.find_resources("AWS::WAFv2::WebACL")
    api = only(http_template, "AWS::ApiGatewayV2::Api")["Properties"]
    assert api["ProtocolType"] == "HTTP"
    assert set(api["CorsConfiguration"]["AllowMethods"]) == {"GET", "POST"}
    found = http_template.find_resources("AWS::ApiGatewayV2::Route").values()
    routes = {r["Properties"]["RouteKey"] for r in found}
    assert routes == {f"{method} {path}" for method, path in ROUTES}
    integration = only(http_template, "AWS::ApiGatewayV2::Integration")["Properties"]
    assert integration["PayloadFormatVersion"] == "2.0"
    stage = only(http_template, "AWS::ApiGatewayV2::Stage")["Properties"]
    assert stage["StageName"] == "$default" and stage["AutoDeploy"] is True
    assert stage["DefaultRouteSettings"]["ThrottlingRateLimit"] == 50
    assert stage["RouteSettings"]["POST /uploads"]["ThrottlingRateLimit"] == 5
    assert {"requestId", "status", "httpMethod"} <= set(json.loads(stage["AccessLogSettings"]["Format"]))


@own_template
def test_http_api_keeps_the_alarms_and_the_dashboard(http_template: Template) -> None:
    alarms = http_template.find_resources("AWS::CloudWatch::Alarm")
    rate = next(a["Properties"] for i, a in alarms.items() if "Api5xxRate" in i)
    metrics = json.dumps(rate["Metrics"])
    assert '"MetricName": "5xx"' in metrics and '"ApiId"' in metrics
    body = json.dumps(only(http_template, "AWS::CloudWatch::Dashboard")["Properties"]["DashboardBody"])
    assert "5xx" in body and "Latency" in body


@pytest.mark.parametrize(
    "context", [{"apiType": "http"}, {"apiType": "http", "enableWaf": "false", "apiKeyRequired": "true"}]
)
def test_http_api_refuses_what_it_cannot_do(context: dict) -> None:
    with pytest.raises(ValueError, match="apiType=http"):
        template_for(context)


@own_template
@pytest.mark.parametrize("stage", ["staging", "prod"])
def test_each_stage_is_its_own_stack(stage: str) -> None:
    from infra.app import build

    app = app_with({"stage": stage})
    stack = build(app)
    assert stack.stack_name == f"ImageRecognition-{stage}"
    assert Template.from_stack(stack).find_outputs("Stage")["Stage"]["Value"] == stage


def test_the_hooks_expectation_follows_the_model_served() -> None:
    """No modelDir: the ImageNet export's answer for the hook's photo. With one: what that model
    answers for it, computed at synth by running it; an explicit label must be one of its classes."""
    from infra.components.delivery import expected_top1
    from infra.settings import Settings

    assert expected_top1(Settings()) == "military_uniform"
    assert expected_top1(Settings(pre_traffic_top1="-")) == ""
    assert expected_top1(Settings(model_dir="build/model")) == "military_uniform"  # computed
    assert expected_top1(Settings(model_dir="build/model", pre_traffic_top1="tabby")) == "tabby"
    with pytest.raises(ValueError, match="preTrafficTop1 'ants' is not one of the classes of modelDir"):
        expected_top1(Settings(model_dir="build/model", pre_traffic_top1="ants"))


def test_handled_500s_roll_a_deployment_back_within_a_minute(template: Template) -> None:
    """Exceptions the API answers as 500s (Lambda's Errors never sees them) are the function's own
    EMF metric, summed per minute, one of the API group's rollback alarms."""
    alarms = template.find_resources("AWS::CloudWatch::Alarm")
    ((alarm_id, alarm),) = [(k, v) for k, v in alarms.items() if "ApiServerErrors" in k]
    properties = alarm["Properties"]
    assert (properties["MetricName"], properties["Namespace"]) == ("ServerErrors", "ImageRecognition")
    assert (properties["Period"], properties["EvaluationPeriods"], properties["Threshold"]) == (60, 1, 1)
    assert alarm_id in alarm_ids(groups(template)["api"])
