"""CodeDeploy rollouts of alias live (config per context value, rollback alarms, the pre-traffic
hook and its permissions), the HTTP API flavour, and stages as separate stacks.

Assertions on the session's default template are the fast tier; every test that synthesizes a
template or an app of its own is ``aws_shape``."""

from __future__ import annotations

import json

import pytest
from aws_cdk.assertions import Template

from handler.contract import ROUTES
from tests.support import REPO, alias_of, app_with, link_file, only, template_for

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


ROLLBACK_ALARMS = {
    "api": {"ApiRolloutFailureRate", "ApiRolloutP99Latency", "ApiRolloutUncertainRate"},
    "worker": {"WorkerRolloutFailureRate"},
}


def test_alarms_roll_back_each_group(template: Template) -> None:
    for name, group in groups(template).items():
        found = alarm_ids(group)
        assert {next(k for k in ROLLBACK_ALARMS[name] if k in a) for a in found} == ROLLBACK_ALARMS[name]
        assert len(found) == len(ROLLBACK_ALARMS[name])
        assert group["AlarmConfiguration"]["Enabled"] is True
        events = set(group["AutoRollbackConfiguration"]["Events"])
        assert events == {"DEPLOYMENT_FAILURE", "DEPLOYMENT_STOP_ON_REQUEST", "DEPLOYMENT_STOP_ON_ALARM"}


def metric_stats(alarm: dict) -> list[dict]:
    """Every metric an alarm reads (one, or those of its math expression)."""
    properties = alarm["Properties"]
    if "Metrics" not in properties:
        keys = ("MetricName", "Namespace", "Dimensions", "Period")
        return [{"Metric": {k: properties[k] for k in keys if k != "Period"}, "Period": properties["Period"]}]
    return [m["MetricStat"] for m in properties["Metrics"] if "MetricStat" in m]


def test_each_rollback_alarm_reads_the_new_version_alone_minute_by_minute(template: Template) -> None:
    """Within the canary's 5 minutes: 60-second periods, 2 breaching in a row (``rollbackMinutes``),
    and every metric scoped to the version alias live is shifting to (Lambda's ExecutedVersion, or the
    function's own ``version`` dimension), never the whole stage."""
    alarms = template.find_resources("AWS::CloudWatch::Alarm")
    for name, group in groups(template).items():
        _, alias = alias_of(template, f"handler.app.{'api' if name == 'api' else 's3'}_handler")
        new_version = alias["Properties"]["FunctionVersion"]  # {"Fn::GetAtt": [VersionId, "Version"]}
        for alarm_id in alarm_ids(group):
            alarm = alarms[alarm_id]
            properties = alarm["Properties"]
            assert (properties["EvaluationPeriods"], properties["DatapointsToAlarm"]) == (2, 2), alarm_id
            assert properties["TreatMissingData"] == "notBreaching"
            for stat in metric_stats(alarm):
                assert stat["Period"] == 60, alarm_id
                dimensions = {d["Name"]: d["Value"] for d in stat["Metric"]["Dimensions"]}
                version = dimensions.get("ExecutedVersion", dimensions.get("version"))
                assert version == new_version, (alarm_id, stat["Metric"]["MetricName"])
                function = dimensions.get("FunctionName", dimensions.get("function"))
                assert function == {"Ref": alias["Properties"]["FunctionName"]["Ref"]}, alarm_id


def test_handled_500s_count_against_the_new_version(template: Template) -> None:
    """Exceptions the API answers as 500s (Lambda's Errors never sees them) are the function's own
    ``AnswerFailed`` signal, with the crashes Lambda counts, per invocation of the new version."""
    alarms = template.find_resources("AWS::CloudWatch::Alarm")
    ((_, alarm),) = [(k, v) for k, v in alarms.items() if "ApiRolloutFailureRate" in k]
    expression = next(m["Expression"] for m in alarm["Properties"]["Metrics"] if "Expression" in m)
    assert expression == "IF(invocations >= 3, 100 * (FILL(failed, 0) + FILL(crashed, 0)) / invocations, 0)"
    names = {s["Metric"]["MetricName"]: s["Metric"]["Namespace"] for s in metric_stats(alarm)}
    assert names == {"Invocations": "AWS/Lambda", "Errors": "AWS/Lambda", "AnswerFailed": "ImageRecognition"}
    assert alarm["Properties"]["Threshold"] == 5
    ops = next(v for k, v in alarms.items() if "ApiServerErrors" in k)["Properties"]  # still pages ops
    assert (ops["MetricName"], ops["Period"], ops["Threshold"]) == ("ServerErrors", 60, 1)


