"""``aws_cdk.assertions`` on the synthesized template: every promise ops rely on.

The tests on the session's two templates (defaults and the variant) are the fast tier; those that
synthesize a template of their own are marked ``aws_shape``."""

from __future__ import annotations

import json

import pytest
from aws_cdk.assertions import Match, Template

from handler.contract import ROUTES
from infra.settings import CAPTURE_PREFIX, Settings
from tests.support import CDK_JSON, REPO, alias_of, app_with, functions, only, template_for


def policy_statements(template: Template) -> list[dict]:
    return [
        statement
        for policy in template.find_resources("AWS::IAM::Policy").values()
        for statement in policy["Properties"]["PolicyDocument"]["Statement"]
    ]


def worker_policy(template: Template) -> list[dict]:
    worker_role = functions(template)["handler.app.s3_handler"]["Properties"]["Role"]["Fn::GetAtt"][0]
    policies = [
        p
        for p in template.find_resources("AWS::IAM::Policy").values()
        if {"Ref": worker_role} in p["Properties"]["Roles"]
    ]
    return [s for p in policies for s in p["Properties"]["PolicyDocument"]["Statement"]]


def as_list(value) -> list:
    return value if isinstance(value, list) else [value]


def test_binary_media_types_are_explicit(template: Template) -> None:
    api = only(template, "AWS::ApiGateway::RestApi")
    assert api["Properties"]["BinaryMediaTypes"] == [
        "image/*",
        "multipart/form-data",
        "application/octet-stream",
    ]


def test_stage_throttling_tracing_and_access_logs(template: Template) -> None:
    stage = only(template, "AWS::ApiGateway::Stage")["Properties"]
    assert stage["StageName"] == "prod"
    assert stage["TracingEnabled"] is True
    settings = stage["MethodSettings"][0]
    assert settings["ThrottlingRateLimit"] == 50 and settings["ThrottlingBurstLimit"] == 100
    assert settings["DataTraceEnabled"] is False
    access_format = json.loads(stage["AccessLogSetting"]["Format"])
    assert {"requestId", "status", "httpMethod", "resourcePath"} <= set(access_format)


def test_routes_validation_and_cors(template: Template) -> None:
    methods = template.find_resources("AWS::ApiGateway::Method")
    assert {m["Properties"]["HttpMethod"] for m in methods.values()} == {"POST", "GET", "OPTIONS"}
    resources = template.find_resources("AWS::ApiGateway::Resource")
    (predict_id,) = [i for i, r in resources.items() if r["Properties"]["PathPart"] == "predict"]
    (predict,) = [
        m["Properties"]
        for m in methods.values()
        if m["Properties"]["HttpMethod"] == "POST" and m["Properties"]["ResourceId"] == {"Ref": predict_id}
    ]
    assert predict["RequestParameters"] == {"method.request.header.Content-Type": True}
    assert "RequestValidatorId" in predict
    assert predict["Integration"]["Type"] == "AWS_PROXY"
    alias_id, _ = alias_of(template, "handler.app.api_handler")
    assert {"Ref": alias_id} in predict["Integration"]["Uri"]["Fn::Join"][1], "the API calls alias live"
    template.has_resource_properties(
        "AWS::ApiGateway::RequestValidator", {"ValidateRequestParameters": True, "ValidateRequestBody": True}
    )
    paths = {r["Properties"]["PathPart"] for r in resources.values()}
    assert paths == {part for _, path in ROUTES for part in path.split("/") if part}
    assert {"predict", "uploads", "results", "{upload_id}", "feedback", "openapi.json"} <= paths
    root_gets = [
        m
        for m in methods.values()
        if m["Properties"]["HttpMethod"] == "GET" and "ResourceId" in m["Properties"]
    ]
    assert len(root_gets) == 5  # /, /health, /model, /openapi.json, /results/{upload_id}
    assert all(not m["Properties"].get("ApiKeyRequired", False) for m in methods.values())


def test_gateway_errors_use_the_handlers_json_shape(template: Template) -> None:
    responses = template.find_resources("AWS::ApiGateway::GatewayResponse")
    assert {r["Properties"]["ResponseType"] for r in responses.values()} == {"DEFAULT_4XX", "DEFAULT_5XX"}
    for response in responses.values():
        body = response["Properties"]["ResponseTemplates"]["application/json"]
        assert '"error"' in body and '"code"' in body


