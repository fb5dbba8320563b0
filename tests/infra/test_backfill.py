"""The Backfill construct: the Distributed Map state machine, its IAM scope, the S3 Batch Operations
role, the alarm, the outputs; and the switch that removes it all.

The tests on the session's templates are the fast tier; the archive template (every backfill setting
and every prefix switched) and the ASL validator (a subprocess) are ``aws_shape``."""

from __future__ import annotations

import json
import subprocess

import pytest
from aws_cdk.assertions import Template

from infra.settings import Settings
from tests.support import REPO, app_with, functions, only, template_for

ARCHIVE = {
    "backfillPrefix": "archive/",
    "backfillBatchSize": "25",
    "backfillMaxBatchBytes": "100000",
    "backfillMaxConcurrency": "7",
    "backfillToleratedFailurePercent": "3",
    "backfillTimeoutSeconds": "600",
    "uploadsPrefix": "incoming/",
    "resultsPrefix": "answers/",
}


def bucket_arn(template: Template) -> str:
    """The uploads bucket's ``Fn::GetAtt`` as JSON text (found by its versioning, not its hashed id)."""
    (bucket_id,) = [
        logical_id
        for logical_id, bucket in template.find_resources("AWS::S3::Bucket").items()
        if "VersioningConfiguration" in bucket["Properties"]
    ]
    return json.dumps({"Fn::GetAtt": [bucket_id, "Arn"]})


def objects_under(template: Template, prefix: str) -> str:
    return f'{{"Fn::Join": ["", [{bucket_arn(template)}, "/{prefix}*"]]}}'


FAKE = {
    "AWS::Partition": "aws",
    "AWS::Region": "us-east-1",
    "AWS::AccountId": "123456789012",
}


def resolve(value) -> str:
    """A DefinitionString's ``Fn::Join`` with plausible values for its references."""
    if isinstance(value, str):
        return value
    if "Fn::Join" in value:
        separator, parts = value["Fn::Join"]
        return separator.join(resolve(part) for part in parts)
    if "Ref" in value:
        return FAKE.get(value["Ref"], value["Ref"].lower())
    if "Fn::GetAtt" in value:
        return f"arn:aws:lambda:us-east-1:123456789012:function:{value['Fn::GetAtt'][0]}"
    raise AssertionError(f"unexpected token {value}")


def definition(template: Template) -> dict:
    machine = only(template, "AWS::StepFunctions::StateMachine")
    return json.loads(resolve(machine["Properties"]["DefinitionString"]))


def role_statements(template: Template, role_id: str) -> list[dict]:
    return [
        statement
        for policy in template.find_resources("AWS::IAM::Policy").values()
        if {"Ref": role_id} in policy["Properties"]["Roles"]
        for statement in policy["Properties"]["PolicyDocument"]["Statement"]
    ]


def actions_on(statements: list[dict]) -> dict[str, set[str]]:
    """``{resource as text: actions}``, conditions folded into the resource text."""
    found: dict[str, set[str]] = {}
    for statement in statements:
        actions = statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]
        resources = (
            statement["Resource"] if isinstance(statement["Resource"], list) else [statement["Resource"]]
        )
        for resource in resources:
            text = json.dumps(resource) + (
                json.dumps(statement["Condition"]) if "Condition" in statement else ""
            )
            found.setdefault(text, set()).update(actions)
    return found


@pytest.fixture(scope="module")
def archive_template() -> Template:
    """Backfill limited to ``archive/``, every backfill setting and both prefixes away from their
    defaults."""
    return template_for(ARCHIVE)


@pytest.fixture(scope="module")
def archive_settings() -> Settings:
    return Settings.from_context(app_with(ARCHIVE).node)