@own_template
def test_rollback_settings_reach_the_alarms() -> None:
    chosen = template_for({"rollbackMinutes": "3", "rollbackErrorRatePercent": "2.5"})
    alarms = chosen.find_resources("AWS::CloudWatch::Alarm")
    rate = next(v for k, v in alarms.items() if "ApiRolloutFailureRate" in k)["Properties"]
    assert (rate["Threshold"], rate["EvaluationPeriods"], rate["DatapointsToAlarm"]) == (2.5, 3, 3)
    with pytest.raises(ValueError, match="rollbackMinutes must be from 1 to 3"):
        template_for({"rollbackMinutes": "4"})


def hook(template: Template) -> tuple[str, dict]:
    return next(
        (logical_id, f)
        for logical_id, f in template.find_resources("AWS::Lambda::Function").items()
        if f["Properties"].get("Handler") == "pre_traffic.handler"
    )


def test_the_alias_update_waits_for_the_pre_traffic_hook(template: Template) -> None:
    """The hook and the rollback alarms are updated (new version) before the API alias moves; the
    worker's alias moves only after the API's deployment, so a build the gate stops never reaches it."""
    hook_id, _ = hook(template)
    api_alias_id, api_alias = alias_of(template, "handler.app.api_handler")
    update = api_alias["UpdatePolicy"]["CodeDeployLambdaAliasUpdate"]
    assert update["BeforeAllowTrafficHook"] == {"Ref": hook_id}
    _, worker_alias = alias_of(template, "handler.app.s3_handler")
    assert "BeforeAllowTrafficHook" not in worker_alias["UpdatePolicy"]["CodeDeployLambdaAliasUpdate"]
    found = groups(template)
    assert {hook_id, *alarm_ids(found["api"])} <= set(api_alias["DependsOn"])
    assert {api_alias_id, *alarm_ids(found["worker"])} <= set(worker_alias["DependsOn"])


def test_the_hook_may_invoke_the_new_api_version_and_live_only(template: Template) -> None:
    """It sends the check photos to the new version, and the same requests to alias live to compare
    their costs; the limits and the recorded cost are synth's (``infra.model_cost``)."""
    from infra import model_cost
    from infra.settings import Settings

    _, function = hook(template)
    env = function["Properties"]["Environment"]["Variables"]
    _, api_alias = alias_of(template, "handler.app.api_handler")
    version = api_alias["Properties"]["FunctionVersion"]  # {"Fn::GetAtt": [VersionId, "Version"]}
    version_id = version["Fn::GetAtt"][0]
    function_id = api_alias["Properties"]["FunctionName"]["Ref"]
    live = {"Fn::Join": ["", [{"Fn::GetAtt": [function_id, "Arn"]}, ":live"]]}
    assert env["TARGET_VERSION_ARN"] == {"Ref": version_id}
    assert env["LIVE_ARN"] == live
    settings = Settings()
    assert {k: v for k, v in env.items() if k not in ("TARGET_VERSION_ARN", "LIVE_ARN")} == {
        "EXPECTED_MODEL_NAME": "mobilenet_v2",
        "EXPECTED_MODEL_VERSION": "1.0.0",
        "MODEL_PRECISION": "fp32",
        "ACCURACY_TOLERANCE": "0.1",
        "PROBABILITY_TOLERANCE": "0.05",
        **model_cost.gate_environment(settings, settings.model_need),
    }
    assert env["BATCH_BUDGET_MS"] == "19000" and env["LARGEST_BATCH"] == "16" and env["LIVE_MARGIN"] == "0.5"
    role_id = function["Properties"]["Role"]["Fn::GetAtt"][0]
    statements = [
        s
        for p in template.find_resources("AWS::IAM::Policy").values()
        if {"Ref": role_id} in p["Properties"]["Roles"]
        for s in p["Properties"]["PolicyDocument"]["Statement"]
    ]
    invokes = [s for s in statements if "lambda:InvokeFunction" in json.dumps(s["Action"])]
    resources = [
        r for s in invokes for r in (s["Resource"] if isinstance(s["Resource"], list) else [s["Resource"]])
    ]
    assert sorted(map(json.dumps, resources)) == sorted(map(json.dumps, [{"Ref": version_id}, live])), (
        "the new version and alias live, nothing else ($LATEST, other versions)"
    )
    (report,) = [s for s in statements if s["Action"] == "codedeploy:PutLifecycleEventHookExecutionStatus"]
    assert "deploymentgroup" in json.dumps(report["Resource"])