def test_usage_plan(template: Template) -> None:
    plan = only(template, "AWS::ApiGateway::UsagePlan")["Properties"]
    assert plan["Quota"] == {"Limit": 100000, "Period": "DAY"}
    assert plan["Throttle"] == {"BurstLimit": 100, "RateLimit": 50}
    assert len(plan["ApiStages"]) == 1
    assert not template.find_resources("AWS::ApiGateway::ApiKey")


def test_functions_are_one_image_with_three_commands(template: Template, settings: Settings) -> None:
    by_command = functions(template)
    assert set(by_command) == {
        "handler.app.api_handler",
        "handler.app.s3_handler",
        "handler.app.bulk_handler",
    }
    api, worker = by_command["handler.app.api_handler"], by_command["handler.app.s3_handler"]
    bulk = by_command["handler.app.bulk_handler"]
    assert api["Properties"]["Code"] == worker["Properties"]["Code"] == bulk["Properties"]["Code"], (
        "same image"
    )
    for function, timeout in ((api, 29), (worker, 120), (bulk, 300)):
        props = function["Properties"]
        assert props["PackageType"] == "Image"
        assert props["MemorySize"] == 2048
        assert props["Timeout"] == timeout
        assert props["Architectures"] == ["x86_64"]
        assert props["TracingConfig"] == {"Mode": "Active"}
        env = props["Environment"]["Variables"]
        assert env["MODEL_BACKEND"] == "litert"
        assert env["MAX_IMAGE_BYTES"] == str(6 * 1024 * 1024)
        assert env["RESULTS_PREFIX"] == settings.results_prefix
        assert env["POWERTOOLS_SERVICE_NAME"] == "image-recognition"
        assert env["POWERTOOLS_METRICS_NAMESPACE"] == "ImageRecognition"
    assert "ReservedConcurrentExecutions" not in api["Properties"]


def test_alias_live(template: Template, variant_template: Template) -> None:
    for command in ("handler.app.api_handler", "handler.app.s3_handler"):
        _, alias = alias_of(template, command)
        assert alias["Properties"]["Name"] == "live"
        assert "ProvisionedConcurrencyConfig" not in alias["Properties"]
    _, variant = alias_of(variant_template, "handler.app.api_handler")
    assert variant["Properties"]["ProvisionedConcurrencyConfig"] == {"ProvisionedConcurrentExecutions": 2}


def test_the_queue_feeds_the_workers_alias_live(template: Template) -> None:
    alias_id, _ = alias_of(template, "handler.app.s3_handler")
    mapping = only(template, "AWS::Lambda::EventSourceMapping")["Properties"]
    name = json.dumps(mapping["FunctionName"])  # the function's name, qualified ":live"
    assert f'{{"Ref": "{alias_id}"}}' in name and name.endswith('":live"]]}')


def test_log_groups_have_retention(template: Template) -> None:
    groups = template.find_resources("AWS::Logs::LogGroup")
    assert len(groups) == 6  # 3 functions, the pre-traffic hook, API access logs, the state machine
    assert {g["Properties"]["RetentionInDays"] for g in groups.values()} == {30}


def test_uploads_bucket_is_private_encrypted_tls_only_and_versioned(template: Template) -> None:
    buckets = template.find_resources("AWS::S3::Bucket")
    assert len(buckets) == 2  # uploads and its access logs
    for bucket in buckets.values():
        props = bucket["Properties"]
        assert props["PublicAccessBlockConfiguration"] == {
            "BlockPublicAcls": True,
            "BlockPublicPolicy": True,
            "IgnorePublicAcls": True,
            "RestrictPublicBuckets": True,
        }
        assert props["BucketEncryption"]["ServerSideEncryptionConfiguration"][0][
            "ServerSideEncryptionByDefault"
        ] == {"SSEAlgorithm": "AES256"}
    uploads = next(b for b in buckets.values() if "VersioningConfiguration" in b["Properties"])["Properties"]
    assert uploads["VersioningConfiguration"] == {"Status": "Enabled"}
    rule = uploads["LifecycleConfiguration"]["Rules"][0]
    assert rule["NoncurrentVersionExpiration"] == {"NoncurrentDays": 30}
    assert "LoggingConfiguration" in uploads
    policies = template.find_resources("AWS::S3::BucketPolicy")
    tls_denials = [
        s
        for p in policies.values()
        for s in p["Properties"]["PolicyDocument"]["Statement"]
        if s["Effect"] == "Deny" and s.get("Condition") == {"Bool": {"aws:SecureTransport": "false"}}
    ]
    assert len(tls_denials) == 2