def test_the_map_lists_a_prefix_from_the_input_batches_and_writes_its_manifest(
    template: Template, settings: Settings
) -> None:
    states = definition(template)["States"]
    options = states["Options"]["Parameters"]["options.$"]
    assert options == "States.JsonMerge($.defaults, $.input, false)"
    assert states["Defaults"]["Parameters"]["defaults"] == {"prefix": "", "force": False}
    (choice,) = states["PrefixAllowed"]["Choices"]
    assert states["PrefixAllowed"]["Default"] == "PrefixNotAllowed"
    results = settings.results_prefix
    assert choice["And"][2] == {"Not": {"Variable": "$.prefix", "StringMatches": f"{results}*"}}
    run = states[choice["Next"]]
    assert run["Type"] == "Map"
    assert run["ItemProcessor"]["ProcessorConfig"] == {"Mode": "DISTRIBUTED", "ExecutionType": "STANDARD"}
    reader = run["ItemReader"]
    assert reader["Resource"] == "arn:aws:states:::s3:listObjectsV2"
    assert reader["Parameters"]["Prefix.$"] == "$.prefix"
    bucket = reader["Parameters"]["Bucket"]
    assert run["ItemBatcher"] == {
        "MaxItemsPerBatch": 50,
        "MaxInputBytesPerBatch": 262144,
        "BatchInput": {"bucket": bucket, "force.$": "$.force"},
    }
    assert run["MaxConcurrency"] == 20 and run["ToleratedFailurePercentage"] == 1
    writer = run["ResultWriter"]
    assert writer["Resource"] == "arn:aws:states:::s3:putObject"
    assert writer["Parameters"] == {"Bucket": bucket, "Prefix": f"{results}backfill-runs/"}


def test_the_worker_task_retries_transient_failures_with_backoff(template: Template) -> None:
    run = next(s for s in definition(template)["States"].values() if s["Type"] == "Map")
    processor = run["ItemProcessor"]
    task = processor["States"][processor["StartAt"]]
    bulk_id = next(
        logical_id
        for logical_id, f in template.find_resources("AWS::Lambda::Function").items()
        if f["Properties"].get("ImageConfig", {}).get("Command") == ["handler.app.bulk_handler"]
    )
    assert task["Resource"].endswith(f":function:{bulk_id}"), "the bulk worker, invoked directly"
    transient, anything = task["Retry"]
    assert "TransientError" in transient["ErrorEquals"]
    assert "Lambda.TooManyRequestsException" in transient["ErrorEquals"]
    assert transient["BackoffRate"] == 2 and transient["MaxAttempts"] == 6
    assert transient["JitterStrategy"] == "FULL" and transient["MaxDelaySeconds"] == 60
    assert anything["ErrorEquals"] == ["States.ALL"] and anything["MaxAttempts"] == 2