@own_template
def test_the_hooks_asset_holds_the_models_check_set(tmp_path) -> None:
    """The hook's asset, as synth stages it: its code, the event fixture itself (not a link) and
    the check set of the model served (here the ImageNet export's, from `make model`)."""
    from infra.settings import Settings
    from infra.stack import ImageRecognitionStack

    app = app_with(outdir=str(tmp_path))
    ImageRecognitionStack(app, "ImageRecognition", settings=Settings.from_context(app.node))
    app.synth()
    (asset,) = [p for p in tmp_path.glob("asset.*") if (p / "pre_traffic.py").is_file()]
    assert sorted(p.name for p in asset.iterdir()) == ["check", "photo_event.json", "pre_traffic.py"]
    staged = asset / "photo_event.json"
    assert not staged.is_symlink()
    assert staged.read_bytes() == (REPO / "events" / "api-http-predict-raw-jpeg.json").read_bytes()
    model_check = REPO / "build" / "model" / "check"
    assert sorted(p.name for p in (asset / "check").iterdir()) == sorted(
        p.name for p in model_check.iterdir()
    )
    assert (asset / "check" / "check.json").read_bytes() == (model_check / "check.json").read_bytes()
    assert len(json.loads((asset / "check" / "check.json").read_text())["photos"]) == 2


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


def model_copy(folder, check: bool = True):
    """The ImageNet export's files (links), with or without its check set, as another model dir."""
    source = REPO / "build" / "model"
    folder.mkdir()
    for path in source.iterdir():
        if path.is_file():
            link_file(path, folder / path.name)
    if check:
        (folder / "check").symlink_to(source / "check")
    return folder


@own_template
def test_synth_refuses_a_model_without_a_check_set(tmp_path) -> None:
    bare = model_copy(tmp_path / "bare", check=False)
    with pytest.raises(
        ValueError, match=r"no check set \(check/check.json\) for the quality gate: make one with"
    ):
        template_for({"modelDir": str(bare)})


def test_a_check_set_recorded_with_another_build_is_refused(tmp_path) -> None:
    """A check set is bound to the files it was recorded with: one left from another training run
    (or copied from another model) cannot vouch for this build."""
    from infra.components.delivery import read_check_set
    from infra.settings import Settings

    assert read_check_set(Settings())["photos"][0]["label"] == "military_uniform"
    other = model_copy(tmp_path / "other")
    (other / "labels.json").unlink()
    labels = json.loads((REPO / "build" / "model" / "labels.json").read_text())
    (other / "labels.json").write_text(json.dumps(labels[::-1], indent=0) + "\n")  # another build
    from handler.recognition import manifest
    from layers.model import manifest_writer

    fields = manifest.read(other)
    (other / "manifest.json").unlink()
    manifest_writer.write(other, {k: v for k, v in fields.items() if k != "files"}, list(fields["files"]))
    with pytest.raises(ValueError, match="recorded with another model"):
        read_check_set(Settings(model_dir=str(other)))


def test_the_dashboard_shows_the_rollback_alarms(template: Template) -> None:
    body = json.dumps(only(template, "AWS::CloudWatch::Dashboard")["Properties"]["DashboardBody"])
    assert "Rollback alarms (the version being deployed)" in body
    for name in (*ROLLBACK_ALARMS["api"], *ROLLBACK_ALARMS["worker"]):
        assert name in body, name