def test_s3_to_sqs_notification_is_filtered_to_uploads_and_images(shaped: tuple[Template, Settings]) -> None:
    template, settings = shaped
    config = only(template, "Custom::S3BucketNotifications")["Properties"]["NotificationConfiguration"]
    queues = config["QueueConfigurations"]
    suffixes = set()
    for queue in queues:
        assert queue["Events"] == ["s3:ObjectCreated:*"]
        rules = {r["Name"]: r["Value"] for r in queue["Filter"]["Key"]["FilterRules"]}
        assert rules["prefix"] == settings.uploads_prefix
        suffixes.add(rules["suffix"])
    assert {".jpg", ".JPG", ".jpeg", ".png", ".webp", ".gif", ".bmp", ".tiff"} <= suffixes
    assert "LambdaFunctionConfigurations" not in config, "S3 -> SQS -> Lambda, not S3 -> Lambda"


def test_queue_batching_and_dead_letter_queue(template: Template) -> None:
    mapping = only(template, "AWS::Lambda::EventSourceMapping")["Properties"]
    assert mapping["BatchSize"] == 10
    assert mapping["MaximumBatchingWindowInSeconds"] == 5
    assert mapping["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    queues = template.find_resources("AWS::SQS::Queue")
    main = next(q for q in queues.values() if "RedrivePolicy" in q["Properties"])["Properties"]
    assert main["RedrivePolicy"]["maxReceiveCount"] == 5
    assert main["VisibilityTimeout"] == 720
    assert all(q["Properties"]["SqsManagedSseEnabled"] for q in queues.values())


def test_worker_iam_is_scoped_to_the_prefixes(shaped: tuple[Template, Settings]) -> None:
    template, settings = shaped
    uploads, results = settings.uploads_prefix, settings.results_prefix
    statements = worker_policy(template)
    s3_statements = [s for s in statements if any(a.startswith("s3:") for a in as_list(s["Action"]))]
    object_statements = [s for s in s3_statements if "s3:ListBucket" not in as_list(s["Action"])]
    for statement in object_statements:
        for resource in as_list(statement["Resource"]):
            joined = json.dumps(resource)
            assert joined.endswith(f'/{uploads}*"]]}}') or joined.endswith(f'/{results}*"]]}}'), joined
    puts = [s for s in object_statements if "s3:PutObject" in as_list(s["Action"])]
    assert puts and all(f"/{results}*" in json.dumps(s["Resource"]) for s in puts)
    listing = next(s for s in s3_statements if "s3:ListBucket" in as_list(s["Action"]))
    assert listing["Condition"] == {"StringLike": {"s3:prefix": [f"{uploads}*", f"{results}*"]}}


def test_no_policy_grants_s3_on_every_resource(template: Template) -> None:
    for statement in policy_statements(template):
        if any(a.startswith("s3:") for a in as_list(statement["Action"])):
            assert "*" not in as_list(statement["Resource"]), statement


def role_statements(template: Template, command: str) -> list[dict]:
    role = functions(template)[command]["Properties"]["Role"]["Fn::GetAtt"][0]
    return [
        statement
        for policy in template.find_resources("AWS::IAM::Policy").values()
        if {"Ref": role} in policy["Properties"]["Roles"]
        for statement in policy["Properties"]["PolicyDocument"]["Statement"]
    ]


def test_the_api_function_may_only_presign_uploads_read_results_and_keep_captures(
    shaped: tuple[Template, Settings],
) -> None:
    template, settings = shaped
    s3_statements = [
        s for s in role_statements(template, "handler.app.api_handler") if str(s["Action"]).count("s3:")
    ]
    by_action = {}
    for statement in s3_statements:
        for action in as_list(statement["Action"]):
            by_action.setdefault(action, []).extend(json.dumps(r) for r in as_list(statement["Resource"]))
    assert set(by_action) == {"s3:PutObject", "s3:GetObject", "s3:ListBucket"}

    def prefixes(action: str) -> set[str]:
        return {r.split('"/', 1)[1].rsplit("*", 1)[0] for r in by_action[action]}

    # Captures and their feedback (POST /feedback) live under the capture prefix only.
    assert prefixes("s3:PutObject") == {settings.uploads_prefix, CAPTURE_PREFIX}
    assert prefixes("s3:GetObject") == {settings.uploads_prefix, settings.results_prefix, CAPTURE_PREFIX}


def test_uploads_bucket_accepts_browser_posts_from_allowed_origins(template: Template) -> None:
    bucket = next(
        b["Properties"]
        for b in template.find_resources("AWS::S3::Bucket").values()
        if "CorsConfiguration" in b["Properties"]
    )
    (rule,) = bucket["CorsConfiguration"]["CorsRules"]
    assert rule["AllowedMethods"] == ["POST"] and rule["AllowedOrigins"] == ["*"]


def alarms_by_id(template: Template) -> dict[str, dict]:
    return {
        logical_id: a["Properties"]
        for logical_id, a in template.find_resources("AWS::CloudWatch::Alarm").items()
    }


def test_every_alarm_and_its_threshold(template: Template) -> None:
    alarms = alarms_by_id(template)
    expected = {
        "Api5xxRate": 1,
        "ApiP99Latency": 3000,
        "ApiServerErrors": 1,
        "ApiErrors": 1,
        "ApiThrottles": 1,
        "WorkerErrors": 1,
        "WorkerThrottles": 1,
        "DeadLettersNotEmpty": 1,
        "BackfillExecutionsFailed": 1,
        "ApiRolloutFailureRate": 5,
        "ApiRolloutP99Latency": 3000,
        "ApiRolloutUncertainRate": 80,
        "WorkerRolloutFailureRate": 5,
    }
    found = {}
    for logical_id, props in alarms.items():
        name = next(key for key in sorted(expected, key=len, reverse=True) if key in logical_id)
        found[name] = props["Threshold"]
        assert props["AlarmActions"] and props["OKActions"], "every alarm notifies the topic"
    assert found == expected
    p99 = next(p for i, p in alarms.items() if "ApiP99Latency" in i)
    assert p99["ExtendedStatistic"] == "p99" and p99["EvaluationPeriods"] == 3
    rate = next(p for i, p in alarms.items() if "Api5xxRate" in i)
    assert "100 * errors / requests" in json.dumps(rate["Metrics"])
    dlq = next(p for i, p in alarms.items() if "DeadLettersNotEmpty" in i)
    assert dlq["MetricName"] == "ApproximateNumberOfMessagesVisible"
    assert not template.find_resources("AWS::SNS::Subscription")


def test_dashboard_covers_api_lambda_queue_and_cold_starts(template: Template) -> None:
    body = json.dumps(only(template, "AWS::CloudWatch::Dashboard")["Properties"]["DashboardBody"])
    for needle in (
        "5XXError",
        "4XXError",
        "Latency",
        "p99",
        "Duration",
        "ConcurrentExecutions",
        "Throttles",
        "@initDuration",
        "ApproximateAgeOfOldestMessage",
        "ApproximateNumberOfMessagesVisible",
        "InferenceMs",
    ):
        assert needle in body, needle


def test_outputs(shaped: tuple[Template, Settings]) -> None:
    template, settings = shaped
    outputs = template.find_outputs("*")
    assert {"ApiUrl", "UploadsBucket", "ResultsLocation", "DashboardUrl"} <= set(outputs)
    assert f'"/{settings.results_prefix}"' in json.dumps(outputs["ResultsLocation"]["Value"])
    assert f'"/{settings.uploads_prefix}"' in json.dumps(outputs["UploadsLocation"]["Value"])
    assert outputs["UploadsBucket"]["Description"] == f"put photos under {settings.uploads_prefix}"


def test_context_changes_the_template(variant_template: Template, variant_settings: Settings) -> None:
    for function in functions(variant_template).values():
        props = function["Properties"]
        assert props["MemorySize"] == 3008
        assert props["Architectures"] == ["arm64"]
        env = props["Environment"]["Variables"]
        assert env["MODEL_BACKEND"] == "keras"
        assert (env["UPLOADS_PREFIX"], env["RESULTS_PREFIX"]) == (
            variant_settings.uploads_prefix,
            variant_settings.results_prefix,
        )
    api = functions(variant_template)["handler.app.api_handler"]["Properties"]
    assert api["ReservedConcurrentExecutions"] == 20
    stage = only(variant_template, "AWS::ApiGateway::Stage")["Properties"]["MethodSettings"][0]
    assert (stage["ThrottlingRateLimit"], stage["ThrottlingBurstLimit"]) == (7, 11)
    plan = only(variant_template, "AWS::ApiGateway::UsagePlan")["Properties"]
    assert plan["Quota"]["Limit"] == 1234
    assert only(variant_template, "AWS::ApiGateway::ApiKey")
    methods = variant_template.find_resources(
        "AWS::ApiGateway::Method", {"Properties": {"HttpMethod": "POST"}}
    )
    assert all(m["Properties"]["ApiKeyRequired"] for m in methods.values())
    assert {
        g["Properties"]["RetentionInDays"]
        for g in variant_template.find_resources("AWS::Logs::LogGroup").values()
    } == {14}
    p99 = next(p for i, p in alarms_by_id(variant_template).items() if "ApiP99Latency" in i)
    assert p99["Threshold"] == 1500
    variant_template.has_resource_properties(
        "AWS::SNS::Subscription", {"Protocol": "email", "Endpoint": "ops@example.org"}
    )
    assert only(variant_template, "AWS::Lambda::EventSourceMapping")["Properties"]["BatchSize"] == 25


def test_waf_is_on_by_default_and_off_on_request(template: Template, variant_template: Template) -> None:
    template.resource_count_is("AWS::WAFv2::WebACL", 1)
    template.resource_count_is("AWS::WAFv2::WebACLAssociation", 1)
    variant_template.resource_count_is("AWS::WAFv2::WebACL", 0)  # enableWaf=false
    variant_template.resource_count_is("AWS::WAFv2::WebACLAssociation", 0)


def test_uploads_have_their_own_lower_method_throttle(template: Template, variant_template: Template) -> None:
    def limits(t: Template) -> dict[str, tuple[int, int]]:
        settings = only(t, "AWS::ApiGateway::Stage")["Properties"]["MethodSettings"]
        return {
            f"{m['HttpMethod']} {m['ResourcePath']}": (m["ThrottlingRateLimit"], m["ThrottlingBurstLimit"])
            for m in settings
        }

    assert limits(template) == {"* /*": (50, 100), "POST /~1uploads": (5, 10), "POST /~1feedback": (5, 10)}
    assert limits(variant_template)["POST /~1uploads"] == (2, 3)


def test_uploads_and_results_expire(
    template: Template, variant_template: Template, settings: Settings
) -> None:
    def expiry_rules(t: Template) -> dict[str, dict]:
        buckets = t.find_resources("AWS::S3::Bucket")
        uploads = next(b for b in buckets.values() if "VersioningConfiguration" in b["Properties"])
        rules = uploads["Properties"]["LifecycleConfiguration"]["Rules"]
        # (captures expire on their own schedule: test_capture_and_drift.py)
        return {r["Prefix"]: r for r in rules if "ExpirationInDays" in r and r["Prefix"] != CAPTURE_PREFIX}

    rules = expiry_rules(template)
    # Results of uploads expire with them; a backfill's records of a stored archive stay.
    uploads = settings.uploads_prefix
    assert set(rules) == {uploads, f"{settings.results_prefix}{uploads}"}
    assert {r["ExpirationInDays"] for r in rules.values()} == {settings.expire_after_days}
    assert all(r["Status"] == "Enabled" for r in rules.values())
    assert expiry_rules(variant_template) == {}  # expireAfterDays=0 keeps everything


def test_queue_visibility_is_at_least_six_worker_timeouts(template: Template) -> None:
    worker = functions(template)["handler.app.s3_handler"]["Properties"]
    queues = template.find_resources("AWS::SQS::Queue")
    main = next(q for q in queues.values() if "RedrivePolicy" in q["Properties"])["Properties"]
    assert main["VisibilityTimeout"] >= 6 * worker["Timeout"]


def test_waf_rules(template: Template) -> None:
    variant_template = template
    acl = only(variant_template, "AWS::WAFv2::WebACL")["Properties"]
    assert acl["Scope"] == "REGIONAL"
    rules = {r["Name"]: r for r in acl["Rules"]}
    assert rules["RateLimitPerIp"]["Statement"]["RateBasedStatement"] == {
        "Limit": 1000,
        "AggregateKeyType": "IP",
    }
    size = rules["MaxContentLength"]["Statement"]["RegexMatchStatement"]
    assert size["FieldToMatch"] == {"SingleHeader": {"Name": "content-length"}}
    assert all("Block" in r["Action"] for r in rules.values())
    variant_template.resource_count_is("AWS::WAFv2::WebACLAssociation", 1)
    variant_template.has_resource_properties(
        "AWS::WAFv2::WebACLAssociation", {"ResourceArn": Match.any_value(), "WebACLArn": Match.any_value()}
    )


def test_cdk_json_context_equals_the_documented_defaults() -> None:
    context = {k: v for k, v in CDK_JSON["context"].items() if not k.startswith("@")}
    assert context == Settings.defaults()
    assert CDK_JSON["app"] == "python3 infra/app.py"


def test_context_values_arrive_as_text_or_json() -> None:
    """``-c key=value`` gives text, cdk.json gives JSON: both read as the field's type."""
    text = Settings.from_context(
        app_with(
            {"memorySize": "4096", "enableWaf": "FALSE", "captureRate": "0.5", "pythonVersion": "3.13"}
        ).node
    )
    data = Settings.from_context(
        app_with({"memorySize": 4096, "enableWaf": False, "captureRate": 0.5, "pythonVersion": 3.13}).node
    )
    assert text == data
    assert (data.memory_size, data.enable_waf, data.capture_rate) == (4096, False, 0.5)
    assert data.python_version == "3.13", "a version written as a JSON number reads as its text"


@pytest.mark.parametrize(
    ("context", "message"),
    [
        (
            {"memorySize": "abc"},
            r"^memorySize must be a whole number from 128 to 10240 \(Lambda's range\), got 'abc'$",
        ),
        ({"memorySize": "0"}, r"^memorySize must be from 128 to 10240 \(Lambda's range\), got '0'$"),
        ({"enableWaf": "yes"}, r"^enableWaf must be true or false, got 'yes'$"),
        (
            {"captureRate": "often"},
            r"^captureRate must be a number from 0 to 1 \(a share of predictions\), got",
        ),
        ({"architecture": "arm"}, r"^architecture must be one of \('x86_64', 'arm64'\), got 'arm'$"),
        (
            {"rollbackErrorRatePercent": "0"},
            r"^rollbackErrorRatePercent must be above 0 and at most 100, got '0'$",
        ),
        (
            {"stage": "dev", "sqsBatchSize": "x"},
            r"^stage must be one of .*; sqsBatchSize must be a whole number",
        ),
    ],
)
def test_a_bad_context_value_is_one_sentence_naming_its_key(context: dict, message: str) -> None:
    """What ``cdk synth -c memorySize=abc`` prints: the key, what it accepts, the value given."""
    with pytest.raises(ValueError, match=message) as refused:
        Settings.from_context(app_with(context).node)
    assert "pydantic" not in str(refused.value) and "\n" not in str(refused.value)


@pytest.mark.aws_shape
def test_model_dir_ships_that_model_in_the_image(tmp_path) -> None:
    """-c modelDir: the image takes /opt/model from that directory (a named build context)."""
    from infra.app import build

    app = app_with({"modelDir": "build/model"}, outdir=str(tmp_path))
    build(app)
    app.synth()
    assets = json.loads((tmp_path / "ImageRecognition.assets.json").read_text())
    (image,) = {json.dumps(a["source"], sort_keys=True) for a in assets["dockerImages"].values()}
    source = json.loads(image)
    assert source["dockerBuildArgs"]["MODEL_ORIGIN"] == "given"
    assert source["dockerBuildContexts"] == {"model-dir": str((REPO / "build" / "model").resolve())}


def test_model_dir_must_hold_a_model() -> None:
    with pytest.raises(
        ValueError, match=r"modelDir nowhere/at-all: no manifest\.json there; train one first"
    ):
        template_for({"modelDir": "nowhere/at-all"})


@pytest.mark.aws_shape
def test_model_dir_with_zip_needs_layers_built_from_it(tmp_path) -> None:
    import zipfile

    layers = tmp_path / "layers"
    (layers / "function" / "handler").mkdir(parents=True)
    with zipfile.ZipFile(layers / "runtime-layer.zip", "w") as runtime:
        runtime.writestr("python/placeholder.txt", "")
    with zipfile.ZipFile(layers / "model-layer.zip", "w") as model:
        model.writestr("model/manifest.json", '{"name": "another model"}')
    settings = {"packaging": "zip", "modelDir": "build/model", "layersDir": str(layers)}
    with pytest.raises(ValueError, match=r"holds another model than build/model; run `make layers MODEL_DIR"):
        template_for(settings)
    with zipfile.ZipFile(layers / "model-layer.zip", "w") as model:
        model.writestr("model/manifest.json", (REPO / "build" / "model" / "manifest.json").read_bytes())
    template_for(settings).resource_count_is("AWS::Lambda::LayerVersion", 2)