@pytest.mark.aws_shape
def test_asl_validator_accepts_the_definition(template: Template, tmp_path) -> None:
    path = tmp_path / "backfill.asl.json"
    path.write_text(json.dumps(definition(template)))
    checked = subprocess.run(
        [str(REPO / "node_modules/.bin/asl-validator"), "--json-path", str(path)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr


@pytest.mark.aws_shape
def test_settings_reach_the_state_machine_and_the_worker(archive_template: Template) -> None:
    states = definition(archive_template)["States"]
    run = next(s for s in states.values() if s["Type"] == "Map")
    assert run["ItemBatcher"]["MaxItemsPerBatch"] == 25
    assert run["ItemBatcher"]["MaxInputBytesPerBatch"] == 100000
    assert run["MaxConcurrency"] == 7 and run["ToleratedFailurePercentage"] == 3
    assert states["Defaults"]["Parameters"]["defaults"]["prefix"] == "archive/"
    assert states["PrefixAllowed"]["Choices"][0]["And"][1] == {
        "Variable": "$.prefix",
        "StringMatches": "archive/*",
    }
    assert states["PrefixAllowed"]["Choices"][0]["And"][2]["Not"]["StringMatches"] == "answers/*"
    writer = run["ResultWriter"]["Parameters"]
    assert writer["Prefix"] == "answers/backfill-runs/"
    bulk = functions(archive_template)["handler.app.bulk_handler"]["Properties"]
    assert bulk["Timeout"] == 600


@pytest.mark.aws_shape
def test_iam_is_scoped_to_the_backfill_prefix_and_the_results(
    archive_template: Template, archive_settings: Settings
) -> None:
    backfill, results = archive_settings.backfill_prefix, archive_settings.results_prefix
    bucket = bucket_arn(archive_template)
    machine = only(archive_template, "AWS::StepFunctions::StateMachine")
    machine_role = machine["Properties"]["RoleArn"]["Fn::GetAtt"][0]
    granted = actions_on(role_statements(archive_template, machine_role))
    s3_grants = {resource: actions for resource, actions in granted.items() if "s3:" in " ".join(actions)}
    assert s3_grants == {
        bucket + f'{{"StringLike": {{"s3:prefix": ["{backfill}*"]}}}}': {"s3:ListBucket"},
        objects_under(archive_template, f"{results}backfill-runs/"): {
            "s3:PutObject",
            "s3:GetObject",
            "s3:ListMultipartUploadParts",
            "s3:AbortMultipartUpload",
        },
    }
    worker_role = functions(archive_template)["handler.app.bulk_handler"]["Properties"]["Role"]["Fn::GetAtt"][
        0
    ]
    worker = actions_on(role_statements(archive_template, worker_role))
    reads = {r for r, actions in worker.items() if "s3:GetObject" in actions}
    writes = {r for r, actions in worker.items() if "s3:PutObject" in actions}
    assert all(f"/{backfill}*" in r or f"/{results}*" in r for r in reads) and len(reads) == 2
    assert all(f"/{results}*" in r for r in writes) and len(writes) == 1
    lists = [r for r, actions in worker.items() if "s3:ListBucket" in actions]
    assert lists == [bucket + f'{{"StringLike": {{"s3:prefix": ["{backfill}*", "{results}*"]}}}}']


@pytest.mark.aws_shape
def test_s3_batch_operations_may_invoke_the_bulk_worker_only(
    archive_template: Template, archive_settings: Settings
) -> None:
    roles = archive_template.find_resources(
        "AWS::IAM::Role",
        {
            "Properties": {
                "AssumeRolePolicyDocument": {
                    "Statement": [{"Principal": {"Service": "batchoperations.s3.amazonaws.com"}}]
                }
            }
        },
    )
    (role_id,) = roles
    granted = actions_on(role_statements(archive_template, role_id))
    invoked = {r for r, actions in granted.items() if "lambda:InvokeFunction" in actions}
    assert invoked and all("FunctionsBulkWorker" in r for r in invoked)
    objects = {r: a for r, a in granted.items() if "s3:PutObject" in a or "s3:GetObject" in a}
    assert list(objects) == [
        objects_under(archive_template, f"{archive_settings.results_prefix}batch-operations/")
    ]
    assert {"s3:GetObject", "s3:GetObjectVersion", "s3:PutObject"} == next(iter(objects.values()))


def test_tracing_logging_alarm_and_outputs(template: Template) -> None:
    machine = only(template, "AWS::StepFunctions::StateMachine")["Properties"]
    assert machine["TracingConfiguration"] == {"Enabled": True}
    assert machine["LoggingConfiguration"]["Level"] == "ALL"
    (alarm,) = [
        a["Properties"]
        for logical_id, a in template.find_resources("AWS::CloudWatch::Alarm").items()
        if "BackfillExecutionsFailed" in logical_id
    ]
    assert alarm["MetricName"] == "ExecutionsFailed" and alarm["Namespace"] == "AWS/States"
    assert alarm["Threshold"] == 1 and alarm["AlarmActions"]
    body = json.dumps(only(template, "AWS::CloudWatch::Dashboard")["Properties"]["DashboardBody"])
    assert "ExecutionsSucceeded" in body and "ImagesProcessed" in body
    outputs = template.find_outputs("*")
    assert {
        "BackfillStateMachineArn",
        "BulkWorkerArn",
        "BatchOperationsRoleArn",
        "BackfillRunsLocation",
    } <= set(outputs)


def test_enable_backfill_false_removes_it(variant_template: Template) -> None:
    assert not variant_template.find_resources("AWS::StepFunctions::StateMachine")
    assert "handler.app.bulk_handler" not in functions(variant_template)
    assert "BackfillStateMachineArn" not in variant_template.find_outputs("*")
    assert not [i for i in variant_template.find_resources("AWS::CloudWatch::Alarm") if "Backfill" in i]
